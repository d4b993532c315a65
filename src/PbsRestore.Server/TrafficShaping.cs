using System.Diagnostics;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace PbsRestore.Server;

/// <summary>
/// A token bucket in virtual-time form (GCRA): each write reserves its bytes and learns how long to wait before
/// sending them, so concurrent writers are served in order of arrival and no thread ever blocks (callers
/// <c>await Task.Delay</c>). Long-run rate = <c>bytesPerSecond</c>; up to <c>burstBytes</c> pass at once after
/// an idle period. Thread-safe.
/// </summary>
public sealed class TokenBucket
{
    private readonly double _ticksPerByte;
    private readonly long _burstTicks;
    private readonly object _lock = new();
    private long _tat; // "theoretical arrival time" of the next byte, in Stopwatch ticks

    public TokenBucket(double bytesPerSecond, int burstBytes)
    {
        if (!(bytesPerSecond > 0)) throw new ArgumentOutOfRangeException(nameof(bytesPerSecond));
        BytesPerSecond = bytesPerSecond;
        _ticksPerByte = Stopwatch.Frequency / bytesPerSecond;
        _burstTicks = (long)(Math.Max(1, burstBytes) * _ticksPerByte);
    }

    public double BytesPerSecond { get; }

    /// <summary>From megabits (10^6 bits) per second; the burst is one pacing slice.</summary>
    public static TokenBucket FromMbit(double mbit) => new(mbit * 1e6 / 8, TrafficShaper.SliceSize);

    /// <summary>Reserves <paramref name="bytes"/> and returns how long the caller must wait before sending them.</summary>
    public TimeSpan Reserve(int bytes)
    {
        long now = Stopwatch.GetTimestamp();
        long tat;
        lock (_lock)
        {
            tat = Math.Max(_tat, now) + (long)(bytes * _ticksPerByte);
            _tat = tat;
        }
        long wait = tat - now - _burstTicks;
        return wait <= 0 ? TimeSpan.Zero : Stopwatch.GetElapsedTime(0, wait);
    }
}

/// <summary>
/// The fault and capacity injection of <c>--chunk-latency-ms</c>, <c>--max-parallel-reads</c>, <c>--bandwidth-mbit</c>
/// and <c>--connection-bandwidth-mbit</c> (for benchmarks and tests): a delay and a server-wide queue around each
/// chunk read (the datastore disk), and token buckets that pace response bodies (the link, and each connection).
/// Everything waits asynchronously; no thread blocks.
/// </summary>
public sealed class TrafficShaper
{
    /// <summary>Body bytes are paced in slices of this size.</summary>
    public const int SliceSize = 64 * 1024;
    private static readonly object ConnectionBucketKey = new();

    private readonly SemaphoreSlim? _reads;
    private readonly double? _connectionMbit;

    public TrafficShaper(ServerOptions options)
    {
        ChunkLatency = options.ChunkLatency;
        if (options.MaxParallelReads is { } n) _reads = new SemaphoreSlim(n, n);
        if (options.BandwidthMbit is { } link) Link = TokenBucket.FromMbit(link);
        _connectionMbit = options.ConnectionBandwidthMbit;
    }

    public TimeSpan ChunkLatency { get; }
    /// <summary>The whole link's bucket (all bodies of all connections), or null.</summary>
    public TokenBucket? Link { get; }
    public bool PacesBodies => Link is not null || _connectionMbit is not null;

    /// <summary>A new per-connection bucket (null without <c>--connection-bandwidth-mbit</c>).</summary>
    public TokenBucket? NewConnectionBucket() => _connectionMbit is { } m ? TokenBucket.FromMbit(m) : null;

    /// <summary>
    /// Runs a chunk read as the injected disk would: waits for a queue slot (<c>--max-parallel-reads</c>), then
    /// the latency (<c>--chunk-latency-ms</c>), then <paramref name="read"/>; the slot is held throughout.
    /// </summary>
    public async Task<T> ReadAsync<T>(Func<Task<T>> read, CancellationToken ct)
    {
        if (_reads is null && ChunkLatency <= TimeSpan.Zero) return await read();
        if (_reads is not null) await _reads.WaitAsync(ct);
        try
        {
            if (ChunkLatency > TimeSpan.Zero) await Task.Delay(ChunkLatency, ct);
            return await read();
        }
        finally
        {
            _reads?.Release();
        }
    }

    /// <summary>The bucket of the connection <paramref name="context"/> came on (reader sessions: the upgraded connection).</summary>
    private TokenBucket? ConnectionBucket(HttpContext context)
    {
        if (_connectionMbit is null) return null;
        if (context.Features.Get<IReaderSessionFeature>() is { } session) return session.Session.Bucket;
        var items = context.Features.Get<IConnectionItemsFeature>()?.Items;
        if (items is null) return null;
        lock (items)
        {
            if (items.TryGetValue(ConnectionBucketKey, out var b) && b is TokenBucket bucket) return bucket;
            var created = NewConnectionBucket()!;
            items[ConnectionBucketKey] = created;
            return created;
        }
    }

    /// <summary>Writes a response body, paced against the link and connection buckets when they are set.</summary>
    public async Task WriteBodyAsync(HttpContext context, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        var body = context.Response.Body;
        if (!PacesBodies)
        {
            await body.WriteAsync(data, ct);
            return;
        }
        var connection = ConnectionBucket(context);
        for (int at = 0; at < data.Length; at += SliceSize)
        {
            var slice = data.Slice(at, Math.Min(SliceSize, data.Length - at));
            await PaceAsync(connection, slice.Length, ct);
            await body.WriteAsync(slice, ct);
        }
    }

    /// <summary>Sends a file as the body, paced like <see cref="WriteBodyAsync"/>.</summary>
    public async Task SendFileAsync(HttpContext context, string path, long length, CancellationToken ct)
    {
        if (!PacesBodies)
        {
            await context.Response.SendFileAsync(path, 0, length, ct);
            return;
        }
        var connection = ConnectionBucket(context);
        var buffer = new byte[SliceSize];
        await using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.Asynchronous);
        long left = length;
        while (left > 0)
        {
            int n = await file.ReadAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, left)), ct);
            if (n == 0) break;
            await PaceAsync(connection, n, ct);
            await context.Response.Body.WriteAsync(buffer.AsMemory(0, n), ct);
            left -= n;
        }
    }

    private async ValueTask PaceAsync(TokenBucket? connection, int bytes, CancellationToken ct)
    {
        // The flow's own cap first, then the shared link: a flow held back by its cap does not claim link time early.
        // Waits under a millisecond are left to accumulate in the buckets (timer resolution); the reservations keep
        // the long-run rate exact.
        if (connection is not null && connection.Reserve(bytes) is var w1 && w1 >= MinDelay) await Task.Delay(w1, ct);
        if (Link is not null && Link.Reserve(bytes) is var w2 && w2 >= MinDelay) await Task.Delay(w2, ct);
    }

    private static readonly TimeSpan MinDelay = TimeSpan.FromMilliseconds(1);

    /// <summary>The shaper of the server handling <paramref name="context"/>, if registered.</summary>
    public static TrafficShaper? Of(HttpContext context) => context.RequestServices?.GetService<TrafficShaper>();
}
