using System.Security.Cryptography;
using PbsRestore.Formats;

namespace PbsRestore.Tests.Formats;

/// <summary>Shared helpers of the formats tests: opened golden keys (scrypt is slow, so it is opened once) and hex.</summary>
internal static class FormatsTestSupport
{
    public const string ScryptPassword = "golden-shared-scrypt-pass";

    private static readonly Lazy<CryptConfig> Scrypt = new(() =>
        KeyConfig.Parse(GoldenManifest.Read("keys/scrypt.key.json"), "scrypt.key.json").Open(ScryptPassword));

    private static readonly Lazy<CryptConfig> None = new(() =>
        KeyConfig.Parse(GoldenManifest.Read("keys/none.key.json"), "none.key.json").Open((string?)null));

    /// <summary>The key of the encrypted golden snapshot vm/101, opened from keys/scrypt.key.json.</summary>
    public static CryptConfig ScryptKey => Scrypt.Value;

    /// <summary>keys/none.key.json: a valid key that no snapshot uses.</summary>
    public static CryptConfig NoneKey => None.Value;

    public static string Sha256Hex(ReadOnlySpan<byte> data) => Convert.ToHexStringLower(SHA256.HashData(data));

    public static string HexLower(ReadOnlySpan<byte> data) => Convert.ToHexStringLower(data);

    public static byte[] FromHex(string hex) => Convert.FromHexString(hex);

    public static BlobKind ParseKind(string goldenKind) => goldenKind switch
    {
        "uncompressed" => BlobKind.Uncompressed,
        "compressed" => BlobKind.Compressed,
        "encrypted" => BlobKind.Encrypted,
        "encrypted+compressed" => BlobKind.EncryptedCompressed,
        _ => throw new ArgumentException($"unknown golden blob kind '{goldenKind}'"),
    };

    /// <summary>Deterministic pseudo-random bytes (incompressible).</summary>
    public static byte[] RandomBytes(int length, int seed)
    {
        var b = new byte[length];
        new Random(seed).NextBytes(b);
        return b;
    }

    /// <summary>Compressible text-like bytes.</summary>
    public static byte[] CompressibleBytes(int length)
    {
        var b = new byte[length];
        var pattern = "PBS restore compressible line of text 0123456789\n"u8;
        for (int i = 0; i < length; i++) b[i] = pattern[i % pattern.Length];
        return b;
    }

    /// <summary>Whether a zstd frame header declares the content size (bulk frames do, streaming frames do not).</summary>
    public static bool ZstdFrameHasContentSize(ReadOnlySpan<byte> frame)
    {
        Assert.True(frame.Length >= 6, "zstd frame too short");
        Assert.True(frame[..4].SequenceEqual(new byte[] { 0x28, 0xB5, 0x2F, 0xFD }), "not a zstd frame");
        byte fhd = frame[4];
        int fcsFlag = fhd >> 6;
        bool singleSegment = (fhd & 0x20) != 0;
        return fcsFlag != 0 || singleSegment;
    }
}
