using System.Security.Cryptography;
using PbsRestore.Formats;
using PbsRestore.Restore;
using PbsRestore.Sources;
using PbsRestore.Destinations;
using PbsRestore.Sources.Local;

namespace PbsRestore.Tests.Restore;

/// <summary>End to end through the local datastore source, on the upstream-written golden datastore.</summary>
public sealed class ArchiveRestorerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("pbsrestore-test-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<string, string, int> GoldenArchives()
    {
        var data = new TheoryData<string, string, int>();
        foreach (var (snapshot, archive) in GoldenManifest.Instance.AllArchives())
            foreach (int fetch in new[] { 1, 16 })
                data.Add(snapshot.Path, archive.Name, fetch);
        return data;
    }

    private static Task<ISnapshotReader> Open(string snapshotPath) => GoldenManifest.Instance.Snapshot(snapshotPath).OpenAsync();

    private static CryptConfig? KeyFor(string snapshotPath) => GoldenManifest.Instance.Snapshot(snapshotPath).OpenKey();

    [Theory]
    [MemberData(nameof(GoldenArchives))]
    public async Task Every_golden_archive_restores_bit_exactly(string snapshotPath, string archiveName, int fetch)
    {
        var snap = GoldenManifest.Instance.Snapshot(snapshotPath);
        var archive = snap.Archives.Concat(snap.ExtraFiles).Single(a => a.Name == archiveName);
        await using var reader = await Open(snapshotPath);
        var restorer = new ArchiveRestorer(reader, KeyFor(snapshotPath));
        string dest = Path.Combine(_dir, archiveName + ".out");
        var counters = new RestoreCounters();

        var result = await restorer.RestoreAsync(ArchiveNames.DisplayName(archiveName), dest,
            new DestinationOptions(), new RestoreOptions { FetchConcurrency = fetch }, counters, default);

        Assert.Equal(archive.PlaintextSha256, Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(dest))));
        Assert.Equal(archive.PlaintextSize, result.LogicalBytes);
        Assert.Equal(ArchiveNames.DisplayName(archiveName), result.Archive);
        if (archive.IsFixedIndex) Assert.Equal((long)archive.ZeroChunkCount!.Value, result.ZeroChunks);
        Assert.False(File.Exists(DestinationFile.PartialPathFor(dest)));
    }

    [Fact]
    public async Task Missing_key_is_refused_before_the_destination_exists()
    {
        await using var reader = await Open("vm/101/2024-05-01T10:05:00Z");
        string dest = Path.Combine(_dir, "x.img");
        var e = await Assert.ThrowsAsync<PbsKeyException>(() =>
            new ArchiveRestorer(reader, null).RestoreAsync("drive-scsi0.img", dest, new DestinationOptions(), new RestoreOptions(), new RestoreCounters(), default));
        Assert.Equal("KeyRequired", e.ErrorId);
        Assert.Contains("c5:6f:e2:bb:9a:37:d1:f3", e.Message);
        Assert.False(File.Exists(dest));
        Assert.False(File.Exists(DestinationFile.PartialPathFor(dest)));
    }

    [Fact]
    public async Task Wrong_key_is_refused_before_the_destination_exists()
    {
        await using var reader = await Open("vm/101/2024-05-01T10:05:00Z");
        var wrong = KeyConfig.Parse(GoldenManifest.Read("keys/none.key.json")).Open((string?)null);
        string dest = Path.Combine(_dir, "x.img");
        var e = await Assert.ThrowsAsync<PbsKeyException>(() =>
            new ArchiveRestorer(reader, wrong).RestoreAsync("drive-scsi0.img", dest, new DestinationOptions(), new RestoreOptions(), new RestoreCounters(), default));
        Assert.Equal("KeyFingerprintMismatch", e.ErrorId);
        Assert.False(File.Exists(dest));
    }

    [Fact]
    public async Task Unknown_archive_lists_what_exists()
    {
        await using var reader = await Open("vm/100/2024-05-01T10:00:00Z");
        var e = await Assert.ThrowsAsync<PbsNotFoundException>(() =>
            new ArchiveRestorer(reader, null).RestoreAsync("drive-sata9.img", Path.Combine(_dir, "x"), new DestinationOptions(), new RestoreOptions(), new RestoreCounters(), default));
        Assert.Equal("ArchiveNotFound", e.ErrorId);
        Assert.Contains("drive-scsi0.img", e.Message);
        Assert.Contains("qemu-server.conf", e.Message);
    }

    [Fact]
    public async Task Existing_destination_needs_force_and_is_kept_on_refusal()
    {
        await using var reader = await Open("vm/100/2024-05-01T10:00:00Z");
        string dest = Path.Combine(_dir, "exists.img");
        File.WriteAllText(dest, "keep me");
        var e = await Assert.ThrowsAsync<PbsException>(() =>
            new ArchiveRestorer(reader, null).RestoreAsync("drive-virtio1.img", dest, new DestinationOptions(), new RestoreOptions(), new RestoreCounters(), default));
        Assert.Equal("DestinationExists", e.ErrorId);
        Assert.Equal("keep me", File.ReadAllText(dest));

        await new ArchiveRestorer(reader, null).RestoreAsync("drive-virtio1.img", dest, new DestinationOptions { Force = true }, new RestoreOptions(), new RestoreCounters(), default);
        Assert.Equal(1 << 20, new FileInfo(dest).Length);
    }

    [Fact]
    public async Task A_corrupt_chunk_fails_the_restore_and_leaves_no_destination()
    {
        // A private copy of the datastore with one chunk of vm/100 drive-scsi0 damaged.
        string store = Path.Combine(_dir, "store");
        CopyDirectory(TestPaths.GoldenPath("datastore"), store);
        var archive = GoldenManifest.Instance.Snapshot("vm/100/2024-05-01T10:00:00Z").Archives.Single(a => a.Name == "drive-scsi0.img.fidx");
        var victim = archive.Chunks.First(c => !c.IsZero);
        string chunkPath = Path.Combine(store, ".chunks", victim.Digest[..4], victim.Digest);
        var bytes = File.ReadAllBytes(chunkPath);
        bytes[20] ^= 0x55;
        File.WriteAllBytes(chunkPath, bytes);

        var reader = await new LocalDatastore(store).OpenSnapshotAsync(
            new SnapshotRef(BackupNamespace.Root, "vm", "100", DateTimeOffset.FromUnixTimeSeconds(1714557600)), default);
        string dest = Path.Combine(_dir, "bad.img");
        var e = await Assert.ThrowsAsync<ChunkException>(() =>
            new ArchiveRestorer(reader, null).RestoreAsync("drive-scsi0.img", dest, new DestinationOptions(), new RestoreOptions(), new RestoreCounters(), default));
        Assert.Equal("BlobCrcMismatch", e.ErrorId);
        Assert.Equal(victim.Digest, e.Digest);
        Assert.Equal(victim.Offset, e.Offset);
        Assert.False(File.Exists(dest));
        Assert.False(File.Exists(DestinationFile.PartialPathFor(dest)));
    }

    internal static void CopyDirectory(string from, string to)
    {
        foreach (var dir in Directory.EnumerateDirectories(from, "*", SearchOption.AllDirectories))
            Directory.CreateDirectory(Path.Combine(to, Path.GetRelativePath(from, dir)));
        Directory.CreateDirectory(to);
        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            string target = Path.Combine(to, Path.GetRelativePath(from, file));
            File.Copy(file, target);
            File.SetAttributes(target, FileAttributes.Normal);
        }
    }
}
