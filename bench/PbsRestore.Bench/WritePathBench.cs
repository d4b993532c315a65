using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using PbsRestore.Fixtures;
using PbsRestore.Formats;
using PbsRestore.Platform;
using PbsRestore.Sources.Local;
using PbsRestore.Sources.Remote;
using PbsRestore.Destinations;
using PbsRestore.Restore;
using PbsRestore.Sources;

namespace PbsRestore.Bench;

/// <summary>
/// The write path (issue 14), side by side in one process, alternating, medians of the rounds:
/// folder → null, folder → file (default: unbuffered where the file system allows), folder → file with
/// <c>PBSRESTORE_WRITE_MODE=buffered</c> (the page-cache path, as before issue 14), and a plain loop of 4 MiB
/// <c>pwrite</c>s from two threads into a sparse file plus one fsync (the disk's own cost), for a 1 GiB and an 8 GiB
/// image of data. Each row: wall time, user and system CPU of this process per GiB, the peak of /proc/meminfo Dirty
/// (machine-wide, sampled every 20 ms) and the peak RSS added (VmHWM after clear_refs). Then the dirty-pages row: a
/// 16 GiB image of data restored to a file, once unbuffered and once buffered. Then the native floor: the same
/// chunks decoded on one core by a small C program against libzstd + OpenSSL SHA-256 + zlib CRC32 (built here with
/// gcc), beside ours on one core.
/// With <c>--served</c> also over our server: loopback and HDD-like, Ours to null / to a file, Sequential to a file.
/// Run: <c>dotnet pwsh ./build.ps1 Bench -BenchArgs '--write-path'</c> (options: <c>--rounds N</c> default 5,
/// <c>--sizes 1,8</c> GiB, <c>--dirty-gib 16</c>, <c>--quick</c> = sizes 1, dirty 2, rounds 3; <c>--rows "to null;to file"</c> a
/// subset; <c>--writers 4,8</c> extra to-file rows with that many writers; <c>--prepare</c> only writes the images, to run
/// niced before the measured run). The log gives each restore's stage times. Prints a table; writes no file.
/// </summary>
internal static class WritePathBench
{
    private const string Pattern = "random:1,text:1";

    private static void Log(string s) => Console.Error.WriteLine($"[{DateTime.Now:HH:mm:ss}] {s}");

    private sealed record Sample(double Seconds, double UserSeconds, double SysSeconds, double DirtyStartMiB, double DirtyPeakMiB, double PeakRssMiB, double RssAddedMiB, string? Mode = null)
    {
        /// <summary>Where the pipeline's worker-time went (restores only), for the log.</summary>
        public string Stages { get; init; } = "";
    }

    private static string StagesOf(RestoreMetrics m) => string.Create(CultureInfo.InvariantCulture,
        $"decode busy {m.DecodeBusy.TotalSeconds:F2} s, starved {m.DecodeStarved.TotalSeconds:F2} s, blocked by writers {m.DecodeBlocked.TotalSeconds:F2} s; write busy {m.WriteBusy.TotalSeconds:F2} s, starved {m.WriteStarved.TotalSeconds:F2} s");

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "sync")]
    private static extern void Sync();

    public static async Task<int> RunAsync(string[] args)
    {
        int rounds = 5, dirtyGiB = 16;
        int[] sizes = [1, 8];
        bool quick = false, big = true, nativeFloor = true, served = false;
        string[]? only = null;
        int[] writers = [];
        bool prepare = false;
        string? servedOnly = null;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--rounds": rounds = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--sizes": sizes = args[++i].Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray(); break;
                case "--dirty-gib": dirtyGiB = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--quick": quick = true; rounds = 3; sizes = [1]; dirtyGiB = 2; break;
                // For profiling one row alone (perf record -g -- dotnet ... --write-path --rows 'to file' --no-big --no-floor).
                case "--rows": only = args[++i].Split(';'); break;
                case "--no-big": big = false; break;
                // Writes the images only (slow, CPU-heavy: run it niced, outside the bench lock), then exits.
                case "--prepare": prepare = true; break;
                // Extra rows "to file, N writers" (RestoreOptions.WriteConcurrency), to find the disk's queue depth.
                case "--writers": writers = args[++i].Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray(); break;
                case "--no-floor": nativeFloor = false; break;
                case "--served": served = true; break;
                case "--served-only": served = true; servedOnly = args[++i]; break;
                default: throw new ArgumentException($"unknown argument '{args[i]}' (--write-path [--rounds N] [--sizes 1,8] [--dirty-gib 16] [--quick])");
            }
        }
        string command = $"dotnet pwsh ./build.ps1 Bench -BenchArgs '--write-path{(quick ? "','--quick" : "")}{(served ? "','--served" : "")}','--rounds','{rounds}','--sizes','{string.Join(",", sizes)}','--dirty-gib','{dirtyGiB}'";
        var root = BenchOptions.Parse([]).Root;
        string work = Path.Combine(root, "artifacts", "bench");
        Directory.CreateDirectory(work);
        string store = Path.Combine(work, "store");
        var inv = CultureInfo.InvariantCulture;
        if (prepare)
        {
            foreach (int gib in sizes) EnsureImage(store, work, "12" + gib.ToString("D1", inv), (long)gib << 30, (ulong)(20 + gib));
            if (big) EnsureImage(store, work, "130", (long)dirtyGiB << 30, 31);
            return 0;
        }
        var md = new StringBuilder();
        md.AppendLine($"## Write path (issue 14): folder → null / → file, {rounds} alternating rounds, medians");
        md.AppendLine();
        md.AppendLine($"Image `{Pattern}` (all data: every chunk written), 4 MiB chunks; {Environment.ProcessorCount} cores; load average at the start: {Load()}. " +
                      $"Destination folder artifacts/bench on {FileSystemOf(work)}. CPU = this process's user / system seconds per GiB (the pwrite loop's too). " +
                      "Dirty = /proc/meminfo Dirty (machine-wide: other work on the machine shows too) after a sync before the run → its peak during the run. " +
                      "Peak RSS = the process's VmHWM during the run (reset by clear_refs), RSS+ = that minus the RSS before the run.");
        md.AppendLine();
        md.AppendLine("| image | row | MB/s (median) | × to null | s (median) | user CPU-s/GiB | sys CPU-s/GiB | Dirty MiB start → peak | peak RSS MiB | RSS+ MiB | write mode |");
        md.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        var targets = new List<string>();
        foreach (int gib in sizes)
        {
            var snapshot = EnsureImage(store, work, "12" + gib.ToString("D1", inv), (long)gib << 30, (ulong)(20 + gib));
            long size = (long)gib << 30;
            string dest = Path.Combine(work, "restore-writepath.img");
            var rows = new Dictionary<string, List<Sample>> { ["to null"] = [], ["to file"] = [], ["to file, buffered"] = [], ["pwrite loop"] = [] };
            foreach (int w in writers) rows[$"to file, {w} writers"] = [];
            if (only is not null) foreach (var k in rows.Keys.Except(only).ToList()) rows.Remove(k);
            if (rows.Count == 0) continue;
            await RestoreAsync(store, snapshot, null); // warm-up: chunk files into the page cache, JIT
            for (int r = 0; r < rounds; r++)
            {
                // Rotated so no row always runs first.
                var order = rows.Keys.ToArray();
                order = order.Skip(r % order.Length).Concat(order.Take(r % order.Length)).ToArray();
                foreach (var row in order)
                {
                    Sample s = row switch
                    {
                        "to null" => await RestoreAsync(store, snapshot, null),
                        "to file" => await RestoreAsync(store, snapshot, dest),
                        "to file, buffered" => await RestoreAsync(store, snapshot, dest, buffered: true),
                        _ when row.EndsWith(" writers", StringComparison.Ordinal) =>
                            await RestoreAsync(store, snapshot, dest, options: new RestoreOptions { WriteConcurrency = int.Parse(row.Split(' ')[2], inv) }),
                        _ => PwriteLoop(dest, size),
                    };
                    rows[row].Add(s);
                    Log($"  {gib} GiB {row,-18} {size / 1e6 / s.Seconds,7:F0} MB/s  {s.Seconds:F2} s  user {s.UserSeconds:F2} s  sys {s.SysSeconds:F2} s  dirty {s.DirtyStartMiB:F0}→{s.DirtyPeakMiB:F0} MiB  rss {s.PeakRssMiB:F0} MiB (+{s.RssAddedMiB:F0})  load {Load()}");
                    if (s.Stages.Length > 0) Log($"    {s.Stages}");
                    File.Delete(dest);
                }
            }
            if (rounds == 0) continue;
            // With --rows some rows may be absent: ratios and targets only where both sides ran.
            double nullSeconds = rows.TryGetValue("to null", out var nulls) ? Median(nulls.Select(x => x.Seconds)) : double.NaN;
            foreach (var (name, list) in rows)
            {
                double sec = Median(list.Select(x => x.Seconds));
                double g = size / (double)(1L << 30);
                md.AppendLine(string.Create(inv, $"| {gib} GiB | {name} | {size / 1e6 / sec:F0} | {nullSeconds / sec:F2} | {sec:F2} | {Median(list.Select(x => x.UserSeconds)) / g:F2} | {Median(list.Select(x => x.SysSeconds)) / g:F2} | {list.Max(x => x.DirtyStartMiB):F0} → {list.Max(x => x.DirtyPeakMiB):F0} | {list.Max(x => x.PeakRssMiB):F0} | {list.Max(x => x.RssAddedMiB):F0} | {list[0].Mode ?? ""} |"));
            }
            if (!rows.TryGetValue("to file", out var files)) continue;
            double file = Median(files.Select(x => x.Seconds));
            if (nulls is not null)
                targets.Add(string.Create(inv, $"| folder → file ≥ 90 % of folder → null ({gib} GiB) | {100 * nullSeconds / file:F0} % | {(nullSeconds / file >= 0.9 ? "met" : "**missed**")} |"));
            if (rows.TryGetValue("pwrite loop", out var loops))
            {
                double sysFile = Median(files.Select(x => x.SysSeconds)), sysLoop = Median(loops.Select(x => x.SysSeconds));
                targets.Add(string.Create(inv, $"| system CPU of the restore to a file ≤ 1.5× the pwrite loop ({gib} GiB) | {sysFile:F2} s vs {sysLoop:F2} s = {sysFile / Math.Max(sysLoop, 0.001):F2}× | {(sysFile <= 1.5 * sysLoop ? "met" : "**missed**")} |"));
            }
        }
        md.AppendLine();

        // ---- over our server: loopback and HDD-like, to null and to a file (also rows of the main benchmark) -----
        if (served)
        {
            var snapshot = EnsureImage(store, work, "121", 1L << 30, 21);
            md.AppendLine($"### Over our server (1 GiB of data, {rounds} alternating rounds, medians)");
            md.AppendLine();
            md.AppendLine("| scenario | row | MB/s (median) | s (median) | user CPU-s/GiB | sys CPU-s/GiB |");
            md.AppendLine("|---|---|---:|---:|---:|---:|");
            foreach (var (scenario, flags) in new[] { ("loopback", Array.Empty<string>()), ("HDD-like", new[] { "--chunk-latency-ms", "40", "--max-parallel-reads", "16" }) })
            {
                if (servedOnly is not null && scenario != servedOnly) continue;
                using var server = await Served.StartAsync(root, store, flags);
                string dest = Path.Combine(work, "restore-writepath-served.img");
                var names = scenario == "HDD-like" ? new[] { "Ours → null", "Ours → file", "Sequential → file" } : new[] { "Ours → null", "Ours → file", "Ours → file, buffered" };
                var rows = names.ToDictionary(n => n, _ => new List<Sample>());
                for (int r = 0; r < rounds; r++)
                    foreach (var name in names.Skip(r % names.Length).Concat(names.Take(r % names.Length)))
                    {
                        bool sequential = name.StartsWith("Sequential", StringComparison.Ordinal);
                        var options = sequential ? new RestoreOptions { FetchConcurrency = 1, DecodeConcurrency = 1, WriteConcurrency = 1 } : new RestoreOptions();
                        bool buffered = name.EndsWith("buffered", StringComparison.Ordinal);
                        Environment.SetEnvironmentVariable(UnbufferedFileWriter.ModeVariable, buffered ? "buffered" : null);
                        var sample = await Served.RestoreAsync(server, snapshot, name.Contains("file", StringComparison.Ordinal) ? dest : null, options, sequential ? 1 : RemoteDatastore.DefaultSessionsPerSnapshot);
                        Environment.SetEnvironmentVariable(UnbufferedFileWriter.ModeVariable, null);
                        File.Delete(dest);
                        rows[name].Add(sample);
                        Log($"  {scenario} {name,-22} {(1L << 30) / 1e6 / sample.Seconds,7:F0} MB/s  {sample.Seconds:F2} s  user {sample.UserSeconds:F2} s  sys {sample.SysSeconds:F2} s  load {Load()}");
                    }
                foreach (var (name, list) in rows)
                    md.AppendLine(string.Create(inv, $"| {scenario} | {name} | {(1L << 30) / 1e6 / Median(list.Select(x => x.Seconds)):F0} | {Median(list.Select(x => x.Seconds)):F2} | {Median(list.Select(x => x.UserSeconds)):F2} | {Median(list.Select(x => x.SysSeconds)):F2} |"));
                double M(string n) => Median(rows[n].Select(x => x.Seconds));
                if (scenario == "loopback")
                    targets.Add(string.Create(inv, $"| loopback → file ≥ 90 % of loopback → null | {100 * M("Ours → null") / M("Ours → file"):F0} % | {(M("Ours → null") / M("Ours → file") >= 0.9 ? "met" : "**missed**")} |"));
                else
                    targets.Add(string.Create(inv, $"| HDD-like to a file ≥ 3× the sequential design to a file | {M("Sequential → file") / M("Ours → file"):F1}× | {(M("Sequential → file") / M("Ours → file") >= 3 ? "met" : "**missed**")} |"));
            }
            md.AppendLine();
        }

        // ---- dirty pages and memory in a big restore --------------------------------------------------------
        if (big)
        {
            long size = (long)dirtyGiB << 30;
            var snapshot = EnsureImage(store, work, "130", size, 31);
            string dest = Path.Combine(work, "restore-writepath-big.img");
            md.AppendLine($"### Dirty pages and memory: a {dirtyGiB} GiB image of data restored to a file (one run each)");
            md.AppendLine();
            md.AppendLine("| row | MB/s | s | Dirty MiB start → peak | peak RSS MiB | RSS+ MiB | write mode |");
            md.AppendLine("|---|---:|---:|---:|---:|---:|---|");
            foreach (bool buffered in new[] { false, true })
            {
                var s = await RestoreAsync(store, snapshot, dest, buffered);
                File.Delete(dest);
                Log($"  {dirtyGiB} GiB to file{(buffered ? ", buffered" : "")}: {size / 1e6 / s.Seconds:F0} MB/s, dirty {s.DirtyStartMiB:F0}→{s.DirtyPeakMiB:F0} MiB, peak rss {s.PeakRssMiB:F0} MiB (+{s.RssAddedMiB:F0})");
                md.AppendLine(string.Create(inv, $"| to file{(buffered ? ", buffered (fallback: bounded writeback)" : "")} | {size / 1e6 / s.Seconds:F0} | {s.Seconds:F1} | {s.DirtyStartMiB:F0} → {s.DirtyPeakMiB:F0} | {s.PeakRssMiB:F0} | {s.RssAddedMiB:F0} | {s.Mode} |"));
                if (!buffered)
                {
                    targets.Add(string.Create(inv, $"| Dirty ≤ 512 MiB throughout a {dirtyGiB} GiB restore (machine-wide peak) | {s.DirtyPeakMiB:F0} MiB (at the start {s.DirtyStartMiB:F0}) | {(s.DirtyPeakMiB <= 512 ? "met" : "**missed**")} |"));
                    targets.Add(string.Create(inv, $"| memory added ≤ 256 MiB ({dirtyGiB} GiB to a file) | {s.RssAddedMiB:F0} MiB | {(s.RssAddedMiB <= 256 ? "met" : "**missed**")} |"));
                }
            }
            md.AppendLine();
        }

        // ---- native floor ----------------------------------------------------------------------------------
        if (nativeFloor)
        {
            md.AppendLine("### Decode per core: ours vs the native floor (the same chunks, one core)");
            md.AppendLine();
            var floor = await NativeFloorAsync(store, work, EnsureImage(store, work, "121", 1L << 30, 21));
            md.AppendLine("| decoder | MB/s plain |");
            md.AppendLine("|---|---:|");
            md.AppendLine(string.Create(inv, $"| ours (BlobDecoder + ChunkVerifier: CRC32, zstd, SHA-256), 1 thread, best of 3 | {floor.Ours:F0} |"));
            md.AppendLine(floor.Native is { } n
                ? string.Create(inv, $"| native floor: libzstd + OpenSSL SHA-256 + zlib CRC32 in C (`{floor.Command}`), pinned to CPU 0, best of 3 | {n:F0} |")
                : $"| native floor | not measured: {floor.Note} |");
            if (floor.Native is { } nf)
                targets.Add(string.Create(inv, $"| decode per core at about parity with the native floor | {100 * floor.Ours / nf:F0} % | {(floor.Ours >= 0.8 * nf ? "met (≥ 80 %)" : "**missed** (< 80 %)")} |"));
            md.AppendLine();
        }

        md.AppendLine("### Targets (issue 14)");
        md.AppendLine();
        md.AppendLine("| target | measured | |");
        md.AppendLine("|---|---|---|");
        foreach (var t in targets) md.AppendLine(t);
        md.AppendLine();
        md.AppendLine($"Made {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, load average at the end {Load()}, by: `{command}`. " +
                      "The loopback and HDD-like to-file rows are in the main benchmark's scenario tables (`dotnet pwsh ./build.ps1 Bench`).");
        Console.Out.WriteLine(md.ToString());
        return 0;
    }

    private static double Median(IEnumerable<double> xs)
    {
        var a = xs.Order().ToArray();
        return a.Length % 2 == 1 ? a[a.Length / 2] : (a[a.Length / 2 - 1] + a[a.Length / 2]) / 2;
    }

    internal static string Load() => File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "?";

    private static string FileSystemOf(string path)
    {
        if (!OperatingSystem.IsLinux()) return "?";
        try
        {
            var psi = new ProcessStartInfo("stat") { RedirectStandardOutput = true };
            foreach (var a in new[] { "-f", "-c", "%T", path }) psi.ArgumentList.Add(a);
            using var p = Process.Start(psi)!;
            string s = p.StandardOutput.ReadToEnd().Trim();
            p.WaitForExit();
            return s;
        }
        catch (System.ComponentModel.Win32Exception) { return "?"; }
    }

    private static SnapshotRef EnsureImage(string store, string work, string id, long size, ulong seed)
    {
        var snapshot = new SnapshotRef(BackupNamespace.Root, "vm", id, Program.Time);
        string key = $"{size}|{Pattern}|{seed}|{Program.ChunkSize}|writepath-v1";
        string marker = Path.Combine(work, "specs", id + ".json");
        string snapDir = Path.Combine(store, "vm", id);
        if (File.Exists(marker) && Directory.Exists(snapDir))
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(marker));
            if (doc.RootElement.GetProperty("key").GetString() == key) return snapshot;
        }
        if (Directory.Exists(snapDir)) Directory.Delete(snapDir, recursive: true);
        Log($"image vm/{id}: writing {size >> 20} MiB, pattern {Pattern}...");
        var writer = new DatastoreWriter(store);
        var s = writer.BeginSnapshot("", "vm", id, Program.Time);
        s.AddImage(Program.Archive, ImagePattern.Parse(Pattern, size, seed), Program.ChunkSize, hashZeroChunks: false);
        s.Finish();
        Directory.CreateDirectory(Path.GetDirectoryName(marker)!);
        File.WriteAllText(marker, JsonSerializer.Serialize(new { key }));
        return snapshot;
    }

    /// <summary>One restore at defaults through the path Restore-PbsImage takes (journal, checkpoints, commit), or into a null sink.</summary>
    private static async Task<Sample> RestoreAsync(string store, SnapshotRef snapshot, string? destination, bool buffered = false, RestoreOptions? options = null)
    {
        await using var reader = await new LocalDatastore(store).OpenSnapshotAsync(snapshot, default);
        var restorer = new ArchiveRestorer(reader, null);
        string? mode = null;
        var metrics = new RestoreMetrics();
        Environment.SetEnvironmentVariable(UnbufferedFileWriter.ModeVariable, buffered ? "buffered" : null);
        try
        {
            var sample = await MeasureAsync(async () =>
            {
                if (destination is null)
                {
                    await restorer.RestoreToSinkAsync(Program.Archive, new NullImageSink(), new RestoreOptions(), new RestoreCounters(), metrics, default);
                    return;
                }
                var result = await restorer.RestoreAsync(Program.Archive, destination, new DestinationOptions { Force = true }, options ?? new RestoreOptions(), new RestoreCounters(), default, metrics);
                mode = result.WriteMode; // the restore's own answer (no probe file inside the timed part)
            }, () => mode);
            return sample with { Stages = StagesOf(metrics) };
        }
        finally
        {
            Environment.SetEnvironmentVariable(UnbufferedFileWriter.ModeVariable, null);
        }
    }

    /// <summary>The issue's reference: 4 MiB pwrites from two threads into a sparse file of <paramref name="size"/> bytes, then one fsync.</summary>
    private static Sample PwriteLoop(string path, long size) => MeasureAsync(() =>
    {
        using var handle = File.OpenHandle(path, FileMode.Create, FileAccess.ReadWrite, FileShare.None);
        RandomAccess.SetLength(handle, size);
        int count = (int)(size / Program.ChunkSize), next = -1;
        var threads = Enumerable.Range(0, 2).Select(_ => new Thread(() =>
        {
            var buffer = new byte[Program.ChunkSize];
            Random.Shared.NextBytes(buffer);
            int i;
            while ((i = Interlocked.Increment(ref next)) < count) RandomAccess.Write(handle, buffer, (long)i * Program.ChunkSize);
        })).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) t.Join();
        RandomAccess.FlushToDisk(handle);
        return Task.CompletedTask;
    }, () => "buffered pwrite + fsync").GetAwaiter().GetResult();

    private static async Task<Sample> MeasureAsync(Func<Task> run, Func<string?> mode)
    {
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        if (OperatingSystem.IsLinux()) Sync(); // earlier runs' dirty pages are not this run's
        double dirtyStart = MemInfo("Dirty:") / 1024.0;
        var self = Process.GetCurrentProcess();
        ResetPeakRss();
        long rssBefore = Status("VmRSS:");
        double dirtyPeak = dirtyStart;
        using var done = new CancellationTokenSource();
        var sampler = Task.Run(async () =>
        {
            while (!done.IsCancellationRequested)
            {
                dirtyPeak = Math.Max(dirtyPeak, MemInfo("Dirty:") / 1024.0);
                try { await Task.Delay(20, done.Token); } catch (OperationCanceledException) { }
            }
        });
        self.Refresh();
        var user0 = self.UserProcessorTime;
        var sys0 = self.PrivilegedProcessorTime;
        var sw = Stopwatch.StartNew();
        await run();
        double seconds = sw.Elapsed.TotalSeconds;
        self.Refresh();
        var user = self.UserProcessorTime - user0;
        var sys = self.PrivilegedProcessorTime - sys0;
        done.Cancel();
        await sampler;
        dirtyPeak = Math.Max(dirtyPeak, MemInfo("Dirty:") / 1024.0);
        long hwm = Status("VmHWM:");
        return new Sample(seconds, user.TotalSeconds, sys.TotalSeconds, dirtyStart, dirtyPeak, hwm / 1024.0, Math.Max(0, hwm - rssBefore) / 1024.0, mode());
    }

    /// <summary>clear_refs 5 resets the process's peak RSS (VmHWM) to its current RSS (Linux ≥ 4.0).</summary>
    private static void ResetPeakRss()
    {
        try { File.WriteAllText("/proc/self/clear_refs", "5"); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    /// <summary>A kB field of /proc/self/status; 0 where there is none.</summary>
    private static long Status(string field) => Field("/proc/self/status", field);

    private static long MemInfo(string field) => Field("/proc/meminfo", field);

    private static long Field(string file, string field)
    {
        if (!File.Exists(file)) return 0;
        foreach (var line in File.ReadLines(file))
            if (line.StartsWith(field, StringComparison.Ordinal))
                return long.Parse(line[field.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
        return 0;
    }

    /// <summary>Our server (Release build) over loopback with the benchmark's token, for the served rows.</summary>
    private sealed class Served : IDisposable
    {
        private readonly Process _process;
        private Served(Process process, int port, string fingerprint) => (_process, Port, Fingerprint) = (process, port, fingerprint);
        public int Port { get; }
        public string Fingerprint { get; }

        public static async Task<Served> StartAsync(string root, string store, string[] flags)
        {
            var server = await Benchmark.StartServerAsync(root, store, flags); // the one way the bench starts our server
            return new Served(server.Process, server.Port, server.Fingerprint);
        }

        public static Task<Sample> RestoreAsync(Served server, SnapshotRef snapshot, string? destination, RestoreOptions options, int sessions) =>
            MeasureAsync(async () =>
            {
                using var ds = new RemoteDatastore(Benchmark.Client(server.Port, server.Fingerprint), sessions, ownsClient: true);
                await using var reader = await ds.OpenSnapshotAsync(snapshot, default);
                var restorer = new ArchiveRestorer(reader, null);
                if (destination is null)
                    await restorer.RestoreToSinkAsync(Program.Archive, new NullImageSink(), options, new RestoreCounters(), new RestoreMetrics(), default);
                else
                    await restorer.RestoreAsync(Program.Archive, destination, new DestinationOptions { Force = true }, options, new RestoreCounters(), default);
            }, () => null);

        public void Dispose()
        {
            try { if (!_process.HasExited) { _process.Kill(); _process.WaitForExit(10000); } } catch (InvalidOperationException) { }
            _process.Dispose();
        }
    }

    private sealed record Floor(double Ours, double? Native, string Command, string Note);

    /// <summary>The data chunks of the 1 GiB image, decoded on one core by ours and by the C program.</summary>
    private static async Task<Floor> NativeFloorAsync(string store, string work, SnapshotRef snapshot)
    {
        await using var reader = await new LocalDatastore(store).OpenSnapshotAsync(snapshot, default);
        var raw = await reader.ReadFileAsync(Program.Archive + ".fidx", ArchiveRestorer.MaxIndexSize, default);
        var plan = RestorePlan.Plan(Program.Archive, FixedIndex.Parse(raw), len => ChunkVerifier.ZeroChunkDigest(len, null));
        var blobs = new List<(byte[] Blob, ChunkDigest Digest)>();
        foreach (var job in plan.Jobs)
        {
            var buf = new byte[plan.MaxChunkSize + FileFormats.EncryptedBlobHeaderSize];
            int n = await reader.Chunks.ReadRawChunkAsync(job.Digest, buf, default);
            blobs.Add((buf[..n], job.Digest));
        }

        // Ours on one thread: the pipeline's decode work (BlobDecoder: CRC, zstd; ChunkVerifier: SHA-256).
        double best = double.MaxValue;
        long plain = 0;
        var thread = new Thread(() =>
        {
            using var decoder = new BlobDecoder(null, plan.MaxChunkSize);
            var dest = new byte[plan.MaxChunkSize];
            for (int rep = 0; rep < 3; rep++)
            {
                long bytes = 0;
                var sw = Stopwatch.StartNew();
                foreach (var (blob, digest) in blobs)
                {
                    int n = decoder.Decode(blob, dest);
                    if (ChunkVerifier.ComputeDigest(dest.AsSpan(0, n), null) != digest) throw new InvalidDataException("digest mismatch");
                    bytes += n;
                }
                best = Math.Min(best, sw.Elapsed.TotalSeconds);
                plain = bytes;
            }
        });
        thread.Start();
        thread.Join();
        double ours = plain / 1e6 / best;
        Log($"decode, ours on 1 thread: {ours:F0} MB/s plain");

        string source = Path.Combine(BenchOptions.Parse([]).Root, "bench", "PbsRestore.Bench", "native-floor.c");
        string exe = Path.Combine(work, "native-floor");
        string command = "gcc -O2 -o native-floor bench/PbsRestore.Bench/native-floor.c -lzstd -lcrypto -lz; native-floor chunks.bin 3";
        if (!OperatingSystem.IsLinux()) return new Floor(ours, null, command, "Linux only");
        var (rc, _, err) = Run("gcc", "-O2", "-o", exe, source, "-lzstd", "-lcrypto", "-lz");
        if (rc != 0) return new Floor(ours, null, command, "gcc could not build it (needs gcc, libzstd-dev, libssl-dev, zlib1g-dev): " + err.Split('\n')[0]);
        string data = Path.Combine(work, "native-floor-chunks.bin");
        await using (var f = File.Create(data))
        {
            var head = new byte[4 + 1 + 4 + 32];
            foreach (var (blob, digest) in blobs)
            {
                var kind = DataBlob.GetKind(blob);
                BitConverter.TryWriteBytes(head.AsSpan(0, 4), blob.Length);
                head[4] = kind == BlobKind.Compressed ? (byte)1 : (byte)0;
                BitConverter.TryWriteBytes(head.AsSpan(5, 4), DataBlob.StoredCrc(blob));
                digest.CopyTo(head.AsSpan(9, 32));
                f.Write(head);
                f.Write(blob);
            }
        }
        var (rc2, output, err2) = Run(exe, data, "3");
        File.Delete(data);
        if (rc2 != 0) return new Floor(ours, null, command, "the native floor failed: " + err2.Trim());
        var parts = output.Trim().Split(' ');
        double native = long.Parse(parts[0], CultureInfo.InvariantCulture) / 1e6 / double.Parse(parts[1], CultureInfo.InvariantCulture);
        Log($"decode, native floor on 1 core: {native:F0} MB/s plain");
        return new Floor(ours, native, command, "");
    }

    private static (int Code, string Out, string Err) Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        try
        {
            using var p = Process.Start(psi)!;
            var err = p.StandardError.ReadToEndAsync();
            string output = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            return (p.ExitCode, output, err.Result);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return (-1, "", e.Message);
        }
    }
}
