using System.Net;
using System.Net.Sockets;

namespace PbsRestore.Tests.Remote;

/// <summary>
/// A plain TCP proxy in front of the server that cuts connections (a reset, as a failing firewall or NAT would)
/// after a seeded-random number of server-to-client bytes. It knows nothing of TLS, HTTP or PBS: a fault we did
/// not build into our own server. Connections not yet due to be cut pass bytes unchanged.
/// </summary>
internal sealed class TcpCutProxy : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly int _target;
    private readonly Random _random;
    private readonly long _minBytes, _maxBytes;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _pumps = [];
    private readonly Task _accepting;
    private int _connections, _cuts;

    /// <param name="targetPort">The server's port on 127.0.0.1.</param>
    /// <param name="minBytes">Each connection carries at least this many bytes to the client before its cut...</param>
    /// <param name="maxBytes">...and at most this many (null: never cut).</param>
    public TcpCutProxy(int targetPort, long minBytes, long? maxBytes, int seed)
    {
        _target = targetPort;
        _minBytes = minBytes;
        _maxBytes = maxBytes ?? long.MaxValue;
        _random = new Random(seed);
        _listener.Start();
        _accepting = AcceptLoopAsync();
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;
    public int Connections => Volatile.Read(ref _connections);
    /// <summary>Connections cut so far.</summary>
    public int Cuts => Volatile.Read(ref _cuts);

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try { client = await _listener.AcceptSocketAsync(_stop.Token); }
            catch (Exception) { return; }
            Interlocked.Increment(ref _connections);
            long budget;
            lock (_random) budget = _maxBytes == long.MaxValue ? long.MaxValue : _minBytes + (long)(_random.NextDouble() * (_maxBytes - _minBytes));
            lock (_pumps) _pumps.Add(RelayAsync(client, budget));
        }
    }

    private async Task RelayAsync(Socket client, long budget)
    {
        using var server = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        client.NoDelay = true;
        try
        {
            await server.ConnectAsync(IPAddress.Loopback, _target, _stop.Token);
            using var both = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
            var up = PumpAsync(client, server, long.MaxValue, both.Token);
            var down = PumpAsync(server, client, budget, both.Token);
            await Task.WhenAny(up, down);
            if (down.IsCompletedSuccessfully && down.Result)
            {
                Interlocked.Increment(ref _cuts);
                // A reset, not a graceful close: both ends see the connection die mid-stream.
                client.LingerState = new LingerOption(true, 0);
                server.LingerState = new LingerOption(true, 0);
            }
            both.Cancel();
        }
        catch (Exception)
        {
        }
        finally
        {
            client.Dispose();
        }
    }

    /// <summary>Copies until EOF (false) or until <paramref name="budget"/> bytes went through (true: cut now).</summary>
    private static async Task<bool> PumpAsync(Socket from, Socket to, long budget, CancellationToken ct)
    {
        var buffer = new byte[64 * 1024];
        long sent = 0;
        try
        {
            while (true)
            {
                int n = await from.ReceiveAsync(buffer, SocketFlags.None, ct);
                if (n == 0) return false;
                int allowed = (int)Math.Min(n, budget - sent);
                if (allowed > 0) await to.SendAsync(buffer.AsMemory(0, allowed), SocketFlags.None, ct);
                sent += allowed;
                if (sent >= budget) return true;
            }
        }
        catch (Exception)
        {
            return false;
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Stop();
        await _accepting;
        Task[] pumps;
        lock (_pumps) pumps = [.. _pumps];
        await Task.WhenAll(pumps);
    }
}
