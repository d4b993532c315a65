using System.Management.Automation;
using PbsRestore.PowerShell.Completers;
using PbsRestore.Sources;

namespace PbsRestore.PowerShell.Commands;

/// <summary>
/// <para type="synopsis">Lists the snapshots of a Proxmox Backup Server datastore: a folder or a server.</para>
/// </summary>
[Cmdlet(VerbsCommon.Get, "PbsSnapshot", DefaultParameterSetName = ConnectionSet)]
[OutputType(typeof(SnapshotInfo))]
public sealed class GetPbsSnapshotCommand : PbsSourceCmdlet
{
    /// <summary>Namespace to list, e.g. 'prod/web'. Without it, every namespace is listed.</summary>
    [Parameter]
    [ArgumentCompleter(typeof(NamespaceCompleter))]
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
    [ArgumentCompleter(typeof(BackupIdCompleter))]
    public string? BackupId { get; set; }

    /// <summary>Only the newest snapshot of each group.</summary>
    [Parameter]
    public SwitchParameter Latest { get; set; }

    protected override void ProcessRecord()
    {
        object target = ParameterSetName == FolderSet ? Datastore : ParameterSetName == RepositorySet ? Repository : "connection";
        try
        {
            var source = OpenSource();
            target = source.Location;
            var snapshots = Run(async ct =>
            {
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
                WriteObject(SnapshotSources.Remember(s, source));
        }
        catch (Exception e) when (e is PbsException or IOException or UnauthorizedAccessException or OperationCanceledException or HttpRequestException)
        {
            WriteFailure(e, target);
        }
    }
}
