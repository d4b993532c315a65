using System.Text;
using System.Text.Json.Nodes;
using PbsRestore.Formats;
using static PbsRestore.Tests.Formats.FormatsTestSupport;

namespace PbsRestore.Tests.Formats;

public class KeyConfigTests
{
    private static GoldenKey ScryptGolden => GoldenManifest.Instance.Key("scrypt.key.json");
    private static GoldenKey NoneGolden => GoldenManifest.Instance.Key("none.key.json");

    private static KeyConfig ParseGolden(GoldenKey k) => KeyConfig.Parse(GoldenManifest.Read(k.Path), k.Name);

    [Fact]
    public void ScryptKeyFile_Parses()
    {
        var k = ParseGolden(ScryptGolden);
        var kdf = Assert.IsType<KeyDerivation.Scrypt>(k.Kdf);
        Assert.Equal((65536, 8, 1), (kdf.N, kdf.R, kdf.P));
        Assert.Equal(Convert.FromBase64String("SHu6RMktwZsibOgU4cXMyjk4DgBXoYGDuUbeeoPvzuY="), kdf.Salt);
        Assert.True(k.NeedsPassword);
        Assert.Equal("2024-04-30T18:00:00+00:00", k.Created);
        Assert.Equal("2024-04-30T18:00:00+00:00", k.Modified);
        Assert.Equal(ScryptGolden.Fingerprint, k.Fingerprint?.ToString());
        Assert.Null(k.Hint);
        Assert.Equal(64, k.Data.Length);
    }

    [Fact]
    public void ScryptKey_OpensWithItsPassword_AndMatchesTheGoldenKey()
    {
        var crypt = ScryptKey; // KeyConfig.Parse(...).Open("golden-shared-scrypt-pass")
        Assert.Equal(ScryptGolden.Fingerprint, crypt.Fingerprint.ToString());
        Assert.Equal(ScryptGolden.FingerprintShort, crypt.Fingerprint.ToShortString());
        Assert.Equal(ScryptGolden.IdKeyHex, HexLower(crypt.IdKey));
        // the raw key gives the same CryptConfig
        var fromRaw = new CryptConfig(FromHex(ScryptGolden.RawKeyHex));
        Assert.Equal(crypt.Fingerprint, fromRaw.Fingerprint);
        Assert.Equal(ScryptGolden.IdKeyHex, HexLower(fromRaw.IdKey));
        Assert.Equal(ScryptPassword, ScryptGolden.Password);
    }

    [Fact]
    public void NoneKey_OpensWithoutPassword()
    {
        var k = ParseGolden(NoneGolden);
        Assert.IsType<KeyDerivation.None>(k.Kdf);
        Assert.False(k.NeedsPassword);
        Assert.Equal(FromHex(NoneGolden.RawKeyHex), k.Data);
        var crypt = k.Open((string?)null);
        Assert.Equal(NoneGolden.Fingerprint, crypt.Fingerprint.ToString());
        Assert.Equal(NoneGolden.FingerprintShort, crypt.Fingerprint.ToShortString());
        Assert.Equal(NoneGolden.IdKeyHex, HexLower(crypt.IdKey));
        // a password given anyway is ignored
        Assert.Equal(crypt.Fingerprint, k.Open("whatever").Fingerprint);
    }

    [Fact]
    public void ScryptKey_WrongPassword_IsKeyPasswordWrong()
    {
        var e = Assert.Throws<PbsKeyException>(() => ParseGolden(ScryptGolden).Open("golden-shared-scrypt-pasS"));
        Assert.Equal("KeyPasswordWrong", e.ErrorId);
        Assert.Equal(PbsErrorKind.Authentication, e.Kind);
    }

    [Fact]
    public void ScryptKey_NoPassword_IsKeyPasswordRequired()
    {
        var k = ParseGolden(ScryptGolden);
        Assert.Equal("KeyPasswordRequired", Assert.Throws<PbsKeyException>(() => k.Open((string?)null)).ErrorId);
        Assert.Equal("KeyPasswordRequired", Assert.Throws<PbsKeyException>(() => k.Open(ReadOnlySpan<byte>.Empty)).ErrorId);
    }

    [Fact]
    public void TamperedStoredFingerprint_IsKeyFingerprintMismatch()
    {
        var json = JsonNode.Parse(GoldenManifest.Read(NoneGolden.Path))!.AsObject();
        json["fingerprint"] = ScryptGolden.Fingerprint; // a valid fingerprint, of another key
        var k = KeyConfig.Parse(Encoding.UTF8.GetBytes(json.ToJsonString()));
        Assert.Equal("KeyFingerprintMismatch", Assert.Throws<PbsKeyException>(() => k.Open((string?)null)).ErrorId);
    }

    [Fact]
    public void TamperedStoredFingerprint_OnScryptKey_IsKeyFingerprintMismatch()
    {
        var json = JsonNode.Parse(GoldenManifest.Read(ScryptGolden.Path))!.AsObject();
        json["fingerprint"] = NoneGolden.Fingerprint;
        var k = KeyConfig.Parse(Encoding.UTF8.GetBytes(json.ToJsonString()));
        Assert.Equal("KeyFingerprintMismatch", Assert.Throws<PbsKeyException>(() => k.Open(ScryptPassword)).ErrorId);
    }

    [Fact]
    public void MissingStoredFingerprint_StillOpens()
    {
        var json = JsonNode.Parse(GoldenManifest.Read(NoneGolden.Path))!.AsObject();
        json.Remove("fingerprint");
        var k = KeyConfig.Parse(Encoding.UTF8.GetBytes(json.ToJsonString()));
        Assert.Null(k.Fingerprint);
        Assert.Equal(NoneGolden.Fingerprint, k.Open((string?)null).Fingerprint.ToString());
    }

    [Fact]
    public void TamperedEncryptedKeyData_IsKeyPasswordWrong()
    {
        var json = JsonNode.Parse(GoldenManifest.Read(ScryptGolden.Path))!.AsObject();
        var data = Convert.FromBase64String(json["data"]!.GetValue<string>());
        data[40] ^= 1;
        json["data"] = Convert.ToBase64String(data);
        var k = KeyConfig.Parse(Encoding.UTF8.GetBytes(json.ToJsonString()));
        Assert.Equal("KeyPasswordWrong", Assert.Throws<PbsKeyException>(() => k.Open(ScryptPassword)).ErrorId);
    }

    private static readonly DateTimeOffset Created = new(2024, 1, 2, 3, 4, 5, TimeSpan.FromHours(2));

    [Fact]
    public void Pbkdf2Key_CreateToJsonParseOpen_RoundTrips()
    {
        var raw = RandomBytes(32, 42);
        var kdf = new KeyDerivation.Pbkdf2(65535, RandomBytes(32, 43));
        var created = KeyConfig.Create(raw, kdf, "pbkdf2 secret"u8, Created, hint: "the usual");
        var json = created.ToJson();

        var node = JsonNode.Parse(json)!.AsObject();
        Assert.Equal(65535, node["kdf"]!["PBKDF2"]!["iter"]!.GetValue<int>());
        Assert.Equal("2024-01-02T01:04:05+00:00", node["created"]!.GetValue<string>());
        Assert.Equal("2024-01-02T01:04:05+00:00", node["modified"]!.GetValue<string>());
        Assert.Equal("the usual", node["hint"]!.GetValue<string>());
        Assert.Equal(64, Convert.FromBase64String(node["data"]!.GetValue<string>()).Length);

        var parsed = KeyConfig.Parse(Encoding.UTF8.GetBytes(json));
        var p = Assert.IsType<KeyDerivation.Pbkdf2>(parsed.Kdf);
        Assert.Equal(kdf.Iterations, p.Iterations);
        Assert.Equal(kdf.Salt, p.Salt);
        Assert.Equal("the usual", parsed.Hint);
        var expected = new CryptConfig(raw);
        Assert.Equal(expected.Fingerprint, parsed.Fingerprint);

        var opened = parsed.Open("pbkdf2 secret");
        Assert.Equal(expected.Fingerprint, opened.Fingerprint);
        Assert.Equal(HexLower(expected.IdKey), HexLower(opened.IdKey));

        var e = Assert.Throws<PbsKeyException>(() => parsed.Open("pbkdf2 secreT"));
        Assert.Equal("KeyPasswordWrong", e.ErrorId);
    }

    [Fact]
    public void Create_TimestampIsCultureIndependent()
    {
        var saved = System.Globalization.CultureInfo.CurrentCulture;
        try
        {
            // a culture whose time separator is not ':' (custom format strings map ':' to it)
            var culture = (System.Globalization.CultureInfo)System.Globalization.CultureInfo.InvariantCulture.Clone();
            culture.DateTimeFormat.TimeSeparator = ".";
            System.Globalization.CultureInfo.CurrentCulture = culture;
            var k = KeyConfig.Create(new byte[32], new KeyDerivation.None(), default, Created);
            Assert.Equal("2024-01-02T01:04:05+00:00", k.Created);
        }
        finally
        {
            System.Globalization.CultureInfo.CurrentCulture = saved;
        }
    }

    [Fact]
    public void ScryptKey_CreateWithFixedIv_IsDeterministic_AndOpens()
    {
        // small n keeps this fast; the golden key proves the real parameters
        var raw = RandomBytes(32, 1);
        var kdf = new KeyDerivation.Scrypt(1024, 8, 1, RandomBytes(32, 2));
        var iv = RandomBytes(16, 3);
        var a = KeyConfig.Create(raw, kdf, "pw"u8, Created, iv);
        var b = KeyConfig.Create(raw, kdf, "pw"u8, Created, iv);
        Assert.Equal(a.ToJson(), b.ToJson());
        Assert.Equal(iv, a.Data[..16]);
        var parsed = KeyConfig.Parse(Encoding.UTF8.GetBytes(a.ToJson()));
        Assert.Equal(new CryptConfig(raw).Fingerprint, parsed.Open("pw").Fingerprint);
        Assert.Equal("KeyPasswordWrong", Assert.Throws<PbsKeyException>(() => parsed.Open("pW")).ErrorId);
    }

    [Fact]
    public void NoneKey_Create_RoundTrips()
    {
        var raw = FromHex(NoneGolden.RawKeyHex);
        var k = KeyConfig.Create(raw, new KeyDerivation.None(), default, Created);
        var node = JsonNode.Parse(k.ToJson())!.AsObject();
        Assert.True(node.ContainsKey("kdf"));
        Assert.Null(node["kdf"]);
        Assert.Equal(NoneGolden.KeyFileJson.GetProperty("data").GetString(), node["data"]!.GetValue<string>());
        Assert.Equal(NoneGolden.Fingerprint, node["fingerprint"]!.GetValue<string>());
        Assert.Equal(NoneGolden.Fingerprint, KeyConfig.Parse(Encoding.UTF8.GetBytes(k.ToJson())).Open((string?)null).Fingerprint.ToString());
    }

    [Fact]
    public void DeriveKey_MatchesGoldenKeyFile()
    {
        // decrypting the golden data with a derived key by hand proves DeriveKey (and the IV||tag||ct layout)
        var k = ParseGolden(ScryptGolden);
        var kek = KeyConfig.DeriveKey(k.Kdf, Encoding.UTF8.GetBytes(ScryptPassword));
        Assert.Equal(32, kek.Length);
        var raw = new byte[32];
        new CryptConfig(kek).Decrypt(k.Data.AsSpan(0, 16), k.Data.AsSpan(16, 16), k.Data.AsSpan(32), raw);
        Assert.Equal(ScryptGolden.RawKeyHex, HexLower(raw));
        Assert.Throws<InvalidOperationException>(() => KeyConfig.DeriveKey(new KeyDerivation.None(), "x"u8));
    }

    [Fact]
    public void Pbkdf2_DeriveKey_IsHmacSha256()
    {
        // RFC 7914 section 11 PBKDF2-HMAC-SHA256 vector: P="passwd", S="salt", c=1, dkLen=64 (first 32 bytes here)
        var key = KeyConfig.DeriveKey(new KeyDerivation.Pbkdf2(1, "salt"u8.ToArray()), "passwd"u8);
        Assert.Equal("55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc", HexLower(key));
    }

    [Fact]
    public void Scrypt_DeriveKey_MatchesRfc7914()
    {
        // RFC 7914 section 12: P="password", S="NaCl", N=1024, r=8, p=16 (first 32 bytes)
        var key = KeyConfig.DeriveKey(new KeyDerivation.Scrypt(1024, 8, 16, "NaCl"u8.ToArray()), "password"u8);
        Assert.Equal("fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162", HexLower(key));
    }

    [Theory]
    [InlineData("not json")]
    [InlineData("[]")]
    [InlineData("{}")]
    [InlineData("{\"kdf\":null,\"data\":\"AAAA\"}")]
    [InlineData("{\"kdf\":null,\"data\":\"!!!\"}")]
    [InlineData("{\"kdf\":null,\"data\":42}")]
    [InlineData("{\"kdf\":{\"Argon\":{}},\"data\":\"dc7byiYAN8YBEim2sfCor3BaEHBm9U4m4+nEEiWrpLw=\"}")]
    [InlineData("{\"kdf\":\"Scrypt\",\"data\":\"dc7byiYAN8YBEim2sfCor3BaEHBm9U4m4+nEEiWrpLw=\"}")]
    [InlineData("{\"kdf\":{\"Scrypt\":{\"n\":65537,\"r\":8,\"p\":1,\"salt\":\"\"}},\"data\":\"dc7byiYAN8YBEim2sfCor3BaEHBm9U4m4+nEEiWrpLw=dc7byiYAN8YBEim2sfCor3BaEHBm9U4m4+nEEiWrpLw=\"}")]
    [InlineData("{\"kdf\":{\"Scrypt\":{\"n\":1048576000,\"r\":8,\"p\":1,\"salt\":\"\"}},\"data\":\"\"}")]
    [InlineData("{\"kdf\":{\"Scrypt\":{\"r\":8,\"p\":1,\"salt\":\"\"}},\"data\":\"\"}")]
    [InlineData("{\"kdf\":{\"PBKDF2\":{\"iter\":0,\"salt\":\"\"}},\"data\":\"\"}")]
    [InlineData("{\"kdf\":{\"PBKDF2\":{\"salt\":\"\"}},\"data\":\"\"}")]
    [InlineData("{\"kdf\":{\"PBKDF2\":{\"iter\":\"many\",\"salt\":\"\"}},\"data\":\"\"}")]
    [InlineData("{\"kdf\":null,\"data\":\"dc7byiYAN8YBEim2sfCor3BaEHBm9U4m4+nEEiWrpLw=\",\"fingerprint\":\"zz\"}")]
    [InlineData("{\"kdf\":null,\"data\":\"dc7byiYAN8YBEim2sfCor3BaEHBm9U4m4+nEEiWrpLw=\",\"fingerprint\":7}")]
    public void MalformedKeyFile_IsKeyFileInvalid(string json)
    {
        var e = Assert.Throws<PbsKeyException>(() => KeyConfig.Parse(Encoding.UTF8.GetBytes(json), "bad.json"));
        Assert.Equal("KeyFileInvalid", e.ErrorId);
        Assert.Contains("bad.json", e.Message);
    }

    [Fact]
    public void ToString_DoesNotRevealKeyMaterial()
    {
        var k = ParseGolden(NoneGolden);
        var s = k.ToString() + NoneKey.ToString();
        Assert.DoesNotContain(NoneGolden.RawKeyHex, s, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain(NoneGolden.KeyFileJson.GetProperty("data").GetString()!, s);
        Assert.Contains(NoneGolden.FingerprintShort, s);
    }
}
