using System.Buffers.Binary;
using PbsRestore.DiskImages;

namespace PbsRestore.Tests.Formats.DiskImages;

public class VhdFooterTests
{
    private const long MiB = 1 << 20;

    [Theory]
    // Worked by hand through the spec's CHS algorithm (sectors of 512 bytes).
    [InlineData(1, 30, 4, 17)]
    [InlineData(4, 120, 4, 17)]
    [InlineData(20, 602, 4, 17)]
    [InlineData(100, 1003, 12, 17)]
    [InlineData(1024, 2080, 16, 63)]
    [InlineData(2048, 4161, 16, 63)]
    [InlineData(40960, 20560, 16, 255)]
    [InlineData(130048, 65278, 16, 255)]
    [InlineData(131072, 65535, 16, 255)]   // past 65535 × 16 × 255 sectors: the maximum geometry
    [InlineData(1048576, 65535, 16, 255)]
    public void Chs_geometry_follows_the_spec_algorithm(long mib, int cylinders, int heads, int sectorsPerTrack)
    {
        Assert.Equal(((ushort)cylinders, (byte)heads, (byte)sectorsPerTrack), VhdFooter.ComputeGeometry(mib * MiB / 512));
    }

    [Fact]
    public void Chs_geometry_at_the_algorithm_branch_points()
    {
        // 65535 × 16 × 63 sectors is where 255 sectors per track start.
        Assert.Equal(((ushort)16191, (byte)16, (byte)255), VhdFooter.ComputeGeometry(65535L * 16 * 63));
        // One sector less: 17 and 31 sectors per track overflow 16 heads × 1024 cylinders, 63 fits.
        Assert.Equal(((ushort)65534, (byte)16, (byte)63), VhdFooter.ComputeGeometry(65535L * 16 * 63 - 1));
        Assert.Equal(((ushort)0, (byte)4, (byte)17), VhdFooter.ComputeGeometry(0));
    }

    [Theory]
    [InlineData(0, 0)]
    [InlineData(1, MiB)]
    [InlineData(MiB, MiB)]
    [InlineData(3158073, 4 * MiB)]
    [InlineData(2L << 30, 2L << 30)]
    [InlineData((2L << 30) + 1, (2L << 30) + MiB)]
    public void Size_rounds_up_to_a_whole_MiB(long requested, long expected)
    {
        Assert.Equal(expected, VhdFooter.RoundSize(requested));
    }

    [Fact]
    public void Footer_has_the_fixed_disk_fields_big_endian_and_a_valid_checksum()
    {
        var id = Guid.Parse("00112233-4455-6677-8899-aabbccddeeff");
        var created = new DateTimeOffset(2024, 5, 1, 10, 0, 0, TimeSpan.Zero);
        var footer = VhdFooter.ForFixedDisk(2L << 30, created, id);
        var f = new byte[VhdFooter.Size];
        footer.Write(f);
        Assert.Equal("conectix"u8.ToArray(), f[..8]);
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32BigEndian(f.AsSpan(8)));            // features: reserved bit
        Assert.Equal(0x00010000u, BinaryPrimitives.ReadUInt32BigEndian(f.AsSpan(12)));  // version 1.0
        Assert.Equal(ulong.MaxValue, BinaryPrimitives.ReadUInt64BigEndian(f.AsSpan(16))); // data offset: fixed disk
        Assert.Equal(767872800u, BinaryPrimitives.ReadUInt32BigEndian(f.AsSpan(24)));  // seconds since 2000-01-01
        Assert.Equal("win "u8.ToArray(), f[28..32]);
        Assert.Equal("Wi2k"u8.ToArray(), f[36..40]);
        Assert.Equal(2UL << 30, BinaryPrimitives.ReadUInt64BigEndian(f.AsSpan(40)));   // original size
        Assert.Equal(2UL << 30, BinaryPrimitives.ReadUInt64BigEndian(f.AsSpan(48)));   // current size
        Assert.Equal(4161, BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(56)));
        Assert.Equal((16, 63), (f[58], f[59]));
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32BigEndian(f.AsSpan(60)));           // disk type: fixed
        Assert.Equal(Convert.FromHexString("00112233445566778899AABBCCDDEEFF"), f[68..84]);
        Assert.Equal(0, f[84]);                                                          // saved state
        Assert.True(f.AsSpan(85).IndexOfAnyExcept((byte)0) < 0);

        uint sum = 0;
        for (int i = 0; i < 512; i++) if (i is < 64 or >= 68) sum += f[i];
        Assert.Equal(~sum, BinaryPrimitives.ReadUInt32BigEndian(f.AsSpan(64)));

        Assert.Equal(footer, VhdFooter.TryParseFixed(f));
        f[100] = 1;
        Assert.Null(VhdFooter.TryParseFixed(f));
    }

    [Fact]
    public void Time_stamp_counts_from_2000()
    {
        Assert.Equal(0u, VhdFooter.TimeStampOf(new DateTimeOffset(2000, 1, 1, 0, 0, 0, TimeSpan.Zero)));
        Assert.Equal(86400u, VhdFooter.TimeStampOf(new DateTimeOffset(2000, 1, 2, 1, 0, 0, TimeSpan.FromHours(1))));
        Assert.Equal(0u, VhdFooter.TimeStampOf(new DateTimeOffset(1999, 1, 1, 0, 0, 0, TimeSpan.Zero)));
    }
}
