using PbsRestore.Formats;

namespace PbsRestore.Restore;

/// <summary>
/// Turns a raw chunk blob into verified plaintext: crypt mode as the manifest says, CRC, GCM tag, decompression
/// within the expected length, and the digest (keyed for encrypted archives). One per decode worker (it owns a
/// <see cref="BlobDecoder"/>). Every failure is a <see cref="PbsException"/> that names the archive, the index
/// entry, its offset and the digest; the destination buffer is never handed on after a failure.
/// </summary>
internal sealed class ChunkDecoder : IDisposable
{
    private readonly string _archive;
    private readonly CryptConfig? _crypt;
    private readonly bool _encrypted;
    private readonly BlobDecoder _blob;

    public ChunkDecoder(string archive, CryptConfig? crypt, bool archiveEncrypted, int maxChunkSize)
    {
        _archive = archive;
        _crypt = crypt;
        _encrypted = archiveEncrypted;
        _blob = new BlobDecoder(archiveEncrypted ? crypt : null, maxChunkSize);
    }

    /// <summary>Decodes and verifies; returns the plaintext length (always <see cref="ChunkJob.Length"/>).</summary>
    public int Decode(ChunkJob job, ReadOnlySpan<byte> raw, Span<byte> plaintext)
    {
        try
        {
            var kind = DataBlob.GetKind(raw);
            if (DataBlob.IsEncrypted(kind) != _encrypted)
                throw new PbsIntegrityException("ChunkCryptModeMismatch",
                    _encrypted ? "the archive is encrypted but the chunk is not" : "the chunk is encrypted but the archive is not");
            int n = _blob.Decode(raw, plaintext);
            if (n != job.Length)
                throw new PbsIntegrityException("ChunkSizeMismatch", $"decoded to {n} bytes, the index expects {job.Length}");
            var actual = ChunkVerifier.ComputeDigest(plaintext[..n], _encrypted ? _crypt : null);
            if (actual != job.Digest)
                throw new PbsIntegrityException("ChunkDigestMismatch", $"content digest is {actual}");
            return n;
        }
        catch (PbsException e)
        {
            plaintext.Clear();
            throw Blame(job, e);
        }
    }

    /// <summary>Re-raises a chunk failure with where it happened, keeping the type and id.</summary>
    public static PbsException Blame(string archive, ChunkJob job, PbsException e)
    {
        string message = $"{archive}: chunk {job.FirstIndex} at offset {job.Offsets[0]} (digest {job.Digest}): {e.Message}";
        return e switch
        {
            PbsIntegrityException => new ChunkException(e.ErrorId, e.Kind, message, job, archive, e),
            PbsNotFoundException => new ChunkException(e.ErrorId, e.Kind, message, job, archive, e),
            PbsFormatException => new ChunkException(e.ErrorId, e.Kind, message, job, archive, e),
            _ => new ChunkException(e.ErrorId, e.Kind, message, job, archive, e),
        };
    }

    private PbsException Blame(ChunkJob job, PbsException e) => Blame(_archive, job, e);

    public void Dispose() => _blob.Dispose();
}

/// <summary>A chunk that could not be read or failed a check, with where it belongs.</summary>
public sealed class ChunkException : PbsException
{
    internal ChunkException(string errorId, PbsErrorKind kind, string message, ChunkJob job, string archive, Exception inner)
        : base(errorId, kind, message, inner)
    {
        Archive = archive;
        Digest = job.Digest.ToString();
        ChunkIndex = job.FirstIndex;
        Offset = job.Offsets[0];
        Offsets = job.Offsets;
        Length = job.Length;
    }

    /// <summary>Every offset of the image where this chunk belongs (a deduplicated chunk has several).</summary>
    public IReadOnlyList<long> Offsets { get; }
    /// <summary>The chunk's length in the image.</summary>
    public int Length { get; }

    public string Archive { get; }
    public string Digest { get; }
    public int ChunkIndex { get; }
    public long Offset { get; }
}
