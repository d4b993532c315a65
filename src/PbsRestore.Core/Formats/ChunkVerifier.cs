namespace PbsRestore.Formats;

/// <summary>
/// Computes chunk digests the way the writer did: plain SHA-256 for unencrypted and sign-only chunks,
/// SHA-256(plaintext || id_key) for encrypted ones (upstream DataChunkBuilder::compute_digest).
/// Also yields the zero chunk's digest for any chunk size, which restore uses to skip all-zero chunks.
/// </summary>
public static class ChunkVerifier
{
    public static ChunkDigest ComputeDigest(ReadOnlySpan<byte> plaintext, CryptConfig? keyed) =>
        keyed is null ? ChunkDigest.Compute(plaintext) : keyed.ComputeDigest(plaintext);

    /// <summary>The digest of <paramref name="chunkSize"/> zero bytes (keyed when <paramref name="keyed"/> is given).</summary>
    public static ChunkDigest ZeroChunkDigest(int chunkSize, CryptConfig? keyed)
    {
        if (chunkSize <= 0 || chunkSize > FileFormats.MaxBlobSize) throw new ArgumentOutOfRangeException(nameof(chunkSize));
        var zeros = new byte[chunkSize];
        return ComputeDigest(zeros, keyed);
    }
}
