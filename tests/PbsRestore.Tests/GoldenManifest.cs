using System.Text.Json;
using System.Text.Json.Serialization;
using PbsRestore.Sources.Local;

namespace PbsRestore.Tests;

/// <summary>
/// Typed view of the golden fixture's MANIFEST.json (written by the generator next to the upstream-built
/// datastore). All paths are relative to <see cref="TestPaths.Golden"/>; use <see cref="Read"/> / <see cref="FullPath"/>.
/// </summary>
public sealed class GoldenManifest
{
    private static readonly Lazy<GoldenManifest> Loaded = new(Load);

    /// <summary>The parsed MANIFEST.json (loaded once per test run).</summary>
    public static GoldenManifest Instance => Loaded.Value;

    [JsonPropertyName("set")] public string Set { get; init; } = "";
    [JsonPropertyName("datastore")] public string Datastore { get; init; } = "";
    [JsonPropertyName("snapshots")] public List<GoldenSnapshot> Snapshots { get; init; } = [];
    [JsonPropertyName("keys")] public List<GoldenKey> Keys { get; init; } = [];
    [JsonPropertyName("chunk_store")] public GoldenChunkStore ChunkStore { get; init; } = new();
    [JsonPropertyName("zero_chunks")] public GoldenZeroChunks ZeroChunks { get; init; } = new();

    /// <summary>Absolute path of a MANIFEST-relative path.</summary>
    public static string FullPath(string relative) => TestPaths.GoldenPath(relative);

    /// <summary>Reads a file given by a MANIFEST-relative path.</summary>
    public static byte[] Read(string relative) => File.ReadAllBytes(FullPath(relative));

    public GoldenSnapshot Snapshot(string path) =>
        Snapshots.Single(s => s.Path == path || s.Path.StartsWith(path + "/", StringComparison.Ordinal));

    public GoldenKey Key(string name) => Keys.Single(k => k.Name == name);

    public GoldenChunk Chunk(string digest) => ChunkStore.Chunks.Single(c => c.Digest == digest);

    /// <summary>Every archive (index or blob) of every snapshot, including files not listed in the manifest.</summary>
    public IEnumerable<(GoldenSnapshot Snapshot, GoldenArchive Archive)> AllArchives() =>
        Snapshots.SelectMany(s => s.Archives.Concat(s.ExtraFiles).Select(a => (s, a)));

    private static GoldenManifest Load()
    {
        var path = Path.Combine(TestPaths.Golden, "MANIFEST.json");
        return JsonSerializer.Deserialize<GoldenManifest>(File.ReadAllBytes(path))
               ?? throw new InvalidDataException($"{path} is empty");
    }
}

public sealed class GoldenSnapshot
{
    [JsonPropertyName("backup_type")] public string BackupType { get; init; } = "";
    [JsonPropertyName("backup_id")] public string BackupId { get; init; } = "";
    [JsonPropertyName("backup_time")] public long BackupTime { get; init; }
    [JsonPropertyName("backup_time_rfc3339")] public string BackupTimeRfc3339 { get; init; } = "";
    [JsonPropertyName("crypt_mode")] public string CryptMode { get; init; } = "";
    [JsonPropertyName("encrypted")] public bool Encrypted { get; init; }
    /// <summary>e.g. "datastore/vm/100/2024-05-01T10:00:00Z"</summary>
    [JsonPropertyName("datastore_path")] public string DatastorePath { get; init; } = "";
    /// <summary>Snapshot path inside the datastore, e.g. "ns/dev/vm/102/2024-05-01T10:15:00Z".</summary>
    [JsonPropertyName("path")] public string Path { get; init; } = "";
    [JsonPropertyName("namespace")] public string Namespace { get; init; } = "";
    [JsonPropertyName("namespace_path")] public string NamespacePath { get; init; } = "";
    [JsonPropertyName("key_file")] public string? KeyFile { get; init; }
    [JsonPropertyName("key_password")] public string? KeyPassword { get; init; }
    [JsonPropertyName("key_fingerprint")] public string? KeyFingerprint { get; init; }
    [JsonPropertyName("manifest")] public GoldenSnapshotManifest Manifest { get; init; } = new();
    [JsonPropertyName("archives")] public List<GoldenArchive> Archives { get; init; } = [];
    /// <summary>Files in the snapshot folder that the manifest does not list (client.log.blob).</summary>
    [JsonPropertyName("extra_files")] public List<GoldenArchive> ExtraFiles { get; init; } = [];

    public override string ToString() => Path;

    /// <summary>This snapshot as the sources name it.</summary>
    public PbsRestore.Sources.SnapshotRef Reference =>
        new(PbsRestore.Sources.BackupNamespace.Parse(Namespace), BackupType, BackupId, DateTimeOffset.FromUnixTimeSeconds(BackupTime));

    /// <summary>Opens it from the golden folder datastore.</summary>
    public Task<PbsRestore.Sources.ISnapshotReader> OpenAsync() =>
        new PbsRestore.Sources.Local.LocalDatastore(TestPaths.GoldenPath("datastore")).OpenSnapshotAsync(Reference, default);

    /// <summary>Its key, opened (null when not encrypted); the scrypt key is derived once per run, as it is slow.</summary>
    public PbsRestore.Formats.CryptConfig? OpenKey() =>
        KeyFile is null ? null
        : KeyFile.EndsWith("scrypt.key.json", StringComparison.Ordinal) ? Formats.FormatsTestSupport.ScryptKey
        : PbsRestore.Formats.KeyConfig.Parse(GoldenManifest.Read(KeyFile)).Open(KeyPassword);
}

public sealed class GoldenSnapshotManifest
{
    [JsonPropertyName("path")] public string Path { get; init; } = "";
    [JsonPropertyName("blob_kind")] public string BlobKind { get; init; } = "";
    [JsonPropertyName("crc32")] public string Crc32 { get; init; } = "";
    [JsonPropertyName("encoded_size")] public long EncodedSize { get; init; }
    [JsonPropertyName("file_sha256")] public string FileSha256 { get; init; } = "";
    [JsonPropertyName("decoded_path")] public string DecodedPath { get; init; } = "";
    [JsonPropertyName("decoded_sha256")] public string DecodedSha256 { get; init; } = "";
    [JsonPropertyName("client_uploaded_version_path")] public string? ClientUploadedVersionPath { get; init; }
    [JsonPropertyName("signature")] public string? Signature { get; init; }
}

/// <summary>An index (type "fixed-index" / "dynamic-index") or a blob (type "blob").</summary>
public sealed class GoldenArchive
{
    [JsonPropertyName("type")] public string Type { get; init; } = "";
    /// <summary>Stored name, e.g. "drive-scsi0.img.fidx".</summary>
    [JsonPropertyName("name")] public string Name { get; init; } = "";
    [JsonPropertyName("path")] public string Path { get; init; } = "";
    [JsonPropertyName("in_manifest")] public bool? InManifest { get; init; }
    [JsonPropertyName("manifest_crypt_mode")] public string? ManifestCryptMode { get; init; }
    [JsonPropertyName("encrypted")] public bool? Encrypted { get; init; }
    [JsonPropertyName("plaintext_path")] public string PlaintextPath { get; init; } = "";
    [JsonPropertyName("plaintext_sha256")] public string PlaintextSha256 { get; init; } = "";
    [JsonPropertyName("plaintext_size")] public long PlaintextSize { get; init; }

    // blobs
    [JsonPropertyName("blob_kind")] public string? BlobKind { get; init; }
    [JsonPropertyName("crc32")] public string? Crc32 { get; init; }
    [JsonPropertyName("encoded_size")] public long? EncodedSize { get; init; }
    [JsonPropertyName("file_sha256")] public string? FileSha256 { get; init; }
    [JsonPropertyName("iv")] public string? Iv { get; init; }
    [JsonPropertyName("tag")] public string? Tag { get; init; }

    // indexes
    [JsonPropertyName("index_csum")] public string? IndexCsum { get; init; }
    [JsonPropertyName("size")] public long? Size { get; init; }
    [JsonPropertyName("chunk_size")] public int? ChunkSize { get; init; }
    [JsonPropertyName("chunk_size_avg")] public int? ChunkSizeAvg { get; init; }
    [JsonPropertyName("chunk_count")] public int? ChunkCount { get; init; }
    [JsonPropertyName("unique_chunk_count")] public int? UniqueChunkCount { get; init; }
    [JsonPropertyName("zero_chunk_count")] public int? ZeroChunkCount { get; init; }
    [JsonPropertyName("ctime")] public long? CTime { get; init; }
    [JsonPropertyName("file_size")] public long? FileSize { get; init; }
    [JsonPropertyName("uuid")] public string? Uuid { get; init; }
    [JsonPropertyName("uuid_string")] public string? UuidString { get; init; }
    [JsonPropertyName("chunks")] public List<GoldenChunk> Chunks { get; init; } = [];

    public bool IsFixedIndex => Type == "fixed-index";
    public bool IsDynamicIndex => Type == "dynamic-index";
    public bool IsBlob => Type == "blob";

    public override string ToString() => Path;
}

/// <summary>A chunk file, or (inside an archive's chunk list) one index entry with its position.</summary>
public sealed class GoldenChunk
{
    [JsonPropertyName("digest")] public string Digest { get; init; } = "";
    /// <summary>"uncompressed", "compressed", "encrypted" or "encrypted+compressed".</summary>
    [JsonPropertyName("blob_kind")] public string BlobKind { get; init; } = "";
    [JsonPropertyName("crc32")] public string Crc32 { get; init; } = "";
    [JsonPropertyName("encoded_size")] public long EncodedSize { get; init; }
    [JsonPropertyName("magic_hex")] public string MagicHex { get; init; } = "";
    [JsonPropertyName("path")] public string Path { get; init; } = "";
    [JsonPropertyName("iv")] public string? Iv { get; init; }
    [JsonPropertyName("tag")] public string? Tag { get; init; }

    // index entry fields (only in an archive's chunk list)
    [JsonPropertyName("index")] public int Index { get; init; }
    [JsonPropertyName("offset")] public long Offset { get; init; }
    [JsonPropertyName("end")] public long End { get; init; }
    [JsonPropertyName("length")] public int Length { get; init; }
    [JsonPropertyName("is_zero")] public bool IsZero { get; init; }

    public bool IsEncrypted => BlobKind.StartsWith("encrypted", StringComparison.Ordinal);

    public override string ToString() => $"{Digest} ({BlobKind})";
}

public sealed class GoldenChunkStore
{
    [JsonPropertyName("chunk_files")] public int ChunkFiles { get; init; }
    [JsonPropertyName("chunks")] public List<GoldenChunk> Chunks { get; init; } = [];
}

public sealed class GoldenKey
{
    /// <summary>"scrypt.key.json" or "none.key.json".</summary>
    [JsonPropertyName("name")] public string Name { get; init; } = "";
    [JsonPropertyName("path")] public string Path { get; init; } = "";
    /// <summary>"scrypt" or "none".</summary>
    [JsonPropertyName("kdf")] public string Kdf { get; init; } = "";
    [JsonPropertyName("password")] public string? Password { get; init; }
    [JsonPropertyName("raw_key_hex")] public string RawKeyHex { get; init; } = "";
    [JsonPropertyName("id_key_hex")] public string IdKeyHex { get; init; } = "";
    [JsonPropertyName("fingerprint")] public string Fingerprint { get; init; } = "";
    [JsonPropertyName("fingerprint_short")] public string FingerprintShort { get; init; } = "";
    [JsonPropertyName("zero_chunk_digest_64KiB")] public string ZeroChunkDigest64KiB { get; init; } = "";
    [JsonPropertyName("zero_chunk_digest_4MiB")] public string ZeroChunkDigest4MiB { get; init; } = "";
    [JsonPropertyName("key_file_json")] public JsonElement KeyFileJson { get; init; }

    public override string ToString() => Name;
}

public sealed class GoldenZeroChunks
{
    [JsonPropertyName("sha256_zero_64KiB")] public string Sha256Zero64KiB { get; init; } = "";
    [JsonPropertyName("sha256_zero_4MiB")] public string Sha256Zero4MiB { get; init; } = "";
}
