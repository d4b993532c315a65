namespace PbsRestore.Sources;

/// <summary>
/// Limits how many chunk fetches are in flight. Fixed, or automatic: start at 4 and, every sampling window,
/// double the limit while the wire rate still rose by more than 5 %, up to a maximum. Higher concurrency only
/// pays while something (latency, a per-connection cap) leaves the pipe idle; once the rate stops rising,
/// more requests only cost memory and server load.
/// </summary>
internal sealed class FetchGate : IDisposable
{
    private readonly SemaphoreSlim _slots;
    private readonly int _max;
    private int _limit;

    public FetchGate(int? fixedLimit, int autoMax)
    {
        _max = fixedLimit ?? autoMax;
        _limit = fixedLimit ?? Math.Min(4, autoMax);
        IsAutomatic = fixedLimit is null;
        _slots = new SemaphoreSlim(_limit, _max);
    }

    public bool IsAutomatic { get; }
    public int Limit => Volatile.Read(ref _limit);
    public int Max => _max;

    public Task WaitAsync(CancellationToken ct) => _slots.WaitAsync(ct);
    /// <summary>Takes a free slot if there is one, without waiting.</summary>
    public bool TryEnter() => _slots.Wait(0);
    public void Release() => _slots.Release();

    /// <summary>Runs the automatic tuning until <paramref name="ct"/> ends; reads the wire counter.</summary>
    public async Task TuneAsync(Func<long> wireBytes, Action<int> report, CancellationToken ct)
    {
        report(Limit);
        if (!IsAutomatic) return;
        var window = TimeSpan.FromMilliseconds(400);
        double best = 0;
        try
        {
            long last = wireBytes();
            while (Limit < _max)
            {
                await Task.Delay(window, ct).ConfigureAwait(false);
                long now = wireBytes();
                double rate = (now - last) / window.TotalSeconds;
                last = now;
                if (rate <= best * 1.05 && best > 0) break; // no longer rising: keep this limit
                best = Math.Max(best, rate);
                int grow = Math.Min(Limit, _max - Limit);
                Interlocked.Add(ref _limit, grow);
                _slots.Release(grow);
                report(Limit);
            }
        }
        catch (OperationCanceledException) { }
    }

    public void Dispose() => _slots.Dispose();
}
