using PbsRestore.Platform;
using PbsRestore.Tests.Fixtures;
using PbsRestore.Tests.Restore;
using Xunit.Abstractions;

namespace PbsRestore.Tests.Platform;

public sealed class BlockDevicesTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Regular_files_directories_and_missing_paths_are_not_devices()
    {
        string file = Path.Combine(_dir.Path, "plain.img");
        File.WriteAllBytes(file, new byte[4096]);
        Assert.False(BlockDevices.IsDevicePath(file));
        Assert.False(BlockDevices.IsDevicePath(_dir.Path));
        Assert.False(BlockDevices.IsDevicePath(Path.Combine(_dir.Path, "missing")));
        Assert.False(BlockDevices.IsDevicePath(""));
        if (!OperatingSystem.IsWindows()) Assert.False(BlockDevices.IsDevicePath(@"\\.\PhysicalDrive0"));
        if (OperatingSystem.IsLinux()) Assert.False(BlockDevices.IsDevicePath("/dev/null")); // a character device
    }

    [Fact]
    public void A_regular_file_is_described_by_its_length()
    {
        string file = Path.Combine(_dir.Path, "plain.img");
        File.WriteAllBytes(file, new byte[12345]);
        var info = BlockDevices.Describe(file);
        Assert.False(info.IsDevice);
        Assert.Equal(12345, info.Size);
        Assert.Equal(1, info.LogicalSectorSize);
        Assert.Null(info.IsInUse);
        Assert.Throws<FileNotFoundException>(() => BlockDevices.Describe(Path.Combine(_dir.Path, "missing")));
    }

    [SkippableFact]
    public void A_loop_device_is_a_device_with_its_size_sector_and_backing_file()
    {
        string backing = Path.Combine(_dir.Path, "backing.img");
        File.WriteAllBytes(backing, new byte[3 << 20]);
        using var loop = LoopDevice.Attach(backing, output);
        Assert.True(BlockDevices.IsDevicePath(loop.Path));
        var info = BlockDevices.Describe(loop.Path);
        output.WriteLine($"{loop.Path}: {info}");
        Assert.True(info.IsDevice);
        Assert.Equal(loop.Path, info.Path);
        Assert.Equal(3L << 20, info.Size);
        Assert.Equal(512, info.LogicalSectorSize);
        Assert.Equal(backing, info.BackingFile);
        Assert.Contains(backing, info.Description);
        Assert.False(info.IsReadOnly);
        Assert.Equal(false, info.IsInUse);
        Assert.Null(info.InUseReason);
        Assert.False(BlockDevices.IsDevicePath(backing)); // the backing file itself is a regular file
    }

    [SkippableFact]
    public void Every_block_device_on_this_machine_can_be_described()
    {
        Skip.If(!OperatingSystem.IsLinux() || !Directory.Exists("/sys/class/block"), "lists block devices from /sys/class/block, which only Linux has");
        foreach (var name in Directory.GetDirectories("/sys/class/block").Select(Path.GetFileName))
        {
            string path = "/dev/" + name;
            // Partitions of other tests' loop devices vanish when those detach; whole loop devices stay.
            if (System.Text.RegularExpressions.Regex.IsMatch(name!, @"^loop\d+p\d+$") || !BlockDevices.IsDevicePath(path)) continue;
            var info = BlockDevices.Describe(path);
            output.WriteLine($"{path}: {info.Size} bytes, sector {info.LogicalSectorSize}, '{info.Description}', in use: {info.IsInUse} {info.InUseReason}");
            Assert.True(info.IsDevice);
            Assert.True(info.Size >= 0);
            Assert.True(info.LogicalSectorSize >= 512);
            Assert.NotNull(info.IsInUse);
        }
    }
}
