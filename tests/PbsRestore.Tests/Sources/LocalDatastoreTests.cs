using PbsRestore.Sources;
using PbsRestore.Tests.Restore;
using PbsRestore.Sources.Local;

namespace PbsRestore.Tests.Sources;

public sealed class LocalDatastoreTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("pbsrestore-ds-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static LocalDatastore Golden() => new(TestPaths.GoldenPath("datastore"));

    [Fact]
    public async Task Lists_namespaces_recursively()
    {
        var all = await Golden().ListNamespacesAsync(BackupNamespace.Root, 7, default);
        Assert.Equal(["", "dev"], all.Select(n => n.ToString()));
        var rootOnly = await Golden().ListNamespacesAsync(BackupNamespace.Root, 0, default);
        Assert.Single(rootOnly);
    }

    [Fact]
    public async Task Lists_snapshots_with_manifest_fields()
    {
        var root = await Golden().ListSnapshotsAsync(BackupNamespace.Root, null, null, default);
        Assert.Equal(["ct/200/2024-05-01T10:10:00Z", "vm/100/2024-05-01T10:00:00Z", "vm/101/2024-05-01T10:05:00Z"], root.Select(s => s.Snapshot));
        var vm101 = root.Single(s => s.BackupId == "101");
        Assert.True(vm101.Encrypted);
        Assert.Equal("c5:6f:e2:bb:9a:37:d1:f3:e5:88:0b:28:d4:71:5c:e2:9d:17:a2:cf:4a:4b:38:c3:33:43:b9:76:cc:e2:eb:27", vm101.KeyFingerprint);
        Assert.Equal(new DateTime(2024, 5, 1, 10, 5, 0, DateTimeKind.Utc), vm101.BackupTime);
        Assert.Equal(DateTimeKind.Utc, vm101.BackupTime.Kind);
        Assert.Equal("root@pam", vm101.Owner);
        Assert.Equal(["qemu-server.conf.blob", "drive-scsi0.img.fidx"], vm101.Files.Select(f => f.Name));
        // As PBS lists it: the manifest's files plus index.json.blob itself.
        Assert.Equal(2097152 + 356 + new FileInfo(TestPaths.GoldenPath("datastore/vm/101/2024-05-01T10:05:00Z/index.json.blob")).Length, vm101.Size);

        var dev = await Golden().ListSnapshotsAsync(BackupNamespace.Parse("dev"), null, null, default);
        var vm102 = Assert.Single(dev);
        Assert.Equal("dev", vm102.Namespace);
        Assert.Equal("ns/dev/vm/102/2024-05-01T10:15:00Z", vm102.Ref.ToString());
    }

    [Fact]
    public async Task Filters_by_type_and_id()
    {
        var ct = await Golden().ListSnapshotsAsync(BackupNamespace.Root, "ct", null, default);
        Assert.Equal("200", Assert.Single(ct).BackupId);
        var id = await Golden().ListSnapshotsAsync(BackupNamespace.Root, null, "100", default);
        Assert.Equal("vm", Assert.Single(id).BackupType);
    }

    [Theory]
    [InlineData('\uF03A')]
    [InlineData('_')]
    public async Task Finds_snapshot_folders_with_windows_mapped_colons(char mapped)
    {
        string store = Path.Combine(_dir, "store");
        ArchiveRestorerTests.CopyDirectory(TestPaths.GoldenPath("datastore"), store);
        string original = Path.Combine(store, "vm", "100", "2024-05-01T10:00:00Z");
        Directory.Move(original, Path.Combine(store, "vm", "100", "2024-05-01T10:00:00Z".Replace(':', mapped)));

        var ds = new LocalDatastore(store);
        var listed = await ds.ListSnapshotsAsync(BackupNamespace.Root, "vm", "100", default);
        Assert.Equal("vm/100/2024-05-01T10:00:00Z", Assert.Single(listed).Snapshot);
        await using var reader = await ds.OpenSnapshotAsync(listed[0].Ref, default);
        var manifest = await reader.ReadFileAsync("index.json.blob", 1 << 20, default);
        Assert.NotEmpty(manifest);
    }

    [Fact]
    public void A_folder_without_chunks_is_not_a_datastore()
    {
        var e = Assert.Throws<PbsNotFoundException>(() => new LocalDatastore(_dir));
        Assert.Equal("DatastoreNotFound", e.ErrorId);
        Assert.Contains(".chunks", e.Message);
    }

    [Fact]
    public async Task Unknown_snapshot_and_namespace_are_not_found()
    {
        var e = await Assert.ThrowsAsync<PbsNotFoundException>(() =>
            Golden().OpenSnapshotAsync(new SnapshotRef(BackupNamespace.Root, "vm", "100", DateTimeOffset.UnixEpoch), default));
        Assert.Equal("SnapshotNotFound", e.ErrorId);
        var n = await Assert.ThrowsAsync<PbsNotFoundException>(() =>
            Golden().ListSnapshotsAsync(BackupNamespace.Parse("nope"), null, null, default));
        Assert.Equal("NamespaceNotFound", n.ErrorId);
    }

    [Fact]
    public async Task Reader_refuses_names_that_are_paths()
    {
        var snapshots = await Golden().ListSnapshotsAsync(BackupNamespace.Root, "vm", "100", default);
        await using var reader = await Golden().OpenSnapshotAsync(snapshots[0].Ref, default);
        foreach (var name in new[] { "../../vm/101/x.blob", "/etc/passwd.blob", "a/b.fidx", "..\\x.fidx" })
        {
            var e = await Assert.ThrowsAsync<PbsFormatException>(() => reader.ReadFileAsync(name, 100, default));
            Assert.Equal("ManifestBadFileName", e.ErrorId);
        }
    }
}

public class SnapshotSpecTests
{
    [Theory]
    [InlineData("vm/100/2024-05-01T10:00:00Z", "", "vm", "100", 1714557600L)]
    [InlineData("vm/100/1714557600", "", "vm", "100", 1714557600L)]
    [InlineData("ct/200/2024-05-01T10\uF03A00\uF03A00Z", "", "ct", "200", 1714557600L)]
    [InlineData("host/web01/2024-05-01T10_00_00Z", "", "host", "web01", 1714557600L)]
    [InlineData("ns/a/ns/b/vm/102/2024-05-01T10:00:00Z", "a/b", "vm", "102", 1714557600L)]
    [InlineData("vm/100/2024-05-01T12:00:00+02:00", "", "vm", "100", 1714557600L)]
    [InlineData("vm/100", "", "vm", "100", null)]
    public void Parses(string text, string ns, string type, string id, long? epoch)
    {
        var spec = SnapshotSpec.Parse(text);
        Assert.Equal(ns, spec.Namespace?.ToString() ?? "");
        Assert.Equal(type, spec.BackupType);
        Assert.Equal(id, spec.BackupId);
        Assert.Equal(epoch, spec.BackupTime?.ToUnixTimeSeconds());
    }

    [Theory]
    [InlineData("")]
    [InlineData("vm")]
    [InlineData("disk/100/2024-05-01T10:00:00Z")]
    [InlineData("vm/../2024-05-01T10:00:00Z")]
    [InlineData("vm/100/yesterday")]
    [InlineData("vm/100/2024-05-01T10:00:00Z/extra")]
    public void Refuses(string text)
    {
        var e = Assert.Throws<PbsException>(() => SnapshotSpec.Parse(text));
        Assert.Equal("SnapshotSpecInvalid", e.ErrorId);
    }

    [Fact]
    public void Namespaces_are_validated()
    {
        Assert.Equal("a/b", BackupNamespace.Parse("/a/b/").ToString());
        Assert.True(BackupNamespace.Parse("").IsRoot);
        Assert.Equal("NamespaceInvalid", Assert.Throws<PbsException>(() => BackupNamespace.Parse("a/../b")).ErrorId);
        Assert.Equal("NamespaceInvalid", Assert.Throws<PbsException>(() => BackupNamespace.Parse("1/2/3/4/5/6/7/8")).ErrorId);
    }
}

public class SnapshotRefTests
{
    [Fact]
    public void ToString_is_the_path_below_the_datastore_and_parses_back()
    {
        var r = new SnapshotRef(BackupNamespace.Parse("prod/web"), "ct", "200", DateTimeOffset.FromUnixTimeSeconds(1714558200));
        Assert.Equal("ns/prod/ns/web/ct/200/2024-05-01T10:10:00Z", r.ToString());
        var spec = SnapshotSpec.Parse(r.ToString());
        Assert.Equal(r.Namespace, spec.Namespace);
        Assert.Equal(r.BackupTime, spec.BackupTime);
    }
}

public class BackupGroupTests
{
    [Fact]
    public async Task Groups_of_the_golden_root_namespace()
    {
        ISnapshotSource source = new LocalDatastore(TestPaths.GoldenPath("datastore"));
        var groups = await source.ListGroupsAsync(BackupNamespace.Root, default);
        Assert.Equal(["ct/200", "vm/100", "vm/101"], groups.Select(g => g.Group));
        var vm100 = groups.Single(g => g.BackupId == "100");
        Assert.Equal(1, vm100.SnapshotCount);
        Assert.Equal(DateTimeOffset.FromUnixTimeSeconds(1714557600), vm100.LastBackup);
        Assert.Equal("root@pam", vm100.Owner);
        Assert.Contains("drive-virtio1.img.fidx", vm100.Files);
    }
}
