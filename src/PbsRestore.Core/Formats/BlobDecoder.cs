using ZstdSharp;
using ZstdSharp.Unsafe;

namespace PbsRestore.Formats;

/// <summary>
/// Decodes DataBlobs: CRC check, AES-GCM decryption, zstd decompression (frames with or without a content
/// size). One instance per worker thread: it owns a zstd context and a scratch buffer and is not thread-safe.
/// Nothing is written to the destination unless it passed the CRC and, when encrypted, the GCM tag.
/// </summary>
public sealed class BlobDecoder : IDisposable
{
    private readonly CryptConfig? _crypt;
    private readonly int _maxDecodedSize;
    private readonly Decompressor _zstd = new();
    private byte[] _scratch = [];

    /// <param name="crypt">The key, or null for unencrypted data (encrypted blobs are then refused).</param>
    /// <param name="maxDecodedSize">Upper bound of a decoded blob: the index chunk size for chunks. A payload
    /// that expands beyond it is rejected as corrupt or hostile rather than allocated.</param>
    public BlobDecoder(CryptConfig? crypt, int maxDecodedSize)
    {
        if (maxDecodedSize <= 0 || maxDecodedSize > FileFormats.MaxBlobSize)
            throw new ArgumentOutOfRangeException(nameof(maxDecodedSize));
        _crypt = crypt;
        _maxDecodedSize = maxDecodedSize;
    }

    public int MaxDecodedSize => _maxDecodedSize;

    /// <summary>
    /// Decodes <paramref name="raw"/> into <paramref name="destination"/> (at least <see cref="MaxDecodedSize"/>
    /// bytes, or the exact plaintext size if known) and returns the plaintext length. Does not check a digest:
    /// see <see cref="ChunkVerifier"/>.
    /// </summary>
    public int Decode(ReadOnlySpan<byte> raw, Span<byte> destination)
    {
        var kind = DataBlob.GetKind(raw);
        DataBlob.VerifyCrc(raw, kind);
        var payload = raw[DataBlob.HeaderSize(kind)..];
        int limit = Math.Min(destination.Length, _maxDecodedSize);
        switch (kind)
        {
            case BlobKind.Uncompressed:
                if (payload.Length > limit) throw TooLarge(payload.Length);
                payload.CopyTo(destination);
                return payload.Length;

            case BlobKind.Compressed:
                return Decompress(payload, destination[..limit]);

            case BlobKind.Encrypted:
            {
                var crypt = RequireKey();
                if (payload.Length > limit) throw TooLarge(payload.Length);
                crypt.Decrypt(raw.Slice(12, 16), raw.Slice(28, 16), payload, destination);
                return payload.Length;
            }

            default:
            {
                var crypt = RequireKey();
                // The compressed form is never larger than the plaintext it replaced, so this bounds the scratch buffer.
                if (payload.Length > _maxDecodedSize) throw TooLarge(payload.Length);
                if (_scratch.Length < payload.Length) _scratch = new byte[Math.Max(payload.Length, Math.Min(_maxDecodedSize, 4 << 20))];
                crypt.Decrypt(raw.Slice(12, 16), raw.Slice(28, 16), payload, _scratch);
                return Decompress(_scratch.AsSpan(0, payload.Length), destination[..limit]);
            }
        }
    }

    /// <summary>
    /// The one verified decode of a chunk or a blob (upstream's DataBlob::decode with its digest check): the blob's
    /// crypt mode must be the one its archive's manifest entry implies (<see cref="DataBlob.ChunkMustBeEncrypted"/>),
    /// an encrypted one needs the key, then the CRC, the GCM tag, decompression within the size bound, the exact
    /// length and the digest when <paramref name="expect"/> knows them. On any failure <paramref name="plaintext"/>
    /// is cleared, so no byte that failed a check is left for anyone to hand out.
    /// </summary>
    public int DecodeVerified(ReadOnlySpan<byte> raw, Span<byte> plaintext, BlobExpectation expect)
    {
        try
        {
            var kind = DataBlob.GetKind(raw);
            if (DataBlob.IsEncrypted(kind) != expect.Encrypted)
                throw expect.IsChunk
                    ? new PbsIntegrityException("ChunkCryptModeMismatch",
                        expect.Encrypted ? "the archive is encrypted but the chunk is not" : "the chunk is encrypted but the archive is not")
                    : new PbsIntegrityException("BlobCryptModeMismatch", "the blob's encryption does not match the manifest's crypt-mode");
            int n = Decode(raw, plaintext);
            if (expect.Length is { } length && n != length)
                throw new PbsIntegrityException("ChunkSizeMismatch", $"decoded to {n} bytes, the index expects {length}");
            if (expect.Digest is { } digest)
            {
                var actual = ChunkVerifier.ComputeDigest(plaintext[..n], expect.Encrypted ? _crypt : null);
                if (actual != digest)
                    throw new PbsIntegrityException("ChunkDigestMismatch", $"content digest is {actual}");
            }
            return n;
        }
        catch (PbsException)
        {
            plaintext.Clear();
            throw;
        }
    }

    /// <summary>Decodes a small blob (a config, a log, the manifest) into a new array.</summary>
    public byte[] DecodeToArray(ReadOnlySpan<byte> raw)
    {
        var buffer = new byte[_maxDecodedSize];
        int n = Decode(raw, buffer);
        return buffer.AsSpan(0, n).ToArray();
    }

    private int Decompress(ReadOnlySpan<byte> frame, Span<byte> destination)
    {
        try
        {
            return _zstd.Unwrap(frame, destination);
        }
        catch (ZstdException e) when (e.Code == ZSTD_ErrorCode.ZSTD_error_dstSize_tooSmall)
        {
            throw new PbsFormatException($"zstd payload expands beyond the limit of {destination.Length} bytes", "BlobTooLarge", e);
        }
        catch (ZstdException e)
        {
            throw new PbsFormatException($"invalid zstd payload: {e.Message}", "BlobBadCompression", e);
        }
    }

    private CryptConfig RequireKey() =>
        _crypt ?? throw new PbsKeyException("KeyRequired", "the blob is encrypted, but no encryption key was given");

    private PbsFormatException TooLarge(int size) =>
        new($"blob payload of {size} bytes exceeds the limit of {_maxDecodedSize} bytes", "BlobTooLarge");

    public void Dispose() => _zstd.Dispose();
}

/// <summary>
/// What a verified decode (<see cref="BlobDecoder.DecodeVerified"/>) expects of a blob: its crypt mode (from the
/// manifest entry), and for a chunk its length and digest (from the index). <paramref name="IsChunk"/> names the
/// thing in errors (ChunkCryptModeMismatch or BlobCryptModeMismatch).
/// </summary>
public readonly record struct BlobExpectation(bool Encrypted, int? Length = null, ChunkDigest? Digest = null, bool IsChunk = true)
{
    /// <summary>A chunk of an index: crypt mode of its archive, length and digest from the index.</summary>
    public static BlobExpectation Chunk(bool encrypted, int length, ChunkDigest digest) => new(encrypted, length, digest);

    /// <summary>A blob archive (config, log): its crypt mode; its size and checksum are checked against the manifest.</summary>
    public static BlobExpectation Blob(bool encrypted) => new(encrypted, IsChunk: false);
}
