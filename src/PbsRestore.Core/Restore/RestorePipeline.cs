using System.Threading.Channels;
using PbsRestore.Formats;
using PbsRestore.Sources;

namespace PbsRestore.Restore;

/// <summary>
/// Runs a <see cref="RestorePlan"/>: fetch → decode → write, each role its own set of workers joined by
/// bounded channels, so the source, every core and the disk are busy at once with a bounded number of chunk
/// buffers in memory ((fetch + queue + decode) raw plus (decode + queue + write) plain, whatever the image
/// size). Fetchers take jobs in index order. The first failure cancels every stage and is the one reported;
/// a chunk that failed a check is never written.
/// </summary>
public static class RestorePipeline
{
    private readonly record struct Fetched(ChunkJob Job, byte[] Buffer, int Length);
    private readonly record struct Decoded(ChunkJob Job, byte[] Buffer, int Length);

    public static async Task RunAsync(RestorePlan plan, IChunkSource source, CryptConfig? crypt, bool encrypted,
        IImageSink sink, RestoreOptions options, RestoreCounters counters, CancellationToken ct)
    {
        options.Validate();
        counters.SetTotals(plan.Size, plan.EntryCount);
        if (plan.ZeroRanges.Count > 0)
        {
            if (!sink.ZerosAreHoles)
                throw new NotSupportedException("explicit zero writes are not supported by this sink");
            counters.AddZero(plan.ZeroRanges.Count);
            counters.AddDone(plan.ZeroRanges.Sum(z => (long)z.Length), plan.ZeroRanges.Count);
        }

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var token = cts.Token;
        var pool = new ChunkBufferPool(plan.MaxChunkSize + FileFormats.EncryptedBlobHeaderSize);
        var fetched = Channel.CreateBounded<Fetched>(new BoundedChannelOptions(Math.Max(2, options.DecodeConcurrency)) { SingleReader = false, SingleWriter = false });
        var decoded = Channel.CreateBounded<Decoded>(new BoundedChannelOptions(Math.Max(2, options.WriteConcurrency * 2)) { SingleReader = false, SingleWriter = false });
        Exception? failure = null;
        int nextJob = -1;

        void Fail(Exception e)
        {
            if (e is OperationCanceledException && token.IsCancellationRequested && failure is not null) return;
            Interlocked.CompareExchange(ref failure, e, null);
            cts.Cancel();
        }

        async Task Fetch()
        {
            while (true)
            {
                int i = Interlocked.Increment(ref nextJob);
                if (i >= plan.Jobs.Count) return;
                var job = plan.Jobs[i];
                var buffer = pool.Rent();
                int length;
                try
                {
                    length = await source.ReadRawChunkAsync(job.Digest, buffer, token).ConfigureAwait(false);
                }
                catch (PbsException e)
                {
                    throw ChunkDecoder.Blame(plan.Archive, job, e);
                }
                counters.AddWire(length);
                await fetched.Writer.WriteAsync(new Fetched(job, buffer, length), token).ConfigureAwait(false);
            }
        }

        async Task Decode()
        {
            using var decoder = new ChunkDecoder(plan.Archive, crypt, encrypted, plan.MaxChunkSize);
            await foreach (var item in fetched.Reader.ReadAllAsync(token).ConfigureAwait(false))
            {
                var plain = pool.Rent();
                int n;
                try
                {
                    n = decoder.Decode(item.Job, item.Buffer.AsSpan(0, item.Length), plain);
                }
                finally
                {
                    pool.Return(item.Buffer);
                }
                await decoded.Writer.WriteAsync(new Decoded(item.Job, plain, n), token).ConfigureAwait(false);
            }
        }

        async Task Write()
        {
            await foreach (var item in decoded.Reader.ReadAllAsync(token).ConfigureAwait(false))
            {
                foreach (long offset in item.Job.Offsets)
                {
                    token.ThrowIfCancellationRequested();
                    sink.Write(offset, item.Buffer.AsSpan(0, item.Length));
                }
                pool.Return(item.Buffer);
                counters.AddDone((long)item.Length * item.Job.Offsets.Length, item.Job.Offsets.Length);
                if (item.Job.Offsets.Length > 1) counters.AddDedup(item.Job.Offsets.Length - 1);
            }
        }

        // Each role completes the channel it produces into, once all its workers are done (or one failed).
        Task Stage(int count, Func<Task> worker, ChannelWriter<Fetched>? fetchOut, ChannelWriter<Decoded>? decodeOut)
        {
            var workers = Enumerable.Range(0, count).Select(_ => Task.Run(async () =>
            {
                try { await worker().ConfigureAwait(false); }
                catch (Exception e) { Fail(e); }
            })).ToArray();
            return Task.WhenAll(workers).ContinueWith(_ =>
            {
                fetchOut?.TryComplete();
                decodeOut?.TryComplete();
            }, TaskScheduler.Default);
        }

        var fetchStage = Stage(Math.Min(options.FetchConcurrency, Math.Max(1, plan.Jobs.Count)), Fetch, fetched.Writer, null);
        var decodeStage = Stage(options.DecodeConcurrency, Decode, null, decoded.Writer);
        var writeStage = Stage(options.WriteConcurrency, Write, null, null);
        await Task.WhenAll(fetchStage, decodeStage, writeStage).ConfigureAwait(false);

        if (failure is not null)
        {
            if (failure is OperationCanceledException && ct.IsCancellationRequested) ct.ThrowIfCancellationRequested();
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(failure).Throw();
        }
        ct.ThrowIfCancellationRequested();
        sink.Flush();
    }
}
