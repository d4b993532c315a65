using System.Security.Cryptography;
using PbsRestore.Formats;
using static PbsRestore.Tests.Formats.FormatsTestSupport;

namespace PbsRestore.Tests.Formats;

public class CryptConfigTests
{
    [Fact]
    public void IdKey_IsPbkdf2OfTheKey()
    {
        var raw = FromHex(GoldenManifest.Instance.Key("none.key.json").RawKeyHex);
        var crypt = new CryptConfig(raw);
        var expected = Rfc2898DeriveBytes.Pbkdf2(raw, "_id_key"u8.ToArray(), 10, HashAlgorithmName.SHA256, 32);
        Assert.Equal(expected, crypt.IdKey.ToArray());
        Assert.Equal(GoldenManifest.Instance.Key("none.key.json").IdKeyHex, HexLower(crypt.IdKey));
    }

    [Fact]
    public void Fingerprint_IsSha256OfInputAndIdKey()
    {
        var crypt = ScryptKey;
        var expected = SHA256.HashData([.. FileFormats.FingerprintInput, .. crypt.IdKey]);
        Assert.Equal(HexLower(expected), crypt.Fingerprint.ToString().Replace(":", ""));
    }

    [Fact]
    public void ComputeDigest_IsSha256OfDataThenIdKey()
    {
        var data = RandomBytes(1000, 9);
        var crypt = NoneKey;
        var expected = SHA256.HashData([.. data, .. crypt.IdKey]);
        Assert.Equal(expected, crypt.ComputeDigest(data).ToArray());
        Assert.NotEqual(ChunkDigest.Compute(data), crypt.ComputeDigest(data));
        Assert.NotEqual(ScryptKey.ComputeDigest(data), crypt.ComputeDigest(data));
    }

    [Fact]
    public void ComputeAuthTag_IsHmacSha256WithIdKey()
    {
        var data = "manifest text"u8.ToArray();
        Assert.Equal(HMACSHA256.HashData(NoneKey.IdKey.ToArray(), data), NoneKey.ComputeAuthTag(data));
    }

    [Fact]
    public void EncryptDecrypt_RoundTrips_And16ByteIvMatters()
    {
        var crypt = NoneKey;
        var iv = RandomBytes(16, 1);
        var plain = RandomBytes(777, 2);
        var ct = new byte[plain.Length];
        var tag = new byte[16];
        crypt.Encrypt(iv, plain, ct, tag);
        Assert.NotEqual(plain, ct);

        var back = new byte[plain.Length];
        crypt.Decrypt(iv, tag, ct, back);
        Assert.Equal(plain, back);

        // the last 4 IV bytes are used (a 12-byte-nonce implementation would ignore or reject them)
        var iv2 = (byte[])iv.Clone();
        iv2[15] ^= 1;
        var ct2 = new byte[plain.Length];
        crypt.Encrypt(iv2, plain, ct2, new byte[16]);
        Assert.NotEqual(ct, ct2);
        var e = Assert.Throws<PbsIntegrityException>(() => crypt.Decrypt(iv2, tag, ct, new byte[plain.Length]));
        Assert.Equal("DecryptionFailed", e.ErrorId);
    }

    [Fact]
    public void Decrypt_MatchesGoldenChunkIvAndTag()
    {
        // The golden MANIFEST lists iv and tag of each encrypted chunk; decrypting with them must verify.
        var chunk = GoldenManifest.Instance.ChunkStore.Chunks.First(c => c.BlobKind == "encrypted");
        var raw = GoldenManifest.Read(chunk.Path);
        var plain = new byte[raw.Length - 44];
        ScryptKey.Decrypt(FromHex(chunk.Iv!), FromHex(chunk.Tag!), raw.AsSpan(44), plain);
        Assert.Equal(chunk.Digest, ScryptKey.ComputeDigest(plain).ToString());
    }

    [Fact]
    public void BadArguments_AreRejected()
    {
        Assert.Throws<ArgumentException>(() => new CryptConfig(new byte[31]));
        Assert.Throws<ArgumentException>(() => new CryptConfig(new byte[33]));
        Assert.Throws<ArgumentException>(() => NoneKey.Encrypt(new byte[12], new byte[4], new byte[4], new byte[16]));
        Assert.Throws<ArgumentException>(() => NoneKey.Decrypt(new byte[16], new byte[16], new byte[10], new byte[9]));
    }

    [Fact]
    public void ZeroChunkDigests_MatchGolden()
    {
        var g = GoldenManifest.Instance;
        Assert.Equal("de2f256064a0af797747c2b97505dc0b9f3df0de4f489eac731c23ae9ca9cc31", g.ZeroChunks.Sha256Zero64KiB);
        Assert.Equal("bb9f8df61474d25e71fa00722318cd387396ca1736605e1248821cc0de3d3af8", g.ZeroChunks.Sha256Zero4MiB);
        Assert.Equal(g.ZeroChunks.Sha256Zero64KiB, ChunkVerifier.ZeroChunkDigest(65536, null).ToString());
        Assert.Equal(g.ZeroChunks.Sha256Zero4MiB, ChunkVerifier.ZeroChunkDigest(4 << 20, null).ToString());

        var scrypt = g.Key("scrypt.key.json");
        Assert.Equal(scrypt.ZeroChunkDigest64KiB, ChunkVerifier.ZeroChunkDigest(65536, ScryptKey).ToString());
        Assert.Equal(scrypt.ZeroChunkDigest4MiB, ChunkVerifier.ZeroChunkDigest(4 << 20, ScryptKey).ToString());
        var none = g.Key("none.key.json");
        Assert.Equal(none.ZeroChunkDigest64KiB, ChunkVerifier.ZeroChunkDigest(65536, NoneKey).ToString());
        Assert.Equal(none.ZeroChunkDigest4MiB, ChunkVerifier.ZeroChunkDigest(4 << 20, NoneKey).ToString());

        Assert.Throws<ArgumentOutOfRangeException>(() => ChunkVerifier.ZeroChunkDigest(0, null));
        Assert.Throws<ArgumentOutOfRangeException>(() => ChunkVerifier.ZeroChunkDigest(FileFormats.MaxBlobSize + 1, null));
    }

    [Fact]
    public void ChunkDigest_ParseFormatAndEquality()
    {
        const string hex = "de2f256064a0af797747c2b97505dc0b9f3df0de4f489eac731c23ae9ca9cc31";
        var d = ChunkDigest.Parse(hex);
        Assert.Equal(hex, d.ToString());
        Assert.Equal(d, ChunkDigest.Parse(hex.ToUpperInvariant()));
        Assert.Equal(FromHex(hex), d.ToArray());
        Assert.Equal(d.GetHashCode(), ChunkDigest.Parse(hex).GetHashCode());
        Assert.True(d == ChunkDigest.Parse(hex));
        var other = ChunkDigest.Parse(hex[..^1] + "0");
        Assert.True(d != other);
        Assert.False(ChunkDigest.TryParse(hex[..^1], out _));
        Assert.False(ChunkDigest.TryParse(hex + "0", out _));
        Assert.False(ChunkDigest.TryParse(null, out _));
        Assert.False(ChunkDigest.TryParse(hex[..^1] + "g", out _));
        Assert.False(ChunkDigest.TryParse("de:" + hex[3..], out _));
        Assert.Throws<FormatException>(() => ChunkDigest.Parse("xyz"));
        Assert.Throws<ArgumentException>(() => new ChunkDigest(new byte[31]));
    }

    [Fact]
    public void KeyFingerprint_ParseFormatAndEquality()
    {
        var g = GoldenManifest.Instance.Key("scrypt.key.json");
        var fp = KeyFingerprint.Parse(g.Fingerprint);
        Assert.Equal(g.Fingerprint, fp.ToString());
        Assert.Equal(g.FingerprintShort, fp.ToShortString());
        Assert.Equal(fp, KeyFingerprint.Parse(g.Fingerprint.Replace(":", "")));
        Assert.Equal(ScryptKey.Fingerprint, fp);
        Assert.NotEqual(NoneKey.Fingerprint, fp);
        Assert.Throws<FormatException>(() => KeyFingerprint.Parse(g.FingerprintShort));
        Assert.Throws<FormatException>(() => KeyFingerprint.Parse(g.Fingerprint + ":00"));
        Assert.Throws<FormatException>(() => KeyFingerprint.Parse(""));
    }

    [Fact]
    public void ToString_ShowsOnlyTheShortFingerprint()
    {
        var s = ScryptKey.ToString();
        Assert.Contains(GoldenManifest.Instance.Key("scrypt.key.json").FingerprintShort, s);
        Assert.DoesNotContain(GoldenManifest.Instance.Key("scrypt.key.json").RawKeyHex, s, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain(GoldenManifest.Instance.Key("scrypt.key.json").Fingerprint, s);
    }
}
