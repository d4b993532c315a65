using System.Buffers.Binary;
using System.IO.Hashing;

namespace PbsRestore.Formats;

/// <summary>The four DataBlob kinds, told apart by their magic.</summary>
public enum BlobKind
{
    Uncompressed,
    Compressed,
    Encrypted,
    EncryptedCompressed,
}

/// <summary>
/// The DataBlob container (upstream: pbs-datastore/src/data_blob.rs): every chunk and every small file of a
/// snapshot is one. Layout: magic(8) || crc32(4, LE) || payload, or for encrypted kinds
/// magic(8) || crc32(4) || iv(16) || tag(16) || ciphertext. The CRC covers every byte after the header
/// and only detects storage rot; the digest and the GCM tag are the real checks.
/// Stateless helpers; decoding lives in <see cref="BlobDecoder"/> because it needs per-thread state.
/// </summary>
public static class DataBlob
{
    /// <summary>Reads the kind from the magic. Throws <see cref="PbsFormatException"/> on short input or unknown magic.</summary>
    public static BlobKind GetKind(ReadOnlySpan<byte> raw)
    {
        if (raw.Length < FileFormats.BlobHeaderSize)
            throw new PbsFormatException($"blob too small ({raw.Length} bytes, a header alone has {FileFormats.BlobHeaderSize})", "BlobTruncated");
        var magic = raw[..8];
        BlobKind kind;
        if (magic.SequenceEqual(FileFormats.UncompressedBlobMagic)) kind = BlobKind.Uncompressed;
        else if (magic.SequenceEqual(FileFormats.CompressedBlobMagic)) kind = BlobKind.Compressed;
        else if (magic.SequenceEqual(FileFormats.EncryptedBlobMagic)) kind = BlobKind.Encrypted;
        else if (magic.SequenceEqual(FileFormats.EncryptedCompressedBlobMagic)) kind = BlobKind.EncryptedCompressed;
        else throw new PbsFormatException($"not a PBS blob (unknown magic {Hex.Lower(magic)})", "BlobBadMagic");
        if (IsEncrypted(kind) && raw.Length < FileFormats.EncryptedBlobHeaderSize)
            throw new PbsFormatException($"encrypted blob too small ({raw.Length} bytes, its header alone has {FileFormats.EncryptedBlobHeaderSize})", "BlobTruncated");
        if (raw.Length > FileFormats.MaxBlobSize)
            throw new PbsFormatException($"blob of {raw.Length} bytes exceeds the maximum of {FileFormats.MaxBlobSize}", "BlobTooLarge");
        return kind;
    }

    public static bool IsEncrypted(BlobKind kind) => kind is BlobKind.Encrypted or BlobKind.EncryptedCompressed;
    public static bool IsCompressed(BlobKind kind) => kind is BlobKind.Compressed or BlobKind.EncryptedCompressed;

    public static int HeaderSize(BlobKind kind) => IsEncrypted(kind) ? FileFormats.EncryptedBlobHeaderSize : FileFormats.BlobHeaderSize;

    public static ReadOnlySpan<byte> Magic(BlobKind kind) => kind switch
    {
        BlobKind.Uncompressed => FileFormats.UncompressedBlobMagic,
        BlobKind.Compressed => FileFormats.CompressedBlobMagic,
        BlobKind.Encrypted => FileFormats.EncryptedBlobMagic,
        _ => FileFormats.EncryptedCompressedBlobMagic,
    };

    /// <summary>The CRC stored in the header.</summary>
    public static uint StoredCrc(ReadOnlySpan<byte> raw) => BinaryPrimitives.ReadUInt32LittleEndian(raw[8..12]);

    /// <summary>CRC32 (IEEE) of the bytes after the header, as upstream computes it.</summary>
    public static uint ComputeCrc(ReadOnlySpan<byte> raw, BlobKind kind) => Crc32.HashToUInt32(raw[HeaderSize(kind)..]);

    /// <summary>Throws <see cref="PbsIntegrityException"/> (id BlobCrcMismatch) when the stored CRC is wrong.</summary>
    public static void VerifyCrc(ReadOnlySpan<byte> raw, BlobKind kind)
    {
        uint stored = StoredCrc(raw), actual = ComputeCrc(raw, kind);
        if (stored != actual)
            throw new PbsIntegrityException("BlobCrcMismatch", $"blob CRC mismatch (stored {stored:x8}, computed {actual:x8})");
    }

    /// <summary>
    /// Which crypt mode the chunks of a manifest entry must have: an encrypted archive references only
    /// encrypted chunks; plain and sign-only archives only unencrypted ones (upstream FileInfo::chunk_crypt_mode).
    /// Every opened archive takes its crypt mode from here (<c>Sources.OpenedArchive.Encrypted</c>).
    /// </summary>
    public static bool ChunkMustBeEncrypted(CryptMode archiveMode) => archiveMode == CryptMode.Encrypt;
}
