namespace PbsRestore.Sources.Remote;

/// <summary>
/// The upgraded TLS stream as handed to the HTTP/2 layer, noting when it ends (EOF, error, close). The session
/// then knows the next request will go out on a new connection — a new server session — and re-downloads its
/// indexes first instead of having a chunk refused. A plain pass-through otherwise.
/// </summary>
internal sealed class ConnectionStream(Stream inner) : Stream
{
    private volatile bool _closed;

    /// <summary>True once the connection is known to be gone.</summary>
    public bool Closed => _closed;

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default)
    {
        try
        {
            int n = await inner.ReadAsync(buffer, ct).ConfigureAwait(false);
            if (n == 0 && buffer.Length > 0) _closed = true;
            return n;
        }
        catch
        {
            _closed = true;
            throw;
        }
    }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken ct = default)
    {
        try
        {
            await inner.WriteAsync(buffer, ct).ConfigureAwait(false);
        }
        catch
        {
            _closed = true;
            throw;
        }
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken ct) => ReadAsync(buffer.AsMemory(offset, count), ct).AsTask();
    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken ct) => WriteAsync(buffer.AsMemory(offset, count), ct).AsTask();
    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer, offset, count, default).GetAwaiter().GetResult();
    public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer, offset, count, default).GetAwaiter().GetResult();
    public override Task FlushAsync(CancellationToken ct) => inner.FlushAsync(ct);
    public override void Flush() => inner.Flush();

    public override bool CanRead => true;
    public override bool CanWrite => true;
    public override bool CanSeek => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        _closed = true;
        if (disposing) inner.Dispose();
        base.Dispose(disposing);
    }

    public override async ValueTask DisposeAsync()
    {
        _closed = true;
        await inner.DisposeAsync().ConfigureAwait(false);
        await base.DisposeAsync().ConfigureAwait(false);
    }
}
