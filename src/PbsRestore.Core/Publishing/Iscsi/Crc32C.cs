using System.Buffers.Binary;
using System.Runtime.Intrinsics.X86;

namespace PbsRestore.Publishing.Iscsi;

/// <summary>
/// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the iSCSI header and data digest (RFC 7143 §13.1,
/// RFC 3720 appendix B.4). .NET 8 has no built-in CRC32C; SSE4.2 computes it in hardware, a slicing table otherwise.
/// The digest goes on the wire least significant byte first.
/// </summary>
public static class Crc32C
{
    private static readonly uint[] Table = BuildTable();

    /// <summary>The CRC32C of <paramref name="data"/> (initial value and final XOR 0xFFFFFFFF).</summary>
    public static uint Compute(ReadOnlySpan<byte> data) => ~Update(0xFFFFFFFFu, data);

    /// <summary>Continues a running (not yet inverted) CRC; start from 0xFFFFFFFF and invert at the end.</summary>
    public static uint Update(uint crc, ReadOnlySpan<byte> data)
    {
        if (Sse42.X64.IsSupported)
        {
            ulong c = crc;
            while (data.Length >= 8)
            {
                c = Sse42.X64.Crc32(c, BinaryPrimitives.ReadUInt64LittleEndian(data));
                data = data[8..];
            }
            crc = (uint)c;
        }
        if (Sse42.IsSupported)
        {
            foreach (byte b in data) crc = Sse42.Crc32(crc, b);
            return crc;
        }
        foreach (byte b in data) crc = Table[(crc ^ b) & 0xFF] ^ (crc >> 8);
        return crc;
    }

    /// <summary>The software path, always (tests compare it with the hardware one).</summary>
    internal static uint ComputeSoftware(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFFu;
        foreach (byte b in data) crc = Table[(crc ^ b) & 0xFF] ^ (crc >> 8);
        return ~crc;
    }

    private static uint[] BuildTable()
    {
        var t = new uint[256];
        for (uint i = 0; i < 256; i++)
        {
            uint c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
            t[i] = c;
        }
        return t;
    }
}
