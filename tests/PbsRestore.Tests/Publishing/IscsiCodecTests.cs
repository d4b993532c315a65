using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using PbsRestore.Publishing.Iscsi;

namespace PbsRestore.Tests.Publishing;

public class Crc32CTests
{
    // RFC 3720 appendix B.4: 32-byte inputs and their CRC32C as it appears on the wire (least significant byte first).
    [Theory]
    [InlineData("zeros", "aa36918a")]
    [InlineData("ones", "43aba862")]
    [InlineData("incrementing", "4e79dd46")]
    [InlineData("decrementing", "5cdb3f11")]
    public void Rfc3720_vectors(string pattern, string wireHex)
    {
        byte[] data = pattern switch
        {
            "zeros" => new byte[32],
            "ones" => Enumerable.Repeat((byte)0xFF, 32).ToArray(),
            "incrementing" => Enumerable.Range(0, 32).Select(i => (byte)i).ToArray(),
            _ => Enumerable.Range(0, 32).Select(i => (byte)(31 - i)).ToArray(),
        };
        var wire = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(wire, Crc32C.Compute(data));
        Assert.Equal(wireHex, Convert.ToHexString(wire).ToLowerInvariant());
        BinaryPrimitives.WriteUInt32LittleEndian(wire, Crc32C.ComputeSoftware(data));
        Assert.Equal(wireHex, Convert.ToHexString(wire).ToLowerInvariant());
    }

    [Fact]
    public void Rfc3720_scsi_read_pdu_vector()
    {
        // B.4's iSCSI Read (10) command PDU (48 bytes); its CRC goes on the wire as 56 3a 96 d9.
        byte[] pdu = Convert.FromHexString(
            "01c00000" + "000000000000000000000000" + "14000000" + "00000400" + "00000014" + "00000018" +
            "28000000" + "00000000" + "02000000" + "00000000");
        Assert.Equal(0xd9963a56u, Crc32C.Compute(pdu));
    }

    [Fact]
    public void Hardware_and_software_agree_on_every_length()
    {
        var rng = new Random(7);
        for (int n = 0; n < 300; n++)
        {
            var data = new byte[n];
            rng.NextBytes(data);
            Assert.Equal(Crc32C.ComputeSoftware(data), Crc32C.Compute(data));
            if (n > 10) Assert.Equal(Crc32C.Compute(data), ~Crc32C.Update(Crc32C.Update(0xFFFFFFFF, data.AsSpan(0, 5)), data.AsSpan(5)));
        }
    }
}

public class PduCodecTests
{
    [Theory]
    [InlineData(false, false, 0)]
    [InlineData(true, true, 0)]
    [InlineData(true, true, 1)]
    [InlineData(false, true, 4097)]
    [InlineData(true, false, 65536)]
    public async Task Written_pdus_read_back_with_digests_and_padding(bool headerDigest, bool dataDigest, int dataLength)
    {
        var limits = new PduLimits { HeaderDigest = headerDigest, DataDigest = dataDigest, MaxRecvDataSegment = 1 << 20 };
        var ms = new MemoryStream();
        var writer = new PduWriter(ms, limits);
        var data = RandomNumberGenerator.GetBytes(dataLength);
        var bhs = PduWriter.NewBhs(Opcode.DataIn, 0x81);
        PduWriter.Put32(bhs, 16, 0x12345678);
        await writer.WriteAsync(bhs, data, default);
        int expected = 48 + (headerDigest ? 4 : 0) + ((dataLength + 3) & ~3) + (dataDigest && dataLength > 0 ? 4 : 0);
        Assert.Equal(expected, ms.Length);
        ms.Position = 0;
        using var pdu = await PduReader.ReadAsync(ms, limits, default);
        Assert.NotNull(pdu);
        Assert.Equal(Opcode.DataIn, pdu!.Opcode);
        Assert.Equal(0x12345678u, pdu.InitiatorTaskTag);
        Assert.True(pdu.Final);
        Assert.Equal(data, pdu.Data.ToArray());
        Assert.Null(await PduReader.ReadAsync(ms, limits, default)); // clean end of stream
    }

    [Fact]
    public async Task A_data_segment_beyond_MaxRecvDataSegmentLength_is_refused_before_it_is_read()
    {
        var bhs = new byte[48];
        bhs[0] = 0x01;
        bhs[5] = 0xFF; bhs[6] = 0xFF; bhs[7] = 0xFF; // 16 MiB - 1 announced, nothing sent
        var ex = await Assert.ThrowsAsync<IscsiProtocolException>(async () =>
            await PduReader.ReadAsync(new MemoryStream(bhs), new PduLimits { MaxRecvDataSegment = 8192 }, default));
        Assert.Contains("exceeds MaxRecvDataSegmentLength 8192", ex.Message);
    }

    [Fact]
    public async Task Corrupt_digests_and_truncation_are_protocol_errors()
    {
        var limits = new PduLimits { HeaderDigest = true, DataDigest = true };
        var ms = new MemoryStream();
        await new PduWriter(ms, limits).WriteAsync(PduWriter.NewBhs(Opcode.NopIn, 0x80), new byte[] { 1, 2, 3, 4, 5 }, default);
        byte[] good = ms.ToArray();

        var badHeader = (byte[])good.Clone();
        badHeader[20] ^= 1;
        Assert.Contains("header digest", (await Assert.ThrowsAsync<IscsiProtocolException>(async () => await PduReader.ReadAsync(new MemoryStream(badHeader), limits, default))).Message);

        var badData = (byte[])good.Clone();
        badData[53] ^= 1;
        Assert.Contains("data digest", (await Assert.ThrowsAsync<IscsiProtocolException>(async () => await PduReader.ReadAsync(new MemoryStream(badData), limits, default))).Message);

        Assert.Contains("closed inside a PDU", (await Assert.ThrowsAsync<IscsiProtocolException>(async () => await PduReader.ReadAsync(new MemoryStream(good[..30]), limits, default))).Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(255)]
    [InlineData(256)]
    [InlineData(16383)]
    public void Lun_fields_round_trip(int lun) => Assert.Equal(lun, Pdu.DecodeLun(Pdu.EncodeLun(lun)));

    [Fact]
    public void Lun_fields_with_other_addressing_are_not_a_lun() => Assert.Equal(-1, Pdu.DecodeLun(0x8000_0000_0000_0000UL));

    [Fact]
    public void Text_keys_parse_in_order_and_refuse_duplicates_and_bad_pairs()
    {
        var ok = TextKeys.Parse(Encoding.UTF8.GetBytes("A=1\0B=x,y\0\0\0"), out var err);
        Assert.Null(err);
        Assert.Equal(["A", "B"], ok!.Select(k => k.Key));
        Assert.Equal("x,y", ok![1].Value);
        Assert.Null(TextKeys.Parse(Encoding.UTF8.GetBytes("A=1\0A=2\0"), out err));
        Assert.Contains("twice", err);
        Assert.Null(TextKeys.Parse(Encoding.UTF8.GetBytes("novalue\0"), out err));
        Assert.Null(TextKeys.Parse(new byte[] { (byte)'K', (byte)'=', 0xFF, 0 }, out err));
        Assert.Contains("UTF-8", err);
    }

    [Theory]
    [InlineData("iqn.2024-01.org.pbsrestore:vm-100", true)]
    [InlineData("eui.0123456789abcdef", true)]
    [InlineData("naa.52004567ba64678d", true)]
    [InlineData("IQN.2024-01.org.x", false)]
    [InlineData("iqn.24-01.org.x", false)]
    [InlineData("", false)]
    public void Iscsi_names_are_checked(string name, bool valid) => Assert.Equal(valid, IscsiNames.IsValid(name));

    [Fact]
    public void Target_names_from_archive_names_are_valid() =>
        Assert.True(IscsiNames.IsValid(IscsiNames.ForTarget("vm/100/2024-05-01T10:00:00Z drive-scsi0.img")));
}
