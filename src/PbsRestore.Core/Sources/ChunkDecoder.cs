using PbsRestore.Formats;

namespace PbsRestore.Sources;

/// <summary>
/// One chunk to fetch and decode: its digest, the first index entry that needs it, its length, and every offset
/// of the archive where it belongs (a deduplicated chunk has several).
/// </summary>
public sealed record ChunkJob(ChunkDigest Digest, int FirstIndex, int Length, long[] Offsets);

/// <summary>
/// Turns a raw chunk blob into verified plaintext with the one verified decode (<see cref="BlobDecoder.DecodeVerified"/>:
/// crypt mode as the manifest says, CRC, GCM tag, decompression within the expected length, the digest, keyed for
/// encrypted archives) and says where a failure happened: every failure is a <see cref="ChunkException"/> naming the
/// archive, the index entry, its offset and the digest. One per decode worker (it owns a <see cref="BlobDecoder"/>).
/// </summary>
public sealed class ChunkDecoder : IDisposable
{
    /// <summary>Reads of a chunk (the first and the rereads) before a failed check is final.</summary>
    public const int IntegrityReads = 4;

    private readonly string _archive;
    private readonly bool _encrypted;
    private readonly BlobDecoder _blob;

    public ChunkDecoder(string archive, CryptConfig? crypt, bool archiveEncrypted, int maxChunkSize)
    {
        _archive = archive;
        _encrypted = archiveEncrypted;
        _blob = new BlobDecoder(archiveEncrypted ? crypt : null, maxChunkSize);
    }

    /// <summary>Decodes and verifies; returns the plaintext length (always <see cref="ChunkJob.Length"/>).</summary>
    public int Decode(ChunkJob job, ReadOnlySpan<byte> raw, Span<byte> plaintext)
    {
        try
        {
            return _blob.DecodeVerified(raw, plaintext, BlobExpectation.Chunk(_encrypted, job.Length, job.Digest));
        }
        catch (PbsException e)
        {
            throw Blame(job, e);
        }
    }

    /// <summary>
    /// Decodes <paramref name="raw"/>[..<paramref name="length"/>] into <paramref name="plaintext"/>. A copy that fails
    /// its checks may have been damaged on the way (a flipped bit in transit, a proxy): it is read again into
    /// <paramref name="raw"/> through <paramref name="access"/> (same gate, cap, retries and counters) and decoded
    /// again, up to <see cref="IntegrityReads"/> reads in all; <paramref name="reread"/> is told before each reread.
    /// Damage that every read finds throws the check's <see cref="ChunkException"/>, saying so; a reread that fails
    /// throws its error as a <see cref="ChunkException"/> naming the chunk. A byte that failed
    /// a check is never handed out (a failed decode clears <paramref name="plaintext"/>).
    /// </summary>
    public async ValueTask<int> DecodeOrRereadAsync(ChunkJob job, byte[] raw, int length, Memory<byte> plaintext, IChunkAccess access,
        Action? reread, CancellationToken ct)
    {
        for (int reads = 1; ; reads++)
        {
            try
            {
                return Decode(job, raw.AsSpan(0, length), plaintext.Span);
            }
            catch (ChunkException e) when (e.Kind is PbsErrorKind.Integrity or PbsErrorKind.InvalidData && !ct.IsCancellationRequested)
            {
                if (reads >= IntegrityReads)
                    throw new ChunkException(e.ErrorId, e.Kind, $"{e.Message} (on each of {reads} reads)", job, _archive, e.InnerException ?? e);
                reread?.Invoke();
                try
                {
                    length = await access.RereadAsync(job.Digest, raw, ct).ConfigureAwait(false);
                }
                catch (PbsException re)
                {
                    throw Blame(job, re); // a reread that could not be read, with where it belongs, as a fetch's failure
                }
            }
        }
    }

    /// <summary>Re-raises a chunk failure with where it happened, keeping the type and id.</summary>
    public static PbsException Blame(string archive, ChunkJob job, PbsException e)
    {
        string message = $"{archive}: chunk {job.FirstIndex} at offset {job.Offsets[0]} (digest {job.Digest}): {e.Message}";
        return new ChunkException(e.ErrorId, e.Kind, message, job, archive, e);
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
