using System.Security.Cryptography;
using System.Text;
using PbsRestore.Formats;

namespace PbsRestore.Fixtures;

/// <summary>The key derivation of a key file written by <see cref="KeyFiles"/>.</summary>
public enum KeyKdf
{
    /// <summary>scrypt n=65536, r=8, p=1 (upstream's default for new keys).</summary>
    Scrypt,

    /// <summary>PBKDF2-HMAC-SHA256 with 65535 iterations.</summary>
    Pbkdf2,

    /// <summary>No password: the raw key is stored.</summary>
    None,
}

/// <summary>Creates PBS key files (JSON, as <c>proxmox-backup-client key create</c> writes them) for test datastores.</summary>
public static class KeyFiles
{
    /// <summary>Parses "scrypt", "pbkdf2" or "none".</summary>
    public static KeyKdf ParseKdf(string text) => text.ToLowerInvariant() switch
    {
        "scrypt" => KeyKdf.Scrypt,
        "pbkdf2" => KeyKdf.Pbkdf2,
        "none" => KeyKdf.None,
        _ => throw new FormatException($"unknown kdf '{text}' (scrypt, pbkdf2, none)"),
    };

    /// <summary>
    /// Creates a key, writes its key file to <paramref name="path"/> (folders created) and returns the opened key.
    /// </summary>
    /// <param name="password">The password (UTF-8); ignored for <see cref="KeyKdf.None"/>.</param>
    /// <param name="rawKey">The 32-byte key; random when null.</param>
    /// <param name="seed">When given (and <paramref name="rawKey"/> is null), key, salt and IV derive from it: the same file every time.</param>
    /// <param name="scryptN">scrypt cost (a power of two); lower it in tests to save time and memory.</param>
    public static CryptConfig Create(string path, string? password, KeyKdf kdf = KeyKdf.Scrypt, byte[]? rawKey = null,
        ulong? seed = null, DateTimeOffset? created = null, string? hint = null, int scryptN = 65536, int pbkdf2Iterations = 65535)
    {
        var config = CreateConfig(password, kdf, rawKey, seed, created, hint, scryptN, pbkdf2Iterations, out var crypt);
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        File.WriteAllText(path, config.ToJson());
        return crypt;
    }

    /// <summary>Creates a key without writing it; returns the key file and the opened key.</summary>
    public static KeyConfig CreateConfig(string? password, KeyKdf kdf, byte[]? rawKey, ulong? seed, DateTimeOffset? created,
        string? hint, int scryptN, int pbkdf2Iterations, out CryptConfig crypt)
    {
        byte[] key = rawKey ?? new byte[32];
        var salt = new byte[32];
        var iv = new byte[16];
        if (seed is { } s)
        {
            if (rawKey is null) Fill(key, s, 1);
            Fill(salt, s, 2);
            Fill(iv, s, 3);
        }
        else
        {
            if (rawKey is null) RandomNumberGenerator.Fill(key);
            RandomNumberGenerator.Fill(salt);
            RandomNumberGenerator.Fill(iv);
        }
        if (key.Length != 32) throw new ArgumentException("a key has 32 bytes", nameof(rawKey));
        if (kdf != KeyKdf.None && string.IsNullOrEmpty(password)) throw new ArgumentException("a password is needed", nameof(password));
        KeyDerivation derivation = kdf switch
        {
            KeyKdf.Scrypt => new KeyDerivation.Scrypt(scryptN, 8, 1, salt),
            KeyKdf.Pbkdf2 => new KeyDerivation.Pbkdf2(pbkdf2Iterations, salt),
            _ => new KeyDerivation.None(),
        };
        var config = KeyConfig.Create(key, derivation, Encoding.UTF8.GetBytes(password ?? ""),
            created ?? DateTimeOffset.UtcNow, iv, hint);
        crypt = new CryptConfig(key);
        return config;
    }

    private static void Fill(byte[] target, ulong seed, ulong purpose)
    {
        var h = SHA256.HashData(Encoding.ASCII.GetBytes($"PbsRestore.Fixtures key {seed} {purpose}"));
        h.AsSpan(0, target.Length).CopyTo(target);
    }
}
