using System.Buffers.Binary;
using PbsRestore.Formats;
using static PbsRestore.Tests.Formats.FormatsTestSupport;

namespace PbsRestore.Tests.Formats;

public class DynamicIndexTests
{
    private static GoldenArchive Data =>
        GoldenManifest.Instance.Snapshot("ct/200").Archives.Single(a => a.IsDynamicIndex);

    private static void SetEnd(byte[] data, int entry, ulong end) =>
        BinaryPrimitives.WriteUInt64LittleEndian(data.AsSpan(4096 + entry * 40), end);

    [Fact]
    public void Golden_EntriesMatch()
    {
        var idx = DynamicIndex.Parse(GoldenManifest.Read(Data.Path), Data.Path);
        Assert.Equal(5, idx.Count);
        Assert.Equal(345211, idx.Size);
        Assert.Equal(0, idx.OffsetOf(0));
        for (int i = 0; i < idx.Count; i++)
        {
            Assert.Equal(Data.Chunks[i].Offset, idx.OffsetOf(i));
            Assert.Equal(Data.Chunks[i].Length, idx.LengthOf(i));
            Assert.Equal(Data.Chunks[i].Digest, idx.DigestAt(i).ToString());
        }
    }

    [Theory]
    [InlineData(1, 0)] // entry 1 ends where entry 0 ends: empty chunk
    [InlineData(1, -1)] // goes backwards
    [InlineData(4, -100000)]
    public void NonIncreasingOffsets_AreIndexOffsetsNotIncreasing(int entry, int delta)
    {
        var data = GoldenManifest.Read(Data.Path);
        ulong previousEnd = (ulong)Data.Chunks[entry - 1].End;
        SetEnd(data, entry, (ulong)((long)previousEnd + delta));
        var e = Assert.Throws<PbsFormatException>(() => DynamicIndex.Parse(data, "ct/200/data.didx"));
        Assert.Equal("IndexOffsetsNotIncreasing", e.ErrorId);
        Assert.Contains("ct/200/data.didx", e.Message);
    }

    [Fact]
    public void ZeroFirstEnd_IsIndexOffsetsNotIncreasing()
    {
        var data = GoldenManifest.Read(Data.Path);
        SetEnd(data, 0, 0);
        Assert.Equal("IndexOffsetsNotIncreasing", Assert.Throws<PbsFormatException>(() => DynamicIndex.Parse(data)).ErrorId);
    }

    [Fact]
    public void HugeChunk_IsIndexBadChunkSize()
    {
        var data = GoldenManifest.Read(Data.Path);
        SetEnd(data, 4, (ulong)Data.Chunks[3].End + (ulong)FileFormats.MaxBlobSize + 1);
        Assert.Equal("IndexBadChunkSize", Assert.Throws<PbsFormatException>(() => DynamicIndex.Parse(data)).ErrorId);
        var data2 = GoldenManifest.Read(Data.Path);
        SetEnd(data2, 0, ulong.MaxValue);
        Assert.Equal("IndexBadChunkSize", Assert.Throws<PbsFormatException>(() => DynamicIndex.Parse(data2)).ErrorId);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(39)]
    [InlineData(41)]
    public void PartialEntry_IsIndexTruncated(int cut)
    {
        var data = GoldenManifest.Read(Data.Path);
        var e = Assert.Throws<PbsFormatException>(() => DynamicIndex.Parse(data[..^cut], "data.didx"));
        Assert.Equal("IndexTruncated", e.ErrorId);
        Assert.Contains("data.didx", e.Message);
    }

    [Fact]
    public void WholeEntryMissing_ParsesButChangesSizeAndCsum()
    {
        // a dynamic index has no size field: only the manifest's size and csum can catch a lost last entry
        var data = GoldenManifest.Read(Data.Path);
        var idx = DynamicIndex.Parse(data[..^40]);
        Assert.Equal(4, idx.Count);
        Assert.NotEqual(Data.Size, idx.Size);
        Assert.NotEqual(Data.IndexCsum, HexLower(idx.ComputeCsum()));
    }

    [Fact]
    public void BadMagic_AndShortHeader_AreRejected()
    {
        var data = GoldenManifest.Read(Data.Path);
        Assert.Equal("IndexTruncated", Assert.Throws<PbsFormatException>(() => DynamicIndex.Parse(data[..100])).ErrorId);
        var fidx = GoldenManifest.Read(GoldenManifest.Instance.Snapshot("vm/100").Archives.First(a => a.IsFixedIndex).Path);
        Assert.Equal("IndexBadMagic", Assert.Throws<PbsFormatException>(() => DynamicIndex.Parse(fidx)).ErrorId);
    }

    [Fact]
    public void Build_Parse_RoundTrips()
    {
        var entries = new List<(long End, ChunkDigest Digest)>();
        long end = 0;
        var rng = new Random(5);
        for (int i = 0; i < 20; i++)
        {
            end += rng.Next(1, 300_000);
            entries.Add((end, ChunkDigest.Compute(BitConverter.GetBytes(i))));
        }
        var uuid = Guid.NewGuid();
        var ctime = DateTimeOffset.FromUnixTimeSeconds(1714558201);
        var bytes = DynamicIndex.Build(uuid, ctime, entries);
        Assert.Equal(4096 + 40 * entries.Count, bytes.Length);
        Assert.Equal(FileFormats.DynamicIndexMagic.ToArray(), bytes[..8]);
        Assert.All(bytes[64..4096], b => Assert.Equal(0, b));

        var idx = DynamicIndex.Parse(bytes);
        Assert.Equal(entries.Count, idx.Count);
        Assert.Equal(end, idx.Size);
        Assert.Equal(uuid, idx.Uuid);
        Assert.Equal(ctime, idx.CTime);
        long prev = 0;
        int max = 0;
        for (int i = 0; i < entries.Count; i++)
        {
            Assert.Equal(entries[i].Digest, idx.DigestAt(i));
            Assert.Equal(prev, idx.OffsetOf(i));
            Assert.Equal(entries[i].End - prev, idx.LengthOf(i));
            max = Math.Max(max, idx.LengthOf(i));
            prev = entries[i].End;
        }
        Assert.Equal(max, idx.MaxChunkSize);
        Assert.Equal(bytes[32..64], idx.ComputeCsum());
    }

    [Fact]
    public void Build_Empty_RoundTrips()
    {
        var idx = DynamicIndex.Parse(DynamicIndex.Build(Guid.Empty, DateTimeOffset.UnixEpoch, []));
        Assert.Equal(0, idx.Count);
        Assert.Equal(0, idx.Size);
    }

    [Fact]
    public void Build_ReproducesTheGoldenFile()
    {
        var data = GoldenManifest.Read(Data.Path);
        var idx = DynamicIndex.Parse(data);
        var rebuilt = DynamicIndex.Build(idx.Uuid, idx.CTime,
            Enumerable.Range(0, idx.Count).Select(i => (idx.OffsetOf(i) + idx.LengthOf(i), idx.DigestAt(i))).ToList());
        Assert.Equal(data, rebuilt);
    }
}
