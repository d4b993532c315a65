namespace PbsRestore.Sources;

/// <summary>A backup group: all snapshots of one type and id in one namespace (e.g. vm/100).</summary>
public sealed record BackupGroupInfo(BackupNamespace Namespace, string BackupType, string BackupId,
    int SnapshotCount, DateTimeOffset LastBackup, string? Owner, IReadOnlyList<string> Files)
{
    /// <summary>type/id, as PBS prints a group.</summary>
    public string Group => $"{BackupType}/{BackupId}";

    /// <summary>Groups of a snapshot listing, as PBS's groups endpoint reports them (files of the newest snapshot).</summary>
    public static IReadOnlyList<BackupGroupInfo> FromSnapshots(IEnumerable<SnapshotInfo> snapshots) =>
        snapshots.GroupBy(s => (s.Ref.Namespace, s.BackupType, s.BackupId))
            .Select(g =>
            {
                var last = g.OrderBy(s => s.Ref.BackupTime).Last();
                return new BackupGroupInfo(g.Key.Namespace, g.Key.BackupType, g.Key.BackupId, g.Count(), last.Ref.BackupTime,
                    last.Owner, last.Files.Select(f => f.Name).ToList());
            })
            .OrderBy(g => g.BackupType, StringComparer.Ordinal).ThenBy(g => g.BackupId, StringComparer.Ordinal)
            .ToList();
}
