using Microsoft.Win32.SafeHandles;

namespace PbsRestore.Publishing;

/// <summary>A disk backed by a plain file of fixed length (tests, conformance runs). UNMAP is accepted and zero-fills.</summary>
public sealed class FileBlockDevice : IBlockDevice, IDisposable
{
    private readonly SafeFileHandle _handle;

    public FileBlockDevice(string path, int blockSize = 512, bool readOnly = false)
    {
        _handle = File.OpenHandle(path, FileMode.Open, readOnly ? FileAccess.Read : FileAccess.ReadWrite, FileShare.Read);
        Length = RandomAccess.GetLength(_handle);
        if (Length <= 0 || Length % blockSize != 0)
        {
            _handle.Dispose();
            throw new ArgumentException($"'{path}' is {Length} bytes, not a positive multiple of the block size {blockSize}");
        }
        BlockSize = blockSize;
        ReadOnly = readOnly;
    }

    public long Length { get; }
    public int BlockSize { get; }
    public bool ReadOnly { get; }

    public async ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct)
    {
        Check(offset, buffer.Length);
        int done = 0;
        while (done < buffer.Length)
        {
            int n = await RandomAccess.ReadAsync(_handle, buffer[done..], offset + done, ct).ConfigureAwait(false);
            if (n == 0) throw new BlockDeviceException(BlockDeviceError.Medium, $"the file ended at {offset + done}");
            done += n;
        }
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        if (ReadOnly) throw new BlockDeviceException(BlockDeviceError.WriteProtected, "the file disk is read-only");
        Check(offset, data.Length);
        return RandomAccess.WriteAsync(_handle, data, offset, ct);
    }

    public ValueTask FlushAsync(CancellationToken ct)
    {
        if (!ReadOnly) RandomAccess.FlushToDisk(_handle);
        return ValueTask.CompletedTask;
    }

    public async ValueTask UnmapAsync(long offset, long length, CancellationToken ct)
    {
        if (ReadOnly) throw new BlockDeviceException(BlockDeviceError.WriteProtected, "the file disk is read-only");
        Check(offset, length);
        var zeros = new byte[(int)Math.Min(length, 1 << 20)];
        for (long done = 0; done < length; done += zeros.Length)
            await RandomAccess.WriteAsync(_handle, zeros.AsMemory(0, (int)Math.Min(zeros.Length, length - done)), offset + done, ct).ConfigureAwait(false);
    }

    public void Dispose() => _handle.Dispose();

    private void Check(long offset, long count)
    {
        if (offset < 0 || count < 0 || offset > Length - count)
            throw new BlockDeviceException(BlockDeviceError.OutOfRange, $"range {offset}+{count} is outside the {Length}-byte disk");
    }
}
