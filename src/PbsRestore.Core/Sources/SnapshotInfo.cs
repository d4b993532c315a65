using PbsRestore.Formats;

namespace PbsRestore.Sources;

/// <summary>One file of a snapshot as a listing shows it.</summary>
public sealed record SnapshotFile
{
    public SnapshotFile(string name, long size, CryptMode mode)
    {
        Name = name;
        Size = size;
        Mode = mode;
    }

    public string Name { get; }
    public long Size { get; }

    /// <summary>The crypt mode for code; internal so that PowerShell output shows only the name.</summary>
    internal CryptMode Mode { get; }

    /// <summary>None, Encrypt or SignOnly, as a name: ConvertTo-Json and Export-Csv show an enum as a number.</summary>
    public string CryptMode => Mode.ToString();

    /// <summary>The name users type: without .fidx/.didx/.blob.</summary>
    public string ArchiveName => ArchiveNames.DisplayName(Name);

    public override string ToString() => Name;
}

/// <summary>
/// A snapshot as listed: what Get-PbsSnapshot returns, and what Restore-PbsImage accepts from the pipeline.
/// Immutable; <see cref="Location"/> says where it came from (a datastore folder or a server repository).
/// </summary>
public sealed class SnapshotInfo
{
    /// <param name="size">Every file's size as PBS counts it (see <see cref="Size"/>); null = the sum of <paramref name="files"/>.</param>
    public SnapshotInfo(SnapshotRef reference, string location, IReadOnlyList<SnapshotFile> files, KeyFingerprint? keyFingerprint, string? owner = null, string? comment = null,
        long? size = null)
    {
        Ref = reference;
        Location = location;
        Files = new DisplayList<SnapshotFile>(files.ToList());
        Archives = new DisplayList<string>(Files.Select(f => f.ArchiveName).ToList());
        KeyFingerprint = keyFingerprint?.ToString();
        Owner = owner;
        Comment = comment;
        Size = size ?? files.Sum(f => f.Size);
    }

    public SnapshotRef Ref { get; }
    public string Location { get; }
    public string BackupType => Ref.BackupType;
    public string BackupId => Ref.BackupId;
    public DateTime BackupTime => Ref.BackupTime.UtcDateTime;
    public string Namespace => Ref.Namespace.ToString();
    /// <summary>type/id/time, e.g. vm/100/2024-05-01T10:00:00Z.</summary>
    public string Snapshot => Ref.Path;
    /// <summary>The files of the snapshot (names as stored); reads as 'a.img.fidx, b.conf.blob' in Export-Csv.</summary>
    public DisplayList<SnapshotFile> Files { get; }
    /// <summary>The archive names users type (the Archives column), e.g. 'drive-scsi0.img, qemu-server.conf'.</summary>
    public DisplayList<string> Archives { get; }
    public bool Encrypted => Files.Any(f => f.Mode == PbsRestore.Formats.CryptMode.Encrypt);
    /// <summary>
    /// The snapshot's size as PBS reports it (listing, web UI): the archives' sizes from the manifest (images: their
    /// logical size) plus the manifest file index.json.blob itself, which <see cref="Files"/> leaves out.
    /// </summary>
    public long Size { get; }
    public string? KeyFingerprint { get; }
    public string? Owner { get; }
    public string? Comment { get; }

    public override string ToString() => Ref.ToString();
}
