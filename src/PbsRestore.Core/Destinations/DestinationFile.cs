using PbsRestore.Platform;

namespace PbsRestore.Destinations;

/// <summary>
/// A destination file written safely: bytes go to <c>&lt;destination&gt;.partial</c>, a fresh sparse file,
/// and only a restore that finished and flushed renames it into place. So a failed or stopped restore never
/// leaves a file that looks complete, and with -Force the old file stays intact until the new one is whole.
/// </summary>
public sealed class DestinationFile : PartialFileDestination, IReadableDestination
{
    private DestinationFile(PartialFile partial) : base(partial) { }

    public static string PartialPathFor(string destination) => destination + ".partial";

    /// <summary>Checks that the destination can be written (or overwritten with <paramref name="force"/>).</summary>
    public static void CheckWritable(string destination, bool force, bool folderMustExist = true)
    {
        if (Directory.Exists(destination))
            throw new PbsException("DestinationIsDirectory", PbsErrorKind.InvalidArgument, $"destination '{destination}' is a directory");
        // A device node, pipe or socket must never be replaced by a file (a rename would do just that).
        if (File.Exists(destination) && !BlockDevices.IsRegularFile(destination))
            throw new PbsException("DestinationNotSupported", PbsErrorKind.InvalidArgument,
                $"destination '{destination}' is not a regular file (a device, pipe or socket): give a file path, or a block device with -Force");
        if (File.Exists(destination) && !force)
            throw new PbsException("DestinationExists", PbsErrorKind.ResourceExists, $"destination '{destination}' already exists; use -Force to overwrite it");
        var parent = Path.GetDirectoryName(destination);
        if (folderMustExist && !string.IsNullOrEmpty(parent) && !Directory.Exists(parent))
            throw new PbsNotFoundException("DestinationFolderNotFound", $"the folder of destination '{destination}' does not exist");
    }

    /// <summary>Creates the partial file with the final length; zero ranges stay holes.</summary>
    public static DestinationFile Create(string destination, long size, bool force) =>
        new(PartialFile.Create(destination, force, stream => stream.SetLength(size)));

    /// <summary>
    /// Reopens the partial file of an interrupted restore (-Resume); it must have the image's length.
    /// </summary>
    public static DestinationFile OpenPartial(string destination, long size)
    {
        var file = PartialFile.Open(destination);
        long length = file.Stream.Length;
        if (length != size)
        {
            file.Dispose();
            throw new PbsException("ResumeStateMismatch", PbsErrorKind.InvalidData,
                $"cannot resume into '{file.Path}': it is {length} bytes, the image is {size}");
        }
        file.Keep = false;
        return new DestinationFile(file);
    }

    public override void Write(long offset, ReadOnlySpan<byte> data) => Partial.Writer.Write(data, offset);

    public int Read(long offset, Span<byte> buffer) => RandomAccess.Read(Partial.Handle, buffer, offset);

    public override void Flush() => Partial.Writer.Flush();
}
