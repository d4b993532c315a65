using System.Threading.Channels;
using PbsRestore.Formats;
using PbsRestore.Sources;

namespace PbsRestore.Restore;

/// <summary>
/// Runs a <see cref="RestorePlan"/>: fetch → decode → write, each role its own set of workers joined by
/// bounded channels, so the source, every core and the disk are busy at once with a bounded number of chunk
/// buffers in memory ((fetch + queue + decode) raw plus (decode + queue + write) plain, whatever the image
/// size). Fetchers take jobs in index order; a <see cref="FetchGate"/> sets how many are in flight. The first
/// failure cancels every stage and is the one reported; a chunk that failed a check is never written.
/// With an <c>onChunkError</c> policy (verify mode), a chunk that cannot be read or fails a check is handed to the
/// policy instead: when it returns true the chunk is skipped (counted as done, never written) and the restore goes
/// on; when it returns false (or there is no policy) it aborts as above. Cancellation is never a chunk error.
/// </summary>
public static class RestorePipeline
{
    /// <summary>Reads of a chunk (the first and the rereads) before a failed check is final.</summary>
    public const int IntegrityReads = 4;

    /// <summary>How often a journaled restore flushes its target and checkpoints the journal.</summary>
    public static readonly TimeSpan CheckpointInterval = TimeSpan.FromSeconds(5);

    private readonly record struct Fetched(ChunkJob Job, byte[] Buffer, int Length);
    private readonly record struct Decoded(ChunkJob Job, byte[] Buffer, int Length);

    public static async Task RunAsync(RestorePlan plan, IChunkSource source, CryptConfig? crypt, bool encrypted,
        IImageSink sink, RestoreOptions options, RestoreCounters counters, CancellationToken ct, RestoreMetrics? metrics = null,
        Func<ChunkException, bool>? onChunkError = null, RestoreJournal? journal = null)
    {
        options.Validate();
        metrics ??= new RestoreMetrics();
        counters.SetTotals(plan.Size, plan.EntryCount);
        counters.AddZero(plan.ZeroRanges.Count);
        if (plan.ResumedEntries > 0)
        {
            counters.AddDone(plan.ResumedBytes, plan.ResumedEntries);
            counters.AddResumed(plan.ResumedEntries, plan.ResumedBytes);
        }

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var token = cts.Token;
        // A shared budget (several archives at once) is tuned by its owner; otherwise this restore tunes its own.
        using var ownGate = options.Budget is null ? new FetchGate(options.FetchConcurrency, RestoreOptions.AutoFetchLimit) : null;
        var gate = options.Budget?.Gate ?? ownGate!;
        var limiter = options.MaxBytesPerSecond is { } bps ? new BandwidthLimiter(bps) : null;
        var pool = new ChunkBufferPool(plan.MaxChunkSize + FileFormats.EncryptedBlobHeaderSize);
        var fetched = Channel.CreateBounded<Fetched>(Math.Max(2, options.DecodeConcurrency));
        var decoded = Channel.CreateBounded<Decoded>(Math.Max(2, options.WriteConcurrency * 2));
        Exception? failure = null;
        int nextJob = -1;

        void Fail(Exception e)
        {
            Interlocked.CompareExchange(ref failure, e, null);
            cts.Cancel();
        }

        // Verify mode: true when the policy took the chunk failure and the stage should go on with the next chunk.
        bool Tolerate(ChunkException e, ChunkJob job)
        {
            if (onChunkError is null || token.IsCancellationRequested) return false;
            if (!onChunkError(e)) return false;
            counters.AddDone((long)job.Length * job.Offsets.Length, job.Offsets.Length);
            if (job.Offsets.Length > 1) counters.AddDedup(job.Offsets.Length - 1);
            return true;
        }

        async Task Fetch()
        {
            while (true)
            {
                int i = Interlocked.Increment(ref nextJob);
                if (i >= plan.Jobs.Count) return;
                var job = plan.Jobs[i];
                await gate.WaitAsync(token).ConfigureAwait(false);
                var buffer = pool.Rent();
                int length;
                long started = RestoreMetrics.Now;
                // The slot is held until the chunk is handed to the decoders: a fetched chunk waiting for a decoder
                // still holds a buffer, so the limit bounds memory as well as requests on the wire.
                try
                {
                    try
                    {
                        length = await source.ReadRawChunkAsync(job.Digest, buffer, token).ConfigureAwait(false);
                    }
                    catch (PbsException e)
                    {
                        var blamed = ChunkDecoder.Blame(plan.Archive, job, e);
                        if (blamed is ChunkException ce && Tolerate(ce, job))
                        {
                            pool.Return(buffer);
                            continue; // the finally releases the fetch slot
                        }
                        throw blamed;
                    }
                    metrics.FetchLatency(started);
                    metrics.AddFetchBusy(started);
                    counters.AddWire(length);
                    counters.AddFetched();
                    options.Budget?.AddWire(length);
                    if (limiter is not null)
                    {
                        long throttled = RestoreMetrics.Now;
                        await limiter.ChargeAsync(length, token).ConfigureAwait(false);
                        metrics.AddThrottled(throttled);
                    }
                    long blocked = RestoreMetrics.Now;
                    await fetched.Writer.WriteAsync(new Fetched(job, buffer, length), token).ConfigureAwait(false);
                    metrics.AddFetchBlocked(blocked);
                }
                finally
                {
                    gate.Release();
                }
            }
        }

        async Task Decode()
        {
            using var decoder = new ChunkDecoder(plan.Archive, crypt, encrypted, plan.MaxChunkSize);
            // A wake-up that loses the item to another worker keeps waiting: starvation counts from the last item on.
            long waiting = RestoreMetrics.Now;
            while (true)
            {
                if (!await fetched.Reader.WaitToReadAsync(token).ConfigureAwait(false)) return;
                if (!fetched.Reader.TryRead(out var item)) continue;
                metrics.AddDecodeStarved(waiting);
                long busy = RestoreMetrics.Now;
                var plain = pool.Rent();
                int n;
                try
                {
                    n = await DecodeOrRereadAsync(decoder, item, plain).ConfigureAwait(false);
                }
                catch (ChunkException e)
                {
                    if (!Tolerate(e, item.Job)) throw;
                    n = -1; // skipped: the policy recorded it
                }
                finally
                {
                    pool.Return(item.Buffer);
                }
                if (n < 0)
                {
                    pool.Return(plain);
                    metrics.AddDecodeBusy(busy);
                    waiting = RestoreMetrics.Now;
                    continue;
                }
                metrics.AddDecodeBusy(busy);
                long blocked = RestoreMetrics.Now;
                await decoded.Writer.WriteAsync(new Decoded(item.Job, plain, n), token).ConfigureAwait(false);
                metrics.AddDecodeBlocked(blocked);
                waiting = RestoreMetrics.Now;
            }
        }

        // A copy that fails its checks may have been damaged on the way (a flipped bit in transit, a proxy): read
        // it again, up to IntegrityReads in all. Damage that is in the datastore fails every read and is reported.
        async Task<int> DecodeOrRereadAsync(ChunkDecoder decoder, Fetched item, byte[] plain)
        {
            int length = item.Length;
            for (int reads = 1; ; reads++)
            {
                try
                {
                    return decoder.Decode(item.Job, item.Buffer.AsSpan(0, length), pool.Aligned(plain)); // aligned: see ChunkBufferPool
                }
                catch (ChunkException e) when (e.Kind is PbsErrorKind.Integrity or PbsErrorKind.InvalidData && !token.IsCancellationRequested)
                {
                    if (reads >= IntegrityReads)
                        throw new ChunkException(e.ErrorId, e.Kind, $"{e.Message} (on each of {reads} reads)", item.Job, plan.Archive, e.InnerException ?? e);
                    counters.AddReread();
                    length = await source.ReadRawChunkAsync(item.Job.Digest, item.Buffer, token).ConfigureAwait(false);
                    counters.AddWire(length);
                }
            }
        }

        async Task Write()
        {
            long waiting = RestoreMetrics.Now;
            while (true)
            {
                if (!await decoded.Reader.WaitToReadAsync(token).ConfigureAwait(false)) return;
                if (!decoded.Reader.TryRead(out var item)) continue;
                metrics.AddWriteStarved(waiting);
                long busy = RestoreMetrics.Now;
                foreach (long offset in item.Job.Offsets)
                {
                    token.ThrowIfCancellationRequested();
                    sink.Write(offset, pool.Aligned(item.Buffer)[..item.Length]);
                }
                pool.Return(item.Buffer);
                journal?.MarkDone(item.Job.FirstIndex);
                metrics.AddWriteBusy(busy);
                waiting = RestoreMetrics.Now;
                counters.AddDone((long)item.Length * item.Job.Offsets.Length, item.Job.Offsets.Length);
                if (item.Job.Offsets.Length > 1) counters.AddDedup(item.Job.Offsets.Length - 1);
            }
        }

        // Each role completes the channel it produces into, once all its workers are done (or one failed).
        Task Stage(int count, Func<Task> worker, Action complete)
        {
            var workers = Enumerable.Range(0, count).Select(_ => Task.Run(async () =>
            {
                try { await worker().ConfigureAwait(false); }
                catch (Exception e) { Fail(e); }
            })).ToArray();
            return Task.WhenAll(workers).ContinueWith(_ => complete(), TaskScheduler.Default);
        }

        var tuning = ownGate is not null ? ownGate.TuneAsync(() => counters.WireBytes, metrics.SetFetchLimit, token) : Task.CompletedTask;
        if (ownGate is null) metrics.SetFetchLimit(gate.Limit);
        var zeros = Task.Run(() =>
        {
            try { WriteZeros(plan, sink, counters, token); }
            catch (Exception e) { Fail(e); }
        });
        // Resume checkpoints: the target is flushed now and then, so a power loss costs at most the last interval.
        var checkpoints = journal is null ? Task.CompletedTask : Task.Run(async () =>
        {
            try
            {
                while (true)
                {
                    await Task.Delay(CheckpointInterval, token).ConfigureAwait(false);
                    journal.Checkpoint(sink);
                }
            }
            catch (OperationCanceledException) { }
            catch (Exception e) { Fail(e); }
        });
        var fetchStage = Stage(Math.Min(gate.Max, Math.Max(1, plan.Jobs.Count)), Fetch, () => fetched.Writer.TryComplete());
        var decodeStage = Stage(options.DecodeConcurrency, Decode, () => decoded.Writer.TryComplete());
        var writeStage = Stage(options.WriteConcurrency, Write, () => { });
        await Task.WhenAll(fetchStage, decodeStage, writeStage, zeros).ConfigureAwait(false);
        cts.Cancel(); // ends the tuner and the checkpoints
        await tuning.ConfigureAwait(false);
        await checkpoints.ConfigureAwait(false);

        if (failure is not null)
        {
            if (failure is OperationCanceledException && ct.IsCancellationRequested) ct.ThrowIfCancellationRequested();
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(failure).Throw();
        }
        ct.ThrowIfCancellationRequested();
        sink.Flush();
    }

    /// <summary>
    /// Zero chunks: nothing to do where unwritten ranges read as zeros (a fresh file); on a used file or device
    /// they are written explicitly, from one shared zero buffer.
    /// </summary>
    private static void WriteZeros(RestorePlan plan, IImageSink sink, RestoreCounters counters, CancellationToken ct)
    {
        if (plan.ZeroRanges.Count == 0) return;
        if (sink.ZerosAreHoles)
        {
            long bytes = plan.ZeroRanges.Sum(z => (long)z.Length);
            counters.AddDone(bytes, plan.ZeroRanges.Count);
            counters.AddInstant(bytes);
            return;
        }
        var zero = new byte[plan.ZeroRanges.Max(z => z.Length)];
        foreach (var (offset, length) in plan.ZeroRanges)
        {
            ct.ThrowIfCancellationRequested();
            sink.Write(offset, zero.AsSpan(0, length));
            counters.AddDone(length, 1);
        }
    }
}
