using PbsRestore.Platform;

namespace PbsRestore.Destinations;

/// <summary>The form a restored disk image is written in.</summary>
public enum ImageFormat
{
    /// <summary>The disk's bytes as they are (a .img or .raw file, or a device).</summary>
    Raw,
    /// <summary>A dynamic VHDX (Hyper-V, Mount-DiskImage); blocks of zeros stay unallocated.</summary>
    Vhdx,
    /// <summary>A fixed VHD (Azure): the raw bytes plus a footer.</summary>
    Vhd,
    /// <summary>A monolithic sparse VMDK (VMware); grains of zeros stay unallocated. Not resumable.</summary>
    Vmdk,
}

/// <summary>
/// Picks and opens the destination of a disk image: a raw, VHDX or VHD file written as <c>.partial</c> and
/// renamed when complete, or a block device written in place. Also where its resume journal lives.
/// </summary>
public static class ImageDestinations
{
    /// <summary>The format asked for, else the one the file name implies (.vhdx, .vhd, .vmdk), else raw.</summary>
    public static ImageFormat FormatFor(string destination, ImageFormat? requested) =>
        requested ?? Path.GetExtension(destination).ToLowerInvariant() switch
        {
            ".vhdx" => ImageFormat.Vhdx,
            ".vhd" => ImageFormat.Vhd,
            ".vmdk" => ImageFormat.Vmdk,
            _ => ImageFormat.Raw,
        };

    /// <summary>Whether <paramref name="destination"/> is a block device or physical disk (written in place, raw).</summary>
    public static bool IsDevice(string destination) => BlockDevices.IsDevicePath(destination);

    /// <summary>
    /// Checks that <paramref name="destination"/> may be written: a file as <see cref="DestinationFile.CheckWritable"/>
    /// does; a device only with <paramref name="force"/>, since its content is overwritten. Without
    /// <paramref name="resume"/>, an interrupted restore there is refused too (<see cref="CheckNotInterrupted"/>).
    /// </summary>
    public static void CheckWritable(string destination, bool force, bool resume = false)
    {
        CheckNotInterrupted(destination, force, resume);
        if (!IsDevice(destination))
        {
            DestinationFile.CheckWritable(destination, force);
            return;
        }
        if (!force)
            throw new PbsException("DeviceRequiresForce", PbsErrorKind.ResourceExists,
                $"destination '{destination}' is a block device; restoring onto it overwrites everything on it: add -Force");
    }

    /// <summary>
    /// The journal's path: beside the partial file; for a device (where no file can be put beside it) in the
    /// user's local application data (PbsRestore/journals).
    /// </summary>
    public static string JournalPathFor(string destination)
    {
        if (!IsDevice(destination)) return RestoreJournal.PathFor(DestinationFile.PartialPathFor(destination));
        string folder = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData, Environment.SpecialFolderOption.DoNotVerify),
            "PbsRestore", "journals");
        string name = string.Concat(Path.GetFullPath(destination).Select(c => char.IsAsciiLetterOrDigit(c) ? c : '_'));
        return Path.Combine(folder, name + ".journal");
    }

    /// <summary>
    /// Refuses to start a new restore where an interrupted one left its partial file and journal, unless
    /// <paramref name="resume"/> (continue it) or <paramref name="force"/> (start over, deleting them): a plain re-run
    /// must not silently throw away hours of restored data.
    /// </summary>
    public static void CheckNotInterrupted(string destination, bool force, bool resume)
    {
        if (resume || force || !CanResume(destination)) return;
        string kept = IsDevice(destination) ? $"journal '{JournalPathFor(destination)}'" : $"'{DestinationFile.PartialPathFor(destination)}' and its journal";
        throw new PbsException("InterruptedRestoreExists", PbsErrorKind.ResourceExists,
            $"an interrupted restore of this archive exists; add -Resume to continue it or -Force to start over ({kept})");
    }

    /// <summary>Whether an interrupted restore to <paramref name="destination"/> left something to resume.</summary>
    public static bool CanResume(string destination) =>
        File.Exists(JournalPathFor(destination)) && (IsDevice(destination) || File.Exists(DestinationFile.PartialPathFor(destination)));

    /// <summary>The name results and journals give the form of the destination.</summary>
    public static string FormatName(string destination, ImageFormat format) => IsDevice(destination) ? "Device" : format.ToString();

    /// <summary>Creates a new destination for an image of <paramref name="size"/> bytes in chunks of up to <paramref name="chunkSize"/>.</summary>
    public static IDestination Create(string destination, long size, int chunkSize, ImageFormat format, bool force)
    {
        if (IsDevice(destination)) return OpenDevice(destination, size, format);
        return format switch
        {
            ImageFormat.Raw => DestinationFile.Create(destination, size, force),
            ImageFormat.Vhdx => VhdxDestination.Create(destination, size, chunkSize, force),
            ImageFormat.Vhd => VhdDestination.Create(destination, size, force),
            ImageFormat.Vmdk => VmdkDestination.Create(destination, size, force),
            _ => throw new PbsException("FormatNotSupported", PbsErrorKind.InvalidArgument, $"format {format} is not supported"),
        };
    }

    /// <summary>Whether a restore in this format can be resumed (a VMDK cannot: its partial file is not kept).</summary>
    public static bool IsResumable(ImageFormat format) => format != ImageFormat.Vmdk;

    /// <summary>Refuses -Resume for a format that cannot be resumed (ResumeNotSupported), before anything is written.</summary>
    public static void CheckResumeSupported(string destination, ImageFormat format, bool resume)
    {
        if (resume && !IsDevice(destination) && !IsResumable(format))
            throw new PbsException("ResumeNotSupported", PbsErrorKind.InvalidArgument,
                $"-Resume is not supported for a {format} destination ('{Path.GetFileName(destination)}'): restore without -Resume " +
                $"(a stopped {format} restore deletes its partial file and starts over)");
    }

    /// <summary>Reopens the partial destination of an interrupted restore.</summary>
    public static IDestination Reopen(string destination, long size, int chunkSize, ImageFormat format)
    {
        if (IsDevice(destination)) return OpenDevice(destination, size, format);
        return format switch
        {
            ImageFormat.Raw => DestinationFile.OpenPartial(destination, size),
            ImageFormat.Vhdx => VhdxDestination.OpenPartial(destination, size, chunkSize),
            ImageFormat.Vhd => VhdDestination.OpenPartial(destination, size),
            _ => throw new PbsException("FormatNotSupported", PbsErrorKind.InvalidArgument, $"format {format} is not supported"),
        };
    }

    private static DeviceDestination OpenDevice(string destination, long size, ImageFormat format) =>
        format == ImageFormat.Raw
            ? DeviceDestination.Open(destination, size)
            : throw new PbsException("FormatNotSupported", PbsErrorKind.InvalidArgument,
                $"'{destination}' is a block device: it takes the disk's raw bytes, not {format}");
}
