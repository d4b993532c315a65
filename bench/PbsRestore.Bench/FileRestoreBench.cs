using System.Diagnostics;
using System.Globalization;
using PbsRestore.Access;
using PbsRestore.Fixtures;
using PbsRestore.Formats.Pxar;
using PbsRestore.Restore;
using PbsRestore.Sources;
using PbsRestore.Sources.Local;
using PbsRestore.Destinations;

namespace PbsRestore.Bench;

/// <summary>
/// The file-level restore's target rows (issue 16), folder source: (1) listing one directory of a large file
/// archive reads at most 1 % of its chunks (counted); (2) extracting a tree of many small files, files/s;
/// (3) one large file extracted from a pxar archive against Restore-PbsImage's engine restoring the same bytes as
/// an image (MB/s, both to a real file). Datastores are written under artifacts/bench/files. Prints a table.
/// Run: <c>dotnet bench/PbsRestore.Bench/bin/Release/net10.0/PbsRestore.Bench.dll --file-restore [--quick] [--listing-only]</c>.
/// The listing row uses its own archive of several GiB (a small /etc next to a data folder of files that share
/// one content, deduplicated in the chunk store as PBS does, so it costs chunking time, not disk): what a listing
/// reads does not grow with the archive, so the share of chunks read only means something for a large one.
/// <c>--listing-only</c> runs that row alone (it counts chunks; it does not time anything).
/// </summary>
internal static class FileRestoreBench
{
    private static void Log(string s) => Console.Error.WriteLine($"[{DateTime.Now:HH:mm:ss}] {s}");

    public static async Task<int> RunAsync(string[] args)
    {
        bool quick = args.Contains("--quick");
        bool listingOnly = args.Contains("--listing-only");
        int smallFiles = quick ? 4000 : 20000;
        int largeMiB = quick ? 64 : 512;
        string root = Path.Combine(BenchOptions.FindRoot(), "artifacts", "bench", "files" + (quick ? "-quick" : ""));
        if (Directory.Exists(root)) Directory.Delete(root, true);
        Directory.CreateDirectory(root);
        string store = Path.Combine(root, "store");

        Log($"writing {smallFiles} small files and a {largeMiB} MiB file as pxar, and the same large file as an image ...");
        var rng = new Random(16);
        var dirs = Enumerable.Range(0, smallFiles / 100).Select(d => PxarNode.Dir($"d{d:D4}",
            Enumerable.Range(0, 100).Select(f => PxarNode.File($"f{f:D3}.txt", Text(rng, 512 + rng.Next(4096)))).ToArray())).ToArray();
        var large = new byte[largeMiB << 20];
        for (int i = 0; i < large.Length; i += 1 << 20) Text(rng, 1 << 20).CopyTo(large, i); // compressible, like logs and databases
        var writer = new DatastoreWriter(store);
        var snap = writer.BeginSnapshot("", "ct", "900", DateTimeOffset.FromUnixTimeSeconds(1_714_557_600));
        var etcDir = PxarNode.Dir("etc", PxarNode.File("hosts", "127.0.0.1 localhost\n"u8.ToArray()), PxarNode.File("fstab", "/dev/sda1 / ext4 defaults 0 1\n"u8.ToArray()));
        int copies = quick ? 16 : 8;
        var listingTree = PxarNode.Dir("", etcDir, PxarNode.Dir("data", Enumerable.Range(0, copies).Select(i => PxarNode.File($"part{i:D2}.bin", large)).ToArray()));
        var archives = listingOnly ? new[] { ("listing.pxar", listingTree) }
            : new[] { ("small.pxar", PxarNode.Dir("", dirs)), ("large.pxar", PxarNode.Dir("", etcDir, PxarNode.File("big.bin", large))), ("listing.pxar", listingTree) };
        foreach (var (name, tree) in archives)
        {
            // Through a file: the listing archive is larger than a MemoryStream can hold.
            string temp = Path.Combine(root, name + ".tmp");
            using (var fs = new FileStream(temp, FileMode.Create, FileAccess.ReadWrite, FileShare.None, 1 << 20, FileOptions.DeleteOnClose))
            {
                PxarWriter.WriteV1(tree, fs);
                fs.Position = 0;
                snap.AddDynamic(name, fs);
            }
        }
        if (!listingOnly) snap.AddImage("large.img", new MemoryStream(large));
        snap.Finish();
        long listingBytes = (long)copies * large.Length;

        var source = new LocalDatastore(store);
        var reference = (await source.ListSnapshotsAsync(BackupNamespace.Root, "ct", "900", default)).Single().Ref;
        var rows = new List<(string Row, string Value, string Target, bool Met)>();

        // (1) listing one directory of the large archive
        await using (var reader = await source.OpenSnapshotAsync(reference, default))
        {
            using var file = await FileArchive.OpenAsync(reader, null, "listing.pxar", new ChunkedReaderOptions { ReadAhead = 0 }, default);
            var etc = await file.Archive.LookupAsync("etc", default);
            await file.Archive.ListAsync(etc!, default);
            double pct = 100.0 * file.ChunksFetched / file.ChunkCount;
            rows.Add(($"list /etc of a {listingBytes >> 20} MiB archive", $"{file.ChunksFetched} of {file.ChunkCount} chunks ({pct:F2} %)", "≤ 1 %", pct <= 1));
        }
        if (listingOnly)
        {
            Print(rows, quick);
            Directory.Delete(root, true);
            return 0;
        }

        // (2) many small files
        await using (var reader = await source.OpenSnapshotAsync(reference, default))
        {
            using var file = await FileArchive.OpenAsync(reader, null, "small.pxar", null, default);
            string dest = Path.Combine(root, "small-out");
            var clock = Stopwatch.StartNew();
            var r = await new FileRestorer(file.Archive, new FileRestoreOptions(), new FileRestoreCounters(), _ => { }).RestoreAsync("small.pxar", file.Archive.Root, dest, default);
            double rate = r.Files / clock.Elapsed.TotalSeconds;
            rows.Add(($"extract {r.Files} small files (0.5–4.5 KiB) to a folder", $"{rate:F0} files/s ({clock.Elapsed.TotalSeconds:F1} s)", "≥ 5,000 files/s", rate >= 5000));
        }

        // (3) one large file vs the image restore of the same bytes
        double fileMBs, imageMBs;
        await using (var reader = await source.OpenSnapshotAsync(reference, default))
        {
            using var file = await FileArchive.OpenAsync(reader, null, "large.pxar", null, default);
            var big = await file.Archive.LookupAsync("big.bin", default);
            string dest = Path.Combine(root, "large-out");
            var clock = Stopwatch.StartNew();
            await new FileRestorer(file.Archive, new FileRestoreOptions(), new FileRestoreCounters(), _ => { }).RestoreAsync("large.pxar", big!, dest, default);
            fileMBs = large.Length / clock.Elapsed.TotalSeconds / 1e6;
            string image = Path.Combine(root, "large.img");
            clock.Restart();
            await new ArchiveRestorer(reader, null).RestoreAsync("large.img", image, new DestinationOptions(), new RestoreOptions(), new RestoreCounters(), default);
            imageMBs = large.Length / clock.Elapsed.TotalSeconds / 1e6;
        }
        rows.Add(($"extract one {largeMiB} MiB file vs Restore-PbsImage of the same bytes", $"{fileMBs:F0} MB/s vs {imageMBs:F0} MB/s ({fileMBs / imageMBs:P0})", "≥ 90 %", fileMBs >= 0.9 * imageMBs));

        Print(rows, quick);
        Directory.Delete(root, true);
        return 0;
    }

    private static void Print(List<(string Row, string Value, string Target, bool Met)> rows, bool quick) =>
        TargetTable.Print($"File-level restore, folder source{(quick ? " (--quick: smaller data)" : "")}, {Environment.ProcessorCount} cores, load {File.ReadAllText("/proc/loadavg").Trim()}", rows);

    private static byte[] Text(Random rng, int size)
    {
        var b = new byte[size];
        for (int i = 0; i < size; i++) b[i] = (byte)(rng.Next(8) == 0 ? '\n' : 'a' + rng.Next(26));
        return b;
    }
}
