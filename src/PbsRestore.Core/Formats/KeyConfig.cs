using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Org.BouncyCastle.Crypto.Generators;

namespace PbsRestore.Formats;

/// <summary>The key derivation of a key file: none (raw key), scrypt or PBKDF2.</summary>
public abstract record KeyDerivation
{
    public sealed record None : KeyDerivation;
    public sealed record Scrypt(int N, int R, int P, byte[] Salt) : KeyDerivation;
    public sealed record Pbkdf2(int Iterations, byte[] Salt) : KeyDerivation;
}

/// <summary>
/// A PBS key file (upstream: pbs-key-config/src/lib.rs): JSON with <c>kdf</c>, <c>created</c>, <c>modified</c>,
/// <c>data</c> and optional <c>fingerprint</c> and <c>hint</c>. With a KDF, <c>data</c> is
/// IV(16) || tag(16) || AES-256-GCM(derived key, IV, "", raw key); without one it is the raw key.
/// </summary>
public sealed class KeyConfig
{
    // Bounds that keep a hostile key file from asking for absurd work or memory.
    private const int MaxScryptN = 1 << 20;
    private const int MaxPbkdf2Iterations = 10_000_000;

    private KeyConfig(KeyDerivation kdf, byte[] data, string created, string modified, KeyFingerprint? fingerprint, string? hint)
    {
        Kdf = kdf;
        Data = data;
        Created = created;
        Modified = modified;
        Fingerprint = fingerprint;
        Hint = hint;
    }

    public KeyDerivation Kdf { get; }
    internal byte[] Data { get; }
    public string Created { get; }
    public string Modified { get; }
    public KeyFingerprint? Fingerprint { get; }
    public string? Hint { get; }

    /// <summary>True when opening the key needs a password.</summary>
    public bool NeedsPassword => Kdf is not KeyDerivation.None;

    public static KeyConfig Parse(ReadOnlySpan<byte> json, string? source = null)
    {
        string where = source is null ? "key file" : $"key file '{source}'";
        try
        {
            var node = JsonNode.Parse(json.ToArray(), documentOptions: new JsonDocumentOptions { MaxDepth = 16 }) as JsonObject
                       ?? throw new PbsKeyException("KeyFileInvalid", $"{where} is not a JSON object");
            var kdf = ParseKdf(node["kdf"], where);
            var data = Convert.FromBase64String(node["data"]?.GetValue<string>() ?? throw new PbsKeyException("KeyFileInvalid", $"{where} has no 'data'"));
            int expected = kdf is KeyDerivation.None ? 32 : 64;
            if (data.Length != expected)
                throw new PbsKeyException("KeyFileInvalid", $"{where}: 'data' has {data.Length} bytes, expected {expected}");
            KeyFingerprint? fp = node["fingerprint"] is JsonValue f ? KeyFingerprint.Parse(f.GetValue<string>()) : null;
            return new KeyConfig(kdf, data,
                node["created"]?.ToString() ?? "", node["modified"]?.ToString() ?? "",
                fp, node["hint"]?.GetValue<string>());
        }
        catch (JsonException e)
        {
            // Not the parser's own words ("'#' is an invalid start of a value..."): say what the file should be.
            string at = e.LineNumber is { } line ? $" (line {line + 1}, byte {(e.BytePositionInLine ?? 0) + 1})" : "";
            throw new PbsKeyException("KeyFileInvalid",
                $"{where} is not a PBS key file: it is not JSON{at}; give the key file that 'proxmox-backup-client key create' writes (a JSON file with kdf, data and fingerprint)", e);
        }
        catch (Exception e) when (e is FormatException or InvalidOperationException or ArgumentException)
        {
            throw new PbsKeyException("KeyFileInvalid", $"{where} is not a valid PBS key file: {e.Message}", e);
        }
    }

    private static KeyDerivation ParseKdf(JsonNode? kdf, string where)
    {
        if (kdf is null) return new KeyDerivation.None();
        if (kdf["Scrypt"] is JsonObject s)
        {
            int n = Required(s, "n", where).GetValue<int>(), r = Required(s, "r", where).GetValue<int>(), p = Required(s, "p", where).GetValue<int>();
            if (n < 2 || n > MaxScryptN || (n & (n - 1)) != 0 || r < 1 || r > 32 || p < 1 || p > 16)
                throw new PbsKeyException("KeyFileInvalid", $"{where}: scrypt parameters out of range (n={n}, r={r}, p={p})");
            return new KeyDerivation.Scrypt(n, r, p, Convert.FromBase64String(Required(s, "salt", where).GetValue<string>()));
        }
        if (kdf["PBKDF2"] is JsonObject pb)
        {
            int iter = Required(pb, "iter", where).GetValue<int>();
            if (iter < 1 || iter > MaxPbkdf2Iterations)
                throw new PbsKeyException("KeyFileInvalid", $"{where}: PBKDF2 iteration count {iter} out of range");
            return new KeyDerivation.Pbkdf2(iter, Convert.FromBase64String(Required(pb, "salt", where).GetValue<string>()));
        }
        throw new PbsKeyException("KeyFileInvalid", $"{where}: unknown kdf {kdf.ToJsonString()}");
    }

    private static JsonNode Required(JsonObject o, string name, string where) =>
        o[name] ?? throw new PbsKeyException("KeyFileInvalid", $"{where}: kdf parameter '{name}' is missing");

    /// <summary>Derives the key-encryption key from the password (UTF-8 bytes).</summary>
    public static byte[] DeriveKey(KeyDerivation kdf, ReadOnlySpan<byte> password) => kdf switch
    {
        KeyDerivation.Scrypt s => SCrypt.Generate(password.ToArray(), s.Salt, s.N, s.R, s.P, 32),
        KeyDerivation.Pbkdf2 p => Rfc2898DeriveBytes.Pbkdf2(password, p.Salt, p.Iterations, HashAlgorithmName.SHA256, 32),
        _ => throw new InvalidOperationException("a key without KDF has no derived key"),
    };

    /// <summary>
    /// Opens the key: derives the key-encryption key from the password, decrypts the raw key, and checks the
    /// stored fingerprint. The password is UTF-8; the caller clears it afterwards.
    /// </summary>
    public CryptConfig Open(ReadOnlySpan<byte> password)
    {
        byte[] rawKey;
        if (Kdf is KeyDerivation.None)
        {
            rawKey = (byte[])Data.Clone();
        }
        else
        {
            if (password.IsEmpty)
                throw new PbsKeyException("KeyPasswordRequired", "the key file is protected by a password, but none was given");
            var kek = DeriveKey(Kdf, password);
            rawKey = new byte[32];
            try
            {
                new CryptConfig(kek).Decrypt(Data.AsSpan(0, 16), Data.AsSpan(16, 16), Data.AsSpan(32), rawKey);
            }
            catch (PbsIntegrityException e)
            {
                throw new PbsKeyException("KeyPasswordWrong", "unable to decrypt the key file: wrong password", e);
            }
            finally
            {
                CryptographicOperations.ZeroMemory(kek);
            }
        }
        try
        {
            var config = new CryptConfig(rawKey);
            if (Fingerprint is { } stored && stored != config.Fingerprint)
                throw new PbsKeyException("KeyFingerprintMismatch",
                    $"the key file's stored fingerprint {stored} does not match its key ({config.Fingerprint})");
            return config;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(rawKey);
        }
    }

    public CryptConfig Open(string? password) =>
        Open(password is null ? ReadOnlySpan<byte>.Empty : Encoding.UTF8.GetBytes(password));

    /// <summary>Creates a key file for <paramref name="rawKey"/> (used by the test datastore writer).</summary>
    public static KeyConfig Create(ReadOnlySpan<byte> rawKey, KeyDerivation kdf, ReadOnlySpan<byte> password,
        DateTimeOffset created, ReadOnlySpan<byte> iv = default, string? hint = null)
    {
        byte[] data;
        if (kdf is KeyDerivation.None)
        {
            data = rawKey.ToArray();
        }
        else
        {
            data = new byte[64];
            if (iv.IsEmpty) RandomNumberGenerator.Fill(data.AsSpan(0, 16)); else iv.CopyTo(data);
            var kek = DeriveKey(kdf, password);
            new CryptConfig(kek).Encrypt(data.AsSpan(0, 16), rawKey, data.AsSpan(32), data.AsSpan(16, 16));
        }
        // Invariant culture: in a custom format ':' is the culture's time separator, which is not ':' everywhere.
        string ts = created.ToUniversalTime().ToString("yyyy'-'MM'-'dd'T'HH':'mm':'ss'+00:00'", CultureInfo.InvariantCulture);
        return new KeyConfig(kdf, data, ts, ts, new CryptConfig(rawKey).Fingerprint, hint);
    }

    public string ToJson()
    {
        var o = new JsonObject
        {
            ["kdf"] = Kdf switch
            {
                KeyDerivation.Scrypt s => new JsonObject { ["Scrypt"] = new JsonObject { ["n"] = s.N, ["r"] = s.R, ["p"] = s.P, ["salt"] = Convert.ToBase64String(s.Salt) } },
                KeyDerivation.Pbkdf2 p => new JsonObject { ["PBKDF2"] = new JsonObject { ["iter"] = p.Iterations, ["salt"] = Convert.ToBase64String(p.Salt) } },
                _ => null,
            },
            ["created"] = Created,
            ["modified"] = Modified,
            ["data"] = Convert.ToBase64String(Data),
        };
        if (Fingerprint is { } fp) o["fingerprint"] = fp.ToString();
        if (Hint is not null) o["hint"] = Hint;
        // Relaxed escaping: base64 '+' stays '+', as in upstream's key files.
        return o.ToJsonString(new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
    }

    public override string ToString() => $"KeyConfig kdf={Kdf.GetType().Name} fingerprint={Fingerprint?.ToShortString()}";
}
