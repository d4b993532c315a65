using PbsRestore.DiskImages;

namespace PbsRestore.Destinations;

/// <summary>
/// A dynamic VHDX destination, streamed: written as <c>&lt;destination&gt;.partial</c> and renamed by <see cref="Commit"/>,
/// like <see cref="DestinationFile"/>. The structures (<see cref="VhdxLayout"/>) are written when the file is created;
/// a payload block is allocated at the end of the file on its first write and marked FULLY_PRESENT, a block never
/// written stays NOT_PRESENT (reads as zeros, takes no space), so zero chunks need no I/O. Data goes straight from
/// the caller's buffer to the file with positional writes, from any number of threads; only allocating a block takes
/// a lock. <see cref="Flush"/> writes the BAT entries changed since the last flush, then a header, then flushes to disk.
/// <para>
/// No log is used (LogGuid stays zero): the file is private to this restore until it is renamed into place, and a
/// later run resumes only from a completed <see cref="Flush"/>, after which the file is consistent.
/// </para>
/// </summary>
public sealed class VhdxDestination : PartialFileDestination
{
    private const int BatPageEntries = 512; // one 4 KiB sector of the BAT

    private readonly VhdxLayout _layout;
    private readonly int _blockShift;
    // File offset of each payload block in MiB; 0 = not allocated (no block can live in the header section).
    private readonly uint[] _blockMb;
    private readonly ulong[] _dirtyPages;
    private readonly object _allocation = new();
    private long _nextFree;
    // The file is extended ahead of allocation, in steps: a write inside the file's length is cheaper than one that
    // extends it (ext4 updates the inode for every extending write). Flush trims the file to the blocks in use.
    private long _extendedTo;
    private VhdxHeader _header;
    private int _headerSlot;

    private VhdxDestination(PartialFile file, VhdxLayout layout, uint[] blockMb, long nextFree, VhdxHeader header, int headerSlot)
        : base(file)
    {
        _layout = layout;
        _blockShift = System.Numerics.BitOperations.Log2((uint)layout.BlockSize);
        _blockMb = blockMb;
        _dirtyPages = new ulong[(layout.BatEntryCount + BatPageEntries * 64 - 1) / (BatPageEntries * 64)];
        _nextFree = nextFree;
        _extendedTo = RandomAccess.GetLength(file.Handle);
        _header = header;
        _headerSlot = headerSlot;
    }

    /// <summary>Virtual disk size: the requested size rounded up to a multiple of 512 bytes.</summary>
    public long VirtualSize => _layout.VirtualSize;

    /// <summary>Payload block size in bytes.</summary>
    public int BlockSize => _layout.BlockSize;

    private static string Creator => $"PbsRestore {typeof(VhdxDestination).Assembly.GetName().Version}";

    /// <summary>
    /// Creates <c>&lt;destination&gt;.partial</c> as an empty dynamic VHDX of <paramref name="virtualSize"/> bytes (rounded
    /// up to a multiple of 512). <paramref name="blockSize"/> is the restore's chunk size, so that one chunk fills one
    /// block; it is rounded up to a power of two and clamped to 1 MiB..256 MiB (<see cref="VhdxLayout.ClampBlockSize"/>).
    /// </summary>
    public static VhdxDestination Create(string destination, long virtualSize, int blockSize, bool force)
    {
        var layout = VhdxLayout.ForDisk(virtualSize, VhdxLayout.ClampBlockSize(blockSize));
        var first = new VhdxHeader(1, Guid.NewGuid(), Guid.NewGuid(), Guid.Empty, VhdxLayout.LogLength, VhdxLayout.LogOffset);
        var current = first with { SequenceNumber = 2 };
        var file = PartialFile.Create(destination, force, stream =>
        {
            stream.SetLength(layout.FirstPayloadOffset);
            // The header section in one write: identifier, both headers (identical but for the sequence number), both region tables.
            var section = new byte[VhdxLayout.HeaderSectionSize];
            VhdxLayout.WriteFileTypeIdentifier(section, Creator);
            first.Write(section.AsSpan((int)VhdxLayout.Header1Offset));
            current.Write(section.AsSpan((int)VhdxLayout.Header2Offset));
            layout.WriteRegionTable(section.AsSpan((int)VhdxLayout.RegionTable1Offset));
            layout.WriteRegionTable(section.AsSpan((int)VhdxLayout.RegionTable2Offset));
            RandomAccess.Write(stream.SafeFileHandle, section, 0);
            var metadata = new byte[VhdxLayout.MetadataBytesUsed];
            layout.WriteMetadataRegion(metadata, Guid.NewGuid());
            RandomAccess.Write(stream.SafeFileHandle, metadata, VhdxLayout.MetadataOffset);
            // The BAT is all zeros (NOT_PRESENT) in the fresh file: nothing to write until a block is allocated.
        });
        return new VhdxDestination(file, layout, new uint[layout.DataBlockCount], layout.FirstPayloadOffset, current, 1);
    }

    /// <summary>
    /// Reopens the <c>&lt;destination&gt;.partial</c> of an earlier run whose <see cref="Flush"/> completed, to go on
    /// writing into it. Its structures must match this disk (size rounded as in <see cref="Create"/>, block size clamped
    /// the same way), else <see cref="PbsException"/> ResumeStateMismatch. Blocks allocated after that run's last flush
    /// are not in its BAT: the file is cut back to the last block the BAT knows, so that new blocks read as zeros again.
    /// </summary>
    public static VhdxDestination OpenPartial(string destination, long virtualSize, int blockSize)
    {
        var layout = VhdxLayout.ForDisk(virtualSize, VhdxLayout.ClampBlockSize(blockSize));
        var file = PartialFile.Open(destination);
        try
        {
            var stream = file.Stream;
            var (header, slot, blockMb, nextFree) = ReadState(stream, layout, file.Path);
            // Blocks past the last one the BAT knows were written after the last flush: drop them.
            stream.SetLength(nextFree);
            var target = new VhdxDestination(file, layout, blockMb, nextFree, header, slot);
            // MS-VHDX 2.2.2.1: the headers are updated, with new write GUIDs, before anything else is modified.
            target._header = header with { FileWriteGuid = Guid.NewGuid(), DataWriteGuid = Guid.NewGuid() };
            target.WriteNextHeader();
            file.Writer.Flush();
            file.Keep = false;
            return target;
        }
        catch
        {
            file.Dispose(); // kept: a failed reopen must not delete what an earlier run wrote
            throw;
        }
    }

    private static PbsException Mismatch(string partial, string why, Exception? inner = null) =>
        new("ResumeStateMismatch", PbsErrorKind.InvalidData, $"cannot resume into '{partial}': {why}", inner);

    private static (VhdxHeader Header, int Slot, uint[] BlockMb, long NextFree) ReadState(FileStream stream, VhdxLayout layout, string partial)
    {
        var handle = stream.SafeFileHandle;
        long length = RandomAccess.GetLength(handle);
        if (length < layout.FirstPayloadOffset) throw Mismatch(partial, "the file is too short to be a VHDX written by this module");
        var section = new byte[VhdxLayout.HeaderSectionSize];
        ReadExactly(handle, section, 0);
        VhdxHeader header;
        int slot;
        IReadOnlyList<VhdxRegion> regions;
        VhdxMetadata meta;
        try
        {
            (header, slot, regions) = VhdxLayout.ParseHeaderSection(section);
            var metadata = new byte[VhdxLayout.MetadataLength];
            ReadExactly(handle, metadata, VhdxLayout.MetadataOffset);
            meta = VhdxLayout.ParseMetadataRegion(metadata);
        }
        catch (PbsFormatException e)
        {
            throw Mismatch(partial, e.Message, e);
        }
        if (header.Version != VhdxHeader.FormatVersion || header.LogGuid != Guid.Empty)
            throw Mismatch(partial, "the VHDX has a log to replay or another version (it was opened by another program)");
        var bat = regions.Where(r => r.Id == VhdxLayout.BatRegionId).ToList();
        var md = regions.Where(r => r.Id == VhdxLayout.MetadataRegionId).ToList();
        if (regions.Count != 2 || bat.Count != 1 || md.Count != 1 || bat[0].FileOffset != VhdxLayout.BatOffset ||
            bat[0].Length != layout.BatLength || md[0].FileOffset != VhdxLayout.MetadataOffset || md[0].Length != VhdxLayout.MetadataLength)
            throw Mismatch(partial, "its regions are not those this module writes for this disk");
        if (meta.VirtualSize != layout.VirtualSize || meta.BlockSize != layout.BlockSize || meta.HasParent ||
            meta.LogicalSectorSize != VhdxLayout.LogicalSectorSize)
            throw Mismatch(partial, $"it holds a {meta.VirtualSize}-byte disk in {meta.BlockSize}-byte blocks, " +
                                    $"this restore a {layout.VirtualSize}-byte disk in {layout.BlockSize}-byte blocks");

        var blockMb = new uint[layout.DataBlockCount];
        var used = new List<(long Offset, long Block)>();
        var page = new byte[VhdxLayout.MiB];
        for (long first = 0; first < layout.BatEntryCount; first += page.Length / 8)
        {
            int n = (int)Math.Min(page.Length / 8, layout.BatEntryCount - first);
            ReadExactly(handle, page.AsSpan(0, n * 8), VhdxLayout.BatOffset + first * 8);
            for (int k = 0; k < n; k++)
            {
                long i = first + k;
                ulong entry = BitConverter.ToUInt64(page, k * 8);
                if (!BitConverter.IsLittleEndian) entry = System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(entry);
                int state = VhdxLayout.BatEntryState(entry);
                if (layout.IsSectorBitmapEntry(i) || state == VhdxBlockState.NotPresent)
                {
                    if (state != VhdxBlockState.NotPresent) throw Mismatch(partial, $"BAT entry {i} has a sector bitmap (a differencing disk?)");
                    continue;
                }
                long offset = VhdxLayout.BatEntryOffset(entry);
                if (state != VhdxBlockState.FullyPresent || !VhdxLayout.BatEntryReservedClear(entry) || offset < layout.FirstPayloadOffset)
                    throw Mismatch(partial, $"BAT entry {i} (0x{entry:x16}) is not one this module writes");
                long block = i - i / (layout.ChunkRatio + 1);
                blockMb[block] = checked((uint)(offset >> 20));
                used.Add((offset, block));
            }
        }
        // Blocks must not overlap one another (they were handed out one after the other).
        used.Sort((a, b) => a.Offset.CompareTo(b.Offset));
        for (int k = 1; k < used.Count; k++)
            if (used[k].Offset < used[k - 1].Offset + layout.BlockSize)
                throw Mismatch(partial, $"payload blocks {used[k - 1].Block} and {used[k].Block} overlap");
        long nextFree = used.Count == 0 ? layout.FirstPayloadOffset : used[^1].Offset + layout.BlockSize;
        return (header, slot, blockMb, nextFree);
    }

    private static void ReadExactly(Microsoft.Win32.SafeHandles.SafeFileHandle handle, Span<byte> buffer, long offset)
    {
        while (!buffer.IsEmpty)
        {
            int n = RandomAccess.Read(handle, buffer, offset);
            if (n <= 0) throw new EndOfStreamException($"unexpected end of file at offset {offset}");
            buffer = buffer[n..];
            offset += n;
        }
    }

    /// <summary>
    /// Writes <paramref name="data"/> at virtual offset <paramref name="offset"/>, split at block boundaries. Each block
    /// touched for the first time is allocated whole at the end of the file (its unwritten parts read as zeros).
    /// </summary>
    public override void Write(long offset, ReadOnlySpan<byte> data)
    {
        if (offset < 0 || offset > _layout.VirtualSize - data.Length)
            throw new ArgumentOutOfRangeException(nameof(offset), offset, $"{data.Length} bytes at this offset do not fit the {_layout.VirtualSize}-byte disk");
        long mask = _layout.BlockSize - 1;
        while (!data.IsEmpty)
        {
            long block = offset >> _blockShift;
            long within = offset & mask;
            int n = (int)Math.Min(data.Length, _layout.BlockSize - within);
            Partial.Writer.Write(data[..n], BlockFileOffset(block) + within);
            offset += n;
            data = data[n..];
        }
    }

    private long BlockFileOffset(long block)
    {
        uint mb = Volatile.Read(ref _blockMb[block]);
        if (mb != 0) return (long)mb << 20;
        lock (_allocation)
        {
            mb = _blockMb[block];
            if (mb == 0)
            {
                mb = checked((uint)(_nextFree >> 20));
                _nextFree += _layout.BlockSize;
                if (_nextFree > _extendedTo)
                {
                    long target = _nextFree + Math.Max(256L << 20, 4L * _layout.BlockSize);
                    Stream.SetLength(target);
                    _extendedTo = target;
                }
                long page = _layout.PayloadBatIndex(block) / BatPageEntries;
                _dirtyPages[page >> 6] |= 1UL << (int)(page & 63);
                Volatile.Write(ref _blockMb[block], mb);
            }
        }
        return (long)mb << 20;
    }

    /// <summary>
    /// Makes the file a consistent VHDX on disk: sets its length to the end of the last allocated block, writes the BAT sectors changed
    /// since the last flush, writes the next header (sequence number + 1, into the slot that is not current, so one
    /// valid header survives a torn write), then flushes to disk.
    /// </summary>
    /// <summary>True: blocks are found through metadata written at checkpoints.</summary>
    public override bool CheckpointOnStop => true;

    public override void Flush()
    {
        lock (_allocation)
        {
            if (_extendedTo != _nextFree || RandomAccess.GetLength(Stream.SafeFileHandle) != _nextFree)
            {
                Stream.SetLength(_nextFree);
                _extendedTo = _nextFree;
            }
            WriteDirtyBat();
            WriteNextHeader();
            Partial.Writer.Flush();
        }
    }

    private void WriteDirtyBat()
    {
        byte[]? buffer = null;
        const int maxRun = 256; // pages per write: 1 MiB
        long pages = (_layout.BatEntryCount + BatPageEntries - 1) / BatPageEntries;
        for (long p = 0; p < pages;)
        {
            if (!IsDirty(p)) { p++; continue; }
            long start = p;
            while (p < pages && p - start < maxRun && IsDirty(p)) p++;
            buffer ??= new byte[maxRun * BatPageEntries * 8];
            long firstEntry = start * BatPageEntries;
            int count = (int)Math.Min((p - start) * BatPageEntries, _layout.BatEntryCount - firstEntry);
            var span = buffer.AsSpan(0, count * 8);
            for (int k = 0; k < count; k++)
                System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(span[(k * 8)..], EntryAt(firstEntry + k));
            Partial.Writer.Write(span, VhdxLayout.BatOffset + firstEntry * 8);
            for (long q = start; q < p; q++) _dirtyPages[q >> 6] &= ~(1UL << (int)(q & 63));
        }
    }

    private bool IsDirty(long page) => (_dirtyPages[page >> 6] & (1UL << (int)(page & 63))) != 0;

    private ulong EntryAt(long batIndex)
    {
        if (_layout.IsSectorBitmapEntry(batIndex)) return 0;
        uint mb = _blockMb[batIndex - batIndex / (_layout.ChunkRatio + 1)];
        return mb == 0 ? 0 : VhdxLayout.BatEntry(VhdxBlockState.FullyPresent, (long)mb << 20);
    }

    private void WriteNextHeader()
    {
        var next = _header with { SequenceNumber = _header.SequenceNumber + 1 };
        int slot = 1 - _headerSlot;
        var bytes = new byte[VhdxHeader.Size];
        next.Write(bytes);
        Partial.Writer.Write(bytes, slot == 0 ? VhdxLayout.Header1Offset : VhdxLayout.Header2Offset);
        _header = next;
        _headerSlot = slot;
    }
}
