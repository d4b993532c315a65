using System.Buffers.Binary;

namespace PbsRestore.Formats.Pxar;

/// <summary>
/// Constants of the pxar archive format (upstream: proxmox/pxar src/format/mod.rs). Every item starts with a
/// 16-byte header: type (u64 LE, a hash of the item's name) and full size including the header.
/// </summary>
public static class PxarFormat
{
    public const int HeaderSize = 16;
    public const int GoodbyeItemSize = 24;

    public const ulong FormatVersion = 0x730f6c75df16a40d;
    public const ulong Entry = 0xd5956474e588acef;
    public const ulong EntryV1 = 0x11da850a1c1cceff;
    public const ulong Prelude = 0xe309d79d9f7b771b;
    public const ulong Filename = 0x16701121063917b3;
    public const ulong Symlink = 0x27f971e7dbf5dc5f;
    public const ulong Device = 0x9fc9e906586d5ce9;
    public const ulong Xattr = 0x0dab0229b57dcd03;
    public const ulong AclUser = 0x2ce8540a457d55b8;
    public const ulong AclGroup = 0x136e3eceb04c03ab;
    public const ulong AclGroupObj = 0x10868031e9582876;
    public const ulong AclDefault = 0xbbbb13415a6896f5;
    public const ulong AclDefaultUser = 0xc89357b40532cd1f;
    public const ulong AclDefaultGroup = 0xf90a8a5816038ffe;
    public const ulong FCaps = 0x2da9dd9db5f7fb67;
    public const ulong QuotaProjectId = 0xe07540e82f7d1cbb;
    public const ulong Hardlink = 0x51269c8422bd7275;
    public const ulong Payload = 0x28147a1b0b7c1a25;
    public const ulong PayloadRef = 0x419d3d6bc4ba977e;
    public const ulong Goodbye = 0x2fec4fa642d5731d;
    public const ulong GoodbyeTailMarker = 0xef5eed5b753e1555;
    public const ulong PayloadStartMarker = 0x834c68c2194a4ed2;
    public const ulong PayloadTailMarker = 0x6c72b78b984c81b5;

    /// <summary>The SipHash-2-4 keys of goodbye-table hashes (the first 16 bytes of SHA-1 of a fixed text, upstream).</summary>
    public const ulong HashKey1 = 0x83ac3f1cfbb450db, HashKey2 = 0xaa4f1b6879369fbd;

    /// <summary>Longest path (symlink, hardlink target) and file name upstream accepts.</summary>
    public const int MaxPathLength = 4096, MaxFilenameLength = 4096;
    /// <summary>Longest xattr or fcaps item (name, NUL and value).</summary>
    public const int MaxXattrLength = 255 + 64 * 1024;

    /// <summary>File-type bits of the mode, fixed by the format (they are Linux's).</summary>
    public const ulong ModeTypeMask = 0xF000, ModeSocket = 0xC000, ModeSymlink = 0xA000, ModeRegular = 0x8000,
        ModeBlockDevice = 0x6000, ModeDirectory = 0x4000, ModeCharDevice = 0x2000, ModeFifo = 0x1000;

    /// <summary>Upstream's ACL "no mask" value for permissions.</summary>
    public const ulong AclNoMask = ulong.MaxValue;

    /// <summary>The goodbye-table hash of a file name: SipHash-2-4 with the format's keys.</summary>
    public static ulong HashFilename(ReadOnlySpan<byte> name) => SipHash24.Hash(HashKey1, HashKey2, name);

    /// <summary>A short name for an item type, for errors.</summary>
    public static string Describe(ulong type) => type switch
    {
        FormatVersion => "FORMAT_VERSION", Entry => "ENTRY", EntryV1 => "ENTRY_V1", Prelude => "PRELUDE", Filename => "FILENAME",
        Symlink => "SYMLINK", Device => "DEVICE", Xattr => "XATTR", AclUser => "ACL_USER", AclGroup => "ACL_GROUP",
        AclGroupObj => "ACL_GROUP_OBJ", AclDefault => "ACL_DEFAULT", AclDefaultUser => "ACL_DEFAULT_USER",
        AclDefaultGroup => "ACL_DEFAULT_GROUP", FCaps => "FCAPS", QuotaProjectId => "QUOTA_PROJID", Hardlink => "HARDLINK",
        Payload => "PAYLOAD", PayloadRef => "PAYLOAD_REF", Goodbye => "GOODBYE", PayloadStartMarker => "PAYLOAD_START_MARKER",
        PayloadTailMarker => "PAYLOAD_TAIL_MARKER", _ => $"unknown item 0x{type:x16}",
    };

    public static void WriteHeader(Span<byte> destination, ulong type, ulong fullSize)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(destination, type);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[8..], fullSize);
    }
}

/// <summary>SipHash-2-4 (Aumasson and Bernstein), 64-bit output, as the pxar goodbye tables use it.</summary>
public static class SipHash24
{
    public static ulong Hash(ulong k0, ulong k1, ReadOnlySpan<byte> data)
    {
        ulong v0 = 0x736f6d6570736575UL ^ k0, v1 = 0x646f72616e646f6dUL ^ k1;
        ulong v2 = 0x6c7967656e657261UL ^ k0, v3 = 0x7465646279746573UL ^ k1;
        int blocks = data.Length / 8;
        for (int i = 0; i < blocks; i++)
        {
            ulong m = BinaryPrimitives.ReadUInt64LittleEndian(data[(i * 8)..]);
            v3 ^= m;
            Round(ref v0, ref v1, ref v2, ref v3);
            Round(ref v0, ref v1, ref v2, ref v3);
            v0 ^= m;
        }
        ulong last = (ulong)data.Length << 56;
        var tail = data[(blocks * 8)..];
        for (int i = 0; i < tail.Length; i++) last |= (ulong)tail[i] << (8 * i);
        v3 ^= last;
        Round(ref v0, ref v1, ref v2, ref v3);
        Round(ref v0, ref v1, ref v2, ref v3);
        v0 ^= last;
        v2 ^= 0xff;
        for (int i = 0; i < 4; i++) Round(ref v0, ref v1, ref v2, ref v3);
        return v0 ^ v1 ^ v2 ^ v3;
    }

    private static void Round(ref ulong v0, ref ulong v1, ref ulong v2, ref ulong v3)
    {
        v0 += v1; v1 = ulong.RotateLeft(v1, 13); v1 ^= v0; v0 = ulong.RotateLeft(v0, 32);
        v2 += v3; v3 = ulong.RotateLeft(v3, 16); v3 ^= v2;
        v0 += v3; v3 = ulong.RotateLeft(v3, 21); v3 ^= v0;
        v2 += v1; v1 = ulong.RotateLeft(v1, 17); v1 ^= v2; v2 = ulong.RotateLeft(v2, 32);
    }
}
