using System.Collections.Concurrent;
using System.ComponentModel;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace PbsRestore.Platform;

/// <summary>
/// The write path of every destination (files and devices), behind one seam. Restored bytes go to the disk
/// unbuffered where the OS and file system allow it (Linux: a second descriptor opened with O_DIRECT; Windows: the
/// handle reopened with FILE_FLAG_NO_BUFFERING | FILE_FLAG_WRITE_THROUGH), so a restore neither copies every byte
/// through the page cache nor floods it with dirty pages. Unbuffered I/O needs the offset, length and memory
/// address aligned to <see cref="Alignment"/>: the aligned middle of a write goes out directly (from the caller's
/// memory when it is aligned, else through a pooled aligned bounce buffer); its unaligned head and tail (the image's
/// last chunk, a VHD footer, VHDX metadata) go through the ordinary handle. Head and tail pages are never written
/// unbuffered, so no page is ever written both ways.
/// <para>
/// Where unbuffered I/O is refused (tmpfs on older kernels, ramfs, FUSE, some network file systems, or
/// <c>PBSRESTORE_WRITE_MODE=buffered</c>) writes fall back to the ordinary handle automatically, and
/// <see cref="Mode"/> says so and why. Buffered writes are then kept from flooding the page cache on Linux: every
/// <see cref="WritebackInterval"/> bytes written, writeback is started (sync_file_range) and pages already written
/// back are dropped (posix_fadvise DONTNEED), and again after each <see cref="Flush"/>.
/// </para>
/// </summary>
public sealed class UnbufferedFileWriter : IDisposable
{
    /// <summary>The smallest alignment used: a page, so head/tail pages never overlap unbuffered ones.</summary>
    public const int MinimumAlignment = 4096;

    /// <summary>Buffered fallback: bytes written between two writeback kicks (bounds the dirty pages per file).</summary>
    public const long WritebackInterval = 64L << 20;

    /// <summary>Bounce buffers are this size (a write of unaligned memory goes out in pieces of it).</summary>
    internal const int BounceSize = 1 << 20;

    /// <summary>Environment variable: <c>buffered</c> turns unbuffered writes off (troubleshooting, benchmarks).</summary>
    public const string ModeVariable = "PBSRESTORE_WRITE_MODE";

    private readonly FileStream _stream;
    private readonly SafeFileHandle _buffered;
    private readonly SafeFileHandle? _directHandle;
    private readonly ConcurrentBag<IntPtr> _bounce = new();
    private volatile bool _direct;
    private volatile string _mode;
    private int _dirty = 1; // a fresh writer's file has never been flushed by it
    private long _sinceWriteback;
    private long _unbufferedBytes, _bufferedBytes;
    private bool _disposed;

    private UnbufferedFileWriter(FileStream buffered, SafeFileHandle? direct, int alignment, string mode)
    {
        _stream = buffered;
        _buffered = buffered.SafeFileHandle;
        _directHandle = direct;
        _direct = direct is not null;
        Alignment = alignment;
        _mode = mode;
    }

    /// <summary>Offsets, lengths and addresses of unbuffered writes are multiples of this.</summary>
    public int Alignment { get; }

    /// <summary>True while writes go out unbuffered.</summary>
    public bool IsUnbuffered => _direct;

    /// <summary>How bytes reach the disk, for the result and -Verbose: "unbuffered (...)" or "buffered: why".</summary>
    public string Mode => _mode;

    /// <summary>Bytes written unbuffered and through the ordinary handle (heads, tails, fallback).</summary>
    public long UnbufferedBytes => Interlocked.Read(ref _unbufferedBytes);
    public long BufferedBytes => Interlocked.Read(ref _bufferedBytes);

    /// <summary>True when something was written since the last <see cref="Flush"/> (or the writer is new).</summary>
    public bool HasUnflushedWrites => Volatile.Read(ref _dirty) != 0;

    /// <summary>
    /// A writer for the file or device open as <paramref name="buffered"/> (an unbuffered FileStream, not owned: the
    /// caller keeps it for reads, length changes and closing) at <paramref name="path"/>. Never fails for lack of unbuffered I/O: it
    /// falls back and says so in <see cref="Mode"/>.
    /// </summary>
    public static UnbufferedFileWriter Open(FileStream buffered, string path)
    {
        if (string.Equals(Environment.GetEnvironmentVariable(ModeVariable), "buffered", StringComparison.OrdinalIgnoreCase))
            return Buffered(buffered, $"buffered: {ModeVariable}=buffered");
        try
        {
            if (OperatingSystem.IsLinux()) return Linux.Open(buffered, path);
            if (OperatingSystem.IsWindows()) return Windows.Open(buffered);
            return Buffered(buffered, "buffered: no unbuffered I/O on this OS");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or Win32Exception or DllNotFoundException or EntryPointNotFoundException)
        {
            return Buffered(buffered, $"buffered: unbuffered open refused ({e.Message})");
        }
    }

    private static UnbufferedFileWriter Buffered(FileStream buffered, string why) => new(buffered, null, MinimumAlignment, why);

    /// <summary>Writes <paramref name="data"/> at <paramref name="offset"/>; safe from several threads at once (for disjoint ranges).</summary>
    public void Write(ReadOnlySpan<byte> data, long offset)
    {
        if (data.IsEmpty) return;
        long end = offset + data.Length;
        long mask = Alignment - 1;
        long first = (offset + mask) & ~mask, last = end & ~mask;
        if (!_direct || last <= first)
        {
            WriteBuffered(data, offset);
        }
        else
        {
            if (first > offset) WriteBuffered(data[..(int)(first - offset)], offset);
            WriteAligned(data[(int)(first - offset)..(int)(last - offset)], first);
            if (end > last) WriteBuffered(data[(int)(last - offset)..], last);
        }
        // Marked after the write: one that ends while a Flush runs is then flushed by the next one.
        Volatile.Write(ref _dirty, 1);
    }

    private void WriteBuffered(ReadOnlySpan<byte> data, long offset)
    {
        RandomAccess.Write(_buffered, data, offset);
        Interlocked.Add(ref _bufferedBytes, data.Length);
        if (Interlocked.Add(ref _sinceWriteback, data.Length) >= WritebackInterval)
        {
            Interlocked.Exchange(ref _sinceWriteback, 0);
            if (OperatingSystem.IsLinux()) Linux.BoundWriteback(_buffered);
        }
    }

    private unsafe void WriteAligned(ReadOnlySpan<byte> data, long offset)
    {
        fixed (byte* p = data)
        {
            if (((nint)p & (Alignment - 1)) == 0)
            {
                if (TryDirect(data, offset)) return;
                WriteBuffered(data, offset);
                return;
            }
        }
        // Unaligned memory (a managed array): copy through an aligned buffer, a piece at a time.
        IntPtr bounce = RentBounce();
        try
        {
            var buffer = new Span<byte>((void*)bounce, BounceSize);
            while (!data.IsEmpty)
            {
                int n = Math.Min(BounceSize, data.Length);
                data[..n].CopyTo(buffer);
                if (!TryDirect(buffer[..n], offset)) WriteBuffered(data[..n], offset);
                data = data[n..];
                offset += n;
            }
        }
        finally
        {
            _bounce.Add(bounce);
        }
    }

    /// <summary>An unbuffered write; false (and buffered from now on) when the file system refuses it.</summary>
    private bool TryDirect(ReadOnlySpan<byte> data, long offset)
    {
        if (!_direct) return false;
        try
        {
            RandomAccess.Write(_directHandle!, data, offset);
            Interlocked.Add(ref _unbufferedBytes, data.Length);
            return true;
        }
        catch (IOException e) when (IsRefusal(e))
        {
            // Accepted at open but refused on write (EINVAL: alignment the file system wants larger, or no
            // direct I/O after all): fall back for good; the handle is closed with the writer.
            _mode = $"buffered: unbuffered write refused ({e.Message})";
            _direct = false;
            return false;
        }
    }

    private static bool IsRefusal(IOException e)
    {
        // Linux EINVAL (22) / EOPNOTSUPP (95); Windows ERROR_INVALID_PARAMETER (87) / ERROR_NOT_SUPPORTED (50).
        int code = e.HResult & 0xFFFF;
        return code is 22 or 95 or 87 or 50 || e.Message.Contains("Invalid argument", StringComparison.OrdinalIgnoreCase);
    }

    private unsafe IntPtr RentBounce() =>
        _bounce.TryTake(out var p) ? p : (IntPtr)NativeMemory.AlignedAlloc(BounceSize, (nuint)Math.Max(Alignment, MinimumAlignment));

    /// <summary>
    /// Makes everything written durable: one fsync / FlushFileBuffers, skipped when nothing was written since the
    /// last one (a restore's last checkpoint and its commit then cost one flush, not two). After it, the buffered
    /// fallback drops the pages it wrote from the page cache.
    /// </summary>
    public void Flush()
    {
        if (Interlocked.Exchange(ref _dirty, 0) == 0) return;
        try
        {
            _stream.Flush(flushToDisk: true);
        }
        catch
        {
            Volatile.Write(ref _dirty, 1);
            throw;
        }
        if (OperatingSystem.IsLinux() && Interlocked.Read(ref _bufferedBytes) > 0) Linux.BoundWriteback(_buffered);
    }

    public unsafe void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _directHandle?.Dispose();
        while (_bounce.TryTake(out var p)) NativeMemory.AlignedFree((void*)p);
    }

    private static unsafe class Linux
    {
        private const int AT_FDCWD = -100, O_RDWR = 0x2, O_CLOEXEC = 0x80000;
        private const uint STATX_DIOALIGN = 0x2000;
        private const int StatxSize = 256, OffMask = 0x00, OffDioMemAlign = 0x98, OffDioOffsetAlign = 0x9C;
        private const uint SYNC_FILE_RANGE_WRITE = 2;
        private const int POSIX_FADV_DONTNEED = 4;

        // O_DIRECT differs between architectures (asm-generic 0x4000; arm/arm64 0x10000).
        private static int ODirect => RuntimeInformation.ProcessArchitecture is Architecture.Arm64 or Architecture.Arm ? 0x10000 : 0x4000;

        [DllImport("libc", EntryPoint = "open", SetLastError = true)]
        private static extern int OpenFile([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

        [DllImport("libc", SetLastError = true)]
        private static extern int statx(int dirfd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, uint mask, byte* buffer);

        [DllImport("libc", SetLastError = true)]
        private static extern int sync_file_range(SafeFileHandle fd, long offset, long nbytes, uint flags);

        [DllImport("libc", SetLastError = true)]
        private static extern int posix_fadvise(SafeFileHandle fd, long offset, long len, int advice);

        public static UnbufferedFileWriter Open(FileStream buffered, string path)
        {
            int alignment = MinimumAlignment;
            // statx STATX_DIOALIGN (Linux 6.1+): the file system's own answer; 0 means no direct I/O for this file.
            byte* sx = stackalloc byte[StatxSize];
            new Span<byte>(sx, StatxSize).Clear();
            if (statx(AT_FDCWD, path, 0, STATX_DIOALIGN, sx) == 0 && (*(uint*)(sx + OffMask) & STATX_DIOALIGN) != 0)
            {
                uint mem = *(uint*)(sx + OffDioMemAlign), off = *(uint*)(sx + OffDioOffsetAlign);
                if (off == 0 || mem == 0) return Buffered(buffered, "buffered: the file system does not support O_DIRECT (statx)");
                alignment = (int)Math.Max(alignment, Math.Max(mem, off));
            }
            int fd = OpenFile(path, O_RDWR | O_CLOEXEC | ODirect);
            if (fd < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                return Buffered(buffered, $"buffered: O_DIRECT open refused ({Marshal.GetPInvokeErrorMessage(errno)})");
            }
            return new UnbufferedFileWriter(buffered, new SafeFileHandle(fd, ownsHandle: true), alignment,
                $"unbuffered (O_DIRECT, {alignment}-byte alignment)");
        }

        /// <summary>
        /// Buffered fallback: starts writeback of everything dirty in the file and drops the pages already clean (all
        /// of them after an fsync), so the file never holds much more than one interval of dirty pages.
        /// </summary>
        public static void BoundWriteback(SafeFileHandle fd)
        {
            sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
            posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        }
    }

    /// <summary>Written from the Win32 documentation; not run here (no Windows in CI or on the build machine).</summary>
    private static unsafe class Windows
    {
        private const uint GENERIC_WRITE = 0x40000000, FILE_SHARE_READ = 1, FILE_SHARE_WRITE = 2;
        private const uint FILE_FLAG_NO_BUFFERING = 0x20000000, FILE_FLAG_WRITE_THROUGH = 0x80000000;
        private const int FileStorageInfo = 16; // FILE_INFO_BY_HANDLE_CLASS

        // FILE_STORAGE_INFO: seven ULONGs.
        [StructLayout(LayoutKind.Sequential)]
        private struct FILE_STORAGE_INFO
        {
            public uint LogicalBytesPerSector;
            public uint PhysicalBytesPerSectorForAtomicity;
            public uint PhysicalBytesPerSectorForPerformance;
            public uint FileSystemEffectivePhysicalBytesPerSectorForAtomicity;
            public uint Flags;
            public uint ByteOffsetForSectorAlignment;
            public uint ByteOffsetForPartitionAlignment;
        }

        [DllImport("kernel32.dll", SetLastError = true)]
        private static extern SafeFileHandle ReOpenFile(SafeFileHandle original, uint desiredAccess, uint shareMode, uint flagsAndAttributes);

        [DllImport("kernel32.dll", SetLastError = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        private static extern bool GetFileInformationByHandleEx(SafeFileHandle file, int infoClass, FILE_STORAGE_INFO* info, uint size);

        public static UnbufferedFileWriter Open(FileStream buffered)
        {
            // FILE_FLAG_NO_BUFFERING: offsets, lengths and buffer addresses must be multiples of the volume's sector
            // size; the physical sector size (for performance) is used when larger than the logical one, and never
            // less than a page (our bounce buffers and chunk buffers are page-aligned anyway).
            int alignment = MinimumAlignment;
            FILE_STORAGE_INFO info;
            if (GetFileInformationByHandleEx(buffered.SafeFileHandle, FileStorageInfo, &info, (uint)sizeof(FILE_STORAGE_INFO)))
                alignment = (int)Math.Max((uint)alignment, Math.Max(info.LogicalBytesPerSector, info.PhysicalBytesPerSectorForPerformance));
            // A device's geometry comes from its DeviceInfo (IOCTL_DISK_GET_DRIVE_GEOMETRY_EX) when FileStorageInfo does
            // not answer for it; sectors larger than a page are rare and make the first write fail, which falls back.
            var direct = ReOpenFile(buffered.SafeFileHandle, GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE, FILE_FLAG_NO_BUFFERING | FILE_FLAG_WRITE_THROUGH);
            if (direct.IsInvalid)
            {
                int error = Marshal.GetLastPInvokeError();
                direct.Dispose();
                return Buffered(buffered, $"buffered: FILE_FLAG_NO_BUFFERING refused ({new Win32Exception(error).Message})");
            }
            return new UnbufferedFileWriter(buffered, direct, alignment,
                $"unbuffered (FILE_FLAG_NO_BUFFERING | FILE_FLAG_WRITE_THROUGH, {alignment}-byte alignment)");
        }
    }
}
