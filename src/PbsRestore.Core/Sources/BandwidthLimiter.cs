namespace PbsRestore.Sources;

/// <summary>
/// A token bucket on encoded bytes read, for restores during business hours (-MaxBandwidth). A chunk's size is
/// known only after it arrives, so it is charged then, and the next fetch waits until the bucket has refilled;
/// over a restore the average stays at the cap, with bursts of at most one second's worth.
/// </summary>
internal sealed class BandwidthLimiter(long bytesPerSecond)
{
    private readonly object _lock = new();
    private readonly long _start = System.Diagnostics.Stopwatch.GetTimestamp();
    private double _debt; // bytes charged beyond what the elapsed time allows

    public async Task ChargeAsync(long bytes, CancellationToken ct)
    {
        TimeSpan wait;
        lock (_lock)
        {
            _debt += bytes;
            double allowed = System.Diagnostics.Stopwatch.GetElapsedTime(_start).TotalSeconds * bytesPerSecond + bytesPerSecond; // one second of burst
            wait = _debt > allowed ? TimeSpan.FromSeconds((_debt - allowed) / bytesPerSecond) : TimeSpan.Zero;
        }
        if (wait > TimeSpan.Zero) await Task.Delay(wait, ct).ConfigureAwait(false);
    }
}
