using System.Security.Cryptography;
using System.Text;
using PbsRestore.Formats;
using PbsRestore.Access;
using PbsRestore.Fixtures;
using PbsRestore.Formats.Pxar;
using PbsRestore.Platform;
using PbsRestore.Restore;
using PbsRestore.Tests.Fixtures;

namespace PbsRestore.Tests.Pxar;

public sealed class FileRestorerTests : IDisposable
{
    private readonly TempDir _dir = new();
    public void Dispose() => _dir.Dispose();

    private static async Task<(FileRestoreResult Result, List<string> Warnings)> Restore(PxarArchive archive, string path, string destination, FileRestoreOptions? options = null)
    {
        var warnings = new List<string>();
        var entry = await archive.LookupAsync(path, default) ?? throw new InvalidOperationException(path);
        var result = await new FileRestorer(archive, options ?? new FileRestoreOptions(), new FileRestoreCounters(), warnings.Add)
            .RestoreAsync("root.pxar", entry, destination, default);
        return (result, warnings);
    }

    private static string Sha(string file) => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(file)));

    [Theory]
    [InlineData("1")]
    [InlineData("2")]
    public async Task A_whole_fixture_archive_restores_bit_exact_with_times_modes_and_links(string id)
    {
        var tree = PxarFixtureTree.Build();
        string store = PxarFixtureTree.WriteDatastore(Path.Combine(_dir.Path, "s"), tree, ids: id);
        await using var reader = await PxarFixtureTree.OpenAsync(store, id);
        using var file = await FileArchive.OpenAsync(reader, null, "root.pxar", null, default);
        string dest = Path.Combine(_dir.Path, "out");
        var (result, warnings) = await Restore(file.Archive, "/", dest);

        foreach (var (path, node) in PxarFixtureTree.Flatten(tree))
        {
            string target = Path.Combine(dest, path);
            var written = node.HardlinkTo ?? node;
            switch (node.HardlinkTo is null ? node.Type : PxarEntryType.File)
            {
                case PxarEntryType.File:
                    Assert.Equal(PxarFixtureTree.Sha(written.Content), Sha(target));
                    if (!OperatingSystem.IsWindows()) Assert.Equal(written.Permissions, (int)File.GetUnixFileMode(target));
                    break;
                case PxarEntryType.Directory:
                    Assert.True(Directory.Exists(target), path);
                    break;
                case PxarEntryType.Symlink:
                    Assert.Equal(node.LinkTarget, new FileInfo(target).LinkTarget);
                    continue; // its time is the link's own; checked below for files
                case PxarEntryType.Fifo when !OperatingSystem.IsWindows():
                    Assert.True(File.Exists(target));
                    break;
                default:
                    continue;
            }
            var mtime = DateTimeOffset.UnixEpoch.AddSeconds(written.MtimeSeconds).AddTicks(written.MtimeNanos / 100);
            Assert.Equal(mtime.UtcDateTime, File.GetLastWriteTimeUtc(target));
        }
        // The hardlink is a link: a write through one name shows through the other.
        File.AppendAllText(Path.Combine(dest, "zz-hardlink"), "more");
        Assert.EndsWith("more", File.ReadAllText(Path.Combine(dest, "hello.txt")));
        Assert.Equal(1, result.Hardlinks);
        int regular = PxarFixtureTree.Flatten(tree).Count(x => x.Node.Type == PxarEntryType.File && x.Node.HardlinkTo is null);
        Assert.Equal(regular, result.Files);
        Assert.Equal(PxarFixtureTree.Flatten(tree).Where(x => x.Node.HardlinkTo is null).Sum(x => (long)x.Node.Content.Length), result.Bytes);
        Assert.Contains(warnings, w => w.Contains("socket skipped"));
        if (FileMetadata.CanSetXattrs && !FileMetadata.CanSetOwner)
            Assert.DoesNotContain(warnings, w => w.Contains("user.comment"));
    }

    [Fact]
    public async Task Only_the_named_subtree_is_restored_and_existing_files_need_force()
    {
        var tree = PxarFixtureTree.Build();
        string store = PxarFixtureTree.WriteDatastore(Path.Combine(_dir.Path, "s"), tree, ids: "1");
        await using var reader = await PxarFixtureTree.OpenAsync(store, "1");
        using var file = await FileArchive.OpenAsync(reader, null, "root.pxar", null, default);
        string dest = Path.Combine(_dir.Path, "out");
        var (result, _) = await Restore(file.Archive, "sub", dest);
        Assert.Equal(["sub"], Directory.GetFileSystemEntries(dest).Select(Path.GetFileName));
        Assert.Equal("deep\n", File.ReadAllText(Path.Combine(dest, "sub", "deeper", "file.txt")));
        Assert.True(Directory.Exists(Path.Combine(dest, "sub", "empty")));
        Assert.Equal(1, result.Files);

        var e = await Assert.ThrowsAsync<PbsException>(() => Restore(file.Archive, "sub", dest));
        Assert.Equal("DestinationExists", e.ErrorId);
        File.WriteAllText(Path.Combine(dest, "sub", "deeper", "file.txt"), "changed");
        await Restore(file.Archive, "sub", dest, new FileRestoreOptions { Force = true });
        Assert.Equal("deep\n", File.ReadAllText(Path.Combine(dest, "sub", "deeper", "file.txt")));

        // A hardlink whose target is not restored becomes a copy of it.
        string single = Path.Combine(_dir.Path, "single");
        await Restore(file.Archive, "zz-hardlink", single);
        Assert.Equal("hello world\n", File.ReadAllText(Path.Combine(single, "zz-hardlink")));
    }

    [Fact]
    public async Task A_symlink_in_the_destination_is_never_written_through()
    {
        var tree = PxarNode.Dir("", PxarNode.Dir("sub", PxarNode.File("evil.txt", "x"u8.ToArray())));
        var ms = new MemoryStream();
        PxarWriter.WriteV1(tree, ms);
        var archive = await PxarArchive.OpenAsync(new MemoryAccessData(ms.ToArray()), null, default);
        string outside = Path.Combine(_dir.Path, "outside");
        Directory.CreateDirectory(outside);
        string dest = Path.Combine(_dir.Path, "dest");
        Directory.CreateDirectory(dest);
        Directory.CreateSymbolicLink(Path.Combine(dest, "sub"), outside);
        foreach (bool force in new[] { false, true })
        {
            var e = await Assert.ThrowsAsync<PbsException>(() => Restore(archive, "/", dest, new FileRestoreOptions { Force = force }));
            Assert.Equal("DestinationIsLink", e.ErrorId);
            Assert.Contains("/sub", e.Message);
            Assert.Empty(Directory.GetFileSystemEntries(outside));
        }
    }

    [Fact]
    public async Task A_symlink_followed_by_a_directory_of_the_same_name_is_refused_before_anything_escapes()
    {
        // A hostile archive: 'x' -> outside, then a directory 'x' holding a file. The writer writes what it is given.
        string outside = Path.Combine(_dir.Path, "outside");
        Directory.CreateDirectory(outside);
        var tree = PxarNode.Dir("", PxarNode.Symlink("x", outside), PxarNode.Dir("x", PxarNode.File("escaped.txt", "x"u8.ToArray())));
        var ms = new MemoryStream();
        PxarWriter.WriteV1(tree, ms);
        var archive = await PxarArchive.OpenAsync(new MemoryAccessData(ms.ToArray()), null, default);
        var e = await Assert.ThrowsAsync<PxarFormatException>(() => Restore(archive, "/", Path.Combine(_dir.Path, "dest")));
        Assert.Equal("PxarBadFileName", e.ErrorId);
        Assert.Contains("repeats", e.Message);
        Assert.Empty(Directory.GetFileSystemEntries(outside));
    }

    [Fact]
    public void Windows_names_map_reversibly()
    {
        foreach (var (name, mapped) in new[] { ("a:b", "a\uF03Ab"), ("what?", "what\uF03F"), ("CON", "\uF043ON"), ("con.txt", "\uF063on.txt"),
                     ("dot.", "dot\uF02E"), ("space ", "space\uF020"), ("back\\slash", "back\uF05Cslash"), ("plain.txt", "plain.txt") })
        {
            Assert.Equal(mapped, WindowsNames.Map(name));
            Assert.Equal(name, WindowsNames.Unmap(mapped));
        }
    }

    [Fact]
    public async Task Mapped_names_are_reported()
    {
        var tree = PxarNode.Dir("", PxarNode.File("a:b", "1"u8.ToArray()), PxarNode.File("CON", "2"u8.ToArray()));
        var ms = new MemoryStream();
        PxarWriter.WriteV1(tree, ms);
        var archive = await PxarArchive.OpenAsync(new MemoryAccessData(ms.ToArray()), null, default);
        var (result, warnings) = await Restore(archive, "/", Path.Combine(_dir.Path, "dest"), new FileRestoreOptions { MapWindowsNames = true });
        Assert.Equal(["/CON -> \uF043ON", "/a:b -> a\uF03Ab"], result.MappedNames);
        Assert.Equal(2, warnings.Count(w => w.Contains("cannot exist on Windows")));
        Assert.Equal("1", File.ReadAllText(Path.Combine(_dir.Path, "dest", "a\uF03Ab")));
    }
}
