using System.Security.Cryptography;
using Org.BouncyCastle.Crypto;
using Org.BouncyCastle.Crypto.Engines;
using Org.BouncyCastle.Crypto.Modes;
using Org.BouncyCastle.Crypto.Parameters;

namespace PbsRestore.Formats;

/// <summary>
/// An opened encryption key (upstream: pbs-tools/src/crypt_config.rs): the 32-byte AES-256 key plus the
/// id key derived from it, which namespaces chunk digests and signs manifests. Thread-safe; the key bytes
/// are never shown by ToString.
/// </summary>
public sealed class CryptConfig
{
    private readonly byte[] _encKey;
    private readonly byte[] _idKey;

    public CryptConfig(ReadOnlySpan<byte> encryptionKey)
    {
        if (encryptionKey.Length != 32) throw new ArgumentException("an encryption key has 32 bytes", nameof(encryptionKey));
        _encKey = encryptionKey.ToArray();
        // id_key = PBKDF2-HMAC-SHA256(password = key, salt = "_id_key", 10 rounds): keyed digests and signatures
        // must not reveal anything about the encryption key itself.
        _idKey = Rfc2898DeriveBytes.Pbkdf2(_encKey, "_id_key"u8, 10, HashAlgorithmName.SHA256, 32);
        Fingerprint = new KeyFingerprint(ComputeDigest(FileFormats.FingerprintInput).ToArray());
    }

    public KeyFingerprint Fingerprint { get; }

    internal ReadOnlySpan<byte> IdKey => _idKey;

    /// <summary>SHA-256(data || id_key): the name of an encrypted chunk. The key goes last to rule out length extension.</summary>
    public ChunkDigest ComputeDigest(ReadOnlySpan<byte> data)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(data);
        sha.AppendData(_idKey);
        Span<byte> hash = stackalloc byte[32];
        sha.GetHashAndReset(hash);
        return new ChunkDigest(hash);
    }

    /// <summary>HMAC-SHA256 keyed with the id key: the manifest signature.</summary>
    public byte[] ComputeAuthTag(ReadOnlySpan<byte> data) => HMACSHA256.HashData(_idKey, data);

    /// <summary>
    /// AES-256-GCM decryption with PBS's 16-byte IV and empty AAD. .NET's AesGcm only takes 12-byte nonces,
    /// so BouncyCastle's GCM does this. Throws <see cref="PbsIntegrityException"/> when the tag does not match;
    /// the plaintext buffer is then cleared so no unauthenticated byte leaks out.
    /// </summary>
    public void Decrypt(ReadOnlySpan<byte> iv, ReadOnlySpan<byte> tag, ReadOnlySpan<byte> ciphertext, Span<byte> plaintext)
    {
        if (plaintext.Length < ciphertext.Length) throw new ArgumentException("plaintext buffer too small", nameof(plaintext));
        var gcm = NewGcm(false, iv);
        try
        {
            int n = gcm.ProcessBytes(ciphertext, plaintext);
            n += gcm.ProcessBytes(tag, plaintext[n..]);
            gcm.DoFinal(plaintext[n..]);
        }
        catch (InvalidCipherTextException e)
        {
            plaintext[..ciphertext.Length].Clear();
            throw new PbsIntegrityException("DecryptionFailed", "AES-GCM authentication tag mismatch (wrong key or corrupted data)", e);
        }
    }

    /// <summary>AES-256-GCM encryption; writes ciphertext (same length as plaintext) and the 16-byte tag.</summary>
    public void Encrypt(ReadOnlySpan<byte> iv, ReadOnlySpan<byte> plaintext, Span<byte> ciphertext, Span<byte> tag)
    {
        var gcm = NewGcm(true, iv);
        Span<byte> buffer = plaintext.Length + 16 <= 1024 ? stackalloc byte[plaintext.Length + 16] : new byte[plaintext.Length + 16];
        int n = gcm.ProcessBytes(plaintext, buffer);
        n += gcm.DoFinal(buffer[n..]);
        buffer[..plaintext.Length].CopyTo(ciphertext);
        buffer.Slice(plaintext.Length, 16).CopyTo(tag);
    }

    private GcmBlockCipher NewGcm(bool forEncryption, ReadOnlySpan<byte> iv)
    {
        if (iv.Length != FileFormats.IvSize) throw new ArgumentException("PBS uses a 16-byte IV", nameof(iv));
        var gcm = new GcmBlockCipher(AesUtilities.CreateEngine());
        gcm.Init(forEncryption, new AeadParameters(new KeyParameter(_encKey), 128, iv.ToArray()));
        return gcm;
    }

    public override string ToString() => $"CryptConfig {Fingerprint.ToShortString()}";
}
