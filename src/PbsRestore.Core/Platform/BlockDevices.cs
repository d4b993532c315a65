using System.ComponentModel;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.Win32.SafeHandles;

namespace PbsRestore.Platform;

/// <summary>What <see cref="BlockDevices.Describe"/> found out about a restore target.</summary>
public sealed record DeviceInfo
{
    /// <summary>The path as given (full path for a regular file).</summary>
    public required string Path { get; init; }

    /// <summary>True for a block device or physical disk/volume, false for a regular file.</summary>
    public bool IsDevice { get; init; }

    /// <summary>Size in bytes (the file length for a regular file).</summary>
    public long Size { get; init; }

    /// <summary>Logical sector size in bytes; 1 for a regular file (any offset works).</summary>
    public int LogicalSectorSize { get; init; } = 1;

    public string? Vendor { get; init; }
    public string? Model { get; init; }

    /// <summary>Linux loop devices: the file behind the device.</summary>
    public string? BackingFile { get; init; }

    /// <summary>The kernel marks the device read-only.</summary>
    public bool IsReadOnly { get; init; }

    /// <summary>True when the device or a partition of it is mounted, swap, or held by another device (LVM, RAID); null when not known (Windows, regular files).</summary>
    public bool? IsInUse { get; init; }

    /// <summary>Why <see cref="IsInUse"/> is true, e.g. "/dev/loop3p1 is mounted on /mnt".</summary>
    public string? InUseReason { get; init; }

    /// <summary>Vendor, model and backing file, for messages; empty when none is known.</summary>
    public string Description
    {
        get
        {
            var parts = new List<string>();
            string name = $"{Vendor} {Model}".Trim();
            if (name.Length > 0) parts.Add(name);
            if (BackingFile is not null) parts.Add("backing file " + BackingFile);
            return string.Join(", ", parts);
        }
    }
}

/// <summary>
/// The OS seam for raw block devices. Linux: a block device node (statx S_IFBLK), described from sysfs
/// (/sys/dev/block/MAJ:MIN), with /proc/self/mountinfo, /proc/swaps and sysfs holders telling whether it is in use,
/// and opened O_EXCL so the kernel refuses it while mounted and refuses mounts while we write. Windows:
/// \\.\PhysicalDriveN and \\.\X: paths, described with DeviceIoControl; that code was written from the Win32
/// documentation and has never run (development and tests are Linux only).
/// </summary>
public static partial class BlockDevices
{
    /// <summary>
    /// The granularity writes to <paramref name="info"/> must keep: Windows refuses raw disk I/O that is not whole
    /// sectors; Linux block devices (and every file) go through the page cache and take any offset.
    /// </summary>
    public static int WriteAlignment(DeviceInfo info) => OperatingSystem.IsWindows() && info.IsDevice ? info.LogicalSectorSize : 1;

    /// <summary>Linux: an existing block device (symlinks such as /dev/disk/by-id/... followed). Windows: a \\.\PhysicalDriveN or \\.\X: path.</summary>
    public static bool IsDevicePath(string path)
    {
        if (OperatingSystem.IsWindows()) return WindowsDevicePath().IsMatch(path);
        return OperatingSystem.IsLinux() && Linux.TryGetBlockDevice(path, out _);
    }

    /// <summary>Describes a block device, or an existing regular file (size only).</summary>
    public static DeviceInfo Describe(string path)
    {
        if (IsDevicePath(path))
            return OperatingSystem.IsWindows() ? Windows.Describe(path) : Linux.Describe(path);
        path = System.IO.Path.GetFullPath(path);
        var file = new FileInfo(path);
        if (!file.Exists) throw new FileNotFoundException($"'{path}' does not exist", path);
        return new DeviceInfo { Path = path, Size = file.Length };
    }

    /// <summary>
    /// Opens for positional writes without truncating. Linux devices get O_EXCL (the kernel's own "in use" check:
    /// EBUSY while mounted or claimed, and it keeps others from mounting it meanwhile); everything else gets a plain
    /// read-write open sharing read and write (CreateFile GENERIC_READ|GENERIC_WRITE, FILE_SHARE_READ|FILE_SHARE_WRITE, OPEN_EXISTING).
    /// </summary>
    internal static SafeFileHandle OpenForWriting(string path, bool isDevice)
    {
        if (isDevice && OperatingSystem.IsLinux()) return Linux.OpenExclusive(path);
        return File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
    }

    /// <summary>An existing regular file (not a character device, FIFO or socket, which cannot take an image in place).</summary>
    internal static bool IsRegularFile(string path) =>
        File.Exists(path) && (!OperatingSystem.IsLinux() || Linux.IsRegularFile(path));

    [GeneratedRegex(@"^\\\\[.?]\\(PhysicalDrive\d+|[A-Za-z]:)$", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex WindowsDevicePath();

    internal sealed class DeviceBusyException(string message) : IOException(message);

    private static unsafe class Linux
    {
        private const int AT_FDCWD = -100;
        private const uint STATX_TYPE = 0x1, STATX_MODE = 0x2;
        private const int S_IFMT = 0xF000, S_IFBLK = 0x6000, S_IFREG = 0x8000;
        private const int O_RDWR = 0x2, O_EXCL = 0x80, O_CLOEXEC = 0x80000; // same on x86-64 and arm64
        private const int EINTR = 4, EBUSY = 16;

        // statx, unlike stat, has one struct layout on every architecture (linux/stat.h): 256 bytes.
        private const int StatxSize = 256, OffMode = 0x1C, OffRdevMajor = 0x80, OffRdevMinor = 0x84;

        [DllImport("libc", SetLastError = true)]
        private static extern int statx(int dirfd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, uint mask, byte* buffer);

        [DllImport("libc", EntryPoint = "open", SetLastError = true)]
        private static extern int Open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

        /// <summary>True for a block device; the device number names its sysfs folder.</summary>
        public static bool TryGetBlockDevice(string path, out string devNumber)
        {
            switch (Stat(path, out int type, out devNumber))
            {
                case null: return TryGetBlockDeviceFromSysfs(path, out devNumber); // no statx: glibc < 2.28, older musl
                case false: return false;
                default: return type == S_IFBLK;
            }
        }

        /// <summary>Regular file (symlinks followed); true when statx is missing, as File.Exists already said it is a file.</summary>
        public static bool IsRegularFile(string path) => Stat(path, out int type, out _) switch
        {
            null => true,
            bool ok => ok && type == S_IFREG,
        };

        /// <summary>statx following symlinks: the file type bits and the device number of a device node; null when there is no statx.</summary>
        private static bool? Stat(string path, out int type, out string devNumber)
        {
            type = 0;
            devNumber = "";
            if (string.IsNullOrEmpty(path)) return false;
            byte* buffer = stackalloc byte[StatxSize];
            try
            {
                if (statx(AT_FDCWD, path, 0, STATX_TYPE | STATX_MODE, buffer) != 0) return false;
            }
            catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
            {
                return null;
            }
            type = *(ushort*)(buffer + OffMode) & S_IFMT;
            devNumber = $"{*(uint*)(buffer + OffRdevMajor)}:{*(uint*)(buffer + OffRdevMinor)}";
            return true;
        }

        /// <summary>Without statx: a /dev path whose final target has a /sys/class/block entry.</summary>
        private static bool TryGetBlockDeviceFromSysfs(string path, out string devNumber)
        {
            devNumber = "";
            var file = new FileInfo(path);
            if (!file.Exists) return false;
            string real = file.LinkTarget is null ? file.FullName : file.ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? file.FullName;
            if (!real.StartsWith("/dev/", StringComparison.Ordinal)) return false;
            string? dev = ReadSys(System.IO.Path.Combine("/sys/class/block", System.IO.Path.GetFileName(real), "dev"));
            if (dev is null) return false;
            devNumber = dev;
            return true;
        }

        public static DeviceInfo Describe(string path)
        {
            if (!TryGetBlockDevice(path, out string dev)) throw new FileNotFoundException($"'{path}' is not a block device", path);
            string sys = SysfsFolder(dev) ?? throw new IOException($"block device '{path}' ({dev}) has no entry under /sys/dev/block");
            bool partition = File.Exists(System.IO.Path.Combine(sys, "partition"));
            // Model, sector size and loop backing file belong to the whole disk; a partition's folder sits inside it.
            string disk = partition ? Directory.GetParent(sys)!.FullName : sys;

            long size = ReadLong(System.IO.Path.Combine(sys, "size")) is { } sectors ? sectors * 512 // sysfs counts 512-byte units whatever the sector size
                : throw new IOException($"cannot read the size of block device '{path}' from {sys}/size");
            int sector = (int)(ReadLong(System.IO.Path.Combine(disk, "queue", "logical_block_size")) ?? 512);
            string? inUse = InUse(dev, sys, partition);
            return new DeviceInfo
            {
                Path = path,
                IsDevice = true,
                Size = size,
                LogicalSectorSize = sector,
                Vendor = ReadSys(System.IO.Path.Combine(disk, "device", "vendor")),
                Model = ReadSys(System.IO.Path.Combine(disk, "device", "model")),
                BackingFile = ReadSys(System.IO.Path.Combine(disk, "loop", "backing_file")),
                IsReadOnly = ReadSys(System.IO.Path.Combine(sys, "ro")) == "1",
                IsInUse = inUse is not null,
                InUseReason = inUse,
            };
        }

        /// <summary>/sys/dev/block/MAJ:MIN resolved to the real folder (so a partition's parent is its disk).</summary>
        private static string? SysfsFolder(string dev)
        {
            var link = new DirectoryInfo($"/sys/dev/block/{dev}");
            if (!link.Exists) return null;
            return link.LinkTarget is null ? link.FullName : link.ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? link.FullName;
        }

        /// <summary>The first reason the device, or a partition of it, must not be overwritten; null when none shows.</summary>
        private static string? InUse(string dev, string sys, bool partition)
        {
            // The device itself and, for a whole disk, its partitions (sub-folders with a "partition" file).
            var members = new Dictionary<string, string> { [dev] = System.IO.Path.GetFileName(sys) };
            if (!partition)
            {
                foreach (var sub in SafeDirectories(sys))
                    if (File.Exists(System.IO.Path.Combine(sub, "partition")) && ReadSys(System.IO.Path.Combine(sub, "dev")) is { } d)
                        members[d] = System.IO.Path.GetFileName(sub);
            }
            foreach (var (number, name) in members)
            {
                string holders = System.IO.Path.Combine(partition || number == dev ? sys : System.IO.Path.Combine(sys, name), "holders");
                var held = Entries(holders).Select(System.IO.Path.GetFileName).ToList();
                if (held.Count > 0) return $"/dev/{name} is used by {string.Join(", ", held)} (device mapper, LVM or RAID)";
            }

            // mountinfo: "36 35 98:0 /root /mnt rw - ext4 /dev/sda1 rw". Field 3 is the mounted device's number;
            // file systems with anonymous numbers (btrfs) are matched through the source device instead.
            foreach (var line in ReadLines("/proc/self/mountinfo"))
            {
                var fields = line.Split(' ');
                int dash = Array.IndexOf(fields, "-");
                if (fields.Length < 5 || dash < 0 || dash + 2 >= fields.Length) continue;
                string source = Unescape(fields[dash + 2]);
                string? hit = members.ContainsKey(fields[2]) ? fields[2]
                    : source.StartsWith("/dev/", StringComparison.Ordinal) && TryGetBlockDevice(source, out var sd) && members.ContainsKey(sd) ? sd : null;
                if (hit is not null) return $"/dev/{members[hit]} is mounted on {Unescape(fields[4])}";
            }
            foreach (var line in ReadLines("/proc/swaps").Skip(1))
            {
                string source = Unescape(line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).FirstOrDefault() ?? "");
                if (TryGetBlockDevice(source, out var sd) && members.TryGetValue(sd, out var name))
                    return $"/dev/{name} is an active swap area";
            }
            return null;
        }

        public static SafeFileHandle OpenExclusive(string path)
        {
            int fd;
            do fd = Open(path, O_RDWR | O_EXCL | O_CLOEXEC);
            while (fd < 0 && Marshal.GetLastPInvokeError() == EINTR);
            if (fd >= 0) return new SafeFileHandle(fd, ownsHandle: true);
            int errno = Marshal.GetLastPInvokeError();
            if (errno == EBUSY)
                throw new DeviceBusyException($"'{path}' is busy: the kernel refuses exclusive access (mounted, part of LVM/RAID, or opened exclusively by another program)");
            var inner = new Win32Exception(errno);
            throw errno switch
            {
                2 => new FileNotFoundException($"cannot open '{path}': {inner.Message}", path, inner),
                1 or 13 or 30 => new UnauthorizedAccessException($"cannot open '{path}' for writing: {inner.Message}", inner),
                _ => new IOException($"cannot open '{path}' for writing: {inner.Message}", inner),
            };
        }

        // mountinfo and /proc/swaps write space, tab, newline and backslash as \ooo octal.
        private static string Unescape(string s) => !s.Contains('\\') ? s
            : Regex.Replace(s, @"\\([0-7]{3})", m => ((char)Convert.ToInt32(m.Groups[1].Value, 8)).ToString());

        private static string? ReadSys(string path)
        {
            try { return File.Exists(path) ? File.ReadAllText(path).Trim() is { Length: > 0 } s ? s : null : null; }
            catch (IOException) { return null; }
            catch (UnauthorizedAccessException) { return null; }
        }

        private static long? ReadLong(string path) =>
            long.TryParse(ReadSys(path), NumberStyles.None, CultureInfo.InvariantCulture, out long v) ? v : null;

        private static IEnumerable<string> ReadLines(string path)
        {
            try { return File.ReadAllLines(path); }
            catch (IOException) { return []; }
            catch (UnauthorizedAccessException) { return []; }
        }

        private static IEnumerable<string> SafeDirectories(string path) =>
            Directory.Exists(path) ? Directory.GetDirectories(path) : [];

        private static IEnumerable<string> Entries(string path) =>
            Directory.Exists(path) ? Directory.GetFileSystemEntries(path) : [];
    }

    /// <summary>
    /// Never run: written from the winioctl.h / ntddstor.h documentation. Each query is best effort except the
    /// length, which the size check needs.
    /// </summary>
    private static unsafe class Windows
    {
        // CTL_CODE(IOCTL_DISK_BASE, 0x17, METHOD_BUFFERED, FILE_READ_ACCESS): GET_LENGTH_INFORMATION { LARGE_INTEGER Length; }
        private const uint IOCTL_DISK_GET_LENGTH_INFO = 0x0007405C;
        // CTL_CODE(IOCTL_DISK_BASE, 0x28, METHOD_BUFFERED, FILE_ANY_ACCESS): DISK_GEOMETRY_EX, BytesPerSector at offset 20.
        private const uint IOCTL_DISK_GET_DRIVE_GEOMETRY_EX = 0x000700A0;
        // CTL_CODE(IOCTL_STORAGE_BASE, 0x500, METHOD_BUFFERED, FILE_ANY_ACCESS)
        private const uint IOCTL_STORAGE_QUERY_PROPERTY = 0x002D1400;

        [DllImport("kernel32.dll", SetLastError = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        private static extern bool DeviceIoControl(SafeFileHandle device, uint ioControlCode, void* inBuffer, uint inBufferSize,
            void* outBuffer, uint outBufferSize, out uint bytesReturned, IntPtr overlapped);

        public static DeviceInfo Describe(string path)
        {
            // GENERIC_READ (the length query needs FILE_READ_ACCESS), sharing read and write so a held disk still opens.
            using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);

            long length;
            if (!DeviceIoControl(handle, IOCTL_DISK_GET_LENGTH_INFO, null, 0, &length, sizeof(long), out uint got, IntPtr.Zero) || got < sizeof(long))
                throw new Win32Exception(Marshal.GetLastPInvokeError(), $"IOCTL_DISK_GET_LENGTH_INFO on '{path}' failed");

            // DISK_GEOMETRY { LARGE_INTEGER Cylinders; MEDIA_TYPE MediaType; DWORD TracksPerCylinder, SectorsPerTrack, BytesPerSector; }
            // then LARGE_INTEGER DiskSize and BYTE Data[]: 24 + 8 + detection/partition data, so ask with room to spare.
            int sector = 512;
            byte* geometry = stackalloc byte[256];
            if (DeviceIoControl(handle, IOCTL_DISK_GET_DRIVE_GEOMETRY_EX, null, 0, geometry, 256, out got, IntPtr.Zero) && got >= 24)
            {
                uint bytesPerSector = *(uint*)(geometry + 20);
                if (bytesPerSector is >= 512 and <= 65536 && (bytesPerSector & (bytesPerSector - 1)) == 0) sector = (int)bytesPerSector;
            }

            // STORAGE_PROPERTY_QUERY { PropertyId = StorageDeviceProperty (0), QueryType = PropertyStandardQuery (0), BYTE AdditionalParameters[1] } = 12 bytes.
            // STORAGE_DEVICE_DESCRIPTOR: DWORD Version, Size; BYTE DeviceType, DeviceTypeModifier, RemovableMedia, CommandQueueing;
            // DWORD VendorIdOffset (12), ProductIdOffset (16), ...: offsets of NUL-terminated ASCII from the start, 0 = absent.
            string? vendor = null, model = null;
            int* query = stackalloc int[3];
            query[0] = 0; query[1] = 0; query[2] = 0;
            const int DescriptorSize = 1024;
            byte* descriptor = stackalloc byte[DescriptorSize];
            if (DeviceIoControl(handle, IOCTL_STORAGE_QUERY_PROPERTY, query, 12, descriptor, DescriptorSize, out got, IntPtr.Zero) && got >= 20)
            {
                vendor = AsciiAt(descriptor, (int)got, *(uint*)(descriptor + 12));
                model = AsciiAt(descriptor, (int)got, *(uint*)(descriptor + 16));
            }
            return new DeviceInfo { Path = path, IsDevice = true, Size = length, LogicalSectorSize = sector, Vendor = vendor, Model = model };
        }

        private static string? AsciiAt(byte* buffer, int length, uint offset)
        {
            if (offset == 0 || offset >= length) return null;
            var span = new ReadOnlySpan<byte>(buffer + offset, length - (int)offset);
            int end = span.IndexOf((byte)0);
            string s = Encoding.ASCII.GetString(end < 0 ? span : span[..end]).Trim();
            return s.Length == 0 ? null : s;
        }
    }
}
