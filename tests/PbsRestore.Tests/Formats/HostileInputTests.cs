using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;
using PbsRestore.Sources;
using PbsRestore.Formats;
using PbsRestore.Restore;
using static PbsRestore.Tests.Formats.FormatsTestSupport;

namespace PbsRestore.Tests.Formats;

/// <summary>
/// Hostile inputs (issue 5 item 6) that the per-format tests do not already cover: each ends in a typed
/// <see cref="PbsException"/> with its stable id, and without allocating what the input claims.
/// (Covered elsewhere: fidx size/length disagreement and bad chunk sizes incl. 2^40 in FixedIndexTests, didx
/// offsets that do not increase in DynamicIndexTests, '..'/absolute names and the 4 MiB + 1 manifest in
/// BackupManifestTests, hostile KDF costs in KeyConfigTests.)
/// </summary>
public class HostileInputTests
{
    private const int Limit = 4 << 20;

    /// <summary>Bytes allocated on this thread by <paramref name="action"/> (which must throw <typeparamref name="T"/>).</summary>
    private static (T Error, long Allocated) Measure<T>(Action action) where T : Exception
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<T>(action);
        return (e, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    /// <summary>100 MiB of zeros as a blob (a few KiB); the 100 MiB plaintext is not kept alive.</summary>
    private static byte[] Bomb(ZstdFrameStyle style, bool encrypt)
    {
        using var encoder = new BlobEncoder { FrameStyle = style };
        return encoder.Encode(new byte[100 << 20], encrypt ? NoneKey : null, true);
    }

    [Theory]
    [InlineData(ZstdFrameStyle.Bulk, false)]
    [InlineData(ZstdFrameStyle.Streaming, false)]
    [InlineData(ZstdFrameStyle.Bulk, true)]
    [InlineData(ZstdFrameStyle.Streaming, true)]
    public void ZstdBomb_100MiBOfZeros_IsBlobTooLarge_WithoutAllocatingTheExpansion(ZstdFrameStyle style, bool encrypt)
    {
        var raw = Bomb(style, encrypt);
        Assert.True(raw.Length < 64 << 10, $"the bomb should be small, it has {raw.Length} bytes");
        Assert.Equal(encrypt ? BlobKind.EncryptedCompressed : BlobKind.Compressed, DataBlob.GetKind(raw));

        using var decoder = new BlobDecoder(NoneKey, Limit);
        var destination = new byte[Limit];
        decoder.Decode(new BlobEncoder().Encode(new byte[10], null, true), destination); // warm up the zstd context
        var (e, allocated) = Measure<PbsFormatException>(() => decoder.Decode(raw, destination));
        Assert.Equal("BlobTooLarge", e.ErrorId);
        Assert.True(allocated < 16 << 20, $"decoding the bomb allocated {allocated >> 20} MiB");

        // DecodeToArray allocates the 4 MiB limit, not the 100 MiB the frame expands to.
        var (e2, allocated2) = Measure<PbsFormatException>(() => decoder.DecodeToArray(raw));
        Assert.Equal("BlobTooLarge", e2.ErrorId);
        Assert.True(allocated2 < 16 << 20, $"DecodeToArray of the bomb allocated {allocated2 >> 20} MiB");
    }

    [Theory]
    [InlineData(1UL << 40)]
    [InlineData(ulong.MaxValue - 1)]
    [InlineData((ulong)(4 << 20) + 1)]
    public void ZstdFrameClaimingAHugeContentSize_IsRejected_WithoutAllocatingIt(ulong claimed)
    {
        // A single-segment frame header with an 8-byte content size, then one last RLE block of 128 KiB zeros.
        var frame = new List<byte> { 0x28, 0xB5, 0x2F, 0xFD, 0xE0 };
        var size = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(size, claimed);
        frame.AddRange(size);
        uint blockHeader = (128u << 10 << 3) | (1u << 1) | 1u; // size | RLE | last
        frame.AddRange([(byte)blockHeader, (byte)(blockHeader >> 8), (byte)(blockHeader >> 16), 0]);
        var raw = Blob(FileFormats.CompressedBlobMagic, frame.ToArray());

        using var decoder = new BlobDecoder(null, Limit);
        var destination = new byte[Limit];
        var (e, allocated) = Measure<PbsFormatException>(() => decoder.Decode(raw, destination));
        Assert.Contains(e.ErrorId, new[] { "BlobTooLarge", "BlobBadCompression" });
        Assert.True(allocated < 16 << 20, $"allocated {allocated >> 20} MiB");
    }

    private static byte[] Blob(ReadOnlySpan<byte> magic, byte[] payload)
    {
        var raw = new byte[12 + payload.Length];
        magic.CopyTo(raw);
        payload.CopyTo(raw, 12);
        BinaryPrimitives.WriteUInt32LittleEndian(raw.AsSpan(8), Crc32.HashToUInt32(payload));
        return raw;
    }

    /// <summary>The chunk's crypt mode must be the one the manifest entry implies (upstream chunk_crypt_mode):
    /// encrypt → encrypted chunks only; none and sign-only → unencrypted chunks only. Checked before decoding,
    /// so neither a key-less decode nor a plaintext substitution into an encrypted archive gets through.</summary>
    [Theory]
    [InlineData(CryptMode.Encrypt, false, false)]
    [InlineData(CryptMode.Encrypt, false, true)]
    [InlineData(CryptMode.None, true, false)]
    [InlineData(CryptMode.None, true, true)]
    [InlineData(CryptMode.SignOnly, true, false)]
    [InlineData(CryptMode.SignOnly, true, true)]
    public void ChunkWhoseCryptModeDisagreesWithTheManifest_IsChunkCryptModeMismatch(CryptMode entryMode, bool chunkEncrypted, bool compress)
    {
        bool archiveEncrypted = DataBlob.ChunkMustBeEncrypted(entryMode);
        Assert.NotEqual(archiveEncrypted, chunkEncrypted);
        var plain = CompressibleBytes(4096);
        byte[] raw;
        using (var encoder = new BlobEncoder()) raw = encoder.Encode(plain, chunkEncrypted ? NoneKey : null, compress);
        var digest = ChunkVerifier.ComputeDigest(plain, archiveEncrypted ? NoneKey : null);
        var job = new ChunkJob(digest, 3, plain.Length, [3L * 4096]);

        using var decoder = new ChunkDecoder("victim.img.fidx", NoneKey, archiveEncrypted, 4096);
        var destination = new byte[4096];
        destination.AsSpan().Fill(0x55);
        var e = Assert.Throws<ChunkException>(() => decoder.Decode(job, raw, destination));
        Assert.Equal("ChunkCryptModeMismatch", e.ErrorId);
        Assert.Equal(PbsErrorKind.Integrity, e.Kind);
        Assert.Contains("victim.img.fidx", e.Message);
        Assert.All(destination, b => Assert.Equal(0, b));

        // the same chunk in the right crypt mode decodes
        using var right = new ChunkDecoder("victim.img.fidx", NoneKey, chunkEncrypted, 4096);
        var okJob = job with { Digest = ChunkVerifier.ComputeDigest(plain, chunkEncrypted ? NoneKey : null) };
        Assert.Equal(plain.Length, right.Decode(okJob, raw, destination));
    }

    [Fact]
    public void GiantManifest_IsManifestTooLarge_BeforeItIsParsed()
    {
        // 16 MiB of syntactically valid JSON: refused by its length, without a parse or a copy.
        var giant = new byte[16 << 20];
        Array.Fill(giant, (byte)' ');
        Encoding.UTF8.GetBytes("{\"files\":[").CopyTo(giant, 0);
        giant[^2] = (byte)']';
        giant[^1] = (byte)'}';
        var (e, allocated) = Measure<PbsFormatException>(() => BackupManifest.Parse(giant));
        Assert.Equal("ManifestTooLarge", e.ErrorId);
        Assert.True(allocated < 1 << 20, $"allocated {allocated >> 10} KiB");
    }

    [Theory]
    [InlineData(33)]
    [InlineData(1000)]
    [InlineData(1_000_000)]
    public void DeeplyNestedManifest_IsManifestInvalid_WithBoundedMemory(int depth)
    {
        string nested = new string('[', depth) + new string(']', depth);
        var json = Encoding.UTF8.GetBytes(
            "{\"backup-type\":\"vm\",\"backup-id\":\"1\",\"backup-time\":1,\"files\":[],\"unprotected\":{\"notes\":" + nested + "}}");
        Assert.True(json.Length <= BackupManifest.MaxJsonSize);
        var (e, allocated) = Measure<PbsFormatException>(() => BackupManifest.Parse(json));
        Assert.Equal("ManifestInvalid", e.ErrorId);
        Assert.True(allocated < 16 << 20, $"allocated {allocated >> 20} MiB");
    }

    [Fact]
    public void ManifestJustUnderTheLimit_WithMillionsOfTokens_StaysBounded()
    {
        // ~4 MiB of "0," in the files array: the largest token count the size limit lets through.
        var sb = new StringBuilder("{\"backup-type\":\"vm\",\"backup-id\":\"1\",\"backup-time\":1,\"files\":[");
        while (sb.Length < BackupManifest.MaxJsonSize - 16) sb.Append("0,");
        sb.Append("0]}");
        var json = Encoding.UTF8.GetBytes(sb.ToString());
        var (e, allocated) = Measure<PbsFormatException>(() => BackupManifest.Parse(json));
        Assert.Equal("ManifestInvalid", e.ErrorId);
        Assert.True(allocated < 128 << 20, $"allocated {allocated >> 20} MiB for {json.Length} bytes of JSON");
    }

    [Fact]
    public void DeeplyNestedKeyFile_IsKeyFileInvalid()
    {
        string nested = new string('[', 100_000) + new string(']', 100_000);
        var json = Encoding.UTF8.GetBytes("{\"kdf\":null,\"hint\":" + nested + ",\"data\":\"dc7byiYAN8YBEim2sfCor3BaEHBm9U4m4+nEEiWrpLw=\"}");
        var (e, allocated) = Measure<PbsKeyException>(() => KeyConfig.Parse(json));
        Assert.Equal("KeyFileInvalid", e.ErrorId);
        Assert.True(allocated < 16 << 20, $"allocated {allocated >> 20} MiB");
    }

    /// <summary>Found by the fuzzer: raw invalid UTF-8 inside a string passed JsonDocument.Parse and broke later reads.</summary>
    [Theory]
    [InlineData(new byte[] { 0x80 })]
    [InlineData(new byte[] { 0xC3 })]
    [InlineData(new byte[] { 0xED, 0xA0, 0x80 })] // an encoded surrogate
    [InlineData(new byte[] { 0xF8, 0x88, 0x80, 0x80, 0x80 })]
    public void InvalidUtf8InAManifestString_IsManifestInvalid(byte[] bad)
    {
        var text = Encoding.UTF8.GetBytes("{\"backup-type\":\"vm\",\"backup-id\":\"1\",\"backup-time\":1,\"files\":[],\"unprotected\":{\"notes\":\"X\"},\"signature\":null}");
        int at = Array.IndexOf(text, (byte)'X');
        var json = text[..at].Concat(bad).Concat(text[(at + 1)..]).ToArray();
        var e = Assert.Throws<PbsFormatException>(() => BackupManifest.Parse(json));
        Assert.Equal("ManifestInvalid", e.ErrorId);
    }

    /// <summary>A name is checked after JSON unescaping: escapes cannot smuggle '..' or separators past the check.</summary>
    [Theory]
    [InlineData("\\u002e\\u002e/x.blob")]
    [InlineData("\\u002e\\u002e\\u005cx.fidx")]
    [InlineData("\\/etc\\/passwd.blob")]
    [InlineData("\\\\\\\\server\\\\share.didx")]
    [InlineData("a\\u2215b.fidx")] // DIVISION SLASH
    [InlineData("x.fidx\\u0000.blob")]
    public void EscapedHostileFileName_IsManifestBadFileName(string escapedName)
    {
        var json = Encoding.UTF8.GetBytes(
            "{\"backup-type\":\"vm\",\"backup-id\":\"1\",\"backup-time\":1,\"files\":[{\"filename\":\"" + escapedName +
            "\",\"crypt-mode\":\"none\",\"size\":1,\"csum\":\"" + new string('0', 64) + "\"}],\"unprotected\":{},\"signature\":null}");
        var e = Assert.Throws<PbsFormatException>(() => BackupManifest.Parse(json));
        Assert.Equal("ManifestBadFileName", e.ErrorId);
    }

    [Theory]
    [InlineData(1UL << 50, 512UL)]
    [InlineData(1UL << 50, 4UL << 20)]
    [InlineData((1UL << 40) + 1, 4096UL)]
    public void FixedIndexClaimingAHugeImage_IsIndexSizeMismatch_WithoutAllocatingIt(ulong size, ulong chunkSize)
    {
        var data = FixedIndex.Build(Guid.Empty, DateTimeOffset.UnixEpoch, 0, 4096, []);
        BinaryPrimitives.WriteUInt64LittleEndian(data.AsSpan(64), size);
        BinaryPrimitives.WriteUInt64LittleEndian(data.AsSpan(72), chunkSize);
        var (e, allocated) = Measure<PbsFormatException>(() => FixedIndex.Parse(data));
        Assert.Equal("IndexSizeMismatch", e.ErrorId);
        Assert.True(allocated < 1 << 20, $"allocated {allocated >> 10} KiB");
    }
}
