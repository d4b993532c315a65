using System.Globalization;

namespace PbsRestore.Sources;

/// <summary>
/// Names one snapshot: namespace, type (vm, ct, host), id and backup time, e.g. <c>vm/100/2024-05-01T10:00:00Z</c>.
/// </summary>
public sealed record SnapshotRef(BackupNamespace Namespace, string BackupType, string BackupId, DateTimeOffset BackupTime)
{
    public static readonly IReadOnlyList<string> BackupTypes = ["vm", "ct", "host"];

    /// <summary>type/id/time, as PBS prints a snapshot (the namespace is separate).</summary>
    public string Path => $"{BackupType}/{BackupId}/{SnapshotTime.Format(BackupTime)}";

    public long BackupTimeEpoch => BackupTime.ToUnixTimeSeconds();

    /// <summary>The snapshot's path below the datastore, e.g. <c>ns/prod/ns/web/ct/200/2024-05-01T10:10:00Z</c>; <see cref="SnapshotSpec.Parse"/> reads it back.</summary>
    public override string ToString() => string.Concat(Namespace.Components.Select(c => $"ns/{c}/")) + Path;

    public static bool IsValidType(string type) => BackupTypes.Contains(type);

    /// <summary>
    /// A type as the user typed it ('VM', 'Ct') in the lower case PBS uses on disk and on the wire, or null when it
    /// is no backup type. Every type from user input goes through here before it reaches a source.
    /// </summary>
    public static string? NormalizeType(string? type)
    {
        if (type is null) return null;
        string lower = type.Trim().ToLowerInvariant();
        return IsValidType(lower) ? lower : null;
    }

    public static bool IsValidId(string id) =>
        id.Length is > 0 and <= 128 && BackupNamespace.IsValidComponent(id);
}

/// <summary>
/// What a user typed for -Snapshot, before it is looked up: <c>vm/100/2024-05-01T10:00:00Z</c>, the same with
/// an epoch time, with the Windows-mapped colons of a copied folder, optionally prefixed with
/// <c>ns/a/ns/b/</c>; or just <c>vm/100</c> for the group's latest snapshot.
/// </summary>
public sealed record SnapshotSpec(BackupNamespace? Namespace, string BackupType, string BackupId, DateTimeOffset? BackupTime)
{
    public static SnapshotSpec Parse(string text)
    {
        var parts = text.Trim().Trim('/').Split('/', StringSplitOptions.RemoveEmptyEntries).ToList();
        BackupNamespace? ns = null;
        var nsParts = new List<string>();
        while (parts.Count >= 2 && parts[0].Equals("ns", StringComparison.OrdinalIgnoreCase) && parts.Count > 3)
        {
            nsParts.Add(parts[1]);
            parts.RemoveRange(0, 2);
        }
        if (nsParts.Count > 0) ns = BackupNamespace.Parse(string.Join('/', nsParts));
        if (parts.Count is < 2 or > 3)
            throw Invalid(text);
        // Types are case-insensitive for the user ('VM/100'), lower case for every source.
        string type = SnapshotRef.NormalizeType(parts[0]) ?? throw Invalid(text);
        if (!SnapshotRef.IsValidId(parts[1]))
            throw Invalid(text);
        DateTimeOffset? time = null;
        if (parts.Count == 3)
        {
            if (SnapshotTime.TryParseUserTime(parts[2], out var t)) time = t;
            else throw Invalid(text);
        }
        return new SnapshotSpec(ns, type, parts[1], time);
    }

    private static PbsException Invalid(string text) => new("SnapshotSpecInvalid", PbsErrorKind.InvalidArgument,
        $"'{text}' is not a snapshot: expected type/id/time such as 'vm/100/2024-05-01T10:00:00Z' (or 'vm/100' for the latest)");
}

/// <summary>Snapshot times: RFC 3339 UTC without fraction, the name of the snapshot folder.</summary>
public static class SnapshotTime
{
    /// <summary>Samba's catia module (and Windows tools like it) map ':' to U+F03A in file names.</summary>
    public const char MappedColon = '\uF03A';

    public static string Format(DateTimeOffset time) =>
        time.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);

    /// <summary>
    /// Parses a folder name or user text: '2024-05-01T10:00:00Z', the same with ':' mapped to U+F03A or '_',
    /// an offset instead of Z, or epoch seconds.
    /// </summary>
    public static bool TryParse(string text, out DateTimeOffset time)
    {
        time = default;
        if (text.Length == 0) return false;
        if (text.All(char.IsAsciiDigit) && long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long epoch)
            && epoch < 253402300799)
        {
            time = DateTimeOffset.FromUnixTimeSeconds(epoch);
            return true;
        }
        // Undo the mappings only in the time part (after 'T'), where a real name has its colons.
        int t = text.IndexOf('T');
        if (t < 0) return false;
        string normalized = text[..t] + text[t..].Replace(MappedColon, ':').Replace('_', ':');
        if (!DateTimeOffset.TryParseExact(normalized, ["yyyy-MM-dd'T'HH:mm:ssK", "yyyy-MM-dd'T'HH:mm:ss'Z'"],
                CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var parsed))
            return false;
        time = parsed.ToUniversalTime();
        return true;
    }

    /// <summary>
    /// A time the user typed: anything <see cref="TryParse"/> reads (UTC with Z, an offset such as +02:00 as PVE
    /// shows it, epoch seconds), and also a time without zone, '2024-05-01T12:00:00' or '2024-05-01 12:00:00',
    /// which is local time as everywhere in PowerShell. Snapshot folder names never go through here.
    /// </summary>
    public static bool TryParseUserTime(string text, out DateTimeOffset time)
    {
        string t = text.Trim();
        if (TryParse(t, out time)) return true;
        if (DateTime.TryParseExact(t, ["yyyy-MM-dd'T'HH:mm:ss", "yyyy-MM-dd HH:mm:ss"], CultureInfo.InvariantCulture,
                DateTimeStyles.AssumeLocal, out var local))
        {
            time = new DateTimeOffset(local).ToUniversalTime();
            return true;
        }
        // An offset after a space, as some tools print it: '2024-05-01 12:00:00+02:00'.
        if (DateTimeOffset.TryParseExact(t, "yyyy-MM-dd HH:mm:ssK", CultureInfo.InvariantCulture, DateTimeStyles.None, out var withOffset)
            && t.Length > 19)
        {
            time = withOffset.ToUniversalTime();
            return true;
        }
        return false;
    }
}
