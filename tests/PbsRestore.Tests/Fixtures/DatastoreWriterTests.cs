using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using PbsRestore.Fixtures;
using PbsRestore.Formats;
using Xunit.Abstractions;
using ZstdSharp;

namespace PbsRestore.Tests.Fixtures;

/// <summary>A temp folder under Path.GetTempPath(), deleted on dispose.</summary>
internal sealed class TempDir : IDisposable
{
    public TempDir() => Directory.CreateDirectory(Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "pbsfx-" + Guid.NewGuid().ToString("N")[..12]));
    public string Path { get; }
    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

/// <summary>Reads a datastore back purely through the Formats API, as restore would.</summary>
internal static class DatastoreReader
{
    public static BackupManifest ReadManifest(string snapshotDir, out JsonDocument json)
    {
        var raw = File.ReadAllBytes(Path.Combine(snapshotDir, FileFormats.ManifestBlobName));
        Assert.False(DataBlob.IsEncrypted(DataBlob.GetKind(raw)), "the manifest blob is never encrypted");
        using var decoder = new BlobDecoder(null, BackupManifest.MaxJsonSize);
        var bytes = decoder.DecodeToArray(raw);
        json = JsonDocument.Parse(bytes);
        return BackupManifest.Parse(bytes, snapshotDir);
    }

    /// <summary>Verifies every file of the snapshot against its manifest, decodes every chunk, checks digests and plaintext hashes.</summary>
    public static void VerifySnapshot(string store, SnapshotInfo info, CryptConfig? crypt)
    {
        var manifest = ReadManifest(info.Directory, out var json);
        json.Dispose();
        Assert.Equal(info.BackupType, manifest.BackupType);
        Assert.Equal(info.BackupId, manifest.BackupId);
        Assert.Equal(info.BackupTime, manifest.BackupTime);
        manifest.VerifyKey(crypt);
        Assert.Equal(info.Archives.Select(a => a.FileName), manifest.Files.Select(f => f.FileName));
        foreach (var archive in info.Archives)
        {
            var entry = manifest.FindFile(archive.FileName)!;
            Assert.Equal(archive.CryptMode, entry.CryptMode);
            var fileBytes = File.ReadAllBytes(Path.Combine(info.Directory, archive.FileName));
            Assert.Equal(archive.FileSize, fileBytes.LongLength);
            string sha;
            switch (archive.Kind)
            {
                case ArchiveKind.Blob:
                {
                    BackupManifest.VerifyFile(entry, fileBytes.LongLength, SHA256.HashData(fileBytes));
                    using var decoder = new BlobDecoder(entry.CryptMode == CryptMode.Encrypt ? crypt : null, 16 << 20);
                    Assert.Equal(entry.CryptMode == CryptMode.Encrypt, DataBlob.IsEncrypted(DataBlob.GetKind(fileBytes)));
                    sha = Convert.ToHexStringLower(SHA256.HashData(decoder.DecodeToArray(fileBytes)));
                    break;
                }
                default:
                {
                    IChunkIndex index = archive.Kind == ArchiveKind.FixedIndex
                        ? FixedIndex.Parse(fileBytes, archive.FileName)
                        : DynamicIndex.Parse(fileBytes, archive.FileName);
                    BackupManifest.VerifyFile(entry, index.Size, index.ComputeCsum());
                    Assert.Equal(archive.Size, index.Size);
                    Assert.Equal(archive.ChunkCount, index.Count);
                    var keyed = entry.CryptMode == CryptMode.Encrypt ? crypt : null;
                    using var decoder = new BlobDecoder(keyed, index.MaxChunkSize);
                    using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
                    var buffer = new byte[index.MaxChunkSize];
                    long offset = 0;
                    for (int i = 0; i < index.Count; i++)
                    {
                        var digest = index.DigestAt(i);
                        string hex = digest.ToString();
                        string chunkPath = Path.Combine(store, ".chunks", hex[..4], hex);
                        Assert.True(File.Exists(chunkPath), $"chunk {hex} of {archive.FileName} missing");
                        var raw = File.ReadAllBytes(chunkPath);
                        Assert.Equal(keyed is not null, DataBlob.IsEncrypted(DataBlob.GetKind(raw)));
                        int n = decoder.Decode(raw, buffer);
                        Assert.Equal(index.LengthOf(i), n);
                        Assert.Equal(offset, index.OffsetOf(i));
                        Assert.Equal(digest, ChunkVerifier.ComputeDigest(buffer.AsSpan(0, n), keyed));
                        hash.AppendData(buffer, 0, n);
                        offset += n;
                    }
                    Assert.Equal(index.Size, offset);
                    sha = Convert.ToHexStringLower(hash.GetHashAndReset());
                    break;
                }
            }
            Assert.Equal(archive.Sha256, sha);
        }
    }
}

public class DatastoreWriterTests
{
    private const int Chunk = 64 << 10;
    private const string ZeroDigest64K = "de2f256064a0af797747c2b97505dc0b9f3df0de4f489eac731c23ae9ca9cc31";
    private static readonly DateTimeOffset T0 = new(2024, 5, 1, 10, 0, 0, TimeSpan.Zero);

    [Fact]
    public void SmallDatastore_RoundTripsThroughFormatsApi_AndLooksLikeUpstream()
    {
        using var tmp = new TempDir();
        string store = Path.Combine(tmp.Path, "store");
        var writer = new DatastoreWriter(store);

        // vm/100 unencrypted: every chunk kind, a size that is not a multiple of the chunk size.
        var s100 = writer.BeginSnapshot("", "vm", "100", T0);
        var conf = s100.AddBlob("qemu-server.conf", Encoding.UTF8.GetBytes("memory: 2048\ncores: 2\nscsi0: local:vm-100-disk-0,size=1M\n"));
        var image = ImagePattern.Parse("zero:2,text:2,random:2,dup:2", 13L * Chunk + 12345, seed: 7);
        var scsi0 = s100.AddImage("drive-scsi0.img", image, Chunk);
        s100.AddImage("drive-virtio1.img", ImageContent.Zeros(16 * Chunk), Chunk);
        var i100 = s100.Finish();

        // vm/101 encrypted, key from a key file (cheap scrypt for the test).
        string keyPath = Path.Combine(tmp.Path, "keys", "test.key.json");
        var crypt = KeyFiles.Create(keyPath, "pw", KeyKdf.Scrypt, scryptN: 1024);
        var reopened = KeyConfig.Parse(File.ReadAllBytes(keyPath), keyPath).Open("pw");
        Assert.Equal(crypt.Fingerprint, reopened.Fingerprint);
        var s101 = writer.BeginSnapshot("", "vm", "101", T0.AddMinutes(5), crypt);
        s101.AddBlob("qemu-server.conf", Encoding.UTF8.GetBytes("memory: 1024\n"));
        s101.AddImage("drive-scsi0.img", ImagePattern.Parse("zero:1,text:1,random:1,dup:1", 9L * Chunk, seed: 8), Chunk);
        var i101 = s101.Finish();

        // ct/200: dynamic archives (content-defined and explicit cuts).
        var s200 = writer.BeginSnapshot("", "ct", "200", T0.AddMinutes(10));
        s200.AddBlob("pct.conf", Encoding.UTF8.GetBytes("hostname: ct200\n"));
        var data = new byte[345211];
        ImagePattern.FillText(data, 42);
        data.AsSpan(100_000, 50_000).Clear();
        var didx = s200.AddDynamic("data.didx", new MemoryStream(data), DynamicChunking.ContentDefined(64 << 10));
        var pxar = s200.AddDynamic("root.pxar", new MemoryStream(data), DynamicChunking.Explicit([1000, 70000, 5, 40000]));
        var i200 = s200.Finish();

        // Namespaces dev and prod/web, sharing chunks with vm/100.
        var s102 = writer.BeginSnapshot("dev", "vm", "102", T0.AddMinutes(15));
        s102.AddImage("drive-scsi0.img", ImagePattern.Parse("zero:2,text:2,random:2,dup:2", 8L * Chunk, seed: 7), Chunk);
        var i102 = s102.Finish();
        var sWeb = writer.BeginSnapshot("prod/web", "ct", "300", T0.AddMinutes(20), crypt);
        sWeb.AddDynamic("root.pxar", new MemoryStream(data), DynamicChunking.Fixed(50_000));
        var iWeb = sWeb.Finish();

        foreach (var (info, key) in new[] { (i100, (CryptConfig?)null), (i101, crypt), (i200, null), (i102, null), (iWeb, crypt) })
            DatastoreReader.VerifySnapshot(store, info, key);

        // Sizes and names.
        Assert.Equal(13L * Chunk + 12345, scsi0.Size);
        Assert.Equal(14, scsi0.ChunkCount);
        Assert.Equal("drive-scsi0.img.fidx", scsi0.FileName);
        Assert.Equal("drive-scsi0.img", scsi0.ArchiveName);
        Assert.Equal("qemu-server.conf.blob", conf.FileName);
        Assert.Equal("data.didx", didx.FileName);
        Assert.Equal("root.pxar.didx", pxar.FileName);
        Assert.Equal(345211, didx.Size);
        Assert.True(didx.ChunkCount > 1);
        Assert.Equal(new[] { 1000L, 71000, 71005 }, ReadDynamicEnds(Path.Combine(i200.Directory, "root.pxar.didx")).Take(3));
        Assert.Equal(ExpectedSha(image, Chunk), scsi0.Sha256);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(data)), didx.Sha256);
        Assert.Equal(didx.Sha256, pxar.Sha256);

        // Layout as upstream: .lock, .chunks/XXXX/<64 hex>, owner files, ns/<a>/ns/<b>.
        Assert.True(File.Exists(Path.Combine(store, ".lock")));
        Assert.Equal("vm/100/2024-05-01T10:00:00Z", i100.Path);
        Assert.Equal("ns/dev/vm/102/2024-05-01T10:15:00Z", i102.Path);
        Assert.Equal("ns/prod/ns/web/ct/300/2024-05-01T10:20:00Z", iWeb.Path);
        foreach (var info in new[] { i100, i101, i200, i102, iWeb })
        {
            Assert.Equal(Path.Combine(store, info.Path.Replace('/', Path.DirectorySeparatorChar)), info.Directory);
            Assert.Equal("root@pam\n", File.ReadAllText(Path.Combine(Path.GetDirectoryName(info.Directory)!, "owner")));
            var names = Directory.GetFiles(info.Directory).Select(Path.GetFileName).Order(StringComparer.Ordinal);
            Assert.Equal(info.Archives.Select(a => a.FileName).Append("index.json.blob").Order(StringComparer.Ordinal), names);
        }
        var chunkFiles = Directory.GetFiles(Path.Combine(store, ".chunks"), "*", SearchOption.AllDirectories);
        Assert.NotEmpty(chunkFiles);
        foreach (var f in chunkFiles)
        {
            string name = Path.GetFileName(f);
            Assert.Matches("^[0-9a-f]{64}$", name);
            Assert.Equal(name[..4], Path.GetFileName(Path.GetDirectoryName(f)));
        }
        Assert.Equal(new[] { ".chunks", "ct", "ns", "vm" }, Directory.GetDirectories(store).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        // The plain 64 KiB zero chunk (golden's digest) and the keyed one are stored.
        Assert.True(writer.ChunkExists(ChunkDigest.Parse(ZeroDigest64K)));
        Assert.True(writer.ChunkExists(ChunkVerifier.ZeroChunkDigest(Chunk, crypt)));
        // vm/102 shares its chunks with vm/100 (same seed): the index's digests are a subset.
        var d100 = Digests(Path.Combine(i100.Directory, "drive-scsi0.img.fidx"));
        Assert.Subset(d100.ToHashSet(), Digests(Path.Combine(i102.Directory, "drive-scsi0.img.fidx")).ToHashSet());

        // Manifest JSON has the same keys as upstream's (golden expected/vm/100/.../index.json).
        using var golden = JsonDocument.Parse(File.ReadAllBytes(TestPaths.GoldenPath("expected/vm/100/2024-05-01T10:00:00Z/index.json")));
        ReadManifestJson(i100.Directory, out var plain);
        using (plain)
        {
            Assert.Equal(Keys(golden.RootElement), Keys(plain.RootElement));
            Assert.Equal(Keys(golden.RootElement.GetProperty("files")[0]), Keys(plain.RootElement.GetProperty("files")[0]));
            Assert.Equal(JsonValueKind.Null, plain.RootElement.GetProperty("signature").ValueKind);
            Assert.Equal(Keys(golden.RootElement.GetProperty("unprotected").GetProperty("chunk_upload_stats")),
                Keys(plain.RootElement.GetProperty("unprotected").GetProperty("chunk_upload_stats")));
        }
        using var goldenEnc = JsonDocument.Parse(File.ReadAllBytes(TestPaths.GoldenPath("expected/vm/101/2024-05-01T10:05:00Z/index.json")));
        var m101 = ReadManifestJson(i101.Directory, out var enc);
        using (enc)
        {
            Assert.Equal(Keys(goldenEnc.RootElement), Keys(enc.RootElement));
            Assert.Matches("^[0-9a-f]{64}$", enc.RootElement.GetProperty("signature").GetString());
            Assert.Equal(crypt.Fingerprint.ToString(), enc.RootElement.GetProperty("unprotected").GetProperty("key-fingerprint").GetString());
            Assert.All(m101.Files, f => Assert.Equal(CryptMode.Encrypt, f.CryptMode));
        }
        Assert.Throws<PbsKeyException>(() => m101.VerifyKey(null));
    }

    [SkippableTheory]
    [InlineData(SnapshotDirStyle.PrivateUse, "2024-05-01T10\uF03A00\uF03A00Z")]
    [InlineData(SnapshotDirStyle.Underscore, "2024-05-01T10_00_00Z")]
    [InlineData(SnapshotDirStyle.Colon, "2024-05-01T10:00:00Z")]
    public void SnapshotFolderName_CanUseWindowsMappings(SnapshotDirStyle style, string expected)
    {
        Skip.If(style == SnapshotDirStyle.Colon && OperatingSystem.IsWindows(), "Windows file names cannot hold ':'");
        using var tmp = new TempDir();
        var writer = new DatastoreWriter(tmp.Path);
        var s = writer.BeginSnapshot("a", "vm", "100", T0, dirStyle: style);
        s.AddImage("drive-scsi0.img", ImagePattern.Parse("text", 3 * Chunk, 1), Chunk);
        var info = s.Finish();
        Assert.Equal("ns/a/vm/100/2024-05-01T10:00:00Z", info.Path);
        Assert.Equal(expected, Path.GetFileName(info.Directory));
        Assert.Equal(new[] { expected }, Directory.GetDirectories(Path.Combine(tmp.Path, "ns", "a", "vm", "100")).Select(Path.GetFileName));
        DatastoreReader.VerifySnapshot(tmp.Path, info, null);
    }

    [Fact]
    public void ConcurrentWriters_ShareTheChunkStore()
    {
        using var tmp = new TempDir();
        var content = ImagePattern.Parse("random:3,text:2,dup:2,zero:1", 40L * Chunk, seed: 3);
        var infos = new SnapshotInfo[4];
        Parallel.For(0, infos.Length, i =>
        {
            var writer = new DatastoreWriter(tmp.Path);
            var s = writer.BeginSnapshot("", "vm", (100 + i).ToString(), T0);
            s.AddImage("drive-scsi0.img", content, Chunk);
            infos[i] = s.Finish();
        });
        Assert.Single(infos.Select(i => i.Archives[0].Sha256).Distinct());
        foreach (var info in infos) DatastoreReader.VerifySnapshot(tmp.Path, info, null);
        Assert.Empty(Directory.GetFiles(tmp.Path, "*.tmp_*", SearchOption.AllDirectories));
        // Inserting again is a no-op.
        var again = new DatastoreWriter(tmp.Path);
        var s2 = again.BeginSnapshot("", "vm", "100", T0.AddDays(1));
        s2.AddImage("drive-scsi0.img", content, Chunk);
        s2.Finish();
        Assert.Equal(0, again.ChunksWritten);
        // An existing snapshot is not overwritten.
        Assert.Throws<IOException>(() => again.BeginSnapshot("", "vm", "100", T0));
    }

    [Fact]
    public void StreamInputs_MatchImageContent()
    {
        using var tmp = new TempDir();
        var writer = new DatastoreWriter(tmp.Path) { DeterministicIvs = true, MaxParallelism = 3 };
        var content = ImagePattern.Parse("zero:30%,random:30%,text:30%,dup:10%", 20L * Chunk + 77, seed: 11);
        var crypt = new CryptConfig(new byte[32]);
        var s = writer.BeginSnapshot("", "vm", "100", T0, crypt);
        var a = s.AddImage("a.img", content, Chunk);
        var b = s.AddImage("b.img", ImageContent.AsStream(content, Chunk), Chunk);
        var info = s.Finish();
        Assert.Equal(a.Sha256, b.Sha256);
        Assert.Equal(File.ReadAllBytes(Path.Combine(info.Directory, a.FileName)).AsSpan(4096).ToArray(),
            File.ReadAllBytes(Path.Combine(info.Directory, b.FileName)).AsSpan(4096).ToArray());
        DatastoreReader.VerifySnapshot(tmp.Path, info, crypt);
    }

    [Fact]
    public void ImagePattern_IsDeterministicAndHasTheRequestedKinds()
    {
        var p = ImagePattern.Parse("zero:4,random:2,text:3,dup:2", 100L * Chunk, seed: 5);
        Assert.Equal("zero:4,random:2,text:3,dup:2", p.Spec);
        Assert.Equal(ChunkKind.Zero, p.KindOf(0));
        Assert.Equal(ChunkKind.Incompressible, p.KindOf(4));
        Assert.Equal(ChunkKind.Compressible, p.KindOf(6));
        Assert.Equal(ChunkKind.Duplicate, p.KindOf(9));
        Assert.Equal(ChunkKind.Zero, p.KindOf(11));
        var a = new byte[Chunk];
        var b = new byte[Chunk];
        Assert.Equal(ChunkFill.Zero, p.Fill(0, Chunk, a));
        Assert.Equal(ChunkFill.Data, p.Fill(4, Chunk, a));
        p.Fill(4, Chunk, b);
        Assert.Equal(a, b);
        p.Fill(5, Chunk, b);
        Assert.NotEqual(a, b);
        using var zstd = new Compressor(1);
        Assert.True(zstd.Wrap(a).Length > Chunk * 0.99, "random data must not compress");
        p.Fill(6, Chunk, a);
        double ratio = (double)Chunk / zstd.Wrap(a).Length;
        var big = new byte[4 << 20];
        ImagePattern.FillText(big, 1);
        double bigRatio = (double)big.Length / zstd.Wrap(big).Length;
        Assert.InRange(ratio, 2.3, 5.0);
        Assert.InRange(bigRatio, 2.8, 4.5);
        // A duplicate repeats an earlier data chunk.
        for (long i = 9; i < 100; i += 11)
        {
            long source = p.DuplicateSourceOf(i);
            Assert.InRange(source, 0, i - 1);
            Assert.Contains(p.KindOf(source), new[] { ChunkKind.Compressible, ChunkKind.Incompressible });
            p.Fill(i, Chunk, a);
            p.Fill(source, Chunk, b);
            Assert.Equal(a, b);
        }
        // A different seed gives different content; a mix follows its percentages.
        ImagePattern.Parse("random", Chunk, seed: 6).Fill(0, Chunk, b);
        ImagePattern.Parse("random", Chunk, seed: 5).Fill(0, Chunk, a);
        Assert.NotEqual(a, b);
        var mix = ImagePattern.Parse("zero:70%,random:10%,text:15%,dup:5%", 10000L * 512, seed: 1);
        var counts = Enumerable.Range(0, 10000).GroupBy(i => mix.KindOf(i)).ToDictionary(g => g.Key, g => g.Count());
        Assert.InRange(counts[ChunkKind.Zero], 6700, 7300);
        Assert.InRange(counts[ChunkKind.Incompressible], 850, 1150);
        Assert.Throws<FormatException>(() => ImagePattern.Parse("zero:1,bogus:2", 1));
        Assert.Throws<FormatException>(() => ImagePattern.Parse("zero:50%,random:2", 1));
    }

    [Fact]
    public void KeyFiles_AllKdfsOpenWithTheirPassword()
    {
        using var tmp = new TempDir();
        foreach (var kdf in new[] { KeyKdf.Scrypt, KeyKdf.Pbkdf2, KeyKdf.None })
        {
            string path = Path.Combine(tmp.Path, $"{kdf}.json");
            var crypt = KeyFiles.Create(path, kdf == KeyKdf.None ? null : "secret", kdf, seed: 9, scryptN: 1024, pbkdf2Iterations: 1000);
            var config = KeyConfig.Parse(File.ReadAllBytes(path), path);
            Assert.Equal(kdf != KeyKdf.None, config.NeedsPassword);
            Assert.Equal(crypt.Fingerprint, config.Open(kdf == KeyKdf.None ? null : "secret").Fingerprint);
            Assert.Equal(crypt.Fingerprint, config.Fingerprint);
            if (kdf != KeyKdf.None) Assert.Throws<PbsKeyException>(() => config.Open("wrong"));
        }
        // Seeded keys are reproducible.
        var k1 = KeyFiles.Create(Path.Combine(tmp.Path, "s1.json"), "pw", KeyKdf.Pbkdf2, seed: 1, pbkdf2Iterations: 10);
        var k2 = KeyFiles.Create(Path.Combine(tmp.Path, "s2.json"), "pw", KeyKdf.Pbkdf2, seed: 1, pbkdf2Iterations: 10);
        Assert.Equal(k1.Fingerprint, k2.Fingerprint);
    }

    [Fact]
    public void Cli_ImageVerbWritesASnapshotAndPrintsItsHash()
    {
        using var tmp = new TempDir();
        var output = new StringWriter();
        var previous = Console.Out;
        int rc;
        try
        {
            Console.SetOut(output);
            rc = Program.Main(["image", "--path", Path.Combine(tmp.Path, "ds"), "--ns", "x/y", "--id", "555", "--time", "2024-05-01T10:00:00Z",
                "--size", "1MiB", "--chunk-size", "64KiB", "--pattern", "zero:1,random:1,text:1,dup:1", "--seed", "4",
                "--keyfile", Path.Combine(tmp.Path, "k.json"), "--password", "pw", "--kdf", "pbkdf2", "--conf"]);
        }
        finally
        {
            Console.SetOut(previous);
        }
        Assert.Equal(0, rc);
        using var doc = JsonDocument.Parse(output.ToString());
        var root = doc.RootElement;
        Assert.Equal(ExpectedSha(ImagePattern.Parse("zero:1,random:1,text:1,dup:1", 1 << 20, 4), Chunk), root.GetProperty("sha256").GetString());
        Assert.Equal("ns/x/ns/y/vm/555/2024-05-01T10:00:00Z", root.GetProperty("snapshot").GetProperty("path").GetString());
        var crypt = KeyConfig.Parse(File.ReadAllBytes(Path.Combine(tmp.Path, "k.json"))).Open("pw");
        var manifest = DatastoreReader.ReadManifest(root.GetProperty("snapshot").GetProperty("directory").GetString()!, out var json);
        json.Dispose();
        manifest.VerifyKey(crypt);
        Assert.Equal(new[] { "qemu-server.conf.blob", "drive-scsi0.img.fidx" }, manifest.Files.Select(f => f.FileName));
    }

    private static string ExpectedSha(IImageContent content, int chunkSize)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[chunkSize];
        for (long i = 0; i * chunkSize < content.Size; i++)
        {
            var span = buffer.AsSpan(0, (int)Math.Min(chunkSize, content.Size - i * chunkSize));
            if (content.Fill(i, chunkSize, span) == ChunkFill.Zero) span.Clear();
            sha.AppendData(span);
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    private static BackupManifest ReadManifestJson(string dir, out JsonDocument json) => DatastoreReader.ReadManifest(dir, out json);

    private static string[] Keys(JsonElement e) => e.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal).ToArray();

    private static List<ChunkDigest> Digests(string fidx)
    {
        var index = FixedIndex.Parse(File.ReadAllBytes(fidx));
        return Enumerable.Range(0, index.Count).Select(index.DigestAt).ToList();
    }

    private static IEnumerable<long> ReadDynamicEnds(string didx)
    {
        var index = DynamicIndex.Parse(File.ReadAllBytes(didx));
        return Enumerable.Range(0, index.Count).Select(i => index.OffsetOf(i) + index.LengthOf(i));
    }
}

[CollectionDefinition(nameof(FixturesMemoryCollection), DisableParallelization = true)]
public sealed class FixturesMemoryCollection;

/// <summary>Runs alone so that no other test's allocations disturb the measurement.</summary>
[Collection(nameof(FixturesMemoryCollection))]
public class DatastoreWriterStreamingTests(ITestOutputHelper output)
{
    [Fact]
    public void OneGiBImage_IsWrittenWithBoundedMemory()
    {
        using var tmp = new TempDir();
        const long size = 1L << 30;
        const int chunk = 4 << 20;
        var content = ImagePattern.Parse("zero:28,random:2,text:1,dup:1", size, seed: 99);
        var writer = new DatastoreWriter(tmp.Path);

        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        long baseline = GC.GetTotalMemory(false);
        long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        long peak = baseline;
        using var stop = new CancellationTokenSource();
        var sampler = new Thread(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                long now = GC.GetTotalMemory(false);
                if (now > Interlocked.Read(ref peak)) Interlocked.Exchange(ref peak, now);
                Thread.Sleep(1);
            }
        }) { IsBackground = true };
        sampler.Start();
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var s = writer.BeginSnapshot("", "vm", "100", new DateTimeOffset(2024, 5, 1, 10, 0, 0, TimeSpan.Zero));
        var image = s.AddImage("drive-scsi0.img", content, chunk);
        var info = s.Finish();
        sw.Stop();
        stop.Cancel();
        sampler.Join();
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
        long growth = Interlocked.Read(ref peak) - baseline;

        output.WriteLine($"1 GiB image in {sw.Elapsed.TotalSeconds:F2} s; managed heap peak growth {growth / 1048576.0:F1} MiB; allocated {allocated / 1048576.0:F1} MiB; {writer.ChunksWritten} chunks written");
        Assert.Equal(size, image.Size);
        Assert.Equal(256, image.ChunkCount);
        // 8 random + 8 text... per 32 chunks: 2 random, 1 text, 1 dup; plus the zero chunk.
        Assert.Equal(8 * 3 + 1, writer.ChunksWritten);
        Assert.True(growth < 512L << 20, $"managed heap grew by {growth >> 20} MiB writing a {size >> 20} MiB image");
        Assert.True(allocated < size / 2, $"{allocated >> 20} MiB allocated writing a {size >> 20} MiB image");
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(20), $"took {sw.Elapsed}");
        // Spot-check: manifest and index verify, and one random chunk decodes to what the pattern generates.
        var manifest = DatastoreReader.ReadManifest(info.Directory, out var json);
        json.Dispose();
        var entry = manifest.FindFile("drive-scsi0.img.fidx")!;
        var index = FixedIndex.Parse(File.ReadAllBytes(Path.Combine(info.Directory, entry.FileName)));
        BackupManifest.VerifyFile(entry, index.Size, index.ComputeCsum());
        using var decoder = new BlobDecoder(null, chunk);
        var plain = new byte[chunk];
        var expected = new byte[chunk];
        string hex = index.DigestAt(28).ToString();
        decoder.Decode(File.ReadAllBytes(Path.Combine(tmp.Path, ".chunks", hex[..4], hex)), plain);
        content.Fill(28, chunk, expected);
        Assert.Equal(expected, plain);
    }
}
