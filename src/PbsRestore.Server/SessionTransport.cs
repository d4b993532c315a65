using System.IO.Pipelines;
using System.Net;
using System.Threading.Channels;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;

namespace PbsRestore.Server;

/// <summary>The address of the in-process HTTP/2 listener that upgraded reader connections are handed to.</summary>
public sealed class ReaderSessionEndPoint : EndPoint
{
    public override string ToString() => "pbs-reader-sessions";
}

/// <summary>
/// A Kestrel transport whose "accepted" connections are the upgraded streams of reader requests: Kestrel binds it
/// for <see cref="ReaderSessionEndPoint"/> (see <see cref="CanBind"/>) and serves HTTP/2 on what it accepts.
/// </summary>
public sealed class ReaderSessionTransport : IConnectionListenerFactory, IConnectionListenerFactorySelector
{
    private readonly Channel<ConnectionContext> _pending = Channel.CreateUnbounded<ConnectionContext>();

    public bool CanBind(EndPoint endpoint) => endpoint is ReaderSessionEndPoint;

    public ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult<IConnectionListener>(new Listener(endpoint, _pending.Reader));

    /// <summary>Hands a connection to Kestrel; false when the server is shutting down.</summary>
    public bool Enqueue(ConnectionContext connection) => _pending.Writer.TryWrite(connection);

    private sealed class Listener(EndPoint endpoint, ChannelReader<ConnectionContext> pending) : IConnectionListener
    {
        private readonly CancellationTokenSource _unbound = new();

        public EndPoint EndPoint => endpoint;

        public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
        {
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _unbound.Token);
            try
            {
                while (await pending.WaitToReadAsync(linked.Token))
                    if (pending.TryRead(out var connection)) return connection;
            }
            catch (OperationCanceledException) { }
            return null; // unbound: Kestrel stops accepting
        }

        public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
        {
            _unbound.Cancel();
            return ValueTask.CompletedTask;
        }

        public ValueTask DisposeAsync()
        {
            _unbound.Cancel();
            return ValueTask.CompletedTask;
        }
    }
}

/// <summary>What a reader session knows: who, which snapshot, and which chunks it may fetch (upstream ReaderEnvironment).</summary>
public sealed class ReaderSession(string authId, string store, Sources.SnapshotRef snapshot, string snapshotDir, string chunkDir, string connectionId)
{
    private readonly HashSet<Formats.ChunkDigest> _allowed = [];
    private readonly ReaderWriterLockSlim _lock = new();

    public string AuthId => authId;
    public string Store => store;
    public Sources.SnapshotRef Snapshot => snapshot;
    public string SnapshotDir => snapshotDir;
    public string ChunkDir => chunkDir;
    public string ConnectionId => connectionId;
    /// <summary>This connection's bandwidth bucket (--connection-bandwidth-mbit), or null.</summary>
    public TokenBucket? Bucket { get; init; }
    /// <summary>This connection's fault-injection state (--drop-after-chunks, --stall-every counting).</summary>
    public ConnectionFaults Faults { get; } = new();

    public void Register(Formats.IChunkIndex index)
    {
        _lock.EnterWriteLock();
        try
        {
            for (int i = 0; i < index.Count; i++) _allowed.Add(index.DigestAt(i));
        }
        finally { _lock.ExitWriteLock(); }
    }

    public bool IsAllowed(Formats.ChunkDigest digest)
    {
        _lock.EnterReadLock();
        try { return _allowed.Contains(digest); }
        finally { _lock.ExitReadLock(); }
    }

    public int RegisteredCount
    {
        get
        {
            _lock.EnterReadLock();
            try { return _allowed.Count; }
            finally { _lock.ExitReadLock(); }
        }
    }
}

/// <summary>The feature that carries the <see cref="ReaderSession"/> on the virtual connection (and so into its requests).</summary>
public interface IReaderSessionFeature
{
    ReaderSession Session { get; }
}

/// <summary>
/// An upgraded reader stream seen by Kestrel as a new connection. The stream is wrapped in pipes with public API
/// only; no TLS feature is set (Kestrel would then want to negotiate HTTP/2 through ALPN).
/// </summary>
public sealed class UpgradedConnection : ConnectionContext, IReaderSessionFeature, IConnectionIdFeature, IConnectionTransportFeature,
    IConnectionItemsFeature, IConnectionLifetimeFeature, IMemoryPoolFeature, IConnectionEndPointFeature
{
    private readonly CancellationTokenSource _closed = new();
    private readonly TaskCompletionSource _disposed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Action _abortOuter;
    private readonly FeatureCollection _features = new();
    private int _disposing;

    public UpgradedConnection(string id, Stream stream, System.Buffers.MemoryPool<byte>? pool, ReaderSession session,
        EndPoint? local, EndPoint? remote, Action abortOuter)
    {
        ConnectionId = id;
        Session = session;
        MemoryPool = pool ?? System.Buffers.MemoryPool<byte>.Shared;
        LocalEndPoint = local;
        RemoteEndPoint = remote;
        _abortOuter = abortOuter;
        // Reads: small requests and WINDOW_UPDATEs; writes: coalesced into 64 KiB segments so that SslStream gets
        // large writes (Kestrel's pool hands out 4 KiB blocks, which would make one TLS record + syscall each).
        var input = PipeReader.Create(stream, new StreamPipeReaderOptions(pool: pool, bufferSize: 16 * 1024, minimumReadSize: 4096, leaveOpen: true));
        var output = PipeWriter.Create(stream, new StreamPipeWriterOptions(pool: OutputPool(pool), minimumBufferSize: 64 * 1024, leaveOpen: true));
        Transport = new DuplexPipe(input, output);
        ConnectionClosed = _closed.Token;
        _features.Set<IReaderSessionFeature>(this);
        _features.Set<IConnectionIdFeature>(this);
        _features.Set<IConnectionTransportFeature>(this);
        _features.Set<IConnectionItemsFeature>(this);
        _features.Set<IConnectionLifetimeFeature>(this);
        _features.Set<IMemoryPoolFeature>(this);
        _features.Set<IConnectionEndPointFeature>(this);
    }

    /// <summary>PBS_SERVER_OUTPUT_POOL=kestrel uses Kestrel's pool for the output segments too (for measurements).</summary>
    private static System.Buffers.MemoryPool<byte>? OutputPool(System.Buffers.MemoryPool<byte>? pool) =>
        Environment.GetEnvironmentVariable("PBS_SERVER_OUTPUT_POOL") == "kestrel" ? pool : null;

    public ReaderSession Session { get; }
    public override string ConnectionId { get; set; }
    public override IFeatureCollection Features => _features;
    public override IDictionary<object, object?> Items { get; set; } = new Dictionary<object, object?>();
    public override IDuplexPipe Transport { get; set; }
    public System.Buffers.MemoryPool<byte> MemoryPool { get; }
    public override EndPoint? LocalEndPoint { get; set; }
    public override EndPoint? RemoteEndPoint { get; set; }

    /// <summary>Completes when Kestrel is done with the connection (it disposed it).</summary>
    public Task Completed => _disposed.Task;

    public override void Abort(ConnectionAbortedException abortReason)
    {
        _closed.Cancel();
        _abortOuter(); // closes the TLS connection under the upgraded stream: pending reads end
    }

    public override void Abort() => Abort(new ConnectionAbortedException("The connection was aborted by the application."));

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposing, 1) != 0) return;
        try { await Transport.Output.CompleteAsync(); } catch (Exception) { }
        try { await Transport.Input.CompleteAsync(); } catch (Exception) { }
        _closed.Cancel();
        _disposed.TrySetResult();
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input => input;
        public PipeWriter Output => output;
    }
}
