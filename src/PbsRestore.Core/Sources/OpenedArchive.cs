using System.Security.Cryptography;
using PbsRestore.Formats;

namespace PbsRestore.Sources;

/// <summary>
/// A snapshot opened for reading its archives: the manifest read and decoded once (<see cref="BackupManifest.FromBlob"/>,
/// for a folder and a server alike), with the key that reads it. Every archive of the snapshot is opened from here
/// (<see cref="Open(string)"/>): restore, verify, measure, random access and a whole-snapshot restore never read or
/// resolve the manifest again.
/// </summary>
public sealed class OpenedSnapshot
{
    /// <summary>Indexes larger than this are refused (a 1 PiB image at 4 MiB chunks has an 8 GiB index...; 256 MiB covers 32 TiB).</summary>
    public const long MaxIndexSize = 256L << 20;
    /// <summary>A blob archive (config, log) is small; upstream caps blobs at 128 MiB.</summary>
    public const long MaxBlobFileSize = FileFormats.MaxBlobSize;

    /// <summary>
    /// The client log is uploaded after the manifest is written, so no manifest lists it (upstream
    /// CLIENT_LOG_BLOB_NAME). It can still be restored; only its CRC (and tag, if encrypted) can be checked.
    /// </summary>
    public const string ClientLogBlobName = "client.log.blob";

    private OpenedSnapshot(ISnapshotReader reader, CryptConfig? crypt, BackupManifest manifest)
    {
        Reader = reader;
        Crypt = crypt;
        Manifest = manifest;
    }

    /// <summary>Reads and decodes the manifest. The reader stays the caller's (dispose it).</summary>
    public static async Task<OpenedSnapshot> OpenAsync(ISnapshotReader reader, CryptConfig? crypt, CancellationToken ct)
    {
        var raw = await reader.ReadFileAsync(FileFormats.ManifestBlobName, BackupManifest.MaxJsonSize + 1024, ct).ConfigureAwait(false);
        return new OpenedSnapshot(reader, crypt, BackupManifest.FromBlob(raw, $"{reader.Snapshot}/{FileFormats.ManifestBlobName}"));
    }

    public ISnapshotReader Reader { get; }
    public CryptConfig? Crypt { get; }
    public BackupManifest Manifest { get; }
    public SnapshotRef Snapshot => Reader.Snapshot;

    /// <summary>Finds the manifest entry for what the user typed, or fails listing what exists.</summary>
    public ManifestFile Resolve(string archive) =>
        ArchiveNames.Resolve(Manifest, archive)
        ?? (archive is ClientLogBlobName or "client.log" ? new ManifestFile(ClientLogBlobName, CryptMode.None, -1, []) : null)
        ?? throw new PbsNotFoundException("ArchiveNotFound",
            $"snapshot '{Snapshot}' has no archive '{archive}'; it has: {string.Join(", ", Manifest.Files.Select(f => ArchiveNames.DisplayName(f.FileName)))}");

    /// <summary>Checks the key before anything else: required for encrypted archives, must match the manifest's.</summary>
    public void CheckKey(ManifestFile entry)
    {
        if (OpenedArchive.IsUnlisted(entry)) return;
        if (entry.CryptMode == CryptMode.Encrypt && Crypt is null)
            throw new PbsKeyException("KeyRequired",
                $"archive '{entry.FileName}' of snapshot '{Snapshot}' is encrypted" +
                (Manifest.KeyFingerprint is { } fp ? $" with key {fp.ToShortString()}" : "") + "; give its key file with -Keyfile");
        Manifest.VerifyKey(Crypt, $"{Snapshot}/{FileFormats.ManifestBlobName}");
    }

    /// <summary>Resolves an archive by name and checks its key.</summary>
    public OpenedArchive Open(string archive) => Open(Resolve(archive));

    /// <summary>Opens a manifest entry (already resolved, e.g. the second archive of a split pair) and checks its key.</summary>
    public OpenedArchive Open(ManifestFile entry)
    {
        CheckKey(entry);
        return new OpenedArchive(this, entry);
    }

    /// <summary>Opens the snapshot and one archive of it: manifest, resolve, key check.</summary>
    public static async Task<OpenedArchive> OpenArchiveAsync(ISnapshotReader reader, CryptConfig? crypt, string archive, CancellationToken ct) =>
        (await OpenAsync(reader, crypt, ct).ConfigureAwait(false)).Open(archive);
}

/// <summary>
/// One archive of an <see cref="OpenedSnapshot"/>, resolved and key-checked. Its index is read and checked against
/// the manifest (recomputed checksum and size) once, on first use (<see cref="ReadIndexAsync"/>), so that a
/// -WhatIf or a refused destination costs no download; a blob archive is read and verified by
/// <see cref="ReadBlobAsync"/> and <see cref="DecodeBlob"/>.
/// </summary>
public sealed class OpenedArchive
{
    private readonly object _gate = new();
    private Task<IChunkIndex>? _index;

    internal OpenedArchive(OpenedSnapshot snapshot, ManifestFile entry)
    {
        Snapshot = snapshot;
        Entry = entry;
    }

    public OpenedSnapshot Snapshot { get; }
    public ManifestFile Entry { get; }
    public ArchiveKind Kind => Entry.Kind;
    public string FileName => Entry.FileName;
    /// <summary>The name users see (<c>drive-scsi0.img</c>).</summary>
    public string DisplayName => ArchiveNames.DisplayName(Entry.FileName);
    public ISnapshotReader Reader => Snapshot.Reader;
    /// <summary>The chunks its index refers to, raw (fetch them through a <see cref="ChunkAccess"/>).</summary>
    public IChunkSource Chunks => Snapshot.Reader.Chunks;
    /// <summary>Where it is, for messages: the source's location and the stored name.</summary>
    public string Location => $"{Snapshot.Reader.Location}/{Entry.FileName}";

    /// <summary>Whether its chunks are encrypted, as the manifest entry says (an unlisted blob says so itself).</summary>
    public bool Encrypted => DataBlob.ChunkMustBeEncrypted(Entry.CryptMode);

    /// <summary>The key for its chunks' digests: the snapshot's key for an encrypted archive, else none (plain SHA-256).</summary>
    public CryptConfig? ChunkKey => Encrypted ? Snapshot.Crypt : null;

    internal static bool IsUnlisted(ManifestFile entry) => entry.Size < 0;

    /// <summary>Downloads the index and checks it against its manifest entry; once (later calls share the result).</summary>
    public Task<IChunkIndex> ReadIndexAsync(CancellationToken ct)
    {
        if (Entry.Kind == ArchiveKind.Blob)
            throw new PbsException("ArchiveNotAnIndex", PbsErrorKind.InvalidArgument, $"'{Entry.FileName}' is a blob, not an index archive");
        lock (_gate)
        {
            // A failed or cancelled read is not kept: the next caller tries again.
            if (_index is null || _index.IsFaulted || _index.IsCanceled) _index = LoadIndexAsync(ct);
            return _index;
        }
    }

    private async Task<IChunkIndex> LoadIndexAsync(CancellationToken ct)
    {
        var raw = await Reader.ReadFileAsync(Entry.FileName, OpenedSnapshot.MaxIndexSize, ct).ConfigureAwait(false);
        string where = Location;
        IChunkIndex index = Entry.Kind switch
        {
            ArchiveKind.FixedIndex => FixedIndex.Parse(raw, where),
            ArchiveKind.DynamicIndex => DynamicIndex.Parse(raw, where),
            _ => throw new ArgumentException($"{Entry.FileName} is not an index"),
        };
        // Upstream checks the recomputed checksum (never the header's) and the size against the manifest.
        BackupManifest.VerifyFile(Entry, index.Size, index.ComputeCsum(), where);
        return index;
    }

    /// <summary>The raw bytes of a blob archive, as stored (checked by <see cref="DecodeBlob"/>).</summary>
    public Task<byte[]> ReadBlobAsync(CancellationToken ct) => Reader.ReadFileAsync(Entry.FileName, OpenedSnapshot.MaxBlobFileSize, ct);

    /// <summary>
    /// Checks a blob archive's bytes against the manifest (size, checksum; an unlisted blob has neither) and decodes
    /// them with the one verified decode (crypt mode, key, CRC, tag, size bound). Failures of the blob itself are
    /// <see cref="PbsIntegrityException"/>s naming it (their ids kept); a missing key is a <see cref="PbsKeyException"/>.
    /// </summary>
    public byte[] DecodeBlob(byte[] raw)
    {
        string where = Location;
        bool encrypted = Encrypted;
        if (IsUnlisted(Entry))
            encrypted = raw.Length >= 8 && DataBlob.IsEncrypted(DataBlob.GetKind(raw));
        else
            BackupManifest.VerifyFile(Entry, raw.LongLength, SHA256.HashData(raw), where);
        if (encrypted && Snapshot.Crypt is null)
            throw new PbsKeyException("KeyRequired", $"{where} is encrypted; give its key file with -Keyfile");
        try
        {
            using var decoder = new BlobDecoder(encrypted ? Snapshot.Crypt : null, FileFormats.MaxBlobSize);
            var buffer = new byte[FileFormats.MaxBlobSize];
            int n = decoder.DecodeVerified(raw, buffer, BlobExpectation.Blob(encrypted));
            return buffer.AsSpan(0, n).ToArray();
        }
        catch (PbsException e)
        {
            throw new PbsIntegrityException(e.ErrorId, $"{where}: {e.Message}", e);
        }
    }

    public override string ToString() => Location;
}
