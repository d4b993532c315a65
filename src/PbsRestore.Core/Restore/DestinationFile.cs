using PbsRestore.Platform;

namespace PbsRestore.Restore;

/// <summary>
/// A destination file written safely: bytes go to <c>&lt;destination&gt;.partial</c>, a fresh sparse file,
/// and only a restore that finished and flushed renames it into place. So a failed or stopped restore never
/// leaves a file that looks complete, and with -Force the old file stays intact until the new one is whole.
/// </summary>
public sealed class DestinationFile : IDestination, IReadableDestination
{
    private readonly FileStream _stream;
    private bool _committed;

    private DestinationFile(string destination, string partialPath, FileStream stream, bool sparse)
    {
        Destination = destination;
        PartialPath = partialPath;
        _stream = stream;
        IsSparse = sparse;
    }

    public string Destination { get; }
    public string PartialPath { get; }
    /// <summary>
    /// A freshly created file reads back zeros wherever nothing was written, sparse or not (FAT and exFAT
    /// just allocate and zero-fill), so zero chunks never need writing here.
    /// </summary>
    public bool ZerosAreHoles => true;

    /// <summary>Whether the file system keeps the unwritten ranges unallocated.</summary>
    public bool IsSparse { get; }

    public static string PartialPathFor(string destination) => destination + ".partial";

    /// <summary>Checks that the destination can be written (or overwritten with <paramref name="force"/>).</summary>
    public static void CheckWritable(string destination, bool force, bool folderMustExist = true)
    {
        if (Directory.Exists(destination))
            throw new PbsException("DestinationIsDirectory", PbsErrorKind.InvalidArgument, $"destination '{destination}' is a directory");
        // A device node, pipe or socket must never be replaced by a file (a rename would do just that).
        if (File.Exists(destination) && !BlockDevices.IsRegularFile(destination))
            throw new PbsException("DestinationNotSupported", PbsErrorKind.InvalidArgument,
                $"destination '{destination}' is not a regular file" + (BlockDevices.IsDevicePath(destination) ? " but a block device" : ""));
        if (File.Exists(destination) && !force)
            throw new PbsException("DestinationExists", PbsErrorKind.ResourceExists, $"destination '{destination}' already exists; use -Force to overwrite it");
        var parent = Path.GetDirectoryName(destination);
        if (folderMustExist && !string.IsNullOrEmpty(parent) && !Directory.Exists(parent))
            throw new PbsNotFoundException("DestinationFolderNotFound", $"the folder of destination '{destination}' does not exist");
    }

    /// <summary>Creates the partial file with the final length; zero ranges stay holes.</summary>
    public static DestinationFile Create(string destination, long size, bool force)
    {
        destination = Path.GetFullPath(destination);
        CheckWritable(destination, force);
        string partial = PartialPathFor(destination);
        var stream = new FileStream(partial, FileMode.Create, FileAccess.ReadWrite, FileShare.Read, bufferSize: 0);
        try
        {
            bool sparse = SparseFiles.PrepareSparse(stream.SafeFileHandle);
            stream.SetLength(size);
            return new DestinationFile(destination, partial, stream, sparse);
        }
        catch
        {
            stream.Dispose();
            File.Delete(partial);
            throw;
        }
    }

    /// <summary>
    /// Reopens the partial file of an interrupted restore (-Resume); it must have the image's length.
    /// </summary>
    public static DestinationFile OpenPartial(string destination, long size)
    {
        destination = Path.GetFullPath(destination);
        string partial = PartialPathFor(destination);
        var stream = new FileStream(partial, FileMode.Open, FileAccess.ReadWrite, FileShare.Read, bufferSize: 0);
        if (stream.Length != size)
        {
            long length = stream.Length;
            stream.Dispose();
            throw new PbsException("ResumeStateMismatch", PbsErrorKind.InvalidData,
                $"cannot resume into '{partial}': it is {length} bytes, the image is {size}");
        }
        return new DestinationFile(destination, partial, stream, sparse: false);
    }

    public bool KeepPartial { get; set; }

    public void Write(long offset, ReadOnlySpan<byte> data) => RandomAccess.Write(_stream.SafeFileHandle, data, offset);

    public int Read(long offset, Span<byte> buffer) => RandomAccess.Read(_stream.SafeFileHandle, buffer, offset);

    public void Flush() => _stream.Flush(flushToDisk: true);

    /// <summary>Flushes, closes and renames the partial file into place.</summary>
    public void Commit(bool overwrite)
    {
        _stream.Flush(flushToDisk: true);
        _stream.Dispose();
        File.Move(PartialPath, Destination, overwrite);
        _committed = true;
    }

    /// <summary>Closes and, unless committed, deletes the partial file.</summary>
    public ValueTask DisposeAsync()
    {
        _stream.Dispose();
        if (!_committed && !KeepPartial)
        {
            try { File.Delete(PartialPath); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
        return ValueTask.CompletedTask;
    }
}
