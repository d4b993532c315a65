using System.Buffers.Binary;
using System.IO.Hashing;
using ZstdSharp;

namespace PbsRestore.Formats;

/// <summary>How a zstd payload is framed. Upstream writes streaming frames (no content size) for plain
/// chunks and bulk frames (with content size) for encrypted ones; readers must accept both.</summary>
public enum ZstdFrameStyle
{
    Bulk,
    Streaming,
}

/// <summary>
/// Encodes DataBlobs as upstream's writer does (DataBlob::encode): zstd level 1, and the compressed form is
/// kept only when it is smaller than the plaintext. Used by the datastore writer for tests, benchmarks and the
/// demo; restore never encodes. Not thread-safe (owns a zstd context).
/// </summary>
public sealed class BlobEncoder : IDisposable
{
    private readonly Compressor _zstd = new(1);

    public ZstdFrameStyle FrameStyle { get; init; } = ZstdFrameStyle.Streaming;

    /// <param name="data">The plaintext.</param>
    /// <param name="crypt">Encrypt with this key when given.</param>
    /// <param name="compress">Try zstd; kept only when smaller.</param>
    /// <param name="iv">The 16-byte IV for encryption; random when null.</param>
    public byte[] Encode(ReadOnlySpan<byte> data, CryptConfig? crypt, bool compress, ReadOnlySpan<byte> iv = default)
    {
        byte[]? compressed = compress ? Compress(data) : null;
        bool useCompressed = compressed is not null && compressed.Length < data.Length;
        ReadOnlySpan<byte> payload = useCompressed ? compressed : data;

        if (crypt is null)
        {
            var kind = useCompressed ? BlobKind.Compressed : BlobKind.Uncompressed;
            var raw = new byte[FileFormats.BlobHeaderSize + payload.Length];
            DataBlob.Magic(kind).CopyTo(raw);
            payload.CopyTo(raw.AsSpan(FileFormats.BlobHeaderSize));
            BinaryPrimitives.WriteUInt32LittleEndian(raw.AsSpan(8), Crc32.HashToUInt32(raw.AsSpan(FileFormats.BlobHeaderSize)));
            return raw;
        }
        else
        {
            var kind = useCompressed ? BlobKind.EncryptedCompressed : BlobKind.Encrypted;
            var raw = new byte[FileFormats.EncryptedBlobHeaderSize + payload.Length];
            DataBlob.Magic(kind).CopyTo(raw);
            Span<byte> ivBytes = raw.AsSpan(12, 16);
            if (iv.IsEmpty) System.Security.Cryptography.RandomNumberGenerator.Fill(ivBytes);
            else iv.CopyTo(ivBytes);
            crypt.Encrypt(ivBytes, payload, raw.AsSpan(FileFormats.EncryptedBlobHeaderSize), raw.AsSpan(28, 16));
            BinaryPrimitives.WriteUInt32LittleEndian(raw.AsSpan(8), Crc32.HashToUInt32(raw.AsSpan(FileFormats.EncryptedBlobHeaderSize)));
            return raw;
        }
    }

    private byte[] Compress(ReadOnlySpan<byte> data)
    {
        if (FrameStyle == ZstdFrameStyle.Bulk) return _zstd.Wrap(data).ToArray();
        // A streaming frame carries no content size, as upstream's zstd::stream::Encoder writes it.
        using var output = new MemoryStream();
        using (var stream = new CompressionStream(output, 1, leaveOpen: true))
            stream.Write(data);
        return output.ToArray();
    }

    public void Dispose() => _zstd.Dispose();
}
