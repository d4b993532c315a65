using System.Management.Automation;
using System.Reflection;
using System.Runtime.Loader;

namespace PbsRestore.PowerShell;

/// <summary>
/// Loads the module's dependencies (PbsRestore.Core, ZstdSharp, BouncyCastle, System.IO.Hashing) into a private
/// AssemblyLoadContext, from the <c>deps</c> folder beside this assembly. Another module that ships a different
/// version of, say, BouncyCastle then cannot break us, nor we it: PowerShell's default context never sees our
/// copies (as in OpenAuthenticode's loader). The core must be in here too: from the default context it would
/// bind to whatever version of a library some other module loaded first. The price: scripts cannot name core
/// types as literals ([PbsRestore.Sources.SnapshotInfo]); their objects, properties and views work as usual.
/// </summary>
internal sealed class DependencyLoadContext : AssemblyLoadContext
{
    private static readonly string DepsFolder = Path.Combine(Path.GetDirectoryName(typeof(DependencyLoadContext).Assembly.Location)!, "deps");
    private static readonly Lazy<DependencyLoadContext> Shared = new(() => new DependencyLoadContext());

    private DependencyLoadContext() : base("PbsRestore", isCollectible: false) { }

    public static DependencyLoadContext Instance => Shared.Value;

    /// <summary>The default context asks here only for what it cannot find itself; we answer for our own files.</summary>
    internal static Assembly? ResolveFromDefault(AssemblyLoadContext context, AssemblyName name)
    {
        string path = Path.Combine(DepsFolder, name.Name + ".dll");
        return File.Exists(path) ? Instance.LoadFromAssemblyName(name) : null;
    }

    protected override Assembly? Load(AssemblyName name)
    {
        // Our dependencies come from deps/; everything else (the framework, PowerShell) from the default context.
        string path = Path.Combine(DepsFolder, name.Name + ".dll");
        return File.Exists(path) ? LoadFromAssemblyPath(path) : null;
    }
}

/// <summary>Hooks the private load context up when the module is imported, and off when it is removed (ending publications).</summary>
public sealed class ModuleInitializer : IModuleAssemblyInitializer, IModuleAssemblyCleanup
{
    public void OnImport() => AssemblyLoadContext.Default.Resolving += DependencyLoadContext.ResolveFromDefault;

    public void OnRemove(PSModuleInfo module)
    {
        // Published disks end with the module (Publish-PbsImage): their targets stop and their overlays go.
        PublicationRegistry.UnpublishAll();
        AssemblyLoadContext.Default.Resolving -= DependencyLoadContext.ResolveFromDefault;
    }
}
