using System.Security.Cryptography;
using PbsRestore.Formats;
using static PbsRestore.Tests.Formats.FormatsTestSupport;

namespace PbsRestore.Tests.Formats;

/// <summary>Every golden archive rebuilt purely in memory from its index (or blob) and the chunk store.</summary>
public class GoldenArchivesTests
{
    public static TheoryData<string> IndexPaths()
    {
        var data = new TheoryData<string>();
        foreach (var (_, a) in GoldenManifest.Instance.AllArchives().Where(x => !x.Archive.IsBlob)) data.Add(a.Path);
        return data;
    }

    public static TheoryData<string> BlobPaths()
    {
        var data = new TheoryData<string>();
        foreach (var (_, a) in GoldenManifest.Instance.AllArchives().Where(x => x.Archive.IsBlob)) data.Add(a.Path);
        return data;
    }

    private static (GoldenSnapshot Snapshot, GoldenArchive Archive) Find(string path) =>
        GoldenManifest.Instance.AllArchives().Single(x => x.Archive.Path == path);

    private static string ChunkPath(ChunkDigest d)
    {
        var hex = d.ToString();
        return $"datastore/.chunks/{hex[..4]}/{hex}";
    }

    [Theory]
    [MemberData(nameof(IndexPaths))]
    public void Index_ReconstructsThePlaintext(string path)
    {
        var (snapshot, a) = Find(path);
        var data = GoldenManifest.Read(a.Path);
        Assert.Equal(a.FileSize, data.Length);
        IChunkIndex index = a.IsFixedIndex ? FixedIndex.Parse(data, a.Path) : DynamicIndex.Parse(data, a.Path);

        Assert.Equal(a.Size, index.Size);
        Assert.Equal(a.PlaintextSize, index.Size);
        Assert.Equal(a.ChunkCount, index.Count);
        Assert.Equal(a.IndexCsum, HexLower(index.ComputeCsum()));
        if (index is FixedIndex f)
        {
            Assert.Equal(a.ChunkSize, f.ChunkSize);
            Assert.Equal(a.ChunkSize, f.MaxChunkSize);
            Assert.Equal(a.UuidString, f.Uuid.ToString());
            Assert.Equal(a.CTime, f.CTime.ToUnixTimeSeconds());
            Assert.Equal(a.IndexCsum, HexLower(f.HeaderCsum));
        }
        else
        {
            var d = (DynamicIndex)index;
            Assert.Equal(a.UuidString, d.Uuid.ToString());
            Assert.Equal(a.CTime, d.CTime.ToUnixTimeSeconds());
            Assert.Equal(a.Chunks.Max(c => c.Length), d.MaxChunkSize);
        }

        var key = a.Encrypted == true ? ScryptKey : null;
        Assert.Equal(snapshot.Encrypted, key is not null);
        int chunkSize = index is FixedIndex fi ? fi.ChunkSize : 0;
        var zero = chunkSize > 0 ? ChunkVerifier.ZeroChunkDigest(chunkSize, key) : default;

        var image = new byte[index.Size];
        using var decoder = new BlobDecoder(key, index.MaxChunkSize);
        var buffer = new byte[index.MaxChunkSize];
        int zeros = 0;
        for (int i = 0; i < index.Count; i++)
        {
            var expected = a.Chunks[i];
            var digest = index.DigestAt(i);
            Assert.Equal(expected.Index, i);
            Assert.Equal(expected.Digest, digest.ToString());
            Assert.Equal(expected.Offset, index.OffsetOf(i));
            Assert.Equal(expected.Length, index.LengthOf(i));
            Assert.Equal(expected.End, index.OffsetOf(i) + index.LengthOf(i));
            Assert.Equal(expected.IsZero, chunkSize > 0 && digest == zero);
            if (expected.IsZero) zeros++;

            var raw = GoldenManifest.Read(ChunkPath(digest));
            Assert.Equal(key is not null, DataBlob.IsEncrypted(DataBlob.GetKind(raw)));
            int n = decoder.Decode(raw, buffer);
            Assert.Equal(index.LengthOf(i), n);
            Assert.Equal(digest, ChunkVerifier.ComputeDigest(buffer.AsSpan(0, n), key));
            buffer.AsSpan(0, n).CopyTo(image.AsSpan((int)index.OffsetOf(i)));
        }
        Assert.Equal(a.ZeroChunkCount ?? 0, zeros);
        Assert.Equal(a.PlaintextSha256, Sha256Hex(image));
        Assert.Equal(a.PlaintextSha256, Sha256Hex(GoldenManifest.Read(a.PlaintextPath)));
    }

    [Theory]
    [MemberData(nameof(BlobPaths))]
    public void Blob_DecodesToThePlaintext(string path)
    {
        var (snapshot, a) = Find(path);
        var raw = GoldenManifest.Read(a.Path);
        Assert.Equal(a.EncodedSize, raw.Length);
        Assert.Equal(a.FileSha256, Sha256Hex(raw));
        var kind = DataBlob.GetKind(raw);
        Assert.Equal(ParseKind(a.BlobKind!), kind);
        Assert.Equal(Convert.ToUInt32(a.Crc32, 16), DataBlob.StoredCrc(raw));
        if (a.Iv is not null) Assert.Equal(a.Iv, HexLower(raw.AsSpan(12, 16)));
        if (a.Tag is not null) Assert.Equal(a.Tag, HexLower(raw.AsSpan(28, 16)));

        using var decoder = new BlobDecoder(snapshot.Encrypted ? ScryptKey : null, 1 << 20);
        var plain = decoder.DecodeToArray(raw);
        Assert.Equal(a.PlaintextSize, plain.Length);
        Assert.Equal(a.PlaintextSha256, Sha256Hex(plain));
        Assert.Equal(GoldenManifest.Read(a.PlaintextPath), plain);

        // the manifest's csum of a blob is SHA-256 of the raw file
        if (a.InManifest == true)
        {
            var manifestBlob = GoldenManifest.Read(snapshot.Manifest.Path);
            using var plainDecoder = new BlobDecoder(null, BackupManifest.MaxJsonSize);
            var m = BackupManifest.Parse(plainDecoder.DecodeToArray(manifestBlob));
            var entry = m.FindFile(a.Name)!;
            Assert.Equal(entry.CsumHex, HexLower(SHA256.HashData(raw)));
            Assert.Equal(entry.Size, raw.Length);
        }
    }

    [Fact]
    public void GoldenSet_HasTheExpectedArchives()
    {
        var all = GoldenManifest.Instance.AllArchives().ToList();
        Assert.Equal(4, GoldenManifest.Instance.Snapshots.Count);
        Assert.Equal(4, all.Count(x => x.Archive.IsFixedIndex));
        Assert.Equal(1, all.Count(x => x.Archive.IsDynamicIndex));
        Assert.Equal(5, all.Count(x => x.Archive.IsBlob));
    }
}
