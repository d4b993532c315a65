using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using PbsRestore.Formats;
using PbsRestore.Access;
using PbsRestore.Fixtures;
using PbsRestore.Formats.Pxar;
using PbsRestore.Tests.Fixtures;

namespace PbsRestore.Tests.Pxar;

/// <summary>The pxar reader on archives our fixture writer made: v1 and split v2, every kind of entry, and hostile variants.</summary>
public sealed class PxarFixtureTests : IDisposable
{
    private readonly TempDir _dir = new();
    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData("1", "root.pxar", 1)]
    [InlineData("2", "root.pxar", 2)]
    [InlineData("2", "root.mpxar", 2)]
    public async Task Every_entry_reads_back_as_written(string id, string name, int version)
    {
        var tree = PxarFixtureTree.Build();
        string store = PxarFixtureTree.WriteDatastore(Path.Combine(_dir.Path, "s"), tree);
        await using var reader = await PxarFixtureTree.OpenAsync(store, id);
        using var file = await FileArchive.OpenAsync(reader, null, name, null, default);
        var archive = file.Archive;
        Assert.Equal(version, archive.Version);
        Assert.Equal(version == 1 ? "root.pxar" : "root.mpxar", file.Name);

        var expected = PxarFixtureTree.Flatten(tree).ToList();
        var actual = new List<PxarEntry>();
        await foreach (var e in archive.WalkAsync(archive.Root, default)) actual.Add(e);
        Assert.Equal(expected.Select(x => x.Path), actual.Select(e => e.Path));
        foreach (var ((path, written), e) in expected.Zip(actual))
        {
            var meta = e;
            var node = written;
            if (node.HardlinkTo is { } target)
            {
                Assert.Equal(PxarEntryType.Hardlink, e.Type);
                Assert.Equal("hello.txt", e.LinkTarget);
                meta = await archive.ResolveHardlinkAsync(e, default);
                node = target;
            }
            else Assert.Equal(node.Type, e.Type);
            Assert.Equal(node.Permissions, meta.Permissions);
            Assert.Equal(node.Uid, meta.Uid);
            Assert.Equal(node.Gid, meta.Gid);
            Assert.Equal(node.MtimeSeconds, meta.MtimeSeconds);
            Assert.Equal(node.MtimeNanos, meta.MtimeNanos);
            if (meta.Type == PxarEntryType.File)
            {
                Assert.Equal(node.Content.Length, meta.Size);
                Assert.Equal(version == 2, meta.ContentInPayloadArchive);
                await using var s = await archive.OpenContentAsync(meta, default);
                Assert.Equal(PxarFixtureTree.Sha(node.Content), Convert.ToHexStringLower(await SHA256.HashDataAsync(s)));
            }
            if (e.Type == PxarEntryType.Symlink) Assert.Equal(node.LinkTarget, e.LinkTarget);
            if (e.Type is PxarEntryType.BlockDevice or PxarEntryType.CharDevice)
                Assert.Equal((node.DeviceMajor, node.DeviceMinor), (e.DeviceMajor, e.DeviceMinor));
            Assert.Equal(node.Xattrs.Select(x => Convert.ToHexString(x.Name) + "=" + Convert.ToHexString(x.Value)),
                meta.Xattrs.Select(x => Convert.ToHexString(x.Name) + "=" + Convert.ToHexString(x.Value)));
            Assert.Equal(node.AclUsers, meta.Acl.Users);
            Assert.Equal(node.AclGroupObj, meta.Acl.GroupObj);
            Assert.Equal(node.FCaps, meta.FCaps);
            Assert.Equal(node.QuotaProjectId, meta.QuotaProjectId);
            Assert.Equal(e, await archive.LookupAsync(path, default), PathComparer.Instance);
        }
    }

    private sealed class PathComparer : IEqualityComparer<PxarEntry?>
    {
        public static readonly PathComparer Instance = new();
        public bool Equals(PxarEntry? x, PxarEntry? y) => x?.Path == y?.Path && x?.ItemOffset == y?.ItemOffset;
        public int GetHashCode(PxarEntry? obj) => obj?.Path.GetHashCode() ?? 0;
    }

    /// <summary>An archive in memory behind a dynamic index of fixed-size chunks, read through the real chunk reader.</summary>
    private static ChunkedArchiveReader InMemory(byte[] data, int chunk)
    {
        var source = new PbsRestore.Tests.Restore.FakeChunkSource();
        var entries = new List<(long End, PbsRestore.Formats.ChunkDigest Digest)>();
        for (int at = 0; at < data.Length; at += chunk)
        {
            int n = Math.Min(chunk, data.Length - at);
            entries.Add((at + n, source.Add(data.AsSpan(at, n).ToArray(), compress: false)));
        }
        var index = PbsRestore.Formats.DynamicIndex.Parse(PbsRestore.Formats.DynamicIndex.Build(Guid.NewGuid(), DateTimeOffset.UnixEpoch, entries));
        return new ChunkedArchiveReader("root.pxar", index, source, null, false, new ChunkedReaderOptions { ReadAhead = 0 });
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task Listing_one_directory_of_a_large_archive_reads_at_most_one_percent_of_its_chunks(int version)
    {
        // 16 MiB of file data in 4 KiB chunks: about 4000 chunks; listing /etc must need a handful.
        var tree = PxarFixtureTree.Build(bigFiles: 16, bigSize: 1 << 20);
        var meta = new MemoryStream();
        var payload = new MemoryStream();
        if (version == 1) PxarWriter.WriteV1(tree, meta);
        else PxarWriter.WriteV2(tree, meta, payload);
        using var m = InMemory(meta.ToArray(), 4096);
        using var p = version == 2 ? InMemory(payload.ToArray(), 4096) : null;
        var archive = await PxarArchive.OpenAsync(m, p, default);
        var etc = await archive.LookupAsync("etc", default);
        var list = await archive.ListAsync(etc!, default);
        Assert.Equal(20, list.Count);
        long chunks = m.Index.Count + (p?.Index.Count ?? 0), fetched = m.ChunksFetched + (p?.ChunksFetched ?? 0);
        Assert.True(chunks > 4000, $"{chunks} chunks");
        Assert.True(fetched * 100 <= chunks, $"{fetched} of {chunks} chunks fetched");
        Assert.True((p?.ChunksFetched ?? 0) <= 1); // only the payload archive's start marker: listing never touches file contents
    }

    // ---- hostile archives (in memory) ----

    private static byte[] V1(PxarNode root)
    {
        var ms = new MemoryStream();
        PxarWriter.WriteV1(root, ms);
        return ms.ToArray();
    }

    private static async Task<List<PxarEntry>> WalkAll(byte[] archive, byte[]? payload = null)
    {
        var a = await PxarArchive.OpenAsync(new MemoryAccessData(archive), payload is null ? null : new MemoryAccessData(payload), default);
        var all = new List<PxarEntry>();
        await foreach (var e in a.WalkAsync(a.Root, default))
        {
            all.Add(e);
            if (e.Type == PxarEntryType.File) await (await a.OpenContentAsync(e, default)).CopyToAsync(Stream.Null);
            if (e.Type == PxarEntryType.Hardlink) await a.ResolveHardlinkAsync(e, default);
        }
        return all;
    }

    [Theory]
    [InlineData(new byte[] { (byte)'a', (byte)'/', (byte)'b' }, "contains '/'")]
    [InlineData(new byte[] { (byte)'.', (byte)'.' }, "illegal file name '..'")]
    [InlineData(new byte[] { (byte)'.' }, "illegal file name '.'")]
    [InlineData(new byte[] { (byte)'/', (byte)'e', (byte)'t', (byte)'c' }, "contains '/'")]
    [InlineData(new byte[] { (byte)'a', 0, (byte)'b' }, "contains NUL")]
    public async Task Names_that_are_not_one_path_component_are_refused_naming_the_directory(byte[] name, string message)
    {
        var root = PxarNode.Dir("", PxarNode.Dir("d", new PxarNode { Name = name, Content = "x"u8.ToArray() }));
        var e = await Assert.ThrowsAsync<PxarFormatException>(() => WalkAll(V1(root)));
        Assert.Equal("PxarBadFileName", e.ErrorId);
        Assert.Equal("d", e.EntryPath);
        Assert.Contains(message, e.Message);
    }

    /// <summary>The root's goodbye table: (offset of the first item, count).</summary>
    private static (int First, int Count) RootTable(byte[] a)
    {
        long size = BinaryPrimitives.ReadInt64LittleEndian(a.AsSpan(a.Length - 8));
        int start = a.Length - (int)size;
        return (start + 16, ((int)size - 16) / 24 - 1);
    }

    [Fact]
    public async Task Goodbye_items_that_point_outside_the_directory_or_overlap_are_refused()
    {
        var root = PxarNode.Dir("", PxarNode.File("a", "1"u8.ToArray()), PxarNode.File("b", "2"u8.ToArray()));
        var good = V1(root);
        Assert.Equal(2, (await WalkAll(good)).Count);

        // Offset beyond the start of the archive.
        var bad = (byte[])good.Clone();
        var (first, count) = RootTable(bad);
        BinaryPrimitives.WriteUInt64LittleEndian(bad.AsSpan(first + 8), (ulong)bad.Length * 2);
        var e = await Assert.ThrowsAsync<PxarFormatException>(() => WalkAll(bad));
        Assert.Equal("PxarBadGoodbye", e.ErrorId);
        Assert.Contains("points outside", e.Message);

        // Both items pointing at the same child (a loop back into one entry): overlap.
        bad = (byte[])good.Clone();
        bad.AsSpan(first, 24).CopyTo(bad.AsSpan(first + 24));
        e = await Assert.ThrowsAsync<PxarFormatException>(() => WalkAll(bad));
        Assert.Equal("PxarBadGoodbye", e.ErrorId);
        Assert.Contains("overlap", e.Message);
        Assert.Equal(2, count);

        // The tail pointing the root's ENTRY outside the archive.
        bad = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(bad.AsSpan(bad.Length - 16), (ulong)bad.Length + 100);
        e = await Assert.ThrowsAsync<PxarFormatException>(() => PxarArchive.OpenAsync(new MemoryAccessData(bad), null, default));
        Assert.Equal("PxarBadGoodbye", e.ErrorId);

        // A table size larger than the archive.
        bad = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(bad.AsSpan(bad.Length - 8), 1UL << 40);
        e = await Assert.ThrowsAsync<PxarFormatException>(() => PxarArchive.OpenAsync(new MemoryAccessData(bad), null, default));
        Assert.Contains("does not fit", e.Message);
    }

    [Fact]
    public async Task A_subdirectory_whose_goodbye_tail_points_back_to_its_parent_is_refused()
    {
        var root = PxarNode.Dir("", PxarNode.Dir("d", PxarNode.File("f", "x"u8.ToArray())));
        var good = V1(root);
        // d's goodbye table ends right before the root's; its tail's offset is 16 bytes before the root's table.
        long rootSize = BinaryPrimitives.ReadInt64LittleEndian(good.AsSpan(good.Length - 8));
        int dEnd = good.Length - (int)rootSize;
        var bad = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(bad.AsSpan(dEnd - 16), (ulong)(dEnd - 50)); // far back: at or before the root
        var e = await Assert.ThrowsAsync<PxarFormatException>(() => WalkAll(bad));
        Assert.Equal("PxarBadGoodbye", e.ErrorId);
        Assert.Equal("d", e.EntryPath);
    }

    [Fact]
    public async Task Sizes_beyond_the_data_are_refused()
    {
        var root = PxarNode.Dir("", PxarNode.File("f", "content"u8.ToArray()));
        var good = V1(root);
        // The PAYLOAD item's size: find its header by type.
        int at = IndexOf(good, BitConverter.GetBytes(PxarFormat.Payload));
        var bad = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(bad.AsSpan(at + 8), 1UL << 50);
        var e = await Assert.ThrowsAsync<PxarFormatException>(() => WalkAll(bad));
        Assert.Equal("PxarBadItemSize", e.ErrorId);
        Assert.Equal("f", e.EntryPath);

        // v2: a PAYLOAD_REF whose size runs past the payload archive.
        var meta = new MemoryStream();
        var payload = new MemoryStream();
        PxarWriter.WriteV2(root, meta, payload);
        var m = meta.ToArray();
        Assert.Single(await WalkAll(m, payload.ToArray()));
        at = IndexOf(m, BitConverter.GetBytes(PxarFormat.PayloadRef));
        BinaryPrimitives.WriteUInt64LittleEndian(m.AsSpan(at + 24), 1UL << 40);
        e = await Assert.ThrowsAsync<PxarFormatException>(() => WalkAll(m, payload.ToArray()));
        Assert.Equal("PxarBadPayloadRef", e.ErrorId);
        Assert.Equal("f", e.EntryPath);

        // v2 without its payload archive: said plainly.
        var missing = await Assert.ThrowsAsync<PbsException>(() => PxarArchive.OpenAsync(new MemoryAccessData(meta.ToArray()), null, default));
        Assert.Equal("PxarPayloadMissing", missing.ErrorId);
    }

    [Fact]
    public async Task A_hardlink_pointing_forward_or_to_no_file_is_refused()
    {
        var target = PxarNode.File("a", "x"u8.ToArray());
        var root = PxarNode.Dir("", target, new PxarNode { Name = "b"u8.ToArray(), HardlinkTo = target });
        var good = V1(root);
        Assert.Equal(2, (await WalkAll(good)).Count);
        int at = IndexOf(good, BitConverter.GetBytes(PxarFormat.Hardlink));
        var bad = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(bad.AsSpan(at + 16), (ulong)bad.Length);
        var e = await Assert.ThrowsAsync<PxarFormatException>(() => WalkAll(bad));
        Assert.Equal("PxarBadHardlink", e.ErrorId);
        Assert.Equal("b", e.EntryPath);

        bad = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(bad.AsSpan(at + 16), 3); // into the middle of nothing
        e = await Assert.ThrowsAsync<PxarFormatException>(() => WalkAll(bad));
        Assert.Equal("PxarBadHardlink", e.ErrorId);
    }

    private static int IndexOf(byte[] hay, byte[] needle)
    {
        int i = hay.AsSpan().IndexOf(needle);
        Assert.True(i >= 0);
        return i;
    }

    [Fact]
    public void SipHash24_matches_the_reference_vectors()
    {
        // Reference vectors of the SipHash paper: key 00..0f, messages 00..(n-1).
        ulong k0 = 0x0706050403020100, k1 = 0x0f0e0d0c0b0a0908;
        Assert.Equal(0x726fdb47dd0e0e31UL, SipHash24.Hash(k0, k1, []));
        Assert.Equal(0xa129ca6149be45e5UL, SipHash24.Hash(k0, k1, Enumerable.Range(0, 15).Select(i => (byte)i).ToArray()));
    }
}
