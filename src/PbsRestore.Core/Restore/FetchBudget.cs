namespace PbsRestore.Restore;

/// <summary>
/// One limit on chunk fetches in flight shared by several restores at once (a snapshot's disks restored
/// together): together they keep the source as busy as one restore would, not N times busier. Automatic like a
/// single restore's limit, tuned on the sum of their wire bytes.
/// </summary>
public sealed class FetchBudget : IDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private long _wireBytes;
    private readonly Task _tuning;

    public FetchBudget(int? fixedLimit)
    {
        Gate = new FetchGate(fixedLimit, RestoreOptions.AutoFetchLimit);
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
