using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Runtime.ExceptionServices;
using PbsRestore.Formats;
using PbsRestore.Sources;

namespace PbsRestore.Sources.Remote;

/// <summary>
/// One reader session on a snapshot: one <see cref="SocketsHttpHandler"/> speaking HTTP/2 over an upgraded TLS
/// connection (<see cref="ReaderUpgrade"/>). The handler may silently replace its connection (idle, GOAWAY,
/// a network error), and each new connection is a new server session in which chunks are refused ("not
/// allowed") until their index is downloaded again. So the session remembers the indexes it needs, notes which
/// connection downloaded them (<see cref="Connections"/> counts connections) and re-downloads them before the
/// next chunk when the connection changed. This is transport only: a request is one attempt that reports what
/// happened (a broken connection, a stall, a refused chunk with whether its connection changed); what comes next is
/// the <see cref="ChunkRetryPolicy"/>'s. Thread-safe: many fetch workers share it (HTTP/2 multiplexes them).
/// </summary>
public sealed class ReaderSession : IAsyncDisposable, IDisposable
{
    /// <summary>Measured best on loopback; larger windows did not help (.NET keeps 16 KiB frames anyway).</summary>
    public const int StreamWindowSize = 1 << 20;

    private readonly PbsClient _client;
    private readonly string _store;
    private readonly HttpClient _http;
    private readonly object _gate = new();
    private readonly Dictionary<string, IndexRegistration> _indexes = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _replayLock = new(1, 1);
    private readonly ChunkRetryPolicy _policy;
    private int _connections, _inFlight, _notAllowed, _replays, _replayEpoch;
    private ConnectionStream? _current;
    private bool _disposed;

    private sealed class IndexRegistration(long maxSize)
    {
        public long MaxSize { get; } = maxSize;
        /// <summary>The <see cref="Connections"/> value when it was last downloaded; 0 = not yet on any.</summary>
        public int Connection { get; set; }
    }

    internal ReaderSession(PbsClient client, string store, SnapshotRef snapshot)
    {
        _client = client;
        _store = store;
        Snapshot = snapshot;
        _policy = client.RetryPolicy;
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = OnConnectAsync,
            ConnectTimeout = TlsConnector.ConnectTimeout,
            InitialHttp2StreamWindowSize = StreamWindowSize,
            // K sessions = K handlers; within one, a second connection would be a second server session.
            EnableMultipleHttp2Connections = false,
            PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
            PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
            // Pings keep NATs and the server from dropping a quiet session, and detect a dead one.
            KeepAlivePingDelay = TimeSpan.FromSeconds(30),
            KeepAlivePingTimeout = TimeSpan.FromSeconds(20),
            KeepAlivePingPolicy = HttpKeepAlivePingPolicy.Always,
            AutomaticDecompression = DecompressionMethods.None,
            UseCookies = false,
            AllowAutoRedirect = false,
        };
        _http = new HttpClient(handler)
        {
            // http:// + exact 2.0 = HTTP/2 with prior knowledge over the stream ConnectCallback returns (TLS inside).
            BaseAddress = new Uri($"http://{client.Repository.Authority}/"),
            DefaultRequestVersion = HttpVersion.Version20,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Timeout = TimeSpan.FromMinutes(10),
        };
        _http.DefaultRequestHeaders.UserAgent.ParseAdd(RestTransport.UserAgent);
    }

    public SnapshotRef Snapshot { get; }
    public string Location => $"{_client.LocationOf(_store)}/{Snapshot}";
    /// <summary>Upgraded connections made so far (each one a server session).</summary>
    public int Connections => Volatile.Read(ref _connections);
    /// <summary>Chunk requests under way: the reader sends the next one to the least busy session.</summary>
    public int InFlight => Volatile.Read(ref _inFlight);
    /// <summary>How often the server refused a chunk as "not allowed" (should stay 0; test hook and diagnostics).</summary>
    public int NotAllowedRefusals => Volatile.Read(ref _notAllowed);
    /// <summary>Index downloads repeated because the connection changed or a chunk was refused.</summary>
    public int IndexReplays => Volatile.Read(ref _replays);
    /// <summary>The retry policy of this session's reads (the client's: its stall deadline).</summary>
    public ChunkRetryPolicy RetryPolicy => _policy;

    private async ValueTask<Stream> OnConnectAsync(SocketsHttpConnectionContext context, CancellationToken ct)
    {
        var stream = new ConnectionStream(await ReaderUpgrade.ConnectAsync(_client, _store, Snapshot, ct).ConfigureAwait(false));
        // Count first: a registration made from now on belongs to this connection.
        Interlocked.Increment(ref _connections);
        Volatile.Write(ref _current, stream);
        return stream;
    }

    /// <summary>Downloads a snapshot file (manifest, index, blob), at most <paramref name="maxSize"/> bytes, retried by the
    /// policy. An index downloaded here is remembered and re-downloaded on every later connection of this session.</summary>
    public async Task<byte[]> DownloadAsync(string fileName, long maxSize, CancellationToken ct)
    {
        var data = await _policy.RunAsync(c => new ValueTask<byte[]>(DownloadOnceAsync(fileName, maxSize, c)), null, ct).ConfigureAwait(false);
        if (IsIndex(fileName))
            lock (_gate)
            {
                if (!_indexes.TryGetValue(fileName, out var reg)) _indexes[fileName] = reg = new IndexRegistration(maxSize);
                reg.Connection = Connections;
            }
        return data;
    }

    /// <summary>
    /// Makes this session download <paramref name="fileName"/> (an index another session downloaded) before its next
    /// chunk, so the server allows that index's chunks here too.
    /// </summary>
    public void RequireIndex(string fileName, long maxSize)
    {
        if (!IsIndex(fileName)) return;
        lock (_gate)
            if (!_indexes.ContainsKey(fileName)) _indexes[fileName] = new IndexRegistration(maxSize);
    }

    internal static bool IsIndex(string fileName) => ArchiveNames.KindOf(fileName) is ArchiveKind.FixedIndex or ArchiveKind.DynamicIndex;

    /// <summary>One download attempt; a broken connection is <see cref="ChunkRetryPolicy.ConnectionLost"/>.</summary>
    private async Task<byte[]> DownloadOnceAsync(string fileName, long maxSize, CancellationToken ct)
    {
        string what = $"downloading '{fileName}' of {Location}";
        try
        {
            using var response = await SendAsync($"download?file-name={Uri.EscapeDataString(fileName)}", what, ct).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
                throw await ErrorAsync(response, what, "FileNotFound", ct).ConfigureAwait(false);
            if (response.Content.Headers.ContentLength is { } len && len > maxSize)
                throw new PbsFormatException($"{what}: {len} bytes exceeds the limit of {maxSize} for this file", "FileTooLarge");
            await using var body = await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
            var ms = new MemoryStream((int)Math.Min(response.Content.Headers.ContentLength ?? 64 * 1024, maxSize));
            var buf = new byte[64 * 1024];
            int r;
            while ((r = await body.ReadAsync(buf, ct).ConfigureAwait(false)) > 0)
            {
                if (ms.Length + r > maxSize)
                    throw new PbsFormatException($"{what}: more than the limit of {maxSize} bytes for this file", "FileTooLarge");
                ms.Write(buf, 0, r);
            }
            return ms.ToArray();
        }
        catch (Exception e) when (IsTransportFailure(e))
        {
            throw Lost(what, e);
        }
    }

    /// <summary>Reads a chunk's raw blob into <paramref name="buffer"/>, retried by the session's policy (see <see cref="ReadChunkOnceAsync"/>).</summary>
    public ValueTask<int> ReadChunkAsync(ChunkDigest digest, byte[] buffer, CancellationToken ct) =>
        _policy.RunAsync(c => ReadChunkOnceAsync(digest, buffer, c), null, ct);

    /// <summary>
    /// One attempt to read a chunk's raw blob into <paramref name="buffer"/>; returns its length: straight from the
    /// HTTP/2 stream into the caller's buffer, no copy. Indexes this connection lacks are downloaded first. Larger
    /// than the buffer → ChunkTooLarge; absent → ChunkMissing; the connection broke → ConnectionLost; nothing received
    /// for the stall timeout → ChunkStalled; refused as "not allowed" → <see cref="ChunkRefusedException"/> (asking
    /// again first downloads the indexes again).
    /// </summary>
    public async ValueTask<int> ReadChunkOnceAsync(ChunkDigest digest, byte[] buffer, CancellationToken ct)
    {
        Interlocked.Increment(ref _inFlight);
        string hex = digest.ToString();
        string what = $"reading chunk {hex} of {Location}";
        try
        {
            await EnsureIndexesAsync(ct).ConfigureAwait(false);
            int epoch = Volatile.Read(ref _replayEpoch);
            int connection = Connections;
            var (length, refusal) = await _policy.WithStallDeadlineAsync(
                watch => RequestChunkAsync(hex, buffer, what, watch), what, ct).ConfigureAwait(false);
            if (refusal is null) return length;
            // Refused: most likely the connection that carried the request never downloaded the index (a silent
            // reconnect, perhaps more than one while drops come in quick succession).
            Interlocked.Increment(ref _notAllowed);
            bool sameConnection = Connections == connection && Volatile.Read(ref _current) is not { Closed: true };
            throw new ChunkRefusedException(
                $"{what}: the server refuses it ({_client.Auth.Redact(refusal)}): it is in no index downloaded in this session",
                connectionChanged: !sameConnection, prepareToAskAgain: () => MarkIndexesStale(epoch));
        }
        catch (Exception e) when (IsTransportFailure(e))
        {
            throw Lost(what, e);
        }
        finally
        {
            Interlocked.Decrement(ref _inFlight);
        }
    }

    /// <summary>The chunk request itself, under the stall deadline; a refusal is returned as its message.</summary>
    private async Task<(int Length, string? Refusal)> RequestChunkAsync(string hex, byte[] buffer, string what, StallWatch watch)
    {
        var ct = watch.Token;
        using var response = await SendAsync($"chunk?digest={hex}", what, ct).ConfigureAwait(false);
        if (response.StatusCode == HttpStatusCode.Unauthorized)
        {
            var body = await response.Content.ReadAsByteArrayAsync(ct).ConfigureAwait(false);
            string msg = ServerError.MessageOf(body);
            if (msg.Contains("not allowed", StringComparison.OrdinalIgnoreCase))
                return (-1, msg);
            throw ServerError.Map(response.StatusCode, msg, what, "ChunkMissing", _client.Auth.Redact);
        }
        if (!response.IsSuccessStatusCode)
        {
            if ((int)response.StatusCode is >= 400 and < 500 and not 403)
            {
                string msg = ServerError.MessageOf(await response.Content.ReadAsByteArrayAsync(ct).ConfigureAwait(false));
                throw new PbsNotFoundException("ChunkMissing", $"chunk {hex} is missing from datastore '{_store}' on {_client.Repository.Authority}: {_client.Auth.Redact(msg)}");
            }
            throw await ErrorAsync(response, what, "ChunkMissing", ct).ConfigureAwait(false);
        }
        return (await ReadBodyIntoAsync(response, buffer, what, watch.Progressed, ct).ConfigureAwait(false), null);
    }

    private static async Task<int> ReadBodyIntoAsync(HttpResponseMessage response, byte[] buffer, string what, Action progressed, CancellationToken ct)
    {
        if (response.Content.Headers.ContentLength is { } len && len > buffer.Length)
            throw new PbsFormatException($"{what}: {len} bytes, more than any chunk of this index can have ({buffer.Length})", "ChunkTooLarge");
        await using var body = await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
        int total = 0;
        while (true)
        {
            if (total == buffer.Length)
            {
                var probe = new byte[1];
                if (await body.ReadAsync(probe, ct).ConfigureAwait(false) > 0)
                    throw new PbsFormatException($"{what}: more bytes than any chunk of this index can have ({buffer.Length})", "ChunkTooLarge");
                return total;
            }
            int r = await body.ReadAsync(buffer.AsMemory(total), ct).ConfigureAwait(false);
            if (r == 0) return total;
            total += r;
            progressed();
        }
    }

    /// <summary>Downloads 1 MiB of 'A' <paramref name="requests"/> times in a row; returns bytes per second.</summary>
    public async Task<double> SpeedtestAsync(int requests = 1, CancellationToken ct = default)
    {
        var buf = new byte[64 * 1024];
        long bytes = 0;
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < Math.Max(1, requests); i++)
        {
            using var response = await SendAsync("speedtest", $"speed test with {_client.Repository.Authority}", ct).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
                throw await ErrorAsync(response, "speed test", "NotFound", ct).ConfigureAwait(false);
            await using var body = await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
            int r;
            while ((r = await body.ReadAsync(buf, ct).ConfigureAwait(false)) > 0) bytes += r;
        }
        return bytes / Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
    }

    /// <summary>Re-downloads every needed index that the current connection has not downloaded (part of a chunk's attempt).</summary>
    private async ValueTask EnsureIndexesAsync(CancellationToken ct)
    {
        if (StaleIndexes().Count == 0) return;
        await _replayLock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            foreach (var (name, reg) in StaleIndexes())
            {
                await DownloadOnceAsync(name, reg.MaxSize, ct).ConfigureAwait(false);
                lock (_gate) reg.Connection = Connections;
                Interlocked.Increment(ref _replays);
            }
            Interlocked.Increment(ref _replayEpoch);
        }
        finally
        {
            _replayLock.Release();
        }
    }

    private List<(string Name, IndexRegistration Reg)> StaleIndexes()
    {
        // A connection known to be gone means the next request opens a new one: everything is stale.
        int current = Volatile.Read(ref _current) is { Closed: true } ? -1 : Connections;
        lock (_gate)
        {
            if (_indexes.Count == 0) return [];
            var stale = new List<(string, IndexRegistration)>();
            foreach (var (name, reg) in _indexes)
                if (reg.Connection == 0 || reg.Connection != current) stale.Add((name, reg));
            return stale;
        }
    }

    /// <summary>After a "not allowed": forget the downloads, unless another worker replayed them since our request.</summary>
    private void MarkIndexesStale(int epochSeen)
    {
        lock (_gate)
        {
            if (Volatile.Read(ref _replayEpoch) != epochSeen) return;
            foreach (var reg in _indexes.Values) reg.Connection = 0;
        }
    }

    /// <summary>The connection died under the request (a broken connection surfaces as either).</summary>
    private static bool IsTransportFailure(Exception e) =>
        e is IOException or HttpRequestException;

    private static PbsException Lost(string what, Exception e) =>
        new(ChunkRetryPolicy.ConnectionLost, PbsErrorKind.Connection, $"{what}: {e.Message}", e);

    private async Task<HttpResponseMessage> SendAsync(string relative, string what, CancellationToken ct)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        // DefaultRequestVersion only applies to HttpClient's shortcuts; a hand-made message must ask for 2.0 itself.
        using var request = new HttpRequestMessage(HttpMethod.Get, relative)
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        return await Transport.SendAsync(_http, request, what, _client.Repository.Authority, ChunkRetryPolicy.ConnectionLost, ct).ConfigureAwait(false);
    }

    private async Task<PbsException> ErrorAsync(HttpResponseMessage response, string what, string notFoundId, CancellationToken ct)
    {
        var body = await response.Content.ReadAsByteArrayAsync(ct).ConfigureAwait(false);
        string msg = ServerError.MessageOf(body);
        return ServerError.Map(response.StatusCode, msg, what, notFoundId, _client.Auth.Redact);
    }

    /// <summary>Test hook: kills the current connection, as a network failure or server GOAWAY would.</summary>
    internal void DropConnection() => Volatile.Read(ref _current)?.Dispose();

    /// <summary>Test hook: pretends the current connection downloaded an index it did not, to provoke "not allowed".</summary>
    internal void PretendIndexDownloaded(string fileName, long maxSize)
    {
        lock (_gate)
        {
            if (!_indexes.TryGetValue(fileName, out var reg)) _indexes[fileName] = reg = new IndexRegistration(maxSize);
            reg.Connection = Connections;
        }
    }

    public override string ToString() => $"reader session on {Location} ({Connections} connection(s))";

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _http.Dispose();
    }

    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }
}
