using System.Buffers.Binary;
using System.Diagnostics;
using System.IO.Hashing;
using System.Security.Cryptography;
using System.Text;
using PbsRestore;
using PbsRestore.Formats;

namespace PbsRestore.Fuzz;

/// <summary>
/// A mutation fuzzer for the formats layer (issue 5 item 7). Seeds come from the golden datastore
/// (&lt;repo&gt;/../shared/golden, read-only) and from inputs generated with the writers; each input is mutated
/// (bit flips, byte sets, interesting integers at header offsets, truncation, extension, splicing, JSON token
/// edits) and fed to the parser. Contract: success or a PbsException; any other exception is a crash, and so is
/// an input taking more than 1 s or allocating more than 64 MiB. Failing inputs are saved to
/// tests/PbsRestore.Tests/Formats/FuzzRegressions/&lt;target&gt;-&lt;sha8&gt;.bin and the exit code is 1.
///
/// Usage: PbsRestore.Fuzz --seconds N [--seed S] [--target blob|fidx|didx|manifest|keyfile|pxar|catalog|iscsipdu|iscsilogin|iscsisession|all] [--corpus DIR] [--out DIR]
/// (--seconds is per target; 'all' runs the targets one after the other.)
/// </summary>
public static class Program
{
    public static readonly string[] AllTargets = ["blob", "fidx", "didx", "manifest", "keyfile", "pxar", "catalog", .. IscsiFuzz.Targets];
    private const double SlowSeconds = 1.0;
    private const long MaxAllocated = 64L << 20;

    public static int Main(string[] args)
    {
        int seconds = 10;
        int seed = Environment.TickCount;
        string target = "all";
        string? corpus = null, outDir = null;
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i].TrimStart('-').ToLowerInvariant();
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"--{a} needs a value");
            switch (a)
            {
                case "seconds": seconds = int.Parse(Next()); break;
                case "seed": seed = int.Parse(Next()); break;
                case "target": target = Next().ToLowerInvariant(); break;
                case "corpus": corpus = Next(); break;
                case "out": outDir = Next(); break;
                case "h" or "help" or "?":
                    Console.WriteLine("PbsRestore.Fuzz --seconds N [--seed S] [--target blob|fidx|didx|manifest|keyfile|pxar|catalog|iscsipdu|iscsilogin|iscsisession|all] [--corpus DIR] [--out DIR]");
                    return 0;
                default:
                    Console.Error.WriteLine($"unknown argument '{args[i]}'");
                    return 2;
            }
        }
        var targets = target == "all" ? AllTargets : [target];
        if (targets.Any(t => !AllTargets.Contains(t)))
        {
            Console.Error.WriteLine($"unknown target '{target}'");
            return 2;
        }

        string root = FindRepoRoot();
        string golden = Path.GetFullPath(Path.Combine(root, "..", "shared", "golden"));
        outDir ??= Path.Combine(root, "tests", "PbsRestore.Tests", "Formats", "FuzzRegressions");
        Console.WriteLine($"seed {seed}, {seconds} s per target, golden {golden}, crashes to {outDir}");

        var harness = new Harness(golden);
        int totalCrashes = 0;
        foreach (var t in targets)
        {
            var seeds = Seeds.For(t, golden, harness, corpus, outDir);
            var fuzzer = new Fuzzer(t, seeds, harness, new Random(seed ^ t.GetHashCode(StringComparison.Ordinal)), outDir);
            var r = fuzzer.Run(TimeSpan.FromSeconds(seconds));
            totalCrashes += r.Crashes;
            Console.WriteLine($"{t,-9} seeds {seeds.Count,4}  execs {r.Execs,9}  execs/s {r.Execs / Math.Max(r.Elapsed.TotalSeconds, 0.001),8:F0}  " +
                              $"pbs-errors {r.PbsErrors,9}  ok {r.Successes,8}  crashes {r.Crashes}  slow {r.Slow}  mem {r.Memory}  " +
                              $"max {r.MaxMillis:F0} ms / {r.MaxAllocated >> 10} KiB per input");
        }
        Console.WriteLine(totalCrashes == 0 ? "no crashes" : $"{totalCrashes} crashing input(s) saved under {outDir}");
        return totalCrashes == 0 ? 0 : 1;
    }

    private static string FindRepoRoot()
    {
        foreach (var start in new[] { AppContext.BaseDirectory, Directory.GetCurrentDirectory() })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "PbsRestore.slnx"))) return dir.FullName;
        throw new InvalidOperationException("PbsRestore.slnx not found above the program or the current directory");
    }
}

/// <summary>Calls the parsers for one target; the same calls as FuzzRegressionTests makes.</summary>
public sealed class Harness
{
    public const int MaxDecodedSize = 4 << 20;
    public static readonly byte[] Password = "fuzz-password"u8.ToArray();

    private readonly BlobDecoder _plain = new(null, MaxDecodedSize);
    private readonly List<BlobDecoder> _keyed = [];
    private readonly byte[] _destination = new byte[MaxDecodedSize];

    public Harness(string golden)
    {
        FuzzKey = new CryptConfig(SHA256.HashData("pbsrestore fuzz key"u8));
        Keys.Add(FuzzKey);
        try
        {
            // The golden encrypted snapshot's key (scrypt n=2^16: opened once, not per input).
            var kf = KeyConfig.Parse(File.ReadAllBytes(Path.Combine(golden, "keys", "scrypt.key.json")));
            Keys.Add(kf.Open("golden-shared-scrypt-pass"u8));
        }
        catch (Exception e) when (e is IOException or PbsException)
        {
            Console.Error.WriteLine($"warning: golden scrypt key not opened: {e.Message}");
        }
        foreach (var k in Keys) _keyed.Add(new BlobDecoder(k, MaxDecodedSize));
    }

    public CryptConfig FuzzKey { get; }
    public List<CryptConfig> Keys { get; } = [];

    /// <summary>Runs the parsers of <paramref name="target"/>; returns the number of PbsExceptions they threw
    /// (non-Pbs exceptions propagate: they are the crashes).</summary>
    public int Run(string target, byte[] input)
    {
        int errors = 0;
        switch (target)
        {
            case "blob":
                errors += Try(() => _plain.Decode(input, _destination));
                foreach (var d in _keyed) errors += Try(() => d.Decode(input, _destination));
                break;
            case "fidx":
                errors += Try(() =>
                {
                    var ix = FixedIndex.Parse(input, "fuzz.fidx");
                    Walk(ix);
                });
                break;
            case "didx":
                errors += Try(() =>
                {
                    var ix = DynamicIndex.Parse(input, "fuzz.didx");
                    Walk(ix);
                });
                break;
            case "manifest":
                errors += Try(() =>
                {
                    var m = BackupManifest.Parse(input, "fuzz manifest");
                    _ = m.UnprotectedJson;
                    foreach (var f in m.Files) _ = (f.Kind, ArchiveNames.DisplayName(f.FileName));
                    errors += Try(() => m.VerifyKey(null));
                    foreach (var k in Keys) errors += Try(() => m.VerifyKey(k));
                });
                break;
            case "keyfile":
                errors += Try(() =>
                {
                    var kc = KeyConfig.Parse(input, "fuzz.key.json");
                    _ = kc.ToString();
                    if (CheapKdf(kc.Kdf))
                    {
                        errors += Try(() => kc.Open(Password));
                        errors += Try(() => kc.Open(ReadOnlySpan<byte>.Empty));
                        errors += Try(() => kc.Open("wrong"u8));
                    }
                });
                break;
            case "pxar":
                errors += Try(() => PbsRestore.Fixtures.FormatExercise.Pxar(input));
                break;
            case "catalog":
                errors += Try(() => PbsRestore.Fixtures.FormatExercise.Catalog(input));
                break;
            case "iscsipdu" or "iscsilogin" or "iscsisession":
                errors += IscsiFuzz.Run(target, input);
                break;
            default:
                throw new ArgumentException($"unknown target {target}");
        }
        return errors;
    }

    /// <summary>Only KDFs this cheap are run per input; the parser's own bounds (scrypt n ≤ 2^20, PBKDF2 ≤ 10^7) are far too slow for a fuzzer.</summary>
    public static bool CheapKdf(KeyDerivation kdf) => kdf switch
    {
        KeyDerivation.None => true,
        KeyDerivation.Scrypt s => (long)s.N * s.R * s.P <= 4096,
        KeyDerivation.Pbkdf2 p => p.Iterations <= 5000,
        _ => false,
    };

    private static void Walk(IChunkIndex ix)
    {
        // Touch what the restore planner reads: first/last entries (all of them would make big indexes slow).
        _ = (ix.Size, ix.MaxChunkSize, ix.ComputeCsum());
        for (int i = 0; i < ix.Count && i < 64; i++) _ = (ix.DigestAt(i), ix.OffsetOf(i), ix.LengthOf(i));
        if (ix.Count > 0) _ = (ix.DigestAt(ix.Count - 1), ix.OffsetOf(ix.Count - 1), ix.LengthOf(ix.Count - 1));
    }

    private static int Try(Action a)
    {
        try
        {
            a();
            return 0;
        }
        catch (PbsException)
        {
            return 1;
        }
    }
}

public sealed record FuzzResult(long Execs, long PbsErrors, long Successes, int Crashes, int Slow, int Memory, TimeSpan Elapsed, double MaxMillis, long MaxAllocated);

public sealed class Fuzzer(string target, List<byte[]> seeds, Harness harness, Random rng, string outDir)
{
    private static readonly long[] Interesting =
    [
        0, 1, 2, 7, 8, 15, 16, 31, 32, 40, 63, 64, 127, 128, 255, 256, 511, 512, 513, 1023, 1024, 4095, 4096, 4097,
        65535, 65536, 65537, (1 << 20) - 1, 1 << 20, (1 << 22) - 1, 1 << 22, (1 << 22) + 1, 1 << 24, 1 << 26, (1 << 26) + 1,
        1 << 27, (1 << 27) + 1, int.MaxValue, (long)int.MaxValue + 1, uint.MaxValue, 1L << 32, 1L << 40, 1L << 50, (1L << 50) + 1,
        long.MaxValue, long.MinValue, -1, -2, 3 << 20, 1000, 4 * 1024 * 1024 + 12,
    ];

    private readonly List<byte[]> _pool = new(seeds);
    private readonly HashSet<string> _saved = [];

    public FuzzResult Run(TimeSpan duration)
    {
        long execs = 0, pbs = 0, ok = 0;
        int crashes = 0, slow = 0, mem = 0;
        double maxMs = 0;
        long maxAlloc = 0;
        var watchdog = new Watchdog(target, outDir);
        var total = Stopwatch.StartNew();
        // Every seed once as is, then mutants.
        int seedIndex = 0;
        while (total.Elapsed < duration)
        {
            byte[] input = seedIndex < _pool.Count ? _pool[seedIndex++] : Mutate();
            watchdog.Begin(input);
            long before = GC.GetAllocatedBytesForCurrentThread();
            long t0 = Stopwatch.GetTimestamp();
            Exception? crash = null;
            int errors = 0;
            try
            {
                errors = harness.Run(target, input);
            }
            catch (Exception e)
            {
                crash = e;
            }
            double ms = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            watchdog.End();
            execs++;
            maxMs = Math.Max(maxMs, ms);
            maxAlloc = Math.Max(maxAlloc, allocated);
            string? why = null;
            if (crash is not null)
            {
                crashes++;
                why = $"{crash.GetType().FullName}: {crash.Message}\n{crash.StackTrace}";
            }
            else if (ms > 1000 * 1.0)
            {
                slow++;
                crashes++;
                why = $"slow: {ms:F0} ms";
            }
            else if (allocated > 64L << 20)
            {
                mem++;
                crashes++;
                why = $"memory: {allocated >> 20} MiB allocated";
            }
            if (why is not null) Save(input, why);
            else if (errors > 0) pbs++;
            else ok++;
            // Keep some inputs that parsed (or got deep enough to fail late) as new material.
            if (why is null && _pool.Count < 4000 && rng.Next(errors == 0 ? 8 : 200) == 0) _pool.Add(input);
        }
        return new FuzzResult(execs, pbs, ok, crashes, slow, mem, total.Elapsed, maxMs, maxAlloc);
    }

    private void Save(byte[] input, string why)
    {
        string sha8 = Convert.ToHexStringLower(SHA256.HashData(input))[..8];
        if (!_saved.Add(sha8)) return;
        Directory.CreateDirectory(outDir);
        string path = Path.Combine(outDir, $"{target}-{sha8}.bin");
        File.WriteAllBytes(path, input);
        Console.WriteLine($"CRASH {target} {path}\n  {why.Replace("\n", "\n  ")}");
    }

    private byte[] Mutate()
    {
        var data = _pool[rng.Next(_pool.Count)];
        var list = new List<byte>(data);
        bool json = target is "manifest" or "keyfile";
        int rounds = 1 + rng.Next(rng.Next(2) == 0 ? 2 : 6);
        for (int r = 0; r < rounds; r++)
        {
            if (json && rng.Next(3) != 0)
                list = JsonMutate(list);
            else
                BinaryMutate(list);
        }
        var result = list.ToArray();
        // Blobs: most byte-level damage is stopped by the CRC; fix it up most of the time to get past it.
        if (target == "blob" && result.Length >= 12 && rng.Next(4) != 0) FixCrc(result);
        return result;
    }

    private static void FixCrc(byte[] raw)
    {
        int header = 12;
        try
        {
            if (DataBlob.IsEncrypted(DataBlob.GetKind(raw))) header = 44;
        }
        catch (PbsException)
        {
        }
        if (raw.Length < header) return;
        BinaryPrimitives.WriteUInt32LittleEndian(raw.AsSpan(8), Crc32.HashToUInt32(raw.AsSpan(header)));
    }

    private int HeaderOffset(int length)
    {
        // Offsets where the formats keep sizes and lengths.
        int[] hot = target switch
        {
            "fidx" => [64, 72, 68, 76, 4096],
            "didx" => [4096, 4096 + 40, 4096 + 80, Math.Max(4096, length - 40)],
            "blob" => [8, 12, 28, 44, 16, 48],
            _ => [0],
        };
        return rng.Next(3) == 0 || length == 0 ? rng.Next(Math.Max(1, length)) : hot[rng.Next(hot.Length)];
    }

    private void BinaryMutate(List<byte> d)
    {
        switch (rng.Next(10))
        {
            case 0 when d.Count > 0: // bit flip
            {
                int at = rng.Next(d.Count);
                d[at] ^= (byte)(1 << rng.Next(8));
                break;
            }
            case 1 when d.Count > 0: // byte set
            {
                int at = rng.Next(d.Count);
                d[at] = rng.Next(3) switch { 0 => 0, 1 => 0xff, _ => (byte)rng.Next(256) };
                break;
            }
            case 2 or 3: // interesting integer at a header offset
            {
                int width = new[] { 1, 2, 4, 8 }[rng.Next(4)];
                int at = HeaderOffset(d.Count);
                long v = Interesting[rng.Next(Interesting.Length)];
                if (rng.Next(4) == 0) v += rng.Next(-2, 3);
                Span<byte> b = stackalloc byte[8];
                BinaryPrimitives.WriteInt64LittleEndian(b, v);
                while (d.Count < at + width) d.Add(0);
                for (int i = 0; i < width; i++) d[at + i] = b[i];
                break;
            }
            case 4 when d.Count > 0: // truncation
            {
                int cut = rng.Next(4) == 0 ? rng.Next(Math.Min(d.Count, 64)) : rng.Next(d.Count);
                d.RemoveRange(cut, d.Count - cut);
                break;
            }
            case 5: // extension: random bytes, zeros or a repeated tail
            {
                int n = rng.Next(4) == 0 ? rng.Next(1, 70_000) : rng.Next(1, 64);
                int kind = rng.Next(3);
                for (int i = 0; i < n; i++)
                    d.Add(kind switch { 0 => 0, 1 => (byte)rng.Next(256), _ => d.Count > 0 ? d[rng.Next(d.Count)] : (byte)0 });
                break;
            }
            case 6: // splice with another input
            {
                var other = _pool[rng.Next(_pool.Count)];
                if (other.Length == 0) break;
                int from = rng.Next(other.Length), len = rng.Next(1, Math.Min(other.Length - from, 8192) + 1);
                int at = rng.Next(d.Count + 1);
                if (rng.Next(2) == 0) d.InsertRange(at, other.Skip(from).Take(len));
                else
                {
                    d.RemoveRange(at, d.Count - at);
                    d.AddRange(other.Skip(from).Take(len));
                }
                break;
            }
            case 7 when d.Count > 1: // delete a range
            {
                int at = rng.Next(d.Count);
                d.RemoveRange(at, rng.Next(1, Math.Min(d.Count - at, 256) + 1));
                break;
            }
            case 8 when d.Count > 1: // duplicate a range (e.g. a didx entry)
            {
                int at = rng.Next(d.Count);
                int len = rng.Next(1, Math.Min(d.Count - at, target == "didx" ? 40 : 256) + 1);
                d.InsertRange(at, d.GetRange(at, len));
                break;
            }
            default: // random bytes over a range
            {
                if (d.Count == 0) { d.Add((byte)rng.Next(256)); break; }
                int at = rng.Next(d.Count);
                int len = Math.Min(d.Count - at, rng.Next(1, 16));
                for (int i = 0; i < len; i++) d[at + i] = (byte)rng.Next(256);
                break;
            }
        }
    }

    private static readonly string[] JsonReplacements =
    [
        "0", "-1", "1", "2", "16", "1024", "4096", "65536", "1048576", "2147483647", "2147483648", "4294967296",
        "9223372036854775807", "9223372036854775808", "-9223372036854775809", "1e400", "-0", "0.5", "1e3", "NaN",
        "true", "false", "null", "[]", "{}", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", "\"\"", "\"..\"", "\"../../etc/passwd.blob\"",
        "\"/etc/passwd.fidx\"", "\"C:\\\\x.fidx\"", "\"a\\u0000b.fidx\"", "\"drive-scsi0.img.fidx\"", "\"encrypt\"", "\"sign-only\"", "\"none\"",
        "\"\\ud800\"", "\"é.blob\"", "\"AAAA\"", "\"!!!\"", "\"00:11\"", "{\"Scrypt\":{\"n\":16,\"r\":1,\"p\":1,\"salt\":\"\"}}",
        "{\"PBKDF2\":{\"iter\":1,\"salt\":\"\"}}", "{\"Scrypt\":{\"n\":1048576,\"r\":32,\"p\":16,\"salt\":\"AA==\"}}",
    ];

    private List<byte> JsonMutate(List<byte> d)
    {
        var text = Encoding.UTF8.GetString(d.ToArray());
        var tokens = Tokenize(text);
        if (tokens.Count == 0) return new List<byte>(Encoding.UTF8.GetBytes(JsonReplacements[rng.Next(JsonReplacements.Length)]));
        int i = rng.Next(tokens.Count);
        switch (rng.Next(8))
        {
            case 0 or 1: tokens[i] = JsonReplacements[rng.Next(JsonReplacements.Length)]; break;
            case 2: tokens.RemoveAt(i); break;
            case 3: tokens.Insert(i, tokens[rng.Next(tokens.Count)]); break;
            case 4:
            {
                int j = rng.Next(tokens.Count);
                (tokens[i], tokens[j]) = (tokens[j], tokens[i]);
                break;
            }
            case 5: // numbers: off by a bit
                if (long.TryParse(tokens[i], out long n)) tokens[i] = (n + rng.Next(-2, 3)).ToString();
                else if (tokens[i].Length > 2 && tokens[i][0] == '"') tokens[i] = tokens[i][..^2] + "\"";
                break;
            case 6: // deep nesting around a value
            {
                int depth = rng.Next(2) == 0 ? rng.Next(1, 40) : rng.Next(40, 5000);
                tokens[i] = new string('[', depth) + tokens[i] + new string(']', depth);
                break;
            }
            default: // string edits: append a hostile piece or a duplicate key
                if (tokens[i].StartsWith('"') && tokens[i].Length >= 2)
                    tokens[i] = tokens[i][..^1] + new[] { "/..", "\\u0000", "x", "..", "é", "\\\"" }[rng.Next(6)] + "\"";
                else tokens.Insert(i, ",\"files\":[]");
                break;
        }
        return new List<byte>(Encoding.UTF8.GetBytes(string.Concat(tokens)));
    }

    /// <summary>Rough JSON tokens: strings, numbers/literals, single punctuation characters; whitespace is dropped.</summary>
    private static List<string> Tokenize(string s)
    {
        var tokens = new List<string>();
        int i = 0;
        while (i < s.Length)
        {
            char c = s[i];
            if (char.IsWhiteSpace(c)) { i++; continue; }
            if (c == '"')
            {
                int j = i + 1;
                while (j < s.Length && s[j] != '"') j += s[j] == '\\' ? 2 : 1;
                j = Math.Min(j + 1, s.Length);
                tokens.Add(s[i..j]);
                i = j;
            }
            else if (char.IsLetterOrDigit(c) || c is '-' or '+' or '.')
            {
                int j = i;
                while (j < s.Length && (char.IsLetterOrDigit(s[j]) || s[j] is '-' or '+' or '.')) j++;
                tokens.Add(s[i..j]);
                i = j;
            }
            else
            {
                tokens.Add(c.ToString());
                i++;
            }
        }
        return tokens;
    }
}

/// <summary>Saves the current input and stops the process when one input runs far too long (a hang cannot be caught).</summary>
public sealed class Watchdog
{
    private volatile byte[]? _current;
    private long _started;

    public Watchdog(string target, string outDir)
    {
        var thread = new Thread(() =>
        {
            while (true)
            {
                Thread.Sleep(250);
                var input = _current;
                if (input is null || Stopwatch.GetElapsedTime(Interlocked.Read(ref _started)).TotalSeconds < 20) continue;
                string sha8 = Convert.ToHexStringLower(SHA256.HashData(input))[..8];
                Directory.CreateDirectory(outDir);
                string path = Path.Combine(outDir, $"{target}-{sha8}.bin");
                File.WriteAllBytes(path, input);
                Console.WriteLine($"HANG {target} {path}: an input ran for more than 20 s");
                Environment.Exit(1);
            }
        }) { IsBackground = true, Name = "fuzz watchdog" };
        thread.Start();
    }

    public void Begin(byte[] input)
    {
        Interlocked.Exchange(ref _started, Stopwatch.GetTimestamp());
        _current = input;
    }

    public void End() => _current = null;
}
