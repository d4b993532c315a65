using System.Buffers.Binary;
using System.Text;
using PbsRestore.DiskImages;

namespace PbsRestore.Tests.Formats.DiskImages;

public class Crc32CTests
{
    [Theory]
    // The standard check value, and the RFC 3720 (iSCSI) B.4 test vectors.
    [InlineData("123456789", 0xE3069283u)]
    [InlineData("zeros32", 0x8A9136AAu)]
    [InlineData("ones32", 0x62A8AB43u)]
    [InlineData("ascending32", 0x46DD794Eu)]
    [InlineData("descending32", 0x113FDB5Cu)]
    public void Known_vectors(string name, uint expected)
    {
        byte[] data = name switch
        {
            "zeros32" => new byte[32],
            "ones32" => Enumerable.Repeat((byte)0xFF, 32).ToArray(),
            "ascending32" => Enumerable.Range(0, 32).Select(i => (byte)i).ToArray(),
            "descending32" => Enumerable.Range(0, 32).Select(i => (byte)(31 - i)).ToArray(),
            _ => Encoding.ASCII.GetBytes(name),
        };
        Assert.Equal(expected, Crc32C.Compute(data));
    }

    [Fact]
    public void Zero_field_variant_equals_checksum_of_the_zeroed_copy()
    {
        var data = Enumerable.Range(0, 4096).Select(i => (byte)(i * 7 + 3)).ToArray();
        var copy = (byte[])data.Clone();
        copy.AsSpan(4, 4).Clear();
        Assert.Equal(Crc32C.Compute(copy), Crc32C.ComputeWithZeroField(data, 4));
        Assert.Equal(Crc32C.Compute(data), Crc32C.Compute(data.AsSpan())); // nothing modified
    }
}

public class VhdxLayoutTests
{
    private const int MiB = 1 << 20;

    [Theory]
    [InlineData(1 * MiB, 4096)]
    [InlineData(2 * MiB, 2048)]
    [InlineData(4 * MiB, 1024)]
    [InlineData(32 * MiB, 128)]
    [InlineData(256 * MiB, 16)]
    public void Chunk_ratio_is_2_pow_23_sectors_per_block(int blockSize, int ratio)
    {
        Assert.Equal(ratio, VhdxLayout.ForDisk(1L << 30, blockSize).ChunkRatio);
    }

    [Fact]
    public void Bat_interleaves_a_sector_bitmap_entry_after_every_chunk_ratio_payload_entries()
    {
        // 4 MiB blocks: chunk ratio 1024. 1025 blocks need one bitmap entry between block 1023 and block 1024.
        var l = VhdxLayout.ForDisk(1025L * 4 * MiB, 4 * MiB);
        Assert.Equal(1025, l.DataBlockCount);
        Assert.Equal(1026, l.BatEntryCount);
        Assert.Equal(0, l.PayloadBatIndex(0));
        Assert.Equal(1023, l.PayloadBatIndex(1023));
        Assert.Equal(1024, l.SectorBitmapBatIndex(0));
        Assert.Equal(1025, l.PayloadBatIndex(1024));
        Assert.True(l.IsSectorBitmapEntry(1024));
        Assert.False(l.IsSectorBitmapEntry(1023));
        Assert.False(l.IsSectorBitmapEntry(1025));

        // 256 MiB blocks: ratio 16, bitmap entries at 16, 33, 50...
        var big = VhdxLayout.ForDisk(64L << 40, 256 * MiB);
        Assert.Equal(262144, big.DataBlockCount);
        Assert.Equal(262144 + 262143 / 16, big.BatEntryCount);
        Assert.Equal(16, big.SectorBitmapBatIndex(0));
        Assert.Equal(33, big.SectorBitmapBatIndex(1));
        Assert.Equal(17, big.PayloadBatIndex(16));
        Assert.Equal(34, big.PayloadBatIndex(32));
        // The last entry is the last payload block's (dynamic disks end there, no trailing bitmap entry).
        Assert.Equal(big.BatEntryCount - 1, big.PayloadBatIndex(big.DataBlockCount - 1));
        for (long i = 0; i < 200; i++)
            Assert.Equal(i % 17 == 16, big.IsSectorBitmapEntry(i));
    }

    [Fact]
    public void Exactly_one_chunk_of_blocks_has_no_bitmap_entry_after_it()
    {
        var l = VhdxLayout.ForDisk(1024L * 4 * MiB, 4 * MiB);
        Assert.Equal(1024, l.BatEntryCount);
        Assert.Equal(l.BatEntryCount - 1, l.PayloadBatIndex(1023));
    }

    [Fact]
    public void Bat_region_is_whole_mib_and_payload_starts_after_it()
    {
        var small = VhdxLayout.ForDisk(2L << 30, 4 * MiB);
        Assert.Equal(512, small.BatEntryCount);
        Assert.Equal(MiB, small.BatLength);
        Assert.Equal(4L * MiB, small.FirstPayloadOffset);
        var large = VhdxLayout.ForDisk(4L << 40, MiB); // 4M blocks, 1024 bitmap entries: 32 MiB + 8 KiB
        Assert.Equal(4L * MiB + (4L * MiB - 1) / 4096, large.BatEntryCount);
        Assert.Equal(33L * MiB, large.BatLength);
        Assert.Equal(36L * MiB, large.FirstPayloadOffset);
    }

    [Theory]
    [InlineData(0, 0)]
    [InlineData(1, 512)]
    [InlineData(512, 512)]
    [InlineData(345211, 345600)]
    [InlineData(3158073, 3158528)]
    [InlineData(2L << 30, 2L << 30)]
    public void Virtual_size_rounds_up_to_512(long requested, long expected)
    {
        Assert.Equal(expected, VhdxLayout.RoundVirtualSize(requested));
        Assert.Equal(expected, VhdxLayout.ForDisk(requested, MiB).VirtualSize);
    }

    [Fact]
    public void More_than_64_TiB_is_refused()
    {
        Assert.Equal(64L << 40, VhdxLayout.ForDisk(64L << 40, 32 * MiB).VirtualSize);
        var e = Assert.Throws<PbsException>(() => VhdxLayout.ForDisk((64L << 40) + 1, 32 * MiB));
        Assert.Equal("VhdxTooLarge", e.ErrorId);
    }

    [Theory]
    [InlineData(64 << 10, MiB)]
    [InlineData(MiB, MiB)]
    [InlineData(3 * MiB, 4 * MiB)]
    [InlineData(4 * MiB, 4 * MiB)]
    [InlineData(256 * MiB, 256 * MiB)]
    [InlineData(1L << 30, 256 * MiB)]
    public void Block_size_is_clamped_to_a_power_of_two_from_1_to_256_MiB(long requested, int expected)
    {
        Assert.Equal(expected, VhdxLayout.ClampBlockSize(requested));
    }

    [Theory]
    [InlineData(512 * 1024)]
    [InlineData(3 * MiB)]
    [InlineData(512 * MiB)]
    public void Invalid_block_sizes_are_rejected(int blockSize)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => VhdxLayout.ForDisk(MiB, blockSize));
    }

    [Fact]
    public void Bat_entry_packs_state_and_MiB_offset()
    {
        ulong e = VhdxLayout.BatEntry(VhdxBlockState.FullyPresent, 5L * MiB);
        Assert.Equal((5UL << 20) | 6, e);
        Assert.Equal(6, VhdxLayout.BatEntryState(e));
        Assert.Equal(5L * MiB, VhdxLayout.BatEntryOffset(e));
        Assert.True(VhdxLayout.BatEntryReservedClear(e));
        Assert.False(VhdxLayout.BatEntryReservedClear(e | 8));
        Assert.Equal(0UL, VhdxLayout.BatEntry(VhdxBlockState.NotPresent, 0));
        // High offsets survive the 44-bit field (up to what a long file offset holds).
        Assert.Equal(((1L << 43) - 1) << 20, VhdxLayout.BatEntryOffset(VhdxLayout.BatEntry(6, ((1L << 43) - 1) << 20)));
        Assert.Throws<ArgumentOutOfRangeException>(() => VhdxLayout.BatEntry(6, 5L * MiB + 4096));
    }

    [Fact]
    public void File_type_identifier_is_vhdxfile_and_a_utf16_creator()
    {
        var id = new byte[VhdxLayout.FileTypeIdentifierSize];
        VhdxLayout.WriteFileTypeIdentifier(id, "PbsRestore 1.2");
        Assert.Equal("vhdxfile"u8.ToArray(), id[..8]);
        Assert.Equal(0x7668647866696C65UL, BinaryPrimitives.ReadUInt64BigEndian(id)); // the spec's notation
        Assert.Equal("PbsRestore 1.2", Encoding.Unicode.GetString(id, 8, 28));
        Assert.Equal(0, id[8 + 28]);
        Assert.True(VhdxLayout.HasFileTypeSignature(id));
    }

    [Fact]
    public void Header_has_spec_fields_and_a_checksum_that_verifies()
    {
        var fw = Guid.NewGuid();
        var dw = Guid.NewGuid();
        var h = VhdxLayout.NewHeader(7, fw, dw);
        var bytes = new byte[VhdxHeader.Size];
        h.Write(bytes);
        Assert.Equal("head"u8.ToArray(), bytes[..4]);
        Assert.Equal(Crc32C.ComputeWithZeroField(bytes, 4), BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(4)));
        Assert.Equal(7UL, BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(8)));
        Assert.Equal(fw, new Guid(bytes.AsSpan(16, 16)));
        Assert.Equal(dw, new Guid(bytes.AsSpan(32, 16)));
        Assert.Equal(Guid.Empty, new Guid(bytes.AsSpan(48, 16)));        // LogGuid zero: no log
        Assert.Equal(0, BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(64))); // LogVersion
        Assert.Equal(1, BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(66))); // Version
        Assert.Equal((uint)MiB, BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(68)));
        Assert.Equal((ulong)MiB, BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(72)));
        Assert.True(bytes.AsSpan(80).IndexOfAnyExcept((byte)0) < 0);

        var parsed = VhdxHeader.TryParse(bytes);
        Assert.NotNull(parsed);
        Assert.Equal(h, parsed);
        bytes[3000] ^= 1;
        Assert.Null(VhdxHeader.TryParse(bytes));
    }

    [Fact]
    public void Current_header_is_the_valid_one_with_the_higher_sequence_number()
    {
        var layout = VhdxLayout.ForDisk(100 * MiB, 4 * MiB);
        var section = new byte[VhdxLayout.HeaderSectionSize];
        VhdxLayout.WriteFileTypeIdentifier(section, "t");
        layout.WriteRegionTable(section.AsSpan((int)VhdxLayout.RegionTable1Offset));
        layout.WriteRegionTable(section.AsSpan((int)VhdxLayout.RegionTable2Offset));
        VhdxLayout.NewHeader(9, Guid.NewGuid(), Guid.NewGuid()).Write(section.AsSpan((int)VhdxLayout.Header1Offset));
        VhdxLayout.NewHeader(8, Guid.NewGuid(), Guid.NewGuid()).Write(section.AsSpan((int)VhdxLayout.Header2Offset));
        var (h, slot, _) = VhdxLayout.ParseHeaderSection(section);
        Assert.Equal((9UL, 0), (h.SequenceNumber, slot));

        section[(int)VhdxLayout.Header1Offset + 100] ^= 1; // torn header 1: header 2 is current
        (h, slot, _) = VhdxLayout.ParseHeaderSection(section);
        Assert.Equal((8UL, 1), (h.SequenceNumber, slot));

        section[(int)VhdxLayout.RegionTable1Offset + 40] ^= 1; // damaged region table 1: the copy is used
        Assert.Equal(2, VhdxLayout.ParseHeaderSection(section).Regions.Count);

        section[(int)VhdxLayout.Header2Offset + 100] ^= 1;
        Assert.Equal("VhdxInvalid", Assert.Throws<PbsFormatException>(() => VhdxLayout.ParseHeaderSection(section)).ErrorId);
    }

    [Fact]
    public void Region_table_lists_bat_and_metadata_with_spec_guids_in_binary_form()
    {
        var layout = VhdxLayout.ForDisk(10L << 30, 32 * MiB);
        var t = new byte[VhdxLayout.RegionTableSize];
        layout.WriteRegionTable(t);
        Assert.Equal("regi"u8.ToArray(), t[..4]);
        Assert.Equal(Crc32C.ComputeWithZeroField(t, 4), BinaryPrimitives.ReadUInt32LittleEndian(t.AsSpan(4)));
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(t.AsSpan(8)));
        // GUIDs are stored as Windows writes them: the first three fields little-endian.
        Assert.Equal(Convert.FromHexString("6677C22D23F600429D64115E9BFD4A08"), t[16..32]);
        Assert.Equal((long)VhdxLayout.BatOffset, BinaryPrimitives.ReadInt64LittleEndian(t.AsSpan(32)));
        Assert.Equal((uint)layout.BatLength, BinaryPrimitives.ReadUInt32LittleEndian(t.AsSpan(40)));
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(t.AsSpan(44)));
        Assert.Equal(Convert.FromHexString("06A27C8B90479A4BB8FE575F050F886E"), t[48..64]);
        Assert.Equal((long)VhdxLayout.MetadataOffset, BinaryPrimitives.ReadInt64LittleEndian(t.AsSpan(64)));
        Assert.Equal(VhdxLayout.MetadataLength, BinaryPrimitives.ReadUInt32LittleEndian(t.AsSpan(72)));
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(t.AsSpan(76)));

        var regions = VhdxLayout.TryParseRegionTable(t)!;
        Assert.Equal([new VhdxRegion(VhdxLayout.BatRegionId, VhdxLayout.BatOffset, (uint)layout.BatLength, true),
            new VhdxRegion(VhdxLayout.MetadataRegionId, VhdxLayout.MetadataOffset, VhdxLayout.MetadataLength, true)], regions);
        t[60000] = 1; // the checksum covers the whole 64 KiB
        Assert.Null(VhdxLayout.TryParseRegionTable(t));
    }

    [Fact]
    public void Regions_and_log_do_not_overlap_and_are_MiB_aligned()
    {
        var layout = VhdxLayout.ForDisk(3L << 40, MiB);
        var objects = new (long Start, long Length)[]
        {
            (0, VhdxLayout.HeaderSectionSize), (VhdxLayout.LogOffset, VhdxLayout.LogLength),
            (VhdxLayout.MetadataOffset, VhdxLayout.MetadataLength), (VhdxLayout.BatOffset, layout.BatLength),
        };
        foreach (var (s, l) in objects) Assert.Equal((0L, 0L), (s % MiB, l % MiB));
        for (int i = 1; i < objects.Length; i++) Assert.Equal(objects[i - 1].Start + objects[i - 1].Length, objects[i].Start);
        Assert.Equal(VhdxLayout.BatOffset + layout.BatLength, layout.FirstPayloadOffset);
    }

    [Fact]
    public void Metadata_region_holds_the_five_required_items()
    {
        var layout = VhdxLayout.ForDisk(3158073, 4 * MiB);
        var diskId = Guid.NewGuid();
        var m = new byte[VhdxLayout.MetadataLength];
        layout.WriteMetadataRegion(m, diskId);
        Assert.Equal("metadata"u8.ToArray(), m[..8]);
        Assert.Equal(5, BinaryPrimitives.ReadUInt16LittleEndian(m.AsSpan(10)));
        var expected = new (Guid Id, int Length, uint Flags)[]
        {
            (new Guid("CAA16737-FA36-4D43-B3B6-33F0AA44E76B"), 8, 4),  // File Parameters: required, file metadata
            (new Guid("2FA54224-CD1B-4876-B211-5DBED83BF4B8"), 8, 6),  // Virtual Disk Size: required, virtual disk
            (new Guid("BECA12AB-B2E6-4523-93EF-C309E000C746"), 16, 6), // Virtual Disk ID
            (new Guid("8141BF1D-A96F-4709-BA47-F233A8FAAB5F"), 4, 6),  // Logical Sector Size
            (new Guid("CDA348C7-445D-4471-9CC9-E9885251C556"), 4, 6),  // Physical Sector Size
        };
        var spans = new List<(uint Offset, uint Length)>();
        for (int i = 0; i < expected.Length; i++)
        {
            var e = m.AsSpan(32 + 32 * i, 32);
            Assert.Equal(expected[i].Id, new Guid(e[..16]));
            uint offset = BinaryPrimitives.ReadUInt32LittleEndian(e[16..]), length = BinaryPrimitives.ReadUInt32LittleEndian(e[20..]);
            Assert.True(offset >= 64 * 1024);
            Assert.Equal((uint)expected[i].Length, length);
            Assert.Equal(expected[i].Flags, BinaryPrimitives.ReadUInt32LittleEndian(e[24..]));
            Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(e[28..]));
            spans.Add((offset, length));
        }
        spans.Sort();
        for (int i = 1; i < spans.Count; i++) Assert.True(spans[i].Offset >= spans[i - 1].Offset + spans[i - 1].Length, "metadata items overlap");

        var meta = VhdxLayout.ParseMetadataRegion(m);
        Assert.Equal(new VhdxMetadata(4 * MiB, false, false, 3158528, diskId, 512, 4096), meta);
    }

    [Fact]
    public void Metadata_with_an_unknown_required_item_is_refused()
    {
        var layout = VhdxLayout.ForDisk(MiB, MiB);
        var m = new byte[VhdxLayout.MetadataLength];
        layout.WriteMetadataRegion(m, Guid.NewGuid());
        Guid.NewGuid().TryWriteBytes(m.AsSpan(32 + 32 * 4)); // the physical sector size item becomes an unknown one
        Assert.Equal("VhdxInvalid", Assert.Throws<PbsFormatException>(() => VhdxLayout.ParseMetadataRegion(m)).ErrorId);
    }
}
