using System.Net;
using System.Net.Sockets;

namespace PbsRestore.Publishing.Iscsi;

/// <summary>
/// An iSCSI target (RFC 7143) serving <see cref="IBlockDevice"/> LUNs over TCP. Start with <see cref="StartAsync"/>;
/// dispose (or <see cref="StopAsync"/>) to close the listener and every connection.
/// </summary>
public sealed class IscsiTarget : IAsyncDisposable
{
    private readonly IscsiTargetOptions _options;
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _acceptLoop;
    internal readonly TargetStats Stats = new();
    internal readonly SessionTable Sessions;
    private readonly HashSet<Task> _connections = [];

    private IscsiTarget(IscsiTargetOptions options, Socket listener)
    {
        _options = options;
        _listener = listener;
        Sessions = new SessionTable(options.MaxSessions);
        _units = options.Luns.ToDictionary(l => l.Number, l => new ScsiLogicalUnit(l, options.TargetName));
        _lunNumbers = [.. options.Luns.Select(l => l.Number).Order()];
        _acceptLoop = Task.Run(AcceptLoopAsync);
    }

    /// <summary>Validates the options, binds the listener and starts accepting connections.</summary>
    public static Task<IscsiTarget> StartAsync(IscsiTargetOptions options, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ct.ThrowIfCancellationRequested();
        Validate(options);
        var socket = new Socket(options.Listen.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (options.Listen.AddressFamily == AddressFamily.InterNetworkV6 && options.Listen.Address.Equals(IPAddress.IPv6Any))
                socket.DualMode = true;
            socket.Bind(options.Listen);
            socket.Listen(64);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        var target = new IscsiTarget(options, socket);
        target.Log(IscsiDiagnosticLevel.Info, $"target {options.TargetName} listening on {target.LocalEndPoint} with {options.Luns.Count} LUN(s)", null);
        return Task.FromResult(target);
    }

    internal static void Validate(IscsiTargetOptions o)
    {
        if (!IscsiNames.IsValid(o.TargetName))
            throw new ArgumentException($"'{o.TargetName}' is not a valid iSCSI name (iqn.yyyy-mm.domain[:name], eui.<16 hex> or naa.<hex>).", nameof(o));
        if (o.Luns is null || o.Luns.Count == 0) throw new ArgumentException("A target needs at least one LUN.", nameof(o));
        if (o.Luns.Count > 256) throw new ArgumentException("A target serves at most 256 LUNs.", nameof(o));
        var seen = new HashSet<int>();
        foreach (var lun in o.Luns)
        {
            if (lun.Number is < 0 or > 255) throw new ArgumentException($"LUN number {lun.Number} is outside 0..255.", nameof(o));
            if (!seen.Add(lun.Number)) throw new ArgumentException($"LUN number {lun.Number} is used twice.", nameof(o));
            ArgumentNullException.ThrowIfNull(lun.Device);
            int bs = lun.Device.BlockSize;
            if (bs < 512 || bs > 65536 || (bs & (bs - 1)) != 0) throw new ArgumentException($"LUN {lun.Number}: block size {bs} is not a power of two in 512..65536.", nameof(o));
            if (lun.Device.Length <= 0 || lun.Device.Length % bs != 0) throw new ArgumentException($"LUN {lun.Number}: length {lun.Device.Length} is not a positive multiple of the block size {bs}.", nameof(o));
        }
        if (!IPAddress.IsLoopback(o.Listen.Address) && o.Chap is null && (o.AllowedInitiators is null || o.AllowedInitiators.Count == 0))
            throw new ArgumentException($"Listening on {o.Listen.Address} (not loopback) requires CHAP or a list of allowed initiators.", nameof(o));
        if (o.MaxSessions < 1 || o.MaxConnectionsPerSession < 1 || o.CommandWindow is < 1 or > 1024)
            throw new ArgumentException("MaxSessions, MaxConnectionsPerSession must be ≥ 1 and CommandWindow 1..1024.", nameof(o));
        if (o.MaxRecvDataSegmentLength is < 512 or > 16777215 || o.MaxBurstLength is < 512 or > 16777215 ||
            o.FirstBurstLength < 512 || o.FirstBurstLength > o.MaxBurstLength)
            throw new ArgumentException("MaxRecvDataSegmentLength and MaxBurstLength must be 512..16777215 and FirstBurstLength 512..MaxBurstLength (RFC 7143 §13).", nameof(o));
        if (o.LoginTimeout <= TimeSpan.Zero || o.IdleTimeout <= TimeSpan.Zero) throw new ArgumentException("Timeouts must be positive.", nameof(o));
    }

    /// <summary>The address and port actually bound (port 0 in the options becomes the chosen port).</summary>
    public IPEndPoint LocalEndPoint => (IPEndPoint)_listener.LocalEndPoint!;

    /// <summary>The target's IQN.</summary>
    public string TargetName => _options.TargetName;

    /// <summary>The LUNs served.</summary>
    public IReadOnlyList<IscsiLun> Luns => _options.Luns;

    /// <summary>A snapshot of the counters.</summary>
    public IscsiTargetCounters Counters => Stats.Snapshot(Sessions.Count);

    /// <summary>A snapshot of each LUN's counters, in LUN order.</summary>
    public IReadOnlyList<IscsiLunCounters> LunCounters => [.. _lunNumbers.Select(n => _units[n].Snapshot())];

    /// <summary>Completes when the target has stopped (after <see cref="StopAsync"/> or a listener failure).</summary>
    public Task Completion => _acceptLoop;

    internal IscsiTargetOptions Options => _options;

    private readonly Dictionary<int, ScsiLogicalUnit> _units;
    private readonly int[] _lunNumbers;

    /// <summary>The logical unit for a LUN number, or null.</summary>
    internal ScsiLogicalUnit? Unit(int lun) =>
        _units.GetValueOrDefault(lun);

    internal IReadOnlyList<int> LunNumbers => _lunNumbers;

    /// <summary>Runs one connection over a stream (the fuzzer's way in; real connections come from the listener).</summary>
    internal Task RunConnectionAsync(Stream stream)
    {
        Interlocked.Increment(ref Stats.ActiveConnections);
        return new IscsiConnection(this, stream, null, null).RunAsync();
    }

    internal CancellationToken Stopping => _stop.Token;

    internal void Log(IscsiDiagnosticLevel level, string message, EndPoint? remote)
    {
        var sink = _options.Log;
        if (sink is null) return;
        try { sink(new IscsiDiagnostic(DateTimeOffset.UtcNow, level, message, remote)); }
        catch { /* a failing log sink must not take the target down */ }
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try { client = await _listener.AcceptAsync(_stop.Token).ConfigureAwait(false); }
            catch (OperationCanceledException) { break; }
            catch (ObjectDisposedException) { break; }
            catch (SocketException e)
            {
                if (_stop.IsCancellationRequested) break;
                Log(IscsiDiagnosticLevel.Warning, $"accept failed: {e.SocketErrorCode}", null);
                continue;
            }
            // Connections beyond what the sessions may use (plus some in login) are closed at once: a flood of
            // idle sockets must not pile up tasks until their login timeouts.
            int cap = _options.MaxSessions * _options.MaxConnectionsPerSession + 16;
            if (Volatile.Read(ref Stats.ActiveConnections) >= cap)
            {
                Log(IscsiDiagnosticLevel.Warning, $"connection refused: {cap} connections open", client.RemoteEndPoint);
                Interlocked.Increment(ref Stats.LoginFailures);
                client.Dispose();
                continue;
            }
            Interlocked.Increment(ref Stats.ActiveConnections);
            client.NoDelay = true;
            var conn = new IscsiConnection(this, client);
            Task t = Task.Run(conn.RunAsync);
            lock (_connections) _connections.Add(t);
            _ = t.ContinueWith(done => { lock (_connections) _connections.Remove(done); }, TaskScheduler.Default);
        }
    }

    /// <summary>Stops listening, closes every connection and waits for them to finish.</summary>
    public async Task StopAsync()
    {
        if (!_stop.IsCancellationRequested)
        {
            _stop.Cancel();
            _listener.Dispose();
        }
        try { await _acceptLoop.ConfigureAwait(false); } catch { }
        Task[] open;
        lock (_connections) open = [.. _connections];
        try { await Task.WhenAll(open).ConfigureAwait(false); } catch { }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        _stop.Dispose();
    }
}

/// <summary>Thread-safe counters behind <see cref="IscsiTargetCounters"/>.</summary>
internal sealed class TargetStats
{
    public long TotalSessions, LoginFailures, Commands, BytesRead, BytesWritten, CheckConditions, ProtocolErrors;
    public int ActiveConnections;

    public IscsiTargetCounters Snapshot(int activeSessions) => new(
        activeSessions, Interlocked.Read(ref TotalSessions), Volatile.Read(ref ActiveConnections), Interlocked.Read(ref LoginFailures),
        Interlocked.Read(ref Commands), Interlocked.Read(ref BytesRead), Interlocked.Read(ref BytesWritten),
        Interlocked.Read(ref CheckConditions), Interlocked.Read(ref ProtocolErrors));
}
