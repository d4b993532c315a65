using System.Security.Cryptography;
using PbsRestore.Access;
using PbsRestore.Formats;
using PbsRestore.Publishing;
using PbsRestore.Sources.Remote;
using PbsRestore.Sources;
using PbsRestore.Tests.Access;
using PbsRestore.Tests.Fixtures;
using PbsRestore.Tests.Remote;
using PbsRestore.Tests.Restore;
using PbsRestore.Tests.Server;

namespace PbsRestore.Tests.Publishing;

/// <summary>
/// The archive-backed block device the iSCSI target serves: golden disks read back bit-exactly through it (plain,
/// encrypted, namespaced, and a dynamic archive), writes land in the overlay and never in the backup, and a chunk
/// that cannot be read is a medium error naming it, never other bytes.
/// </summary>
public sealed class ArchiveBlockDeviceTests : IDisposable
{
    private readonly TempDir _dir = new();
    public void Dispose()
    {
        foreach (var r in _readers) r.DisposeAsync().AsTask().GetAwaiter().GetResult();
        foreach (var d in _disposables) d.Dispose();
        _dir.Dispose();
    }

    /// <summary>Every index archive of the golden datastore that a disk can be published from.</summary>
    public static TheoryData<string, string> GoldenIndexes()
    {
        var data = new TheoryData<string, string>();
        foreach (var (s, a) in GoldenManifest.Instance.AllArchives())
            if (a.IsFixedIndex || a.IsDynamicIndex) data.Add(s.Path, a.Name);
        return data;
    }

    private static (GoldenSnapshot Snapshot, GoldenArchive Archive) Golden(string snapshot, string archive)
    {
        var s = GoldenManifest.Instance.Snapshots.Single(x => x.Path == snapshot);
        return (s, s.Archives.Single(a => a.Name == archive));
    }

    private async Task<ArchiveBlockDevice> OpenAsync(GoldenSnapshot s, string archive, ArchiveBlockDeviceOptions? options = null)
    {
        var reader = await s.OpenAsync();
        _readers.Add(reader);
        return await ArchiveBlockDevice.OpenAsync(reader, s.OpenKey(), archive,
            options ?? new ArchiveBlockDeviceOptions { OverlayPath = Path.Combine(_dir.Path, $"overlay-{Guid.NewGuid():N}.img") }, default);
    }

    private readonly List<ISnapshotReader> _readers = [];

    private static string Sha(ReadOnlySpan<byte> data) => Convert.ToHexStringLower(SHA256.HashData(data));

    /// <summary>The whole device in reads of varying sizes (block multiples, as an initiator sends).</summary>
    private static async Task<byte[]> ReadAllAsync(IBlockDevice device, int seed)
    {
        var all = new byte[device.Length];
        var rng = new Random(seed);
        long at = 0;
        while (at < device.Length)
        {
            int n = (int)Math.Min(device.Length - at, rng.Next(1, 600) * 512L);
            await device.ReadAsync(at, all.AsMemory((int)at, n), default);
            at += n;
        }
        return all;
    }

    [Theory]
    [MemberData(nameof(GoldenIndexes))]
    public async Task Every_golden_disk_reads_back_bit_exact_and_ends_in_zeros_up_to_a_whole_block(string snapshot, string archive)
    {
        var (s, a) = Golden(snapshot, archive);
        using var device = await OpenAsync(s, a.Name);
        Assert.Equal(0, device.Length % 512);
        Assert.Equal(a.PlaintextSize, device.ArchiveSize);
        Assert.True(device.Length - a.PlaintextSize is >= 0 and < 512);
        var all = await ReadAllAsync(device, 1);
        Assert.Equal(a.PlaintextSha256, Sha(all.AsSpan(0, (int)a.PlaintextSize)));
        Assert.All(all.AsSpan((int)a.PlaintextSize).ToArray(), b => Assert.Equal(0, b));
        Assert.Equal(0, device.MediumErrors);
    }

    [Fact]
    public async Task Read_only_refuses_writes_and_unmaps_as_write_protected_and_creates_no_overlay()
    {
        var (s, a) = Golden("vm/100/2024-05-01T10:00:00Z", "drive-scsi0.img.fidx");
        string overlay = Path.Combine(_dir.Path, "ro.img");
        using var device = await OpenAsync(s, a.Name, new ArchiveBlockDeviceOptions { ReadOnly = true, OverlayPath = overlay });
        Assert.True(device.ReadOnly);
        var e = await Assert.ThrowsAsync<BlockDeviceException>(async () => await device.WriteAsync(0, new byte[512], default));
        Assert.Equal(BlockDeviceError.WriteProtected, e.Error);
        Assert.Contains("read-only", e.Message);
        e = await Assert.ThrowsAsync<BlockDeviceException>(async () => await device.UnmapAsync(0, 4096, default));
        Assert.Equal(BlockDeviceError.WriteProtected, e.Error);
        Assert.False(File.Exists(overlay));
        Assert.Equal(a.PlaintextSha256, Sha((await ReadAllAsync(device, 2)).AsSpan(0, (int)a.PlaintextSize)));
    }

    [Fact]
    public async Task Out_of_range_requests_are_refused_as_such()
    {
        var (s, a) = Golden("vm/100/2024-05-01T10:00:00Z", "drive-virtio1.img.fidx");
        using var device = await OpenAsync(s, a.Name);
        foreach (var (offset, length) in new[] { (device.Length, 512L), (device.Length - 512, 1024L), (-512L, 512L) })
        {
            var e = await Assert.ThrowsAsync<BlockDeviceException>(async () => await device.ReadAsync(offset, new byte[length], default));
            Assert.Equal(BlockDeviceError.OutOfRange, e.Error);
            e = await Assert.ThrowsAsync<BlockDeviceException>(async () => await device.WriteAsync(offset, new byte[length], default));
            Assert.Equal(BlockDeviceError.OutOfRange, e.Error);
        }
    }

    [Fact]
    public async Task Writes_go_to_the_overlay_reads_merge_it_with_the_backup_and_the_backup_is_never_written()
    {
        var (s, a) = Golden("vm/100/2024-05-01T10:00:00Z", "drive-scsi0.img.fidx");
        string overlayPath = Path.Combine(_dir.Path, "overlay.img");
        string chunkDir = TestPaths.GoldenPath("datastore/.chunks");
        var before = Directory.EnumerateFiles(chunkDir, "*", SearchOption.AllDirectories).ToDictionary(f => f, f => File.GetLastWriteTimeUtc(f));
        var expected = (await File.ReadAllBytesAsync(GoldenManifest.FullPath(a.PlaintextPath))).Concat(new byte[512]).ToArray();
        using (var device = await OpenAsync(s, a.Name, new ArchiveBlockDeviceOptions { OverlayPath = overlayPath }))
        {
            Array.Resize(ref expected, (int)device.Length);
            Assert.True(File.Exists(overlayPath));
            var rng = new Random(5);
            // Aligned whole overlay blocks, 512-byte sectors inside a block (read-modify-write), a write across
            // block boundaries, one into the tail past the archive's end, and overwrites of earlier writes.
            var writes = new List<(long Offset, int Length)> { (0, 8192), (4096 + 512, 512), (65536 - 1024, 4096), (device.Length - 512, 512), (12288, 1536) };
            for (int i = 0; i < 40; i++) writes.Add((rng.NextInt64(device.Length / 512 - 64) * 512, rng.Next(1, 64) * 512));
            foreach (var (offset, length) in writes)
            {
                var data = new byte[length];
                rng.NextBytes(data);
                await device.WriteAsync(offset, data, default);
                data.CopyTo(expected, offset);
            }
            // Unmap: whole blocks and ragged ends read as zeros afterwards.
            foreach (var (offset, length) in new[] { (8192L, 8192L), (20480L + 512, 10240L), (1L << 20, 3L << 19) })
            {
                await device.UnmapAsync(offset, length, default);
                expected.AsSpan((int)offset, (int)length).Clear();
            }
            await device.WriteAsync(1L << 20, Enumerable.Repeat((byte)0x5A, 1024).ToArray(), default); // a write after an unmap
            expected.AsSpan(1 << 20, 1024).Fill(0x5A);
            await device.FlushAsync(default);
            Assert.Equal(Sha(expected), Sha(await ReadAllAsync(device, 3)));
            Assert.True(device.Overlay!.WrittenBlocks > 0);
            Assert.True(device.Writes >= writes.Count);
        }
        // Gone at dispose (not kept); the backup's chunks untouched, and a fresh device reads the backup as it was.
        Assert.False(File.Exists(overlayPath));
        Assert.False(File.Exists(WriteOverlay.MapPathFor(overlayPath)));
        Assert.All(before, kv => Assert.Equal(kv.Value, File.GetLastWriteTimeUtc(kv.Key)));
        Assert.Equal(before.Count, Directory.EnumerateFiles(chunkDir, "*", SearchOption.AllDirectories).Count());
        using var again = await OpenAsync(s, a.Name);
        Assert.Equal(a.PlaintextSha256, Sha((await ReadAllAsync(again, 4)).AsSpan(0, (int)a.PlaintextSize)));
    }

    /// <summary>The extents from 0 to the end, as GET LBA STATUS walks them.</summary>
    private static List<(long Start, long Length, bool Deallocated)> Extents(IBlockDevice device)
    {
        var list = new List<(long, long, bool)>();
        for (long at = 0; at < device.Length;)
        {
            var e = device.ExtentAt(at);
            Assert.True(e.Length > 0);
            list.Add((at, e.Length, e.Deallocated));
            at += e.Length;
        }
        return list;
    }

    [Fact]
    public async Task Zero_chunks_and_unmapped_blocks_are_deallocated_and_read_as_zeros_written_ones_are_mapped()
    {
        var (s, a) = Golden("vm/100/2024-05-01T10:00:00Z", "drive-scsi0.img.fidx");
        using var device = await OpenAsync(s, a.Name);
        var index = device.Backing.Index;
        var zeroChunks = Enumerable.Range(0, index.Count).Where(device.Backing.IsZeroChunk).ToList();
        Assert.NotEmpty(zeroChunks); // the golden disk has zero regions, else this test proves nothing
        var all = await ReadAllAsync(device, 7);
        var extents = Extents(device);
        Assert.Equal(device.Length, extents.Sum(e => e.Length));
        // Every deallocated byte reads as zero; every zero chunk lies in a deallocated extent.
        foreach (var (start, length, deallocated) in extents.Where(e => e.Deallocated))
            Assert.True(all.AsSpan((int)start, (int)length).IndexOfAnyExcept((byte)0) < 0, $"deallocated extent at {start} holds data");
        foreach (int c in zeroChunks)
            Assert.True(device.ExtentAt(index.OffsetOf(c)).Deallocated, $"zero chunk {c} reported as mapped");
        long dataChunk = Enumerable.Range(0, index.Count).First(c => !device.Backing.IsZeroChunk(c));
        Assert.False(device.ExtentAt(index.OffsetOf((int)dataChunk)).Deallocated);

        // A write into a zero chunk maps its block; an unmap of data deallocates whole blocks.
        long zeroAt = index.OffsetOf(zeroChunks[0]) + 8192;
        await device.WriteAsync(zeroAt, Enumerable.Repeat((byte)1, 4096).ToArray(), default);
        Assert.False(device.ExtentAt(zeroAt).Deallocated);
        Assert.Equal(4096, device.ExtentAt(zeroAt).Length);
        Assert.True(device.ExtentAt(zeroAt + 4096).Deallocated);
        long dataAt = index.OffsetOf((int)dataChunk);
        await device.UnmapAsync(dataAt, 16384, default);
        Assert.Equal(new BlockExtent(16384, true), device.ExtentAt(dataAt));
        Assert.False(device.ExtentAt(dataAt + 16384).Deallocated);
        Assert.Equal(device.Length, Extents(device).Sum(e => e.Length));
    }

    [Fact]
    public async Task A_kept_overlay_is_published_again_with_its_writes_and_refused_for_another_archive()
    {
        var (s, a) = Golden("vm/100/2024-05-01T10:00:00Z", "drive-scsi0.img.fidx");
        string overlayPath = Path.Combine(_dir.Path, "kept.img");
        byte[] written;
        using (var device = await OpenAsync(s, a.Name, new ArchiveBlockDeviceOptions { OverlayPath = overlayPath }))
        {
            await device.WriteAsync(4096, Enumerable.Repeat((byte)7, 4096).ToArray(), default);
            await device.WriteAsync(512, new byte[512] /* zeros written: must stay zeros, not show the backup */, default);
            await device.UnmapAsync(65536, 65536, default);
            device.KeepOverlay = true;
            written = await ReadAllAsync(device, 6);
        }
        Assert.True(File.Exists(overlayPath));
        Assert.True(File.Exists(WriteOverlay.MapPathFor(overlayPath)));
        using (var device = await OpenAsync(s, a.Name, new ArchiveBlockDeviceOptions { OverlayPath = overlayPath }))
        {
            Assert.False(device.Overlay!.Created);
            Assert.Equal(Sha(written), Sha(await ReadAllAsync(device, 7)));
        }
        Assert.False(File.Exists(overlayPath)); // published again without keeping: removed now

        // A kept overlay belongs to its archive: another disk refuses it, and a file that is no overlay is refused.
        using (var device = await OpenAsync(s, a.Name, new ArchiveBlockDeviceOptions { OverlayPath = overlayPath, KeepOverlay = true }))
            await device.WriteAsync(0, new byte[4096], default);
        var other = Golden("vm/100/2024-05-01T10:00:00Z", "drive-virtio1.img.fidx");
        var e = await Assert.ThrowsAsync<PbsException>(() => OpenAsync(other.Snapshot, other.Archive.Name, new ArchiveBlockDeviceOptions { OverlayPath = overlayPath }));
        Assert.Equal("OverlayMismatch", e.ErrorId);
        Assert.Contains("drive-scsi0.img", e.Message);
        string plain = Path.Combine(_dir.Path, "not-an-overlay.img");
        await File.WriteAllBytesAsync(plain, new byte[4096]);
        e = await Assert.ThrowsAsync<PbsException>(() => OpenAsync(s, a.Name, new ArchiveBlockDeviceOptions { OverlayPath = plain }));
        Assert.Equal("OverlayNotAnOverlay", e.ErrorId);
        Assert.Equal(4096, new FileInfo(plain).Length); // left as it was
    }

    [Fact]
    public async Task Four_readers_of_one_disk_and_four_disks_at_once_are_all_bit_exact()
    {
        var disks = new[]
        {
            Golden("vm/100/2024-05-01T10:00:00Z", "drive-scsi0.img.fidx"), Golden("vm/100/2024-05-01T10:00:00Z", "drive-virtio1.img.fidx"),
            Golden("vm/101/2024-05-01T10:05:00Z", "drive-scsi0.img.fidx"), Golden("ns/dev/vm/102/2024-05-01T10:15:00Z", "drive-scsi0.img.fidx"),
        };
        // Same disk: a small cache (evictions while others read), four random readers and a sequential one.
        var (s0, a0) = disks[0];
        var plain = await File.ReadAllBytesAsync(GoldenManifest.FullPath(a0.PlaintextPath));
        using (var device = await OpenAsync(s0, a0.Name, new ArchiveBlockDeviceOptions { CacheBytes = 3 * 65536, ReadOnly = true }))
        {
            var readers = Enumerable.Range(0, 4).Select(i => Task.Run(async () =>
            {
                var rng = new Random(100 + i);
                var buf = new byte[256 << 10];
                for (int r = 0; r < 200; r++)
                {
                    long offset = rng.NextInt64(plain.Length / 512) * 512;
                    int n = (int)Math.Min(rng.Next(1, 512) * 512L, plain.Length - offset);
                    await device.ReadAsync(offset, buf.AsMemory(0, n), default);
                    Assert.True(plain.AsSpan((int)offset, n).SequenceEqual(buf.AsSpan(0, n)), $"reader {i}: bytes differ at {offset}+{n}");
                }
            })).Append(Task.Run(async () => Assert.Equal(a0.PlaintextSha256, Sha((await ReadAllAsync(device, 9)).AsSpan(0, plain.Length)))));
            await Task.WhenAll(readers);
        }
        // Different disks (plain, encrypted, namespaced), each read whole by its own task at the same time.
        var devices = await Task.WhenAll(disks.Select(d => OpenAsync(d.Snapshot, d.Archive.Name)));
        try
        {
            var hashes = await Task.WhenAll(devices.Select((d, i) => Task.Run(async () => Sha((await ReadAllAsync(d, 20 + i)).AsSpan(0, (int)d.ArchiveSize)))));
            Assert.Equal(disks.Select(d => d.Archive.PlaintextSha256), hashes);
        }
        finally
        {
            foreach (var d in devices) d.Dispose();
        }
    }

    [Fact]
    public async Task Only_the_backups_bytes_are_lent_written_and_unmapped_blocks_and_the_tail_are_read()
    {
        var (s, a) = Golden("vm/100/2024-05-01T10:00:00Z", "drive-scsi0.img.fidx");
        var plain = await File.ReadAllBytesAsync(GoldenManifest.FullPath(a.PlaintextPath));
        using var device = await OpenAsync(s, a.Name, new ArchiveBlockDeviceOptions { OverlayPath = Path.Combine(_dir.Path, "o.img") });
        int block = device.Overlay!.BlockSize;
        using (var lease = await device.LeaseAsync(100, 4096, default))
            Assert.True(plain.AsSpan(100, 4096).SequenceEqual(lease.Data.Span));
        // A written block and an unmapped one are not lent; a lease before them stops where they start.
        await device.WriteAsync(4L * block, new byte[block], default);
        await device.UnmapAsync(6L * block, block, default);
        Assert.True((await device.LeaseAsync(4L * block + 512, 512, default)).IsEmpty);
        Assert.True((await device.LeaseAsync(6L * block, 512, default)).IsEmpty);
        using (var lease = await device.LeaseAsync(2L * block + 512, int.MaxValue, default))
        {
            Assert.Equal(2L * block - 512, lease.Data.Length);
            Assert.True(plain.AsSpan(2 * block + 512, lease.Data.Length).SequenceEqual(lease.Data.Span));
        }
        using (var lease = await device.LeaseAsync(5L * block, int.MaxValue, default))
            Assert.Equal(block, lease.Data.Length); // block 5 only: 6 is unmapped
        // Whole blocks only: the archive's last partial block (zeros after its end) and what follows are not lent, a
        // lease up to it stops a block short of the end; out of range is refused.
        Assert.NotEqual(0, a.PlaintextSize % 512);
        long lastBlock = a.PlaintextSize / 512 * 512;
        Assert.True((await device.LeaseAsync(lastBlock, 512, default)).IsEmpty);
        Assert.True((await device.LeaseAsync(a.PlaintextSize, 512, default)).IsEmpty);
        using (var lease = await device.LeaseAsync(lastBlock - 1024, int.MaxValue, default))
            Assert.Equal(1024, lease.Data.Length);
        var e = await Assert.ThrowsAsync<BlockDeviceException>(async () => await device.LeaseAsync(device.Length + 512, 512, default));
        Assert.Equal(BlockDeviceError.OutOfRange, e.Error);
    }

    [Fact]
    public async Task A_chunk_that_fails_its_check_is_a_medium_error_naming_digest_and_offset_and_no_bytes_are_served()
    {
        var source = new FakeChunkSource();
        const int size = 64 << 10;
        var good = new byte[size];
        new Random(1).NextBytes(good);
        var bad = new byte[size];
        new Random(2).NextBytes(bad);
        var digests = new List<ChunkDigest> { source.Add(good), source.Add(bad) };
        var index = FixedIndex.Parse(FixedIndex.Build(Guid.NewGuid(), DateTimeOffset.UnixEpoch, 2L * size, size, digests));
        using (var enc = new BlobEncoder()) source.Replace(digests[1], enc.Encode(good, null, true)); // a wrong blob under chunk 1's name
        using var device = new ArchiveBlockDevice("vm/1/disk.img", new ChunkedArchiveReader("disk.img", index, source, null, false), new ArchiveBlockDeviceOptions { ReadOnly = true });
        var buf = new byte[2 * size];
        buf.AsSpan().Fill(0xEE);
        var e = await Assert.ThrowsAsync<BlockDeviceException>(async () => await device.ReadAsync(0, buf, default));
        Assert.Equal(BlockDeviceError.Medium, e.Error);
        Assert.Contains(digests[1].ToString(), e.Message);
        Assert.Contains($"offset {size}", e.Message);
        Assert.Contains("vm/1/disk.img", e.Message);
        Assert.All(buf, b => Assert.Equal(0, b)); // not even the good chunk's bytes of that failed read
        Assert.Equal(1, device.MediumErrors);
        // Lent instead of read: the same medium error, and nothing lent.
        e = await Assert.ThrowsAsync<BlockDeviceException>(async () => await device.LeaseAsync(size, size, default));
        Assert.Equal(BlockDeviceError.Medium, e.Error);
        Assert.Contains(digests[1].ToString(), e.Message);
        Assert.Equal(2, device.MediumErrors);
        // The good chunk alone still reads.
        await device.ReadAsync(0, buf.AsMemory(0, size), default);
        Assert.True(good.AsSpan().SequenceEqual(buf.AsSpan(0, size)));
    }

    [Fact]
    public async Task The_cache_is_bounded_by_bytes()
    {
        var (s, a) = Golden("vm/100/2024-05-01T10:00:00Z", "drive-scsi0.img.fidx");
        await using var reader = await s.OpenAsync();
        var index = await (await OpenedSnapshot.OpenArchiveAsync(reader, null, a.Name, default)).ReadIndexAsync(default);
        var counting = new CountingChunkSource(reader.Chunks);
        using var access = new ChunkedArchiveReader(a.Name, index, counting, null, false, new ChunkedReaderOptions { CacheBytes = 5 * 65536 + 100, ReadAhead = 0 });
        // Five chunks' worth: one fetch buffer (no read-ahead) and four decoded chunks.
        Assert.Equal(4, access.CacheCapacity);
        // Distinct contents: duplicates (one digest at several positions) share one cached chunk.
        var nonZero = a.Chunks.Where(c => !c.IsZero).DistinctBy(c => c.Digest).Select(c => c.Index).ToList();
        Assert.True(nonZero.Count > 6);
        // Touch five distinct chunks, then the first again: it was evicted (5 > 4) and is fetched a second time;
        // the fifth is still cached.
        foreach (var c in nonZero.Take(5)) await access.ReadAtAsync(index.OffsetOf(c), new byte[1], default);
        int fetched = counting.Total;
        await access.ReadAtAsync(index.OffsetOf(nonZero[4]), new byte[1], default);
        Assert.Equal(fetched, counting.Total);
        await access.ReadAtAsync(index.OffsetOf(nonZero[0]), new byte[1], default);
        Assert.Equal(fetched + 1, counting.Total);
        Assert.Equal(1, new ChunkedArchiveReader(a.Name, index, counting, null, false, new ChunkedReaderOptions { CacheBytes = 1 }).CacheCapacity);
    }

    [Fact]
    public async Task Out_of_order_requests_of_a_sequential_reader_still_fetch_ahead_several_chunks_at_once()
    {
        var (s, a) = Golden("vm/100/2024-05-01T10:00:00Z", "drive-scsi0.img.fidx");
        await using var reader = await s.OpenAsync();
        var index = await (await OpenedSnapshot.OpenArchiveAsync(reader, null, a.Name, default)).ReadIndexAsync(default);
        var counting = new CountingChunkSource(reader.Chunks, delayMs: 200);
        using var access = new ChunkedArchiveReader(a.Name, index, counting, null, false, new ChunkedReaderOptions { ReadAhead = 4 });
        // 1 then 0 (an initiator's two requests crossing), then 2: the reader is sequential from chunk 1 on.
        await access.ReadAtAsync(index.OffsetOf(1), new byte[1], default);
        await access.ReadAtAsync(index.OffsetOf(0), new byte[1], default);
        await access.ReadAtAsync(index.OffsetOf(2), new byte[1], default);
        // The chunks ahead are all requested at once (each fetch takes 200 ms; they overlap instead of queueing).
        var zero = a.Chunks.Where(c => c.IsZero).Select(c => c.Index).ToHashSet();
        var wanted = Enumerable.Range(0, 7).Where(c => !zero.Contains(c)).Select(c => index.DigestAt(c)).ToHashSet();
        for (int i = 0; i < 50 && !wanted.IsSubsetOf(counting.Reads.Keys); i++) await Task.Delay(20);
        Assert.True(wanted.IsSubsetOf(counting.Reads.Keys), "chunks 3..6 were fetched ahead");
    }

    /// <summary>Through our PBS server over loopback, with the connections cut again and again: reads recover.</summary>
    [Fact]
    [Trait("Category", "Server")]
    public async Task Lost_connections_while_published_are_recovered_and_reads_stay_bit_exact()
    {
        var (_, a) = Golden("vm/100/2024-05-01T10:00:00Z", "drive-scsi0.img.fidx");
        await using var server = await TestServer.StartAsync(["--datastore", "golden=" + TestPaths.GoldenPath("datastore"), "--token", TestServer.DefaultToken]);
        await using var proxy = new TcpCutProxy(server.Port, 200_000, 600_000, seed: 3);
        using var device = await OpenRemoteAsync(proxy.Port, server.Fingerprint, a.Name);
        var all = await ReadAllAsync(device, 11);
        Assert.Equal(a.PlaintextSha256, Sha(all.AsSpan(0, (int)a.PlaintextSize)));
        Assert.True(proxy.Cuts > 0, "the proxy cut connections while the disk was read");
    }

    [Fact]
    [Trait("Category", "Server")]
    public async Task A_chunk_the_server_keeps_failing_is_a_medium_error_after_the_retries_and_reads_elsewhere_go_on()
    {
        var (_, a) = Golden("vm/100/2024-05-01T10:00:00Z", "drive-scsi0.img.fidx");
        var victim = a.Chunks.First(c => !c.IsZero && c.Offset > 0);
        await using var server = await TestServer.StartAsync(["--datastore", "golden=" + TestPaths.GoldenPath("datastore"), "--token", TestServer.DefaultToken,
            "--chunk-status", $"{victim.Digest}=500"]);
        using var device = await OpenRemoteAsync(server.Port, server.Fingerprint, a.Name);
        var buf = new byte[victim.Length];
        var e = await Assert.ThrowsAsync<BlockDeviceException>(async () => await device.ReadAsync(victim.Offset, buf, default));
        Assert.Equal(BlockDeviceError.Medium, e.Error);
        Assert.Contains(victim.Digest, e.Message);
        Assert.Contains($"offset {victim.Offset}", e.Message);
        Assert.All(buf, b => Assert.Equal(0, b));
        var first = a.Chunks.First(c => c.Digest != victim.Digest);
        var plain = await File.ReadAllBytesAsync(GoldenManifest.FullPath(a.PlaintextPath));
        var ok = new byte[first.Length];
        await device.ReadAsync(first.Offset, ok, default);
        Assert.True(plain.AsSpan((int)first.Offset, first.Length).SequenceEqual(ok));
    }

    private async Task<ArchiveBlockDevice> OpenRemoteAsync(int port, string fingerprint, string archive)
    {
        var client = new PbsClient(PbsConnectionSettings.Resolve($"{TestServer.DefaultTokenId}@127.0.0.1:{port}:golden", fingerprint,
            TestServer.DefaultTokenSecret, _ => null));
        var remote = new RemoteDatastore(client, 2, ownsClient: true);
        _disposables.Add(remote);
        var reader = await remote.OpenSnapshotAsync(GoldenManifest.Instance.Snapshot("vm/100/2024-05-01T10:00:00Z").Reference, default);
        _readers.Add(reader);
        return await ArchiveBlockDevice.OpenAsync(reader, null, archive, new ArchiveBlockDeviceOptions { ReadOnly = true }, default);
    }

    private readonly List<IDisposable> _disposables = [];
}
