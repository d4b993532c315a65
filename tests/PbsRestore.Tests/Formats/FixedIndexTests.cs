using System.Buffers.Binary;
using PbsRestore.Formats;
using static PbsRestore.Tests.Formats.FormatsTestSupport;

namespace PbsRestore.Tests.Formats;

public class FixedIndexTests
{
    private static GoldenArchive Scsi0 =>
        GoldenManifest.Instance.Snapshot("vm/100").Archives.Single(a => a.Name == "drive-scsi0.img.fidx");

    [Theory]
    [InlineData(1)]
    [InlineData(31)]
    [InlineData(32)]
    [InlineData(100)]
    public void Truncated_IsIndexSizeMismatch_AndNamesTheSource(int cut)
    {
        var data = GoldenManifest.Read(Scsi0.Path);
        var e = Assert.Throws<PbsFormatException>(() => FixedIndex.Parse(data[..^cut], "vm/100/drive-scsi0.img.fidx"));
        Assert.Equal("IndexSizeMismatch", e.ErrorId);
        Assert.Contains("vm/100/drive-scsi0.img.fidx", e.Message);
        Assert.Contains((data.Length - cut).ToString(), e.Message);
        Assert.Equal(PbsErrorKind.InvalidData, e.Kind);
    }

    [Fact]
    public void TrailingBytes_IsIndexSizeMismatch()
    {
        var data = GoldenManifest.Read(Scsi0.Path);
        Assert.Equal("IndexSizeMismatch", Assert.Throws<PbsFormatException>(() => FixedIndex.Parse([.. data, .. new byte[32]])).ErrorId);
        Assert.Equal("IndexSizeMismatch", Assert.Throws<PbsFormatException>(() => FixedIndex.Parse([.. data, 0])).ErrorId);
    }

    [Fact]
    public void ShorterThanHeader_IsIndexTruncated()
    {
        var data = GoldenManifest.Read(Scsi0.Path);
        var e = Assert.Throws<PbsFormatException>(() => FixedIndex.Parse(data[..4095], "x.fidx"));
        Assert.Equal("IndexTruncated", e.ErrorId);
        Assert.Contains("x.fidx", e.Message);
        Assert.Equal("IndexTruncated", Assert.Throws<PbsFormatException>(() => FixedIndex.Parse([])).ErrorId);
    }

    [Fact]
    public void BadMagic_IsIndexBadMagic()
    {
        var data = GoldenManifest.Read(Scsi0.Path);
        data[3] ^= 1;
        Assert.Equal("IndexBadMagic", Assert.Throws<PbsFormatException>(() => FixedIndex.Parse(data)).ErrorId);
        // a dynamic index is not a fixed one
        var didx = GoldenManifest.Read(GoldenManifest.Instance.Snapshot("ct/200").Archives.Single(a => a.IsDynamicIndex).Path);
        Assert.Equal("IndexBadMagic", Assert.Throws<PbsFormatException>(() => FixedIndex.Parse(didx)).ErrorId);
    }

    [Theory]
    [InlineData(3000UL)]
    [InlineData(1UL << 40)]
    [InlineData(0UL)]
    [InlineData(1UL)]
    [InlineData(256UL)]
    [InlineData(65537UL)]
    [InlineData(128UL << 20)]
    [InlineData(ulong.MaxValue)]
    [InlineData(1UL << 63)]
    public void BadChunkSize_IsIndexBadChunkSize(ulong chunkSize)
    {
        var data = GoldenManifest.Read(Scsi0.Path);
        BinaryPrimitives.WriteUInt64LittleEndian(data.AsSpan(72), chunkSize);
        var e = Assert.Throws<PbsFormatException>(() => FixedIndex.Parse(data, "bad.fidx"));
        Assert.Equal("IndexBadChunkSize", e.ErrorId);
        Assert.Contains("bad.fidx", e.Message);
    }

    [Theory]
    [InlineData(ulong.MaxValue)]
    [InlineData((1UL << 50) + 1)]
    public void AbsurdSize_IsRejected(ulong size)
    {
        var data = GoldenManifest.Read(Scsi0.Path);
        BinaryPrimitives.WriteUInt64LittleEndian(data.AsSpan(64), size);
        Assert.Equal("IndexBadSize", Assert.Throws<PbsFormatException>(() => FixedIndex.Parse(data)).ErrorId);
    }

    [Fact]
    public void SizeDisagreeingWithLength_IsIndexSizeMismatch()
    {
        var data = GoldenManifest.Read(Scsi0.Path);
        BinaryPrimitives.WriteUInt64LittleEndian(data.AsSpan(64), (ulong)Scsi0.Size!.Value + 65536);
        Assert.Equal("IndexSizeMismatch", Assert.Throws<PbsFormatException>(() => FixedIndex.Parse(data)).ErrorId);
        // a smaller size within the same last chunk is consistent and parses
        BinaryPrimitives.WriteUInt64LittleEndian(data.AsSpan(64), (ulong)Scsi0.Size!.Value - 1);
        Assert.Equal(Scsi0.Size.Value - 1, FixedIndex.Parse(data).Size);
    }

    [Fact]
    public void Golden_LastChunkIsPartial()
    {
        var idx = FixedIndex.Parse(GoldenManifest.Read(Scsi0.Path));
        Assert.Equal(3 * 1024 * 1024 + 12345, idx.Size);
        Assert.Equal(49, idx.Count);
        Assert.Equal(12345, idx.LengthOf(48));
        Assert.Equal(48L * 65536, idx.OffsetOf(48));
        Assert.Equal(65536, idx.LengthOf(0));
    }

    [Fact]
    public void ChangingADigest_ChangesComputeCsumButNotHeaderCsum()
    {
        var data = GoldenManifest.Read(Scsi0.Path);
        var before = FixedIndex.Parse((byte[])data.Clone());
        data[4096 + 32 * 5] ^= 1;
        var after = FixedIndex.Parse(data);
        Assert.NotEqual(before.ComputeCsum(), after.ComputeCsum());
        Assert.Equal(before.HeaderCsum.ToArray(), after.HeaderCsum.ToArray());
        Assert.Equal(Scsi0.IndexCsum, HexLower(after.HeaderCsum));
    }

    [Theory]
    [InlineData(0L, 4096)]
    [InlineData(1L, 4096)]
    [InlineData(4096L, 4096)]
    [InlineData(4097L, 4096)]
    [InlineData(3L * 65536 + 7, 65536)]
    [InlineData(8L << 20, 4 << 20)]
    public void Build_Parse_RoundTrips(long size, int chunkSize)
    {
        int count = (int)((size + chunkSize - 1) / chunkSize);
        var digests = Enumerable.Range(0, count).Select(i => ChunkDigest.Compute(BitConverter.GetBytes(i))).ToList();
        var uuid = Guid.Parse("6cd487b4-bb7d-4733-99be-3627e87fa237");
        var ctime = DateTimeOffset.FromUnixTimeSeconds(1714557601);
        var bytes = FixedIndex.Build(uuid, ctime, size, chunkSize, digests);
        Assert.Equal(4096 + 32 * count, bytes.Length);
        Assert.Equal(FileFormats.FixedIndexMagic.ToArray(), bytes[..8]);
        Assert.Equal(Convert.FromHexString("6cd487b4bb7d473399be3627e87fa237"), bytes[8..24]);
        Assert.All(bytes[80..4096], b => Assert.Equal(0, b));

        var idx = FixedIndex.Parse(bytes, "built.fidx");
        Assert.Equal(size, idx.Size);
        Assert.Equal(chunkSize, idx.ChunkSize);
        Assert.Equal(count, idx.Count);
        Assert.Equal(uuid, idx.Uuid);
        Assert.Equal(ctime, idx.CTime);
        Assert.Equal(digests, Enumerable.Range(0, count).Select(idx.DigestAt));
        Assert.Equal(idx.ComputeCsum(), idx.HeaderCsum.ToArray());
        long total = 0;
        for (int i = 0; i < count; i++)
        {
            Assert.Equal(total, idx.OffsetOf(i));
            total += idx.LengthOf(i);
        }
        Assert.Equal(size, total);
    }

    [Fact]
    public void Build_ReproducesTheGoldenFile()
    {
        var data = GoldenManifest.Read(Scsi0.Path);
        var idx = FixedIndex.Parse(data);
        var rebuilt = FixedIndex.Build(idx.Uuid, idx.CTime, idx.Size, idx.ChunkSize,
            Enumerable.Range(0, idx.Count).Select(idx.DigestAt).ToList());
        Assert.Equal(data, rebuilt);
    }

    [Fact]
    public void Build_WrongDigestCount_Throws()
    {
        Assert.Throws<ArgumentException>(() => FixedIndex.Build(Guid.Empty, default, 4097, 4096, [default]));
    }
}
