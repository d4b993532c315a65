using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace PbsRestore.Restore;

/// <summary>
/// Buffers of one fixed size (the largest encoded chunk of the index), recycled between pipeline stages so a
/// restore allocates a bounded number of large arrays however big the image is. The bound itself comes from
/// the pipeline's bounded channels and worker counts, not from here.
/// <para>
/// The arrays are pinned (pinned object heap) with one page to spare, and <see cref="Aligned"/> gives the
/// page-aligned window of <see cref="BufferSize"/> bytes inside one: decoded chunks land there, so an unbuffered
/// destination (<see cref="Platform.UnbufferedFileWriter"/>) writes them straight from this memory, no copy.
/// </para>
/// </summary>
internal sealed class ChunkBufferPool(int bufferSize) : Sources.IFetchBuffers
{
    internal const int Alignment = Platform.UnbufferedFileWriter.MinimumAlignment;

    private readonly ConcurrentBag<byte[]> _free = new();

    public int BufferSize => bufferSize;

    private int _allocated;

    /// <summary>Arrays this pool allocated so far (the restore's large allocations; tests bound it).</summary>
    public int Allocated => Volatile.Read(ref _allocated);

    public byte[] Rent()
    {
        if (_free.TryTake(out var b)) return b;
        Interlocked.Increment(ref _allocated);
        return GC.AllocateUninitializedArray<byte>(bufferSize + Alignment, pinned: true);
    }

    public void Return(byte[] buffer)
    {
        if (buffer.Length == bufferSize + Alignment) _free.Add(buffer);
    }

    /// <summary>The page-aligned <see cref="BufferSize"/> bytes of a rented (pinned) buffer.</summary>
    public Span<byte> Aligned(byte[] buffer) => buffer.AsSpan(AlignedStart(buffer), bufferSize);

    /// <summary><see cref="Aligned"/> as memory, for async code.</summary>
    public Memory<byte> AlignedMemory(byte[] buffer) => buffer.AsMemory(AlignedStart(buffer), bufferSize);

    private static unsafe int AlignedStart(byte[] buffer)
    {
        nint address = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(buffer));
        return (int)((Alignment - (address & (Alignment - 1))) & (Alignment - 1));
    }
}
