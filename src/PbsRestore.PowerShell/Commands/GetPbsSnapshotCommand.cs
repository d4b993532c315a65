using System.Management.Automation;
using PbsRestore.PowerShell.Completers;
using PbsRestore.Sources;

namespace PbsRestore.PowerShell.Commands;

/// <summary>
/// <para type="synopsis">Lists the snapshots of a Proxmox Backup Server datastore: a folder or a server.</para>
/// </summary>
[Cmdlet(VerbsCommon.Get, "PbsSnapshot", DefaultParameterSetName = ConnectionSet, HelpUri = HelpLinks.GetPbsSnapshot)]
[OutputType(typeof(SnapshotInfo))]
public sealed class GetPbsSnapshotCommand : PbsSourceCmdlet
{
    /// <summary>Only these snapshots or groups: 'vm/100', 'vm/100/2024-05-01T10:00:00Z', 'ns/dev/vm/102' (as Restore-PbsImage's -Snapshot).</summary>
    [Parameter(Position = 0)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(SnapshotCompleter))]
    public string[]? Snapshot { get; set; }

    /// <summary>Namespace to list, e.g. 'prod/web'. Without it, every namespace is listed.</summary>
    [Parameter]
    [ArgumentCompleter(typeof(NamespaceCompleter))]
    public string? Namespace { get; set; }

    /// <summary>How many namespace levels below -Namespace to include (0: only that namespace).</summary>
    [Parameter]
    [ValidateRange(0, BackupNamespace.MaxDepth)]
    public int MaxDepth { get; set; } = BackupNamespace.MaxDepth;

    /// <summary>Only snapshots of this type (any case: 'vm', 'VM').</summary>
    [Parameter]
    [ValidateSet("vm", "ct", "host", IgnoreCase = true)]
    public string? BackupType { get; set; }

    /// <summary>Only snapshots of these backup ids (VM or container id, or host name); wildcards allowed.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(BackupIdCompleter))]
    public string[]? BackupId { get; set; }

    /// <summary>Only snapshots whose comment (the first line of their notes; PVE writes the guest name there by default) matches; wildcards allowed.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    public string[]? Name { get; set; }

    /// <summary>Only snapshots taken after this time (a time without offset is local time).</summary>
    [Parameter]
    public DateTime After { get; set; }

    /// <summary>Only snapshots taken before this time (a time without offset is local time).</summary>
    [Parameter]
    public DateTime Before { get; set; }

    /// <summary>Only the N newest snapshots of each group.</summary>
    [Parameter]
    [ValidateRange(1, int.MaxValue)]
    public int Newest { get; set; }

    /// <summary>Only the newest snapshot of each group (-Newest 1).</summary>
    [Parameter]
    public SwitchParameter Latest { get; set; }

    protected override void ProcessRecord()
    {
        object target = ParameterSetName == FolderSet ? Datastore : ParameterSetName == RepositorySet ? Repository : "connection";
        try
        {
            var filter = BuildFilter();
            var request = DescribeSource();
            var source = OpenSource(request);
            target = source.Location;
            var ns = BackupNamespace.Parse(Namespace);
            var (listed, searched) = Run(async ct =>
            {
                var result = new List<SnapshotInfo>();
                var namespaces = await source.ListNamespacesAsync(ns, MaxDepth, ct).ConfigureAwait(false);
                foreach (var n in namespaces)
                    result.AddRange(await source.ListSnapshotsAsync(n, null, filter.SourceId, ct).ConfigureAwait(false));
                return (result, namespaces);
            });
            var selection = filter.Apply(listed);
            foreach (var s in selection.Snapshots)
                WriteObject(SnapshotSources.Remember(s, request));
            ReportMisses(source, filter, selection, searched);
        }
        catch (Exception e) when (e is PbsException or IOException or UnauthorizedAccessException or OperationCanceledException or HttpRequestException)
        {
            WriteFailure(e, target);
        }
    }

    private SnapshotFilter BuildFilter()
    {
        if (Latest && MyInvocation.BoundParameters.ContainsKey(nameof(Newest)))
            throw new PbsException("LatestAndNewest", PbsErrorKind.InvalidArgument, "-Latest is -Newest 1: give one of them");
        return new SnapshotFilter
        {
            BackupType = SnapshotRef.NormalizeType(BackupType),
            Ids = Terms(BackupId),
            Names = Terms(Name),
            Specs = (Snapshot ?? []).Select(SnapshotSpec.Parse).ToList(),
            // A DateTime without a kind is local time, as everywhere in PowerShell; DateTimeOffset(DateTime) reads it so.
            After = MyInvocation.BoundParameters.ContainsKey(nameof(After)) ? new DateTimeOffset(After) : null,
            Before = MyInvocation.BoundParameters.ContainsKey(nameof(Before)) ? new DateTimeOffset(Before) : null,
            Newest = Latest ? 1 : MyInvocation.BoundParameters.ContainsKey(nameof(Newest)) ? Newest : null,
        };
    }

    /// <summary>PowerShell wildcards, case-insensitive like every -Name in PowerShell; exact values stay exact.</summary>
    private static List<FilterTerm> Terms(string[]? values) => (values ?? []).Select(v =>
    {
        bool pattern = WildcardPattern.ContainsWildcardCharacters(v);
        var compiled = new WildcardPattern(v, WildcardOptions.IgnoreCase | WildcardOptions.CultureInvariant);
        return new FilterTerm(v, pattern ? compiled.IsMatch : x => string.Equals(x, v, StringComparison.OrdinalIgnoreCase), pattern);
    }).ToList();

    /// <summary>An exact id, snapshot or name that matched nothing is an error (one per value), naming where else its group is.</summary>
    private void ReportMisses(ISnapshotSource source, SnapshotFilter filter, SnapshotFilter.Selection selection, IReadOnlyList<BackupNamespace> searched)
    {
        var ns = BackupNamespace.Parse(Namespace);
        string scope = ns.IsRoot && MaxDepth == BackupNamespace.MaxDepth ? ""
            : " in " + (ns.IsRoot ? "the root namespace" : $"namespace '{ns}'") + (MaxDepth > 0 ? " or below" : "");
        string typeText = filter.BackupType is null ? "" : $" of type {filter.BackupType}";
        foreach (var id in selection.MissedIds)
        {
            string hint = Elsewhere(source, filter.BackupType, id.Text, searched);
            WriteError(NotFound("BackupGroupNotFound", $"no backup group with id '{id.Text}'{typeText}{scope} in '{source.Location}'{hint}", id.Text));
        }
        foreach (var spec in selection.MissedSpecs)
        {
            string text = Snapshot!.First(s => SnapshotSpec.Parse(s) == spec);
            string hint = spec.Namespace is null ? Elsewhere(source, spec.BackupType, spec.BackupId, searched) : "";
            WriteError(NotFound("SnapshotNotFound", $"no snapshot {text}{scope} in '{source.Location}'{hint}", text));
        }
        foreach (var name in selection.MissedNames)
            WriteError(NotFound("SnapshotNameNotFound",
                $"no snapshot named '{name.Text}' (the name is the snapshot comment, where PVE writes the guest name){scope} in '{source.Location}'", name.Text));
    }

    private string Elsewhere(ISnapshotSource source, string? type, string id, IReadOnlyList<BackupNamespace> searched)
    {
        if (!SnapshotRef.IsValidId(id)) return "";
        try
        {
            var where = Run(ct => SnapshotFilter.FindGroupNamespacesAsync(source, type, id, ct));
            return SnapshotFilter.ElsewhereHint(where, n => searched.Contains(n));
        }
        catch (Exception e) when (e is PbsException or IOException or HttpRequestException)
        {
            return ""; // only a hint: the miss itself is reported either way
        }
    }

    private static ErrorRecord NotFound(string id, string message, string target) =>
        ToErrorRecord(new PbsNotFoundException(id, message), target);
}
