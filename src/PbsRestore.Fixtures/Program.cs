using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using PbsRestore.Formats;

namespace PbsRestore.Fixtures;

/// <summary>
/// CLI: <c>dotnet run --project src/PbsRestore.Fixtures -- &lt;verb&gt; ...</c>. Verbs: demo, image, help.
/// Writes a JSON summary to stdout; progress and timing to stderr.
/// </summary>
public static class Program
{
    private const string Usage = """
        PbsRestore.Fixtures: writes PBS-format datastores for tests, benchmarks and the demo.

          demo  --path <dir> [--key-out <file>] [--force]
                vm/100 (two snapshots a day apart, 256 MiB image), vm/101 (encrypted, scrypt key file,
                password "demo-password", key written to <dir>/../demo-key.json unless --key-out),
                ns prod/web ct/200 (dynamic archive). --force first deletes <dir> if it is a datastore.

          image --path <dir> [--ns a/b] [--type vm] [--id 100] [--time 2024-05-01T10:00:00Z|<epoch>]
                [--size 2GiB] [--chunk-size 4MiB] [--pattern "zero:4,random:2,text:3,dup:2"] [--seed N]
                [--name drive-scsi0.img] [--conf] [--keyfile out.json --password pw --kdf scrypt|pbkdf2|none]
                [--dir-style colon|f03a|underscore] [--parallel N] [--deterministic-iv] [--fast-zstd]
                [--notes "web01"] [--source <raw image file>]
                One snapshot with one fixed-index image (and qemu-server.conf with --conf).
                --source: the image's bytes from a file (e.g. a file system made with mkfs) instead of a pattern.
                --notes: the snapshot notes (manifest unprotected.notes; the first line is the comment PVE
                fills with the guest name).
                --fast-zstd: bulk zstd frames for all chunks (~2.5x faster to write; upstream frames
                plain chunks as streams).
                Pattern: a sequence of chunk kinds repeated to fill the size, or a mix in percent
                ("zero:70%,random:10%,text:15%,dup:5%"); kinds: zero, random, text, dup.

          files --path <dir> [--source <folder>] [--id 300] [--time <epoch>] [--ns <a/b>] [--split]
                One container snapshot (ct/<id>) with a file archive of <folder>, or of a sample tree with
                every kind of entry: root.pxar (format v1), or with --split root.mpxar + root.ppxar (v2).

        Sizes take K/M/G/T (binary; "KiB" etc. accepted). Prints a JSON summary on stdout.
        """;

    public static int Main(string[] args)
    {
        if (args.Length == 0 || args[0] is "help" or "-h" or "--help" or "-?")
        {
            Console.Error.WriteLine(Usage);
            return args.Length == 0 ? 2 : 0;
        }
        try
        {
            var options = Options.Parse(args.AsSpan(1));
            JsonObject result = args[0] switch
            {
                "demo" => Demo.Run(options),
                "image" => RunImage(options),
                "files" => RunFiles(options),
                _ => throw new UsageException($"unknown verb '{args[0]}'"),
            };
            Console.Out.WriteLine(result.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            return 0;
        }
        catch (UsageException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            Console.Error.WriteLine(Usage);
            return 2;
        }
        catch (Exception e) when (e is IOException or ArgumentException or FormatException or UnauthorizedAccessException or PbsException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }

    private static JsonObject RunFiles(Options o)
    {
        string path = o.Required("path");
        var root = o.Get("source") is { } source ? PxarNode.FromDirectory(source, "") : PxarSamples.Tree();
        string id = o.Get("id") ?? "300";
        long time = long.TryParse(o.Get("time"), out var t) ? t : 1_714_557_600;
        var store = new DatastoreWriter(path);
        var snapshot = store.BeginSnapshot(o.Get("ns") ?? "", "ct", id, DateTimeOffset.FromUnixTimeSeconds(time));
        if (o.Flag("split"))
        {
            var meta = new MemoryStream();
            var payload = new MemoryStream();
            PxarWriter.WriteV2(root, meta, payload);
            meta.Position = payload.Position = 0;
            snapshot.AddDynamic("root.mpxar", meta);
            snapshot.AddDynamic("root.ppxar", payload);
        }
        else
        {
            var one = new MemoryStream();
            PxarWriter.WriteV1(root, one);
            one.Position = 0;
            snapshot.AddDynamic("root.pxar", one);
        }
        var info = snapshot.Finish();
        return new JsonObject { ["path"] = path, ["snapshot"] = info.Path };
    }

    private static JsonObject RunImage(Options o)
    {
        var sw = Stopwatch.StartNew();
        string path = o.Required("path");
        string ns = o.Get("ns") ?? "";
        string type = o.Get("type") ?? "vm";
        string id = o.Get("id") ?? "100";
        var time = ParseTime(o.Get("time") ?? "2024-05-01T10:00:00Z");
        long size = ParseSize(o.Get("size") ?? "1GiB");
        int chunkSize = checked((int)ParseSize(o.Get("chunk-size") ?? "4MiB"));
        string pattern = o.Get("pattern") ?? "zero:4,random:2,text:3,dup:2";
        ulong seed = ulong.Parse(o.Get("seed") ?? "1", CultureInfo.InvariantCulture);
        string name = o.Get("name") ?? "drive-scsi0.img";
        int parallel = int.Parse(o.Get("parallel") ?? Environment.ProcessorCount.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
        var style = ParseDirStyle(o.Get("dir-style"));
        bool deterministic = o.Flag("deterministic-iv");
        bool conf = o.Flag("conf");
        bool fast = o.Flag("fast-zstd");
        string? notes = o.Get("notes");
        string? source = o.Get("source");
        string? keyfile = o.Get("keyfile"), password = o.Get("password"), kdfText = o.Get("kdf");
        o.ThrowIfUnused();

        CryptConfig? crypt = null;
        JsonObject? keyJson = null;
        if (keyfile is not null)
        {
            var kdf = KeyFiles.ParseKdf(kdfText ?? "scrypt");
            if (kdf != KeyKdf.None && password is null) throw new UsageException("--keyfile with a kdf needs --password");
            crypt = KeyFiles.Create(keyfile, password, kdf, seed: seed);
            keyJson = KeyJson(keyfile, password, kdf, crypt);
        }
        else if (password is not null || kdfText is not null)
        {
            throw new UsageException("--password and --kdf need --keyfile");
        }

        var writer = new DatastoreWriter(path) { MaxParallelism = parallel, DeterministicIvs = deterministic, DirStyle = style ?? DefaultStyle(),
            FrameStyle = fast ? ZstdFrameStyle.Bulk : null };
        var content = source is null ? ImagePattern.Parse(pattern, size, seed) : null;
        if (source is not null) size = new FileInfo(source).Length;
        var snapshot = writer.BeginSnapshot(ns, type, id, time, crypt);
        if (conf) snapshot.AddBlob("qemu-server.conf", Encoding.UTF8.GetBytes(Demo.QemuConfig(id, size)));
        if (content is not null) snapshot.AddImage(name, content, chunkSize);
        else
            using (var file = File.OpenRead(source!))
                snapshot.AddImage(name, file, chunkSize);
        var info = snapshot.Finish(notes is null ? null : new JsonObject { ["notes"] = notes });
        double seconds = sw.Elapsed.TotalSeconds;
        Console.Error.WriteLine($"wrote {info.Path}: {size / 1048576.0:F1} MiB in {seconds:F2} s ({size / 1048576.0 / seconds:F0} MiB/s), " +
                                $"{writer.ChunksWritten} chunks written ({writer.ChunkBytesWritten / 1048576.0:F1} MiB), {writer.ChunksExisting} already present");
        var result = new JsonObject
        {
            ["datastore"] = writer.RootPath,
            ["pattern"] = content?.Spec ?? "file:" + source,
            ["seed"] = seed,
            ["snapshot"] = SnapshotJson(info),
            ["key"] = keyJson,
            ["seconds"] = Math.Round(seconds, 3),
            ["chunksWritten"] = writer.ChunksWritten,
            ["chunkBytesWritten"] = writer.ChunkBytesWritten,
        };
        // The image's sha256 at the top level for scripts.
        result["sha256"] = info.Archives.First(a => a.Kind == ArchiveKind.FixedIndex).Sha256;
        return result;
    }

    internal static SnapshotDirStyle DefaultStyle() =>
        OperatingSystem.IsWindows() ? SnapshotDirStyle.PrivateUse : SnapshotDirStyle.Colon;

    internal static JsonObject KeyJson(string keyfile, string? password, KeyKdf kdf, CryptConfig crypt) => new()
    {
        ["path"] = Path.GetFullPath(keyfile),
        ["password"] = password,
        ["kdf"] = kdf.ToString().ToLowerInvariant(),
        ["fingerprint"] = crypt.Fingerprint.ToString(),
    };

    internal static JsonObject SnapshotJson(SnapshotInfo s) => new()
    {
        ["path"] = s.Path,
        ["directory"] = s.Directory,
        ["namespace"] = s.Namespace,
        ["backupType"] = s.BackupType,
        ["backupId"] = s.BackupId,
        ["backupTime"] = s.BackupTime,
        ["time"] = DatastoreWriter.FormatTime(s.Time),
        ["keyFingerprint"] = s.KeyFingerprint,
        ["archives"] = new JsonArray(s.Archives.Select(a => (JsonNode)new JsonObject
        {
            ["name"] = a.ArchiveName,
            ["file"] = a.FileName,
            ["cryptMode"] = a.CryptMode.ToPbsString(),
            ["size"] = a.Size,
            ["sha256"] = a.Sha256,
            ["chunks"] = a.ChunkCount,
            ["chunkSize"] = a.ChunkSize,
        }).ToArray()),
    };

    internal static SnapshotDirStyle? ParseDirStyle(string? text) => text?.ToLowerInvariant() switch
    {
        null => null,
        "colon" => SnapshotDirStyle.Colon,
        "f03a" or "privateuse" or "catia" => SnapshotDirStyle.PrivateUse,
        "underscore" or "_" => SnapshotDirStyle.Underscore,
        _ => throw new UsageException($"unknown --dir-style '{text}' (colon, f03a, underscore)"),
    };

    /// <summary>"2GiB", "4MiB", "64K", "1.5G", "12345" (binary multiples).</summary>
    public static long ParseSize(string text)
    {
        string t = text.Trim();
        int end = 0;
        while (end < t.Length && (char.IsDigit(t[end]) || t[end] == '.')) end++;
        if (end == 0 || !double.TryParse(t[..end], NumberStyles.Float, CultureInfo.InvariantCulture, out double value))
            throw new FormatException($"'{text}' is not a size");
        long unit = t[end..].Trim().ToUpperInvariant() switch
        {
            "" or "B" => 1,
            "K" or "KB" or "KIB" => 1L << 10,
            "M" or "MB" or "MIB" => 1L << 20,
            "G" or "GB" or "GIB" => 1L << 30,
            "T" or "TB" or "TIB" => 1L << 40,
            _ => throw new FormatException($"'{text}': unknown size unit"),
        };
        return checked((long)(value * unit));
    }

    /// <summary>RFC 3339 (UTC assumed without offset) or epoch seconds.</summary>
    public static DateTimeOffset ParseTime(string text) =>
        long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out long epoch)
            ? DateTimeOffset.FromUnixTimeSeconds(epoch)
            : DateTimeOffset.Parse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal);
}

internal sealed class UsageException(string message) : Exception(message);

/// <summary>"--name value" and "--flag" options.</summary>
internal sealed class Options
{
    private readonly Dictionary<string, string?> _values = new(StringComparer.OrdinalIgnoreCase);
    private readonly HashSet<string> _used = new(StringComparer.OrdinalIgnoreCase);

    public static Options Parse(ReadOnlySpan<string> args)
    {
        var o = new Options();
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            if (!a.StartsWith("--", StringComparison.Ordinal)) throw new UsageException($"unexpected argument '{a}'");
            string name = a[2..];
            string? value = null;
            int eq = name.IndexOf('=');
            if (eq >= 0)
            {
                value = name[(eq + 1)..];
                name = name[..eq];
            }
            else if (i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal))
            {
                value = args[++i];
            }
            o._values[name] = value;
        }
        return o;
    }

    public string? Get(string name)
    {
        _used.Add(name);
        return _values.TryGetValue(name, out var v) ? v ?? throw new UsageException($"--{name} needs a value") : null;
    }

    public string Required(string name) => Get(name) ?? throw new UsageException($"--{name} is required");

    public bool Flag(string name)
    {
        _used.Add(name);
        return _values.ContainsKey(name);
    }

    public void ThrowIfUnused()
    {
        var unknown = _values.Keys.Where(k => !_used.Contains(k)).ToList();
        if (unknown.Count > 0) throw new UsageException($"unknown option(s): {string.Join(", ", unknown.Select(k => "--" + k))}");
    }
}
