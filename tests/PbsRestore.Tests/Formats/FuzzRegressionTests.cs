using System.Security.Cryptography;
using PbsRestore.Formats;
using static PbsRestore.Tests.Formats.FormatsTestSupport;

namespace PbsRestore.Tests.Formats;

/// <summary>
/// Replays the inputs the fuzzer (tests/PbsRestore.Fuzz) saved in FuzzRegressions/&lt;target&gt;-&lt;sha8&gt;.bin through the
/// same parser calls it makes: each must now end in success or a <see cref="PbsException"/>, never another exception,
/// and stay within the fuzzer's time and memory bounds.
/// </summary>
public class FuzzRegressionTests
{
    private const int MaxDecodedSize = 4 << 20;
    private static readonly byte[] Password = "fuzz-password"u8.ToArray();
    private static readonly CryptConfig FuzzKey = new(SHA256.HashData("pbsrestore fuzz key"u8));

    private static string Folder => Path.Combine(TestPaths.RepoRoot, "tests", "PbsRestore.Tests", "Formats", "FuzzRegressions");

    public static TheoryData<string> Inputs()
    {
        var data = new TheoryData<string>();
        foreach (var f in Directory.EnumerateFiles(Folder, "*.bin").Order(StringComparer.Ordinal)) data.Add(Path.GetFileName(f));
        return data;
    }

    [Theory]
    [MemberData(nameof(Inputs))]
    public void SavedInput_EndsInSuccessOrPbsException_WithinBounds(string name)
    {
        string target = name[..name.IndexOf('-')];
        var input = File.ReadAllBytes(Path.Combine(Folder, name));
        _ = ScryptKey; // opened once (scrypt n=2^16 allocates 64 MiB), outside the measurement
        long before = GC.GetAllocatedBytesForCurrentThread();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Run(target, input); // any non-Pbs exception fails the test
        clock.Stop();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < 64L << 20, $"{name}: {allocated >> 20} MiB allocated");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"{name}: took {clock.Elapsed}");
    }

    /// <summary>The crashes found in the first fuzz run: raw invalid UTF-8 inside a JSON string parsed, and then
    /// UnprotectedJson / VerifyKey threw InvalidOperationException ("Cannot transcode invalid UTF-8").</summary>
    [Theory]
    [InlineData("manifest-037bc3d1.bin")]
    [InlineData("manifest-64e9a48f.bin")]
    [InlineData("manifest-7e12e188.bin")]
    public void InvalidUtf8Manifest_IsManifestInvalid(string name)
    {
        var input = File.ReadAllBytes(Path.Combine(Folder, name));
        var e = Assert.Throws<PbsFormatException>(() => BackupManifest.Parse(input));
        Assert.Equal("ManifestInvalid", e.ErrorId);
    }

    [Fact]
    public void TheFolderHoldsOnlyNamedTargets()
    {
        string[] targets = ["blob", "fidx", "didx", "manifest", "keyfile", "pxar", "catalog", .. PbsRestore.Fuzz.IscsiFuzz.Targets];
        foreach (var f in Directory.EnumerateFiles(Folder))
        {
            string n = Path.GetFileName(f);
            Assert.Matches(@"^[a-z]+-[0-9a-f]{8}\.bin$", n);
            Assert.Contains(n[..n.IndexOf('-')], targets);
        }
    }

    /// <summary>The fuzzer's Harness.Run, call for call.</summary>
    private static void Run(string target, byte[] input)
    {
        var keys = new[] { FuzzKey, ScryptKey };
        switch (target)
        {
            case "blob":
            {
                var destination = new byte[MaxDecodedSize];
                foreach (var key in new[] { null, FuzzKey, ScryptKey })
                {
                    using var d = new BlobDecoder(key, MaxDecodedSize);
                    Try(() => d.Decode(input, destination));
                }
                break;
            }
            case "fidx":
                Try(() => Walk(FixedIndex.Parse(input, "fuzz.fidx")));
                break;
            case "didx":
                Try(() => Walk(DynamicIndex.Parse(input, "fuzz.didx")));
                break;
            case "manifest":
                Try(() =>
                {
                    var m = BackupManifest.Parse(input, "fuzz manifest");
                    _ = m.UnprotectedJson;
                    foreach (var f in m.Files) _ = (f.Kind, ArchiveNames.DisplayName(f.FileName));
                    Try(() => m.VerifyKey(null));
                    foreach (var k in keys) Try(() => m.VerifyKey(k));
                });
                break;
            case "keyfile":
                Try(() =>
                {
                    var kc = KeyConfig.Parse(input, "fuzz.key.json");
                    _ = kc.ToString();
                    bool cheap = kc.Kdf switch
                    {
                        KeyDerivation.Scrypt s => (long)s.N * s.R * s.P <= 4096,
                        KeyDerivation.Pbkdf2 p => p.Iterations <= 5000,
                        _ => true,
                    };
                    if (!cheap) return;
                    Try(() => kc.Open(Password));
                    Try(() => kc.Open(ReadOnlySpan<byte>.Empty));
                    Try(() => kc.Open("wrong"u8));
                });
                break;
            case "pxar":
                Try(() => PbsRestore.Fixtures.FormatExercise.Pxar(input));
                break;
            case "catalog":
                Try(() => PbsRestore.Fixtures.FormatExercise.Catalog(input));
                break;
            case "iscsipdu" or "iscsilogin" or "iscsisession":
                PbsRestore.Fuzz.IscsiFuzz.Run(target, input); // throws on a crash (tests/PbsRestore.Fuzz/IscsiFuzz.cs, linked)
                break;
            default:
                throw new ArgumentException($"unknown fuzz target '{target}'");
        }
    }

    private static void Walk(IChunkIndex ix)
    {
        _ = (ix.Size, ix.MaxChunkSize, ix.ComputeCsum());
        for (int i = 0; i < ix.Count && i < 64; i++) _ = (ix.DigestAt(i), ix.OffsetOf(i), ix.LengthOf(i));
        if (ix.Count > 0) _ = (ix.DigestAt(ix.Count - 1), ix.OffsetOf(ix.Count - 1), ix.LengthOf(ix.Count - 1));
    }

    private static void Try(Action a)
    {
        try
        {
            a();
        }
        catch (PbsException)
        {
        }
    }
}
