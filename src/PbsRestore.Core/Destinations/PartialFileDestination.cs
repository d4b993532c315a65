namespace PbsRestore.Destinations;

/// <summary>
/// What every destination written as <c>&lt;destination&gt;.partial</c> (raw, VHDX, VHD) shares: the paths, keeping
/// the partial file for a resume, commit (flush, then rename) and dispose. Each format adds how it writes and flushes.
/// </summary>
public abstract class PartialFileDestination : IDestination
{
    private protected PartialFileDestination(PartialFile partial) => Partial = partial;

    private protected PartialFile Partial { get; }
    private protected FileStream Stream => Partial.Stream;

    public string Destination => Partial.Destination;
    public string PartialPath => Partial.Path;

    /// <summary>
    /// A fresh partial file reads zeros wherever nothing was written, sparse or not (FAT and exFAT just allocate and
    /// zero-fill), and a VHDX block never written reads as zeros: zero chunks never need writing.
    /// </summary>
    public bool ZerosAreHoles => true;

    /// <summary>Whether the file system keeps the unwritten ranges unallocated.</summary>
    public bool IsSparse => Partial.IsSparse;

    /// <summary>When set, disposing closes an uncommitted partial file without deleting it, for a later resume.</summary>
    public bool KeepPartial
    {
        get => Partial.Keep;
        set => Partial.Keep = value;
    }

    /// <summary>False for a raw file; a format whose blocks are found through checkpointed metadata says true.</summary>
    public virtual bool CheckpointOnStop => false;

    public abstract void Write(long offset, ReadOnlySpan<byte> data);

    public abstract void Flush();

    /// <summary>How the bytes reach the disk (unbuffered, or buffered and why).</summary>
    public string WriteMode => Partial.Writer.Mode;

    /// <summary>
    /// Flushes (unless nothing was written since the restore's last flush: one fsync, not two), closes and renames
    /// the partial file into place.
    /// </summary>
    public void Commit(bool overwrite)
    {
        if (Partial.Writer.HasUnflushedWrites) Flush();
        Partial.Commit(overwrite);
    }

    /// <summary>Closes and, unless committed (or <see cref="KeepPartial"/>), deletes the partial file.</summary>
    public ValueTask DisposeAsync()
    {
        Partial.Dispose();
        return ValueTask.CompletedTask;
    }
}
