using System.Threading.Channels;
using PbsRestore.Destinations;
using PbsRestore.Formats;
using PbsRestore.Restore;
using PbsRestore.Sources;

namespace PbsRestore.Tests.Restore;

/// <summary>Each role of the restore pipeline alone (fetch, decode, write + journal) and the chunk-access service they share.</summary>
public sealed class PipelineRolesTests : IDisposable
{
    private const int ChunkSize = 4096;
    private readonly string _dir = Directory.CreateTempSubdirectory("pbs-roles-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static (FakeChunkSource Source, RestorePlan Plan, byte[] Image) MakePlan(int chunks)
    {
        var rng = new Random(7);
        var image = new byte[chunks * ChunkSize];
        rng.NextBytes(image);
        var source = new FakeChunkSource();
        var digests = Enumerable.Range(0, chunks).Select(i => source.Add(image.AsSpan(i * ChunkSize, ChunkSize).ToArray())).ToList();
        var index = FixedIndex.Parse(FixedIndex.Build(Guid.NewGuid(), DateTimeOffset.UnixEpoch, image.Length, ChunkSize, digests));
        return (source, RestorePlan.Plan("roles.img.fidx", index, null), image);
    }

    /// <summary>A source that fails with a transient (connection) error a number of times before it answers.</summary>
    private sealed class FlakySource(IChunkSource inner, int failures, PbsErrorKind kind = PbsErrorKind.Connection) : IChunkSource
    {
        private int _left = failures;
        public int Calls;

        public ValueTask<int> ReadRawChunkAsync(ChunkDigest digest, byte[] buffer, CancellationToken ct)
        {
            Interlocked.Increment(ref Calls);
            if (Interlocked.Decrement(ref _left) >= 0)
                throw new PbsException("ConnectionLost", kind, "injected transient failure");
            return inner.ReadRawChunkAsync(digest, buffer, ct);
        }
    }

    [Fact]
    public async Task Chunk_access_retries_transient_failures_and_counts_them()
    {
        var (source, plan, _) = MakePlan(1);
        var flaky = new FlakySource(source, failures: 2);
        var counters = new RestoreCounters();
        using var access = new ChunkAccess(flaky, new ChunkAccessOptions { FetchConcurrency = 1 }, new RestoreChunkObserver(counters, new RestoreMetrics()));
        var buffer = new byte[ChunkSize + 64];
        using (var fetch = await access.FetchAsync(plan.Jobs[0].Digest, buffer, default))
            Assert.True(fetch.Length > 0);
        Assert.Equal(3, flaky.Calls);
        Assert.Equal(2, access.Retries);
        Assert.Equal(2, counters.Retries);
        Assert.Equal(1, counters.ChunksFetched);
    }

    [Fact]
    public async Task Chunk_access_gives_up_after_the_policy_s_attempts_and_never_retries_a_missing_chunk()
    {
        var (source, plan, _) = MakePlan(1);
        var down = new FlakySource(source, failures: int.MaxValue);
        using var access = new ChunkAccess(down, new ChunkAccessOptions { FetchConcurrency = 1 });
        var e = await Assert.ThrowsAsync<PbsException>(async () => (await access.FetchAsync(plan.Jobs[0].Digest, new byte[ChunkSize + 64], default)).Dispose());
        Assert.Equal("ConnectionLost", e.ErrorId);
        Assert.Equal(ChunkRetryPolicy.MaxAttempts, down.Calls);

        var missing = new FlakySource(source, failures: int.MaxValue, PbsErrorKind.NotFound);
        using var access2 = new ChunkAccess(missing, new ChunkAccessOptions { FetchConcurrency = 1 });
        await Assert.ThrowsAsync<PbsException>(async () => (await access2.FetchAsync(plan.Jobs[0].Digest, new byte[ChunkSize + 64], default)).Dispose());
        Assert.Equal(1, missing.Calls);
    }

    /// <summary>A source whose reads of one digest wait until released.</summary>
    private sealed class HeldSource(IChunkSource inner, ChunkDigest held) : IChunkSource
    {
        public readonly TaskCompletionSource Release = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public readonly TaskCompletionSource Entered = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public async ValueTask<int> ReadRawChunkAsync(ChunkDigest digest, byte[] buffer, CancellationToken ct)
        {
            if (digest == held)
            {
                Entered.TrySetResult();
                await Release.Task.WaitAsync(ct);
            }
            return await inner.ReadRawChunkAsync(digest, buffer, ct);
        }
    }

    [Fact]
    public async Task A_reread_takes_a_free_slot_of_the_same_gate_but_never_waits_behind_fetchers()
    {
        var (source, plan, _) = MakePlan(3);
        // The only slot held by a fetch (a fetcher waiting for the decoders): the decoder's reread still goes ahead.
        using (var access = new ChunkAccess(source, new ChunkAccessOptions { FetchConcurrency = 1 }))
        {
            using var held = await access.FetchAsync(plan.Jobs[0].Digest, new byte[ChunkSize + 64], default);
            Assert.True(await access.RereadAsync(plan.Jobs[1].Digest, new byte[ChunkSize + 64], default).AsTask().WaitAsync(TimeSpan.FromSeconds(30)) > 0);
        }
        // A free slot is taken by the reread: a fetch waits until the reread is done.
        var slow = new HeldSource(source, plan.Jobs[1].Digest);
        using (var access = new ChunkAccess(slow, new ChunkAccessOptions { FetchConcurrency = 1 }))
        {
            var reread = access.RereadAsync(plan.Jobs[1].Digest, new byte[ChunkSize + 64], default).AsTask();
            await slow.Entered.Task.WaitAsync(TimeSpan.FromSeconds(30));
            var fetch = access.FetchAsync(plan.Jobs[2].Digest, new byte[ChunkSize + 64], default).AsTask();
            await Task.Delay(200);
            Assert.False(fetch.IsCompleted, "the fetch went past the slot the reread holds");
            slow.Release.SetResult();
            Assert.True(await reread > 0);
            (await fetch).Dispose();
        }
    }

    [Fact]
    public async Task Fetch_role_hands_on_every_job_and_blames_a_missing_chunk_on_its_index_entry()
    {
        var (source, plan, _) = MakePlan(6);
        source.FailAfterReads = 4;
        using var access = new ChunkAccess(source, new ChunkAccessOptions { FetchConcurrency = 1 });
        using var pool = new ChunkBufferPool(ChunkSize + 64);
        var output = Channel.CreateUnbounded<FetchedChunk>();
        var counters = new RestoreCounters();
        var role = new FetchRole(plan, access, pool, output.Writer, new ChunkErrorPolicy(null, counters), new RestoreMetrics());
        var e = await Assert.ThrowsAsync<ChunkException>(() => role.RunWorkerAsync(default));
        Assert.Equal("ChunkMissing", e.ErrorId);
        Assert.Equal(4, e.ChunkIndex);
        Assert.Contains("roles.img.fidx", e.Message);
        var handed = new List<int>();
        while (output.Reader.TryRead(out var item)) handed.Add(item.Job.FirstIndex);
        Assert.Equal([0, 1, 2, 3], handed);

        // With a policy that takes chunk faults, the role records it and goes on.
        var (source2, plan2, _) = MakePlan(6);
        source2.FailAfterReads = 4;
        using var access2 = new ChunkAccess(source2, new ChunkAccessOptions { FetchConcurrency = 1 });
        var taken = new List<int>();
        var output2 = Channel.CreateUnbounded<FetchedChunk>();
        var counters2 = new RestoreCounters();
        var tolerant = new FetchRole(plan2, access2, pool, output2.Writer, new ChunkErrorPolicy(x => { taken.Add(x.ChunkIndex); return true; }, counters2), new RestoreMetrics());
        await tolerant.RunWorkerAsync(default);
        Assert.Equal([4, 5], taken);
        Assert.Equal(2 * ChunkSize, counters2.DoneBytes);
    }

    /// <summary>A source whose every read waits until released, counting the reads under way.</summary>
    private sealed class GatedSource(IChunkSource inner) : IChunkSource
    {
        public readonly TaskCompletionSource Release = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public int Entered;

        public async ValueTask<int> ReadRawChunkAsync(ChunkDigest digest, byte[] buffer, CancellationToken ct)
        {
            Interlocked.Increment(ref Entered);
            await Release.Task.WaitAsync(ct);
            return await inner.ReadRawChunkAsync(digest, buffer, ct);
        }
    }

    [Fact]
    public async Task Fetch_workers_waiting_for_a_slot_hold_no_buffer()
    {
        // Workers are started for the gate's ceiling (32 by default) while its limit is often 4: a buffer taken before
        // the slot would cost a 4 MiB array per waiting worker (a restore's memory rose by ~85 MiB that way).
        var (source, plan, _) = MakePlan(16);
        var gated = new GatedSource(source);
        using var access = new ChunkAccess(gated, new ChunkAccessOptions { FetchConcurrency = 2 });
        var pool = new ChunkBufferPool(ChunkSize + 64);
        var output = Channel.CreateUnbounded<FetchedChunk>();
        var role = new FetchRole(plan, access, pool, output.Writer, new ChunkErrorPolicy(null, new RestoreCounters()), new RestoreMetrics());
        var workers = Enumerable.Range(0, 12).Select(_ => Task.Run(() => role.RunWorkerAsync(default))).ToArray();
        while (Volatile.Read(ref gated.Entered) < 2) await Task.Delay(5);
        await Task.Delay(100); // the other ten workers are at the gate by now
        Assert.Equal(2, Volatile.Read(ref gated.Entered));
        Assert.Equal(2, pool.Allocated);

        gated.Release.SetResult();
        await Task.WhenAll(workers);
        output.Writer.Complete();
        var buffers = new HashSet<byte[]>(ReferenceEqualityComparer.Instance);
        var jobs = new List<int>();
        await foreach (var item in output.Reader.ReadAllAsync())
        {
            jobs.Add(item.Job.FirstIndex);
            Assert.True(buffers.Add(item.Buffer)); // each chunk handed on in the buffer its lease carried, none shared
            Assert.True(item.Length > 0);
        }
        Assert.Equal(Enumerable.Range(0, 16), jobs.Order());
        Assert.Equal(16, pool.Allocated); // nothing returned here: each chunk handed on keeps its own
    }

    [Fact]
    public async Task Decode_role_reads_a_damaged_copy_again_and_hands_on_verified_bytes()
    {
        var (source, plan, image) = MakePlan(1);
        var job = plan.Jobs[0];
        using var pool = new ChunkBufferPool(ChunkSize + 64);
        var raw = pool.Rent();
        int length = await source.ReadRawChunkAsync(job.Digest, raw, default);
        raw[length - 1] ^= 0x40; // damaged in transit: the source itself is fine
        var input = Channel.CreateUnbounded<FetchedChunk>();
        var output = Channel.CreateUnbounded<DecodedChunk>();
        await input.Writer.WriteAsync(new FetchedChunk(job, raw, length));
        input.Writer.Complete();
        var counters = new RestoreCounters();
        using var access = new ChunkAccess(source, new ChunkAccessOptions { FetchConcurrency = 1 }, new RestoreChunkObserver(counters, new RestoreMetrics()));
        var role = new DecodeRole(plan, null, false, access, pool, input.Reader, output.Writer, new ChunkErrorPolicy(null, counters), counters, new RestoreMetrics());
        await role.RunWorkerAsync(default);
        Assert.True(output.Reader.TryRead(out var decoded));
        Assert.Equal(image, decoded.Buffer.Span[..decoded.Length].ToArray());
        Assert.Equal(1, counters.Rereads);
        Assert.Equal(2, source.Reads);
    }

    [Fact]
    public async Task Decode_role_reports_damage_that_every_read_finds()
    {
        var (source, plan, _) = MakePlan(1);
        var job = plan.Jobs[0];
        var bad = new byte[ChunkSize + 64];
        int length = await source.ReadRawChunkAsync(job.Digest, bad, default);
        bad[length - 1] ^= 0x40;
        source.Replace(job.Digest, bad.AsSpan(0, length).ToArray()); // damaged in the datastore
        using var pool = new ChunkBufferPool(ChunkSize + 64);
        var input = Channel.CreateUnbounded<FetchedChunk>();
        await input.Writer.WriteAsync(new FetchedChunk(job, bad, length));
        input.Writer.Complete();
        var counters = new RestoreCounters();
        using var access = new ChunkAccess(source, new ChunkAccessOptions { FetchConcurrency = 1 });
        var role = new DecodeRole(plan, null, false, access, pool, input.Reader, Channel.CreateUnbounded<DecodedChunk>().Writer,
            new ChunkErrorPolicy(null, counters), counters, new RestoreMetrics());
        var e = await Assert.ThrowsAsync<ChunkException>(() => role.RunWorkerAsync(default));
        Assert.Equal("BlobCrcMismatch", e.ErrorId);
        Assert.Contains($"on each of {RestorePipeline.IntegrityReads} reads", e.Message);
        Assert.Equal(RestorePipeline.IntegrityReads - 1, counters.Rereads);
    }

    [Fact]
    public async Task Decode_role_names_the_chunk_when_its_reread_fails_and_the_error_policy_may_take_it()
    {
        var (source, plan, _) = MakePlan(1);
        var job = plan.Jobs[0];
        var bad = new byte[ChunkSize + 64];
        int length = await source.ReadRawChunkAsync(job.Digest, bad, default);
        bad[length - 1] ^= 0x40; // damaged on the way; the reread then finds the chunk gone
        var gone = new FlakySource(source, failures: int.MaxValue, PbsErrorKind.NotFound);
        foreach (bool tolerant in new[] { false, true })
        {
            using var pool = new ChunkBufferPool(ChunkSize + 64);
            var input = Channel.CreateUnbounded<FetchedChunk>();
            await input.Writer.WriteAsync(new FetchedChunk(job, (byte[])bad.Clone(), length));
            input.Writer.Complete();
            var counters = new RestoreCounters();
            var taken = new List<ChunkException>();
            using var access = new ChunkAccess(gone, new ChunkAccessOptions { FetchConcurrency = 1 });
            var role = new DecodeRole(plan, null, false, access, pool, input.Reader, Channel.CreateUnbounded<DecodedChunk>().Writer,
                new ChunkErrorPolicy(tolerant ? x => { taken.Add(x); return true; } : null, counters), counters, new RestoreMetrics());
            if (!tolerant)
            {
                var e = await Assert.ThrowsAsync<ChunkException>(() => role.RunWorkerAsync(default));
                Assert.Equal("ConnectionLost", e.ErrorId); // FlakySource's injected error, kind NotFound: not retried
                Assert.Contains($"chunk 0 at offset 0 (digest {job.Digest})", e.Message);
                Assert.Contains("roles.img.fidx", e.Message);
            }
            else
            {
                await role.RunWorkerAsync(default);
                Assert.Equal(job.Digest.ToString(), Assert.Single(taken).Digest);
                Assert.Equal(ChunkSize, counters.DoneBytes);
            }
            Assert.Equal(1, counters.Rereads);
        }
    }

    [Fact]
    public async Task Write_role_writes_every_offset_then_marks_the_journal()
    {
        var digest = ChunkDigest.Compute(new byte[16]);
        var job = new ChunkJob(digest, 2, 16, [32, 64]);
        var data = Enumerable.Range(1, 16).Select(i => (byte)i).ToArray();
        using var pool = new ChunkBufferPool(16);
        var buffer = pool.RentPlain();
        data.CopyTo(buffer.Span); // a decoded chunk's bytes live in one of the pool's native blocks
        var input = Channel.CreateUnbounded<DecodedChunk>();
        await input.Writer.WriteAsync(new DecodedChunk(job, buffer, 16));
        input.Writer.Complete();
        var sink = new RecordingSink(96);
        var counters = new RestoreCounters();
        string path = Path.Combine(_dir, "roles.journal");
        using (var journal = RestoreJournal.Create(path, new JournalIdentity("vm/1/2024-01-01T00:00:00Z", "roles.img.fidx", "00", 96, "Raw")))
            await new WriteRole(sink, journal, pool, input.Reader, counters, new RestoreMetrics()).RunWorkerAsync(default);
        Assert.Equal([32L, 64L], sink.Offsets.Order());
        Assert.Equal(data, sink.Image.AsSpan(32, 16).ToArray());
        Assert.Equal(data, sink.Image.AsSpan(64, 16).ToArray());
        Assert.Equal(32, counters.DoneBytes);
        Assert.Equal(1, counters.DedupHits);
        var contents = RestoreJournal.Load(path);
        Assert.Contains(2, contents.Confirmed.Concat(contents.Unconfirmed));
    }
}
