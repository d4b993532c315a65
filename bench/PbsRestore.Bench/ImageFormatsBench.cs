using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using PbsRestore.Fixtures;
using PbsRestore.Restore;
using PbsRestore.Sources;
using PbsRestore.Destinations;
using PbsRestore.Sources.Local;

namespace PbsRestore.Bench;

/// <summary>
/// Output formats side by side: the same image restored from the folder datastore into a real file under
/// artifacts/bench as Raw (<see cref="DestinationFile"/>), VHDX (<see cref="VhdxDestination"/>) and fixed VHD
/// (<see cref="VhdDestination"/>), at defaults, each run ending with the destination's commit (flush to disk, rename).
/// Interleaved rounds in rotating order; best and median shown. Prints a table; writes no results file.
/// Run: <c>dotnet bench/PbsRestore.Bench/bin/Release/net10.0/PbsRestore.Bench.dll --image-formats [--repeats N] [--quick]</c>.
/// </summary>
internal static class ImageFormatsBench
{
    private const string Id = "110";
    private const string Pattern = "zero:15%,random:35%,text:35%,dup:15%";

    private sealed record Format(string Name, ImageFormat Value);

    private static readonly Format[] Formats = [new("Raw", ImageFormat.Raw), new("VHDX", ImageFormat.Vhdx), new("VHD", ImageFormat.Vhd)];

    private static void Log(string s) => Console.Error.WriteLine($"[{DateTime.Now:HH:mm:ss}] {s}");

    public static async Task<int> RunAsync(string[] args)
    {
        int repeats = 3;
        bool quick = false;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--repeats": repeats = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--quick": quick = true; break;
                default: throw new ArgumentException($"unknown argument '{args[i]}' (--image-formats [--repeats N] [--quick])");
            }
        }
        var root = BenchOptions.Parse([]).Root;
        string work = Path.Combine(root, "artifacts", "bench");
        string store = Path.Combine(work, "store");
        long size = quick ? 256L << 20 : 2L << 30;
        var snapshot = EnsureImage(store, work, size);

        var best = Formats.ToDictionary(f => f.Name, _ => (Seconds: double.MaxValue, FileBytes: 0L, Allocated: 0L));
        var all = Formats.ToDictionary(f => f.Name, _ => new List<double>());
        await RestoreOnceAsync(store, snapshot, Formats[0], work); // warm-up: page cache, JIT; not counted
        for (int rep = 0; rep < repeats; rep++)
        {
            // Interleaved, so drifting noise hits every format alike, and rotated: no format always runs first.
            foreach (var f in Formats.Skip(rep % Formats.Length).Concat(Formats.Take(rep % Formats.Length)))
            {
                var r = await RestoreOnceAsync(store, snapshot, f, work);
                Log($"  {f.Name,-5} {size / 1e6 / r.Seconds,8:F0} MB/s  {r.Seconds:F2} s  file {r.FileBytes / 1e6:F0} MB, allocated {r.Allocated / 1e6:F0} MB");
                if (r.Seconds < best[f.Name].Seconds) best[f.Name] = r;
                all[f.Name].Add(r.Seconds);
            }
        }

        var inv = CultureInfo.InvariantCulture;
        var md = new StringBuilder();
        md.AppendLine($"## Output formats (folder → real file under artifacts/bench, defaults, commit included, {repeats} rounds)");
        md.AppendLine();
        md.AppendLine($"Image: `{Pattern}`, {size >> 20} MiB logical, 4 MiB chunks; {Environment.ProcessorCount} cores. MB = 10^6 bytes.");
        md.AppendLine();
        md.AppendLine("| format | MB/s logical (best) | seconds | × Raw | MB/s logical (median) | × Raw (median) | file size MB | allocated MB |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|");
        double Median(List<double> xs) => xs.Order().ElementAt(xs.Count / 2);
        double raw = best["Raw"].Seconds, rawMedian = Median(all["Raw"]);
        foreach (var f in Formats)
        {
            var b = best[f.Name];
            double m = Median(all[f.Name]);
            md.AppendLine(string.Create(inv, $"| {f.Name} | {size / 1e6 / b.Seconds:F0} | {b.Seconds:F2} | {raw / b.Seconds:F2} | {size / 1e6 / m:F0} | {rawMedian / m:F2} | {b.FileBytes / 1e6:F0} | {b.Allocated / 1e6:F0} |"));
        }
        md.AppendLine();
        md.AppendLine(string.Create(inv, $"VHDX/Raw throughput ratio: {raw / best["VHDX"].Seconds:F2} best, {rawMedian / Median(all["VHDX"]):F2} median (target ≥ 0.90); " +
                                         $"VHD/Raw: {raw / best["VHD"].Seconds:F2} best, {rawMedian / Median(all["VHD"]):F2} median"));
        md.AppendLine();
        md.AppendLine($"Each round restores through `ArchiveRestorer.RestoreAsync` (as Restore-PbsImage does: journal, checkpoints, commit), the formats in rotating order. " +
                      $"Made {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC by: `dotnet pwsh ./build.ps1 Bench -BenchArgs '--image-formats','--repeats','{repeats}'`");
        Console.Out.WriteLine(md.ToString());
        return 0;
    }

    private static SnapshotRef EnsureImage(string store, string work, long size)
    {
        var snapshot = new SnapshotRef(BackupNamespace.Root, "vm", Id, Program.Time);
        string key = $"{size}|{Pattern}|{Program.ChunkSize}|formats-v1";
        string marker = Path.Combine(work, "specs", Id + ".json");
        string snapDir = Path.Combine(store, "vm", Id);
        if (File.Exists(marker) && Directory.Exists(snapDir))
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(marker));
            if (doc.RootElement.GetProperty("key").GetString() == key)
            {
                Log($"image vm/{Id}: reusing {snapDir}");
                return snapshot;
            }
        }
        if (Directory.Exists(snapDir)) Directory.Delete(snapDir, recursive: true);
        Log($"image vm/{Id}: writing {size >> 20} MiB, pattern {Pattern}...");
        var writer = new DatastoreWriter(store);
        var s = writer.BeginSnapshot("", "vm", Id, Program.Time);
        s.AddImage(Program.Archive, ImagePattern.Parse(Pattern, size, 5), Program.ChunkSize);
        s.Finish();
        Directory.CreateDirectory(Path.GetDirectoryName(marker)!);
        File.WriteAllText(marker, JsonSerializer.Serialize(new { key }));
        return snapshot;
    }

    private static async Task<(double Seconds, long FileBytes, long Allocated)> RestoreOnceAsync(string store, SnapshotRef snapshot, Format format, string work)
    {
        string dest = Path.Combine(work, "restore-format." + format.Name.ToLowerInvariant());
        await using var reader = await new LocalDatastore(store).OpenSnapshotAsync(snapshot, default);
        var restorer = new ArchiveRestorer(reader, null);
        try
        {
            // The path Restore-PbsImage takes: destination chosen by format, resume journal and checkpoints, commit.
            var sw = Stopwatch.StartNew();
            await restorer.RestoreAsync(Program.Archive, dest, new DestinationOptions { Force = true, Format = format.Value }, new RestoreOptions(), new RestoreCounters(), default);
            double seconds = sw.Elapsed.TotalSeconds;
            return (seconds, new FileInfo(dest).Length, AllocatedBytes(dest));
        }
        finally
        {
            File.Delete(dest);
        }
    }

    /// <summary>Allocated bytes on disk (<c>stat -c %b</c> × 512); 0 where there is no stat.</summary>
    private static long AllocatedBytes(string path)
    {
        if (OperatingSystem.IsWindows()) return 0;
        var psi = new ProcessStartInfo("stat") { RedirectStandardOutput = true };
        foreach (var a in new[] { "-c", "%b", path }) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string s = p.StandardOutput.ReadToEnd().Trim();
        p.WaitForExit();
        return long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out long blocks) ? blocks * 512 : 0;
    }
}
