using PbsRestore.DiskImages;

namespace PbsRestore.Destinations;

/// <summary>
/// A fixed VHD destination (the format Azure imports): the raw disk bytes at their own offsets in a fresh sparse
/// <c>&lt;destination&gt;.partial</c>, then the 512-byte <see cref="VhdFooter"/>, written by every <see cref="Flush"/>.
/// The disk is rounded up to a whole MiB (Azure's rule; the padding reads as zeros), so the file is that size + 512.
/// Otherwise it behaves like <see cref="DestinationFile"/>: zero chunks stay holes, <see cref="Commit"/> renames.
/// </summary>
public sealed class VhdDestination : PartialFileDestination, IReadableDestination
{
    private readonly VhdFooter _footer;

    private VhdDestination(PartialFile partial, VhdFooter footer) : base(partial) => _footer = footer;

    /// <summary>Virtual disk size: the requested size rounded up to a multiple of 1 MiB.</summary>
    public long VirtualSize => (long)_footer.CurrentSize;

    /// <summary>Creates <c>&lt;destination&gt;.partial</c> for a disk of <paramref name="virtualSize"/> bytes, rounded up to a multiple of 1 MiB.</summary>
    public static VhdDestination Create(string destination, long virtualSize, bool force)
    {
        long size = VhdFooter.RoundSize(virtualSize);
        var file = PartialFile.Create(destination, force, stream => stream.SetLength(size + VhdFooter.Size));
        return new VhdDestination(file, VhdFooter.ForFixedDisk(size, DateTimeOffset.UtcNow, Guid.NewGuid()));
    }

    /// <summary>
    /// Reopens the <c>&lt;destination&gt;.partial</c> of an earlier run whose <see cref="Flush"/> completed (so its footer is
    /// there), to go on writing into it; a different size or a missing or damaged footer is
    /// <see cref="PbsException"/> ResumeStateMismatch. The footer (unique id, time stamp) is kept.
    /// </summary>
    public static VhdDestination OpenPartial(string destination, long virtualSize)
    {
        long size = VhdFooter.RoundSize(virtualSize);
        var file = PartialFile.Open(destination);
        var stream = file.Stream;
        string partial = file.Path;
        try
        {
            long length = RandomAccess.GetLength(stream.SafeFileHandle);
            VhdFooter? footer = null;
            if (length >= VhdFooter.Size)
            {
                var bytes = new byte[VhdFooter.Size];
                int n = RandomAccess.Read(stream.SafeFileHandle, bytes, length - VhdFooter.Size);
                if (n == VhdFooter.Size) footer = VhdFooter.TryParseFixed(bytes);
            }
            if (footer is null)
                throw new PbsException("ResumeStateMismatch", PbsErrorKind.InvalidData, $"cannot resume into '{partial}': it has no valid fixed-VHD footer");
            if (length != size + VhdFooter.Size || footer.CurrentSize != (ulong)size)
                throw new PbsException("ResumeStateMismatch", PbsErrorKind.InvalidData,
                    $"cannot resume into '{partial}': it holds a {footer.CurrentSize}-byte disk, this restore a {size}-byte disk");
            file.Keep = false;
            return new VhdDestination(file, footer);
        }
        catch
        {
            file.Dispose(); // kept: a failed reopen must not delete what an earlier run wrote
            throw;
        }
    }

    /// <summary>The image bytes are stored as they are: read them back at their offsets.</summary>
    public int Read(long offset, Span<byte> buffer) =>
        offset < 0 || offset > VirtualSize - buffer.Length ? 0 : RandomAccess.Read(Stream.SafeFileHandle, buffer, offset);

    public override void Write(long offset, ReadOnlySpan<byte> data)
    {
        if (offset < 0 || offset > VirtualSize - data.Length)
            throw new ArgumentOutOfRangeException(nameof(offset), offset, $"{data.Length} bytes at this offset do not fit the {VirtualSize}-byte disk");
        Partial.Writer.Write(data, offset);
    }

    /// <summary>Writes the footer (again) and flushes to disk.</summary>
    /// <summary>True: blocks are found through metadata written at checkpoints.</summary>
    public override bool CheckpointOnStop => true;

    public override void Flush()
    {
        var bytes = new byte[VhdFooter.Size];
        _footer.Write(bytes);
        Partial.Writer.Write(bytes, VirtualSize);
        Partial.Writer.Flush();
    }
}
