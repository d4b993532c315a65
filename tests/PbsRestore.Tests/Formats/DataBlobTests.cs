using System.Buffers.Binary;
using System.IO.Hashing;
using PbsRestore.Formats;
using static PbsRestore.Tests.Formats.FormatsTestSupport;

namespace PbsRestore.Tests.Formats;

public class DataBlobTests
{
    private const int ChunkLimit = 4 << 20;

    public static TheoryData<string> GoldenChunkDigests()
    {
        var data = new TheoryData<string>();
        foreach (var c in GoldenManifest.Instance.ChunkStore.Chunks) data.Add(c.Digest);
        return data;
    }

    // ---- golden chunks -------------------------------------------------------------------------------------

    [Theory]
    [MemberData(nameof(GoldenChunkDigests))]
    public void GoldenChunk_DecodesAndHashesToItsName(string digest)
    {
        var chunk = GoldenManifest.Instance.Chunk(digest);
        var raw = GoldenManifest.Read(chunk.Path);
        Assert.Equal(chunk.EncodedSize, raw.Length);
        Assert.Equal(digest, Path.GetFileName(chunk.Path));

        var kind = DataBlob.GetKind(raw);
        Assert.Equal(ParseKind(chunk.BlobKind), kind);
        Assert.Equal(Convert.ToUInt32(chunk.Crc32, 16), DataBlob.StoredCrc(raw));
        Assert.Equal(Convert.ToUInt32(chunk.Crc32, 16), DataBlob.ComputeCrc(raw, kind));
        if (DataBlob.IsEncrypted(kind))
        {
            Assert.Equal(chunk.Iv, HexLower(raw.AsSpan(12, 16)));
            Assert.Equal(chunk.Tag, HexLower(raw.AsSpan(28, 16)));
        }

        var key = DataBlob.IsEncrypted(kind) ? ScryptKey : null;
        using var decoder = new BlobDecoder(key, ChunkLimit);
        var buffer = new byte[ChunkLimit];
        int n = decoder.Decode(raw, buffer);
        var plain = buffer.AsSpan(0, n);
        Assert.Equal(digest, ChunkVerifier.ComputeDigest(plain, key).ToString());
        // the unkeyed/keyed digest must really depend on the key choice
        Assert.NotEqual(digest, ChunkVerifier.ComputeDigest(plain, key is null ? ScryptKey : null).ToString());
    }

    [Fact]
    public void GoldenChunks_CoverAllKindsAndBothZstdFrameStyles()
    {
        var chunks = GoldenManifest.Instance.ChunkStore.Chunks;
        Assert.Equal(GoldenManifest.Instance.ChunkStore.ChunkFiles, chunks.Count);
        var kinds = chunks.Select(c => ParseKind(c.BlobKind)).ToHashSet();
        Assert.Equal(Enum.GetValues<BlobKind>().ToHashSet(), kinds);

        bool sawStreaming = false, sawBulk = false;
        foreach (var c in chunks.Where(c => c.BlobKind == "compressed"))
        {
            bool hasSize = ZstdFrameHasContentSize(GoldenManifest.Read(c.Path).AsSpan(FileFormats.BlobHeaderSize));
            Assert.False(hasSize, $"{c.Digest}: upstream writes plain chunks as streaming frames");
            sawStreaming = true;
        }
        foreach (var c in chunks.Where(c => c.BlobKind == "encrypted+compressed"))
        {
            var raw = GoldenManifest.Read(c.Path);
            var frame = new byte[raw.Length - FileFormats.EncryptedBlobHeaderSize];
            ScryptKey.Decrypt(raw.AsSpan(12, 16), raw.AsSpan(28, 16), raw.AsSpan(FileFormats.EncryptedBlobHeaderSize), frame);
            Assert.True(ZstdFrameHasContentSize(frame), $"{c.Digest}: upstream writes encrypted chunks as bulk frames");
            sawBulk = true;
        }
        Assert.True(sawStreaming && sawBulk);
    }

    [Fact]
    public void GoldenChunkFiles_AreAllListed()
    {
        var onDisk = Directory.EnumerateFiles(GoldenManifest.FullPath("datastore/.chunks"), "*", SearchOption.AllDirectories)
            .Select(p => Path.GetFileName(p)!).Order(StringComparer.Ordinal).ToList();
        var listed = GoldenManifest.Instance.ChunkStore.Chunks.Select(c => c.Digest).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(listed, onDisk);
    }

    [Fact]
    public void GoldenEncryptedChunk_WithoutKey_IsKeyRequired()
    {
        var c = GoldenManifest.Instance.ChunkStore.Chunks.First(c => c.IsEncrypted);
        using var decoder = new BlobDecoder(null, ChunkLimit);
        var e = Assert.Throws<PbsKeyException>(() => decoder.Decode(GoldenManifest.Read(c.Path), new byte[ChunkLimit]));
        Assert.Equal("KeyRequired", e.ErrorId);
    }

    [Fact]
    public void GoldenEncryptedChunk_WithWrongKey_IsDecryptionFailedAndLeaksNothing()
    {
        foreach (var kind in new[] { "encrypted", "encrypted+compressed" })
        {
            var c = GoldenManifest.Instance.ChunkStore.Chunks.First(c => c.BlobKind == kind);
            using var decoder = new BlobDecoder(NoneKey, ChunkLimit);
            var destination = new byte[ChunkLimit];
            var e = Assert.Throws<PbsIntegrityException>(() => decoder.Decode(GoldenManifest.Read(c.Path), destination));
            Assert.Equal("DecryptionFailed", e.ErrorId);
            Assert.All(destination, b => Assert.Equal(0, b));
        }
    }

    // ---- round trips ---------------------------------------------------------------------------------------

    public static TheoryData<bool, bool, ZstdFrameStyle> RoundTripCases()
    {
        var data = new TheoryData<bool, bool, ZstdFrameStyle>();
        foreach (var encrypt in new[] { false, true })
        foreach (var compress in new[] { false, true })
        foreach (var style in new[] { ZstdFrameStyle.Bulk, ZstdFrameStyle.Streaming })
            data.Add(encrypt, compress, style);
        return data;
    }

    [Theory]
    [MemberData(nameof(RoundTripCases))]
    public void Encode_Decode_RoundTrips(bool encrypt, bool compress, ZstdFrameStyle style)
    {
        var key = encrypt ? NoneKey : null;
        var plain = CompressibleBytes(100_000);
        using var encoder = new BlobEncoder { FrameStyle = style };
        var raw = encoder.Encode(plain, key, compress);

        var expectedKind = (encrypt, compress) switch
        {
            (false, false) => BlobKind.Uncompressed,
            (false, true) => BlobKind.Compressed,
            (true, false) => BlobKind.Encrypted,
            (true, true) => BlobKind.EncryptedCompressed,
        };
        Assert.Equal(expectedKind, DataBlob.GetKind(raw));
        Assert.Equal(DataBlob.Magic(expectedKind).ToArray(), raw[..8]);
        int header = DataBlob.HeaderSize(expectedKind);
        Assert.Equal(Crc32.HashToUInt32(raw.AsSpan(header)), BinaryPrimitives.ReadUInt32LittleEndian(raw.AsSpan(8)));
        if (compress) Assert.True(raw.Length < plain.Length / 4, "compressible data must shrink");
        else Assert.Equal(header + plain.Length, raw.Length);
        if (!encrypt && compress)
            Assert.Equal(style == ZstdFrameStyle.Bulk, ZstdFrameHasContentSize(raw.AsSpan(header)));
        if (encrypt)
            Assert.False(raw.AsSpan(header).IndexOf(plain.AsSpan(0, 64)) >= 0, "ciphertext must not contain plaintext");

        using var decoder = new BlobDecoder(key, ChunkLimit);
        var buffer = new byte[ChunkLimit];
        int n = decoder.Decode(raw, buffer);
        Assert.Equal(plain, buffer[..n]);
        Assert.Equal(plain, decoder.DecodeToArray(raw));
    }

    [Fact]
    public void Encode_EncryptedWithFixedIv_IsDeterministicAndCarriesTheIv()
    {
        var iv = Enumerable.Range(1, 16).Select(i => (byte)i).ToArray();
        using var encoder = new BlobEncoder();
        var a = encoder.Encode("hello"u8, NoneKey, false, iv);
        var b = encoder.Encode("hello"u8, NoneKey, false, iv);
        Assert.Equal(a, b);
        Assert.Equal(iv, a[12..28]);
        Assert.Equal(44 + 5, a.Length);
        var c = encoder.Encode("hello"u8, NoneKey, false);
        Assert.NotEqual(a[12..28], c[12..28]);
    }

    [Fact]
    public void Encode_IncompressibleData_StaysUncompressed()
    {
        var plain = RandomBytes(65536, 7);
        using var encoder = new BlobEncoder();
        Assert.Equal(BlobKind.Uncompressed, DataBlob.GetKind(encoder.Encode(plain, null, compress: true)));
        Assert.Equal(BlobKind.Encrypted, DataBlob.GetKind(encoder.Encode(plain, NoneKey, compress: true)));
    }

    [Fact]
    public void Encode_EmptyData_RoundTrips()
    {
        using var encoder = new BlobEncoder();
        using var decoder = new BlobDecoder(NoneKey, 1024);
        foreach (var key in new[] { null, NoneKey })
        {
            var raw = encoder.Encode(ReadOnlySpan<byte>.Empty, key, compress: true);
            Assert.Equal(key is null ? 12 : 44, raw.Length);
            Assert.Empty(decoder.DecodeToArray(raw));
        }
    }

    // ---- corruption ----------------------------------------------------------------------------------------

    [Theory]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public void FlippedPayloadByte_IsCrcMismatch(bool encrypt, bool compress)
    {
        using var encoder = new BlobEncoder();
        var raw = encoder.Encode(CompressibleBytes(20_000), encrypt ? NoneKey : null, compress);
        raw[^1] ^= 0x40;
        using var decoder = new BlobDecoder(NoneKey, ChunkLimit);
        var e = Assert.Throws<PbsIntegrityException>(() => decoder.Decode(raw, new byte[ChunkLimit]));
        Assert.Equal("BlobCrcMismatch", e.ErrorId);
        Assert.Equal(PbsErrorKind.Integrity, e.Kind);
    }

    [Fact]
    public void FlippedCrcByte_IsCrcMismatch()
    {
        using var encoder = new BlobEncoder();
        var raw = encoder.Encode("abc"u8, null, false);
        raw[9] ^= 1;
        using var decoder = new BlobDecoder(null, 1024);
        Assert.Equal("BlobCrcMismatch", Assert.Throws<PbsIntegrityException>(() => decoder.DecodeToArray(raw)).ErrorId);
    }

    private static void FixCrc(byte[] raw) =>
        BinaryPrimitives.WriteUInt32LittleEndian(raw.AsSpan(8), DataBlob.ComputeCrc(raw, DataBlob.GetKind(raw)));

    [Theory]
    [InlineData(false, 0)]
    [InlineData(false, 1000)]
    [InlineData(true, 0)]
    [InlineData(true, -1)]
    public void FlippedCiphertextByte_WithFixedCrc_IsDecryptionFailed_AndDestinationHoldsNoPlaintext(bool compress, int at)
    {
        var plain = compress ? CompressibleBytes(50_000) : RandomBytes(50_000, 3);
        using var encoder = new BlobEncoder();
        var raw = encoder.Encode(plain, NoneKey, compress);
        Assert.Equal(compress, DataBlob.IsCompressed(DataBlob.GetKind(raw)));
        int pos = at >= 0 ? 44 + at : raw.Length - 1;
        raw[pos] ^= 0x01;
        FixCrc(raw);
        DataBlob.VerifyCrc(raw, DataBlob.GetKind(raw)); // the CRC is fine now: only GCM can notice

        using var decoder = new BlobDecoder(NoneKey, ChunkLimit);
        var destination = new byte[ChunkLimit];
        Array.Fill(destination, (byte)0xA5);
        var e = Assert.Throws<PbsIntegrityException>(() => decoder.Decode(raw, destination));
        Assert.Equal("DecryptionFailed", e.ErrorId);
        Assert.All(destination, b => Assert.True(b is 0 or 0xA5, "destination holds unauthenticated plaintext"));
        Assert.True(destination.AsSpan().IndexOf(plain.AsSpan(100, 32)) < 0);
    }

    [Fact]
    public void FlippedTagOrIv_WithFixedCrc_IsDecryptionFailed()
    {
        using var encoder = new BlobEncoder();
        foreach (var pos in new[] { 12, 27, 28, 43 })
        {
            var raw = encoder.Encode(RandomBytes(1000, pos), NoneKey, false);
            raw[pos] ^= 0x80;
            FixCrc(raw); // the CRC does not cover IV and tag anyway
            using var decoder = new BlobDecoder(NoneKey, ChunkLimit);
            Assert.Equal("DecryptionFailed", Assert.Throws<PbsIntegrityException>(() => decoder.DecodeToArray(raw)).ErrorId);
        }
    }

    [Fact]
    public void EncryptedBlob_WithWrongKey_IsDecryptionFailed()
    {
        using var encoder = new BlobEncoder();
        var raw = encoder.Encode(CompressibleBytes(5000), NoneKey, true);
        using var decoder = new BlobDecoder(new CryptConfig(new byte[32]), ChunkLimit);
        Assert.Equal("DecryptionFailed", Assert.Throws<PbsIntegrityException>(() => decoder.DecodeToArray(raw)).ErrorId);
    }

    [Theory]
    [InlineData(ZstdFrameStyle.Bulk, false)]
    [InlineData(ZstdFrameStyle.Streaming, false)]
    [InlineData(ZstdFrameStyle.Bulk, true)]
    [InlineData(ZstdFrameStyle.Streaming, true)]
    public void CompressedPayload_ExpandingPastTheLimit_IsBlobTooLarge(ZstdFrameStyle style, bool encrypt)
    {
        var plain = new byte[1 << 20]; // zeros: a tiny frame that expands to 1 MiB
        using var encoder = new BlobEncoder { FrameStyle = style };
        var raw = encoder.Encode(plain, encrypt ? NoneKey : null, true);
        Assert.True(raw.Length < 1000);
        using var decoder = new BlobDecoder(NoneKey, 65536);
        var e = Assert.Throws<PbsFormatException>(() => decoder.Decode(raw, new byte[1 << 21]));
        Assert.Equal("BlobTooLarge", e.ErrorId);
        // exactly at the limit is fine
        using var exact = new BlobDecoder(NoneKey, 1 << 20);
        Assert.Equal(plain.Length, exact.Decode(raw, new byte[1 << 20]));
    }

    [Fact]
    public void UncompressedPayload_PastTheLimit_IsBlobTooLarge()
    {
        using var encoder = new BlobEncoder();
        foreach (var key in new[] { null, NoneKey })
        {
            var raw = encoder.Encode(RandomBytes(1001, 1), key, false);
            using var decoder = new BlobDecoder(key, 1000);
            Assert.Equal("BlobTooLarge", Assert.Throws<PbsFormatException>(() => decoder.Decode(raw, new byte[4096])).ErrorId);
            using var ok = new BlobDecoder(key, 1001);
            Assert.Equal(1001, ok.Decode(raw, new byte[1001]));
        }
    }

    [Fact]
    public void GarbageZstdPayload_IsBlobBadCompression()
    {
        var raw = new byte[12 + 20];
        FileFormats.CompressedBlobMagic.CopyTo(raw);
        RandomBytes(20, 5).CopyTo(raw, 12);
        FixCrc(raw);
        using var decoder = new BlobDecoder(null, 65536);
        Assert.Equal("BlobBadCompression", Assert.Throws<PbsFormatException>(() => decoder.DecodeToArray(raw)).ErrorId);
    }

    [Fact]
    public void EncryptedBlob_WithNullKey_IsKeyRequired()
    {
        using var encoder = new BlobEncoder();
        using var decoder = new BlobDecoder(null, ChunkLimit);
        foreach (var compress in new[] { false, true })
        {
            var raw = encoder.Encode(CompressibleBytes(3000), NoneKey, compress);
            var e = Assert.Throws<PbsKeyException>(() => decoder.DecodeToArray(raw));
            Assert.Equal("KeyRequired", e.ErrorId);
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(8)]
    [InlineData(11)]
    public void ShortInput_IsBlobTruncated(int length)
    {
        var raw = new byte[length];
        FileFormats.UncompressedBlobMagic[..Math.Min(8, length)].CopyTo(raw);
        Assert.Equal("BlobTruncated", Assert.Throws<PbsFormatException>(() => DataBlob.GetKind(raw)).ErrorId);
        using var decoder = new BlobDecoder(null, 1024);
        Assert.Equal("BlobTruncated", Assert.Throws<PbsFormatException>(() => decoder.DecodeToArray(raw)).ErrorId);
    }

    [Fact]
    public void EncryptedHeaderCut_IsBlobTruncated()
    {
        using var encoder = new BlobEncoder();
        var raw = encoder.Encode("x"u8, NoneKey, false);
        foreach (var len in new[] { 12, 30, 43 })
            Assert.Equal("BlobTruncated", Assert.Throws<PbsFormatException>(() => DataBlob.GetKind(raw.AsSpan(0, len))).ErrorId);
        Assert.Equal(BlobKind.Encrypted, DataBlob.GetKind(raw.AsSpan(0, 44)));
    }

    [Fact]
    public void UnknownMagic_IsBlobBadMagic()
    {
        var raw = GoldenManifest.Read(GoldenManifest.Instance.ChunkStore.Chunks[0].Path);
        raw[0] ^= 0xFF;
        Assert.Equal("BlobBadMagic", Assert.Throws<PbsFormatException>(() => DataBlob.GetKind(raw)).ErrorId);
        // an index is not a blob
        var fidx = GoldenManifest.Read(GoldenManifest.Instance.Snapshots[0].Archives.First(a => a.IsFixedIndex).Path);
        using var decoder = new BlobDecoder(null, ChunkLimit);
        Assert.Equal("BlobBadMagic", Assert.Throws<PbsFormatException>(() => decoder.DecodeToArray(fidx)).ErrorId);
    }

    [Theory]
    [InlineData("uncompressed")]
    [InlineData("compressed")]
    [InlineData("encrypted")]
    [InlineData("encrypted+compressed")]
    public void GoldenChunk_OneByteShortOrLong_IsRejected(string kind)
    {
        var c = GoldenManifest.Instance.ChunkStore.Chunks.First(c => c.BlobKind == kind);
        var raw = GoldenManifest.Read(c.Path);
        using var decoder = new BlobDecoder(ScryptKey, ChunkLimit);

        var shortRaw = raw[..^1];
        Assert.Equal("BlobCrcMismatch", Assert.Throws<PbsIntegrityException>(() => decoder.Decode(shortRaw, new byte[ChunkLimit])).ErrorId);

        var longRaw = raw.Append((byte)0).ToArray();
        Assert.Equal("BlobCrcMismatch", Assert.Throws<PbsIntegrityException>(() => decoder.Decode(longRaw, new byte[ChunkLimit])).ErrorId);
    }

    [Fact]
    public void TrailingByteWithFixedCrc_DoesNotDecodeToTheOriginal()
    {
        // With the CRC fixed up, a trailing byte can only be caught by the digest (uncompressed), zstd or GCM.
        using var encoder = new BlobEncoder();
        var plain = CompressibleBytes(10_000);
        using var decoder = new BlobDecoder(NoneKey, ChunkLimit);

        var uncompressed = encoder.Encode(plain, null, false).Append((byte)7).ToArray();
        FixCrc(uncompressed);
        var decoded = decoder.DecodeToArray(uncompressed);
        Assert.NotEqual(ChunkVerifier.ComputeDigest(plain, null), ChunkVerifier.ComputeDigest(decoded, null));

        var encrypted = encoder.Encode(plain, NoneKey, true).Append((byte)7).ToArray();
        FixCrc(encrypted);
        Assert.Equal("DecryptionFailed", Assert.Throws<PbsIntegrityException>(() => decoder.DecodeToArray(encrypted)).ErrorId);
    }

    [Fact]
    public void Decoder_IsReusableAfterFailures()
    {
        using var encoder = new BlobEncoder();
        var good = encoder.Encode(CompressibleBytes(30_000), NoneKey, true);
        var goodPlain = encoder.Encode(CompressibleBytes(30_000), null, true);
        var bomb = encoder.Encode(new byte[1 << 20], null, true);
        var tampered = (byte[])good.Clone();
        tampered[50] ^= 1;
        FixCrc(tampered);

        using var decoder = new BlobDecoder(NoneKey, 65536);
        var buffer = new byte[65536];
        for (int round = 0; round < 3; round++)
        {
            Assert.Throws<PbsFormatException>(() => decoder.Decode(bomb, buffer));
            Assert.Equal(CompressibleBytes(30_000), buffer[..decoder.Decode(goodPlain, buffer)]);
            Assert.Throws<PbsIntegrityException>(() => decoder.Decode(tampered, buffer));
            Assert.Equal(CompressibleBytes(30_000), buffer[..decoder.Decode(good, buffer)]);
        }
    }

    [Fact]
    public void DataBlob_Helpers()
    {
        Assert.True(DataBlob.IsEncrypted(BlobKind.Encrypted));
        Assert.True(DataBlob.IsEncrypted(BlobKind.EncryptedCompressed));
        Assert.False(DataBlob.IsEncrypted(BlobKind.Compressed));
        Assert.True(DataBlob.IsCompressed(BlobKind.Compressed));
        Assert.True(DataBlob.IsCompressed(BlobKind.EncryptedCompressed));
        Assert.False(DataBlob.IsCompressed(BlobKind.Uncompressed));
        Assert.Equal(12, DataBlob.HeaderSize(BlobKind.Compressed));
        Assert.Equal(44, DataBlob.HeaderSize(BlobKind.EncryptedCompressed));
        Assert.True(DataBlob.ChunkMustBeEncrypted(CryptMode.Encrypt));
        Assert.False(DataBlob.ChunkMustBeEncrypted(CryptMode.SignOnly));
        Assert.False(DataBlob.ChunkMustBeEncrypted(CryptMode.None));
    }

    [Fact]
    public void Decoder_RejectsBadLimits()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new BlobDecoder(null, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new BlobDecoder(null, FileFormats.MaxBlobSize + 1));
    }
}
