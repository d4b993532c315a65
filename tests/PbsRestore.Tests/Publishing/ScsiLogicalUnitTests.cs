using System.Buffers.Binary;
using PbsRestore.Publishing;
using PbsRestore.Publishing.Iscsi;

namespace PbsRestore.Tests.Publishing;

public class ScsiLogicalUnitTests
{
    private static readonly int[] Luns = [0];

    private static ScsiLogicalUnit Unit(IBlockDevice device) => new(new IscsiLun(0, "disk", device), "iqn.2024-01.org.pbsrestore:test");

    private static async Task<ScsiPlan> Run(ScsiLogicalUnit u, params byte[] cdb)
    {
        var full = new byte[16];
        cdb.CopyTo(full, 0);
        return await u.PrepareAsync(full, Luns, default);
    }

    [Fact]
    public async Task Inquiry_reads_capacity_and_vpd_pages_describe_the_disk()
    {
        var u = Unit(new MemoryBlockDevice(8 << 20));
        var std = (await Run(u, 0x12, 0, 0, 0, 255)).DataIn!;
        Assert.Equal(0x00, std[0]); // direct access block device
        Assert.Equal("PBSRSTOR", System.Text.Encoding.ASCII.GetString(std, 8, 8));
        var cap10 = (await Run(u, 0x25)).DataIn!;
        Assert.Equal((8u << 20) / 512 - 1, BinaryPrimitives.ReadUInt32BigEndian(cap10));
        Assert.Equal(512u, BinaryPrimitives.ReadUInt32BigEndian(cap10.AsSpan(4)));
        var cap16 = (await Run(u, 0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32)).DataIn!;
        Assert.Equal((8UL << 20) / 512 - 1, BinaryPrimitives.ReadUInt64BigEndian(cap16));
        Assert.Equal(0xC0, cap16[14] & 0xC0); // LBPME + LBPRZ
        var pages = (await Run(u, 0x12, 1, 0x00, 0, 255)).DataIn!;
        Assert.Equal(new byte[] { 0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2 }, pages[4..]);
        foreach (byte page in new byte[] { 0x80, 0x83, 0xB0, 0xB1, 0xB2 })
            Assert.Equal(page, (await Run(u, 0x12, 1, page, 0, 255)).DataIn![1]);
        var limits = (await Run(u, 0x12, 1, 0xB0, 0, 255)).DataIn!;
        Assert.Equal((uint)(ScsiLogicalUnit.MaxTransferBytes / 512), BinaryPrimitives.ReadUInt32BigEndian(limits.AsSpan(8)));
        Assert.Equal(Sense.InvalidFieldInCdb, (await Run(u, 0x12, 1, 0x99, 0, 255)).Sense);
        Assert.Equal(5, (await Run(u, 0x12, 0, 0, 0, 5)).DataIn!.Length); // allocation length honoured
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Mode_sense_reports_write_protect_from_the_device(bool readOnly)
    {
        var u = Unit(new MemoryBlockDevice(1 << 20, readOnly: readOnly));
        var six = (await Run(u, 0x1A, 0, 0x3F, 0, 255)).DataIn!;
        Assert.Equal(readOnly, (six[2] & 0x80) != 0);
        Assert.Equal(six.Length - 1, six[0]);
        var ten = (await Run(u, 0x5A, 0, 0x08, 0, 0, 0, 0, 0, 255)).DataIn!;
        Assert.Equal(readOnly, (ten[3] & 0x80) != 0);
        Assert.Equal(0x08, ten[8 + 8]); // block descriptor then the caching page
        Assert.Equal(Sense.SavingParametersNotSupported, (await Run(u, 0x1A, 0, 0xC8, 0, 255)).Sense);
        Assert.Equal(Sense.InvalidFieldInCdb, (await Run(u, 0x1A, 0, 0x19, 0, 255)).Sense);
    }

    [Fact]
    public async Task Reads_and_writes_are_checked_against_the_end_of_the_disk()
    {
        var u = Unit(new MemoryBlockDevice(1 << 20));
        long blocks = (1 << 20) / 512;
        var read = await Run(u, 0x28, 0, 0, 0, 0x07, 0xFF, 0, 0, 1); // READ(10) LBA 2047, 1 block
        Assert.Equal(PlanKind.Read, read.Kind);
        Assert.Equal((blocks - 1) * 512, read.Offset);
        Assert.Equal(512, read.Length);
        Assert.Equal(Sense.LbaOutOfRange, (await Run(u, 0x28, 0, 0, 0, 0x07, 0xFF, 0, 0, 2)).Sense);
        Assert.Equal(Sense.LbaOutOfRange, (await Run(u, 0x88, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 1)).Sense);
        Assert.Equal(Sense.LbaOutOfRange, (await Run(u, 0x2A, 0, 0, 0, 0x08, 0x00, 0, 0, 1)).Sense);
        var six = await Run(u, 0x08, 0, 0, 0, 0); // READ(6) with 0 blocks means 256
        Assert.Equal(256 * 512, six.Length);
        Assert.Equal(Sense.InvalidFieldInCdb, (await Run(u, 0x28, 0x20, 0, 0, 0, 0, 0, 0, 1)).Sense); // RDPROTECT
        Assert.Equal(PlanKind.Done, (await Run(u, 0x28, 0, 0, 0, 0, 0, 0, 0, 0)).Kind);               // 0 blocks: GOOD
    }

    [Fact]
    public async Task A_read_only_disk_refuses_writes_and_unmap_with_data_protect()
    {
        var u = Unit(new MemoryBlockDevice(1 << 20, readOnly: true));
        Assert.Equal(Sense.WriteProtected, (await Run(u, 0x2A, 0, 0, 0, 0, 0, 0, 0, 1)).Sense);
        Assert.Equal(Sense.WriteProtected, (await Run(u, 0x8A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1)).Sense);
        Assert.Equal(Sense.WriteProtected, (await Run(u, 0x42, 0, 0, 0, 0, 0, 0, 0, 24)).Sense);
        Assert.Equal(Sense.DataProtect, Sense.WriteProtected.Key);
    }

    [Theory]
    [InlineData(0xA3)] // MAINTENANCE IN
    [InlineData(0x5E)] // PERSISTENT RESERVE IN
    [InlineData(0xFF)]
    [InlineData(0x41)] // WRITE SAME (10)
    public async Task Anything_else_is_an_invalid_operation_code(byte opcode)
    {
        var plan = await Run(Unit(new MemoryBlockDevice(1 << 20)), opcode);
        Assert.Equal(Sense.InvalidOpcode, plan.Sense);
        var s = plan.Sense!.Value.ToFixedFormat();
        Assert.Equal((0x70, 0x05, 0x20, 0x00), (s[0], s[2], s[12], s[13]));
    }

    [Fact]
    public async Task Unmap_zeroes_the_ranges_and_checks_them()
    {
        var dev = new MemoryBlockDevice(1 << 20, contents: Enumerable.Repeat((byte)0xAB, 1 << 20).ToArray());
        var u = Unit(dev);
        var cdb = new byte[16];
        cdb[0] = 0x42; cdb[8] = 24;
        Assert.Equal(PlanKind.NeedsDataOut, (await u.PrepareAsync(cdb, Luns, default)).Kind);
        var list = new byte[24];
        BinaryPrimitives.WriteUInt16BigEndian(list, 22);
        BinaryPrimitives.WriteUInt16BigEndian(list.AsSpan(2), 16);
        BinaryPrimitives.WriteUInt64BigEndian(list.AsSpan(8), 4);
        BinaryPrimitives.WriteUInt32BigEndian(list.AsSpan(16), 2);
        Assert.Null((await u.CompleteDataOutAsync(cdb, list, default)).Sense);
        Assert.True(dev.Contents[(4 * 512)..(6 * 512)].ToArray().All(b => b == 0));
        Assert.Equal(0xAB, dev.Contents[6 * 512]);
        Assert.Equal(0xAB, dev.Contents[4 * 512 - 1]);
        BinaryPrimitives.WriteUInt64BigEndian(list.AsSpan(8), 2047);
        Assert.Equal(Sense.LbaOutOfRange, (await u.CompleteDataOutAsync(cdb, list, default)).Sense);
    }

    private sealed class FailingDevice(BlockDeviceError error) : IBlockDevice
    {
        public long Length => 1 << 20;
        public int BlockSize => 512;
        public bool ReadOnly => false;
        public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct) => throw new BlockDeviceException(error, "chunk 0123 failed its digest");
        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken ct) => throw new BlockDeviceException(error, "no");
        public ValueTask FlushAsync(CancellationToken ct) => throw new BlockDeviceException(error, "no");
        public ValueTask UnmapAsync(long offset, long length, CancellationToken ct) => throw new BlockDeviceException(error, "no");
    }

    [Theory]
    [InlineData(BlockDeviceError.Medium, 0x03, 0x11, 0x0C)]
    [InlineData(BlockDeviceError.NotReady, 0x02, 0x04, 0x04)]
    [InlineData(BlockDeviceError.WriteProtected, 0x07, 0x27, 0x27)]
    [InlineData(BlockDeviceError.OutOfRange, 0x05, 0x21, 0x21)]
    public async Task Block_device_errors_map_to_sense_data(BlockDeviceError error, byte key, byte readAsc, byte writeAsc)
    {
        var u = Unit(new FailingDevice(error));
        var verify = await Run(u, 0x2F, 0, 0, 0, 0, 0, 0, 0, 1); // VERIFY(10) reads the block
        Assert.Equal((key, readAsc), (verify.Sense!.Value.Key, verify.Sense.Value.Asc));
        var sync = await Run(u, 0x35);
        Assert.Equal((key, writeAsc), (sync.Sense!.Value.Key, sync.Sense.Value.Asc));
    }

    [Fact]
    public async Task Get_lba_status_reports_the_rest_of_the_disk_as_mapped_or_unknown()
    {
        var u = Unit(new MemoryBlockDevice(1 << 20));
        var d = (await Run(u, 0x9E, 0x12, 0, 0, 0, 0, 0, 0, 0, 100, 0, 0, 0, 24)).DataIn!;
        Assert.Equal(100UL, BinaryPrimitives.ReadUInt64BigEndian(d.AsSpan(8)));
        Assert.Equal(2048u - 100, BinaryPrimitives.ReadUInt32BigEndian(d.AsSpan(16)));
        Assert.Equal(0, d[20]);
        Assert.Equal(Sense.LbaOutOfRange, (await Run(u, 0x9E, 0x12, 0, 0, 0, 0, 0, 0, 0x08, 0, 0, 0, 0, 24)).Sense);
    }

    /// <summary>A memory disk whose provisioning state is given per byte range (zero runs deallocated).</summary>
    private sealed class ProvisionedDevice(long length, (long Start, long End)[] deallocated) : IBlockDevice
    {
        private readonly MemoryBlockDevice _inner = new(length);
        public long Length => _inner.Length;
        public int BlockSize => _inner.BlockSize;
        public bool ReadOnly => false;
        public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct) => _inner.ReadAsync(offset, buffer, ct);
        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken ct) => _inner.WriteAsync(offset, data, ct);
        public ValueTask FlushAsync(CancellationToken ct) => ValueTask.CompletedTask;
        public ValueTask UnmapAsync(long offset, long length, CancellationToken ct) => ValueTask.CompletedTask;

        public BlockExtent ExtentAt(long offset)
        {
            foreach (var (start, end) in deallocated)
                if (offset >= start && offset < end) return new(end - offset, true);
            long next = deallocated.Where(r => r.Start > offset).Select(r => r.Start).DefaultIfEmpty(Length).Min();
            return new(next - offset, false);
        }
    }

    [Fact]
    public async Task Get_lba_status_reports_runs_of_mapped_and_deallocated_blocks_as_the_allocation_length_allows()
    {
        // 1 MiB disk (2048 blocks): blocks 0-99 mapped, 100-299 deallocated, 300-1000 mapped (a 300-byte ragged piece
        // of a deallocated range inside block 1000 counts as mapped), 1001-2047 deallocated.
        var u = Unit(new ProvisionedDevice(1 << 20, [(100 * 512, 300 * 512), (1000 * 512 + 212, 1001 * 512), (1001 * 512, 1 << 20)]));
        var d = (await Run(u, 0x9E, 0x12, 0, 0, 0, 0, 0, 0, 0, 50, 0, 0, 1, 0)).DataIn!;
        Assert.Equal(8 + 4 * 16 - 4, (int)BinaryPrimitives.ReadUInt32BigEndian(d));
        var runs = Enumerable.Range(0, 4).Select(i => (
            Lba: BinaryPrimitives.ReadUInt64BigEndian(d.AsSpan(8 + 16 * i)),
            Blocks: BinaryPrimitives.ReadUInt32BigEndian(d.AsSpan(16 + 16 * i)),
            Status: d[20 + 16 * i])).ToArray();
        Assert.Equal([(50UL, 50u, (byte)0), (100UL, 200u, (byte)1), (300UL, 701u, (byte)0), (1001UL, 1047u, (byte)1)], runs);

        // An allocation length for one descriptor gets the first run only.
        var one = (await Run(u, 0x9E, 0x12, 0, 0, 0, 0, 0, 0, 0, 150, 0, 0, 0, 24)).DataIn!;
        Assert.Equal(24, one.Length);
        Assert.Equal((150UL, 150u, (byte)1), (BinaryPrimitives.ReadUInt64BigEndian(one.AsSpan(8)), BinaryPrimitives.ReadUInt32BigEndian(one.AsSpan(16)), one[20]));
    }

    [Fact]
    public async Task Report_luns_and_missing_luns()
    {
        var d = (await Run(Unit(new MemoryBlockDevice(1 << 20)), 0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0)).DataIn!;
        Assert.Equal(8u, BinaryPrimitives.ReadUInt32BigEndian(d));
        var cdb = new byte[16];
        cdb[0] = 0x12; cdb[4] = 36;
        Assert.Equal(0x7F, ScsiLogicalUnit.ForMissingLun(cdb, Luns).DataIn![0]); // peripheral qualifier 3
        cdb[0] = 0x28;
        Assert.Equal(Sense.LunNotSupported, ScsiLogicalUnit.ForMissingLun(cdb, Luns).Sense);
    }
}
