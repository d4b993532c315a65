using System.Diagnostics;
using System.Security.Cryptography;
using PbsRestore.Fixtures;
using PbsRestore.Platform;
using PbsRestore.Restore;
using PbsRestore.Sources;
using PbsRestore.Tests.Fixtures;
using Xunit.Abstractions;
using PbsRestore.Destinations;
using PbsRestore.Sources.Local;

namespace PbsRestore.Tests.Restore;

/// <summary>A generated snapshot whose image has zero runs between random and text data.</summary>
internal sealed class DeviceImage
{
    public const int ChunkSize = 64 << 10;
    public const string Archive = "drive-scsi0.img";
    private static readonly DateTimeOffset Time = DateTimeOffset.FromUnixTimeSeconds(1714557600);

    private DeviceImage(string store, long size, string sha256) => (Store, Size, Sha256) = (store, size, sha256);

    public string Store { get; }
    public long Size { get; }
    public string Sha256 { get; }

    /// <summary>48 chunks and a short tail that is not a whole sector, starting with zero chunks.</summary>
    public static DeviceImage Create(string dir, long size = 48L * ChunkSize + 1000)
    {
        var writer = new DatastoreWriter(Path.Combine(dir, "store"));
        var snapshot = writer.BeginSnapshot("", "vm", "100", Time);
        var info = snapshot.AddImage(Archive, ImagePattern.Parse("zero:3,random:2,text:2,zero:2,dup:1", size, seed: 11), ChunkSize);
        snapshot.Finish();
        return new DeviceImage(writer.RootPath, info.Size, info.Sha256);
    }

    /// <summary>The real pipeline (several writers) into <paramref name="sink"/>.</summary>
    public async Task RestoreAsync(IImageSink sink)
    {
        await using var reader = await new LocalDatastore(Store).OpenSnapshotAsync(new SnapshotRef(BackupNamespace.Root, "vm", "100", Time), default);
        await new ArchiveRestorer(reader, null).RestoreToSinkAsync(Archive, sink, new RestoreOptions { WriteConcurrency = 4 }, new RestoreCounters(), null, default);
    }

    /// <summary>A file of <paramref name="length"/> random bytes, the "old contents" a restore must overwrite.</summary>
    public static byte[] WriteGarbage(string path, long length, int seed = 5)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        File.WriteAllBytes(path, bytes);
        return bytes;
    }

    /// <summary>Restored bytes are the image (zero chunks included, the garbage under them gone) and the tail past it is untouched.</summary>
    public void AssertRestored(string target, byte[] garbage)
    {
        var bytes = new byte[garbage.Length];
        using (var stream = new FileStream(target, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, bufferSize: 0))
            stream.ReadExactly(bytes);
        Assert.True(bytes.AsSpan(0, 3 * ChunkSize).IndexOfAnyExcept((byte)0) < 0, "the leading zero chunks still hold old data");
        Assert.Equal(Sha256, Convert.ToHexStringLower(SHA256.HashData(bytes.AsSpan(0, (int)Size))));
        Assert.True(bytes.AsSpan((int)Size).SequenceEqual(garbage.AsSpan((int)Size)), "bytes past the image were changed");
    }
}

/// <summary>
/// A loop device over a file, detached on dispose. Needs Linux, root and losetup; <see cref="TryAttach"/> says on the
/// test output why there is none, and the callers then fall back to a regular file.
/// </summary>
internal sealed class LoopDevice : IDisposable
{
    private LoopDevice(string path, string backingFile) => (Path, BackingFile) = (path, backingFile);

    public string Path { get; }
    public string BackingFile { get; }

    public static LoopDevice? TryAttach(string backingFile, ITestOutputHelper output, bool partitions = false)
    {
        string? why = null;
        if (!OperatingSystem.IsLinux()) why = "not Linux";
        else if (Environment.UserName != "root") why = "not running as root";
        else
        {
            var (code, stdout, stderr) = Run("losetup", partitions ? ["-f", "-P", "--show", backingFile] : ["-f", "--show", backingFile]);
            if (code == 0 && stdout.Trim().StartsWith("/dev/", StringComparison.Ordinal)) return new LoopDevice(stdout.Trim(), backingFile);
            why = $"losetup failed ({code}): {stderr.Trim()}";
        }
        output.WriteLine($"NOTE: no loop device ({why}).");
        return null;
    }

    /// <summary>A loop device over <paramref name="backingFile"/>, or the test is reported skipped with the reason there is none.</summary>
    public static LoopDevice Attach(string backingFile, ITestOutputHelper output, bool partitions = false)
    {
        var loop = TryAttach(backingFile, output, partitions);
        Skip.If(loop is null, "needs a loop device (Linux, root, losetup); none could be attached here");
        return loop!;
    }

    public void Dispose()
    {
        var (code, _, stderr) = Run("losetup", ["-d", Path]);
        if (code != 0) throw new InvalidOperationException($"losetup -d {Path} failed: {stderr}");
    }

    internal static (int Code, string Stdout, string Stderr) Run(string program, string[] args)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) start.ArgumentList.Add(a);
        try
        {
            using var p = Process.Start(start)!;
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(60_000))
            {
                p.Kill();
                return (-1, "", $"{program} timed out");
            }
            return (p.ExitCode, stdout.Result, stderr.Result);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return (-1, "", $"{program}: {e.Message}");
        }
    }
}

public sealed class DeviceDestinationTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private string Temp(string name) => Path.Combine(_dir.Path, name);

    /// <summary>(b) An existing file written in place, as a target that rejects holes: zero chunks must be written.</summary>
    private async Task RestoreOverGarbageFile()
    {
        string dir = Directory.CreateDirectory(Temp("file-target")).FullName;
        var image = DeviceImage.Create(dir);
        string target = Path.Combine(dir, "existing.img");
        var garbage = DeviceImage.WriteGarbage(target, image.Size + (1 << 20));

        await using (var destination = DeviceDestination.Open(target, image.Size))
        {
            Assert.False(destination.ZerosAreHoles);
            Assert.False(destination.Info.IsDevice);
            Assert.Equal(target, destination.PartialPath);
            await image.RestoreAsync(destination);
            destination.Commit(overwrite: false);
        }
        Assert.Equal(garbage.Length, new FileInfo(target).Length); // never truncated
        Assert.False(File.Exists(DestinationFile.PartialPathFor(target)));
        image.AssertRestored(target, garbage);
    }

    [Fact]
    public Task Restore_over_an_existing_garbage_file_is_bit_exact_including_zero_chunks() => RestoreOverGarbageFile();

    [SkippableFact]
    public async Task Restore_onto_a_loop_device_over_garbage_is_bit_exact()
    {
        var image = DeviceImage.Create(_dir.Path);
        string backing = Temp("backing.img");
        // Whole MiBs (a loop device is whole sectors), at least a MiB past the image to see that the tail is kept.
        var garbage = DeviceImage.WriteGarbage(backing, (image.Size >> 20) + 2 << 20);
        using var loop = LoopDevice.Attach(backing, output);

        await using (var destination = DeviceDestination.Open(loop.Path, image.Size))
        {
            Assert.True(destination.Info.IsDevice);
            Assert.Equal(garbage.Length, destination.Info.Size);
            Assert.Equal(loop.Path, destination.PartialPath);
            await image.RestoreAsync(destination);
            destination.Commit(overwrite: false);
        }
        image.AssertRestored(loop.Path, garbage);
        output.WriteLine($"restored {image.Size} bytes onto {loop.Path}");
    }

    [SkippableFact]
    public void A_loop_device_smaller_than_the_image_is_refused()
    {
        string backing = Temp("small.img");
        var garbage = DeviceImage.WriteGarbage(backing, 1 << 20);
        using var loop = LoopDevice.Attach(backing, output);
        long imageSize = (2L << 20) + 4096;
        var e = Assert.Throws<PbsException>(() => DeviceDestination.Open(loop.Path, imageSize));
        Assert.Equal("DeviceTooSmall", e.ErrorId);
        Assert.Equal(PbsErrorKind.InvalidArgument, e.Kind);
        Assert.Contains(loop.Path, e.Message);
        Assert.Contains("1048576 bytes", e.Message);
        Assert.Contains($"{imageSize} bytes", e.Message);
        Assert.Contains(backing, e.Message); // the loop device is named by its backing file
        Assert.Equal(garbage, File.ReadAllBytes(backing));
    }

    [SkippableFact]
    public async Task A_mounted_loop_device_is_refused()
    {
        string backing = Temp("fs.img");
        DeviceImage.WriteGarbage(backing, 8 << 20);
        using var loop = LoopDevice.Attach(backing, output);
        var (code, _, stderr) = LoopDevice.Run("mkfs.ext4", ["-q", "-F", loop.Path]);
        string mountPoint = Directory.CreateDirectory(Temp("mnt")).FullName;
        if (code == 0) (code, _, stderr) = LoopDevice.Run("mount", [loop.Path, mountPoint]);
        Skip.If(code != 0, $"cannot make and mount a file system on a loop device here: {stderr.Trim()}");
        try
        {
            var e = Assert.Throws<PbsException>(() => DeviceDestination.Open(loop.Path, 1 << 20));
            Assert.Equal("DeviceInUse", e.ErrorId);
            Assert.Contains(mountPoint, e.Message);
        }
        finally
        {
            LoopDevice.Run("umount", [mountPoint]);
        }
        // Unmounted, the same device opens.
        await using var destination = DeviceDestination.Open(loop.Path, 1 << 20);
        Assert.Equal(false, destination.Info.IsInUse);
    }

    [SkippableFact]
    public async Task A_loop_device_with_a_mounted_partition_is_refused()
    {
        string backing = Temp("disk.img");
        var disk = new byte[8 << 20];
        // One MBR partition, type 0x83, sectors 2048..16383.
        byte[] entry = [0x00, 0x20, 0x21, 0x00, 0x83, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x38, 0x00, 0x00];
        entry.CopyTo(disk, 446);
        disk[510] = 0x55;
        disk[511] = 0xAA;
        File.WriteAllBytes(backing, disk);
        using var loop = LoopDevice.Attach(backing, output, partitions: true);
        string partition = loop.Path + "p1";
        // The kernel adds the partition node asynchronously; partx asks again where the scan was missed.
        for (int i = 0; i < 50 && !File.Exists(partition); i++)
        {
            if (i == 10) LoopDevice.Run("partx", ["-a", loop.Path]);
            await Task.Delay(100);
        }
        var (code, _, stderr) = File.Exists(partition) ? LoopDevice.Run("mkfs.ext4", ["-q", "-F", partition]) : (-1, "", "no partition node appeared");
        string mountPoint = Directory.CreateDirectory(Temp("mnt")).FullName;
        if (code == 0) (code, _, stderr) = LoopDevice.Run("mount", [partition, mountPoint]);
        Skip.If(code != 0, $"cannot mount a partition of a loop device here: {stderr.Trim()}");
        try
        {
            var info = BlockDevices.Describe(loop.Path);
            Assert.Equal(true, info.IsInUse);
            Assert.Contains(partition, info.InUseReason);
            var e = Assert.Throws<PbsException>(() => DeviceDestination.Open(loop.Path, 1 << 20));
            Assert.Equal("DeviceInUse", e.ErrorId);
            Assert.Contains(mountPoint, e.Message);
        }
        finally
        {
            LoopDevice.Run("umount", [mountPoint]);
        }
    }

    [SkippableFact]
    public async Task A_device_already_open_for_restore_is_refused_by_the_kernel()
    {
        string backing = Temp("busy.img");
        DeviceImage.WriteGarbage(backing, 1 << 20);
        using var loop = LoopDevice.Attach(backing, output);
        // O_EXCL: the second open gets EBUSY, so two restores (or a mount) cannot share the device.
        await using var first = DeviceDestination.Open(loop.Path, 4096);
        var e = Assert.Throws<PbsException>(() => DeviceDestination.Open(loop.Path, 4096));
        Assert.Equal("DeviceInUse", e.ErrorId);
    }

    [Fact]
    public async Task A_shorter_existing_file_grows_to_the_image_size()
    {
        string target = Temp("short.img");
        File.WriteAllBytes(target, [1, 2, 3]);
        await using (var destination = DeviceDestination.Open(target, 10_000))
            destination.Write(9_999, [7]);
        var bytes = File.ReadAllBytes(target);
        Assert.Equal(10_000, bytes.Length);
        Assert.Equal((byte)1, bytes[0]);
        Assert.Equal((byte)7, bytes[^1]);
    }

    [Fact]
    public void A_missing_target_a_directory_or_a_character_device_is_refused()
    {
        var missing = Assert.Throws<PbsNotFoundException>(() => DeviceDestination.Open(Temp("nope.img"), 1));
        Assert.Equal("DeviceNotFound", missing.ErrorId);
        Assert.False(File.Exists(Temp("nope.img")));
        var dir = Assert.Throws<PbsException>(() => DeviceDestination.Open(_dir.Path, 1));
        Assert.Equal("DestinationIsDirectory", dir.ErrorId);
        if (OperatingSystem.IsLinux())
        {
            var character = Assert.Throws<PbsException>(() => DeviceDestination.Open("/dev/null", 1));
            Assert.Equal("DestinationNotSupported", character.ErrorId);
        }
    }
}
