namespace PbsRestore.Publishing;

/// <summary>A disk in memory (tests, fuzzing). Thread-safe for block-aligned concurrent access.</summary>
public sealed class MemoryBlockDevice : IBlockDevice
{
    private readonly byte[] _data;

    public MemoryBlockDevice(long length, int blockSize = 512, bool readOnly = false, byte[]? contents = null)
    {
        if (blockSize <= 0 || length <= 0 || length % blockSize != 0 || length > Array.MaxLength)
            throw new ArgumentException($"length {length} must be a positive multiple of the block size {blockSize}");
        _data = new byte[length];
        contents?.AsSpan(0, (int)Math.Min(contents.Length, length)).CopyTo(_data);
        BlockSize = blockSize;
        ReadOnly = readOnly;
    }

    public long Length => _data.LongLength;
    public int BlockSize { get; }
    public bool ReadOnly { get; }

    /// <summary>The current contents (tests compare against it).</summary>
    public ReadOnlySpan<byte> Contents => _data;

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct)
    {
        Check(offset, buffer.Length);
        _data.AsSpan((int)offset, buffer.Length).CopyTo(buffer.Span);
        return ValueTask.CompletedTask;
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        if (ReadOnly) throw new BlockDeviceException(BlockDeviceError.WriteProtected, "the memory disk is read-only");
        Check(offset, data.Length);
        data.Span.CopyTo(_data.AsSpan((int)offset));
        return ValueTask.CompletedTask;
    }

    public ValueTask FlushAsync(CancellationToken ct) => ValueTask.CompletedTask;

    public ValueTask UnmapAsync(long offset, long length, CancellationToken ct)
    {
        if (ReadOnly) throw new BlockDeviceException(BlockDeviceError.WriteProtected, "the memory disk is read-only");
        Check(offset, length);
        _data.AsSpan((int)offset, (int)length).Clear();
        return ValueTask.CompletedTask;
    }

    private void Check(long offset, long count)
    {
        if (offset < 0 || count < 0 || offset > _data.LongLength - count)
            throw new BlockDeviceException(BlockDeviceError.OutOfRange, $"range {offset}+{count} is outside the {_data.LongLength}-byte disk");
    }
}
