using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using PbsRestore.Formats;

namespace PbsRestore.Server;

/// <summary>What is done to one chunk response (see <see cref="FaultInjector.Plan"/>).</summary>
public readonly record struct ChunkFaultPlan(long Number, bool Hold, bool Corrupt, bool Stall, bool Drop);

/// <summary>
/// The per-connection fault state of a reader session: its chunk-response count, whether it is being dropped
/// (<c>--drop-after-chunks</c>), and how to abort it.
/// </summary>
public sealed class ConnectionFaults
{
    private long _responses;
    private int _sending;
    private volatile bool _dropping;

    /// <summary>Aborts the upgraded connection (set once the connection exists).</summary>
    public Action? Abort { get; set; }
    public bool Dropping => _dropping;
    /// <summary>Chunk responses being sent now on this connection.</summary>
    public int Sending => Volatile.Read(ref _sending);

    internal long NextResponse() => Interlocked.Increment(ref _responses);
    internal void MarkDropping() => _dropping = true;
    internal void BeginSend() => Interlocked.Increment(ref _sending);
    internal void EndSend() => Interlocked.Decrement(ref _sending);
}

/// <summary>
/// The chunk fault injection of <c>--drop-after-chunks</c>, <c>--corrupt-chunk</c>/<c>--corrupt-rate</c>,
/// <c>--chunk-status</c>/<c>--chunk-error-rate</c> and <c>--stall-chunk-ms</c>/<c>--stall-every</c> (tests of
/// client recovery). Random draws come from seeded generators (one draw per chunk response or request, in the
/// order the server reaches them), so a run is reproducible given the seed and the request order. Every injected
/// fault is logged at Information (digests and connection ids only; no secrets).
/// </summary>
public sealed class FaultInjector
{
    /// <summary>How long the Nth response is given to reach the socket before the connection is aborted.</summary>
    public static readonly TimeSpan DropGrace = TimeSpan.FromMilliseconds(100);
    /// <summary>A stalled response sends at most this much of its body before the stall.</summary>
    public const int StallPrefix = 4096;

    private readonly ServerOptions _options;
    private readonly ILogger<FaultInjector> _log;
    private readonly Random? _corruptRandom;
    private readonly Random? _errorRandom;

    public FaultInjector(ServerOptions options, ILogger<FaultInjector> log)
    {
        _options = options;
        _log = log;
        CorruptSeed = options.CorruptSeed ?? RandomNumberGenerator.GetInt32(int.MaxValue);
        ErrorSeed = options.FaultSeed ?? options.CorruptSeed ?? RandomNumberGenerator.GetInt32(int.MaxValue);
        if (options.CorruptRate > 0) _corruptRandom = new Random(CorruptSeed);
        if (options.ChunkErrorRate > 0) _errorRandom = new Random(ErrorSeed);
    }

    public bool Enabled => _options.InjectsChunkFaults;
    /// <summary>The seed in use for --corrupt-rate (given or drawn).</summary>
    public int CorruptSeed { get; }
    /// <summary>The seed in use for --chunk-error-rate (given or drawn).</summary>
    public int ErrorSeed { get; }

    private static bool Draw(Random random, double rate)
    {
        lock (random) return random.NextDouble() < rate;
    }

    /// <summary>
    /// The injected error answer for a chunk request (allowed by its session), or null: <c>--chunk-status</c> first,
    /// then a <c>--chunk-error-rate</c> draw (made for every request while the rate is set).
    /// </summary>
    public (int Status, string Message)? ErrorFor(ReaderSession session, ChunkDigest digest, string hex)
    {
        if (!Enabled) return null;
        bool random = _errorRandom is not null && Draw(_errorRandom, _options.ChunkErrorRate);
        int status;
        string why;
        if (_options.ChunkStatus.TryGetValue(digest, out status)) why = "--chunk-status";
        else if (random) { status = 500; why = "--chunk-error-rate"; }
        else return null;
        _log.LogInformation("fault: reader session {Id}: chunk {Digest}: answering {Status} ({Why})", session.ConnectionId, hex, status, why);
        return status == 404
            ? (404, $"download chunk {hex} failed - chunk not found (injected fault)")
            : (500, $"reading chunk {hex} failed - internal server error (injected fault)");
    }

    /// <summary>
    /// Decides the faults of the next chunk response of <paramref name="session"/> and counts it (unless it is held
    /// because the connection is being dropped). The caller brackets the send with <see cref="ConnectionFaults.BeginSend"/>.
    /// </summary>
    public ChunkFaultPlan Plan(ReaderSession session, ChunkDigest digest)
    {
        if (!Enabled) return default;
        var faults = session.Faults;
        if (faults.Dropping) return new ChunkFaultPlan(0, Hold: true, false, false, false);
        long n = faults.NextResponse();
        bool corrupt = _options.CorruptChunks.Contains(digest);
        if (_corruptRandom is not null && Draw(_corruptRandom, _options.CorruptRate)) corrupt = true;
        bool stall = _options.StallChunk > TimeSpan.Zero && n % _options.StallEvery == 0;
        bool drop = _options.DropAfterChunks is { } every && n % every == 0;
        if (drop) faults.MarkDropping();
        return new ChunkFaultPlan(n, false, corrupt, stall, drop);
    }

    public TimeSpan Stall => _options.StallChunk;

    /// <summary>Whether connections are dropped after N responses (only then must a response be completed before it counts).</summary>
    public bool DropsConnections => _options.DropAfterChunks is not null;

    /// <summary>Flips (XOR 0xFF) the middle byte of the payload after the blob header; returns its offset.</summary>
    public static int Corrupt(Span<byte> blob)
    {
        if (blob.Length == 0) return -1;
        int header = FileFormats.BlobHeaderSize;
        try { header = DataBlob.HeaderSize(DataBlob.GetKind(blob)); }
        catch (PbsException) { }
        int at = blob.Length > header ? header + (blob.Length - header) / 2 : blob.Length - 1;
        blob[at] ^= 0xFF;
        return at;
    }

    public void LogCorrupt(ReaderSession session, string hex, long number, int offset) =>
        _log.LogInformation("fault: reader session {Id}: chunk {Digest} (response {Number}): flipped byte {Offset} in transit",
            session.ConnectionId, hex, number, offset);

    public void LogStall(ReaderSession session, string hex, long number, int sent) =>
        _log.LogInformation("fault: reader session {Id}: chunk {Digest} (response {Number}): stalling {Ms} ms after {Sent} bytes",
            session.ConnectionId, hex, number, (long)_options.StallChunk.TotalMilliseconds, sent);

    /// <summary>
    /// After the Nth response was completed: waits for the responses still being sent on the connection (at most
    /// 10 s) and the grace, then aborts the connection.
    /// </summary>
    public async Task DropAsync(ReaderSession session, string hex, long number)
    {
        try
        {
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
            while (session.Faults.Sending > 0 && DateTime.UtcNow < deadline) await Task.Delay(10);
            await Task.Delay(DropGrace);
            _log.LogInformation("fault: reader session {Id}: aborting the connection after {Number} chunk responses (last: {Digest})",
                session.ConnectionId, number, hex);
            session.Faults.Abort?.Invoke();
        }
        catch (Exception e)
        {
            _log.LogWarning("fault: reader session {Id}: abort failed: {Message}", session.ConnectionId, e.Message);
        }
    }

    /// <summary>One line for the start log.</summary>
    public string Describe()
    {
        var parts = new List<string>();
        if (_options.DropAfterChunks is { } d) parts.Add($"drop connection after every {d} chunk responses");
        if (_options.CorruptChunks.Count > 0) parts.Add($"corrupt {_options.CorruptChunks.Count} chunk(s)");
        if (_options.CorruptRate > 0) parts.Add(FormattableString.Invariant($"corrupt rate {_options.CorruptRate} (seed {CorruptSeed})"));
        if (_options.ChunkStatus.Count > 0) parts.Add($"fixed status for {_options.ChunkStatus.Count} chunk(s)");
        if (_options.ChunkErrorRate > 0) parts.Add(FormattableString.Invariant($"error rate {_options.ChunkErrorRate} (seed {ErrorSeed})"));
        if (_options.StallChunk > TimeSpan.Zero) parts.Add($"stall {(long)_options.StallChunk.TotalMilliseconds} ms every {_options.StallEvery} chunk response(s)");
        return string.Join("; ", parts);
    }
}
