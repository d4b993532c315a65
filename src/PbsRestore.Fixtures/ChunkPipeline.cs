using System.Collections.Concurrent;
using PbsRestore.Formats;

namespace PbsRestore.Fixtures;

/// <summary>
/// Hashes, encodes and stores chunks on worker threads while the caller's thread produces them in order.
/// Memory is bounded: a fixed pool of chunk buffers (workers + 2) circulates between producer and workers,
/// so only the digest list grows with the archive.
/// </summary>
internal sealed class ChunkPipeline : IDisposable
{
    private readonly DatastoreWriter _store;
    private readonly CryptConfig? _crypt;
    private readonly int _bufferSize;
    private readonly int _maxBuffers;
    private readonly BlockingCollection<byte[]> _free = new();
    private readonly BlockingCollection<Job> _work = new();
    private readonly Task[] _workers;
    private readonly CancellationTokenSource _cancel = new();
    private readonly Action<long, ChunkDigest> _onDigest;
    private int _allocated;
    private Exception? _failure;

    // Upload statistics (upstream's chunk_upload_stats): chunks submitted, already present, plaintext and encoded bytes.
    private long _count, _duplicates, _size, _compressedSize;

    private readonly record struct Job(byte[] Buffer, int Length, long Slot);

    /// <param name="onDigest">Called on a worker thread with (slot, digest) for every submitted chunk with slot &gt;= 0.</param>
    public ChunkPipeline(DatastoreWriter store, CryptConfig? crypt, int bufferSize, Action<long, ChunkDigest> onDigest)
    {
        _store = store;
        _crypt = crypt;
        _bufferSize = bufferSize;
        _onDigest = onDigest;
        int workers = Math.Max(1, store.MaxParallelism);
        _maxBuffers = workers + 2;
        _workers = new Task[workers];
        for (int i = 0; i < workers; i++)
            _workers[i] = Task.Factory.StartNew(Work, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    public long Count => Interlocked.Read(ref _count);
    public long Duplicates => Interlocked.Read(ref _duplicates);
    public long PlainBytes => Interlocked.Read(ref _size);
    public long EncodedBytes => Interlocked.Read(ref _compressedSize);

    /// <summary>A buffer of at least the pipeline's buffer size; blocks while all buffers are in flight.</summary>
    public byte[] Rent()
    {
        if (_free.TryTake(out var b)) return b;
        if (Interlocked.Increment(ref _allocated) <= _maxBuffers) return new byte[_bufferSize];
        Interlocked.Decrement(ref _allocated);
        try
        {
            return _free.Take(_cancel.Token);
        }
        catch (OperationCanceledException)
        {
            ThrowFailure();
            throw;
        }
    }

    /// <summary>Gives back a buffer that was not submitted.</summary>
    public void Return(byte[] buffer) => _free.Add(buffer);

    /// <summary>Hands <paramref name="buffer"/>[0..length] to a worker; the buffer returns to the pool afterwards.</summary>
    public void Submit(byte[] buffer, int length, long slot)
    {
        ThrowFailure();
        _work.Add(new Job(buffer, length, slot));
    }

    /// <summary>Waits for every submitted chunk; rethrows a worker's failure.</summary>
    public void Complete()
    {
        _work.CompleteAdding();
        try
        {
            Task.WaitAll(_workers);
        }
        catch (AggregateException) { }
        ThrowFailure();
    }

    private void ThrowFailure()
    {
        var f = Volatile.Read(ref _failure);
        if (f is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(f).Throw();
    }

    private void Work()
    {
        using var encoder = _store.CreateEncoder(_crypt);
        try
        {
            foreach (var job in _work.GetConsumingEnumerable(_cancel.Token))
            {
                var data = job.Buffer.AsSpan(0, job.Length);
                var (digest, encoded) = _store.InsertChunk(data, _crypt, encoder);
                Interlocked.Increment(ref _count);
                Interlocked.Add(ref _size, job.Length);
                if (encoded < 0) Interlocked.Increment(ref _duplicates);
                else Interlocked.Add(ref _compressedSize, encoded);
                if (job.Slot >= 0) _onDigest(job.Slot, digest);
                _free.Add(job.Buffer);
            }
        }
        catch (OperationCanceledException) when (_cancel.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            Interlocked.CompareExchange(ref _failure, e, null);
            _cancel.Cancel();
        }
    }

    public void Dispose()
    {
        if (!_work.IsAddingCompleted)
        {
            _cancel.Cancel();
            _work.CompleteAdding();
            try { Task.WaitAll(_workers); } catch (AggregateException) { }
        }
        _work.Dispose();
        _free.Dispose();
        _cancel.Dispose();
    }
}
