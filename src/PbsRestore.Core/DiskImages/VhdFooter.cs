using System.Buffers.Binary;

namespace PbsRestore.DiskImages;

/// <summary>
/// The 512-byte footer of a FIXED VHD ("Virtual Hard Disk Image Format Specification", Microsoft, 2006): the raw
/// disk bytes followed by this footer are the whole file. Fields are big-endian. Pure: builds and parses spans.
/// <para>
/// Size: Azure accepts only fixed VHDs whose virtual size is a whole number of MiB, so <see cref="RoundSize"/> rounds
/// the disk up to the next multiple of 1 MiB; the bytes past the requested size read as zeros.
/// </para>
/// </summary>
public sealed record VhdFooter(ulong OriginalSize, ulong CurrentSize, uint TimeStamp, Guid UniqueId)
{
    public const int Size = 512;
    public const uint DiskTypeFixed = 2;
    public const long SizeAlignment = 1 << 20;

    /// <summary>
    /// "win ": QEMU (and readers that follow it) size a VHD by its CHS geometry, which rounds down, unless the creator
    /// application is one of those known to use Current Size; Hyper-V's value is one of them. The field is informational
    /// in the spec, so this choice only decides that every reader sees the full Current Size.
    /// </summary>
    public static ReadOnlySpan<byte> CreatorApplication => "win "u8;

    /// <summary>"Wi2k", the spec's value for Windows hosts; only informational.</summary>
    public static ReadOnlySpan<byte> CreatorHostOs => "Wi2k"u8;

    /// <summary>Major.minor of the creating application in the high and low 16 bits: PbsRestore 0.1.</summary>
    public const uint CreatorVersion = 0x00000001;

    private static readonly DateTime Epoch = new(2000, 1, 1, 0, 0, 0, DateTimeKind.Utc);
    private const int ChecksumOffset = 64;

    /// <summary>The requested size rounded up to a multiple of 1 MiB (what Azure requires of a fixed VHD).</summary>
    public static long RoundSize(long requestedSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(requestedSize);
        return (requestedSize + SizeAlignment - 1) / SizeAlignment * SizeAlignment;
    }

    /// <summary>A footer for a fixed disk of <paramref name="size"/> bytes created at <paramref name="created"/>.</summary>
    public static VhdFooter ForFixedDisk(long size, DateTimeOffset created, Guid uniqueId) =>
        new((ulong)size, (ulong)size, TimeStampOf(created), uniqueId);

    /// <summary>Seconds since 2000-01-01 00:00:00 UTC, as the spec counts them.</summary>
    public static uint TimeStampOf(DateTimeOffset time)
    {
        double seconds = (time.UtcDateTime - Epoch).TotalSeconds;
        return seconds <= 0 ? 0 : seconds >= uint.MaxValue ? uint.MaxValue : (uint)seconds;
    }

    /// <summary>The CHS geometry of this disk (spec algorithm, from <see cref="CurrentSize"/>).</summary>
    public (ushort Cylinders, byte Heads, byte SectorsPerTrack) Geometry => ComputeGeometry((long)(CurrentSize / 512));

    /// <summary>
    /// The spec's CHS algorithm (Appendix, "CHS Calculation"): sizes beyond 65535 × 16 × 255 sectors (about 127 GiB)
    /// get that maximum geometry; readers then go by Current Size.
    /// </summary>
    public static (ushort Cylinders, byte Heads, byte SectorsPerTrack) ComputeGeometry(long totalSectors)
    {
        long sectors = Math.Min(totalSectors, 65535L * 16 * 255);
        long sectorsPerTrack, heads, cylinderTimesHeads;
        if (sectors >= 65535L * 16 * 63)
        {
            sectorsPerTrack = 255;
            heads = 16;
            cylinderTimesHeads = sectors / sectorsPerTrack;
        }
        else
        {
            sectorsPerTrack = 17;
            cylinderTimesHeads = sectors / sectorsPerTrack;
            heads = (cylinderTimesHeads + 1023) / 1024;
            if (heads < 4) heads = 4;
            if (cylinderTimesHeads >= heads * 1024 || heads > 16)
            {
                sectorsPerTrack = 31;
                heads = 16;
                cylinderTimesHeads = sectors / sectorsPerTrack;
            }
            if (cylinderTimesHeads >= heads * 1024)
            {
                sectorsPerTrack = 63;
                heads = 16;
                cylinderTimesHeads = sectors / sectorsPerTrack;
            }
        }
        return ((ushort)(cylinderTimesHeads / heads), (byte)heads, (byte)sectorsPerTrack);
    }

    /// <summary>Writes the 512 bytes: cookie "conectix", features 2 (reserved bit), version 1.0, data offset all ones (fixed disk), checksum.</summary>
    public void Write(Span<byte> destination)
    {
        var f = destination[..Size];
        f.Clear();
        "conectix"u8.CopyTo(f);
        BinaryPrimitives.WriteUInt32BigEndian(f[8..], 2);
        BinaryPrimitives.WriteUInt32BigEndian(f[12..], 0x00010000);
        BinaryPrimitives.WriteUInt64BigEndian(f[16..], ulong.MaxValue);
        BinaryPrimitives.WriteUInt32BigEndian(f[24..], TimeStamp);
        CreatorApplication.CopyTo(f[28..]);
        BinaryPrimitives.WriteUInt32BigEndian(f[32..], CreatorVersion);
        CreatorHostOs.CopyTo(f[36..]);
        BinaryPrimitives.WriteUInt64BigEndian(f[40..], OriginalSize);
        BinaryPrimitives.WriteUInt64BigEndian(f[48..], CurrentSize);
        var (c, h, s) = Geometry;
        BinaryPrimitives.WriteUInt16BigEndian(f[56..], c);
        f[58] = h;
        f[59] = s;
        BinaryPrimitives.WriteUInt32BigEndian(f[60..], DiskTypeFixed);
        // The unique id is stored as its 16 bytes in the RFC 4122 (big-endian) order.
        UniqueId.TryWriteBytes(f[68..], bigEndian: true, out _);
        f[84] = 0; // saved state
        BinaryPrimitives.WriteUInt32BigEndian(f[ChecksumOffset..], Checksum(f));
    }

    /// <summary>One's complement of the byte sum of the footer, skipping the checksum field.</summary>
    public static uint Checksum(ReadOnlySpan<byte> footer)
    {
        uint sum = 0;
        for (int i = 0; i < Size; i++)
            if (i is < ChecksumOffset or >= ChecksumOffset + 4) sum += footer[i];
        return ~sum;
    }

    /// <summary>Parses a fixed-disk footer; null when the cookie, checksum or disk type is wrong.</summary>
    public static VhdFooter? TryParseFixed(ReadOnlySpan<byte> source)
    {
        if (source.Length < Size) return null;
        var f = source[..Size];
        if (!f[..8].SequenceEqual("conectix"u8)) return null;
        if (BinaryPrimitives.ReadUInt32BigEndian(f[ChecksumOffset..]) != Checksum(f)) return null;
        if (BinaryPrimitives.ReadUInt32BigEndian(f[60..]) != DiskTypeFixed) return null;
        return new VhdFooter(BinaryPrimitives.ReadUInt64BigEndian(f[40..]), BinaryPrimitives.ReadUInt64BigEndian(f[48..]),
            BinaryPrimitives.ReadUInt32BigEndian(f[24..]), new Guid(f.Slice(68, 16), bigEndian: true));
    }
}
