using System.Reflection;
using NetArchTest.Rules;

namespace PbsRestore.Tests;

/// <summary>
/// The layers of docs/architecture.md, checked on the compiled assemblies (every type reference, method bodies
/// included): Formats ← Sources ← Access / Restore / Destinations / Publishing ← PowerShell, DiskImages and
/// Platform below them, and the OS asked only through Platform. A failure lists the offending types.
/// </summary>
public sealed class ArchitectureTests
{
    private const string Formats = "PbsRestore.Formats";
    private const string DiskImages = "PbsRestore.DiskImages";
    private const string Platform = "PbsRestore.Platform";
    private const string Sources = "PbsRestore.Sources";
    private const string Local = "PbsRestore.Sources.Local";
    private const string Remote = "PbsRestore.Sources.Remote";
    private const string Access = "PbsRestore.Access";
    private const string Destinations = "PbsRestore.Destinations";
    private const string Restore = "PbsRestore.Restore";
    private const string Publishing = "PbsRestore.Publishing";
    private const string PowerShell = "PbsRestore.PowerShell";

    private static readonly Assembly Core = typeof(PbsException).Assembly;

    /// <summary>What each layer of the core must not use (everything above it, and its siblings where they are independent).</summary>
    public static TheoryData<string, string[]> Layers => new()
    {
        { Formats, [DiskImages, Platform, Sources, Access, Destinations, Restore, Publishing, PowerShell] },
        { DiskImages, [Formats, Platform, Sources, Access, Destinations, Restore, Publishing, PowerShell] },
        { Platform, [Formats, DiskImages, Sources, Access, Destinations, Restore, Publishing, PowerShell] },
        { Sources, [DiskImages, Platform, Access, Destinations, Restore, Publishing, PowerShell] },
        { Local, [Remote] },
        { Remote, [Local] },
        { Access, [DiskImages, Destinations, Restore, Publishing, PowerShell] },
        { Destinations, [Sources, Access, Restore, Publishing, PowerShell] },
        { Restore, [Publishing, PowerShell] },
        { Publishing, [Restore, Destinations, PowerShell] },
    };

    [Theory]
    [MemberData(nameof(Layers))]
    public void A_layer_uses_only_the_layers_below_it(string layer, string[] forbidden)
    {
        var types = Types.InAssembly(Core).That().ResideInNamespace(layer);
        Assert.NotEmpty(types.GetTypes()); // a renamed namespace must not make the rule vacuous
        foreach (string other in forbidden)
        {
            // ResideInNamespace is a prefix match: Sources includes Sources.Local and .Remote, so a rule on Sources
            // exempts the sub-namespace it is about (Local may not use Remote, but it is still a source).
            if (other.StartsWith(layer + ".", StringComparison.Ordinal) || layer.StartsWith(other + ".", StringComparison.Ordinal)) continue;
            var result = Types.InAssembly(Core).That().ResideInNamespace(layer).ShouldNot().HaveDependencyOn(other).GetResult();
            Assert.True(result.IsSuccessful, $"{layer} must not use {other}, but these types do: {Names(result)}");
        }
    }

    [Fact]
    public void The_core_never_uses_PowerShell()
    {
        var result = Types.InAssembly(Core).ShouldNot().HaveDependencyOnAny("System.Management.Automation", PowerShell).GetResult();
        Assert.True(result.IsSuccessful, $"the core must not use PowerShell types: {Names(result)}");
    }

    [Fact]
    public void The_cmdlet_layer_is_found_and_reads_the_core()
    {
        // Guards the OS rule below against an empty type list (a missing or renamed assembly). Type definitions are
        // read from the file (Mono.Cecil), never loaded: the cmdlet assembly needs PowerShell to load.
        using var assembly = Mono.Cecil.AssemblyDefinition.ReadAssembly(CmdletAssemblyPath);
        var types = assembly.MainModule.Types.ToList();
        Assert.Contains(types, t => t.FullName == "PbsRestore.PowerShell.PbsArchiveCmdlet");
        // And the dependency reading sees through it: the cmdlets do use the restore layer.
        var result = Types.FromFile(CmdletAssemblyPath).ShouldNot().HaveDependencyOn(Restore).GetResult();
        Assert.False(result.IsSuccessful);
        Assert.Contains("PbsRestore.PowerShell.Commands.RestorePbsImageCommand", result.FailingTypeNames);
    }

    /// <summary>The OS is asked in one place, so every platform difference is found (and reviewed for Windows) there.</summary>
    [Fact]
    public void Only_Platform_asks_which_OS_it_runs_on()
    {
        string[] osChecks = ["System.OperatingSystem", "System.Runtime.InteropServices.RuntimeInformation", "System.Runtime.InteropServices.OSPlatform"];
        foreach (var types in new[] { Types.InAssembly(Core), Types.FromFile(CmdletAssemblyPath) })
        {
            var result = types.That().DoNotResideInNamespace(Platform).ShouldNot().HaveDependencyOnAny(osChecks).GetResult();
            Assert.True(result.IsSuccessful, $"only {Platform} may check the OS (OperatingSystem.Is*, RuntimeInformation); these types do: {Names(result)}");
        }
    }

    private static string Names(TestResult result) => string.Join(", ", result.FailingTypeNames ?? []);

    /// <summary>The cmdlet assembly of the same configuration as this test (built through a project reference).</summary>
    private static string CmdletAssemblyPath
    {
        get
        {
            // .../tests/PbsRestore.Tests/bin/<Configuration>/<tfm>/
            string configuration = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar)).Parent!.Name;
            string path = Path.Combine(TestPaths.RepoRoot, "src", "PbsRestore.PowerShell", "bin", configuration, "net8.0", "PbsRestore.PowerShell.dll");
            Assert.True(File.Exists(path), $"the cmdlet assembly is not at {path}: build the solution first");
            return path;
        }
    }
}
