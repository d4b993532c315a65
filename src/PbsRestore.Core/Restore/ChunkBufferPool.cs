using System.Collections.Concurrent;
using PbsRestore.Platform;

namespace PbsRestore.Restore;

/// <summary>
/// Buffers recycled between pipeline stages so a restore allocates a bounded number of large blocks however big the
/// image is: encoded chunks in arrays of <see cref="BufferSize"/> (the largest encoded chunk), decoded chunks in
/// native blocks of <see cref="PlainSize"/> (<see cref="IoMemory"/>: page-aligned, huge pages where the OS gives them),
/// so an unbuffered destination (<see cref="UnbufferedFileWriter"/>) writes them straight from there, no copy. The
/// bound itself comes from the pipeline's bounded channels and worker counts, not from here. Disposing frees every
/// native block this pool made, so it is disposed only after every stage has finished.
/// </summary>
internal sealed class ChunkBufferPool(int bufferSize, int plainSize) : Sources.IFetchBuffers, IDisposable
{
    private readonly ConcurrentBag<byte[]> _free = new();
    private readonly ConcurrentBag<IoMemory> _freePlain = new();
    private readonly ConcurrentQueue<IoMemory> _allPlain = new();

    public ChunkBufferPool(int bufferSize) : this(bufferSize, bufferSize) { }

    public int BufferSize => bufferSize;
    public int PlainSize => plainSize;

    private int _allocated;

    /// <summary>Encoded-chunk arrays this pool allocated so far (the restore's large allocations; tests bound it).</summary>
    public int Allocated => Volatile.Read(ref _allocated);

    public byte[] Rent()
    {
        if (_free.TryTake(out var b)) return b;
        Interlocked.Increment(ref _allocated);
        return GC.AllocateUninitializedArray<byte>(bufferSize, pinned: true); // pinned heap: read into without pinning per call, never moved
    }

    public void Return(byte[] buffer)
    {
        if (buffer.Length == bufferSize) _free.Add(buffer);
    }

    /// <summary>A block for a decoded chunk.</summary>
    public IoMemory RentPlain()
    {
        if (_freePlain.TryTake(out var m)) return m;
        m = new IoMemory(plainSize);
        _allPlain.Enqueue(m);
        return m;
    }

    public void Return(IoMemory plain) => _freePlain.Add(plain);

    public void Dispose()
    {
        while (_allPlain.TryDequeue(out var m)) m.Dispose();
        _freePlain.Clear();
    }
}
