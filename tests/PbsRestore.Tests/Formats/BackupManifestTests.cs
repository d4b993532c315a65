using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using PbsRestore.Formats;
using static PbsRestore.Tests.Formats.FormatsTestSupport;

namespace PbsRestore.Tests.Formats;

public class BackupManifestTests
{
    public static TheoryData<string> SnapshotPaths()
    {
        var data = new TheoryData<string>();
        foreach (var s in GoldenManifest.Instance.Snapshots) data.Add(s.Path);
        return data;
    }

    private static GoldenSnapshot Vm101 => GoldenManifest.Instance.Snapshot("vm/101");

    private static byte[] DecodeManifestBlob(GoldenSnapshot s)
    {
        var raw = GoldenManifest.Read(s.Manifest.Path);
        Assert.Equal(s.Manifest.FileSha256, Sha256Hex(raw));
        using var decoder = new BlobDecoder(null, BackupManifest.MaxJsonSize);
        return decoder.DecodeToArray(raw);
    }

    // ---- golden manifests ----------------------------------------------------------------------------------

    [Theory]
    [MemberData(nameof(SnapshotPaths))]
    public void GoldenManifest_ParsesFromBlobAndExpectedJson(string path)
    {
        var s = GoldenManifest.Instance.Snapshot(path);
        var decoded = DecodeManifestBlob(s);
        Assert.Equal(s.Manifest.DecodedSha256, Sha256Hex(decoded));
        Assert.Equal(decoded, GoldenManifest.Read(s.Manifest.DecodedPath));

        foreach (var bytes in new[] { decoded, GoldenManifest.Read(s.Manifest.DecodedPath) })
        {
            var m = BackupManifest.Parse(bytes, s.Manifest.Path);
            Assert.Equal(s.BackupType, m.BackupType);
            Assert.Equal(s.BackupId, m.BackupId);
            Assert.Equal(s.BackupTime, m.BackupTime);
            Assert.Equal(DateTimeOffset.Parse(s.BackupTimeRfc3339).ToUnixTimeSeconds(), m.BackupTime);
            Assert.Equal(s.Manifest.Signature, m.Signature);
            Assert.Equal(s.Encrypted, m.IsEncrypted);
            Assert.Equal(s.KeyFingerprint, m.KeyFingerprint?.ToString());
            Assert.Contains("chunk_upload_stats", m.UnprotectedJson);

            var listed = s.Archives.Where(a => a.InManifest != false).ToList();
            Assert.Equal(listed.Select(a => a.Name).Order(), m.Files.Select(f => f.FileName).Order());
            foreach (var a in listed)
            {
                var f = m.FindFile(a.Name)!;
                Assert.NotNull(f);
                Assert.Equal(a.ManifestCryptMode, f.CryptMode.ToPbsString());
                if (a.IsBlob)
                {
                    Assert.Equal(ArchiveKind.Blob, f.Kind);
                    Assert.Equal(a.EncodedSize, f.Size);
                    Assert.Equal(a.FileSha256, f.CsumHex);
                }
                else
                {
                    Assert.Equal(a.IsFixedIndex ? ArchiveKind.FixedIndex : ArchiveKind.DynamicIndex, f.Kind);
                    Assert.Equal(a.Size, f.Size);
                    Assert.Equal(a.IndexCsum, f.CsumHex);
                }
            }
            Assert.Null(m.FindFile("client.log.blob"));
        }
    }

    [Theory]
    [MemberData(nameof(SnapshotPaths))]
    public void GoldenManifest_VerifyFile_AcceptsEveryListedFile(string path)
    {
        var s = GoldenManifest.Instance.Snapshot(path);
        var m = BackupManifest.Parse(DecodeManifestBlob(s));
        foreach (var f in m.Files)
        {
            var a = s.Archives.Single(a => a.Name == f.FileName);
            var raw = GoldenManifest.Read(a.Path);
            if (a.IsBlob)
            {
                BackupManifest.VerifyFile(f, raw.Length, SHA256.HashData(raw));
            }
            else
            {
                IChunkIndex index = a.IsFixedIndex ? FixedIndex.Parse(raw, a.Path) : DynamicIndex.Parse(raw, a.Path);
                BackupManifest.VerifyFile(f, index.Size, index.ComputeCsum());
                var wrong = index.ComputeCsum();
                wrong[0] ^= 1;
                Assert.Equal("ManifestChecksumMismatch",
                    Assert.Throws<PbsIntegrityException>(() => BackupManifest.VerifyFile(f, index.Size, wrong)).ErrorId);
                Assert.Equal("ManifestSizeMismatch",
                    Assert.Throws<PbsIntegrityException>(() => BackupManifest.VerifyFile(f, index.Size + 1, index.ComputeCsum())).ErrorId);
            }
        }
    }

    [Fact]
    public void Vm101_VerifyKey_WithTheRightKey_Passes()
    {
        var m = BackupManifest.Parse(DecodeManifestBlob(Vm101));
        Assert.NotNull(m.Signature);
        m.VerifyKey(ScryptKey);
        // and unencrypted snapshots accept no key
        BackupManifest.Parse(DecodeManifestBlob(GoldenManifest.Instance.Snapshot("vm/100"))).VerifyKey(null);
    }

    [Fact]
    public void Vm101_VerifyKey_WithAnotherKey_IsKeyFingerprintMismatch()
    {
        var m = BackupManifest.Parse(DecodeManifestBlob(Vm101));
        var e = Assert.Throws<PbsKeyException>(() => m.VerifyKey(NoneKey));
        Assert.Equal("KeyFingerprintMismatch", e.ErrorId);
        Assert.Contains(GoldenManifest.Instance.Key("scrypt.key.json").FingerprintShort, e.Message);
    }

    [Fact]
    public void Vm101_VerifyKey_WithoutKey_IsKeyRequired()
    {
        var m = BackupManifest.Parse(DecodeManifestBlob(Vm101));
        var e = Assert.Throws<PbsKeyException>(() => m.VerifyKey(null));
        Assert.Equal("KeyRequired", e.ErrorId);
    }

    [Theory]
    [InlineData("size")]
    [InlineData("csum")]
    [InlineData("crypt-mode")]
    [InlineData("backup-id")]
    [InlineData("add-file")]
    public void Vm101_TamperedProtectedPart_IsManifestSignatureMismatch(string what)
    {
        var json = JsonNode.Parse(DecodeManifestBlob(Vm101))!.AsObject();
        var files = json["files"]!.AsArray();
        var first = files[0]!.AsObject();
        switch (what)
        {
            case "size": first["size"] = first["size"]!.GetValue<long>() + 1; break;
            case "csum": first["csum"] = new string('0', 64); break;
            case "crypt-mode": first["crypt-mode"] = "sign-only"; break;
            case "backup-id": json["backup-id"] = "102"; break;
            case "add-file": files.Add(new JsonObject { ["filename"] = "evil.blob", ["crypt-mode"] = "encrypt", ["size"] = 1, ["csum"] = new string('1', 64) }); break;
        }
        var m = BackupManifest.Parse(Encoding.UTF8.GetBytes(json.ToJsonString()));
        Assert.Equal(Vm101.KeyFingerprint, m.KeyFingerprint?.ToString()); // still claims the right key
        var e = Assert.Throws<PbsIntegrityException>(() => m.VerifyKey(ScryptKey));
        Assert.Equal("ManifestSignatureMismatch", e.ErrorId);
    }

    [Fact]
    public void Vm101_TamperedUnprotectedPart_StillVerifies()
    {
        var json = JsonNode.Parse(DecodeManifestBlob(Vm101))!.AsObject();
        json["unprotected"]!["notes"] = "changed after the backup";
        json["unprotected"]!["verify_state"] = new JsonObject { ["state"] = "ok" };
        BackupManifest.Parse(Encoding.UTF8.GetBytes(json.ToJsonString())).VerifyKey(ScryptKey);
    }

    [Fact]
    public void Vm101_ReformattedJson_StillVerifies()
    {
        // signature is over canonical JSON: key order and whitespace of the stored text do not matter
        var json = JsonNode.Parse(DecodeManifestBlob(Vm101))!.AsObject();
        var reordered = new JsonObject();
        foreach (var (k, v) in json.Reverse().ToList()) reordered[k] = v?.DeepClone();
        var m = BackupManifest.Parse(Encoding.UTF8.GetBytes(reordered.ToJsonString()));
        m.VerifyKey(ScryptKey);
    }

    [Fact]
    public void Vm101_WrongSignature_IsManifestSignatureMismatch()
    {
        var json = JsonNode.Parse(DecodeManifestBlob(Vm101))!.AsObject();
        json["signature"] = new string('a', 64);
        var m = BackupManifest.Parse(Encoding.UTF8.GetBytes(json.ToJsonString()));
        Assert.Equal("ManifestSignatureMismatch", Assert.Throws<PbsIntegrityException>(() => m.VerifyKey(ScryptKey)).ErrorId);
    }

    // ---- upstream known answer -----------------------------------------------------------------------------

    [Fact]
    public void Build_ReproducesUpstreamSignatureTest()
    {
        // pbs-datastore/src/manifest.rs test_manifest_signature
        var kdf = new KeyDerivation.Scrypt(65536, 8, 1, []);
        var crypt = new CryptConfig(KeyConfig.DeriveKey(kdf, "test"u8));
        long time = DateTimeOffset.Parse("2020-06-26T13:56:05Z").ToUnixTimeSeconds();
        Assert.Equal(1593179765, time);
        var files = new[]
        {
            new ManifestFile("test1.img.fidx", CryptMode.Encrypt, 200, Enumerable.Repeat((byte)1, 32).ToArray()),
            new ManifestFile("abc.blob", CryptMode.None, 200, Enumerable.Repeat((byte)2, 32).ToArray()),
        };
        var unprotected = new JsonObject { ["note"] = "This is not protected by the signature." };
        var bytes = BackupManifest.Build("host", "elsa", time, files, crypt, unprotected);

        var m = BackupManifest.Parse(bytes);
        Assert.Equal("d7b446fb7db081662081d4b40fedd858a1d6307a5aff4ecff7d5bf4fd35679e9", m.Signature);
        Assert.Equal(crypt.Fingerprint, m.KeyFingerprint);
        m.VerifyKey(crypt);
        Assert.Contains("This is not protected by the signature.", m.UnprotectedJson);
        Assert.Equal(["test1.img.fidx", "abc.blob"], m.Files.Select(f => f.FileName));

        // Build without a key: no signature, no fingerprint
        var plain = BackupManifest.Parse(BackupManifest.Build("host", "elsa", time, files, null));
        Assert.Null(plain.Signature);
        Assert.Null(plain.KeyFingerprint);
        Assert.Equal("KeyRequired", Assert.Throws<PbsKeyException>(() => plain.VerifyKey(null)).ErrorId);
    }

    [Theory]
    [MemberData(nameof(SnapshotPaths))]
    public void Build_ReproducesTheStoredGoldenManifest(string path)
    {
        // Rebuilding from the parsed manifest (with the snapshot's key) gives the server's stored bytes,
        // including upstream's signature for the encrypted vm/101.
        var s = GoldenManifest.Instance.Snapshot(path);
        var expected = GoldenManifest.Read(s.Manifest.DecodedPath);
        var stored = BackupManifest.Parse(expected);
        var unprotected = JsonNode.Parse(stored.UnprotectedJson)!.AsObject();
        unprotected.Remove("key-fingerprint");
        var crypt = s.Encrypted ? ScryptKey : null;
        var rebuilt = BackupManifest.Build(stored.BackupType, stored.BackupId, stored.BackupTime, stored.Files, crypt, unprotected);
        Assert.Equal(Encoding.UTF8.GetString(expected), Encoding.UTF8.GetString(rebuilt));
        Assert.Equal(s.Manifest.Signature, BackupManifest.Parse(rebuilt).Signature);
    }

    [Fact]
    public void Build_WritesTheServerLayout()
    {
        var bytes = BackupManifest.Build("vm", "100", 1714557600,
            [new ManifestFile("b.img.fidx", CryptMode.None, 5, new byte[32])], null);
        var text = Encoding.UTF8.GetString(bytes);
        var root = JsonDocument.Parse(bytes).RootElement;
        Assert.Equal(["backup-id", "backup-time", "backup-type", "files", "signature", "unprotected"],
            root.EnumerateObject().Select(p => p.Name));
        Assert.Equal(JsonValueKind.Null, root.GetProperty("signature").ValueKind);
        Assert.Contains("\n", text);
        Assert.Equal("none", root.GetProperty("files")[0].GetProperty("crypt-mode").GetString());
    }

    [Fact]
    public void Build_RoundTripsThroughGoldenShape()
    {
        // Rebuilding vm/100 from its parsed form gives the same protected content as the stored manifest
        var s = GoldenManifest.Instance.Snapshot("vm/100");
        var stored = BackupManifest.Parse(DecodeManifestBlob(s));
        var rebuilt = BackupManifest.Parse(BackupManifest.Build(stored.BackupType, stored.BackupId, stored.BackupTime, stored.Files, null));
        Assert.Equal(stored.Files.Select(f => (f.FileName, f.CryptMode, f.Size, f.CsumHex)),
            rebuilt.Files.Select(f => (f.FileName, f.CryptMode, f.Size, f.CsumHex)));
    }

    // ---- hostile input -------------------------------------------------------------------------------------

    private static string ManifestWithFile(string fileName) =>
        new JsonObject
        {
            ["backup-type"] = "vm", ["backup-id"] = "1", ["backup-time"] = 1,
            ["files"] = new JsonArray(new JsonObject { ["filename"] = fileName, ["crypt-mode"] = "none", ["size"] = 1, ["csum"] = new string('0', 64) }),
            ["unprotected"] = new JsonObject(), ["signature"] = null,
        }.ToJsonString();

    [Theory]
    [InlineData("../x.blob")]
    [InlineData("/etc/passwd.blob")]
    [InlineData("a/b.fidx")]
    [InlineData("..\\x.fidx")]
    [InlineData("C:\\x.blob")]
    [InlineData("C:x.blob")]
    [InlineData("x\u0000.blob")]
    [InlineData("x\n.blob")]
    [InlineData("x\u001f.didx")]
    [InlineData("x\u007f.didx")]
    [InlineData("..")]
    [InlineData(".")]
    [InlineData("..blob")]
    [InlineData(".hidden.blob")]
    [InlineData("")]
    [InlineData("x.txt")]
    [InlineData("x.blob/")]
    [InlineData("x.fidx.")]
    public void HostileFileName_IsManifestBadFileName(string name)
    {
        var e = Assert.Throws<PbsFormatException>(() => BackupManifest.Parse(Encoding.UTF8.GetBytes(ManifestWithFile(name)), "evil/index.json"));
        Assert.Equal("ManifestBadFileName", e.ErrorId);
        Assert.Contains("evil/index.json", e.Message);
        Assert.DoesNotContain("\n.blob", e.Message);
        Assert.False(ArchiveNames.IsValidStoredName(name));
    }

    [Fact]
    public void OverlongFileName_IsManifestBadFileName()
    {
        var e = Assert.Throws<PbsFormatException>(() => BackupManifest.Parse(Encoding.UTF8.GetBytes(ManifestWithFile(new string('a', 300) + ".blob"))));
        Assert.Equal("ManifestBadFileName", e.ErrorId);
    }

    [Theory]
    [InlineData("drive-scsi0.img.fidx")]
    [InlineData("root.pxar.didx")]
    [InlineData("qemu-server.conf.blob")]
    [InlineData("index.json.blob")]
    public void PlainFileName_IsAccepted(string name)
    {
        var m = BackupManifest.Parse(Encoding.UTF8.GetBytes(ManifestWithFile(name)));
        Assert.Equal(name, m.Files.Single().FileName);
    }

    [Fact]
    public void OversizedManifest_IsManifestTooLarge()
    {
        var big = new byte[BackupManifest.MaxJsonSize + 1];
        Array.Fill(big, (byte)' ');
        Encoding.UTF8.GetBytes(ManifestWithFile("a.blob")).CopyTo(big, 0);
        var e = Assert.Throws<PbsFormatException>(() => BackupManifest.Parse(big));
        Assert.Equal("ManifestTooLarge", e.ErrorId);
        // the same content at the limit parses
        BackupManifest.Parse(big.AsSpan(0, BackupManifest.MaxJsonSize));
    }

    [Theory]
    [InlineData("not json")]
    [InlineData("[]")]
    [InlineData("{}")]
    [InlineData("{\"backup-type\":\"vm\",\"backup-id\":\"1\",\"backup-time\":\"soon\",\"files\":[]}")]
    [InlineData("{\"backup-type\":\"vm\",\"backup-id\":\"1\",\"backup-time\":1,\"files\":{}}")]
    [InlineData("{\"backup-type\":\"vm\",\"backup-id\":\"1\",\"backup-time\":1,\"files\":[{\"filename\":\"a.blob\",\"size\":1,\"csum\":\"00\"}]}")]
    [InlineData("{\"backup-type\":\"vm\",\"backup-id\":\"1\",\"backup-time\":1,\"files\":[{\"filename\":\"a.blob\",\"size\":-1,\"csum\":\"0000000000000000000000000000000000000000000000000000000000000000\"}]}")]
    [InlineData("{\"backup-type\":\"vm\",\"backup-id\":\"1\",\"backup-time\":1,\"files\":[{\"filename\":\"a.blob\",\"crypt-mode\":\"rot13\",\"size\":1,\"csum\":\"0000000000000000000000000000000000000000000000000000000000000000\"}]}")]
    [InlineData("{\"backup-type\":\"vm\",\"backup-id\":\"1\",\"backup-time\":1,\"files\":[{\"filename\":\"a.blob\",\"size\":1,\"csum\":\"0000000000000000000000000000000000000000000000000000000000000000\"},{\"filename\":\"a.blob\",\"size\":1,\"csum\":\"0000000000000000000000000000000000000000000000000000000000000000\"}]}")]
    [InlineData("{\"backup-type\":\"vm\",\"backup-id\":\"1\",\"backup-time\":1,\"files\":[],\"unprotected\":{\"key-fingerprint\":\"xx\"}}")]
    [InlineData("{\"backup-type\":\"vm\",\"backup-id\":\"1\",\"backup-time\":1,\"files\":[{\"filename\":7,\"size\":1,\"csum\":\"00\"}]}")]
    public void MalformedManifest_IsManifestInvalid(string json)
    {
        var e = Assert.Throws<PbsFormatException>(() => BackupManifest.Parse(Encoding.UTF8.GetBytes(json), "m.json"));
        Assert.Equal("ManifestInvalid", e.ErrorId);
        Assert.Contains("m.json", e.Message);
    }

    [Theory]
    [InlineData("backup-id")]
    [InlineData("files")]
    [InlineData("size")]
    [InlineData("signature")]
    public void DuplicateKeys_AreManifestInvalid(string key)
    {
        // JSON parsers disagree on duplicate keys (first or last wins); a signed manifest must not be ambiguous
        var text = Encoding.UTF8.GetString(DecodeManifestBlob(Vm101));
        string dup = key switch
        {
            "backup-id" => text.Replace("\"backup-id\": \"101\",", "\"backup-id\": \"101\", \"backup-id\": \"999\","),
            "files" => text.Replace("\"files\": [", "\"files\": [], \"files\": ["),
            "size" => text.Replace("\"size\": 356", "\"size\": 356, \"size\": 357"),
            _ => text.Replace("\"signature\":", "\"signature\": null, \"signature\":"),
        };
        Assert.NotEqual(text, dup);
        var e = Assert.Throws<PbsFormatException>(() => BackupManifest.Parse(Encoding.UTF8.GetBytes(dup), "dup.json"));
        Assert.Equal("ManifestInvalid", e.ErrorId);
    }

    // ---- archive names -------------------------------------------------------------------------------------

    [Fact]
    public void ArchiveNames_KindDisplayAndResolve()
    {
        Assert.Equal(ArchiveKind.FixedIndex, ArchiveNames.KindOf("drive-scsi0.img.fidx"));
        Assert.Equal(ArchiveKind.DynamicIndex, ArchiveNames.KindOf("root.pxar.didx"));
        Assert.Equal(ArchiveKind.Blob, ArchiveNames.KindOf("qemu-server.conf.blob"));
        Assert.Equal(ArchiveKind.Unknown, ArchiveNames.KindOf("x.img"));
        Assert.Equal("drive-scsi0.img", ArchiveNames.DisplayName("drive-scsi0.img.fidx"));
        Assert.Equal("qemu-server.conf", ArchiveNames.DisplayName("qemu-server.conf.blob"));
        Assert.Equal("x.img", ArchiveNames.DisplayName("x.img"));

        var m = BackupManifest.Parse(DecodeManifestBlob(GoldenManifest.Instance.Snapshot("vm/100")));
        Assert.Equal("drive-scsi0.img.fidx", ArchiveNames.Resolve(m, "drive-scsi0.img")!.FileName);
        Assert.Equal("drive-scsi0.img.fidx", ArchiveNames.Resolve(m, "drive-scsi0.img.fidx")!.FileName);
        Assert.Equal("qemu-server.conf.blob", ArchiveNames.Resolve(m, "qemu-server.conf")!.FileName);
        Assert.Null(ArchiveNames.Resolve(m, "drive-scsi1.img"));
        Assert.Null(ArchiveNames.Resolve(m, "client.log"));
    }

    [Fact]
    public void CryptModeNames_RoundTrip()
    {
        foreach (var mode in Enum.GetValues<CryptMode>())
            Assert.Equal(mode, CryptModeNames.Parse(mode.ToPbsString()));
        Assert.Equal("sign-only", CryptMode.SignOnly.ToPbsString());
        Assert.Equal(CryptMode.None, CryptModeNames.Parse(null));
        Assert.Throws<PbsFormatException>(() => CryptModeNames.Parse("Encrypt"));
    }
}
