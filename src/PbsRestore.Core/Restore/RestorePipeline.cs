using System.Threading.Channels;
using PbsRestore.Formats;
using PbsRestore.Sources;
using PbsRestore.Destinations;

namespace PbsRestore.Restore;

/// <summary>
/// Runs a <see cref="RestorePlan"/>: fetch → decode → write, each role its own set of workers joined by
/// bounded channels, so the source, every core and the disk are busy at once with a bounded number of chunk
/// buffers in memory ((fetch + queue + decode) raw plus (decode + queue + write) plain, whatever the image
/// size). Fetchers take jobs in index order; the chunk-access service (<see cref="ChunkAccess"/>: gate, bandwidth cap, retries, rereads) sets how many are in flight. The first
/// failure cancels every stage and is the one reported; a chunk that failed a check is never written.
/// With an <c>onChunkError</c> policy (verify mode), a chunk that cannot be read or fails a check is handed to the
/// policy instead: when it returns true the chunk is skipped (counted as done, never written) and the restore goes
/// on; when it returns false (or there is no policy) it aborts as above. Cancellation is never a chunk error.
/// </summary>
public static class RestorePipeline
{
    /// <summary>Reads of a chunk (the first and the rereads) before a failed check is final.</summary>
    public const int IntegrityReads = ChunkDecoder.IntegrityReads;

    /// <summary>How often a journaled restore flushes its target and checkpoints the journal.</summary>
    public static readonly TimeSpan CheckpointInterval = TimeSpan.FromSeconds(5);

    public static async Task RunAsync(RestorePlan plan, IChunkSource source, CryptConfig? crypt, bool encrypted,
        IImageSink sink, RestoreOptions options, RestoreCounters counters, CancellationToken ct, RestoreMetrics? metrics = null,
        Func<ChunkException, bool>? onChunkError = null, RestoreJournal? journal = null)
    {
        options.Validate();
        metrics ??= new RestoreMetrics();
        // A shared budget (several archives at once) is tuned by its owner; otherwise this restore tunes its own gate.
        using var access = new ChunkAccess(source, options.ChunkAccess, new RestoreChunkObserver(counters, metrics));
        await RunAsync(plan, access, crypt, encrypted, sink, options, counters, ct, metrics, onChunkError, journal).ConfigureAwait(false);
    }

    /// <summary>Runs <paramref name="plan"/> with chunks fetched through <paramref name="access"/> (which counts into the caller's counters).</summary>
    internal static async Task RunAsync(RestorePlan plan, ChunkAccess access, CryptConfig? crypt, bool encrypted,
        IImageSink sink, RestoreOptions options, RestoreCounters counters, CancellationToken ct, RestoreMetrics metrics,
        Func<ChunkException, bool>? onChunkError, RestoreJournal? journal)
    {
        counters.SetTotals(plan.Size, plan.EntryCount);
        counters.AddZero(plan.ZeroRanges.Count);
        if (plan.ResumedEntries > 0)
        {
            counters.AddDone(plan.ResumedBytes, plan.ResumedEntries);
            counters.AddResumed(plan.ResumedEntries, plan.ResumedBytes);
        }

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var token = cts.Token;
        // Disposed last (it frees the decoded chunks' native blocks): every stage has finished by then.
        using var pool = new ChunkBufferPool(plan.MaxChunkSize + FileFormats.EncryptedBlobHeaderSize, plan.MaxChunkSize);
        var fetched = Channel.CreateBounded<FetchedChunk>(Math.Max(2, options.DecodeConcurrency));
        var decoded = Channel.CreateBounded<DecodedChunk>(Math.Max(2, options.WriteConcurrency * 2));
        var policy = new ChunkErrorPolicy(onChunkError, counters);
        var fetch = new FetchRole(plan, access, pool, fetched.Writer, policy, metrics);
        var decode = new DecodeRole(plan, crypt, encrypted, access, pool, fetched.Reader, decoded.Writer, policy, counters, metrics);
        var write = new WriteRole(sink, journal, pool, decoded.Reader, counters, metrics);
        Exception? failure = null;

        void Fail(Exception e)
        {
            Interlocked.CompareExchange(ref failure, e, null);
            cts.Cancel();
        }

        // Each role completes the channel it produces into, once all its workers are done (or one failed).
        Task Stage(int count, Func<CancellationToken, Task> worker, Action complete)
        {
            var workers = Enumerable.Range(0, count).Select(_ => Task.Run(async () =>
            {
                try { await worker(token).ConfigureAwait(false); }
                catch (Exception e) { Fail(e); }
            })).ToArray();
            return Task.WhenAll(workers).ContinueWith(_ => complete(), TaskScheduler.Default);
        }

        var tuning = access.TuneAsync(metrics.SetFetchLimit, token);
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
        var fetchStage = Stage(Math.Min(access.MaxConcurrency, Math.Max(1, plan.Jobs.Count)), fetch.RunWorkerAsync, () => fetched.Writer.TryComplete());
        var decodeStage = Stage(options.DecodeConcurrency, decode.RunWorkerAsync, () => decoded.Writer.TryComplete());
        var writeStage = Stage(options.WriteConcurrency, write.RunWorkerAsync, () => { });
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
