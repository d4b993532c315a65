using System.Security.Cryptography;
using System.Text;
using PbsRestore.Formats;

namespace PbsRestore.Tests.Formats;

public class FileFormatsTests
{
    private static byte[] Magic(string text) => SHA256.HashData(Encoding.UTF8.GetBytes(text))[..8];

    [Fact]
    public void UncompressedBlobMagic_IsSha256OfItsText() =>
        Assert.Equal(Magic("Proxmox Backup uncompressed blob v1.0"), FileFormats.UncompressedBlobMagic.ToArray());

    [Fact]
    public void CompressedBlobMagic_IsSha256OfItsText() =>
        Assert.Equal(Magic("Proxmox Backup zstd compressed blob v1.0"), FileFormats.CompressedBlobMagic.ToArray());

    [Fact]
    public void EncryptedBlobMagic_IsSha256OfItsText() =>
        Assert.Equal(Magic("Proxmox Backup encrypted blob v1.0"), FileFormats.EncryptedBlobMagic.ToArray());

    [Fact]
    public void EncryptedCompressedBlobMagic_IsSha256OfItsText() =>
        Assert.Equal(Magic("Proxmox Backup zstd compressed encrypted blob v1.0"), FileFormats.EncryptedCompressedBlobMagic.ToArray());

    [Fact]
    public void FixedIndexMagic_IsSha256OfItsText() =>
        Assert.Equal(Magic("Proxmox Backup fixed sized chunk index v1.0"), FileFormats.FixedIndexMagic.ToArray());

    [Fact]
    public void DynamicIndexMagic_IsSha256OfItsText() =>
        Assert.Equal(Magic("Proxmox Backup dynamic sized chunk index v1.0"), FileFormats.DynamicIndexMagic.ToArray());

    [Fact]
    public void FingerprintInput_IsSha256OfItsText() =>
        Assert.Equal(SHA256.HashData("Proxmox Backup Encryption Key Fingerprint"u8), FileFormats.FingerprintInput.ToArray());

    [Fact]
    public void Magics_AreDistinct()
    {
        var all = new[]
        {
            FileFormats.UncompressedBlobMagic.ToArray(), FileFormats.CompressedBlobMagic.ToArray(),
            FileFormats.EncryptedBlobMagic.ToArray(), FileFormats.EncryptedCompressedBlobMagic.ToArray(),
            FileFormats.FixedIndexMagic.ToArray(), FileFormats.DynamicIndexMagic.ToArray(),
        };
        Assert.Equal(all.Length, all.Select(Convert.ToHexString).Distinct().Count());
    }

    [Fact]
    public void Sizes_MatchUpstream()
    {
        Assert.Equal(12, FileFormats.BlobHeaderSize);
        Assert.Equal(44, FileFormats.EncryptedBlobHeaderSize);
        Assert.Equal(16, FileFormats.IvSize);
        Assert.Equal(16, FileFormats.TagSize);
        Assert.Equal(128 * 1024 * 1024, FileFormats.MaxBlobSize);
        Assert.Equal(4096, FileFormats.IndexHeaderSize);
        Assert.Equal("index.json.blob", FileFormats.ManifestBlobName);
    }

    [Fact]
    public void GoldenFiles_StartWithTheMagicsTheManifestNames()
    {
        var golden = GoldenManifest.Instance;
        foreach (var chunk in golden.ChunkStore.Chunks)
        {
            var raw = GoldenManifest.Read(chunk.Path);
            Assert.Equal(chunk.MagicHex, FormatsTestSupport.HexLower(raw.AsSpan(0, 8)));
            Assert.Equal(DataBlob.Magic(FormatsTestSupport.ParseKind(chunk.BlobKind)).ToArray(), raw[..8]);
        }
        foreach (var (_, archive) in golden.AllArchives())
        {
            var raw = GoldenManifest.Read(archive.Path);
            var expected = archive.IsFixedIndex ? FileFormats.FixedIndexMagic.ToArray()
                : archive.IsDynamicIndex ? FileFormats.DynamicIndexMagic.ToArray()
                : DataBlob.Magic(FormatsTestSupport.ParseKind(archive.BlobKind!)).ToArray();
            Assert.Equal(expected, raw[..8]);
        }
    }
}
