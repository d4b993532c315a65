using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using PbsRestore.Sources.Remote;
using PbsRestore.Restore;
using PbsRestore.Sources;
using PbsRestore.Destinations;

namespace PbsRestore.Bench;

/// <summary>
/// The row "genuine server, loopback" (issue 12): the three strategies (Ours, UpstreamLike, Sequential) restoring an
/// image from the GENUINE Proxmox Backup Server 3.2.4 (../shared/upstream-pbs, started by start.sh, filled by
/// make-data.sh), to null and to a file (SHA-256 checked against make-data.sh's expected.json), interleaved rounds,
/// best and median. It only reads from the server. Needs PBS_UPSTREAM_STATE and PBS_UPSTREAM_DATA (or --state/--data).
/// Run alone: <c>dotnet bench/PbsRestore.Bench/bin/Release/net10.0/PbsRestore.Bench.dll --genuine [--repeats N]
/// [--snapshot vm/100/TIME] [--state FILE] [--data DIR]</c>; <c>build.ps1 Bench</c> adds it to RESULTS.md when a peer is there.
/// </summary>
internal static class GenuineBench
{
    internal const string Row = "genuine server, loopback";

    private sealed record Options(string State, string Data, int Repeats, string? Snapshot);

    private sealed record Target(SnapshotRef Snapshot, string Archive, long Size, string Sha256);

    private static void Log(string s) => Console.Error.WriteLine($"[{DateTime.Now:HH:mm:ss}] {s}");

    public static async Task<int> RunAsync(string[] args)
    {
        string? state = Environment.GetEnvironmentVariable("PBS_UPSTREAM_STATE"), data = Environment.GetEnvironmentVariable("PBS_UPSTREAM_DATA"), snapshot = null;
        int repeats = 3;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--repeats": repeats = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--state": state = args[++i]; break;
                case "--data": data = args[++i]; break;
                case "--snapshot": snapshot = args[++i]; break;
                default: throw new ArgumentException($"unknown argument '{args[i]}' (--genuine [--repeats N] [--snapshot TYPE/ID/TIME] [--state FILE] [--data DIR])");
            }
        }
        state ??= "/run/pbs-upstream/state.json";
        if (!File.Exists(state) || data is null || !File.Exists(Path.Combine(data, "expected.json")))
        {
            Console.Error.WriteLine($"genuine server not available: need state.json ({state}) and a make-data.sh folder (PBS_UPSTREAM_DATA or --data)");
            return 2;
        }
        string work = Path.Combine(Directory.GetCurrentDirectory(), "artifacts", "bench");
        Directory.CreateDirectory(work);
        Console.Out.WriteLine(await RunRowAsync(new Options(state, data, repeats, snapshot), work));
        return 0;
    }

    /// <summary>Markdown for the row (a heading, the table and the command), or null when no genuine peer is available.</summary>
    internal static async Task<string?> TryRunForReportAsync(int repeats, string work)
    {
        string state = Environment.GetEnvironmentVariable("PBS_UPSTREAM_STATE") ?? "/run/pbs-upstream/state.json";
        string? data = Environment.GetEnvironmentVariable("PBS_UPSTREAM_DATA");
        if (!File.Exists(state) || data is null || !File.Exists(Path.Combine(data, "expected.json")))
        {
            Log($"{Row}: skipped (no genuine server: PBS_UPSTREAM_STATE/PBS_UPSTREAM_DATA not set or not there)");
            return null;
        }
        return await RunRowAsync(new Options(state, data, repeats, null), work);
    }

    private static async Task<string> RunRowAsync(Options o, string work)
    {
        using var stateDoc = JsonDocument.Parse(await File.ReadAllTextAsync(o.State));
        var s = stateDoc.RootElement;
        string Str(string n) => s.GetProperty(n).GetString()!;
        var settings = new PbsConnectionSettings(PbsRepository.Parse(Str("repository")), CertificateFingerprint.Parse(Str("fingerprint")), Str("secret"));
        var target = PickTarget(o);
        Log($"{Row}: PBS {Str("version")} at {Str("url")}, {target.Snapshot} {target.Archive} ({target.Size >> 20} MiB), {o.Repeats} rounds");

        var strategies = Benchmark.Strategies;
        var toNull = strategies.ToDictionary(x => x.Name, _ => new List<double>());
        var toFile = strategies.ToDictionary(x => x.Name, _ => new List<double>());
        string dest = Path.Combine(work, "genuine-restore.img");
        // Warm-up (server page cache, JIT, TLS), not counted.
        await RestoreAsync(settings, Benchmark.Strategies[^1], target, null);
        for (int round = 0; round < o.Repeats; round++)
        {
            // Interleaved, in rotating order, so drifting noise on a shared machine hits every strategy alike.
            for (int k = 0; k < strategies.Length; k++)
            {
                var st = strategies[(k + round) % strategies.Length];
                double n = await RestoreAsync(settings, st, target, null);
                double f = await RestoreAsync(settings, st, target, dest);
                toNull[st.Name].Add(n);
                toFile[st.Name].Add(f);
                Log($"  round {round + 1} {st.Name,-12} → null {n,7:F0} MB/s   → file {f,7:F0} MB/s (SHA-256 ok)");
            }
        }
        File.Delete(dest);

        var inv = CultureInfo.InvariantCulture;
        var md = new StringBuilder();
        md.AppendLine($"## {Row}");
        md.AppendLine();
        md.AppendLine($"The genuine Proxmox Backup Server {Str("version")} (../shared/upstream-pbs) on loopback, {target.Snapshot} {target.Archive} " +
                      $"({(target.Size / 1048576.0).ToString("F1", inv)} MiB, made by make-data.sh), {o.Repeats} interleaved rounds; logical MB/s " +
                      "(10^6 bytes of image per second), best / median. Every file restore matched the SHA-256 of expected.json.");
        md.AppendLine();
        md.AppendLine("| strategy | → null best | → null median | → file best | → file median |");
        md.AppendLine("|---|---:|---:|---:|---:|");
        foreach (var st in strategies)
            md.AppendLine($"| {st.Name} | {toNull[st.Name].Max().ToString("F0", inv)} | {Median(toNull[st.Name]).ToString("F0", inv)} | " +
                          $"{toFile[st.Name].Max().ToString("F0", inv)} | {Median(toFile[st.Name]).ToString("F0", inv)} |");
        double ours = Median(toNull["Ours"]), seq = Median(toNull["Sequential"]), up = Median(toNull["UpstreamLike"]);
        md.AppendLine();
        md.AppendLine($"Ours / Sequential (to null, medians): {(ours / seq).ToString("F2", inv)}x; Ours / UpstreamLike: {(ours / up).ToString("F2", inv)}x.  ");
        md.AppendLine($"Command: `PBS_UPSTREAM_STATE=… PBS_UPSTREAM_DATA=… dotnet bench/PbsRestore.Bench/bin/Release/net10.0/PbsRestore.Bench.dll --genuine --repeats {o.Repeats}`");
        return md.ToString();
    }

    private static double Median(List<double> v)
    {
        var s = v.Order().ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }

    /// <summary>The largest unencrypted fixed-index archive of expected.json (or the one of --snapshot).</summary>
    private static Target PickTarget(Options o)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(o.Data, "expected.json")));
        Target? best = null;
        foreach (var snap in doc.RootElement.GetProperty("snapshots").EnumerateArray())
        {
            if (snap.GetProperty("encrypted").GetBoolean()) continue;
            var sref = new SnapshotRef(BackupNamespace.Parse(snap.GetProperty("namespace").GetString()), snap.GetProperty("type").GetString()!,
                snap.GetProperty("id").GetString()!, DateTimeOffset.FromUnixTimeSeconds(snap.GetProperty("epoch").GetInt64()));
            if (o.Snapshot is not null && sref.Path != o.Snapshot) continue;
            foreach (var a in snap.GetProperty("archives").EnumerateArray())
            {
                string name = a.GetProperty("name").GetString()!;
                if (!name.EndsWith(".img.fidx", StringComparison.Ordinal) || !a.TryGetProperty("sha256", out var sha)) continue;
                long size = a.GetProperty("size").GetInt64();
                if (best is null || size > best.Size) best = new Target(sref, name[..^".fidx".Length], size, sha.GetString()!);
            }
        }
        return best ?? throw new ArgumentException($"no unencrypted image archive{(o.Snapshot is null ? "" : " in " + o.Snapshot)} in expected.json");
    }

    /// <summary>One restore through a new client (a new TLS connection and reader sessions, as a new restore would); MB/s logical.</summary>
    private static async Task<double> RestoreAsync(PbsConnectionSettings settings, Strategy st, Target target, string? destination)
    {
        using var client = new PbsClient(settings);
        using var ds = new RemoteDatastore(client, st.Sessions);
        await using var reader = await ds.OpenSnapshotAsync(target.Snapshot, default);
        var restorer = new ArchiveRestorer(reader, null);
        var counters = new RestoreCounters();
        var sw = Stopwatch.StartNew();
        if (destination is null)
            await restorer.RestoreToSinkAsync(target.Archive, new NullImageSink(), st.Options, counters, new RestoreMetrics(), default);
        else
            await restorer.RestoreAsync(target.Archive, destination, new DestinationOptions { Force = true }, st.Options, counters, default);
        double seconds = sw.Elapsed.TotalSeconds;
        if (destination is not null)
        {
            await using var f = File.OpenRead(destination);
            string sha = Convert.ToHexStringLower(await SHA256.HashDataAsync(f));
            if (sha != target.Sha256) throw new InvalidDataException($"{st.Name}: restored {target.Archive} has SHA-256 {sha}, expected {target.Sha256}");
        }
        return target.Size / 1e6 / seconds;
    }
}
