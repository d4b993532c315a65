using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using PbsRestore.Fixtures;
using PbsRestore.Formats;
using PbsRestore.Sources.Remote;
using PbsRestore.Restore;
using PbsRestore.Sources;
using PbsRestore.Destinations;
using PbsRestore.Sources.Local;

namespace PbsRestore.Bench;

/// <summary>
/// The restore benchmark (issue 4): strategies × scenarios side by side in one run, the wire and decode ceilings,
/// a native reference, memory and sparse restores. Writes bench/RESULTS.md. Run: <c>dotnet pwsh ./build.ps1 Bench</c>.
/// Options: <c>--repeats N</c> (default 2), <c>--cap SECONDS</c> (per run; slower runs are stopped and
/// extrapolated, default 8), <c>--quick</c> (smaller images, for trying the program out; not for RESULTS.md).
/// <c>--image-formats</c> alone runs only the Raw / VHDX / VHD comparison (<see cref="ImageFormatsBench"/>);
/// <c>--genuine</c> alone only the row against the genuine PBS server (<see cref="GenuineBench"/>).
/// <c>--file-restore [--quick]</c> alone runs only the file-level restore rows (<see cref="FileRestoreBench"/>).
/// <c>--publish [--quick]</c> alone runs only the Publish-PbsImage rows (<see cref="PublishBench"/>).
/// <c>--write-path [--quick]</c> alone runs only the write-path rows: to null / to file / pwrite loop, dirty pages, native floor (<see cref="WritePathBench"/>).
/// </summary>
public static class Program
{
    internal const string Token = "root@pam!bench:bench-secret";
    internal const string Archive = "drive-scsi0.img";
    internal const int ChunkSize = 4 << 20;
    internal static readonly DateTimeOffset Time = DateTimeOffset.Parse("2024-05-01T10:00:00Z", CultureInfo.InvariantCulture);

    public static async Task<int> Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "--probe-memory") return await MemoryProbe.RunChildAsync(args[1..]);
        if (args.Length > 0 && args[0] == "--image-formats") return await ImageFormatsBench.RunAsync(args[1..]);
        if (args.Length > 0 && args[0] == "--genuine") return await GenuineBench.RunAsync(args[1..]);
        if (args.Length > 0 && args[0] == "--file-restore") return await FileRestoreBench.RunAsync(args[1..]);
        if (args.Length > 0 && args[0] == "--server-session") return await ServerSessionBench.RunAsync(args[1..]);
        if (args.Length > 0 && args[0] == "--publish") return await PublishBench.RunAsync(args[1..]);
        if (args.Length > 0 && args[0] == "--write-path") return await WritePathBench.RunAsync(args[1..]);
        var opts = BenchOptions.Parse(args);
        var bench = new Benchmark(opts);
        try
        {
            await bench.RunAsync();
            return 0;
        }
        finally
        {
            bench.StopServers();
        }
    }
}

internal sealed record BenchOptions(int Repeats, TimeSpan Cap, bool Quick, string Root)
{
    public static BenchOptions Parse(string[] args)
    {
        int repeats = 2;
        double cap = 8;
        bool quick = false;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--repeats": repeats = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--cap": cap = double.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--quick": quick = true; break;
                default: throw new ArgumentException($"unknown argument '{args[i]}' (--repeats N, --cap SECONDS, --quick)");
            }
        }
        string root = FindRoot();
        return new BenchOptions(repeats, TimeSpan.FromSeconds(cap), quick, root);
    }

    /// <summary>The repository root (where PbsRestore.slnx is, above the binary), else the current folder: every mode
    /// keeps its datastores under artifacts/bench there and starts our server's build from there.</summary>
    internal static string FindRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "PbsRestore.slnx"))) return d.FullName;
        return Directory.GetCurrentDirectory();
    }
}

/// <summary>One image of the bench datastore: a snapshot vm/&lt;Id&gt; with one fixed-index archive.</summary>
internal sealed record ImageSpec(string Id, string Name, long Size, string Pattern, ulong Seed, bool FullHash)
{
    public string Key => $"{Size}|{Pattern}|{Seed}|{Program.ChunkSize}|{FullHash}|upstream-frames|v1";
    public SnapshotRef Snapshot => new(BackupNamespace.Root, "vm", Id, Program.Time);
}

internal sealed record Strategy(string Name, RestoreOptions Options, int Sessions);

internal sealed record Scenario(string Name, string What, string[]? ServerFlags);

/// <summary>One restore: rates are logical (image bytes) and wire (encoded chunk bytes) per second, MB = 10^6 bytes.</summary>
internal sealed record RunResult(string Strategy, double Seconds, double LogicalMBs, double WireMBs, int FetchConcurrency,
    double P50, double P95, double P99, bool Extrapolated, string? Sha256 = null)
{
    public RunResult Best(RunResult other) => other.LogicalMBs > LogicalMBs ? other : this;
}

internal sealed class Benchmark(BenchOptions o)
{
    private readonly List<Process> _servers = [];
    private readonly StringBuilder _md = new();
    private readonly Dictionary<string, Dictionary<string, RunResult>> _results = [];
    private readonly Dictionary<string, double> _plain = [];
    private readonly Dictionary<string, string> _imageSha = [];
    private string Store => Path.Combine(o.Root, "artifacts", "bench", "store");
    private string Work => Path.Combine(o.Root, "artifacts", "bench");

    private ImageSpec Main => o.Quick
        ? new("100", "main", 256L << 20, "zero:15%,random:35%,text:35%,dup:15%", 1, true)
        : new("100", "main", 2L << 30, "zero:15%,random:35%,text:35%,dup:15%", 1, true);
    private ImageSpec Data1G => new("101", "1 GiB of data", o.Quick ? 128L << 20 : 1L << 30, "random:1,text:1", 2, true);
    private ImageSpec Mem1G => new("102", "1 GiB, 1/8 data", 1L << 30, "zero:14,random:1,text:1", 3, false);
    private ImageSpec Mem16G => new("103", "16 GiB, 1/8 data", o.Quick ? 2L << 30 : 16L << 30, "zero:14,random:1,text:1", 3, false);
    private ImageSpec Tib => new("104", "1 TiB holding 1 GiB", o.Quick ? 64L << 30 : 1L << 40, o.Quick ? "random:1,text:1,zero:510" : "random:1,text:1,zero:2046", 4, false);

    private static readonly Strategy Sequential = new("Sequential", new RestoreOptions { FetchConcurrency = 1, DecodeConcurrency = 1, WriteConcurrency = 1 }, 1);
    private static readonly Strategy UpstreamLike = new("UpstreamLike", new RestoreOptions { FetchConcurrency = 16, DecodeConcurrency = 4, WriteConcurrency = 1 }, 1);
    private static readonly Strategy Ours = new("Ours", new RestoreOptions(), RemoteDatastore.DefaultSessionsPerSnapshot);
    internal static readonly Strategy[] Strategies = [Sequential, UpstreamLike, Ours];

    private static readonly Scenario[] Scenarios =
    [
        new("folder → null", "LocalDatastore, chunk files in the page cache", null),
        new("loopback", "our server, no injection", []),
        new("NVMe-like", "--chunk-latency-ms 2", ["--chunk-latency-ms", "2"]),
        new("10 ms", "--chunk-latency-ms 10", ["--chunk-latency-ms", "10"]),
        new("HDD-like", "--chunk-latency-ms 40 --max-parallel-reads 16", ["--chunk-latency-ms", "40", "--max-parallel-reads", "16"]),
        new("WAN-like", "--chunk-latency-ms 20 --bandwidth-mbit 2000 --connection-bandwidth-mbit 400",
            ["--chunk-latency-ms", "20", "--bandwidth-mbit", "2000", "--connection-bandwidth-mbit", "400"]),
    ];

    private static void Log(string s) => Console.Error.WriteLine($"[{DateTime.Now:HH:mm:ss}] {s}");

    public async Task RunAsync()
    {
        var total = Stopwatch.StartNew();
        Directory.CreateDirectory(Work);
        foreach (var spec in new[] { Main, Data1G, Mem1G, Mem16G, Tib }) EnsureImage(spec);

        // ---- strategies × scenarios -------------------------------------------------------------------
        foreach (var sc in Scenarios) await RunScenarioAsync(sc);

        // ---- the genuine PBS server on loopback, when build.ps1 or the caller made one available ---------
        string? genuine = await GenuineBench.TryRunForReportAsync(o.Repeats, Work);

        // ---- decode ceiling and native reference ------------------------------------------------------
        var decode = await DecodeCeilingAsync();
        var native = NativeReference(decode.TextFramesPath, decode.TextPlainBytes);

        // ---- memory and sparse ------------------------------------------------------------------------
        var memory = await MemoryAsync();
        var sparse = await SparseAsync();

        WriteReport(decode, native, memory, sparse, total.Elapsed);
        if (genuine is not null) _md.AppendLine().Append(genuine);
        File.WriteAllText(Path.Combine(o.Root, "bench", o.Quick ? "RESULTS.quick.md" : "RESULTS.md"), _md.ToString());
        Console.Out.WriteLine(_md.ToString());
        Log($"done in {total.Elapsed.TotalSeconds:F0} s; wrote bench/{(o.Quick ? "RESULTS.quick.md" : "RESULTS.md")}");
    }

    // ================================================================================================
    // Datastore
    // ================================================================================================

    private void EnsureImage(ImageSpec spec)
    {
        string marker = Path.Combine(Work, "specs", spec.Id + ".json");
        var writer = new DatastoreWriter(Store);
        string snapDir = Path.Combine(Store, "vm", spec.Id);
        if (File.Exists(marker))
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(marker));
            if (doc.RootElement.GetProperty("key").GetString() == spec.Key && Directory.Exists(snapDir))
            {
                _imageSha[spec.Id] = doc.RootElement.GetProperty("sha256").GetString()!;
                Log($"image vm/{spec.Id} ({spec.Name}): reusing {snapDir}");
                return;
            }
        }
        if (Directory.Exists(snapDir)) Directory.Delete(snapDir, recursive: true);
        var sw = Stopwatch.StartNew();
        Log($"image vm/{spec.Id} ({spec.Name}): writing {spec.Size >> 20} MiB, pattern {spec.Pattern}...");
        // Upstream's framing (streaming zstd frames for plain chunks): bulk frames would change what decode measures.
        var snapshot = writer.BeginSnapshot("", "vm", spec.Id, Program.Time);
        var info = snapshot.AddImage(Program.Archive, ImagePattern.Parse(spec.Pattern, spec.Size, spec.Seed), Program.ChunkSize, hashZeroChunks: spec.FullHash);
        snapshot.Finish();
        Directory.CreateDirectory(Path.GetDirectoryName(marker)!);
        File.WriteAllText(marker, JsonSerializer.Serialize(new { key = spec.Key, sha256 = spec.FullHash ? info.Sha256 : "" }));
        _imageSha[spec.Id] = spec.FullHash ? info.Sha256 : "";
        Log($"image vm/{spec.Id}: written in {sw.Elapsed.TotalSeconds:F1} s ({writer.ChunksWritten} chunks, {writer.ChunkBytesWritten / 1e6:F0} MB)");
    }

    // ================================================================================================
    // Servers and sources
    // ================================================================================================

    internal sealed record ServerInfo(Process Process, int Port, string Fingerprint);

    private async Task<ServerInfo> StartServerAsync(string[] flags)
    {
        var server = await StartServerAsync(o.Root, Store, flags);
        _servers.Add(server.Process);
        return server;
    }

    /// <summary>Starts PbsRestore.Server (built under <paramref name="root"/>) over <paramref name="store"/> as 'bench', with the bench token.</summary>
    internal static async Task<ServerInfo> StartServerAsync(string root, string store, string[] flags)
    {
        string dll = Path.Combine(root, "src", "PbsRestore.Server", "bin", "Release", "net10.0", "PbsRestore.Server.dll");
        if (!File.Exists(dll)) throw new FileNotFoundException($"server not built: {dll}");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { dll, "--datastore", "bench=" + store, "--token", Program.Token }.Concat(flags)) psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        p.ErrorDataReceived += (_, _) => { };
        p.BeginErrorReadLine();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        string line = await p.StandardOutput.ReadLineAsync(timeout.Token) ?? throw new InvalidOperationException("server exited");
        using var doc = JsonDocument.Parse(line);
        var url = new Uri(doc.RootElement.GetProperty("url").GetString()!);
        return new ServerInfo(p, url.Port, doc.RootElement.GetProperty("fingerprint").GetString()!);
    }

    private void StopServer(ServerInfo s)
    {
        try { if (!s.Process.HasExited) { s.Process.Kill(); s.Process.WaitForExit(10000); } } catch (InvalidOperationException) { }
        _servers.Remove(s.Process);
        s.Process.Dispose();
    }

    public void StopServers()
    {
        foreach (var p in _servers.ToArray())
            try { if (!p.HasExited) p.Kill(); } catch (InvalidOperationException) { }
    }

    internal static PbsClient Client(int port, string fingerprint)
    {
        int c = Program.Token.LastIndexOf(':');
        var repo = PbsRepository.Parse($"{Program.Token[..c]}@127.0.0.1:{port}:bench");
        return new PbsClient(new PbsConnectionSettings(repo, CertificateFingerprint.Parse(fingerprint), Program.Token[(c + 1)..]));
    }

    /// <summary>Opens the snapshot from the folder (server null) or through a new client with <paramref name="sessions"/> sessions.</summary>
    private async Task<(ISnapshotReader Reader, IDisposable? Client)> OpenAsync(ServerInfo? server, SnapshotRef snapshot, int sessions)
    {
        if (server is null) return (await new LocalDatastore(Store).OpenSnapshotAsync(snapshot, default), null);
        var client = Client(server.Port, server.Fingerprint);
        var ds = new RemoteDatastore(client, sessions, ownsClient: true);
        return (await ds.OpenSnapshotAsync(snapshot, default), ds);
    }

    // ================================================================================================
    // Restores
    // ================================================================================================

    private async Task<RunResult> RestoreOnceAsync(ServerInfo? server, Strategy s, ImageSpec spec, string? destination = null, bool hashFile = true)
    {
        var (reader, client) = await OpenAsync(server, spec.Snapshot, s.Sessions);
        try
        {
            var restorer = new ArchiveRestorer(reader, null);
            var counters = new RestoreCounters();
            var metrics = new RestoreMetrics();
            // Restores to a file always run to the end (they are verified or measured whole).
            using var cts = destination is null ? new CancellationTokenSource(o.Cap) : new CancellationTokenSource();
            var sw = Stopwatch.StartNew();
            bool partial = false;
            try
            {
                if (destination is null)
                    await restorer.RestoreToSinkAsync(Program.Archive, new NullImageSink(), s.Options, counters, metrics, cts.Token);
                else
                    await restorer.RestoreAsync(Program.Archive, destination, new DestinationOptions { Force = true }, s.Options, counters, cts.Token, metrics);
            }
            catch (OperationCanceledException) when (cts.IsCancellationRequested)
            {
                partial = true;
            }
            double seconds = sw.Elapsed.TotalSeconds;
            double wire = counters.WireBytes / 1e6 / seconds;
            if (partial)
            {
                // Zero chunks are counted done at the start (holes): extrapolate from the data chunks only.
                long zeroBytes = counters.ZeroChunks * (long)Program.ChunkSize;
                long dataTotal = counters.TotalBytes - zeroBytes, dataDone = Math.Max(1, counters.DoneBytes - zeroBytes);
                seconds *= (double)dataTotal / dataDone;
                Log($"    {s.Name}: stopped after {o.Cap.TotalSeconds:F0} s at {100.0 * dataDone / dataTotal:F0} % of the data; extrapolated");
            }
            string? sha = null;
            if (destination is not null && hashFile && !partial)
            {
                await using var f = File.OpenRead(destination);
                sha = Convert.ToHexStringLower(await SHA256.HashDataAsync(f));
            }
            return new RunResult(s.Name, seconds, spec.Size / 1e6 / seconds, wire, metrics.FetchConcurrency,
                metrics.LatencyPercentile(0.50), metrics.LatencyPercentile(0.95), metrics.LatencyPercentile(0.99), partial, sha);
        }
        finally
        {
            await reader.DisposeAsync();
            client?.Dispose();
        }
    }

    /// <summary>Downloads every data chunk of the image (no decode): the plain transfer rate of the same bytes, MB/s wire.</summary>
    private async Task<double> PlainTransferAsync(ServerInfo? server, int sessions, int inFlight)
    {
        var (reader, client) = await OpenAsync(server, Main.Snapshot, sessions);
        try
        {
            var raw = await reader.ReadFileAsync(Program.Archive + ".fidx", ArchiveRestorer.MaxIndexSize, default);
            var plan = RestorePlan.Plan(Program.Archive + ".fidx", FixedIndex.Parse(raw), len => ChunkVerifier.ZeroChunkDigest(len, null));
            long bytes = 0;
            int next = -1;
            using var cts = new CancellationTokenSource(o.Cap);
            var sw = Stopwatch.StartNew();
            var workers = Enumerable.Range(0, inFlight).Select(_ => Task.Run(async () =>
            {
                var buffer = new byte[plan.MaxChunkSize + FileFormats.EncryptedBlobHeaderSize];
                int i;
                while ((i = Interlocked.Increment(ref next)) < plan.Jobs.Count && !cts.IsCancellationRequested)
                {
                    try { Interlocked.Add(ref bytes, await reader.Chunks.ReadRawChunkAsync(plan.Jobs[i].Digest, buffer, cts.Token)); }
                    catch (OperationCanceledException) when (cts.IsCancellationRequested) { return; }
                }
            })).ToArray();
            await Task.WhenAll(workers);
            return bytes / 1e6 / sw.Elapsed.TotalSeconds;
        }
        finally
        {
            await reader.DisposeAsync();
            client?.Dispose();
        }
    }

    private async Task RunScenarioAsync(Scenario sc)
    {
        Log($"scenario {sc.Name} ({sc.What})");
        ServerInfo? server = sc.ServerFlags is null ? null : await StartServerAsync(sc.ServerFlags);
        try
        {
            var best = new Dictionary<string, RunResult>();
            // Warm-up (page cache, JIT, server), not counted.
            await PlainTransferAsync(server, 1, 8);
            for (int rep = 0; rep < o.Repeats; rep++)
            {
                // Interleaved: every strategy once per round, so drifting noise hits all alike.
                foreach (var s in Strategies)
                {
                    var r = await RestoreOnceAsync(server, s, Main);
                    Log($"  {s.Name,-12} {r.LogicalMBs,8:F0} MB/s logical {r.WireMBs,7:F0} MB/s wire  fetch={r.FetchConcurrency} p50={r.P50:F1} ms{(r.Extrapolated ? " (extrapolated)" : "")}");
                    best[s.Name] = best.TryGetValue(s.Name, out var b) ? b.Best(r) : r;
                }
                // Beside every scenario's null rows, the same restore to a real file (issue 14), run to the end and
                // checked by SHA-256; at HDD-like also the sequential design to a file (the ≥ 3× target).
                foreach (var s in sc.Name == "HDD-like" ? new[] { Ours, Sequential } : new[] { Ours })
                {
                    string dest = Path.Combine(Work, "restore-main.img");
                    string name = $"{s.Name} → file";
                    var r = await RestoreOnceAsync(server, s, Main, dest) with { Strategy = name }; // the table's row label
                    bool ok = r.Sha256 == _imageSha[Main.Id];
                    Log($"  {name,-12} {r.LogicalMBs,8:F0} MB/s logical, SHA-256 {(ok ? "matches" : "MISMATCH " + r.Sha256)}");
                    File.Delete(dest);
                    if (!ok) throw new InvalidDataException($"{sc.Name}: {name} restored a file whose SHA-256 is {r.Sha256}, not {_imageSha[Main.Id]}");
                    best[name] = best.TryGetValue(name, out var b) ? b.Best(r) : r;
                }
                double p1 = await PlainTransferAsync(server, 1, 16);
                double p4 = await PlainTransferAsync(server, RemoteDatastore.DefaultSessionsPerSnapshot, 32);
                double p = Math.Max(p1, p4);
                Log($"  plain transfer: {p1:F0} MB/s (1 session, 16 in flight), {p4:F0} MB/s ({RemoteDatastore.DefaultSessionsPerSnapshot} sessions, 32 in flight)");
                _plain[sc.Name] = Math.Max(_plain.GetValueOrDefault(sc.Name), p);
            }
            _results[sc.Name] = best;
        }
        finally
        {
            if (server is not null) StopServer(server);
        }

    }

    // ================================================================================================
    // Decode ceiling, native reference
    // ================================================================================================

    internal sealed record DecodeResult(double AllCoresLogicalMBs, double AllCoresSeconds, double SingleCoreTextMBs, double SingleCoreAllMBs,
        string TextFramesPath, long TextPlainBytes, int TextChunks, int Chunks);

    private async Task<DecodeResult> DecodeCeilingAsync()
    {
        Log("decode ceiling: reading every data chunk into memory");
        await using var reader = await new LocalDatastore(Store).OpenSnapshotAsync(Main.Snapshot, default);
        var raw = await reader.ReadFileAsync(Program.Archive + ".fidx", ArchiveRestorer.MaxIndexSize, default);
        var plan = RestorePlan.Plan(Program.Archive, FixedIndex.Parse(raw), len => ChunkVerifier.ZeroChunkDigest(len, null));
        var blobs = new byte[plan.Jobs.Count][];
        for (int i = 0; i < blobs.Length; i++)
        {
            var buf = new byte[plan.MaxChunkSize + FileFormats.EncryptedBlobHeaderSize];
            int n = await reader.Chunks.ReadRawChunkAsync(plan.Jobs[i].Digest, buf, default);
            blobs[i] = buf[..n];
        }
        var textIdx = Enumerable.Range(0, blobs.Length).Where(i => DataBlob.GetKind(blobs[i]) == BlobKind.Compressed).ToArray();

        // All cores: the pipeline's decode work (CRC, zstd, SHA-256 digest check) and nothing else.
        double allSeconds = double.MaxValue;
        for (int rep = 0; rep < 3; rep++) allSeconds = Math.Min(allSeconds, DecodeAll(blobs, plan, Enumerable.Range(0, blobs.Length).ToArray(), Environment.ProcessorCount, out _));
        double allLogical = Main.Size / 1e6 / allSeconds;
        Log($"decode ceiling: {allLogical:F0} MB/s logical on {Environment.ProcessorCount} cores ({allSeconds:F2} s for {blobs.Length} chunks)");

        double textSeconds = double.MaxValue, allOneSeconds = double.MaxValue;
        long textPlain = 0, allPlain = 0;
        for (int rep = 0; rep < 3; rep++) textSeconds = Math.Min(textSeconds, DecodeAll(blobs, plan, textIdx, 1, out textPlain));
        allOneSeconds = DecodeAll(blobs, plan, Enumerable.Range(0, blobs.Length).ToArray(), 1, out allPlain);

        // The zstd payloads (after the 12-byte header) of the compressible chunks, as one file of concatenated frames.
        string frames = Path.Combine(Work, "text-frames.zst");
        await using (var f = File.Create(frames))
            foreach (int i in textIdx) f.Write(blobs[i].AsSpan(FileFormats.BlobHeaderSize));
        return new DecodeResult(allLogical, allSeconds, textPlain / 1e6 / textSeconds, allPlain / 1e6 / allOneSeconds, frames, textPlain, textIdx.Length, blobs.Length);
    }

    private static double DecodeAll(byte[][] blobs, RestorePlan plan, int[] which, int threads, out long plainBytes)
    {
        long plain = 0;
        int next = -1;
        var sw = Stopwatch.StartNew();
        var workers = Enumerable.Range(0, threads).Select(_ => new Thread(() =>
        {
            using var decoder = new BlobDecoder(null, plan.MaxChunkSize);
            var dest = new byte[plan.MaxChunkSize];
            int k;
            while ((k = Interlocked.Increment(ref next)) < which.Length)
            {
                int i = which[k];
                int n = decoder.Decode(blobs[i], dest);
                if (ChunkVerifier.ComputeDigest(dest.AsSpan(0, n), null) != plan.Jobs[i].Digest) throw new InvalidDataException("digest mismatch");
                Interlocked.Add(ref plain, n);
            }
        })).ToArray();
        foreach (var t in workers) t.Start();
        foreach (var t in workers) t.Join();
        plainBytes = plain;
        return sw.Elapsed.TotalSeconds;
    }

    internal sealed record NativeResult(bool Available, double MBs, string Command, string Note);

    private static NativeResult NativeReference(string frames, long plainBytes)
    {
        string cmd = $"taskset -c 0 sh -c 'zstd -d -q -c {frames} | sha256sum'";
        bool have = File.Exists("/usr/bin/zstd") || File.Exists("/bin/zstd");
        if (!have || !OperatingSystem.IsLinux()) return new NativeResult(false, 0, cmd, "zstd not installed");
        double best = double.MaxValue;
        for (int rep = 0; rep < 3; rep++)
        {
            var psi = new ProcessStartInfo("taskset") { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in new[] { "-c", "0", "sh", "-c", $"zstd -d -q -c '{frames}' | sha256sum" }) psi.ArgumentList.Add(a);
            var sw = Stopwatch.StartNew();
            using var p = Process.Start(psi)!;
            p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            if (p.ExitCode != 0) return new NativeResult(false, 0, cmd, "failed: " + p.StandardError.ReadToEnd());
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }
        string version = "";
        try
        {
            var psi = new ProcessStartInfo("zstd", "--version") { RedirectStandardOutput = true };
            using var p = Process.Start(psi)!;
            version = p.StandardOutput.ReadToEnd().Trim();
            p.WaitForExit();
        }
        catch (System.ComponentModel.Win32Exception) { }
        return new NativeResult(true, plainBytes / 1e6 / best, cmd, version);
    }

    // ================================================================================================
    // Memory, sparse
    // ================================================================================================

    internal sealed record MemoryRow(string Image, string Source, double BaselineMiB, double PeakAddedMiB, double Seconds, int FetchConcurrency);

    private async Task<List<MemoryRow>> MemoryAsync()
    {
        var rows = new List<MemoryRow>();
        var server = await StartServerAsync([]);
        try
        {
            foreach (var spec in new[] { Mem1G, Mem16G })
            foreach (var source in new[] { "folder", "loopback" })
            {
                var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, UseShellExecute = false };
                foreach (var a in new[] { typeof(Program).Assembly.Location, "--probe-memory", Store, spec.Id, source == "folder" ? "0" : server.Port.ToString(CultureInfo.InvariantCulture), server.Fingerprint })
                    psi.ArgumentList.Add(a);
                using var p = Process.Start(psi)!;
                string output = await p.StandardOutput.ReadToEndAsync();
                await p.WaitForExitAsync();
                if (p.ExitCode != 0) throw new InvalidOperationException($"memory probe failed ({p.ExitCode}): {output}");
                using var doc = JsonDocument.Parse(output.Trim().Split('\n')[^1]);
                var e = doc.RootElement;
                var row = new MemoryRow(spec.Name, source, e.GetProperty("baseline").GetDouble() / 1048576, e.GetProperty("added").GetDouble() / 1048576,
                    e.GetProperty("seconds").GetDouble(), e.GetProperty("fetch").GetInt32());
                Log($"memory {spec.Name} from {source}: +{row.PeakAddedMiB:F0} MiB over a baseline of {row.BaselineMiB:F0} MiB ({row.Seconds:F1} s)");
                rows.Add(row);
            }
        }
        finally
        {
            StopServer(server);
        }
        return rows;
    }

    internal sealed record SparseResult(double DataSeconds, double TibSeconds, double TibAllocatedGiB, double DataAllocatedGiB, long TibSize, bool DataShaOk);

    private async Task<SparseResult> SparseAsync()
    {
        string dataDest = Path.Combine(Work, "restore-1g.img"), tibDest = Path.Combine(Work, "restore-1t.img");
        try
        {
            double dataSeconds = double.MaxValue, tibSeconds = double.MaxValue;
            double dataAlloc = 0, tibAlloc = 0;
            bool shaOk = false;
            // Folder → real file at defaults, interleaved, best of 2 (the file is deleted between runs).
            for (int rep = 0; rep < 2; rep++)
            {
                var d = await RestoreOnceAsync(null, Ours, Data1G, dataDest);
                shaOk = d.Sha256 == _imageSha[Data1G.Id];
                dataSeconds = Math.Min(dataSeconds, d.Seconds);
                dataAlloc = AllocatedBytes(dataDest) / (double)(1L << 30);
                File.Delete(dataDest);
                var t = await RestoreOnceAsync(null, Ours, Tib, tibDest, hashFile: false);
                tibSeconds = Math.Min(tibSeconds, t.Seconds);
                tibAlloc = AllocatedBytes(tibDest) / (double)(1L << 30);
                long len = new FileInfo(tibDest).Length;
                if (len != Tib.Size) throw new InvalidDataException($"1 TiB restore has {len} bytes");
                File.Delete(tibDest);
                Log($"sparse: 1 GiB of data {d.Seconds:F2} s (sha {(shaOk ? "ok" : "MISMATCH")}), 1 TiB holding 1 GiB {t.Seconds:F2} s, {tibAlloc:F3} GiB allocated");
            }
            return new SparseResult(dataSeconds, tibSeconds, tibAlloc, dataAlloc, Tib.Size, shaOk);
        }
        finally
        {
            File.Delete(dataDest);
            File.Delete(tibDest);
        }
    }

    /// <summary>Allocated bytes on disk: <c>stat -c %b</c> × 512.</summary>
    private static long AllocatedBytes(string path)
    {
        var psi = new ProcessStartInfo("stat") { RedirectStandardOutput = true };
        foreach (var a in new[] { "-c", "%b", path }) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string s = p.StandardOutput.ReadToEnd().Trim();
        p.WaitForExit();
        return long.Parse(s, CultureInfo.InvariantCulture) * 512;
    }

    // ================================================================================================
    // Report
    // ================================================================================================

    private void WriteReport(DecodeResult decode, NativeResult native, List<MemoryRow> memory, SparseResult sparse, TimeSpan elapsed)
    {
        var md = _md;
        var inv = CultureInfo.InvariantCulture;
        string F(double v, string f = "F0") => v.ToString(f, inv);
        string cpu = File.Exists("/proc/cpuinfo")
            ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "?"
            : RuntimeInformation.ProcessArchitecture.ToString();
        string ram = File.Exists("/proc/meminfo")
            ? F(long.Parse(File.ReadLines("/proc/meminfo").First().Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], inv) / 1048576.0, "F1") + " GiB"
            : "?";

        md.AppendLine("# Restore benchmark results");
        md.AppendLine();
        md.AppendLine($"Command: `dotnet pwsh ./build.ps1 Bench`{(o.Quick ? " (with `--quick`: smaller images, not representative)" : "")}  ");
        md.AppendLine($"Machine: {Environment.ProcessorCount} cores (nproc), {cpu}, {ram} RAM, {RuntimeInformation.OSDescription}, .NET {Environment.Version}  ");
        string load = File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Trim() : "?";
        md.AppendLine($"Load average at the end (/proc/loadavg): {load}: other work on the machine shares these cores and skews every rate below.  ");
        md.AppendLine($"Date: {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC; total bench time {F(elapsed.TotalSeconds)} s; {o.Repeats} interleaved rounds per scenario, best round shown; runs longer than {F(o.Cap.TotalSeconds)} s are stopped and extrapolated from the data done (marked *).");
        md.AppendLine();
        md.AppendLine($"Image: `{Main.Pattern}`, {Main.Size >> 20} MiB logical, 4 MiB chunks, upstream zstd framing (streaming frames), unencrypted. " +
                      "Client, server and decode share the same cores (the server is a separate process on this machine). " +
                      "MB = 10^6 bytes. Logical = image bytes restored per second; wire = chunk blob bytes received per second.");
        md.AppendLine();
        md.AppendLine("Strategies: **Sequential** = fetch 1, decode 1, write 1, 1 session (the pre-2025 design); **UpstreamLike** = 16 fetches in flight, 1 session, decode on 4 threads, 1 writer " +
                      $"(proxmox-backup-qemu ≥ 1.5.2); **Ours** = `RestoreOptions` defaults (automatic fetch concurrency ≤ {RestoreOptions.AutoFetchLimit}, decode on {Environment.ProcessorCount}, 2 writers) and {RemoteDatastore.DefaultSessionsPerSnapshot} reader sessions. All restore to `NullImageSink` except the **→ file** rows: the same restore to a real file under artifacts/bench (as Restore-PbsImage: journal, checkpoints, one flush, rename; unbuffered writes where the file system allows), SHA-256 checked, never stopped early.");
        md.AppendLine();
        foreach (var sc in Scenarios)
        {
            var rs = _results[sc.Name];
            md.AppendLine($"## {sc.Name} — {sc.What}");
            md.AppendLine();
            md.AppendLine("| strategy | MB/s logical | MB/s wire | × Sequential | × UpstreamLike | fetch concurrency | p50 / p95 / p99 chunk latency (ms) |");
            md.AppendLine("|---|---:|---:|---:|---:|---:|---|");
            foreach (var r in rs.Values)
            {
                md.AppendLine($"| {r.Strategy} | {F(r.LogicalMBs)}{(r.Extrapolated ? "*" : "")} | {F(r.WireMBs)} | {F(r.LogicalMBs / rs["Sequential"].LogicalMBs, "F2")} | " +
                              $"{F(r.LogicalMBs / rs["UpstreamLike"].LogicalMBs, "F2")} | {r.FetchConcurrency} | {F(r.P50, "F1")} / {F(r.P95, "F1")} / {F(r.P99, "F1")} |");
            }
            md.AppendLine($"| plain transfer of the same chunks (no decode; best of 1 session × 16 and {RemoteDatastore.DefaultSessionsPerSnapshot} sessions × 32 in flight) | | {F(_plain[sc.Name])} | | | | |");
            md.AppendLine();
        }

        md.AppendLine("## Decode ceiling and native reference");
        md.AppendLine();
        md.AppendLine("| what | rate |");
        md.AppendLine("|---|---:|");
        md.AppendLine($"| decode ceiling: all {decode.Chunks} data chunks read into memory first, then CRC + zstd + SHA-256 digest check with `BlobDecoder` + `ChunkVerifier` on {Environment.ProcessorCount} threads | {F(decode.AllCoresLogicalMBs)} MB/s logical ({F(decode.AllCoresSeconds, "F2")} s) |");
        md.AppendLine($"| ours, 1 core, all data chunks (plaintext out) | {F(decode.SingleCoreAllMBs)} MB/s plain |");
        md.AppendLine($"| ours, 1 core, the {decode.TextChunks} compressible chunks: CRC + zstd + SHA-256 (plaintext out) | {F(decode.SingleCoreTextMBs)} MB/s plain |");
        md.AppendLine(native.Available
            ? $"| native, 1 core, the same zstd frames: `{native.Command.Replace(Work, "artifacts/bench")}` ({native.Note}) | {F(native.MBs)} MB/s plain |"
            : $"| native reference | not measured: {native.Note} |");
        md.AppendLine();

        md.AppendLine("## Memory (restore at defaults into `NullImageSink`; peak working set added over the process's working set with the snapshot open, sampled every 10 ms, fresh process per row)");
        md.AppendLine();
        md.AppendLine("| image | source | baseline MiB | peak added MiB | seconds | fetch concurrency |");
        md.AppendLine("|---|---|---:|---:|---:|---:|");
        foreach (var m in memory) md.AppendLine($"| {m.Image} | {m.Source} | {F(m.BaselineMiB)} | {F(m.PeakAddedMiB)} | {F(m.Seconds, "F1")} | {m.FetchConcurrency} |");
        md.AppendLine();
        md.AppendLine("## Sparse (folder → real file under artifacts/bench, defaults, best of 2)");
        md.AppendLine();
        md.AppendLine("| image | seconds | allocated on disk (stat %b × 512) |");
        md.AppendLine("|---|---:|---:|");
        md.AppendLine($"| 1 GiB image, all data (SHA-256 {(sparse.DataShaOk ? "ok" : "MISMATCH")}) | {F(sparse.DataSeconds, "F2")} | {F(sparse.DataAllocatedGiB, "F3")} GiB |");
        md.AppendLine($"| {sparse.TibSize >> 30} GiB image holding 1 GiB of data | {F(sparse.TibSeconds, "F2")} | {F(sparse.TibAllocatedGiB, "F3")} GiB |");
        md.AppendLine();

        // ---- targets --------------------------------------------------------------------------------------
        md.AppendLine("## Targets (issue 4)");
        md.AppendLine();
        md.AppendLine("| target | measured | |");
        md.AppendLine("|---|---|---|");
        double Ours(string sc) => _results[sc]["Ours"].LogicalMBs;
        double Of(string sc, string s) => _results[sc][s].LogicalMBs;
        void T(string target, bool met, string measured) => md.AppendLine($"| {target} | {measured} | {(met ? "met" : "**missed**")} |");
        double lb = Ours("loopback");
        T("Latency hidden: Ours at HDD-like ≥ 90 % of Ours at 0 ms (loopback)", Ours("HDD-like") >= 0.9 * lb, $"{F(Ours("HDD-like"))} vs {F(lb)} MB/s = {F(100 * Ours("HDD-like") / lb)} %");
        T("NVMe-like (2 ms): Ours ≥ 90 % of loopback", Ours("NVMe-like") >= 0.9 * lb, $"{F(Ours("NVMe-like"))} vs {F(lb)} MB/s = {F(100 * Ours("NVMe-like") / lb)} %");
        T("10 ms costs ≤ 10 % (Ours at 10 ms ≥ 90 % of loopback)", Ours("10 ms") >= 0.9 * lb, $"{F(Ours("10 ms"))} vs {F(lb)} MB/s = {F(100 * Ours("10 ms") / lb)} %");
        T("HDD-like: Ours ≥ 3× Sequential", Ours("HDD-like") >= 3 * Of("HDD-like", "Sequential"), $"{F(Ours("HDD-like") / Of("HDD-like", "Sequential"), "F1")}×");
        foreach (var sc in Scenarios)
        {
            double ratio = Ours(sc.Name) / Of(sc.Name, "UpstreamLike");
            double need = sc.Name == "WAN-like" ? 1.3 : 1.0;
            T($"{sc.Name}: Ours ≥ {F(need, "F1")}× UpstreamLike", ratio >= need, $"{F(ratio, "F2")}× ({F(Ours(sc.Name))} vs {F(Of(sc.Name, "UpstreamLike"))} MB/s)");
        }
        foreach (var sc in new[] { "folder → null", "loopback" })
        {
            double toFile = _results[sc]["Ours → file"].LogicalMBs;
            T($"{sc}: Ours → file ≥ 90 % of Ours → null (issue 14)", toFile >= 0.9 * Ours(sc), $"{F(toFile)} vs {F(Ours(sc))} MB/s = {F(100 * toFile / Ours(sc))} %");
        }
        T("HDD-like to a file: Ours → file ≥ 3× Sequential → file (issue 14)", Of("HDD-like", "Ours → file") >= 3 * Of("HDD-like", "Sequential → file"),
            $"{F(Of("HDD-like", "Ours → file") / Of("HDD-like", "Sequential → file"), "F1")}×");
        double oursWire = _results["loopback"]["Ours"].WireMBs;
        T("Ours over the wire at 0 ms ≥ 80 % of the plain HTTP/2 transfer rate of the same bytes", oursWire >= 0.8 * _plain["loopback"],
            $"{F(oursWire)} vs {F(_plain["loopback"])} MB/s wire = {F(100 * oursWire / _plain["loopback"])} %");
        double folder = Ours("folder → null");
        T("folder → null ≥ 85 % of the decode ceiling", folder >= 0.85 * decode.AllCoresLogicalMBs,
            $"{F(folder)} vs {F(decode.AllCoresLogicalMBs)} MB/s = {F(100 * folder / decode.AllCoresLogicalMBs)} %");
        if (native.Available)
            T("decode per core ≥ 80 % of the native reference (zstd -d | sha256sum, 1 core)", decode.SingleCoreTextMBs >= 0.8 * native.MBs,
                $"{F(decode.SingleCoreTextMBs)} vs {F(native.MBs)} MB/s = {F(100 * decode.SingleCoreTextMBs / native.MBs)} %");
        else
            md.AppendLine($"| decode per core ≥ 80 % of native | not measured ({native.Note}) | |");
        double maxMem = memory.Max(m => m.PeakAddedMiB);
        T("memory ≤ 256 MiB at defaults", maxMem <= 256, $"largest peak added {F(maxMem)} MiB");
        foreach (var source in memory.Select(m => m.Source).Distinct())
        {
            var a = memory.First(m => m.Source == source && m.Image == Mem1G.Name);
            var b = memory.First(m => m.Source == source && m.Image == Mem16G.Name);
            double diff = Math.Abs(b.PeakAddedMiB - a.PeakAddedMiB) / Math.Max(a.PeakAddedMiB, b.PeakAddedMiB);
            T($"memory equal within 10 % for 1 GiB and 16 GiB ({source})", diff <= 0.10, $"{F(a.PeakAddedMiB)} vs {F(b.PeakAddedMiB)} MiB ({F(100 * diff)} % apart)");
        }
        T("1 TiB image with 1 GiB of data ≤ 1.5× the time of the 1 GiB", sparse.TibSeconds <= 1.5 * sparse.DataSeconds,
            $"{F(sparse.TibSeconds, "F2")} vs {F(sparse.DataSeconds, "F2")} s = {F(sparse.TibSeconds / sparse.DataSeconds, "F2")}×");
        T("1 TiB image ≤ 1.1 GiB on disk", sparse.TibAllocatedGiB <= 1.1, $"{F(sparse.TibAllocatedGiB, "F3")} GiB allocated");
        md.AppendLine();
    }
}

/// <summary>
/// A child process per memory row: opens the snapshot, then samples its own working set every 10 ms while it
/// restores at defaults into a <see cref="NullImageSink"/>; prints {"baseline","added","seconds","fetch"}.
/// </summary>
/// <summary>A mode's targets as a markdown table under a title line, printed to the console.</summary>
internal static class TargetTable
{
    /// <summary>The target of a reference row.</summary>
    public const string Reference = "reference";

    public static void Print(string title, IEnumerable<(string Row, string Value, string Target, bool Met)> rows)
    {
        var md = new StringBuilder();
        md.AppendLine(title);
        md.AppendLine();
        md.AppendLine("| row | measured | target | met |");
        md.AppendLine("|---|---|---|---|");
        // A reference row (what something else reaches on this machine, to read the others by) has no target to meet.
        foreach (var r in rows) md.AppendLine($"| {r.Row} | {r.Value} | {r.Target} | {(r.Target == Reference ? "—" : r.Met ? "yes" : "no")} |");
        Console.WriteLine(md.ToString());
    }
}

/// <summary>
/// This process's working set, sampled every 10 ms from construction until <see cref="StopAsync"/>: the baseline is
/// the working set at construction (take it after a full collection), the peak what a memory row reports.
/// </summary>
internal sealed class WorkingSetPeak
{
    private readonly Process _self = Process.GetCurrentProcess();
    private readonly CancellationTokenSource _done = new();
    private readonly Task _sampler;
    private long _peak;

    public WorkingSetPeak()
    {
        _self.Refresh();
        Baseline = _peak = _self.WorkingSet64;
        _sampler = Task.Run(async () =>
        {
            while (!_done.IsCancellationRequested)
            {
                Sample();
                try { await Task.Delay(10, _done.Token); } catch (OperationCanceledException) { }
            }
        });
    }

    public long Baseline { get; }

    private void Sample()
    {
        _self.Refresh();
        _peak = Math.Max(_peak, _self.WorkingSet64);
    }

    /// <summary>Ends the sampling (with one last sample) and returns the peak.</summary>
    public async Task<long> StopAsync()
    {
        _done.Cancel();
        await _sampler;
        Sample();
        _done.Dispose();
        return _peak;
    }
}

internal static class MemoryProbe
{
    public static async Task<int> RunChildAsync(string[] args)
    {
        string store = args[0], id = args[1];
        int port = int.Parse(args[2], CultureInfo.InvariantCulture);
        string fingerprint = args[3];
        var snapshot = new SnapshotRef(BackupNamespace.Root, "vm", id, Program.Time);
        RemoteDatastore? remote = null;
        ISnapshotReader reader = port == 0
            ? await new LocalDatastore(store).OpenSnapshotAsync(snapshot, default)
            : await (remote = new RemoteDatastore(Benchmark.Client(port, fingerprint), RemoteDatastore.DefaultSessionsPerSnapshot, ownsClient: true)).OpenSnapshotAsync(snapshot, default);
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        var memory = new WorkingSetPeak();
        var metrics = new RestoreMetrics();
        var sw = Stopwatch.StartNew();
        await new ArchiveRestorer(reader, null).RestoreToSinkAsync(Program.Archive, new NullImageSink(), new RestoreOptions(), new RestoreCounters(), metrics, default);
        double seconds = sw.Elapsed.TotalSeconds;
        long peak = await memory.StopAsync(), baseline = memory.Baseline;
        await reader.DisposeAsync();
        remote?.Dispose();
        Console.Out.WriteLine(JsonSerializer.Serialize(new { baseline, added = peak - baseline, seconds, fetch = metrics.FetchConcurrency }));
        return 0;
    }
}
