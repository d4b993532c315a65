namespace PbsRestore.Restore;

/// <summary>What limits a restore.</summary>
public enum Bottleneck
{
    /// <summary>The wire is full: the chunk rate is close to the raw transfer rate.</summary>
    Network,
    /// <summary>The source answers too slowly (latency, its disk's queue): more requests in flight help.</summary>
    Server,
    /// <summary>Decoding (CRC, decryption, decompression, digest) keeps every core busy.</summary>
    Cpu,
    /// <summary>The destination does not take the bytes as fast as they come.</summary>
    Disk,
}

/// <summary>
/// One measured restore (a row of Measure-PbsRestore): rates, chunk latencies, CPU cost, where each stage spent
/// its time, and a verdict on the bottleneck with the fetch concurrency that would suit it.
/// </summary>
public sealed record RestoreMeasurement
{
    public required string Snapshot { get; init; }
    /// <summary>Namespace of the snapshot, '' for the root.</summary>
    public string Namespace { get; init; } = "";
    public required string Archive { get; init; }
    public required string Source { get; init; }
    /// <summary>Fetches in flight: the fixed value, or what automatic tuning ended at.</summary>
    public required int FetchConcurrency { get; init; }
    public required bool FetchConcurrencyAutomatic { get; init; }
    public required int Connections { get; init; }
    public required long LogicalBytes { get; init; }
    public required long WireBytes { get; init; }
    public required long ZeroChunks { get; init; }
    public required long DedupHits { get; init; }
    public required TimeSpan Elapsed { get; init; }
    public double LogicalMBps => Rate(LogicalBytes);
    public double WireMBps => Rate(WireBytes);
    public required double LatencyP50Ms { get; init; }
    public required double LatencyP95Ms { get; init; }
    public required double LatencyP99Ms { get; init; }
    /// <summary>Process CPU time per GiB restored (logical).</summary>
    public required double CpuSecondsPerGiB { get; init; }
    /// <summary>Raw transfer rate of the wire (the server's /speedtest), MB/s; null for a folder.</summary>
    public double? SpeedtestMBps { get; init; }
    /// <summary>Share of decode worker time spent waiting for chunks (the source is behind), 0..1.</summary>
    public required double DecodeStarved { get; init; }
    /// <summary>Share of decode worker time spent decoding (CPU), 0..1.</summary>
    public required double DecodeBusy { get; init; }
    /// <summary>Share of decode worker time spent waiting for writers (the disk is behind), 0..1.</summary>
    public required double DecodeBlocked { get; init; }
    /// <summary>Share of write worker time spent writing, 0..1.</summary>
    public required double WriteBusy { get; init; }
    /// <summary>Share of fetch worker time spent waiting for room in the decode queue, 0..1.</summary>
    public required double FetchBlocked { get; init; }
    public required Bottleneck Bottleneck { get; init; }
    public required int SuggestedFetchConcurrency { get; init; }

    private double Rate(long bytes) => Elapsed.TotalSeconds > 0 ? bytes / 1e6 / Elapsed.TotalSeconds : 0;

    /// <summary>Builds the row and its verdict from a finished restore's counters and metrics.</summary>
    public static RestoreMeasurement From(RestoreResult result, string source, RestoreCounters counters, RestoreMetrics metrics,
        RestoreOptions options, int connections, TimeSpan cpu, double? speedtestBytesPerSecond)
    {
        double seconds = Math.Max(result.Duration.TotalSeconds, 1e-6);
        double decodeTotal = seconds * options.DecodeConcurrency, writeTotal = seconds * options.WriteConcurrency;
        double fetchTotal = seconds * Math.Max(1, metrics.FetchConcurrency);
        double starved = Share(metrics.DecodeStarved, decodeTotal), busy = Share(metrics.DecodeBusy, decodeTotal);
        double blocked = Share(metrics.DecodeBlocked, decodeTotal), writeBusy = Share(metrics.WriteBusy, writeTotal);
        double fetchBlocked = Share(metrics.FetchBlocked, fetchTotal);
        double wireRate = counters.WireBytes / seconds;
        double p50 = metrics.LatencyPercentile(0.50);
        long fetched = Math.Max(1, metrics.FetchCount);
        double avgChunk = counters.WireBytes / (double)fetched;

        Bottleneck verdict;
        if (blocked > 0.3 && writeBusy > 0.6) verdict = Bottleneck.Disk;
        else if (busy > 0.75 || fetchBlocked > 0.5 || cpu.TotalSeconds > seconds * Environment.ProcessorCount * 0.85) verdict = Bottleneck.Cpu;
        else if (speedtestBytesPerSecond is { } raw && wireRate >= 0.7 * raw) verdict = Bottleneck.Network;
        else verdict = Bottleneck.Server;

        // Little's law: requests in flight = rate × latency. Aim at the raw wire rate (or, for a folder or a
        // CPU-bound restore, at what the decoders could take if they never waited).
        double decodeCapacity = busy > 0 ? counters.WireBytes / (metrics.DecodeBusy.TotalSeconds / options.DecodeConcurrency) : wireRate;
        double target = verdict switch
        {
            Bottleneck.Server => Math.Min(speedtestBytesPerSecond ?? decodeCapacity, decodeCapacity),
            _ => wireRate,
        };
        int suggested = (int)Math.Clamp(Math.Ceiling(target * (p50 / 1000) / Math.Max(1, avgChunk)) + 1, 1, 256);
        if (verdict == Bottleneck.Server) suggested = Math.Max(suggested, metrics.FetchConcurrency + 1);

        return new RestoreMeasurement
        {
            Snapshot = result.Snapshot,
            Namespace = result.Namespace,
            Archive = result.Archive,
            Source = source,
            FetchConcurrency = metrics.FetchConcurrency,
            FetchConcurrencyAutomatic = options.FetchConcurrency is null,
            Connections = connections,
            LogicalBytes = result.LogicalBytes,
            WireBytes = counters.WireBytes,
            ZeroChunks = counters.ZeroChunks,
            DedupHits = counters.DedupHits,
            Elapsed = result.Duration,
            LatencyP50Ms = p50,
            LatencyP95Ms = metrics.LatencyPercentile(0.95),
            LatencyP99Ms = metrics.LatencyPercentile(0.99),
            CpuSecondsPerGiB = result.LogicalBytes > 0 ? cpu.TotalSeconds / (result.LogicalBytes / (double)(1L << 30)) : 0,
            SpeedtestMBps = speedtestBytesPerSecond / 1e6,
            DecodeStarved = starved,
            DecodeBusy = busy,
            DecodeBlocked = blocked,
            WriteBusy = writeBusy,
            FetchBlocked = fetchBlocked,
            Bottleneck = verdict,
            SuggestedFetchConcurrency = suggested,
        };
    }

    private static double Share(TimeSpan part, double totalSeconds) => totalSeconds > 0 ? Math.Clamp(part.TotalSeconds / totalSeconds, 0, 1) : 0;
}
