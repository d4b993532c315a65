using PbsRestore.Restore;
using PbsRestore.Destinations;

namespace PbsRestore.Tests.Restore;

public class RestoreMeasurementTests
{
    private static RestoreResult Result(TimeSpan duration, long bytes = 1L << 30) => new()
    {
        Snapshot = "vm/100/2024-05-01T10:00:00Z", Archive = "drive-scsi0.img", Destination = "(null)",
        LogicalBytes = bytes, BytesRead = bytes / 2, Chunks = 256, ZeroChunks = 0, DedupHits = 0, Duration = duration,
    };

    /// <summary>Drives real metrics through a fake source so that each stage's share is what the scenario says.</summary>
    private static async Task<(RestoreResult, RestoreCounters, RestoreMetrics, RestoreOptions)> Run(int fetchDelayMs, int? fetch, bool slowSink, int chunks = 40)
    {
        var rng = new Random(3);
        var source = new DelayedSource(fetchDelayMs);
        var digests = new List<PbsRestore.Formats.ChunkDigest>();
        for (int i = 0; i < chunks; i++)
        {
            var data = new byte[4096];
            rng.NextBytes(data);
            digests.Add(source.Inner.Add(data));
        }
        var index = PbsRestore.Formats.FixedIndex.Parse(PbsRestore.Formats.FixedIndex.Build(Guid.NewGuid(), DateTimeOffset.UnixEpoch, chunks * 4096L, 4096, digests));
        var plan = RestorePlan.Plan("m", index, null);
        var options = new RestoreOptions { FetchConcurrency = fetch, DecodeConcurrency = 2, WriteConcurrency = 1 };
        var counters = new RestoreCounters();
        var metrics = new RestoreMetrics();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        IImageSink sink = slowSink ? new SlowSink() : new NullImageSink();
        await RestorePipeline.RunAsync(plan, source, null, false, sink, options, counters, default, metrics);
        return (Result(clock.Elapsed, index.Size), counters, metrics, options);
    }

    [Fact]
    public async Task A_slow_source_is_the_server_and_more_concurrency_is_suggested()
    {
        var (result, counters, metrics, options) = await Run(fetchDelayMs: 60, fetch: 2, slowSink: false);
        var m = RestoreMeasurement.From(result, "test", counters, metrics, options, 1, TimeSpan.FromMilliseconds(50), null);
        Assert.Equal(Bottleneck.Server, m.Bottleneck);
        // Decoders mostly wait for chunks: starvation is the largest share (absolute shares vary on a busy machine).
        Assert.True(m.DecodeStarved > m.DecodeBusy && m.DecodeStarved > m.DecodeBlocked,
            $"starved {m.DecodeStarved:P0}, busy {m.DecodeBusy:P0}, blocked {m.DecodeBlocked:P0}");
        Assert.True(m.SuggestedFetchConcurrency > 2);
        Assert.InRange(m.LatencyP50Ms, 55, 10_000);
        Assert.Equal(2, m.FetchConcurrency);
        Assert.False(m.FetchConcurrencyAutomatic);
    }

    [Fact]
    public async Task A_full_wire_is_the_network()
    {
        var (result, counters, metrics, options) = await Run(fetchDelayMs: 30, fetch: 2, slowSink: false);
        double wireRate = counters.WireBytes / result.Duration.TotalSeconds;
        var m = RestoreMeasurement.From(result, "test", counters, metrics, options, 1, TimeSpan.FromMilliseconds(50), speedtestBytesPerSecond: wireRate);
        Assert.Equal(Bottleneck.Network, m.Bottleneck);
        Assert.Equal(wireRate / 1e6, m.SpeedtestMBps!.Value, 3);
    }

    [Fact]
    public async Task A_slow_destination_is_the_disk()
    {
        // 60 writes of 50 ms (3 s): with 40 of 20 ms, a busy machine's delays in fetching and decoding (scheduling, JIT)
        // were a large enough share of the run to bring the writer's busy share under the verdict's 60 %.
        var (result, counters, metrics, options) = await Run(fetchDelayMs: 0, fetch: 8, slowSink: true, chunks: 60);
        var m = RestoreMeasurement.From(result, "test", counters, metrics, options, 1, TimeSpan.FromMilliseconds(50), null);
        Assert.Equal(Bottleneck.Disk, m.Bottleneck);
        Assert.True(m.WriteBusy > 0.6);
    }

    [Fact]
    public void Rates_and_cpu_cost_come_from_the_counts()
    {
        var m = RestoreMeasurement.From(Result(TimeSpan.FromSeconds(2)), "test", new RestoreCounters(), new RestoreMetrics(),
            new RestoreOptions(), 1, TimeSpan.FromSeconds(3), null);
        Assert.Equal((1L << 30) / 1e6 / 2, m.LogicalMBps, 6);
        Assert.Equal(3.0, m.CpuSecondsPerGiB, 6);
    }

    private sealed class DelayedSource(int delayMs) : PbsRestore.Sources.IChunkSource
    {
        public FakeChunkSource Inner { get; } = new();

        public async ValueTask<int> ReadRawChunkAsync(PbsRestore.Formats.ChunkDigest digest, byte[] buffer, CancellationToken ct)
        {
            if (delayMs > 0) await Task.Delay(delayMs, ct);
            return await Inner.ReadRawChunkAsync(digest, buffer, ct);
        }
    }

    private sealed class SlowSink : IImageSink
    {
        public bool ZerosAreHoles => true;
        public void Write(long offset, ReadOnlySpan<byte> data) => Thread.Sleep(50);
        public void Flush() { }
        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
