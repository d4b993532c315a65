using System.Diagnostics;
using PbsRestore.Formats;

namespace PbsRestore.Sources;

/// <summary>
/// How chunks are fetched from a source, for the sequential restore and random access alike: one fetch gate
/// (fixed or self-tuning, or a <see cref="FetchBudget"/> shared by several restores), one bandwidth cap, one retry
/// policy (<see cref="ChunkRetryPolicy"/>), and rereads of a damaged copy through the same gate. What comes back
/// has passed no check yet: decoding is the caller's (<see cref="ChunkDecoder"/>).
/// </summary>
public interface IChunkAccess
{
    /// <summary>Fetches in flight at most (the gate's ceiling): how many fetch workers are worth starting.</summary>
    int MaxConcurrency { get; }

    /// <summary>
    /// Waits for a fetch slot, then reads the chunk's raw blob into <paramref name="buffer"/> (transient failures
    /// retried). The slot stays held until the returned lease is disposed: a fetched chunk still waiting for a decoder
    /// holds a buffer, so the gate bounds memory as well as requests. On failure the slot is released and the
    /// source's error thrown.
    /// </summary>
    ValueTask<ChunkFetch> FetchAsync(ChunkDigest digest, byte[] buffer, CancellationToken ct);

    /// <summary>
    /// As <see cref="FetchAsync(ChunkDigest, byte[], CancellationToken)"/>, but the buffer is taken from
    /// <paramref name="buffers"/> only once the slot is held (the lease's <see cref="ChunkFetch.Buffer"/>), and given
    /// back there if the read fails: a worker waiting for a slot holds no buffer, so memory follows the gate's limit,
    /// not the number of workers started for its ceiling.
    /// </summary>
    ValueTask<ChunkFetch> FetchAsync(ChunkDigest digest, IFetchBuffers buffers, CancellationToken ct);

    /// <summary>
    /// Reads a chunk again after its copy failed a check: through the same cap, retries and counters, and in a slot of
    /// the same gate when one is free (it never waits for one: the holders may be waiting for the caller).
    /// </summary>
    ValueTask<int> RereadAsync(ChunkDigest digest, byte[] buffer, CancellationToken ct);
}

/// <summary>A fetched chunk's length and its fetch slot (released on dispose; dispose once).</summary>
public readonly struct ChunkFetch : IDisposable
{
    private readonly FetchGate? _gate;

    /// <summary>A fetch that holds no slot (an <see cref="IChunkAccess"/> without a gate).</summary>
    public ChunkFetch(int length, byte[]? buffer = null)
    {
        Length = length;
        Buffer = buffer;
    }

    internal ChunkFetch(int length, byte[] buffer, FetchGate gate)
    {
        Length = length;
        Buffer = buffer;
        _gate = gate;
    }

    public int Length { get; }
    /// <summary>The buffer holding the raw blob (<see cref="Length"/> bytes); the caller's from then on.</summary>
    public byte[]? Buffer { get; }
    public void Dispose() => _gate?.Release();
}

/// <summary>Where a fetch takes its buffer once it holds a slot, and gives it back when the read fails.</summary>
public interface IFetchBuffers
{
    byte[] Rent();
    void Return(byte[] buffer);
}

/// <summary>What a <see cref="ChunkAccess"/> reports as it goes (restore counters, metrics; a reader's own counts).</summary>
public interface IChunkAccessObserver
{
    /// <summary>A chunk arrived: <paramref name="length"/> encoded bytes, asked for at <paramref name="started"/> (a <see cref="Stopwatch"/> timestamp).</summary>
    void Fetched(int length, long started, bool reread);
    /// <summary>The bandwidth cap held a fetch back since <paramref name="since"/>.</summary>
    void Throttled(long since);
    /// <summary>A transient failure is retried.</summary>
    void Retried();
}

/// <summary>Settings of a <see cref="ChunkAccess"/>.</summary>
public sealed record ChunkAccessOptions
{
    /// <summary>Fetches in flight; null: automatic (start small, grow while throughput rises, up to <see cref="FetchBudget.AutoFetchLimit"/>).</summary>
    public int? FetchConcurrency { get; init; }
    /// <summary>Cap on encoded bytes read per second; null for none.</summary>
    public long? MaxBytesPerSecond { get; init; }
    /// <summary>A gate shared with other restores; overrides <see cref="FetchConcurrency"/>.</summary>
    public FetchBudget? Budget { get; init; }
    /// <summary>The retry policy; null: the source's own (<see cref="IChunkSource.RetryPolicy"/>).</summary>
    public ChunkRetryPolicy? RetryPolicy { get; init; }
}

/// <summary>The chunk-access service over one <see cref="IChunkSource"/>; thread-safe. Dispose it to end its own gate's tuning.</summary>
public sealed class ChunkAccess : IChunkAccess, IDisposable
{
    private readonly IChunkSource _source;
    private readonly FetchGate _gate;
    private readonly FetchGate? _ownGate;
    private readonly FetchBudget? _budget;
    private readonly BandwidthLimiter? _limiter;
    private readonly IChunkAccessObserver? _observer;
    private readonly ChunkRetryPolicy _policy;
    private readonly Action _retried;
    private long _wireBytes;
    private int _retries, _rereads;

    public ChunkAccess(IChunkSource source, ChunkAccessOptions? options = null, IChunkAccessObserver? observer = null)
    {
        options ??= new ChunkAccessOptions();
        _source = source;
        _observer = observer;
        _budget = options.Budget;
        _ownGate = _budget is null ? new FetchGate(options.FetchConcurrency, FetchBudget.AutoFetchLimit) : null;
        _gate = _budget?.Gate ?? _ownGate!;
        _limiter = options.MaxBytesPerSecond is { } bps ? new BandwidthLimiter(bps) : null;
        _policy = options.RetryPolicy ?? source.RetryPolicy;
        _retried = () =>
        {
            Interlocked.Increment(ref _retries);
            _observer?.Retried();
        };
    }

    public int MaxConcurrency => _gate.Max;
    /// <summary>The gate's current limit.</summary>
    public int Limit => _gate.Limit;
    /// <summary>Encoded bytes read through this service (rereads included).</summary>
    public long WireBytes => Interlocked.Read(ref _wireBytes);
    /// <summary>Chunk reads repeated after a transient failure.</summary>
    public int Retries => Volatile.Read(ref _retries);
    /// <summary>Chunks read again after a copy failed its checks (<see cref="RereadAsync"/> calls).</summary>
    public int Rereads => Volatile.Read(ref _rereads);

    /// <summary>
    /// Tunes this service's own automatic gate on its wire rate until <paramref name="ct"/> ends (a shared budget is
    /// tuned by its owner: then only its limit is reported).
    /// </summary>
    public Task TuneAsync(Action<int> report, CancellationToken ct)
    {
        if (_ownGate is null)
        {
            report(_gate.Limit);
            return Task.CompletedTask;
        }
        return _ownGate.TuneAsync(() => WireBytes, report, ct);
    }

    public ValueTask<ChunkFetch> FetchAsync(ChunkDigest digest, byte[] buffer, CancellationToken ct) =>
        FetchAsync(digest, new CallersBuffer(buffer), ct);

    public async ValueTask<ChunkFetch> FetchAsync(ChunkDigest digest, IFetchBuffers buffers, CancellationToken ct)
    {
        await _gate.WaitAsync(ct).ConfigureAwait(false);
        byte[]? buffer = null;
        try
        {
            buffer = buffers.Rent();
            int length = await ReadAsync(digest, buffer, reread: false, ct).ConfigureAwait(false);
            return new ChunkFetch(length, buffer, _gate);
        }
        catch
        {
            if (buffer is not null) buffers.Return(buffer);
            _gate.Release();
            throw;
        }
    }

    /// <summary>A buffer the caller gave and keeps, whatever happens.</summary>
    private sealed class CallersBuffer(byte[] buffer) : IFetchBuffers
    {
        public byte[] Rent() => buffer;
        public void Return(byte[] b) { }
    }

    public async ValueTask<int> RereadAsync(ChunkDigest digest, byte[] buffer, CancellationToken ct)
    {
        // A reread takes a free slot, but never waits for one: the slots may all be held by fetchers waiting for the
        // decoders, and the decoder asking here is one of those they wait for. It reuses the decoder's buffer, so
        // going over the limit by at most one read per decoder costs no memory.
        Interlocked.Increment(ref _rereads);
        bool slot = _gate.TryEnter();
        try
        {
            return await ReadAsync(digest, buffer, reread: true, ct).ConfigureAwait(false);
        }
        finally
        {
            if (slot) _gate.Release();
        }
    }

    /// <summary>Under a slot: the read with its retries (<see cref="ChunkRetryPolicy"/>), then counting and the bandwidth cap.</summary>
    private async ValueTask<int> ReadAsync(ChunkDigest digest, byte[] buffer, bool reread, CancellationToken ct)
    {
        long started = Stopwatch.GetTimestamp();
        int length = await _policy.RunAsync(c => _source.ReadRawChunkAsync(digest, buffer, c), _retried, ct).ConfigureAwait(false);
        Interlocked.Add(ref _wireBytes, length);
        _observer?.Fetched(length, started, reread);
        _budget?.AddWire(length);
        if (_limiter is not null)
        {
            long throttled = Stopwatch.GetTimestamp();
            await _limiter.ChargeAsync(length, ct).ConfigureAwait(false);
            _observer?.Throttled(throttled);
        }
        return length;
    }

    public void Dispose() => _ownGate?.Dispose();
}
