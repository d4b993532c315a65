namespace PbsRestore.Formats;

/// <summary>What a snapshot file holds, by its suffix (upstream ArchiveType::from_path).</summary>
public enum ArchiveKind
{
    FixedIndex,
    DynamicIndex,
    Blob,
    Unknown,
}

/// <summary>
/// Archive names: the stored name carries the format suffix (<c>drive-scsi0.img.fidx</c>); users see and type
/// the name without it (<c>drive-scsi0.img</c>). Stored names come from data we do not trust, so they are
/// checked to be plain file names before they come near a path.
/// </summary>
public static class ArchiveNames
{
    public static ArchiveKind KindOf(string storedName) =>
        storedName.EndsWith(".fidx", StringComparison.Ordinal) ? ArchiveKind.FixedIndex
        : storedName.EndsWith(".didx", StringComparison.Ordinal) ? ArchiveKind.DynamicIndex
        : storedName.EndsWith(".blob", StringComparison.Ordinal) ? ArchiveKind.Blob
        : ArchiveKind.Unknown;

    /// <summary>The name without its storage suffix.</summary>
    public static string DisplayName(string storedName) =>
        KindOf(storedName) == ArchiveKind.Unknown ? storedName : storedName[..storedName.LastIndexOf('.')];

    /// <summary>
    /// A single path component of upstream's safe characters ([A-Za-z0-9_][A-Za-z0-9._-]*, as PBS's own archive
    /// name schema) ending in .fidx, .didx or .blob: no separators, no '..', nothing Windows would reinterpret.
    /// </summary>
    public static bool IsValidStoredName(string name)
    {
        if (name.Length is 0 or > 255 || name.Contains("..", StringComparison.Ordinal)) return false;
        if (!(char.IsAsciiLetterOrDigit(name[0]) || name[0] == '_')) return false;
        foreach (char c in name)
            if (!(char.IsAsciiLetterOrDigit(c) || c is '_' or '.' or '-')) return false;
        return KindOf(name) != ArchiveKind.Unknown;
    }

    /// <summary>
    /// Finds the manifest entry a user means: the stored name itself, or the display name
    /// (<c>drive-scsi0.img</c> → <c>drive-scsi0.img.fidx</c>, <c>qemu-server.conf</c> → <c>qemu-server.conf.blob</c>).
    /// </summary>
    public static ManifestFile? Resolve(BackupManifest manifest, string userName) =>
        manifest.FindFile(userName)
        ?? manifest.Files.FirstOrDefault(f => DisplayName(f.FileName) == userName);
}
