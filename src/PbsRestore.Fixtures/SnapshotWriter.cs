using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using PbsRestore.Formats;

namespace PbsRestore.Fixtures;

/// <summary>One archive or blob written into a snapshot.</summary>
/// <param name="FileName">Stored name, e.g. <c>drive-scsi0.img.fidx</c>.</param>
/// <param name="ArchiveName">Name as users see it, e.g. <c>drive-scsi0.img</c>.</param>
/// <param name="Size">Logical (plaintext) size of the archive or blob.</param>
/// <param name="Sha256">Lower-case hex SHA-256 of the plaintext, computed while streaming.</param>
/// <param name="ManifestSize">The manifest's size: logical size for an index, file size for a blob.</param>
/// <param name="Csum">The manifest's csum (hex): index checksum, or SHA-256 of the blob file.</param>
/// <param name="FileSize">Size of the stored .fidx/.didx/.blob file.</param>
/// <param name="ChunkCount">Index entries (0 for a blob).</param>
/// <param name="ChunkSize">Fixed chunk size, or the largest dynamic chunk (0 for a blob).</param>
public sealed record ArchiveInfo(
    string FileName, string ArchiveName, ArchiveKind Kind, CryptMode CryptMode, long Size, string Sha256,
    long ManifestSize, string Csum, long FileSize, int ChunkCount, int ChunkSize);

/// <summary>A finished snapshot.</summary>
/// <param name="Path">PBS-style path relative to the datastore, with ':' in the time: <c>ns/a/vm/100/2024-05-01T10:00:00Z</c>.</param>
/// <param name="Directory">The snapshot folder on disk (with the folder-name mapping applied).</param>
/// <param name="BackupTime">Epoch seconds.</param>
/// <param name="KeyFingerprint">The key's fingerprint (colon hex) when encrypted.</param>
public sealed record SnapshotInfo(
    string Path, string Directory, string Namespace, string BackupType, string BackupId, DateTimeOffset Time,
    long BackupTime, IReadOnlyList<ArchiveInfo> Archives, string? KeyFingerprint);

/// <summary>
/// Writes one snapshot: archives and blobs as they are added, then the manifest and the group's owner file
/// on <see cref="Finish"/>. Chunks are processed in parallel and streamed: memory does not grow with the
/// archive size, except for the digest list (32 bytes per chunk). Not thread-safe (one archive at a time);
/// several snapshots may be written concurrently.
/// </summary>
public sealed class SnapshotWriter
{
    public const int DefaultChunkSize = 4 << 20;
    private static readonly byte[] Zeros = new byte[1 << 20];

    private readonly DatastoreWriter _store;
    private readonly List<ArchiveInfo> _archives = [];
    private readonly List<ManifestFile> _files = [];
    private readonly string _groupDir;
    private long _statCount, _statDuplicates, _statSize, _statCompressed;
    private SnapshotInfo? _finished;

    internal SnapshotWriter(DatastoreWriter store, string ns, string type, string id, DateTimeOffset time, CryptConfig? crypt, SnapshotDirStyle style)
    {
        _store = store;
        Namespace = string.Join('/', DatastoreWriter.SplitNamespace(ns));
        BackupType = type;
        BackupId = id;
        Time = DateTimeOffset.FromUnixTimeSeconds(time.ToUnixTimeSeconds());
        Crypt = crypt;
        string group = DatastoreWriter.GroupPath(ns, type, id);
        Path = group + "/" + DatastoreWriter.FormatTime(Time);
        _groupDir = System.IO.Path.Combine(store.RootPath, group.Replace('/', System.IO.Path.DirectorySeparatorChar));
        Directory = System.IO.Path.Combine(_groupDir, DatastoreWriter.SnapshotDirName(Time, style));
        if (File.Exists(System.IO.Path.Combine(Directory, FileFormats.ManifestBlobName)))
            throw new IOException($"snapshot {Path} already exists in {store.RootPath}");
        System.IO.Directory.CreateDirectory(Directory);
    }

    public string Namespace { get; }
    public string BackupType { get; }
    public string BackupId { get; }
    public DateTimeOffset Time { get; }
    public CryptConfig? Crypt { get; }

    /// <summary>PBS-style snapshot path relative to the datastore (always with ':').</summary>
    public string Path { get; }

    /// <summary>The snapshot folder on disk.</summary>
    public string Directory { get; }

    public IReadOnlyList<ArchiveInfo> Archives => _archives;

    private CryptMode Mode => Crypt is null ? CryptMode.None : CryptMode.Encrypt;

    /// <summary>
    /// Writes a disk image as <c>&lt;name&gt;.fidx</c> (name such as <c>drive-scsi0.img</c>) with fixed chunks of
    /// <paramref name="chunkSize"/> (a power of two). Like upstream, the full-size zero chunk is always stored.
    /// <paramref name="hashZeroChunks"/> false skips the zero chunks when computing <see cref="ArchiveInfo.Sha256"/>
    /// (which then hashes only the other chunks, not the image): hashing a mostly empty 1 TiB image takes minutes.
    /// </summary>
    public ArchiveInfo AddImage(string name, IImageContent content, int chunkSize = DefaultChunkSize, bool hashZeroChunks = true)
    {
        string stored = StoredName(name, ".fidx");
        CheckChunkSize(chunkSize);
        long size = content.Size;
        long count = (size + chunkSize - 1) / chunkSize;
        if (count > int.MaxValue) throw new ArgumentException("too many chunks", nameof(content));
        var digests = new ChunkDigest[count];
        var zeroDigest = ChunkVerifier.ZeroChunkDigest(chunkSize, Crypt);
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        using (var pipeline = new ChunkPipeline(_store, Crypt, chunkSize, (slot, d) => digests[slot] = d))
        {
            SubmitZeroChunk(pipeline, chunkSize);
            for (long i = 0; i < count; i++)
            {
                int length = (int)Math.Min(chunkSize, size - i * chunkSize);
                var buffer = pipeline.Rent();
                var span = buffer.AsSpan(0, length);
                if (content.Fill(i, chunkSize, span) == ChunkFill.Zero)
                {
                    if (hashZeroChunks) AppendZeros(sha, length);
                    if (length == chunkSize)
                    {
                        digests[i] = zeroDigest;
                        pipeline.Return(buffer);
                        continue;
                    }
                    span.Clear();
                }
                else
                {
                    sha.AppendData(span);
                }
                pipeline.Submit(buffer, length, i);
            }
            pipeline.Complete();
            AddStats(pipeline);
        }
        return WriteFixedIndex(stored, name, size, chunkSize, digests, sha);
    }

    /// <summary>Writes a disk image read sequentially from <paramref name="content"/> to its end.</summary>
    public ArchiveInfo AddImage(string name, Stream content, int chunkSize = DefaultChunkSize)
    {
        string stored = StoredName(name, ".fidx");
        CheckChunkSize(chunkSize);
        var digests = new List<ChunkDigest>();
        var gate = new object();
        var zeroDigest = ChunkVerifier.ZeroChunkDigest(chunkSize, Crypt);
        long size = 0;
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        using (var pipeline = new ChunkPipeline(_store, Crypt, chunkSize, (slot, d) => { lock (gate) digests[(int)slot] = d; }))
        {
            SubmitZeroChunk(pipeline, chunkSize);
            for (int i = 0; ; i++)
            {
                var buffer = pipeline.Rent();
                int length = content.ReadAtLeast(buffer.AsSpan(0, chunkSize), chunkSize, throwOnEndOfStream: false);
                if (length == 0)
                {
                    pipeline.Return(buffer);
                    break;
                }
                var span = buffer.AsSpan(0, length);
                sha.AppendData(span);
                size += length;
                lock (gate) digests.Add(zeroDigest);
                if (length == chunkSize && !span.ContainsAnyExcept((byte)0)) pipeline.Return(buffer);
                else pipeline.Submit(buffer, length, i);
                if (length < chunkSize) break;
            }
            pipeline.Complete();
            AddStats(pipeline);
        }
        return WriteFixedIndex(stored, name, size, chunkSize, digests, sha);
    }

    /// <summary>
    /// Writes a dynamic archive read sequentially from <paramref name="content"/>. <paramref name="name"/> is the
    /// archive name (<c>root.pxar</c> → <c>root.pxar.didx</c>) or the stored name (<c>data.didx</c>).
    /// Default chunking: content-defined, 4 MiB average, as upstream.
    /// </summary>
    public ArchiveInfo AddDynamic(string name, Stream content, DynamicChunking? chunking = null)
    {
        string stored = StoredName(name, ".didx");
        chunking ??= DynamicChunking.ContentDefined();
        int max = chunking.MaxChunkSize;
        if (max > FileFormats.MaxBlobSize) throw new ArgumentException("chunks larger than 128 MiB", nameof(chunking));
        var ends = new List<long>();
        var digests = new List<ChunkDigest>();
        var gate = new object();
        long total = 0;
        int largest = 0;
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        using (var pipeline = new ChunkPipeline(_store, Crypt, max, (slot, d) => { lock (gate) digests[(int)slot] = d; }))
        {
            var buffer = pipeline.Rent();
            int filled = 0;
            for (long index = 0; ; index++)
            {
                filled += content.ReadAtLeast(buffer.AsSpan(filled, max - filled), max - filled, throwOnEndOfStream: false);
                if (filled == 0)
                {
                    pipeline.Return(buffer);
                    break;
                }
                bool atEnd = filled < max;
                int cut = chunking.NextCut(buffer.AsSpan(0, filled), atEnd, index);
                if (cut < 1 || cut > filled) throw new InvalidOperationException($"chunking cut {cut} of {filled} bytes");
                sha.AppendData(buffer.AsSpan(0, cut));
                total += cut;
                largest = Math.Max(largest, cut);
                ends.Add(total);
                lock (gate) digests.Add(default);
                var next = pipeline.Rent();
                buffer.AsSpan(cut, filled - cut).CopyTo(next);
                filled -= cut;
                pipeline.Submit(buffer, cut, index);
                buffer = next;
            }
            pipeline.Complete();
            AddStats(pipeline);
        }
        var entries = new (long End, ChunkDigest Digest)[ends.Count];
        for (int i = 0; i < entries.Length; i++) entries[i] = (ends[i], digests[i]);
        var bytes = DynamicIndex.Build(IndexUuid(stored), Time, entries);
        var parsed = DynamicIndex.Parse(bytes, stored);
        return AddIndexFile(stored, ArchiveKind.DynamicIndex, bytes, parsed, sha, largest);
    }

    /// <summary>
    /// Writes a blob (<c>qemu-server.conf</c> → <c>qemu-server.conf.blob</c>), zstd-compressed when smaller and
    /// encrypted when <paramref name="encrypt"/> (default: when the snapshot has a key).
    /// </summary>
    public ArchiveInfo AddBlob(string name, byte[] plaintext, bool? encrypt = null)
    {
        string stored = StoredName(name, ".blob");
        if (stored == FileFormats.ManifestBlobName) throw new ArgumentException("index.json.blob is the manifest", nameof(name));
        bool enc = encrypt ?? Crypt is not null;
        if (enc && Crypt is null) throw new InvalidOperationException("the snapshot has no key to encrypt with");
        var crypt = enc ? Crypt : null;
        Span<byte> iv = stackalloc byte[FileFormats.IvSize];
        byte[] blob;
        using (var encoder = _store.CreateEncoder(crypt))
            blob = encoder.Encode(plaintext, crypt, compress: true,
                crypt is not null && _store.DeterministicIvs ? _store.IvFor(crypt.ComputeDigest(plaintext), iv) : default);
        DatastoreWriter.WriteAtomically(FilePath(stored), blob);
        var csum = SHA256.HashData(blob);
        var mode = enc ? CryptMode.Encrypt : CryptMode.None;
        _files.Add(new ManifestFile(stored, mode, blob.Length, csum));
        var info = new ArchiveInfo(stored, ArchiveNames.DisplayName(stored), ArchiveKind.Blob, mode, plaintext.Length,
            Convert.ToHexStringLower(SHA256.HashData(plaintext)), blob.Length, Convert.ToHexStringLower(csum), blob.Length, 0, 0);
        _archives.Add(info);
        return info;
    }

    /// <summary>
    /// Writes the manifest (<c>index.json.blob</c>: signed and with the key fingerprint when encrypted, plus
    /// upstream's <c>chunk_upload_stats</c>) and the group's <c>owner</c> file if missing.
    /// </summary>
    public SnapshotInfo Finish(JsonObject? unprotected = null)
    {
        if (_finished is not null) return _finished;
        var unprot = unprotected is null ? new JsonObject() : (JsonObject)unprotected.DeepClone();
        if (!unprot.ContainsKey("chunk_upload_stats") && _statCount > 0)
            unprot["chunk_upload_stats"] = new JsonObject
            {
                ["compressed_size"] = _statCompressed,
                ["count"] = _statCount,
                ["duplicates"] = _statDuplicates,
                ["size"] = _statSize,
            };
        var json = BackupManifest.Build(BackupType, BackupId, Time.ToUnixTimeSeconds(), _files, Crypt, unprot);
        byte[] blob;
        using (var encoder = _store.CreateEncoder(null))
            blob = encoder.Encode(json, null, compress: true);
        DatastoreWriter.WriteAtomically(FilePath(FileFormats.ManifestBlobName), blob);
        string owner = System.IO.Path.Combine(_groupDir, "owner");
        if (!File.Exists(owner)) DatastoreWriter.WriteAtomically(owner, Encoding.UTF8.GetBytes(_store.Owner + "\n"));
        _finished = new SnapshotInfo(Path, Directory, Namespace, BackupType, BackupId, Time, Time.ToUnixTimeSeconds(),
            _archives.ToArray(), Crypt?.Fingerprint.ToString());
        return _finished;
    }

    private void SubmitZeroChunk(ChunkPipeline pipeline, int chunkSize)
    {
        var zero = pipeline.Rent();
        zero.AsSpan(0, chunkSize).Clear();
        pipeline.Submit(zero, chunkSize, -1);
    }

    private ArchiveInfo WriteFixedIndex(string stored, string name, long size, int chunkSize, IReadOnlyList<ChunkDigest> digests, IncrementalHash sha)
    {
        var bytes = FixedIndex.Build(IndexUuid(stored), Time, size, chunkSize, digests);
        var index = FixedIndex.Parse(bytes, stored);
        return AddIndexFile(stored, ArchiveKind.FixedIndex, bytes, index, sha, chunkSize);
    }

    private ArchiveInfo AddIndexFile(string stored, ArchiveKind kind, byte[] bytes, IChunkIndex index, IncrementalHash sha, int chunkSize)
    {
        DatastoreWriter.WriteAtomically(FilePath(stored), bytes);
        var csum = index.ComputeCsum();
        _files.Add(new ManifestFile(stored, Mode, index.Size, csum));
        var info = new ArchiveInfo(stored, ArchiveNames.DisplayName(stored), kind, Mode, index.Size,
            Convert.ToHexStringLower(sha.GetHashAndReset()), index.Size, Convert.ToHexStringLower(csum), bytes.Length,
            index.Count, chunkSize);
        _archives.Add(info);
        return info;
    }

    private void AddStats(ChunkPipeline p)
    {
        _statCount += p.Count;
        _statDuplicates += p.Duplicates;
        _statSize += p.PlainBytes;
        _statCompressed += p.EncodedBytes;
    }

    private string StoredName(string name, string suffix)
    {
        if (_finished is not null) throw new InvalidOperationException($"snapshot {Path} is finished");
        string stored = name.EndsWith(suffix, StringComparison.Ordinal) ? name : name + suffix;
        if (!ArchiveNames.IsValidStoredName(stored) || ArchiveNames.KindOf(stored) != ArchiveNames.KindOf("x" + suffix))
            throw new ArgumentException($"invalid archive name '{name}'", nameof(name));
        if (_files.Any(f => f.FileName == stored) || stored == FileFormats.ManifestBlobName && suffix != ".blob")
            throw new ArgumentException($"snapshot {Path} already has '{stored}'", nameof(name));
        return stored;
    }

    private string FilePath(string stored) => System.IO.Path.Combine(Directory, stored);

    private Guid IndexUuid(string stored)
    {
        // Deterministic (upstream: random v4) so that rewriting a datastore gives the same bytes.
        var h = SHA256.HashData(Encoding.UTF8.GetBytes($"{Path}/{stored}"));
        h[6] = (byte)(h[6] & 0x0F | 0x40);
        h[8] = (byte)(h[8] & 0x3F | 0x80);
        return new Guid(h.AsSpan(0, 16), bigEndian: true);
    }

    private static void CheckChunkSize(int chunkSize)
    {
        if (chunkSize < FixedIndex.MinChunkSize || chunkSize > FileFormats.MaxBlobSize || (chunkSize & (chunkSize - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(chunkSize), chunkSize, "a power of two between 512 bytes and 128 MiB");
    }

    private static void AppendZeros(IncrementalHash sha, long length)
    {
        while (length > 0)
        {
            int n = (int)Math.Min(length, Zeros.Length);
            sha.AppendData(Zeros, 0, n);
            length -= n;
        }
    }
}
