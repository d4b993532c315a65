using System.Collections.Concurrent;
using System.Security.Cryptography;
using PbsRestore.Formats;

namespace PbsRestore.Fixtures;

/// <summary>How the snapshot folder name (an RFC 3339 time such as <c>2024-05-01T10:00:00Z</c>) is written.</summary>
public enum SnapshotDirStyle
{
    /// <summary>As PBS writes it: <c>2024-05-01T10:00:00Z</c> (impossible on Windows).</summary>
    Colon,

    /// <summary>':' as U+F03A, as Samba's catia module or a Windows copy of the datastore shows it.</summary>
    PrivateUse,

    /// <summary>':' as '_', another common mapping.</summary>
    Underscore,
}

/// <summary>
/// Writes a PBS-format datastore (tests, benchmarks, the demo; not part of the module): the chunk store
/// <c>.chunks/XXXX/&lt;digest&gt;</c>, the <c>.lock</c> file, and snapshots through <see cref="BeginSnapshot"/>.
/// Inserting a chunk is idempotent and safe against concurrent writers (temp file + rename). Thread-safe.
/// </summary>
public sealed class DatastoreWriter
{
    public const string DefaultOwner = "root@pam";
    private static readonly byte[] IvSalt = "PbsRestore.Fixtures deterministic IV v1"u8.ToArray();

    private readonly ConcurrentDictionary<int, bool> _createdPrefixes = new();
    // Chunks being written by this writer right now: a second job with the same digest counts as existing.
    private readonly ConcurrentDictionary<ChunkDigest, byte> _inFlight = new();
    private long _chunksWritten, _chunksExisting, _bytesWritten;

    /// <summary>Creates (or opens) the datastore at <paramref name="rootPath"/>: the folder, <c>.chunks</c> and <c>.lock</c>.</summary>
    public DatastoreWriter(string rootPath)
    {
        RootPath = Path.GetFullPath(rootPath);
        Directory.CreateDirectory(RootPath);
        ChunksPath = Path.Combine(RootPath, ".chunks");
        Directory.CreateDirectory(ChunksPath);
        string lockFile = Path.Combine(RootPath, ".lock");
        if (!File.Exists(lockFile)) File.WriteAllBytes(lockFile, []);
    }

    public string RootPath { get; }
    public string ChunksPath { get; }

    /// <summary>Threads that hash, compress, encrypt and write chunks (the caller's thread generates content).</summary>
    public int MaxParallelism { get; init; } = Math.Max(1, Environment.ProcessorCount);

    /// <summary>The owner written to each group's <c>owner</c> file.</summary>
    public string Owner { get; init; } = DefaultOwner;

    /// <summary>
    /// Derive encryption IVs from the (keyed) chunk digest instead of random ones, so that encrypted datastores
    /// are byte-for-byte reproducible. An IV then repeats only for identical plaintext under the same key.
    /// Upstream uses random IVs; keep the default unless reproducibility matters.
    /// </summary>
    public bool DeterministicIvs { get; init; }

    /// <summary>
    /// zstd framing of compressed chunks and blobs. Null (default) does as upstream: streaming frames (no content
    /// size) for unencrypted data, bulk frames for encrypted data. <see cref="ZstdFrameStyle.Bulk"/> everywhere is
    /// about 2.5x faster to write with ZstdSharp (benchmarks); readers must accept both anyway.
    /// </summary>
    public ZstdFrameStyle? FrameStyle { get; init; }

    /// <summary>A new encoder framing as <see cref="FrameStyle"/> says for data encrypted with <paramref name="crypt"/> or not.</summary>
    public BlobEncoder CreateEncoder(CryptConfig? crypt) =>
        new() { FrameStyle = FrameStyle ?? (crypt is null ? ZstdFrameStyle.Streaming : ZstdFrameStyle.Bulk) };

    /// <summary>Default folder-name style of new snapshots: <see cref="SnapshotDirStyle.Colon"/>, or U+F03A on Windows.</summary>
    public SnapshotDirStyle DirStyle { get; init; } =
        OperatingSystem.IsWindows() ? SnapshotDirStyle.PrivateUse : SnapshotDirStyle.Colon;

    /// <summary>Chunk files written by this writer so far.</summary>
    public long ChunksWritten => Interlocked.Read(ref _chunksWritten);

    /// <summary>Chunk inserts skipped because the chunk was already there.</summary>
    public long ChunksExisting => Interlocked.Read(ref _chunksExisting);

    /// <summary>Bytes of chunk files written by this writer so far.</summary>
    public long ChunkBytesWritten => Interlocked.Read(ref _bytesWritten);

    /// <summary>Starts a snapshot. <paramref name="ns"/> is "" or a path such as "a/b" (stored as <c>ns/a/ns/b</c>).</summary>
    public SnapshotWriter BeginSnapshot(string ns, string type, string id, DateTimeOffset time, CryptConfig? crypt = null,
        SnapshotDirStyle? dirStyle = null) =>
        new(this, ns, type, id, time, crypt, dirStyle ?? DirStyle);

    /// <summary>The path of a chunk file: <c>.chunks/&lt;first 4 hex&gt;/&lt;64 hex&gt;</c>.</summary>
    public string ChunkPath(ChunkDigest digest)
    {
        string hex = digest.ToString();
        return Path.Combine(ChunksPath, hex[..4], hex);
    }

    public bool ChunkExists(ChunkDigest digest) => File.Exists(ChunkPath(digest));

    /// <summary>
    /// Stores an encoded chunk unless a chunk with that digest exists. Returns true when this call wrote it.
    /// The caller vouches that <paramref name="encodedBlob"/> is the DataBlob of the chunk named <paramref name="digest"/>.
    /// </summary>
    public bool InsertChunk(ChunkDigest digest, ReadOnlySpan<byte> encodedBlob)
    {
        string path = ChunkPath(digest);
        if (File.Exists(path))
        {
            Interlocked.Increment(ref _chunksExisting);
            return false;
        }
        EnsurePrefixDir(digest, path);
        WriteAtomically(path, encodedBlob);
        Interlocked.Increment(ref _chunksWritten);
        Interlocked.Add(ref _bytesWritten, encodedBlob.Length);
        return true;
    }

    /// <summary>
    /// Hashes, encodes (zstd level 1 when smaller; encrypted with <paramref name="crypt"/>) and stores a chunk.
    /// Returns its digest (keyed when encrypted) and the encoded size, or -1 when it already existed.
    /// </summary>
    public (ChunkDigest Digest, int EncodedSize) InsertChunk(ReadOnlySpan<byte> plaintext, CryptConfig? crypt, BlobEncoder encoder)
    {
        var digest = ChunkVerifier.ComputeDigest(plaintext, crypt);
        if (ChunkExists(digest) || !_inFlight.TryAdd(digest, 0))
        {
            Interlocked.Increment(ref _chunksExisting);
            return (digest, -1);
        }
        try
        {
            Span<byte> iv = stackalloc byte[FileFormats.IvSize];
            var blob = encoder.Encode(plaintext, crypt, compress: true, crypt is not null && DeterministicIvs ? IvFor(digest, iv) : default);
            return (digest, InsertChunk(digest, blob) ? blob.Length : -1);
        }
        finally
        {
            _inFlight.TryRemove(digest, out _);
        }
    }

    internal ReadOnlySpan<byte> IvFor(ChunkDigest digest, Span<byte> iv)
    {
        Span<byte> input = stackalloc byte[ChunkDigest.Size + 64];
        digest.CopyTo(input);
        IvSalt.CopyTo(input[ChunkDigest.Size..]);
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(input[..(ChunkDigest.Size + IvSalt.Length)], hash);
        hash[..FileFormats.IvSize].CopyTo(iv);
        return iv;
    }

    private void EnsurePrefixDir(ChunkDigest digest, string path)
    {
        Span<byte> b = stackalloc byte[ChunkDigest.Size];
        digest.CopyTo(b);
        int prefix = b[0] << 8 | b[1];
        if (_createdPrefixes.ContainsKey(prefix)) return;
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        _createdPrefixes.TryAdd(prefix, true);
    }

    /// <summary>Writes a file via a unique temp file in the same folder and a rename, so readers never see a partial file.</summary>
    internal static void WriteAtomically(string path, ReadOnlySpan<byte> data)
    {
        string tmp = $"{path}.tmp_{Environment.ProcessId}_{Guid.NewGuid():N}";
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.None))
            {
                fs.Write(data);
            }
            File.Move(tmp, path, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw;
        }
    }

    /// <summary>The snapshot folder name for <paramref name="time"/> in the given style.</summary>
    public static string SnapshotDirName(DateTimeOffset time, SnapshotDirStyle style)
    {
        string name = FormatTime(time);
        return style switch
        {
            SnapshotDirStyle.PrivateUse => name.Replace(':', '\uF03A'),
            SnapshotDirStyle.Underscore => name.Replace(':', '_'),
            _ => name,
        };
    }

    /// <summary>RFC 3339 UTC without fraction, as PBS names snapshots: <c>2024-05-01T10:00:00Z</c>.</summary>
    public static string FormatTime(DateTimeOffset time) =>
        time.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>The group path relative to the datastore, with '/' separators: <c>ns/a/ns/b/vm/100</c>.</summary>
    public static string GroupPath(string ns, string type, string id)
    {
        var parts = new List<string>();
        foreach (var component in SplitNamespace(ns))
        {
            parts.Add("ns");
            parts.Add(component);
        }
        CheckName(type, "backup type");
        CheckName(id, "backup id");
        parts.Add(type);
        parts.Add(id);
        return string.Join('/', parts);
    }

    internal static string[] SplitNamespace(string ns)
    {
        if (string.IsNullOrEmpty(ns)) return [];
        var parts = ns.Split('/');
        if (parts.Length > 7) throw new ArgumentException($"namespace '{ns}' is deeper than PBS allows (7 levels)", nameof(ns));
        foreach (var p in parts) CheckName(p, "namespace component");
        return parts;
    }

    private static void CheckName(string name, string what)
    {
        if (string.IsNullOrEmpty(name) || name is "." or ".." || name.StartsWith('.') ||
            name.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')))
            throw new ArgumentException($"invalid {what} '{name}' (letters, digits, '-', '_', '.'; not starting with '.')");
    }
}
