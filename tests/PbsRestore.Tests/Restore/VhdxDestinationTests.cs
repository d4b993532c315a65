using System.Security.Cryptography;
using PbsRestore.Formats;
using PbsRestore.DiskImages;
using PbsRestore.Restore;
using PbsRestore.Tests.Fixtures;
using PbsRestore.Tests.Formats.DiskImages;
using PbsRestore.Destinations;
using static PbsRestore.Tests.Formats.DiskImages.DiskImageTestSupport;

namespace PbsRestore.Tests.Restore;

/// <summary>VHDX output, read back by qemu-img (check, info, map, convert to raw).</summary>
public sealed class VhdxDestinationTests : IDisposable
{
    private const int MiB = 1 << 20;
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    public static TheoryData<string, string> GoldenArchives() => GoldenIndexArchives();

    [Theory]
    [MemberData(nameof(GoldenArchives))]
    public async Task Every_golden_archive_restores_into_a_vhdx_that_qemu_reads_bit_exactly(string snapshotPath, string archiveName)
    {
        var golden = GoldenManifest.Instance.Snapshot(snapshotPath).Archives.Single(a => a.Name == archiveName);
        string dest = Path.Combine(_dir.Path, archiveName + ".vhdx");
        var snapshot = GoldenManifest.Instance.Snapshot(snapshotPath);
        await using var reader = await snapshot.OpenAsync();
        var index = await RestoreAsync(reader, snapshot.OpenKey(), ArchiveNames.DisplayName(archiveName),
            ix => VhdxDestination.Create(dest, ix.Size, ix.MaxChunkSize, force: false));

        Assert.False(File.Exists(DestinationFile.PartialPathFor(dest)));
        long padded = VhdxLayout.RoundVirtualSize(golden.PlaintextSize);
        AssertReadsBack(dest, "vhdx", golden.PlaintextSize, padded, golden.PlaintextSha256);

        // A block is allocated exactly when a chunk that is not a zero chunk (of a fixed index) overlaps it.
        var (meta, layout, payload, bitmaps) = ReadVhdx(dest);
        Assert.Equal(padded, meta.VirtualSize);
        Assert.Equal(VhdxLayout.ClampBlockSize(index.MaxChunkSize), meta.BlockSize);
        Assert.All(bitmaps, e => Assert.Equal(0UL, e));
        for (long b = 0; b < payload.Length; b++)
        {
            long start = b * meta.BlockSize, end = start + meta.BlockSize;
            bool data = golden.Chunks.Any(c => c.Offset < end && c.End > start && !(golden.IsFixedIndex && c.IsZero));
            Assert.Equal(data ? VhdxBlockState.FullyPresent : VhdxBlockState.NotPresent, VhdxLayout.BatEntryState(payload[b]));
            if (data) Assert.True(VhdxLayout.BatEntryOffset(payload[b]) >= layout.FirstPayloadOffset);
        }
    }

    [Fact]
    public async Task Concurrent_unaligned_writes_spanning_blocks_read_back_exactly()
    {
        // 1 MiB blocks; writes larger than a block, across block boundaries, partial blocks, a size not a multiple of 512.
        const long size = 13L * MiB + 1000;
        var expected = new byte[VhdxLayout.RoundVirtualSize(size)];
        var writes = new List<(long Offset, int Length)>
        {
            (0, 4 * MiB),                 // four whole blocks in one write
            (5L * MiB - 100, 300),        // straddles blocks 4 and 5
            (6L * MiB + 12345, 2 * MiB),  // starts mid-block, spans three blocks
            (9L * MiB + 4096, 512),       // a small write alone in block 9
            (size - 777, 777),            // the end of the disk, in the last (partial) block
        };
        var rng = new Random(5);
        foreach (var (o, l) in writes) rng.NextBytes(expected.AsSpan((int)o, l));
        string dest = Path.Combine(_dir.Path, "writes.vhdx");
        await using (var vhdx = VhdxDestination.Create(dest, size, MiB, force: false))
        {
            Assert.Equal(expected.Length, vhdx.VirtualSize);
            Parallel.ForEach(writes, new ParallelOptions { MaxDegreeOfParallelism = 4 }, w => vhdx.Write(w.Offset, expected.AsSpan((int)w.Offset, w.Length)));
            Assert.Throws<ArgumentOutOfRangeException>(() => vhdx.Write(expected.Length - 10, new byte[11]));
            Assert.Throws<ArgumentOutOfRangeException>(() => vhdx.Write(-1, new byte[1]));
            vhdx.Commit(false);
        }
        AssertReadsBack(dest, "vhdx", expected.Length, expected.Length, Convert.ToHexStringLower(SHA256.HashData(expected)));
        var (_, _, payload, _) = ReadVhdx(dest);
        var present = Enumerable.Range(0, payload.Length).Where(b => VhdxLayout.BatEntryState(payload[b]) == VhdxBlockState.FullyPresent);
        Assert.Equal([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 13], present);
        // Blocks are handed out one after another from the end of the structures: no gaps, no overlaps.
        var offsets = payload.Where(e => e != 0).Select(VhdxLayout.BatEntryOffset).Order().ToList();
        Assert.Equal(Enumerable.Range(0, 11).Select(i => 4L * MiB + i * (long)MiB), offsets);
    }

    [Fact]
    public async Task Every_flush_leaves_a_valid_vhdx()
    {
        string dest = Path.Combine(_dir.Path, "flushes.vhdx");
        var expected = new byte[8 * MiB];
        var rng = new Random(9);
        await using var vhdx = VhdxDestination.Create(dest, expected.Length, 2 * MiB, force: false);
        string sha0 = Convert.ToHexStringLower(SHA256.HashData(expected));
        vhdx.Flush();
        AssertReadsBack(vhdx.PartialPath, "vhdx", expected.Length, expected.Length, sha0);
        for (int round = 0; round < 3; round++)
        {
            int at = round * 3 * MiB;
            rng.NextBytes(expected.AsSpan(at, MiB));
            vhdx.Write(at, expected.AsSpan(at, MiB));
            vhdx.Flush();
            AssertReadsBack(vhdx.PartialPath, "vhdx", expected.Length, expected.Length, Convert.ToHexStringLower(SHA256.HashData(expected)));
        }
        // Each flush wrote the header slot that was not current: 2 (create), then 3, 4, 5, 6 alternating.
        var section = new byte[VhdxLayout.HeaderSectionSize];
        using (var f = new FileStream(vhdx.PartialPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite)) f.ReadExactly(section);
        var (header, slot, _) = VhdxLayout.ParseHeaderSection(section);
        Assert.Equal(6UL, header.SequenceNumber);
        Assert.Equal(1, slot);
        Assert.Equal(5UL, VhdxHeader.TryParse(section.AsSpan((int)VhdxLayout.Header1Offset))!.SequenceNumber);
    }

    [Fact]
    public async Task Open_partial_continues_after_a_flush_and_the_result_is_bit_exact()
    {
        const long size = 12L * MiB + 512;
        const int quarter = MiB / 4;
        var expected = new byte[size];
        var rng = new Random(21);
        // Data in quarter-MiB "chunks"; block 7 holds data only in its second quarter.
        var chunks = Enumerable.Range(0, (int)(size / quarter) + 1)
            .Select(i => (Offset: (long)i * quarter, Length: (int)Math.Min(quarter, size - (long)i * quarter)))
            .Where(c => c.Length > 0 && c.Offset / MiB != 3 && (c.Offset / MiB != 7 || c.Offset == 7L * MiB + quarter))
            .ToList();
        foreach (var (o, l) in chunks) rng.NextBytes(expected.AsSpan((int)o, l));
        var firstRun = chunks.Where(c => c.Offset < 6L * MiB).ToList();
        var secondRun = chunks.Except(firstRun).ToList();

        string dest = Path.Combine(_dir.Path, "resume.vhdx");
        await using (var run1 = VhdxDestination.Create(dest, size, MiB, force: false))
        {
            foreach (var (o, l) in firstRun) run1.Write(o, expected.AsSpan((int)o, l));
            run1.Flush();
            // Written after the checkpoint, then the run stops: junk where the image has zeros (block 7's first
            // quarter), and a block the resume writes again. Neither is in the flushed BAT.
            run1.Write(7L * MiB, Enumerable.Repeat((byte)0xEE, quarter).ToArray());
            run1.Write(8L * MiB, expected.AsSpan(8 * MiB, quarter));
            run1.KeepPartial = true;
        }
        Assert.False(File.Exists(dest));
        Assert.True(File.Exists(DestinationFile.PartialPathFor(dest)));

        await using (var run2 = VhdxDestination.OpenPartial(dest, size, MiB))
        {
            Assert.Equal(VhdxLayout.RoundVirtualSize(size), run2.VirtualSize);
            // The file was cut back to the blocks the flushed BAT knows (blocks 0-2 and 4-5).
            Assert.Equal(4L * MiB + 5 * MiB, new FileInfo(run2.PartialPath).Length);
            foreach (var (o, l) in secondRun) run2.Write(o, expected.AsSpan((int)o, l));
            run2.Commit(false);
        }
        AssertReadsBack(dest, "vhdx", size, size, Convert.ToHexStringLower(SHA256.HashData(expected)));
        var (_, _, payload, _) = ReadVhdx(dest);
        Assert.Equal(VhdxBlockState.NotPresent, VhdxLayout.BatEntryState(payload[3]));
        Assert.Equal(12, payload.Count(e => VhdxLayout.BatEntryState(e) == VhdxBlockState.FullyPresent));
    }

    [Fact]
    public async Task Open_partial_refuses_a_different_disk()
    {
        string dest = Path.Combine(_dir.Path, "other.vhdx");
        await using (var run1 = VhdxDestination.Create(dest, 10L * MiB, 4 * MiB, force: false))
        {
            run1.Write(0, new byte[] { 1, 2, 3 });
            run1.Flush();
            run1.KeepPartial = true;
        }
        var e = Assert.Throws<PbsException>(() => VhdxDestination.OpenPartial(dest, 11L * MiB, 4 * MiB));
        Assert.Equal("ResumeStateMismatch", e.ErrorId);
        Assert.Contains("10485760-byte disk", e.Message);
        Assert.Equal("ResumeStateMismatch", Assert.Throws<PbsException>(() => VhdxDestination.OpenPartial(dest, 10L * MiB, 8 * MiB)).ErrorId);
        // Same disk: accepted (the same size after rounding to 512, the same block size after clamping).
        await using (var ok = VhdxDestination.OpenPartial(dest, 10L * MiB - 100, 3 * MiB)) { }
        Assert.False(File.Exists(DestinationFile.PartialPathFor(dest)));

        var missing = Assert.Throws<PbsNotFoundException>(() => VhdxDestination.OpenPartial(dest, 10L * MiB, 4 * MiB));
        Assert.Equal("PartialFileNotFound", missing.ErrorId);
    }

    [Fact]
    public void Open_partial_refuses_a_vhdx_written_by_qemu_img()
    {
        // Reading other programs' VHDX files is no goal; such a file must be refused cleanly, not misread.
        string dest = Path.Combine(_dir.Path, "qemu.vhdx");
        var r = QemuImg.Run("create", "-q", "-f", "vhdx", "-o", "block_size=4M", DestinationFile.PartialPathFor(dest), "16M");
        Assert.True(r.Exit == 0, r.Err);
        var e = Assert.Throws<PbsException>(() => VhdxDestination.OpenPartial(dest, 16L * MiB, 4 * MiB));
        Assert.Equal("ResumeStateMismatch", e.ErrorId);
        File.WriteAllBytes(DestinationFile.PartialPathFor(dest), new byte[100]);
        Assert.Equal("ResumeStateMismatch", Assert.Throws<PbsException>(() => VhdxDestination.OpenPartial(dest, 16L * MiB, 4 * MiB)).ErrorId);
    }

    [Fact]
    public async Task Uncommitted_partial_is_deleted_and_existing_destination_needs_force()
    {
        string dest = Path.Combine(_dir.Path, "x.vhdx");
        await using (var v = VhdxDestination.Create(dest, MiB, MiB, force: false))
        {
            Assert.True(File.Exists(v.PartialPath));
            v.Write(0, new byte[10]);
        }
        Assert.False(File.Exists(DestinationFile.PartialPathFor(dest)));
        Assert.False(File.Exists(dest));

        File.WriteAllText(dest, "keep me");
        Assert.Equal("DestinationExists", Assert.Throws<PbsException>(() => VhdxDestination.Create(dest, MiB, MiB, force: false)).ErrorId);
        Assert.Equal("keep me", File.ReadAllText(dest));
        await using (var v = VhdxDestination.Create(dest, MiB, MiB, force: true)) v.Commit(overwrite: true);
        QemuImg.Check(dest, "vhdx");
    }
}

/// <summary>The generated 2 GiB image (zero, duplicate, random and compressible chunks) through the real pipeline into a VHDX.</summary>
[Collection(nameof(GeneratedImageCollection))]
public sealed class VhdxGeneratedImageTests(GeneratedImageFixture image)
{
    [Fact]
    public async Task Two_GiB_image_restores_bit_exactly_and_zero_chunks_stay_unallocated()
    {
        string dest = Path.Combine(image.WorkDir, "2g.vhdx");
        try
        {
            await using var reader = await image.OpenAsync();
            var index = await RestoreAsync(reader, null, GeneratedImageFixture.Archive,
                ix => VhdxDestination.Create(dest, ix.Size, ix.MaxChunkSize, force: false));
            AssertReadsBack(dest, "vhdx", GeneratedImageFixture.Size, GeneratedImageFixture.Size, image.Sha256);

            // One 4 MiB block per 4 MiB chunk: a block is NOT_PRESENT exactly where the chunk is the zero chunk.
            var zero = ChunkVerifier.ZeroChunkDigest(GeneratedImageFixture.ChunkSize, null);
            var (meta, layout, payload, _) = ReadVhdx(dest);
            Assert.Equal(GeneratedImageFixture.ChunkSize, meta.BlockSize);
            Assert.Equal(index.Count, payload.Length);
            int zeros = 0;
            for (int i = 0; i < index.Count; i++)
            {
                bool isZero = index.DigestAt(i) == zero;
                zeros += isZero ? 1 : 0;
                Assert.Equal(isZero ? VhdxBlockState.NotPresent : VhdxBlockState.FullyPresent, VhdxLayout.BatEntryState(payload[i]));
            }
            Assert.Equal(index.Count * 3 / 8, zeros);
            // The file holds the structures and the data blocks, nothing for the zero chunks. (qemu-img map cannot
            // show this: QEMU's VHDX driver reports every range as data.)
            long dataBytes = (long)(index.Count - zeros) * GeneratedImageFixture.ChunkSize;
            Assert.Equal(layout.FirstPayloadOffset + dataBytes, new FileInfo(dest).Length);
        }
        finally
        {
            File.Delete(dest);
        }
    }
}
