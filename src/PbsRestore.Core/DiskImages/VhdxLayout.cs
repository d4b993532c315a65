using System.Buffers.Binary;
using System.Numerics;
using System.Text;

namespace PbsRestore.DiskImages;

/// <summary>Payload and sector bitmap BAT entry states (MS-VHDX 2.5.1.1, 2.5.1.2) that this code writes or accepts.</summary>
public static class VhdxBlockState
{
    /// <summary>
    /// PAYLOAD_BLOCK_NOT_PRESENT: the default state of a dynamic VHDX block, never allocated. Hyper-V and QEMU read it as
    /// zeros, which is how zero chunks of a restore cost no space. Also SB_BLOCK_NOT_PRESENT, the only sector bitmap
    /// state of a non-differencing file.
    /// </summary>
    public const int NotPresent = 0;

    /// <summary>PAYLOAD_BLOCK_FULLY_PRESENT: the whole block is stored at the entry's file offset.</summary>
    public const int FullyPresent = 6;
}

/// <summary>A VHDX header (MS-VHDX 2.2.2): the 4 KiB structure stored at 64 KiB and again at 128 KiB.</summary>
public sealed record VhdxHeader(ulong SequenceNumber, Guid FileWriteGuid, Guid DataWriteGuid, Guid LogGuid, uint LogLength, ulong LogOffset)
{
    public const int Size = 4096;
    public const ushort FormatVersion = 1;
    private const int ChecksumOffset = 4;

    /// <summary>Writes the whole 4 KiB structure (reserved bytes zero) with its CRC-32C.</summary>
    public void Write(Span<byte> destination)
    {
        var h = destination[..Size];
        h.Clear();
        "head"u8.CopyTo(h);
        BinaryPrimitives.WriteUInt64LittleEndian(h[8..], SequenceNumber);
        FileWriteGuid.TryWriteBytes(h[16..]);
        DataWriteGuid.TryWriteBytes(h[32..]);
        LogGuid.TryWriteBytes(h[48..]);
        BinaryPrimitives.WriteUInt16LittleEndian(h[64..], 0); // LogVersion
        BinaryPrimitives.WriteUInt16LittleEndian(h[66..], FormatVersion);
        BinaryPrimitives.WriteUInt32LittleEndian(h[68..], LogLength);
        BinaryPrimitives.WriteUInt64LittleEndian(h[72..], LogOffset);
        BinaryPrimitives.WriteUInt32LittleEndian(h[ChecksumOffset..], Crc32C.ComputeWithZeroField(h, ChecksumOffset));
    }

    /// <summary>A header is valid when its signature and checksum are (MS-VHDX 2.2.2); null otherwise.</summary>
    public static VhdxHeader? TryParse(ReadOnlySpan<byte> source)
    {
        if (source.Length < Size) return null;
        var h = source[..Size];
        if (!h[..4].SequenceEqual("head"u8)) return null;
        if (BinaryPrimitives.ReadUInt32LittleEndian(h[ChecksumOffset..]) != Crc32C.ComputeWithZeroField(h, ChecksumOffset)) return null;
        return new VhdxHeader(
            BinaryPrimitives.ReadUInt64LittleEndian(h[8..]),
            new Guid(h.Slice(16, 16)), new Guid(h.Slice(32, 16)), new Guid(h.Slice(48, 16)),
            BinaryPrimitives.ReadUInt32LittleEndian(h[68..]),
            BinaryPrimitives.ReadUInt64LittleEndian(h[72..]))
        {
            LogVersion = BinaryPrimitives.ReadUInt16LittleEndian(h[64..]),
            Version = BinaryPrimitives.ReadUInt16LittleEndian(h[66..]),
        };
    }

    /// <summary>As read from a file (always 0 when written here).</summary>
    public ushort LogVersion { get; init; }

    /// <summary>As read from a file (always <see cref="FormatVersion"/> when written here).</summary>
    public ushort Version { get; init; } = FormatVersion;
}

/// <summary>One region table entry (MS-VHDX 2.2.3.2).</summary>
public readonly record struct VhdxRegion(Guid Id, long FileOffset, uint Length, bool Required);

/// <summary>The known metadata items of a non-differencing VHDX (MS-VHDX 2.6.2).</summary>
public sealed record VhdxMetadata(int BlockSize, bool LeaveBlockAllocated, bool HasParent, long VirtualSize, Guid VirtualDiskId,
    int LogicalSectorSize, int PhysicalSectorSize);

/// <summary>
/// The byte structures of a dynamic VHDX file as written here (MS-VHDX, "Virtual Hard Disk v2 (VHDX) File Format").
/// Pure: builds and parses spans, no I/O. The file layout, every object 1 MiB aligned as the spec requires:
/// <code>
/// 0        file type identifier "vhdxfile" (64 KiB)
/// 64 KiB   header 1        128 KiB  header 2
/// 192 KiB  region table 1  256 KiB  region table 2      (rest of the first MiB reserved)
/// 1 MiB    log, 1 MiB, unused: LogGuid is zero, so there is nothing to replay
/// 2 MiB    metadata region, 1 MiB: table (64 KiB) then the items
/// 3 MiB    BAT, rounded up to a whole MiB
/// then     payload blocks, each allocated on first write, 1 MiB aligned
/// </code>
/// <para>
/// Virtual size: MS-VHDX requires a multiple of the logical sector size (512 here), so a requested size that is not
/// one is rounded up to the next multiple of 512; the bytes past the requested size read as zeros. At most 64 TiB.
/// </para>
/// </summary>
public sealed class VhdxLayout
{
    public const int MiB = 1 << 20;
    public const long HeaderSectionSize = MiB;
    public const long Header1Offset = 64 << 10;
    public const long Header2Offset = 128 << 10;
    public const long RegionTable1Offset = 192 << 10;
    public const long RegionTable2Offset = 256 << 10;
    public const int RegionTableSize = 64 << 10;
    public const long LogOffset = 1 * MiB;
    public const uint LogLength = 1 * MiB;
    public const long MetadataOffset = 2 * MiB;
    public const uint MetadataLength = 1 * MiB;
    public const long BatOffset = 3 * MiB;
    public const int MetadataTableSize = 64 << 10;
    public const int MinBlockSize = 1 * MiB;
    public const int MaxBlockSize = 256 * MiB;
    public const int LogicalSectorSize = 512;
    /// <summary>4096: today's disks, and what Hyper-V gives new VHDX files; guests align partitions to it.</summary>
    public const int PhysicalSectorSize = 4096;
    public const long MaxVirtualSize = 64L << 40;
    public const int FileTypeIdentifierSize = 8 + 512;
    /// <summary>Bytes of the metadata region that <see cref="WriteMetadataRegion"/> fills: the table and the five items.</summary>
    public const int MetadataBytesUsed = MetadataTableSize + ItemsLength;

    public static readonly Guid BatRegionId = new("2DC27766-F623-4200-9D64-115E9BFD4A08");
    public static readonly Guid MetadataRegionId = new("8B7CA206-4790-4B9A-B8FE-575F050F886E");
    public static readonly Guid FileParametersId = new("CAA16737-FA36-4D43-B3B6-33F0AA44E76B");
    public static readonly Guid VirtualDiskSizeId = new("2FA54224-CD1B-4876-B211-5DBED83BF4B8");
    public static readonly Guid VirtualDiskIdId = new("BECA12AB-B2E6-4523-93EF-C309E000C746");
    public static readonly Guid LogicalSectorSizeId = new("8141BF1D-A96F-4709-BA47-F233A8FAAB5F");
    public static readonly Guid PhysicalSectorSizeId = new("CDA348C7-445D-4471-9CC9-E9885251C556");

    // Metadata items, packed after the 64 KiB table (the spec allows any non-overlapping placement at ≥ 64 KiB).
    private const int FileParametersItem = MetadataTableSize, VirtualDiskSizeItem = FileParametersItem + 8,
        VirtualDiskIdItem = VirtualDiskSizeItem + 8, LogicalSectorItem = VirtualDiskIdItem + 16, PhysicalSectorItem = LogicalSectorItem + 4,
        ItemsLength = PhysicalSectorItem + 4 - MetadataTableSize;
    private const int MaxTableEntries = 2047;

    private VhdxLayout(long virtualSize, int blockSize)
    {
        VirtualSize = virtualSize;
        BlockSize = blockSize;
        ChunkRatio = (int)((1L << 23) * LogicalSectorSize / blockSize);
        DataBlockCount = (virtualSize + blockSize - 1) / blockSize;
        // Dynamic and fixed files: the last entry is that of the last payload block (MS-VHDX 2.5).
        BatEntryCount = DataBlockCount == 0 ? 0 : DataBlockCount + (DataBlockCount - 1) / ChunkRatio;
        BatLength = Math.Max(MiB, RoundUp(BatEntryCount * 8, MiB));
        FirstPayloadOffset = BatOffset + BatLength;
    }

    /// <summary>Virtual disk size in bytes: a multiple of 512.</summary>
    public long VirtualSize { get; }
    /// <summary>Payload block size: a power of two from 1 MiB to 256 MiB.</summary>
    public int BlockSize { get; }
    /// <summary>Payload blocks per sector bitmap block: 2^23 × logical sector size / block size.</summary>
    public int ChunkRatio { get; }
    public long DataBlockCount { get; }
    /// <summary>Payload entries plus the sector bitmap entries interleaved after every <see cref="ChunkRatio"/> of them.</summary>
    public long BatEntryCount { get; }
    /// <summary>Length of the BAT region: the entries, rounded up to a whole MiB.</summary>
    public long BatLength { get; }
    /// <summary>Where the first allocated payload block goes: right after the BAT.</summary>
    public long FirstPayloadOffset { get; }

    /// <summary>
    /// The layout for a disk of <paramref name="requestedSize"/> bytes (rounded up to a multiple of 512) with payload
    /// blocks of <paramref name="blockSize"/> bytes (already a power of two from 1 MiB to 256 MiB: see <see cref="ClampBlockSize"/>).
    /// </summary>
    public static VhdxLayout ForDisk(long requestedSize, int blockSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(requestedSize);
        if (blockSize is < MinBlockSize or > MaxBlockSize || !BitOperations.IsPow2(blockSize))
            throw new ArgumentOutOfRangeException(nameof(blockSize), blockSize, "a VHDX block size is a power of two from 1 MiB to 256 MiB");
        long size = RoundVirtualSize(requestedSize);
        if (size > MaxVirtualSize)
            throw new PbsException("VhdxTooLarge", PbsErrorKind.InvalidArgument, $"a VHDX holds at most 64 TiB; this disk has {requestedSize} bytes");
        return new VhdxLayout(size, blockSize);
    }

    /// <summary>The requested size rounded up to a multiple of the logical sector size (512).</summary>
    public static long RoundVirtualSize(long requestedSize) => RoundUp(requestedSize, LogicalSectorSize);

    /// <summary>
    /// A valid VHDX block size near <paramref name="requested"/> (the restore passes its chunk size, so that one
    /// chunk fills one block): rounded up to a power of two, then into 1 MiB..256 MiB.
    /// </summary>
    public static int ClampBlockSize(long requested)
    {
        if (requested <= MinBlockSize) return MinBlockSize;
        if (requested >= MaxBlockSize) return MaxBlockSize;
        return (int)BitOperations.RoundUpToPowerOf2((ulong)requested);
    }

    /// <summary>BAT index of payload block <paramref name="block"/>: each run of <see cref="ChunkRatio"/> payload entries is followed by one sector bitmap entry.</summary>
    public long PayloadBatIndex(long block) => block + block / ChunkRatio;

    /// <summary>BAT index of the sector bitmap entry of chunk <paramref name="chunk"/> (the group of <see cref="ChunkRatio"/> payload blocks).</summary>
    public long SectorBitmapBatIndex(long chunk) => chunk * (ChunkRatio + 1) + ChunkRatio;

    /// <summary>Whether BAT entry <paramref name="batIndex"/> is a sector bitmap entry.</summary>
    public bool IsSectorBitmapEntry(long batIndex) => batIndex % (ChunkRatio + 1) == ChunkRatio;

    /// <summary>A BAT entry: state in bits 0-2, file offset in MiB in bits 20-63.</summary>
    public static ulong BatEntry(int state, long fileOffset)
    {
        if ((fileOffset & (MiB - 1)) != 0 || fileOffset < 0) throw new ArgumentOutOfRangeException(nameof(fileOffset), fileOffset, "not a multiple of 1 MiB");
        return ((ulong)(fileOffset >> 20) << 20) | (uint)(state & 7);
    }

    public static int BatEntryState(ulong entry) => (int)(entry & 7);

    /// <summary>The entry's file offset in bytes.</summary>
    public static long BatEntryOffset(ulong entry) => (long)(entry >> 20) << 20;

    /// <summary>Whether the entry's reserved bits (3-19) are zero, as the spec requires.</summary>
    public static bool BatEntryReservedClear(ulong entry) => (entry & 0xFFFF8UL) == 0;

    /// <summary>The file type identifier: "vhdxfile" and the creator as UTF-16 (at most 255 characters, NUL terminated).</summary>
    public static void WriteFileTypeIdentifier(Span<byte> destination, string creator)
    {
        var id = destination[..FileTypeIdentifierSize];
        id.Clear();
        "vhdxfile"u8.CopyTo(id);
        var name = creator.Length > 255 ? creator[..255] : creator;
        Encoding.Unicode.GetBytes(name, id[8..]);
    }

    public static bool HasFileTypeSignature(ReadOnlySpan<byte> source) => source.Length >= 8 && source[..8].SequenceEqual("vhdxfile"u8);

    /// <summary>A header with a zero LogGuid (no log to replay) and the log at 1 MiB, 1 MiB long.</summary>
    public static VhdxHeader NewHeader(ulong sequenceNumber, Guid fileWriteGuid, Guid dataWriteGuid) =>
        new(sequenceNumber, fileWriteGuid, dataWriteGuid, Guid.Empty, LogLength, LogOffset);

    /// <summary>The 64 KiB region table: the BAT and the metadata region, both required.</summary>
    public void WriteRegionTable(Span<byte> destination)
    {
        var t = destination[..RegionTableSize];
        t.Clear();
        "regi"u8.CopyTo(t);
        BinaryPrimitives.WriteUInt32LittleEndian(t[8..], 2);
        WriteRegionEntry(t[16..], new VhdxRegion(BatRegionId, BatOffset, (uint)BatLength, true));
        WriteRegionEntry(t[48..], new VhdxRegion(MetadataRegionId, MetadataOffset, MetadataLength, true));
        BinaryPrimitives.WriteUInt32LittleEndian(t[4..], Crc32C.ComputeWithZeroField(t, 4));
    }

    private static void WriteRegionEntry(Span<byte> e, VhdxRegion region)
    {
        region.Id.TryWriteBytes(e);
        BinaryPrimitives.WriteInt64LittleEndian(e[16..], region.FileOffset);
        BinaryPrimitives.WriteUInt32LittleEndian(e[24..], region.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(e[28..], region.Required ? 1u : 0u);
    }

    /// <summary>Parses a region table; null when its signature or checksum is wrong or it is inconsistent.</summary>
    public static IReadOnlyList<VhdxRegion>? TryParseRegionTable(ReadOnlySpan<byte> source)
    {
        if (source.Length < RegionTableSize) return null;
        var t = source[..RegionTableSize];
        if (!t[..4].SequenceEqual("regi"u8)) return null;
        if (BinaryPrimitives.ReadUInt32LittleEndian(t[4..]) != Crc32C.ComputeWithZeroField(t, 4)) return null;
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(t[8..]);
        if (count > MaxTableEntries) return null;
        var regions = new List<VhdxRegion>((int)count);
        for (int i = 0; i < count; i++)
        {
            var e = t.Slice(16 + 32 * i, 32);
            regions.Add(new VhdxRegion(new Guid(e[..16]), BinaryPrimitives.ReadInt64LittleEndian(e[16..]),
                BinaryPrimitives.ReadUInt32LittleEndian(e[24..]), (BinaryPrimitives.ReadUInt32LittleEndian(e[28..]) & 1) != 0));
        }
        return regions;
    }

    /// <summary>
    /// The used start of the metadata region (<see cref="MetadataBytesUsed"/> bytes): the table and the items File
    /// Parameters (this block size, blocks may be unallocated, no parent), Virtual Disk Size, Virtual Disk ID,
    /// Logical Sector Size 512, Physical Sector Size 4096. The rest of the region is free space (zeros).
    /// </summary>
    public void WriteMetadataRegion(Span<byte> destination, Guid virtualDiskId)
    {
        var m = destination[..MetadataBytesUsed];
        m.Clear();
        "metadata"u8.CopyTo(m);
        BinaryPrimitives.WriteUInt16LittleEndian(m[10..], 5);
        // IsUser bit 0, IsVirtualDisk bit 1, IsRequired bit 2 (MS-VHDX 2.6.2: all required; only File Parameters is file metadata).
        const uint required = 4, virtualDisk = 2;
        WriteMetadataEntry(m[32..], FileParametersId, FileParametersItem, 8, required);
        WriteMetadataEntry(m[64..], VirtualDiskSizeId, VirtualDiskSizeItem, 8, required | virtualDisk);
        WriteMetadataEntry(m[96..], VirtualDiskIdId, VirtualDiskIdItem, 16, required | virtualDisk);
        WriteMetadataEntry(m[128..], LogicalSectorSizeId, LogicalSectorItem, 4, required | virtualDisk);
        WriteMetadataEntry(m[160..], PhysicalSectorSizeId, PhysicalSectorItem, 4, required | virtualDisk);
        BinaryPrimitives.WriteUInt32LittleEndian(m[FileParametersItem..], (uint)BlockSize);
        BinaryPrimitives.WriteUInt32LittleEndian(m[(FileParametersItem + 4)..], 0); // LeaveBlockAllocated 0, HasParent 0
        BinaryPrimitives.WriteInt64LittleEndian(m[VirtualDiskSizeItem..], VirtualSize);
        virtualDiskId.TryWriteBytes(m[VirtualDiskIdItem..]);
        BinaryPrimitives.WriteUInt32LittleEndian(m[LogicalSectorItem..], LogicalSectorSize);
        BinaryPrimitives.WriteUInt32LittleEndian(m[PhysicalSectorItem..], PhysicalSectorSize);
    }

    private static void WriteMetadataEntry(Span<byte> e, Guid id, int offset, int length, uint flags)
    {
        id.TryWriteBytes(e);
        BinaryPrimitives.WriteUInt32LittleEndian(e[16..], (uint)offset);
        BinaryPrimitives.WriteUInt32LittleEndian(e[20..], (uint)length);
        BinaryPrimitives.WriteUInt32LittleEndian(e[24..], flags);
    }

    /// <summary>
    /// Reads the known system items from a metadata region. Throws <see cref="PbsFormatException"/> (VhdxInvalid) when
    /// the table is malformed, an item is missing or out of bounds, or a required item is unknown.
    /// </summary>
    public static VhdxMetadata ParseMetadataRegion(ReadOnlySpan<byte> region)
    {
        if (region.Length < MetadataTableSize || !region[..8].SequenceEqual("metadata"u8)) throw Invalid("no metadata table signature");
        int count = BinaryPrimitives.ReadUInt16LittleEndian(region[10..]);
        if (count > MaxTableEntries) throw Invalid($"metadata table has {count} entries");
        var items = new Dictionary<Guid, (int Offset, int Length)>();
        for (int i = 0; i < count; i++)
        {
            var e = region.Slice(32 + 32 * i, 32);
            var id = new Guid(e[..16]);
            uint offset = BinaryPrimitives.ReadUInt32LittleEndian(e[16..]), length = BinaryPrimitives.ReadUInt32LittleEndian(e[20..]);
            uint flags = BinaryPrimitives.ReadUInt32LittleEndian(e[24..]);
            bool isUser = (flags & 1) != 0, isRequired = (flags & 4) != 0;
            if (length != 0 && (offset < MetadataTableSize || (long)offset + length > region.Length))
                throw Invalid($"metadata item {id} lies outside the metadata region");
            if (isUser) continue;
            if (isRequired && !IsKnownItem(id)) throw Invalid($"required metadata item {id} is unknown");
            items[id] = ((int)offset, (int)length);
        }
        ReadOnlySpan<byte> Item(ReadOnlySpan<byte> r, Guid id, int size)
        {
            if (!items.TryGetValue(id, out var it)) throw Invalid($"metadata item {id} is missing");
            if (it.Length < size) throw Invalid($"metadata item {id} is {it.Length} bytes, expected {size}");
            return r.Slice(it.Offset, size);
        }
        var fp = Item(region, FileParametersId, 8);
        uint fpFlags = BinaryPrimitives.ReadUInt32LittleEndian(fp[4..]);
        return new VhdxMetadata(
            (int)Math.Min(int.MaxValue, BinaryPrimitives.ReadUInt32LittleEndian(fp)), (fpFlags & 1) != 0, (fpFlags & 2) != 0,
            BinaryPrimitives.ReadInt64LittleEndian(Item(region, VirtualDiskSizeId, 8)),
            new Guid(Item(region, VirtualDiskIdId, 16)),
            (int)Math.Min(int.MaxValue, BinaryPrimitives.ReadUInt32LittleEndian(Item(region, LogicalSectorSizeId, 4))),
            (int)Math.Min(int.MaxValue, BinaryPrimitives.ReadUInt32LittleEndian(Item(region, PhysicalSectorSizeId, 4))));
    }

    private static bool IsKnownItem(Guid id) =>
        id == FileParametersId || id == VirtualDiskSizeId || id == VirtualDiskIdId || id == LogicalSectorSizeId || id == PhysicalSectorSizeId;

    /// <summary>
    /// Parses the 1 MiB header section: checks the file type signature, picks the current header (valid, highest
    /// sequence number) and a valid region table. Throws <see cref="PbsFormatException"/> (VhdxInvalid) when there is none.
    /// </summary>
    public static (VhdxHeader Header, int Slot, IReadOnlyList<VhdxRegion> Regions) ParseHeaderSection(ReadOnlySpan<byte> section)
    {
        if (section.Length < HeaderSectionSize) throw Invalid("the file is shorter than the VHDX header section");
        if (!HasFileTypeSignature(section)) throw Invalid("no 'vhdxfile' signature");
        var h1 = VhdxHeader.TryParse(section[(int)Header1Offset..]);
        var h2 = VhdxHeader.TryParse(section[(int)Header2Offset..]);
        var (header, slot) = (h1, h2) switch
        {
            (null, null) => throw Invalid("neither VHDX header is valid"),
            (not null, null) => (h1, 0),
            (null, not null) => (h2, 1),
            _ => h2!.SequenceNumber > h1!.SequenceNumber ? (h2, 1) : (h1, 0),
        };
        var regions = TryParseRegionTable(section[(int)RegionTable1Offset..]) ?? TryParseRegionTable(section[(int)RegionTable2Offset..])
                      ?? throw Invalid("neither VHDX region table is valid");
        return (header, slot, regions);
    }

    private static PbsFormatException Invalid(string message) => new($"not a usable VHDX file: {message}", "VhdxInvalid");

    private static long RoundUp(long value, long multiple) => (value + multiple - 1) / multiple * multiple;
}
