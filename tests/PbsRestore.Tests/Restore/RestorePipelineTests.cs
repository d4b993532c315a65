using System.Security.Cryptography;
using PbsRestore.Sources;
using PbsRestore.Formats;
using PbsRestore.Restore;

namespace PbsRestore.Tests.Restore;

public class RestorePipelineTests
{
    private const int ChunkSize = 4096;

    /// <summary>An image of distinct, duplicate and zero chunks, its index and a source holding its chunks.</summary>
    private static (byte[] Image, FixedIndex Index, FakeChunkSource Source) MakeImage(int chunks, CryptConfig? crypt = null, int tail = 1000)
    {
        var rng = new Random(42);
        long size = (long)chunks * ChunkSize + tail;
        var image = new byte[size];
        var source = new FakeChunkSource();
        var digests = new List<ChunkDigest>();
        for (int i = 0; i * (long)ChunkSize < size; i++)
        {
            int len = (int)Math.Min(ChunkSize, size - (long)i * ChunkSize);
            var span = image.AsSpan(i * ChunkSize, len);
            switch (i % 5)
            {
                case 0: break;                                                      // zero chunk
                case 3: image.AsSpan((i - 1) * ChunkSize, len).CopyTo(span); break; // duplicate of the previous one
                default: rng.NextBytes(span); break;
            }
            digests.Add(source.Add(span.ToArray(), crypt));
        }
        var index = FixedIndex.Parse(FixedIndex.Build(Guid.NewGuid(), DateTimeOffset.UnixEpoch, size, ChunkSize, digests));
        return (image, index, source);
    }

    private static Func<int, ChunkDigest> Zero(CryptConfig? crypt) => len => ChunkVerifier.ZeroChunkDigest(len, crypt);

    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(4, 2, 2)]
    [InlineData(32, 4, 8)]
    public async Task Restores_image_bit_exactly_at_any_concurrency(int fetch, int decode, int write)
    {
        var (image, index, source) = MakeImage(101);
        var plan = RestorePlan.Plan("test.img.fidx", index, Zero(null));
        var sink = new RecordingSink(index.Size);
        var counters = new RestoreCounters();

        await RestorePipeline.RunAsync(plan, source, null, false, sink,
            new RestoreOptions { FetchConcurrency = fetch, DecodeConcurrency = decode, WriteConcurrency = write }, counters, default);

        Assert.Equal(SHA256.HashData(image), SHA256.HashData(sink.Image));
        Assert.True(sink.Flushed);
        Assert.Equal(index.Size, counters.DoneBytes);
        Assert.Equal(plan.Jobs.Count, source.Reads);
        Assert.Equal(plan.ZeroRanges.Count, counters.ZeroChunks);
    }

    [Fact]
    public void Plan_skips_zero_chunks_and_fetches_duplicates_once()
    {
        var (_, index, _) = MakeImage(20, tail: 0);
        var plan = RestorePlan.Plan("t", index, Zero(null));
        Assert.Equal(4, plan.ZeroRanges.Count);          // entries 0, 5, 10, 15
        Assert.Equal(20, plan.EntryCount);
        Assert.Equal(4, plan.DedupHits);                 // entries 3, 8, 13, 18 repeat 2, 7, 12, 17
        Assert.All(plan.Jobs, j => Assert.Equal(j.Digest, index.DigestAt(j.FirstIndex)));
        var dup = plan.Jobs.Single(j => j.FirstIndex == 2);
        Assert.Equal(new long[] { 2 * ChunkSize, 3 * ChunkSize }, dup.Offsets);
        // Jobs come in index order: read-ahead follows the disk.
        Assert.Equal(plan.Jobs.Select(j => j.FirstIndex).Order(), plan.Jobs.Select(j => j.FirstIndex));
    }

    [Fact]
    public void Plan_without_zero_detection_fetches_zero_chunks()
    {
        var (_, index, _) = MakeImage(10, tail: 0);
        var plan = RestorePlan.Plan("t", index, null);
        Assert.Empty(plan.ZeroRanges);
        Assert.Equal(index.Count - plan.DedupHits, plan.Jobs.Count);
    }

    [Fact]
    public async Task Encrypted_image_restores_with_keyed_digests()
    {
        var crypt = new CryptConfig(Enumerable.Range(1, 32).Select(i => (byte)i).ToArray());
        var (image, index, source) = MakeImage(30, crypt);
        var plan = RestorePlan.Plan("enc.img.fidx", index, Zero(crypt));
        Assert.Equal(7, plan.ZeroRanges.Count); // entries 0, 5, ... 30; the last, partial one too
        var sink = new RecordingSink(index.Size);
        await RestorePipeline.RunAsync(plan, source, crypt, true, sink, new RestoreOptions(), new RestoreCounters(), default);
        Assert.Equal(SHA256.HashData(image), SHA256.HashData(sink.Image));
    }

    [Fact]
    public async Task A_chunk_with_wrong_content_is_never_written_and_the_error_names_it()
    {
        var (_, index, source) = MakeImage(40);
        var plan = RestorePlan.Plan("bad.img.fidx", index, Zero(null));
        var victim = plan.Jobs[7];
        // A well-formed blob whose content does not match the digest: passes CRC, fails the digest check.
        using (var enc = new BlobEncoder()) source.Replace(victim.Digest, enc.Encode(new byte[victim.Length].Select((_, i) => (byte)i).ToArray(), null, false));
        var sink = new RecordingSink(index.Size);

        var e = await Assert.ThrowsAsync<ChunkException>(() =>
            RestorePipeline.RunAsync(plan, source, null, false, sink, new RestoreOptions(), new RestoreCounters(), default));

        Assert.Equal("ChunkDigestMismatch", e.ErrorId);
        Assert.Equal(victim.Digest.ToString(), e.Digest);
        Assert.Equal(victim.FirstIndex, e.ChunkIndex);
        Assert.Equal(victim.Offsets[0], e.Offset);
        Assert.Contains("bad.img.fidx", e.Message);
        Assert.Contains(victim.Digest.ToString(), e.Message);
        Assert.Contains($"offset {victim.Offsets[0]}", e.Message);
        Assert.DoesNotContain(victim.Offsets[0], sink.Offsets);
        Assert.False(sink.Flushed);
    }

    [Fact]
    public async Task An_encrypted_chunk_in_a_plain_archive_is_refused()
    {
        var crypt = new CryptConfig(new byte[32]);
        var (_, index, source) = MakeImage(10);
        var plan = RestorePlan.Plan("mixed.img.fidx", index, Zero(null));
        var victim = plan.Jobs[1];
        using (var enc = new BlobEncoder()) source.Replace(victim.Digest, enc.Encode(new byte[victim.Length], crypt, true));
        var e = await Assert.ThrowsAsync<ChunkException>(() =>
            RestorePipeline.RunAsync(plan, source, null, false, new RecordingSink(index.Size), new RestoreOptions(), new RestoreCounters(), default));
        Assert.Equal("ChunkCryptModeMismatch", e.ErrorId);
    }

    [Fact]
    public async Task A_source_failure_stops_the_restore_with_that_error()
    {
        var (_, index, source) = MakeImage(60);
        source.FailAfterReads = 5;
        var plan = RestorePlan.Plan("t.img.fidx", index, Zero(null));
        var sink = new RecordingSink(index.Size);
        var e = await Assert.ThrowsAsync<ChunkException>(() =>
            RestorePipeline.RunAsync(plan, source, null, false, sink, new RestoreOptions { FetchConcurrency = 1 }, new RestoreCounters(), default));
        Assert.Equal("ChunkMissing", e.ErrorId);
        Assert.Equal(plan.Jobs[5].Digest.ToString(), e.Digest);
        Assert.False(sink.Flushed);
        Assert.True(source.Reads < plan.Jobs.Count, "the restore stops instead of fetching everything");
    }

    [Fact]
    public async Task Cancellation_stops_promptly_with_OperationCanceledException()
    {
        var (_, index, source) = MakeImage(20);
        source.BlockForever = true;
        var plan = RestorePlan.Plan("t", index, Zero(null));
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            RestorePipeline.RunAsync(plan, source, null, false, new RecordingSink(index.Size), new RestoreOptions(), new RestoreCounters(), cts.Token));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10));
    }

    [Fact]
    public void Options_out_of_range_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new RestoreOptions { FetchConcurrency = 0 }.Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => new RestoreOptions { DecodeConcurrency = 1000 }.Validate());
    }

    [Fact]
    public async Task On_a_used_target_zero_chunks_are_written_over_old_data()
    {
        var (image, index, source) = MakeImage(25);
        var plan = RestorePlan.Plan("z.img.fidx", index, Zero(null));
        var sink = new RecordingSink(index.Size, zerosAreHoles: false);
        Array.Fill(sink.Image, (byte)0xEE); // previous garbage on the device
        await RestorePipeline.RunAsync(plan, source, null, false, sink, new RestoreOptions(), new RestoreCounters(), default);
        Assert.Equal(SHA256.HashData(image), SHA256.HashData(sink.Image));
        Assert.All(plan.ZeroRanges, z => Assert.Contains(z.Offset, sink.Offsets));
    }

    [Fact]
    public async Task Automatic_fetch_concurrency_is_reported_and_bounded()
    {
        var (image, index, source) = MakeImage(200);
        var plan = RestorePlan.Plan("a.img.fidx", index, Zero(null));
        var metrics = new RestoreMetrics();
        var sink = new RecordingSink(index.Size);
        await RestorePipeline.RunAsync(plan, source, null, false, sink, new RestoreOptions(), new RestoreCounters(), default, metrics);
        Assert.Equal(SHA256.HashData(image), SHA256.HashData(sink.Image));
        Assert.InRange(metrics.FetchConcurrency, 4, RestoreOptions.AutoFetchLimit);
        Assert.Equal(plan.Jobs.Count, metrics.FetchCount);
        Assert.True(metrics.LatencyPercentile(0.99) >= metrics.LatencyPercentile(0.5));
        Assert.True(metrics.DecodeBusy > TimeSpan.Zero);
    }

    [Fact]
    public async Task A_fixed_fetch_concurrency_is_kept()
    {
        var (_, index, source) = MakeImage(30);
        var metrics = new RestoreMetrics();
        await RestorePipeline.RunAsync(RestorePlan.Plan("f", index, Zero(null)), source, null, false, new RecordingSink(index.Size),
            new RestoreOptions { FetchConcurrency = 3 }, new RestoreCounters(), default, metrics);
        Assert.Equal(3, metrics.FetchConcurrency);
    }

    [Fact]
    public async Task The_bandwidth_cap_holds_the_average_rate()
    {
        var (_, index, source) = MakeImage(100); // ~80 fetched chunks of ~4 KiB, incompressible
        var plan = RestorePlan.Plan("bw", index, Zero(null));
        var counters = new RestoreCounters();
        const long rate = 100_000; // bytes per second
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await RestorePipeline.RunAsync(plan, source, null, false, new RecordingSink(index.Size),
            new RestoreOptions { MaxBytesPerSecond = rate }, counters, default);
        // One second of burst is allowed; the rest must take at least (bytes - burst) / rate.
        double minimum = (counters.WireBytes - rate) / (double)rate;
        Assert.True(minimum > 1, "the test must read well over the burst");
        Assert.True(clock.Elapsed.TotalSeconds >= minimum * 0.95, $"took {clock.Elapsed.TotalSeconds:F2}s for {counters.WireBytes} bytes at {rate} B/s");
    }

    [Fact]
    public void Upstream_variables_set_defaults_but_parameters_win()
    {
        Environment.SetEnvironmentVariable("PBS_RESTORE_FETCH_CONCURRENCY", "16");
        Environment.SetEnvironmentVariable("PBS_RESTORE_MAX_THREADS", "4");
        try
        {
            var o = new RestoreOptions().WithEnvironmentDefaults(fetchGiven: false, decodeGiven: false);
            Assert.Equal(16, o.FetchConcurrency);
            Assert.Equal(4, o.DecodeConcurrency);
            var given = new RestoreOptions { FetchConcurrency = 2 }.WithEnvironmentDefaults(fetchGiven: true, decodeGiven: false);
            Assert.Equal(2, given.FetchConcurrency);
        }
        finally
        {
            Environment.SetEnvironmentVariable("PBS_RESTORE_FETCH_CONCURRENCY", null);
            Environment.SetEnvironmentVariable("PBS_RESTORE_MAX_THREADS", null);
        }
    }
}
