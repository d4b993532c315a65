using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace PbsRestore.DiskImages;

/// <summary>
/// Where things are in a monolithic sparse VMDK ("hosted sparse extent", VMware Virtual Disk Format 5.0) of a given
/// size, and their bytes: the 512-byte sparse extent header in sector 0, the embedded text descriptor after it, the
/// grain directory, then every grain table (preallocated, one after the other), then grains appended as data arrives.
/// All numbers are little-endian and count 512-byte sectors. A grain table entry of 0 is a grain never written: it
/// reads as zeros and takes no space. No redundant grain directory is written (flag bit 1 clear): the file is only
/// ever written by one restore and renamed into place when complete.
/// </summary>
public sealed class VmdkLayout
{
    public const int SectorSize = 512;
    public const uint Magic = 0x564d444b; // "KDMV" in the file
    /// <summary>Grain size in sectors: 64 KiB, VMware's default.</summary>
    public const int GrainSectors = 128;
    public const int GrainBytes = GrainSectors * SectorSize;
    /// <summary>Grain table entries per table (the spec's fixed 512).</summary>
    public const int TableEntries = 512;
    public const int TableSectors = TableEntries * 4 / SectorSize;
    public const long DescriptorOffset = 1;
    public const int DescriptorSectors = 20;
    /// <summary>Flags: bit 0, the newline characters in the header are valid (lets readers detect a text-mode transfer).</summary>
    public const uint Flags = 1;

    private VmdkLayout(long capacitySectors)
    {
        CapacitySectors = capacitySectors;
        Grains = (capacitySectors + GrainSectors - 1) / GrainSectors;
        Tables = (Grains + TableEntries - 1) / TableEntries;
        GrainDirectoryOffset = DescriptorOffset + DescriptorSectors;
        long gdSectors = (Tables * 4 + SectorSize - 1) / SectorSize;
        GrainTablesOffset = GrainDirectoryOffset + gdSectors;
        long end = GrainTablesOffset + Tables * TableSectors;
        OverheadSectors = (end + GrainSectors - 1) / GrainSectors * GrainSectors;
    }

    /// <summary>The disk's size in sectors (the image rounded up to 512 bytes).</summary>
    public long CapacitySectors { get; }
    public long VirtualSize => CapacitySectors * SectorSize;
    public long Grains { get; }
    public long Tables { get; }
    public long GrainDirectoryOffset { get; }
    public long GrainTablesOffset { get; }
    /// <summary>Sectors of metadata before the first grain (a whole number of grains).</summary>
    public long OverheadSectors { get; }

    /// <summary>
    /// Grain table entries are 32-bit sector numbers, so a sparse extent ends at 2 TiB; every grain allocated must fit.
    /// </summary>
    public static long MaxVirtualSize => (uint.MaxValue - 1_000_000L) / GrainSectors * GrainBytes;

    public static VmdkLayout ForDisk(long size)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        if (size > MaxVirtualSize)
            throw new PbsException("FormatNotSupported", PbsErrorKind.InvalidArgument,
                $"a {size}-byte disk does not fit a sparse VMDK (at most {MaxVirtualSize >> 30} GiB): restore it as Raw or Vhdx");
        return new VmdkLayout((size + SectorSize - 1) / SectorSize);
    }

    /// <summary>File offset of the grain table entry of <paramref name="grain"/>.</summary>
    public long TableEntryOffset(long grain) => GrainTablesOffset * SectorSize + grain * 4;

    /// <summary>The sparse extent header (one sector).</summary>
    public void WriteHeader(Span<byte> sector)
    {
        sector[..SectorSize].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(sector, Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(sector[4..], 1);                       // version
        BinaryPrimitives.WriteUInt32LittleEndian(sector[8..], Flags);
        BinaryPrimitives.WriteUInt64LittleEndian(sector[12..], (ulong)CapacitySectors);
        BinaryPrimitives.WriteUInt64LittleEndian(sector[20..], GrainSectors);
        BinaryPrimitives.WriteUInt64LittleEndian(sector[28..], DescriptorOffset);
        BinaryPrimitives.WriteUInt64LittleEndian(sector[36..], DescriptorSectors);
        BinaryPrimitives.WriteUInt32LittleEndian(sector[44..], TableEntries);
        BinaryPrimitives.WriteUInt64LittleEndian(sector[48..], 0);                      // no redundant grain directory
        BinaryPrimitives.WriteUInt64LittleEndian(sector[56..], (ulong)GrainDirectoryOffset);
        BinaryPrimitives.WriteUInt64LittleEndian(sector[64..], (ulong)OverheadSectors);
        sector[72] = 0;                                                                  // cleanly closed
        sector[73] = (byte)'\n';
        sector[74] = (byte)' ';
        sector[75] = (byte)'\r';
        sector[76] = (byte)'\n';
        BinaryPrimitives.WriteUInt16LittleEndian(sector[77..], 0);                      // not compressed
    }

    /// <summary>The embedded descriptor (<see cref="DescriptorSectors"/> sectors, zero-padded) naming the extent file.</summary>
    public byte[] Descriptor(string fileName, uint contentId)
    {
        // BIOS geometry as VMware derives it for a disk of this size (16 heads, 63 sectors, cylinders capped).
        long cylinders = Math.Min(CapacitySectors / (16 * 63), 16383);
        string text = string.Join("\n",
            "# Disk DescriptorFile",
            "version=1",
            "CID=" + contentId.ToString("x8", CultureInfo.InvariantCulture),
            "parentCID=ffffffff",
            "createType=\"monolithicSparse\"",
            "",
            "# Extent description",
            $"RW {CapacitySectors.ToString(CultureInfo.InvariantCulture)} SPARSE \"{fileName.Replace("\"", "", StringComparison.Ordinal)}\"",
            "",
            "# The Disk Data Base",
            "#DDB",
            "",
            "ddb.virtualHWVersion = \"4\"",
            $"ddb.geometry.cylinders = \"{cylinders.ToString(CultureInfo.InvariantCulture)}\"",
            "ddb.geometry.heads = \"16\"",
            "ddb.geometry.sectors = \"63\"",
            "ddb.adapterType = \"lsilogic\"",
            "") ;
        var bytes = new byte[DescriptorSectors * SectorSize];
        int n = Encoding.UTF8.GetBytes(text, bytes);
        if (n >= bytes.Length) throw new ArgumentException("the VMDK descriptor does not fit its sectors", nameof(fileName));
        return bytes;
    }

    /// <summary>The grain directory: the sector of each grain table (they follow one another).</summary>
    public byte[] GrainDirectory()
    {
        var bytes = new byte[(GrainTablesOffset - GrainDirectoryOffset) * SectorSize];
        for (long t = 0; t < Tables; t++)
            BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan((int)(t * 4)), checked((uint)(GrainTablesOffset + t * TableSectors)));
        return bytes;
    }
}
