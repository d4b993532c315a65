namespace PbsRestore.Restore;

/// <summary>
/// Live counters of a restore. The core only counts; whoever shows progress (the cmdlet, a benchmark) samples
/// them from another thread. All members are thread-safe.
/// </summary>
public sealed class RestoreCounters
{
    private long _totalBytes, _doneBytes, _wireBytes, _chunksTotal, _chunksDone, _zeroChunks, _dedupHits, _rereads, _fetched, _resumed, _resumedBytes, _instantBytes, _retries;

    /// <summary>Logical size of what is being restored.</summary>
    public long TotalBytes => Interlocked.Read(ref _totalBytes);
    /// <summary>Logical bytes finished (written, or zero holes accounted).</summary>
    public long DoneBytes => Interlocked.Read(ref _doneBytes);
    /// <summary>Encoded bytes read from the source (chunk blobs).</summary>
    public long WireBytes => Interlocked.Read(ref _wireBytes);
    public long ChunksTotal => Interlocked.Read(ref _chunksTotal);
    public long ChunksDone => Interlocked.Read(ref _chunksDone);
    public long ZeroChunks => Interlocked.Read(ref _zeroChunks);
    /// <summary>Index entries served from a chunk fetched once for an earlier offset.</summary>
    public long DedupHits => Interlocked.Read(ref _dedupHits);

    /// <summary>Chunks fetched again because a copy failed its CRC, tag or digest (corruption in transit).</summary>
    public long Rereads => Interlocked.Read(ref _rereads);
    /// <summary>Chunk reads repeated after a transient failure (lost connection, stall, 5xx): <see cref="Sources.ChunkRetryPolicy"/>.</summary>
    public long Retries => Interlocked.Read(ref _retries);

    /// <summary>Chunks fetched from the source by this run (each distinct chunk once, plus rereads not counted).</summary>
    public long ChunksFetched => Interlocked.Read(ref _fetched);
    /// <summary>Index entries an earlier, interrupted run had already restored (-Resume).</summary>
    public long ChunksResumed => Interlocked.Read(ref _resumed);

    /// <summary>Logical bytes an earlier, interrupted run had already restored.</summary>
    public long ResumedBytes => Interlocked.Read(ref _resumedBytes);
    /// <summary>
    /// Bytes counted as done without any work (zero chunks that are holes, chunks kept from an interrupted run):
    /// a rate or time estimate leaves them out, or it starts high and drifts.
    /// </summary>
    public long InstantBytes => Interlocked.Read(ref _instantBytes);

    internal void SetTotals(long bytes, long chunks)
    {
        Interlocked.Exchange(ref _totalBytes, bytes);
        Interlocked.Exchange(ref _chunksTotal, chunks);
    }

    internal void AddDone(long bytes, long chunks)
    {
        Interlocked.Add(ref _doneBytes, bytes);
        Interlocked.Add(ref _chunksDone, chunks);
    }

    internal void AddWire(long bytes) => Interlocked.Add(ref _wireBytes, bytes);
    internal void AddZero(long chunks) => Interlocked.Add(ref _zeroChunks, chunks);
    internal void AddDedup(long hits) => Interlocked.Add(ref _dedupHits, hits);
    internal void AddReread() => Interlocked.Increment(ref _rereads);
    internal void AddRetry() => Interlocked.Increment(ref _retries);
    internal void AddFetched() => Interlocked.Increment(ref _fetched);
    internal void AddResumed(long entries, long bytes)
    {
        Interlocked.Add(ref _resumed, entries);
        Interlocked.Add(ref _resumedBytes, bytes);
        Interlocked.Add(ref _instantBytes, bytes);
    }

    internal void AddInstant(long bytes) => Interlocked.Add(ref _instantBytes, bytes);
}
