using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using PbsRestore.Platform;
using PbsRestore.Destinations;
using PbsRestore.Restore;
using PbsRestore.Tests.Fixtures;
using PbsRestore.Tests.Restore;

namespace PbsRestore.Tests.Platform;

/// <summary>
/// A fact that needs unbuffered writes in the temp folder (O_DIRECT on Linux): skipped, with the reason, where the
/// temp folder's file system refuses them (decided at discovery by opening a writer there).
/// </summary>
public sealed class UnbufferedFactAttribute : FactAttribute
{
    private static readonly Lazy<string?> Reason = new(() =>
    {
        if (!OperatingSystem.IsLinux()) return "unbuffered writes are exercised on Linux only (Windows: not run here)";
        string path = Path.Combine(Path.GetTempPath(), $"pbsrestore-direct-probe-{Environment.ProcessId}");
        try
        {
            using var fs = new FileStream(path, FileMode.Create, FileAccess.ReadWrite, FileShare.ReadWrite, 0);
            using var w = UnbufferedFileWriter.Open(fs, path);
            return w.IsUnbuffered ? null : $"the temp folder refuses unbuffered writes: {w.Mode}";
        }
        finally
        {
            File.Delete(path);
        }
    });

    public UnbufferedFactAttribute()
    {
        if (Reason.Value is { } why) Skip = why;
    }
}

/// <summary>A fact that mounts a ramfs (a file system without O_DIRECT): needs Linux, root and mount; skipped visibly otherwise.</summary>
public sealed class RamfsFactAttribute : FactAttribute
{
    private static readonly Lazy<string?> Reason = new(() =>
    {
        if (!OperatingSystem.IsLinux()) return "needs Linux (ramfs)";
        if (Environment.UserName != "root") return "needs root to mount a ramfs";
        string probe = Directory.CreateTempSubdirectory("pbsrestore-ramfs-probe-").FullName;
        try
        {
            var (code, _, err) = LoopDevice.Run("mount", ["-t", "ramfs", "ramfs", probe]);
            if (code != 0) return $"mount -t ramfs failed: {err.Trim()}";
            LoopDevice.Run("umount", [probe]);
            return null;
        }
        finally
        {
            Directory.Delete(probe);
        }
    });

    public RamfsFactAttribute()
    {
        if (Reason.Value is { } why) Skip = why;
    }
}

/// <summary>
/// The write path's seam (issue 14): aligned middles go out unbuffered, unaligned heads and tails through the
/// ordinary handle, unaligned memory through a bounce buffer, and a file system that refuses O_DIRECT falls back to
/// buffered writes and says so. Every test reads the file back and compares bytes. (One class: the tests that set
/// PBSRESTORE_WRITE_MODE must not run beside the ones that expect unbuffered writes.)
/// </summary>
public sealed class UnbufferedFileWriterTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static byte[] Random(int length, int seed)
    {
        var b = new byte[length];
        new Random(seed).NextBytes(b);
        return b;
    }

    private static FileStream Create(string path, long length)
    {
        var fs = new FileStream(path, FileMode.Create, FileAccess.ReadWrite, FileShare.ReadWrite, 0);
        fs.SetLength(length);
        return fs;
    }

    [UnbufferedFact]
    public void Whole_chunks_from_aligned_memory_go_out_unbuffered_without_a_copy()
    {
        string path = Path.Combine(_dir.Path, "aligned.img");
        const int chunk = 64 << 10;
        var expected = Random(3 * chunk, 1);
        var pinned = GC.AllocateUninitializedArray<byte>(chunk + 4096, pinned: true);
        int skip = (int)((4096 - Marshal.UnsafeAddrOfPinnedArrayElement(pinned, 0) % 4096) % 4096);
        using (var fs = Create(path, 3 * chunk))
        using (var w = UnbufferedFileWriter.Open(fs, path))
        {
            Assert.True(w.IsUnbuffered, w.Mode);
            Assert.StartsWith("unbuffered (O_DIRECT", w.Mode);
            Assert.Equal(0, w.Alignment % 4096);
            var span = pinned.AsSpan(skip, chunk); // page-aligned memory
            foreach (int i in new[] { 2, 0, 1 }) // out of order, as the pipeline writes
            {
                expected.AsSpan(i * chunk, chunk).CopyTo(span);
                w.Write(span, (long)i * chunk);
            }
            Assert.Equal(3 * chunk, w.UnbufferedBytes);
            Assert.Equal(0, w.BufferedBytes);
            w.Flush();
        }
        Assert.Equal(expected, File.ReadAllBytes(path));
    }

    [UnbufferedFact]
    public void Unaligned_head_and_tail_go_through_the_ordinary_handle_the_middle_unbuffered()
    {
        string path = Path.Combine(_dir.Path, "tail.img");
        var data = Random(10_000, 2);
        using (var fs = Create(path, 12_000))
        using (var w = UnbufferedFileWriter.Open(fs, path))
        {
            w.Write(data, 1000);      // [1000, 4096) buffered, [4096, 8192) unbuffered, [8192, 11000) buffered
            w.Write(data.AsSpan(0, 500), 11_500); // inside one page: buffered
            Assert.Equal(4096, w.UnbufferedBytes);
            Assert.Equal(10_000 - 4096 + 500, w.BufferedBytes);
            w.Flush();
        }
        var back = File.ReadAllBytes(path);
        Assert.Equal(12_000, back.Length);
        Assert.True(back.AsSpan(0, 1000).IndexOfAnyExcept((byte)0) < 0);
        Assert.True(back.AsSpan(1000, 10_000).SequenceEqual(data));
        Assert.True(back.AsSpan(11_000, 500).IndexOfAnyExcept((byte)0) < 0);
        Assert.True(back.AsSpan(11_500, 500).SequenceEqual(data.AsSpan(0, 500)));
    }

    [UnbufferedFact]
    public void Unaligned_memory_is_copied_through_aligned_bounce_buffers_larger_writes_in_pieces()
    {
        string path = Path.Combine(_dir.Path, "bounce.img");
        int length = 2 * UnbufferedFileWriter.BounceSize + 3 * 4096 + 123; // three bounce pieces and a tail
        var array = Random(length + 1, 3);
        var data = array.AsSpan(1, length); // a managed array at an odd address: never aligned
        using (var fs = Create(path, 8L << 20))
        using (var w = UnbufferedFileWriter.Open(fs, path))
        {
            w.Write(data, 4L << 20);
            Assert.Equal(length - 123, w.UnbufferedBytes);
            Assert.Equal(123, w.BufferedBytes);
            w.Flush();
        }
        using var check = File.OpenRead(path);
        var back = new byte[length];
        check.Position = 4L << 20;
        check.ReadExactly(back);
        Assert.True(back.AsSpan().SequenceEqual(data));
    }

    [Fact]
    public void The_mode_variable_turns_unbuffered_writes_off_and_the_mode_says_so()
    {
        string path = Path.Combine(_dir.Path, "forced.img");
        var data = Random(64 << 10, 4);
        Environment.SetEnvironmentVariable(UnbufferedFileWriter.ModeVariable, "buffered");
        try
        {
            using var fs = Create(path, 128 << 10);
            using var w = UnbufferedFileWriter.Open(fs, path);
            Assert.False(w.IsUnbuffered);
            Assert.Equal($"buffered: {UnbufferedFileWriter.ModeVariable}=buffered", w.Mode);
            w.Write(data, 64 << 10);
            Assert.Equal(0, w.UnbufferedBytes);
            Assert.Equal(data.Length, w.BufferedBytes);
            w.Flush();
        }
        finally
        {
            Environment.SetEnvironmentVariable(UnbufferedFileWriter.ModeVariable, null);
        }
        Assert.True(File.ReadAllBytes(path).AsSpan(64 << 10).SequenceEqual(data));
    }

    [RamfsFact]
    public void A_file_system_that_refuses_O_DIRECT_falls_back_to_buffered_writes_and_reports_it()
    {
        // ramfs has no direct I/O at all (tmpfs has it since Linux 6.6): a real refusal, not a simulated one.
        string mount = Path.Combine(_dir.Path, "ramfs");
        Directory.CreateDirectory(mount);
        var (code, _, err) = LoopDevice.Run("mount", ["-t", "ramfs", "ramfs", mount]);
        Assert.True(code == 0, $"mount -t ramfs failed: {err}");
        try
        {
            string path = Path.Combine(mount, "refused.img");
            var data = Random(256 << 10, 5);
            using (var fs = Create(path, 512 << 10))
            using (var w = UnbufferedFileWriter.Open(fs, path))
            {
                Assert.False(w.IsUnbuffered);
                Assert.StartsWith("buffered: ", w.Mode);
                Assert.Contains("O_DIRECT", w.Mode);
                w.Write(data, 4096);
                w.Write(data.AsSpan(0, 1000), 300_000);
                Assert.Equal(0, w.UnbufferedBytes);
                Assert.Equal(data.Length + 1000, w.BufferedBytes);
                w.Flush();
            }
            var back = File.ReadAllBytes(path);
            Assert.True(back.AsSpan(4096, data.Length).SequenceEqual(data));
            Assert.True(back.AsSpan(300_000, 1000).SequenceEqual(data.AsSpan(0, 1000)));
        }
        finally
        {
            LoopDevice.Run("umount", [mount]);
        }
    }

    [Fact]
    public void Flush_is_needed_only_after_a_write()
    {
        string path = Path.Combine(_dir.Path, "flush.img");
        using var fs = Create(path, 1 << 20);
        using var w = UnbufferedFileWriter.Open(fs, path);
        Assert.True(w.HasUnflushedWrites); // a new file was never flushed by its writer
        w.Flush();
        Assert.False(w.HasUnflushedWrites);
        w.Write(Random(4096, 6), 8192);
        Assert.True(w.HasUnflushedWrites);
        w.Flush();
        Assert.False(w.HasUnflushedWrites);
    }

    [Fact]
    public void Pipeline_plain_blocks_are_page_aligned_and_huge_page_aligned_from_2_MiB_on_Linux()
    {
        using var pool = new ChunkBufferPool((4 << 20) + 40, 4 << 20);
        var rented = new List<IoMemory>();
        for (int i = 0; i < 4; i++)
        {
            var block = pool.RentPlain();
            Assert.Equal(4 << 20, block.Span.Length);
            Assert.Equal(0, block.Address % (OperatingSystem.IsLinux() ? IoMemory.HugePage : 4096));
            Assert.Equal(OperatingSystem.IsLinux(), block.HugePageAligned);
            block.Span.Fill((byte)i); // every byte is usable
            rented.Add(block);
        }
        foreach (var b in rented) pool.Return(b);
        Assert.Same(rented[^1], pool.RentPlain()); // recycled, not made again
        using var small = new IoMemory(64 << 10); // below a huge page: page-aligned only
        Assert.Equal(0, small.Address % 4096);
        Assert.False(small.HugePageAligned);
        small.Dispose();
        Assert.Throws<ObjectDisposedException>(() => small.Span.Length);
        // The pool frees every block it made when the pipeline ends, rented or not.
        var ended = new ChunkBufferPool(64, 4 << 20);
        var outstanding = ended.RentPlain();
        ended.Dispose();
        Assert.Throws<ObjectDisposedException>(() => outstanding.Span.Length);
    }

    [UnbufferedFact]
    public void Whole_chunks_from_huge_page_blocks_go_out_unbuffered_and_bit_exact()
    {
        string path = Path.Combine(_dir.Path, "huge.img");
        const int chunk = 4 << 20;
        var expected = Random(3 * chunk, 11);
        using var block = new IoMemory(chunk);
        using (var fs = Create(path, 3 * chunk))
        using (var w = UnbufferedFileWriter.Open(fs, path))
        {
            foreach (int i in new[] { 1, 2, 0 })
            {
                expected.AsSpan(i * chunk, chunk).CopyTo(block.Span);
                w.Write(block.Span, (long)i * chunk);
            }
            Assert.Equal(3L * chunk, w.UnbufferedBytes);
            Assert.Equal(0, w.BufferedBytes);
            w.Flush();
        }
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(expected)), Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path))));
    }

    [Fact]
    public async Task A_raw_destination_resumed_at_chunk_offsets_is_bit_exact_and_reports_its_write_mode()
    {
        const int chunk = 64 << 10;
        long size = 40L * chunk + 1000; // a tail that is not a whole page
        var image = Random((int)size, 7);
        string destination = Path.Combine(_dir.Path, "resumed.img");
        await using (var first = DestinationFile.Create(destination, size, force: false))
        {
            Assert.Equal(UnbufferedFactAttributeReason() is null, first.WriteMode.StartsWith("unbuffered", StringComparison.Ordinal));
            for (int i = 0; i < 25; i += 2) first.Write((long)i * chunk, image.AsSpan(i * chunk, chunk));
            first.Flush();
            first.KeepPartial = true; // stopped: kept for -Resume
        }
        Assert.True(File.Exists(DestinationFile.PartialPathFor(destination)));
        await using (var second = DestinationFile.OpenPartial(destination, size))
        {
            for (int i = 1; i < 40; i += (i < 25 ? 2 : 1))
                if (i % 2 == 1 || i >= 25) second.Write((long)i * chunk, image.AsSpan(i * chunk, chunk));
            second.Write(40L * chunk, image.AsSpan(40 * chunk));
            second.Flush();
            second.Commit(overwrite: false);
        }
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(image)), Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(destination))));
    }

    [Fact]
    public async Task A_restore_through_the_pipeline_is_bit_exact_unbuffered_and_buffered_and_its_result_says_how_it_wrote()
    {
        // 64 KiB chunks and a 1000-byte tail: whole chunks from the pipeline's aligned buffers, the tail apart.
        var image = DeviceImage.Create(_dir.Path);
        var snapshot = new PbsRestore.Sources.SnapshotRef(PbsRestore.Sources.BackupNamespace.Root, "vm", "100", DateTimeOffset.FromUnixTimeSeconds(1714557600));
        foreach (bool buffered in new[] { false, true })
        {
            string destination = Path.Combine(_dir.Path, buffered ? "buffered.img" : "unbuffered.img");
            Environment.SetEnvironmentVariable(UnbufferedFileWriter.ModeVariable, buffered ? "buffered" : null);
            RestoreResult result;
            try
            {
                await using var reader = await new PbsRestore.Sources.Local.LocalDatastore(image.Store).OpenSnapshotAsync(snapshot, default);
                result = await new ArchiveRestorer(reader, null).RestoreAsync(DeviceImage.Archive, destination,
                    new DestinationOptions(), new RestoreOptions { WriteConcurrency = 4 }, new RestoreCounters(), default);
            }
            finally
            {
                Environment.SetEnvironmentVariable(UnbufferedFileWriter.ModeVariable, null);
            }
            Assert.Equal(image.Sha256, Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(destination))));
            if (buffered) Assert.Equal($"buffered: {UnbufferedFileWriter.ModeVariable}=buffered", result.WriteMode);
            else if (UnbufferedFactAttributeReason() is null) Assert.StartsWith("unbuffered (O_DIRECT", result.WriteMode);
            else Assert.StartsWith("buffered: ", result.WriteMode);
        }
    }

    private static string? UnbufferedFactAttributeReason() => new UnbufferedFactAttribute().Skip;
}
