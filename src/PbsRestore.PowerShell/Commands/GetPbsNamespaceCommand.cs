using System.Management.Automation;
using PbsRestore.PowerShell.Completers;
using PbsRestore.Sources;

namespace PbsRestore.PowerShell.Commands;

/// <summary>A namespace as Get-PbsNamespace lists it.</summary>
public sealed record PbsNamespaceInfo(string Namespace, int Depth, string Location)
{
    public override string ToString() => Namespace.Length == 0 ? "(root)" : Namespace;
}

/// <summary>
/// <para type="synopsis">Lists the namespaces of a Proxmox Backup Server datastore: a folder or a server.</para>
/// </summary>
[Cmdlet(VerbsCommon.Get, "PbsNamespace", DefaultParameterSetName = ConnectionSet, HelpUri = HelpLinks.GetPbsNamespace)]
[OutputType(typeof(PbsNamespaceInfo))]
public sealed class GetPbsNamespaceCommand : PbsSourceCmdlet
{
    /// <summary>List this namespace and those below it; the root when omitted.</summary>
    [Parameter(Position = 0)]
    [ArgumentCompleter(typeof(NamespaceCompleter))]
    public string? Namespace { get; set; }

    /// <summary>How many levels below -Namespace to include.</summary>
    [Parameter]
    [ValidateRange(0, BackupNamespace.MaxDepth)]
    public int MaxDepth { get; set; } = BackupNamespace.MaxDepth;

    protected override void ProcessRecord()
    {
        try
        {
            var source = OpenSource();
            var parent = BackupNamespace.Parse(Namespace);
            foreach (var ns in Run(ct => source.ListNamespacesAsync(parent, MaxDepth, ct)))
                WriteObject(new PbsNamespaceInfo(ns.ToString(), ns.Depth, source.Location));
        }
        catch (Exception e) when (e is PbsException or IOException or UnauthorizedAccessException or OperationCanceledException or HttpRequestException)
        {
            WriteFailure(e, Namespace);
        }
    }
}
