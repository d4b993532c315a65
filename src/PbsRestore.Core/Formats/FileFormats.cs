namespace PbsRestore.Formats;

/// <summary>
/// Magic numbers and fixed sizes of the PBS on-disk formats (upstream: pbs-datastore/src/file_formats.rs,
/// fixed_index.rs, dynamic_index.rs). Each magic is the first 8 bytes of SHA-256 over the text beside it;
/// FileFormatsTests recomputes them. Never change these values: they are what PBS writes.
/// </summary>
public static class FileFormats
{
    /// <summary>SHA-256("Proxmox Backup uncompressed blob v1.0")[0..8]</summary>
    public static ReadOnlySpan<byte> UncompressedBlobMagic => [66, 171, 56, 7, 190, 131, 112, 161];

    /// <summary>SHA-256("Proxmox Backup zstd compressed blob v1.0")[0..8]</summary>
    public static ReadOnlySpan<byte> CompressedBlobMagic => [49, 185, 88, 66, 111, 182, 163, 127];

    /// <summary>SHA-256("Proxmox Backup encrypted blob v1.0")[0..8]</summary>
    public static ReadOnlySpan<byte> EncryptedBlobMagic => [123, 103, 133, 190, 34, 45, 76, 240];

    /// <summary>SHA-256("Proxmox Backup zstd compressed encrypted blob v1.0")[0..8]</summary>
    public static ReadOnlySpan<byte> EncryptedCompressedBlobMagic => [230, 89, 27, 191, 11, 191, 216, 11];

    /// <summary>SHA-256("Proxmox Backup fixed sized chunk index v1.0")[0..8]</summary>
    public static ReadOnlySpan<byte> FixedIndexMagic => [47, 127, 65, 237, 145, 253, 15, 205];

    /// <summary>SHA-256("Proxmox Backup dynamic sized chunk index v1.0")[0..8]</summary>
    public static ReadOnlySpan<byte> DynamicIndexMagic => [28, 145, 78, 165, 25, 186, 179, 205];

    /// <summary>magic(8) + crc32(4)</summary>
    public const int BlobHeaderSize = 12;

    /// <summary>magic(8) + crc32(4) + iv(16) + tag(16)</summary>
    public const int EncryptedBlobHeaderSize = 44;

    public const int IvSize = 16;
    public const int TagSize = 16;

    /// <summary>Upstream's MAX_BLOB_SIZE: no blob, and so no chunk, is larger.</summary>
    public const int MaxBlobSize = 128 * 1024 * 1024;

    /// <summary>Both index kinds start with a 4096-byte header.</summary>
    public const int IndexHeaderSize = 4096;

    /// <summary>SHA-256("Proxmox Backup Encryption Key Fingerprint"), hashed with the id key to give a key's fingerprint.</summary>
    public static ReadOnlySpan<byte> FingerprintInput =>
    [
        110, 208, 239, 119, 71, 31, 255, 77, 85, 199, 168, 254, 74, 157, 182, 33,
        97, 64, 127, 19, 76, 114, 93, 223, 48, 153, 45, 37, 236, 69, 237, 38,
    ];

    /// <summary>The manifest of every snapshot.</summary>
    public const string ManifestBlobName = "index.json.blob";
}
