using System.Buffers.Binary;
using PbsRestore.DiskImages;

namespace PbsRestore.Destinations;

/// <summary>
/// A monolithic sparse VMDK destination (VMware Workstation, ESXi's vmkfstools -i, qemu-img), streamed: written as
/// <c>&lt;destination&gt;.partial</c> and renamed by <see cref="PartialFileDestination.Commit"/>. Header, descriptor and
/// grain directory are written when the file is created, the grain tables (all zeros: nothing allocated) are
/// preallocated after them; a 64 KiB grain is appended at the end of the file the first time non-zero data lands in
/// it, so grains of zeros are never allocated and zero chunks need no I/O. Data goes straight from the caller's
/// buffer to the file with positional writes, from any number of threads; only allocating takes a lock.
/// <see cref="Flush"/> writes the grain tables changed since the last flush. Resume is not supported (a stopped
/// restore deletes its partial file).
/// </summary>
public sealed class VmdkDestination : PartialFileDestination
{
    private readonly VmdkLayout _layout;
    // Sector of each grain in the file; 0 = not allocated (no grain can live in sector 0).
    private readonly uint[] _grainSector;
    private readonly bool[] _dirtyTables;
    private readonly object _allocation = new();
    private long _nextSector;

    private VmdkDestination(PartialFile file, VmdkLayout layout) : base(file)
    {
        _layout = layout;
        _grainSector = new uint[layout.Grains];
        _dirtyTables = new bool[layout.Tables];
        _nextSector = layout.OverheadSectors;
    }

    /// <summary>Virtual disk size: the image's size rounded up to a multiple of 512 bytes.</summary>
    public long VirtualSize => _layout.VirtualSize;

    /// <summary>Creates <c>&lt;destination&gt;.partial</c> as an empty monolithic sparse VMDK of <paramref name="virtualSize"/> bytes.</summary>
    public static VmdkDestination Create(string destination, long virtualSize, bool force)
    {
        var layout = VmdkLayout.ForDisk(virtualSize);
        string name = Path.GetFileName(destination);
        var file = PartialFile.Create(destination, force, stream =>
        {
            stream.SetLength(layout.OverheadSectors * VmdkLayout.SectorSize);
            var header = new byte[VmdkLayout.SectorSize];
            layout.WriteHeader(header);
            RandomAccess.Write(stream.SafeFileHandle, header, 0);
            RandomAccess.Write(stream.SafeFileHandle, layout.Descriptor(name, (uint)Random.Shared.NextInt64(1, uint.MaxValue)),
                VmdkLayout.DescriptorOffset * VmdkLayout.SectorSize);
            RandomAccess.Write(stream.SafeFileHandle, layout.GrainDirectory(), layout.GrainDirectoryOffset * VmdkLayout.SectorSize);
        });
        return new VmdkDestination(file, layout);
    }

    /// <summary>
    /// Writes <paramref name="data"/> at virtual offset <paramref name="offset"/>: grains still unallocated whose part of
    /// the data is all zeros are skipped; the others get a grain at the end of the file (consecutive grains of one
    /// write get consecutive grains in the file, so a chunk goes out in one positional write).
    /// </summary>
    public override void Write(long offset, ReadOnlySpan<byte> data)
    {
        if (offset < 0 || offset > _layout.VirtualSize - data.Length)
            throw new ArgumentOutOfRangeException(nameof(offset), offset, $"{data.Length} bytes at this offset do not fit the {_layout.VirtualSize}-byte disk");
        var writer = Partial.Writer;
        long runFile = -1;   // file offset where the pending run of bytes goes
        int runStart = 0, runLength = 0;
        int at = 0;
        while (at < data.Length)
        {
            long position = offset + at;
            long grain = position / VmdkLayout.GrainBytes;
            int within = (int)(position % VmdkLayout.GrainBytes);
            int n = Math.Min(data.Length - at, VmdkLayout.GrainBytes - within);
            var piece = data.Slice(at, n);
            long sector = Volatile.Read(ref _grainSector[grain]);
            if (sector == 0 && !piece.ContainsAnyExcept((byte)0))
            {
                Flush(ref runFile, ref runStart, ref runLength, writer, data);
                at += n;
                continue;
            }
            if (sector == 0) sector = Allocate(grain);
            long fileOffset = sector * VmdkLayout.SectorSize + within;
            if (runLength > 0 && runFile + runLength != fileOffset)
                Flush(ref runFile, ref runStart, ref runLength, writer, data);
            if (runLength == 0)
            {
                runFile = fileOffset;
                runStart = at;
            }
            runLength += n;
            at += n;
        }
        Flush(ref runFile, ref runStart, ref runLength, writer, data);

        static void Flush(ref long runFile, ref int runStart, ref int runLength, Platform.UnbufferedFileWriter writer, ReadOnlySpan<byte> data)
        {
            if (runLength == 0) return;
            writer.Write(data.Slice(runStart, runLength), runFile);
            runLength = 0;
        }
    }

    private long Allocate(long grain)
    {
        lock (_allocation)
        {
            uint sector = _grainSector[grain];
            if (sector != 0) return sector;
            sector = checked((uint)_nextSector);
            _nextSector += VmdkLayout.GrainSectors;
            _dirtyTables[grain / VmdkLayout.TableEntries] = true;
            Volatile.Write(ref _grainSector[grain], sector);
            return sector;
        }
    }

    /// <summary>
    /// Makes the file a consistent VMDK on disk: its length covers every grain allocated (a grain's unwritten tail
    /// reads as zeros), the grain tables changed since the last flush are written, then everything is flushed to disk.
    /// </summary>
    public override void Flush()
    {
        lock (_allocation)
        {
            long end = _nextSector * VmdkLayout.SectorSize;
            if (RandomAccess.GetLength(Stream.SafeFileHandle) < end) Stream.SetLength(end);
            var table = new byte[VmdkLayout.TableEntries * 4];
            for (long t = 0; t < _layout.Tables; t++)
            {
                if (!_dirtyTables[t]) continue;
                long first = t * VmdkLayout.TableEntries;
                int count = (int)Math.Min(VmdkLayout.TableEntries, _layout.Grains - first);
                Array.Clear(table);
                for (int k = 0; k < count; k++)
                    BinaryPrimitives.WriteUInt32LittleEndian(table.AsSpan(k * 4), _grainSector[first + k]);
                Partial.Writer.Write(table, _layout.TableEntryOffset(first));
                _dirtyTables[t] = false;
            }
            Partial.Writer.Flush();
        }
    }
}
