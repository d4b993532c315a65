using System.Diagnostics;

namespace PbsRestore.Restore;

/// <summary>
/// Where a restore spent its time, for Measure-PbsRestore and the benchmark: chunk fetch latencies and, per
/// stage, the worker-time spent working, waiting for input (starved) and waiting to hand on (blocked by the
/// next stage). Thread-safe; recording costs a Stopwatch read and an Interlocked add.
/// </summary>
public sealed class RestoreMetrics
{
    private readonly object _lock = new();
    private readonly List<float> _latenciesMs = [];
    private long _fetchBusy, _fetchBlocked, _decodeBusy, _decodeStarved, _decodeBlocked, _writeBusy, _writeStarved, _throttled;
    private int _fetchLimit;

    public static long Now => Stopwatch.GetTimestamp();
    private static TimeSpan Ticks(long t) => Stopwatch.GetElapsedTime(0, t);

    internal void FetchLatency(long started)
    {
        var ms = (float)Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        lock (_lock) _latenciesMs.Add(ms);
    }

    internal void AddFetchBusy(long since) => Interlocked.Add(ref _fetchBusy, Stopwatch.GetTimestamp() - since);
    internal void AddFetchBlocked(long since) => Interlocked.Add(ref _fetchBlocked, Stopwatch.GetTimestamp() - since);
    internal void AddDecodeBusy(long since) => Interlocked.Add(ref _decodeBusy, Stopwatch.GetTimestamp() - since);
    internal void AddDecodeStarved(long since) => Interlocked.Add(ref _decodeStarved, Stopwatch.GetTimestamp() - since);
    internal void AddDecodeBlocked(long since) => Interlocked.Add(ref _decodeBlocked, Stopwatch.GetTimestamp() - since);
    internal void AddWriteBusy(long since) => Interlocked.Add(ref _writeBusy, Stopwatch.GetTimestamp() - since);
    internal void AddWriteStarved(long since) => Interlocked.Add(ref _writeStarved, Stopwatch.GetTimestamp() - since);
    internal void AddThrottled(long since) => Interlocked.Add(ref _throttled, Stopwatch.GetTimestamp() - since);
    internal void SetFetchLimit(int limit) => Interlocked.Exchange(ref _fetchLimit, limit);

    /// <summary>Fetches in flight allowed at the end (the automatic choice, or the fixed one).</summary>
    public int FetchConcurrency => Volatile.Read(ref _fetchLimit);

    /// <summary>Worker-time in source reads.</summary>
    public TimeSpan FetchBusy => Ticks(Interlocked.Read(ref _fetchBusy));
    /// <summary>Worker-time fetchers waited because decoders had no room (decode is behind).</summary>
    public TimeSpan FetchBlocked => Ticks(Interlocked.Read(ref _fetchBlocked));
    public TimeSpan DecodeBusy => Ticks(Interlocked.Read(ref _decodeBusy));
    /// <summary>Worker-time decoders waited for fetched chunks (the source is behind).</summary>
    public TimeSpan DecodeStarved => Ticks(Interlocked.Read(ref _decodeStarved));
    /// <summary>Worker-time decoders waited for writers (the disk is behind).</summary>
    public TimeSpan DecodeBlocked => Ticks(Interlocked.Read(ref _decodeBlocked));
    public TimeSpan WriteBusy => Ticks(Interlocked.Read(ref _writeBusy));
    public TimeSpan WriteStarved => Ticks(Interlocked.Read(ref _writeStarved));
    /// <summary>Time fetchers were held back by the bandwidth cap.</summary>
    public TimeSpan Throttled => Ticks(Interlocked.Read(ref _throttled));

    public int FetchCount { get { lock (_lock) return _latenciesMs.Count; } }

    /// <summary>Chunk fetch latency at quantile <paramref name="q"/> (0..1), in milliseconds.</summary>
    public double LatencyPercentile(double q)
    {
        lock (_lock)
        {
            if (_latenciesMs.Count == 0) return 0;
            var sorted = _latenciesMs.ToArray();
            Array.Sort(sorted);
            return sorted[Math.Clamp((int)Math.Ceiling(q * sorted.Length) - 1, 0, sorted.Length - 1)];
        }
    }
}
