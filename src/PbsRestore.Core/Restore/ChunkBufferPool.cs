using System.Collections.Concurrent;

namespace PbsRestore.Restore;

/// <summary>
/// Buffers of one fixed size (the largest encoded chunk of the index), recycled between pipeline stages so a
/// restore allocates a bounded number of large arrays however big the image is. The bound itself comes from
/// the pipeline's bounded channels and worker counts, not from here.
/// </summary>
internal sealed class ChunkBufferPool(int bufferSize)
{
    private readonly ConcurrentBag<byte[]> _free = new();

    public int BufferSize => bufferSize;

    public byte[] Rent() => _free.TryTake(out var b) ? b : GC.AllocateUninitializedArray<byte>(bufferSize);

    public void Return(byte[] buffer)
    {
        if (buffer.Length == bufferSize) _free.Add(buffer);
    }
}
