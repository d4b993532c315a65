using PbsRestore.Tests.Platform;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using PbsRestore.Access;
using PbsRestore.Formats;
using PbsRestore.Formats.Pxar;
using PbsRestore.Sources;
using PbsRestore.Sources.Local;

namespace PbsRestore.Tests.Pxar;

/// <summary>
/// The pxar reader and catalog reader against the genuine proxmox-backup-client's archives (ct/300 plain, ct/301
/// encrypted, host/files), read as a local datastore: every entry's metadata and every file's bytes as expected.json
/// recorded them from the source tree.
/// </summary>
public sealed class UpstreamPxarTests
{
    public static TheoryData<string, string> Archives => new() { { "ct", "300" }, { "ct", "301" }, { "host", "files" } };

    internal static async Task<(ISnapshotReader Reader, CryptConfig? Crypt, JsonObject Snapshot)> OpenAsync(string type, string id)
    {
        var snap = UpstreamData.Snapshot(type, id);
        CryptConfig? crypt = (bool)snap["encrypted"]!
            ? KeyConfig.Parse(File.ReadAllBytes(UpstreamData.KeyFile(snap))).Open(UpstreamData.KeyPassword(snap))
            : null;
        var reader = await new LocalDatastore(UpstreamData.DatastoreFolder!).OpenSnapshotAsync(UpstreamData.RefOf(snap), default);
        return (reader, crypt, snap);
    }

    private static JsonArray Entries(JsonObject snap, string archive) =>
        snap["archives"]!.AsArray().Single(a => (string)a!["name"]! == archive)!["entries"]!.AsArray();

    private static string TypeName(PxarEntryType t) => t switch
    {
        PxarEntryType.Directory => "dir", PxarEntryType.File => "file", PxarEntryType.Symlink => "symlink",
        PxarEntryType.Hardlink => "hardlink", PxarEntryType.Fifo => "fifo", _ => t.ToString(),
    };

    [UpstreamTheory]
    [MemberData(nameof(Archives))]
    public async Task Every_entry_and_every_file_matches_expected_json(string type, string id)
    {
        var (reader, crypt, snap) = await OpenAsync(type, id);
        await using var _ = reader;
        using var data = await ArchiveAccess.OpenAsync(reader, crypt, "root.pxar", null, default);
        var archive = await PxarArchive.OpenAsync(data, null, default);
        Assert.Equal(1, archive.Version);

        var entries = new List<PxarEntry> { archive.Root };
        await foreach (var e in archive.WalkAsync(archive.Root, default)) entries.Add(e);
        var expected = Entries(snap, "root.pxar.didx");
        Assert.Equal(expected.Count, entries.Count);
        int files = 0;
        for (int i = 0; i < entries.Count; i++)
        {
            var x = expected[i]!.AsObject();
            var e = entries[i];
            string path = e.Path.Length == 0 ? "." : e.Path;
            Assert.Equal((string)x["path"]!, path);
            Assert.Equal((string)x["type"]!, TypeName(e.Type));
            var meta = e.Type == PxarEntryType.Hardlink ? await archive.ResolveHardlinkAsync(e, default) : e;
            if (e.Type == PxarEntryType.Hardlink) Assert.Equal((string)x["target"]!, e.LinkTarget);
            Assert.True(Convert.ToInt32((string)x["mode"]!, 8) == meta.Permissions, $"{path}: mode {Convert.ToString(meta.Permissions, 8)} vs {x["mode"]}");
            Assert.Equal((uint)x["uid"]!, meta.Uid);
            Assert.Equal((uint)x["gid"]!, meta.Gid);
            Assert.Equal((long)x["mtime"]!, meta.MtimeSeconds);
            Assert.Equal((uint)x["mtime_ns"]!, meta.MtimeNanos);
            if (e.Type == PxarEntryType.Symlink) Assert.Equal((string)x["target"]!, e.LinkTarget);
            if (meta.Type == PxarEntryType.File)
            {
                Assert.Equal((long)x["size"]!, meta.Size);
                await using var content = await archive.OpenContentAsync(meta, default);
                Assert.Equal((string)x["sha256"]!, Convert.ToHexStringLower(await SHA256.HashDataAsync(content)));
                files++;
            }
            var xattrs = x["xattrs"]?.AsObject().ToDictionary(p => p.Key, p => (string)p.Value!) ?? [];
            Assert.Equal(xattrs, meta.Xattrs.ToDictionary(a => a.NameText, a => Convert.ToHexStringLower(a.Value)));
            Assert.Equal(x["acl"]?.AsArray().Select(a => (string)a!).ToArray() ?? [], meta.Acl.AccessText(meta.Mode));
            Assert.Equal(x["default_acl"]?.AsArray().Select(a => (string)a!).ToArray() ?? [], meta.Acl.DefaultText());
        }
        Assert.True(files > 10);
    }

    [UpstreamTheory]
    [MemberData(nameof(Archives))]
    public async Task Lookup_through_goodbye_tables_finds_every_path(string type, string id)
    {
        var (reader, crypt, snap) = await OpenAsync(type, id);
        await using var _ = reader;
        using var data = await ArchiveAccess.OpenAsync(reader, crypt, "root.pxar", new ChunkedReaderOptions { ReadAhead = 0 }, default);
        var archive = await PxarArchive.OpenAsync(data, null, default);
        foreach (var x in Entries(snap, "root.pxar.didx"))
        {
            string path = (string)x!["path"]!;
            var found = await archive.LookupAsync(path, default);
            Assert.NotNull(found);
            Assert.Equal(path == "." ? "" : path, found!.Path);
        }
        Assert.Null(await archive.LookupAsync("does/not/exist", default));
        Assert.Null(await archive.LookupAsync("hello.txt/below-a-file", default));
    }

    [UpstreamTheory]
    [MemberData(nameof(Archives))]
    public async Task Catalog_lists_every_entry_with_sizes_and_mtimes(string type, string id)
    {
        var (reader, crypt, snap) = await OpenAsync(type, id);
        await using var _ = reader;
        using var data = await ArchiveAccess.OpenAsync(reader, crypt, "catalog.pcat1", null, default);
        var catalog = await PxarCatalog.OpenAsync(data, default);
        var top = await catalog.ListAsync(catalog.Root, default);
        var archiveDir = Assert.Single(top);
        Assert.Equal("root.pxar.didx", archiveDir.Name);

        var listed = new List<(string Path, CatalogEntry Entry)>();
        async Task Walk(CatalogEntry dir, string prefix)
        {
            foreach (var e in await catalog.ListAsync(dir, default))
            {
                string p = prefix.Length == 0 ? e.Name : prefix + "/" + e.Name;
                listed.Add((p, e));
                if (e.Type == CatalogEntryType.Directory) await Walk(e, p);
            }
        }
        await Walk(archiveDir, "");
        var expected = Entries(snap, "root.pxar.didx").Skip(1).ToList(); // the catalog has no entry for the root itself
        Assert.Equal(expected.Select(x => (string)x!["path"]!), listed.Select(l => l.Path));
        foreach (var (x, (path, e)) in expected.Zip(listed))
        {
            string t = (string)x!["type"]!;
            Assert.Equal(t switch { "dir" => CatalogEntryType.Directory, "file" => CatalogEntryType.File, "symlink" => CatalogEntryType.Symlink,
                "hardlink" => CatalogEntryType.Hardlink, "fifo" => CatalogEntryType.Fifo, _ => throw new InvalidOperationException(t) }, e.Type);
            if (t == "file")
            {
                Assert.Equal((long)x["size"]!, e.Size);
                Assert.Equal((long)x["mtime"]!, e.MtimeSeconds);
            }
        }
        var deepest = expected.Where(x => (string)x!["type"]! == "file").MaxBy(x => ((string)x!["path"]!).Count(c => c == '/'))!;
        var found = await catalog.LookupAsync("root.pxar.didx/" + (string)deepest["path"]!, default);
        Assert.Equal((long)deepest["size"]!, found!.Size);
        Assert.Null(await catalog.LookupAsync("root.pxar.didx/does/not/exist", default));
    }

    private static Dictionary<string, string[]> FindAll(string dir)
    {
        var psi = new System.Diagnostics.ProcessStartInfo("find", [dir, "-mindepth", "1", "-printf", "%P\\0%U\\0%G\\0%m\\0%n\\0%y\\0"]) { RedirectStandardOutput = true };
        using var p = System.Diagnostics.Process.Start(psi)!;
        var parts = p.StandardOutput.ReadToEnd().Split('\0');
        p.WaitForExit();
        var map = new Dictionary<string, string[]>();
        for (int i = 0; i + 6 <= parts.Length; i += 6) map[parts[i]] = parts[(i + 1)..(i + 6)];
        return map;
    }

    [UpstreamTheory(LinuxOnly = true)]
    [MemberData(nameof(Archives))]
    public async Task Restore_writes_every_file_bit_exact_with_the_recorded_metadata(string type, string id)
    {
        var (reader, crypt, snap) = await OpenAsync(type, id);
        await using var _ = reader;
        using var file = await FileArchive.OpenAsync(reader, crypt, "root.pxar", null, default);
        string dest = Path.Combine(Path.GetTempPath(), "pbs-upstream-restore-" + Guid.NewGuid().ToString("N"));
        try
        {
            var warnings = new List<string>();
            var result = await new PbsRestore.Restore.FileRestorer(file.Archive, new PbsRestore.Restore.FileRestoreOptions(), new PbsRestore.Restore.FileRestoreCounters(), warnings.Add)
                .RestoreAsync("root.pxar", file.Archive.Root, dest, default);
            var found = FindAll(dest);
            bool root = PbsRestore.Platform.FileMetadata.CanSetOwner;
            foreach (var x in Entries(snap, "root.pxar.didx").Skip(1))
            {
                string path = (string)x!["path"]!, t = (string)x["type"]!;
                string full = Path.Combine(dest, path);
                Assert.True(found.TryGetValue(path, out var f), $"{path} not restored");
                if (t is "file" or "hardlink")
                {
                    Assert.Equal((string)x["sha256"]!, Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(full))));
                    Assert.Equal((string)x["nlink"]!.ToString(), f![3]);
                }
                if (t == "symlink")
                {
                    Assert.Equal((string)x["target"]!, new FileInfo(full).LinkTarget);
                    Assert.Equal("l", f![4]);
                    continue;
                }
                if (t == "fifo") Assert.Equal("p", f![4]);
                Assert.True(Convert.ToInt32((string)x["mode"]!, 8) == Convert.ToInt32(f![2], 8), $"{path}: mode {f[2]} vs {x["mode"]}");
                if (root)
                {
                    Assert.Equal(x["uid"]!.ToString(), f[0]);
                    Assert.Equal(x["gid"]!.ToString(), f[1]);
                }
                var mtime = DateTime.UnixEpoch.AddSeconds((long)x["mtime"]!).AddTicks((long)x["mtime_ns"]! / 100);
                Assert.True(mtime == (Directory.Exists(full) ? Directory.GetLastWriteTimeUtc(full) : File.GetLastWriteTimeUtc(full)), $"{path}: mtime");
            }
            Assert.Equal(Entries(snap, "root.pxar.didx").Count(x => (string)x!["type"]! == "hardlink"), result.Hardlinks);
            // xattrs: read back with getfattr where it is installed.
            foreach (var x in Entries(snap, "root.pxar.didx").Where(x => x!["xattrs"] is not null))
            {
                var psi = new System.Diagnostics.ProcessStartInfo("getfattr", ["-d", "-e", "hex", "--absolute-names", Path.Combine(dest, (string)x!["path"]!)]) { RedirectStandardOutput = true };
                using var p = System.Diagnostics.Process.Start(psi)!; // getfattr: from the attr package, which start.sh installs
                string text = p.StandardOutput.ReadToEnd();
                p.WaitForExit();
                foreach (var (name, hex) in x["xattrs"]!.AsObject())
                    Assert.Contains($"{name}=0x{(string)hex!}", text);
            }
            // POSIX ACLs (access and default): read back with getfacl, entry for entry as expected.json records them.
            int withAcl = 0;
            foreach (var x in Entries(snap, "root.pxar.didx").Where(x => x!["acl"] is not null || x!["default_acl"] is not null))
            {
                string path = (string)x!["path"]!;
                var (access, defaults) = Getfacl.Read(Path.Combine(dest, path));
                if (x["acl"] is { } acl) Assert.Equal(acl.AsArray().Select(a => (string)a!), access);
                if (x["default_acl"] is { } def) Assert.Equal(def.AsArray().Select(a => (string)a!), defaults);
                else Assert.Empty(defaults);
                withAcl++;
            }
            if (type == "ct") Assert.True(withAcl > 0, "expected.json lists no ACLs for the container backups: the data set lacks what this test checks");
        }
        finally
        {
            try { Directory.Delete(dest, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }
}
