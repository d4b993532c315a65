using System.Formats.Tar;
using System.IO.Compression;
using PbsRestore.Formats;
using PbsRestore.Access;
using PbsRestore.Fixtures;
using PbsRestore.Formats.Pxar;
using PbsRestore.Restore;
using PbsRestore.Tests.Fixtures;

namespace PbsRestore.Tests.Pxar;

public sealed class FileArchiveExporterTests : IDisposable
{
    private readonly TempDir _dir = new();
    public void Dispose() => _dir.Dispose();

    private static async Task<PxarArchive> SampleAsync(PxarNode tree)
    {
        var ms = new MemoryStream();
        PxarWriter.WriteV1(tree, ms);
        return await PxarArchive.OpenAsync(new MemoryAccessData(ms.ToArray()), null, default);
    }

    [Fact]
    public async Task Tar_holds_every_entry_with_contents_modes_owners_and_links_and_gnu_tar_extracts_it()
    {
        var tree = PxarFixtureTree.Build();
        var archive = await SampleAsync(tree);
        string file = Path.Combine(_dir.Path, "all.tar");
        var warnings = new List<string>();
        var result = await new FileArchiveExporter(archive, new FileRestoreCounters(), warnings.Add)
            .ExportAsync("root.pxar", archive.Root, file, FileExportFormat.Tar, false, default);
        Assert.Single(warnings, w => w.Contains("socket"));
        Assert.False(File.Exists(file + ".partial"));

        var entries = new Dictionary<string, (TarEntryType Type, string Sha, int Mode, int Uid, string Link)>();
        await using (var reader = new TarReader(File.OpenRead(file)))
        {
            while (await reader.GetNextEntryAsync(copyData: true) is { } e)
            {
                string sha = e.DataStream is null ? (e.EntryType == TarEntryType.RegularFile ? PxarFixtureTree.Sha([]) : "") : Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(e.DataStream));
                entries[e.Name] = (e.EntryType, sha, (int)e.Mode, e.Uid, e.LinkName);
            }
        }
        foreach (var (path, node) in PxarFixtureTree.Flatten(tree))
        {
            Assert.True(entries.TryGetValue(path, out var t) || node.Type == PxarEntryType.Socket, path);
            if (node.HardlinkTo is not null) { Assert.Equal(TarEntryType.HardLink, t.Type); Assert.Equal("hello.txt", t.Link); continue; }
            switch (node.Type)
            {
                case PxarEntryType.File:
                    Assert.Equal(PxarFixtureTree.Sha(node.Content), t.Sha);
                    Assert.Equal(node.Permissions, t.Mode);
                    Assert.Equal((int)node.Uid, t.Uid);
                    break;
                case PxarEntryType.Symlink: Assert.Equal(node.LinkTarget, t.Link); break;
                case PxarEntryType.Fifo: Assert.Equal(TarEntryType.Fifo, t.Type); break;
                case PxarEntryType.BlockDevice: Assert.Equal(TarEntryType.BlockDevice, t.Type); break;
            }
        }
        Assert.Equal(PxarFixtureTree.Flatten(tree).Count(x => x.Node.Type == PxarEntryType.File && x.Node.HardlinkTo is null), result.Files);

        // An independent reader: GNU tar extracts it and the contents match.
        if (OperatingSystem.IsLinux())
        {
            string outDir = Path.Combine(_dir.Path, "gnu");
            Directory.CreateDirectory(outDir);
            var psi = new System.Diagnostics.ProcessStartInfo("tar", ["-xf", file, "-C", outDir, "--exclude=sda1", "--exclude=null", "--no-same-owner"]) { RedirectStandardError = true };
            using var p = System.Diagnostics.Process.Start(psi)!;
            string err = p.StandardError.ReadToEnd();
            p.WaitForExit();
            Assert.True(p.ExitCode == 0, err);
            Assert.Equal("deep\n", File.ReadAllText(Path.Combine(outDir, "sub", "deeper", "file.txt")));
            Assert.Equal(PxarFixtureTree.Sha(tree.Children[0].Children[1].Content),
                Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(Path.Combine(outDir, "big", "blob001.bin")))));
        }
    }

    [Fact]
    public async Task Zip_holds_files_directories_and_symlinks_of_a_subtree_and_refuses_to_overwrite()
    {
        var tree = PxarFixtureTree.Build();
        var archive = await SampleAsync(tree);
        string file = Path.Combine(_dir.Path, "etc.zip");
        var etc = await archive.LookupAsync("etc", default);
        var result = await new FileArchiveExporter(archive, new FileRestoreCounters(), _ => { })
            .ExportAsync("root.pxar", etc!, file, FileExportFormat.Zip, false, default);
        Assert.Equal(20, result.Files);
        using (var zip = ZipFile.OpenRead(file))
        {
            Assert.Equal(21, zip.Entries.Count);
            Assert.Contains(zip.Entries, z => z.FullName == "etc/");
            var conf = zip.GetEntry("etc/conf03")!;
            using var s = conf.Open();
            var bytes = new MemoryStream();
            s.CopyTo(bytes);
            Assert.Equal(PxarSamples.Random(500 + 3 * 37, 3), bytes.ToArray());
            Assert.Equal(0x81A4, (int)((uint)conf.ExternalAttributes >> 16));
        }
        var e = await Assert.ThrowsAsync<PbsException>(() => new FileArchiveExporter(archive, new FileRestoreCounters(), _ => { })
            .ExportAsync("root.pxar", etc!, file, FileExportFormat.Zip, false, default));
        Assert.Equal("DestinationExists", e.ErrorId);

        // Whole archive: symlinks carry their target, FIFOs and devices are skipped with a warning each.
        var warnings = new List<string>();
        string all = Path.Combine(_dir.Path, "all.zip");
        await new FileArchiveExporter(archive, new FileRestoreCounters(), warnings.Add).ExportAsync("root.pxar", archive.Root, all, FileExportFormat.Zip, false, default);
        using var whole = ZipFile.OpenRead(all);
        var link = whole.GetEntry("link-rel")!;
        Assert.Equal(0xA000, (int)((uint)link.ExternalAttributes >> 16) & 0xF000);
        using (var r = new StreamReader(link.Open())) Assert.Equal("hello.txt", r.ReadToEnd());
        Assert.Equal(4, warnings.Count); // fifo, socket, block and character device
    }
}
