using System.Security.Cryptography;
using System.Text.Json.Nodes;
using PbsRestore.Formats;

namespace PbsRestore.Fuzz;

/// <summary>Seed inputs: the golden datastore's files (read-only), valid inputs made with the writers, the
/// saved regressions and an optional corpus directory.</summary>
public static class Seeds
{
    public static List<byte[]> For(string target, string golden, Harness harness, string? corpus, string regressions)
    {
        var seeds = new List<byte[]>();
        string store = Path.Combine(golden, "datastore");
        IEnumerable<string> Files(string pattern) =>
            Directory.Exists(store) ? Directory.EnumerateFiles(store, pattern, SearchOption.AllDirectories).Order(StringComparer.Ordinal) : [];

        var digests = Enumerable.Range(0, 8).Select(i => new ChunkDigest(SHA256.HashData([(byte)i]))).ToArray();
        var t0 = DateTimeOffset.FromUnixTimeSeconds(1714557600);
        switch (target)
        {
            case "iscsipdu" or "iscsilogin" or "iscsisession":
                seeds.AddRange(IscsiFuzz.Seeds(target));
                break;
            case "blob":
                seeds.AddRange(Files("*.blob").Select(File.ReadAllBytes));
                string chunks = Path.Combine(store, ".chunks");
                if (Directory.Exists(chunks))
                    seeds.AddRange(Directory.EnumerateFiles(chunks, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal)
                        .Select(File.ReadAllBytes).Where(b => b.Length <= 1 << 20));
                foreach (var style in new[] { ZstdFrameStyle.Streaming, ZstdFrameStyle.Bulk })
                {
                    using var enc = new BlobEncoder { FrameStyle = style };
                    foreach (var data in new[] { Array.Empty<byte>(), "hello"u8.ToArray(), new byte[4096], Text(20_000), Random(3000, 1), new byte[(4 << 20) + 1] })
                    {
                        seeds.Add(enc.Encode(data, null, true));
                        seeds.Add(enc.Encode(data, harness.FuzzKey, true, new byte[16]));
                        if (data.Length < 100_000)
                        {
                            seeds.Add(enc.Encode(data, null, false));
                            seeds.Add(enc.Encode(data, harness.FuzzKey, false, new byte[16]));
                        }
                    }
                }
                break;
            case "fidx":
                seeds.AddRange(Files("*.fidx").Select(File.ReadAllBytes));
                seeds.Add(FixedIndex.Build(Guid.Empty, t0, 0, 4096, []));
                seeds.Add(FixedIndex.Build(Guid.Empty, t0, 1, 512, digests[..1]));
                seeds.Add(FixedIndex.Build(Guid.Empty, t0, 8 * 4096 - 100, 4096, digests));
                seeds.Add(FixedIndex.Build(Guid.Empty, t0, 3L << 22, 4 << 20, digests[..3]));
                break;
            case "didx":
                seeds.AddRange(Files("*.didx").Select(File.ReadAllBytes));
                seeds.Add(DynamicIndex.Build(Guid.Empty, t0, []));
                seeds.Add(DynamicIndex.Build(Guid.Empty, t0, digests.Select((d, i) => ((long)(i + 1) * 70_000 + i, d)).ToList()));
                seeds.Add(DynamicIndex.Build(Guid.Empty, t0, [(1L, digests[0]), (4L << 20, digests[1])]));
                break;
            case "manifest":
                using (var plain = new BlobDecoder(null, Harness.MaxDecodedSize))
                    foreach (var f in Files("index.json.blob"))
                        try { seeds.Add(plain.DecodeToArray(File.ReadAllBytes(f))); } catch (PbsException) { }
                string expected = Path.Combine(golden, "expected");
                if (Directory.Exists(expected))
                    seeds.AddRange(Directory.EnumerateFiles(expected, "index.json*", SearchOption.AllDirectories).Order(StringComparer.Ordinal).Select(File.ReadAllBytes));
                ManifestFile[] files =
                [
                    new("drive-scsi0.img.fidx", CryptMode.Encrypt, 1 << 30, new byte[32]),
                    new("qemu-server.conf.blob", CryptMode.Encrypt, 400, Enumerable.Repeat((byte)0xab, 32).ToArray()),
                    new("data.didx", CryptMode.SignOnly, 12345, new byte[32]),
                    new("client.log.blob", CryptMode.None, 10, new byte[32]),
                ];
                seeds.Add(BackupManifest.Build("vm", "100", 1714557600, files, harness.FuzzKey, new JsonObject { ["notes"] = "x" }));
                seeds.Add(BackupManifest.Build("ct", "200", 1714557600, files[2..], null));
                seeds.Add(BackupManifest.Build("host", "h", 0, [], harness.FuzzKey));
                break;
            case "pxar":
            {
                foreach (var tree in new[] { PbsRestore.Fixtures.PxarSamples.Tree(1, 3000), PbsRestore.Fixtures.PxarNode.Dir("", PbsRestore.Fixtures.PxarNode.File("a", [1])) })
                {
                    var ms = new MemoryStream();
                    PbsRestore.Fixtures.PxarWriter.WriteV1(tree, ms);
                    seeds.Add(ms.ToArray());
                }
                break;
            }
            case "catalog":
                seeds.Add(PbsRestore.Fixtures.CatalogWriter.Write(PbsRestore.Fixtures.PxarSamples.Tree(1, 10)));
                seeds.Add(PbsRestore.Fixtures.CatalogWriter.Write(PbsRestore.Fixtures.PxarNode.Dir("", PbsRestore.Fixtures.PxarNode.Dir("d"))));
                break;
            case "keyfile":
                string keys = Path.Combine(golden, "keys");
                if (Directory.Exists(keys))
                    seeds.AddRange(Directory.EnumerateFiles(keys, "*.json").Order(StringComparer.Ordinal).Select(File.ReadAllBytes));
                var raw = SHA256.HashData("raw key"u8);
                var salt = SHA256.HashData("salt"u8);
                foreach (KeyDerivation kdf in new KeyDerivation[]
                         {
                             new KeyDerivation.None(), new KeyDerivation.Scrypt(16, 1, 1, salt), new KeyDerivation.Scrypt(1024, 1, 1, salt[..8]),
                             new KeyDerivation.Pbkdf2(1, salt), new KeyDerivation.Pbkdf2(1000, salt),
                         })
                    seeds.Add(System.Text.Encoding.UTF8.GetBytes(KeyConfig.Create(raw, kdf, Harness.Password, t0, new byte[16], "a hint").ToJson()));
                break;
        }
        if (Directory.Exists(regressions))
            seeds.AddRange(Directory.EnumerateFiles(regressions, target + "-*.bin").Order(StringComparer.Ordinal).Select(File.ReadAllBytes));
        if (corpus is not null && Directory.Exists(corpus))
            foreach (var f in Directory.EnumerateFiles(corpus, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
            {
                string name = Path.GetFileName(f);
                bool forOther = Program.AllTargets.Any(t => t != target && name.StartsWith(t + "-", StringComparison.Ordinal));
                if (!forOther && new FileInfo(f).Length <= 8 << 20) seeds.Add(File.ReadAllBytes(f));
            }
        return seeds;
    }

    private static byte[] Text(int n)
    {
        var b = new byte[n];
        var p = "PBS fuzz seed line 0123456789\n"u8;
        for (int i = 0; i < n; i++) b[i] = p[i % p.Length];
        return b;
    }

    private static byte[] Random(int n, int seed)
    {
        var b = new byte[n];
        new Random(seed).NextBytes(b);
        return b;
    }
}
