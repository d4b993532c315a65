using System.Threading.Channels;
using PbsRestore.Destinations;
using PbsRestore.Formats;
using PbsRestore.Platform;
using PbsRestore.Sources;

namespace PbsRestore.Restore;

/// <summary>A chunk's encoded blob, fetched, on its way to a decoder (the buffer is the pool's).</summary>
internal readonly record struct FetchedChunk(ChunkJob Job, byte[] Buffer, int Length);

/// <summary>A chunk's verified plaintext on its way to a writer, in one of the pool's native blocks (<see cref="ChunkBufferPool.RentPlain"/>), aligned for unbuffered writes.</summary>
internal readonly record struct DecodedChunk(ChunkJob Job, IoMemory Buffer, int Length);

/// <summary>
/// What happens to a chunk that cannot be read or fails its checks. Without a policy (a restore) it ends the run;
/// with one (verify, -SkipBadChunks) the policy may take it: the chunk then counts as done, is never written, and
/// the run goes on. Cancellation is never a chunk error.
/// </summary>
internal sealed class ChunkErrorPolicy(Func<ChunkException, bool>? onChunkError, RestoreCounters counters)
{
    /// <summary>True when the policy took the failure and the role should go on with its next chunk.</summary>
    public bool Tolerate(ChunkException e, ChunkJob job, CancellationToken token)
    {
        if (onChunkError is null || token.IsCancellationRequested) return false;
        if (!onChunkError(e)) return false;
        counters.AddDone((long)job.Length * job.Offsets.Length, job.Offsets.Length);
        if (job.Offsets.Length > 1) counters.AddDedup(job.Offsets.Length - 1);
        return true;
    }
}

/// <summary>Counts what the chunk access reports into a restore's counters and metrics.</summary>
internal sealed class RestoreChunkObserver(RestoreCounters counters, RestoreMetrics metrics) : IChunkAccessObserver
{
    public void Fetched(int length, long started, bool reread)
    {
        metrics.FetchLatency(started);
        counters.AddWire(length);
        if (reread) return; // counted as a reread by the decoder that asked for it
        metrics.AddFetchBusy(started);
        counters.AddFetched();
    }

    public void Throttled(long since) => metrics.AddThrottled(since);
    public void Retried() => counters.AddRetry();
}

/// <summary>
/// The fetch role: each worker takes the next job in index order, fetches it through the <see cref="IChunkAccess"/>
/// and hands it to the decoders, holding its fetch slot until the decode queue took it (so the gate bounds
/// buffers as well as requests).
/// </summary>
internal sealed class FetchRole(RestorePlan plan, IChunkAccess access, ChunkBufferPool pool, ChannelWriter<FetchedChunk> output,
    ChunkErrorPolicy policy, RestoreMetrics metrics)
{
    private int _next = -1;

    public async Task RunWorkerAsync(CancellationToken token)
    {
        while (true)
        {
            int i = Interlocked.Increment(ref _next);
            if (i >= plan.Jobs.Count) return;
            var job = plan.Jobs[i];
            ChunkFetch fetch;
            try
            {
                // The buffer comes from the pool once the slot is held (and goes back if the fetch fails): workers
                // are started for the gate's ceiling, buffers follow its limit.
                fetch = await access.FetchAsync(job.Digest, pool, token).ConfigureAwait(false);
            }
            catch (PbsException e)
            {
                var blamed = ChunkDecoder.Blame(plan.Archive, job, e);
                if (blamed is ChunkException ce && policy.Tolerate(ce, job, token)) continue;
                throw blamed;
            }
            using (fetch)
            {
                long blocked = RestoreMetrics.Now;
                await output.WriteAsync(new FetchedChunk(job, fetch.Buffer!, fetch.Length), token).ConfigureAwait(false);
                metrics.AddFetchBlocked(blocked);
            }
        }
    }
}

/// <summary>
/// The decode role: verifies and decodes each fetched chunk (<see cref="ChunkDecoder"/>). A copy that fails its
/// checks may have been damaged on the way (a flipped bit in transit, a proxy): it is read again through the chunk
/// access (same gate, cap and counters), up to <see cref="RestorePipeline.IntegrityReads"/> reads in all
/// (<see cref="ChunkDecoder.DecodeOrRereadAsync"/>). Damage that is in the datastore fails every read and is
/// reported (or handed to the error policy).
/// </summary>
internal sealed class DecodeRole(RestorePlan plan, CryptConfig? crypt, bool encrypted, IChunkAccess access, ChunkBufferPool pool,
    ChannelReader<FetchedChunk> input, ChannelWriter<DecodedChunk> output, ChunkErrorPolicy policy, RestoreCounters counters, RestoreMetrics metrics)
{
    private readonly Action _reread = counters.AddReread;

    public async Task RunWorkerAsync(CancellationToken token)
    {
        using var decoder = new ChunkDecoder(plan.Archive, crypt, encrypted, plan.MaxChunkSize);
        // A wake-up that loses the item to another worker keeps waiting: starvation counts from the last item on.
        long waiting = RestoreMetrics.Now;
        while (true)
        {
            if (!await input.WaitToReadAsync(token).ConfigureAwait(false)) return;
            if (!input.TryRead(out var item)) continue;
            metrics.AddDecodeStarved(waiting);
            long busy = RestoreMetrics.Now;
            var plain = pool.RentPlain();
            int n;
            try
            {
                // Into a native block an unbuffered destination writes from as it is: see ChunkBufferPool.
                n = await decoder.DecodeOrRereadAsync(item.Job, item.Buffer, item.Length, plain.Memory, access, _reread, token)
                    .ConfigureAwait(false);
            }
            catch (ChunkException e)
            {
                if (!policy.Tolerate(e, item.Job, token)) throw;
                n = -1; // skipped: the policy recorded it
            }
            finally
            {
                pool.Return(item.Buffer);
            }
            metrics.AddDecodeBusy(busy);
            if (n < 0)
            {
                pool.Return(plain);
                waiting = RestoreMetrics.Now;
                continue;
            }
            long blocked = RestoreMetrics.Now;
            await output.WriteAsync(new DecodedChunk(item.Job, plain, n), token).ConfigureAwait(false);
            metrics.AddDecodeBlocked(blocked);
            waiting = RestoreMetrics.Now;
        }
    }
}

/// <summary>
/// The write role: writes each decoded chunk at every offset where the index names it, then marks it done in the
/// resume journal (only after its last write, so a journal never claims a chunk the destination lacks).
/// </summary>
internal sealed class WriteRole(IImageSink sink, RestoreJournal? journal, ChunkBufferPool pool, ChannelReader<DecodedChunk> input,
    RestoreCounters counters, RestoreMetrics metrics)
{
    public async Task RunWorkerAsync(CancellationToken token)
    {
        long waiting = RestoreMetrics.Now;
        while (true)
        {
            if (!await input.WaitToReadAsync(token).ConfigureAwait(false)) return;
            if (!input.TryRead(out var item)) continue;
            metrics.AddWriteStarved(waiting);
            long busy = RestoreMetrics.Now;
            foreach (long offset in item.Job.Offsets)
            {
                token.ThrowIfCancellationRequested();
                sink.Write(offset, item.Buffer.Span[..item.Length]);
            }
            pool.Return(item.Buffer);
            journal?.MarkDone(item.Job.FirstIndex);
            metrics.AddWriteBusy(busy);
            waiting = RestoreMetrics.Now;
            counters.AddDone((long)item.Length * item.Job.Offsets.Length, item.Job.Offsets.Length);
            if (item.Job.Offsets.Length > 1) counters.AddDedup(item.Job.Offsets.Length - 1);
        }
    }
}
