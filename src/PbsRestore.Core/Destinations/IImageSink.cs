namespace PbsRestore.Destinations;

/// <summary>
/// Where restored bytes go. Writes are positional (offsets in the virtual disk) and may come from several
/// threads at once.
/// </summary>
public interface IImageSink : IAsyncDisposable
{
    /// <summary>True when unwritten ranges read back as zeros (a fresh sparse file), so zero chunks need no I/O.</summary>
    bool ZerosAreHoles { get; }

    void Write(long offset, ReadOnlySpan<byte> data);

    /// <summary>
    /// Makes everything written so far durable and leaves the target self-consistent (for a VHDX: BAT and headers
    /// written). Called after the last write, and also between writes as a resume checkpoint, so it may run
    /// more than once and concurrently with nothing else.
    /// </summary>
    void Flush();
}

/// <summary>
/// A sink that becomes the destination the user named: a raw file, a VHDX or VHD file, or a device.
/// Files are written as <c>&lt;destination&gt;.partial</c> and renamed by <see cref="Commit"/>; devices are written in place.
/// </summary>
public interface IDestination : IImageSink
{
    /// <summary>The full path the user asked for.</summary>
    string Destination { get; }

    /// <summary>The path being written now (the .partial file, or the device itself).</summary>
    string PartialPath { get; }

    /// <summary>Flushes and makes the result final (files: renames the partial file into place, replacing an old one when <paramref name="overwrite"/>).</summary>
    void Commit(bool overwrite);

    /// <summary>
    /// Set when a restore stopped in a way worth resuming (Ctrl+C, a lost connection): disposing then keeps the
    /// partial file for -Resume instead of deleting it.
    /// </summary>
    bool KeepPartial { get; set; }

    /// <summary>
    /// Whether a restore stopped for a resume must write a checkpoint (<see cref="RestoreJournal.Checkpoint"/>) before
    /// it lets go: true where the written blocks are found through metadata written at checkpoints (a VHDX's BAT, a
    /// VHD's footer), or a resume would fetch again everything since the last one. Raw files and devices need nothing.
    /// </summary>
    bool CheckpointOnStop => false;

    /// <summary>How the bytes reach the disk: "unbuffered (...)", or "buffered: why" (see Platform.UnbufferedFileWriter).</summary>
    string WriteMode => "buffered";
}

/// <summary>A destination whose written bytes can be read back (to check a resume journal's latest records).</summary>
public interface IReadableDestination
{
    /// <summary>Reads image bytes at a virtual-disk offset; returns the count read.</summary>
    int Read(long offset, Span<byte> buffer);
}

/// <summary>Discards everything (for measuring fetch and decode alone).</summary>
public sealed class NullImageSink : IImageSink
{
    public bool ZerosAreHoles => true;
    public void Write(long offset, ReadOnlySpan<byte> data) { }
    public void Flush() { }
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
