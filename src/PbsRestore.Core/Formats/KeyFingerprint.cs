namespace PbsRestore.Formats;

/// <summary>
/// The fingerprint of an encryption key: SHA-256(FingerprintInput || id_key). PBS stores and compares all
/// 32 bytes (manifest <c>unprotected.key-fingerprint</c>, key file <c>fingerprint</c>) as colon hex; its
/// user interface often shows only the first 8 bytes (<see cref="ToShortString"/>).
/// </summary>
public readonly struct KeyFingerprint : IEquatable<KeyFingerprint>
{
    private readonly ChunkDigest _value;

    public KeyFingerprint(ReadOnlySpan<byte> bytes) => _value = new ChunkDigest(bytes);

    public static KeyFingerprint Parse(string text)
    {
        Span<byte> b = stackalloc byte[32];
        if (!Hex.TryParse(text, b)) throw new FormatException($"'{text}' is not a 32-byte key fingerprint");
        return new KeyFingerprint(b);
    }

    public override string ToString()
    {
        Span<byte> b = stackalloc byte[32];
        _value.CopyTo(b);
        return Hex.Colon(b);
    }

    public string ToShortString() => ToString()[..23];

    public bool Equals(KeyFingerprint other) => _value == other._value;
    public override bool Equals(object? obj) => obj is KeyFingerprint f && Equals(f);
    public override int GetHashCode() => _value.GetHashCode();
    public static bool operator ==(KeyFingerprint x, KeyFingerprint y) => x.Equals(y);
    public static bool operator !=(KeyFingerprint x, KeyFingerprint y) => !x.Equals(y);
}
