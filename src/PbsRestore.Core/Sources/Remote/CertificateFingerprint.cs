using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using PbsRestore.Formats;

namespace PbsRestore.Sources.Remote;

/// <summary>
/// SHA-256 of a certificate's DER bytes, shown as lower-case colon hex (as PBS's dashboard and
/// <c>proxmox-backup-manager cert info</c> print it, and as PBS_FINGERPRINT takes it).
/// </summary>
public readonly struct CertificateFingerprint : IEquatable<CertificateFingerprint>
{
    private readonly byte[]? _bytes;

    private CertificateFingerprint(byte[] bytes) => _bytes = bytes;

    public static CertificateFingerprint Of(X509Certificate certificate) => new(SHA256.HashData(certificate.GetRawCertData()));

    /// <summary>Colon hex (any case), or 64 plain hex digits.</summary>
    public static CertificateFingerprint Parse(string text)
    {
        var bytes = new byte[32];
        if (!Hex.TryParse(text.Trim(), bytes))
            throw new PbsException("FingerprintInvalid", PbsErrorKind.InvalidArgument,
                $"'{text}' is not a certificate fingerprint: expected 32 bytes of colon-separated hex (SHA-256), e.g. 'ab:cd:...'");
        return new CertificateFingerprint(bytes);
    }

    public override string ToString() => _bytes is null ? "" : Hex.Colon(_bytes);

    public bool Equals(CertificateFingerprint other) =>
        _bytes is not null && other._bytes is not null && CryptographicOperations.FixedTimeEquals(_bytes, other._bytes);

    public override bool Equals(object? obj) => obj is CertificateFingerprint f && Equals(f);
    public override int GetHashCode() => _bytes is null ? 0 : BitConverter.ToInt32(_bytes, 0);
    public static bool operator ==(CertificateFingerprint a, CertificateFingerprint b) => a.Equals(b);
    public static bool operator !=(CertificateFingerprint a, CertificateFingerprint b) => !a.Equals(b);
}
