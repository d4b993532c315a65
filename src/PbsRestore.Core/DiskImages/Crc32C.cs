using System.Buffers.Binary;
using System.Numerics;

namespace PbsRestore.DiskImages;

/// <summary>
/// CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected, initial value and final XOR 0xFFFFFFFF), the checksum
/// of the VHDX headers and region tables. System.IO.Hashing 8.0 only has the IEEE CRC-32, so this uses
/// <see cref="BitOperations.Crc32C(uint, ulong)"/>, which runs on the CPU's CRC32 instruction where there is one.
/// </summary>
public static class Crc32C
{
    public static uint Compute(ReadOnlySpan<byte> data) => ~Update(0xFFFFFFFFu, data);

    /// <summary>
    /// The checksum of a structure whose own 4-byte checksum field is at <paramref name="checksumOffset"/>:
    /// computed as if that field were zero, without modifying <paramref name="structure"/>.
    /// </summary>
    public static uint ComputeWithZeroField(ReadOnlySpan<byte> structure, int checksumOffset)
    {
        uint crc = 0xFFFFFFFFu;
        crc = Update(crc, structure[..checksumOffset]);
        crc = Update(crc, stackalloc byte[4]);
        crc = Update(crc, structure[(checksumOffset + 4)..]);
        return ~crc;
    }

    private static uint Update(uint crc, ReadOnlySpan<byte> data)
    {
        while (data.Length >= 8)
        {
            crc = BitOperations.Crc32C(crc, BinaryPrimitives.ReadUInt64LittleEndian(data));
            data = data[8..];
        }
        foreach (byte b in data) crc = BitOperations.Crc32C(crc, b);
        return crc;
    }
}
