namespace PbsRestore.Sources;

/// <summary>
/// One limit on chunk fetches in flight shared by several restores at once (a snapshot's disks restored
/// together): together they keep the source as busy as one restore would, not N times busier. Automatic like a
/// single restore's limit, tuned on the sum of their wire bytes.
/// </summary>
public sealed class FetchBudget : IDisposable
{
    /// <summary>
    /// Upper bound of automatic fetch concurrency. Each fetch in flight holds one chunk buffer (4 MiB for VM
    /// images), so this also bounds memory: 32 covers 40 ms of latency at well over 1 GB/s.
    /// </summary>
    public const int AutoFetchLimit = 32;

    private readonly CancellationTokenSource _stop = new();
    private long _wireBytes;
    private readonly Task _tuning;

    public FetchBudget(int? fixedLimit)
    {
        Gate = new FetchGate(fixedLimit, AutoFetchLimit);
        _tuning = Gate.TuneAsync(() => Interlocked.Read(ref _wireBytes), _ => { }, _stop.Token);
    }

    internal FetchGate Gate { get; }

    /// <summary>The current limit.</summary>
    public int Limit => Gate.Limit;

    internal void AddWire(long bytes) => Interlocked.Add(ref _wireBytes, bytes);

    public void Dispose()
    {
        _stop.Cancel();
        try { _tuning.GetAwaiter().GetResult(); } catch (OperationCanceledException) { }
        Gate.Dispose();
        _stop.Dispose();
    }
}
