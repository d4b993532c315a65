using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;

namespace PbsRestore.Fixtures;

/// <summary>
/// The demo datastore of the README: reproducible (fixed seeds, seeded key, deterministic IVs).
/// <list type="bullet">
/// <item>vm/100: 2024-05-01T10:00:00Z and a day later; drive-scsi0.img 256 MiB in 4 MiB chunks (mostly zero,
/// text, random, duplicates), the second snapshot with ~10 % of chunks changed (the rest shared); qemu-server.conf.</item>
/// <item>vm/101: encrypted with a scrypt key file (password "demo-password"), drive-scsi0.img 64 MiB + qemu-server.conf.</item>
/// <item>ns prod/web, ct/200: data.didx (24 MiB, content-defined chunks; arbitrary bytes, not pxar) + pct.conf.</item>
/// </list>
/// </summary>
public static class Demo
{
    public const string Password = "demo-password";
    public const ulong Seed = 20240501;

    internal static JsonObject Run(Options o)
    {
        string path = Path.GetFullPath(o.Required("path"));
        string keyOut = Path.GetFullPath(o.Get("key-out") ?? Path.Combine(path, "..", "demo-key.json"));
        bool force = o.Flag("force");
        o.ThrowIfUnused();
        var result = Write(path, keyOut, force);
        return result;
    }

    /// <summary>Writes the demo datastore at <paramref name="path"/> and the key file at <paramref name="keyOut"/>; returns the summary.</summary>
    public static JsonObject Write(string path, string keyOut, bool force = false)
    {
        var sw = Stopwatch.StartNew();
        if (Directory.Exists(path) && Directory.EnumerateFileSystemEntries(path).Any())
        {
            bool isDatastore = Directory.Exists(Path.Combine(path, ".chunks")) && File.Exists(Path.Combine(path, ".lock"));
            if (!force || !isDatastore)
                throw new IOException($"{path} is not empty" + (isDatastore ? "; add --force to replace the datastore" : " (and not a datastore)"));
            Directory.Delete(path, recursive: true);
        }
        var writer = new DatastoreWriter(path) { DeterministicIvs = true };
        var snapshots = new JsonArray();
        const int chunk = 4 << 20;

        // vm/100: two snapshots a day apart sharing most chunks.
        var t0 = new DateTimeOffset(2024, 5, 1, 10, 0, 0, TimeSpan.Zero);
        var disk = ImagePattern.Parse("zero:10,text:2,random:2,dup:2", 256L << 20, Seed);
        IImageContent[] days = [disk, ImageContent.WithChangedChunks(disk, 0.1, Seed + 1)];
        for (int day = 0; day < days.Length; day++)
        {
            var s = writer.BeginSnapshot("", "vm", "100", t0.AddDays(day));
            s.AddBlob("qemu-server.conf", Encoding.UTF8.GetBytes(QemuConfig("100", disk.Size)));
            s.AddImage("drive-scsi0.img", days[day], chunk);
            snapshots.Add(Program.SnapshotJson(s.Finish()));
        }

        // vm/101: encrypted.
        var crypt = KeyFiles.Create(keyOut, Password, KeyKdf.Scrypt, seed: Seed, created: t0.AddHours(-16), hint: "demo");
        var enc = writer.BeginSnapshot("", "vm", "101", t0.AddMinutes(5), crypt);
        enc.AddBlob("qemu-server.conf", Encoding.UTF8.GetBytes(QemuConfig("101", 64L << 20)));
        enc.AddImage("drive-scsi0.img", ImagePattern.Parse("zero:2,text:1,random:1,dup:1", 64L << 20, Seed + 101), chunk);
        snapshots.Add(Program.SnapshotJson(enc.Finish()));

        // ns prod/web, ct/200: a dynamic archive.
        var ct = writer.BeginSnapshot("prod/web", "ct", "200", t0.AddMinutes(10));
        ct.AddBlob("pct.conf", Encoding.UTF8.GetBytes(
            "arch: amd64\ncores: 2\nhostname: web01\nmemory: 1024\nnet0: name=eth0,bridge=vmbr0,ip=dhcp,type=veth\n" +
            "ostype: debian\nrootfs: local-lvm:vm-200-disk-0,size=8G\nswap: 512\nunprivileged: 1\n"));
        using (var stream = ImageContent.AsStream(ImagePattern.Parse("text:3,random:1,zero:1,dup:1", 24L << 20, Seed + 200), 1 << 20))
            ct.AddDynamic("data.didx", stream, DynamicChunking.ContentDefined(4 << 20));
        snapshots.Add(Program.SnapshotJson(ct.Finish()));

        double seconds = sw.Elapsed.TotalSeconds;
        long onDisk = DiskUsage(path);
        Console.Error.WriteLine($"demo datastore {path}: {seconds:F2} s, {onDisk / 1048576.0:F1} MiB in files, " +
                                $"{writer.ChunksWritten} chunks written, {writer.ChunksExisting} already present");
        return new JsonObject
        {
            ["datastore"] = path,
            ["key"] = Program.KeyJson(keyOut, Password, KeyKdf.Scrypt, crypt),
            ["snapshots"] = snapshots,
            ["seconds"] = Math.Round(seconds, 3),
            ["bytesOnDisk"] = onDisk,
        };
    }

    /// <summary>Sum of file sizes under <paramref name="path"/>.</summary>
    public static long DiskUsage(string path) =>
        new DirectoryInfo(path).EnumerateFiles("*", SearchOption.AllDirectories).Sum(f => f.Length);

    internal static string QemuConfig(string id, long diskSize) =>
        $"""
        boot: order=scsi0;net0
        cores: 2
        cpu: x86-64-v2-AES
        memory: 2048
        meta: creation-qemu=8.1.5,ctime=1714500000
        name: demo-{id}
        net0: virtio=BC:24:11:00:{int.Parse(id) % 100:D2}:01,bridge=vmbr0,firewall=1
        numa: 0
        ostype: l26
        scsi0: local-lvm:vm-{id}-disk-0,iothread=1,size={Math.Max(1, diskSize >> 20)}M
        scsihw: virtio-scsi-single
        smbios1: uuid=6f1c2b8e-0000-4000-8000-000000000{id}
        sockets: 1
        vmgenid: 00000000-0000-4000-8000-000000000{id}

        """;
}
