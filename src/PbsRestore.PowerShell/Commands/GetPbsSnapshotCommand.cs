using System.Management.Automation;
using PbsRestore.Sources;

namespace PbsRestore.PowerShell.Commands;

/// <summary>
/// <para type="synopsis">Lists the snapshots of a Proxmox Backup Server datastore.</para>
/// </summary>
[Cmdlet(VerbsCommon.Get, "PbsSnapshot", DefaultParameterSetName = FolderSet)]
[OutputType(typeof(SnapshotInfo))]
public sealed class GetPbsSnapshotCommand : PbsCmdlet
{
    private const string FolderSet = "Folder";

    /// <summary>Path of a datastore folder (the folder holding .chunks).</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = FolderSet, ValueFromPipelineByPropertyName = true)]
    [Alias("Path")]
    [ValidateNotNullOrEmpty]
    public string Datastore { get; set; } = "";

    /// <summary>Namespace to list, e.g. 'prod/web'. Without it, every namespace is listed.</summary>
    [Parameter]
    public string? Namespace { get; set; }

    /// <summary>How many namespace levels below -Namespace to include (0: only that namespace).</summary>
    [Parameter]
    [ValidateRange(0, BackupNamespace.MaxDepth)]
    public int MaxDepth { get; set; } = BackupNamespace.MaxDepth;

    /// <summary>Only snapshots of this type.</summary>
    [Parameter]
    [ValidateSet("vm", "ct", "host")]
    public string? BackupType { get; set; }

    /// <summary>Only snapshots of this backup id (VM or container id, or host name).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? BackupId { get; set; }

    /// <summary>Only the newest snapshot of each group.</summary>
    [Parameter]
    public SwitchParameter Latest { get; set; }

    protected override void ProcessRecord()
    {
        string path = ResolvePath(Datastore);
        try
        {
            var snapshots = Run(async ct =>
            {
                var source = new LocalDatastore(path);
                var ns = BackupNamespace.Parse(Namespace);
                var result = new List<SnapshotInfo>();
                foreach (var n in await source.ListNamespacesAsync(ns, MaxDepth, ct).ConfigureAwait(false))
                    result.AddRange(await source.ListSnapshotsAsync(n, BackupType, BackupId, ct).ConfigureAwait(false));
                return result;
            });
            IEnumerable<SnapshotInfo> output = snapshots;
            if (Latest)
                output = snapshots.GroupBy(s => (s.Namespace, s.BackupType, s.BackupId))
                    .Select(g => g.OrderBy(s => s.BackupTime).Last());
            foreach (var s in output.OrderBy(s => s.Namespace, StringComparer.Ordinal)
                         .ThenBy(s => s.BackupType, StringComparer.Ordinal)
                         .ThenBy(s => s.BackupId, StringComparer.Ordinal)
                         .ThenBy(s => s.BackupTime))
                WriteObject(s);
        }
        catch (Exception e) when (e is PbsException or IOException or UnauthorizedAccessException or OperationCanceledException)
        {
            WriteFailure(e, path);
        }
    }
}
