using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace PbsRestore.Formats;

/// <summary>
/// The 32-byte SHA-256 name of a chunk: SHA-256(plaintext), or SHA-256(plaintext || id_key) for encrypted
/// chunks (see <see cref="CryptConfig.ComputeDigest"/>). A value type so that plans and dictionaries stay cheap.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public readonly struct ChunkDigest : IEquatable<ChunkDigest>
{
    public const int Size = 32;
    private readonly ulong _a, _b, _c, _d;

    public ChunkDigest(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length != Size) throw new ArgumentException($"a chunk digest has {Size} bytes, not {bytes.Length}", nameof(bytes));
        _a = BinaryPrimitives.ReadUInt64BigEndian(bytes);
        _b = BinaryPrimitives.ReadUInt64BigEndian(bytes[8..]);
        _c = BinaryPrimitives.ReadUInt64BigEndian(bytes[16..]);
        _d = BinaryPrimitives.ReadUInt64BigEndian(bytes[24..]);
    }

    public void CopyTo(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt64BigEndian(destination, _a);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], _b);
        BinaryPrimitives.WriteUInt64BigEndian(destination[16..], _c);
        BinaryPrimitives.WriteUInt64BigEndian(destination[24..], _d);
    }

    public byte[] ToArray()
    {
        var b = new byte[Size];
        CopyTo(b);
        return b;
    }

    /// <summary>Plain SHA-256 of the data: the digest of an unencrypted (or sign-only) chunk.</summary>
    public static ChunkDigest Compute(ReadOnlySpan<byte> data)
    {
        Span<byte> hash = stackalloc byte[Size];
        SHA256.HashData(data, hash);
        return new ChunkDigest(hash);
    }

    public static ChunkDigest Parse(string hex)
    {
        if (!TryParse(hex, out var d)) throw new FormatException($"'{hex}' is not a 64-digit hexadecimal chunk digest");
        return d;
    }

    public static bool TryParse(string? hex, out ChunkDigest digest)
    {
        digest = default;
        if (hex is null || hex.Length != Size * 2) return false;
        Span<byte> b = stackalloc byte[Size];
        if (hex.Contains(':') || !Hex.TryParse(hex, b)) return false;
        digest = new ChunkDigest(b);
        return true;
    }

    /// <summary>Lower-case hex, as PBS names chunk files.</summary>
    public override string ToString()
    {
        Span<byte> b = stackalloc byte[Size];
        CopyTo(b);
        return Hex.Lower(b);
    }

    public bool Equals(ChunkDigest other) => _a == other._a && _b == other._b && _c == other._c && _d == other._d;
    public override bool Equals(object? obj) => obj is ChunkDigest d && Equals(d);
    public override int GetHashCode() => (int)_a ^ (int)(_a >> 32) ^ (int)_b;
    public static bool operator ==(ChunkDigest x, ChunkDigest y) => x.Equals(y);
    public static bool operator !=(ChunkDigest x, ChunkDigest y) => !x.Equals(y);
}
