using Microsoft.Win32.SafeHandles;
using PbsRestore.Platform;

namespace PbsRestore.Destinations;

/// <summary>
/// Restores in place onto an existing block device or physical disk (or an existing regular file): no
/// .partial, no rename, never truncated. The old contents are garbage to us, so zero chunks are written
/// explicitly (<see cref="ZerosAreHoles"/> is false). A failed restore leaves the target partly overwritten;
/// there is nothing to roll back to.
/// </summary>
public sealed class DeviceDestination : IDestination, IReadableDestination
{
    private readonly SafeFileHandle _handle;
    private readonly FileStream _stream;
    private readonly UnbufferedFileWriter _writer;
    private readonly long _imageSize;
    // Windows refuses raw disk I/O that is not whole sectors; Linux block devices go through the page cache.
    private readonly int _alignment;

    private DeviceDestination(string path, DeviceInfo info, SafeFileHandle handle, long imageSize)
    {
        Destination = path;
        Info = info;
        _handle = handle;
        _stream = new FileStream(handle, FileAccess.ReadWrite, bufferSize: 0);
        _writer = UnbufferedFileWriter.Open(_stream, path);
        _imageSize = imageSize;
        _alignment = BlockDevices.WriteAlignment(info);
    }

    public string Destination { get; }

    /// <summary>The device itself: it is written in place.</summary>
    public string PartialPath => Destination;

    /// <summary>False: the device holds old data wherever nothing is written.</summary>
    public bool ZerosAreHoles => false;

    public DeviceInfo Info { get; }

    /// <summary>
    /// The checks of <see cref="Open"/> without opening: what <paramref name="path"/> is (for a confirmation prompt),
    /// or DestinationIsDirectory, DeviceNotFound, DestinationNotSupported, DeviceInUse, DeviceTooSmall, DeviceReadOnly.
    /// </summary>
    public static DeviceInfo Check(string path, long imageSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(imageSize);
        path = Path.GetFullPath(path);
        if (Directory.Exists(path))
            throw new PbsException("DestinationIsDirectory", PbsErrorKind.InvalidArgument, $"destination '{path}' is a directory");
        bool isDevice = BlockDevices.IsDevicePath(path);
        if (!isDevice && !File.Exists(path))
            throw new PbsNotFoundException("DeviceNotFound", $"'{path}' is neither a block device nor an existing file");
        if (!isDevice && !BlockDevices.IsRegularFile(path))
            throw new PbsException("DestinationNotSupported", PbsErrorKind.InvalidArgument, $"'{path}' is neither a block device nor a regular file");

        DeviceInfo info;
        try
        {
            info = BlockDevices.Describe(path);
        }
        catch (FileNotFoundException e)
        {
            throw new PbsNotFoundException("DeviceNotFound", $"device '{path}' does not exist", e);
        }
        string named = info.Description is { Length: > 0 } d ? $"'{path}' ({d})" : $"'{path}'";
        if (info.IsInUse == true)
            throw new PbsException("DeviceInUse", PbsErrorKind.Io, $"device {named} is in use: {info.InUseReason}; unmount it first");
        if (info.IsDevice && info.Size < imageSize)
            throw new PbsException("DeviceTooSmall", PbsErrorKind.InvalidArgument,
                $"device {named} holds {Bytes(info.Size)}, smaller than the image's {Bytes(imageSize)}");
        if (info.IsReadOnly)
            throw new PbsException("DeviceReadOnly", PbsErrorKind.InvalidArgument, $"device {named} is read-only");

        return info;
    }

    /// <summary>
    /// Opens <paramref name="path"/> (a block device, physical disk, volume, or an existing regular file) for an
    /// image of <paramref name="imageSize"/> bytes. Refuses a device that is smaller (DeviceTooSmall), mounted or
    /// otherwise held (DeviceInUse) or read-only (DeviceReadOnly). A regular file smaller than the image is extended;
    /// a larger one keeps its tail.
    /// </summary>
    public static DeviceDestination Open(string path, long imageSize)
    {
        path = Path.GetFullPath(path);
        var info = Check(path, imageSize);
        string named = info.Description is { Length: > 0 } d ? $"'{path}' ({d})" : $"'{path}'";

        SafeFileHandle handle;
        try
        {
            handle = BlockDevices.OpenForWriting(path, info.IsDevice);
        }
        catch (BlockDevices.DeviceBusyException e)
        {
            throw new PbsException("DeviceInUse", PbsErrorKind.Io, $"device {named} is in use: {e.Message}", e);
        }
        catch (FileNotFoundException e)
        {
            throw new PbsNotFoundException("DeviceNotFound", $"'{path}' does not exist", e);
        }
        try
        {
            var destination = new DeviceDestination(path, info, handle, imageSize);
            // A regular file shorter than the image grows; the pipeline writes every byte, zeros included.
            if (!info.IsDevice && destination._stream.Length < imageSize) destination._stream.SetLength(imageSize);
            return destination;
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    public void Write(long offset, ReadOnlySpan<byte> data)
    {
        if (_alignment > 1 && ((offset | (long)data.Length) & (_alignment - 1)) != 0)
        {
            WriteUnaligned(offset, data);
            return;
        }
        _writer.Write(data, offset);
    }

    /// <summary>
    /// Windows only. The image's last chunk may end mid-sector: it is padded with zeros to the sector (the device
    /// is at least that large, being whole sectors). Anything else unaligned (a dynamic archive's chunk boundaries)
    /// would need read-modify-write racing the neighbouring chunks, so it is refused.
    /// </summary>
    private void WriteUnaligned(long offset, ReadOnlySpan<byte> data)
    {
        if (offset % _alignment != 0 || offset + data.Length != _imageSize)
            throw new PbsException("DeviceWriteUnaligned", PbsErrorKind.InvalidArgument,
                $"cannot write {data.Length} bytes at offset {offset} to '{Destination}': device writes must be whole {_alignment}-byte sectors");
        var padded = new byte[(data.Length + _alignment - 1) / _alignment * _alignment];
        data.CopyTo(padded);
        _writer.Write(padded, offset);
    }

    /// <summary>fsync / FlushFileBuffers: the device's cache too.</summary>
    public void Flush() => _writer.Flush();

    /// <summary>How the bytes reach the device (unbuffered, or buffered and why).</summary>
    public string WriteMode => _writer.Mode;

    /// <summary>Flushes to disk; nothing to rename (<paramref name="overwrite"/> does not apply: a device is always overwritten).</summary>
    public void Commit(bool overwrite)
    {
        if (_writer.HasUnflushedWrites) Flush(); // the restore's last flush usually did it: one fsync, not two
    }

    /// <summary>A device is written in place: there is no partial file to keep or delete.</summary>
    public bool KeepPartial { get; set; }

    public int Read(long offset, Span<byte> buffer) => RandomAccess.Read(_handle, buffer, offset);

    public ValueTask DisposeAsync()
    {
        _writer.Dispose();
        _stream.Dispose(); // owns the handle
        return ValueTask.CompletedTask;
    }

    private static string Bytes(long n)
    {
        string[] units = ["KiB", "MiB", "GiB", "TiB", "PiB"];
        double v = n;
        int u = -1;
        while (v >= 1024 && u < units.Length - 1) { v /= 1024; u++; }
        return u < 0 ? $"{n} bytes" : FormattableString.Invariant($"{n} bytes ({v:0.##} {units[u]})");
    }
}
