namespace PbsRestore.Sources;

/// <summary>
/// One value a listing is filtered by (a backup id, a name): the text the user gave, how it matches (the caller
/// compiles it, e.g. as a PowerShell wildcard), and whether it is a pattern. An exact value that matches nothing
/// is worth an error; a pattern that matches nothing is not.
/// </summary>
public sealed record FilterTerm(string Text, Func<string, bool> Matches, bool IsPattern);

/// <summary>
/// Selects snapshots from a listing the same way whatever the source (a folder or a server): type, ids, snapshot
/// specs, name (the snapshot comment), time window and the newest N of each group. Sources are asked only for
/// what they filter reliably (<see cref="SourceId"/>); everything else happens here. Types are filtered here too:
/// PBS 3.2.4 answers a type filter for a namespace without a group of that type with HTTP 400 (ENOENT).
/// </summary>
public sealed record SnapshotFilter
{
    /// <summary>Lower-case type (see <see cref="SnapshotRef.NormalizeType"/>), or null for all.</summary>
    public string? BackupType { get; init; }

    /// <summary>Backup ids; a snapshot matches when one of them matches (all ids when empty).</summary>
    public IReadOnlyList<FilterTerm> Ids { get; init; } = [];

    /// <summary>Snapshot specs ('vm/100', 'vm/100/2024-05-01T10:00:00Z', 'ns/dev/vm/102'); one must match (all when empty).</summary>
    public IReadOnlyList<SnapshotSpec> Specs { get; init; } = [];

    /// <summary>Names matched against the snapshot comment (PVE writes the guest name there by default).</summary>
    public IReadOnlyList<FilterTerm> Names { get; init; } = [];

    /// <summary>Only snapshots taken strictly after this time.</summary>
    public DateTimeOffset? After { get; init; }

    /// <summary>Only snapshots taken strictly before this time.</summary>
    public DateTimeOffset? Before { get; init; }

    /// <summary>Only the N newest snapshots of each group (after every other filter).</summary>
    public int? Newest { get; init; }

    /// <summary>The id to pass to a source's listing: set only when exactly one exact id is asked for.</summary>
    public string? SourceId =>
        Ids.Count == 1 && !Ids[0].IsPattern && Specs.All(s => s.BackupId == Ids[0].Text) ? Ids[0].Text
        : Ids.Count == 0 && Specs.Count > 0 && Specs.All(s => s.BackupId == Specs[0].BackupId) ? Specs[0].BackupId
        : null;

    /// <summary>What a filter selected, and the exact ids, specs and names that matched nothing.</summary>
    public sealed record Selection(IReadOnlyList<SnapshotInfo> Snapshots, IReadOnlyList<FilterTerm> MissedIds,
        IReadOnlyList<SnapshotSpec> MissedSpecs, IReadOnlyList<FilterTerm> MissedNames);

    public Selection Apply(IEnumerable<SnapshotInfo> listing)
    {
        // Type, id and spec first: what they miss is a group that is not there (an error for exact values).
        var groups = listing.Where(s => BackupType is null || s.BackupType == BackupType)
            .Where(s => Ids.Count == 0 || Ids.Any(t => t.Matches(s.BackupId)))
            .Where(s => Specs.Count == 0 || Specs.Any(p => Matches(p, s)))
            .ToList();
        var missedIds = Ids.Where(t => !t.IsPattern && !groups.Any(s => t.Matches(s.BackupId))).ToList();
        var missedSpecs = Specs.Where(p => !groups.Any(s => Matches(p, s))).ToList();

        // Then the name: an exact name nobody has is worth saying too.
        var named = groups.Where(s => Names.Count == 0 || Names.Any(t => t.Matches(s.Comment ?? ""))).ToList();
        var missedNames = Names.Where(t => !t.IsPattern && !groups.Any(s => t.Matches(s.Comment ?? ""))).ToList();

        // The time window and -Newest only narrow what exists: never an error.
        IEnumerable<SnapshotInfo> selected = named
            .Where(s => After is not { } a || s.Ref.BackupTime > a)
            .Where(s => Before is not { } b || s.Ref.BackupTime < b);
        if (Newest is { } n)
            selected = selected.GroupBy(s => (s.Ref.Namespace, s.BackupType, s.BackupId))
                .SelectMany(g => g.OrderByDescending(s => s.Ref.BackupTime).Take(n));
        var ordered = selected.OrderBy(s => s.Namespace, StringComparer.Ordinal)
            .ThenBy(s => s.BackupType, StringComparer.Ordinal)
            .ThenBy(s => s.BackupId, StringComparer.Ordinal)
            .ThenBy(s => s.Ref.BackupTime)
            .ToList();
        return new Selection(ordered, missedIds, missedSpecs, missedNames);
    }

    private static bool Matches(SnapshotSpec spec, SnapshotInfo s) =>
        spec.BackupType == s.BackupType && spec.BackupId == s.BackupId
        && (spec.Namespace is null || spec.Namespace.Equals(s.Ref.Namespace))
        && (spec.BackupTime is not { } t || t == s.Ref.BackupTime);

    /// <summary>
    /// The namespaces (anywhere in the datastore) holding a group of this id (and type, when given): what a miss
    /// in one namespace can point the user to.
    /// </summary>
    public static async Task<IReadOnlyList<BackupNamespace>> FindGroupNamespacesAsync(ISnapshotSource source, string? backupType,
        string backupId, CancellationToken ct)
    {
        var found = new List<BackupNamespace>();
        foreach (var ns in await source.ListNamespacesAsync(BackupNamespace.Root, BackupNamespace.MaxDepth, ct).ConfigureAwait(false))
        {
            var groups = await source.ListGroupsAsync(ns, ct).ConfigureAwait(false);
            if (groups.Any(g => g.BackupId == backupId && (backupType is null || g.BackupType == backupType)))
                found.Add(ns);
        }
        return found;
    }

    /// <summary>
    /// '; it exists in namespace 'dev' (use -Namespace dev)' for the namespaces not searched, or '' when there
    /// are none.
    /// </summary>
    public static string ElsewhereHint(IReadOnlyList<BackupNamespace> namespaces, Func<BackupNamespace, bool> searched)
    {
        var others = namespaces.Where(n => !searched(n)).ToList();
        if (others.Count == 0) return "";
        static string Name(BackupNamespace n) => n.IsRoot ? "the root namespace" : $"namespace '{n}'";
        static string Arg(BackupNamespace n) => n.IsRoot ? "''" : n.ToString();
        return others.Count == 1
            ? $"; it exists in {Name(others[0])} (use -Namespace {Arg(others[0])})"
            : $"; it exists in {string.Join(", ", others.Select(Name))} (use -Namespace)";
    }
}
