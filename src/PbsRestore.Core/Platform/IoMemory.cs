using System.Buffers;
using System.Runtime.InteropServices;

namespace PbsRestore.Platform;

/// <summary>
/// A block of native memory that unbuffered writes go out from (<see cref="UnbufferedFileWriter"/>), outside the GC
/// heap. A block of at least <see cref="HugePage"/> bytes is aligned to it and, on Linux, marked MADV_HUGEPAGE, so the
/// kernel backs it with transparent huge pages (THP "always" or "madvise"): an O_DIRECT write of a 4 MiB chunk then
/// pins two pages instead of 1024 and reaches the device as one request instead of being split at the queue's
/// segment limit (254 on virtio-blk). Measured here (bench/RESULTS.md, issue 14): a third of the system time per GiB
/// and about 1.5× the throughput at the same queue depth. Smaller blocks, and other systems, get page-aligned memory.
/// Not thread-safe to dispose while in use: its owner (a pool) frees it once every user is done.
/// </summary>
internal sealed unsafe class IoMemory : IDisposable
{
    public const int HugePage = 2 << 20;
    private const int Page = 4096;

    private byte* _block;
    private readonly nuint _mapped; // bytes mmapped (Linux huge-page path), 0 for NativeMemory

    public IoMemory(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        Length = length;
        if (OperatingSystem.IsLinux() && length >= HugePage)
        {
            nuint whole = (nuint)(((long)length + HugePage - 1) & ~(long)(HugePage - 1)); // a partial huge page could not be one
            _block = Linux.MapHuge(whole);
            if (_block is not null) _mapped = whole;
        }
        if (_block is null) _block = (byte*)NativeMemory.AlignedAlloc((nuint)length, Page);
    }

    public int Length { get; }

    /// <summary>True when the block is on huge-page boundaries with huge pages asked for.</summary>
    public bool HugePageAligned => _mapped != 0;

    /// <summary>Where the block starts (for alignment checks).</summary>
    public nint Address => (nint)_block;

    public Span<byte> Span => _block is null ? throw new ObjectDisposedException(nameof(IoMemory)) : new(_block, Length);

    /// <summary>The block as <see cref="Memory{T}"/>, for async code (the chunk decoder's reread loop).</summary>
    public Memory<byte> Memory => (_manager ??= new Manager(this)).Memory;

    private Manager? _manager;

    /// <summary>Memory over the native block; it never moves, so pinning is a no-op.</summary>
    private sealed class Manager(IoMemory owner) : MemoryManager<byte>
    {
        public override Span<byte> GetSpan() => owner.Span;
        public override MemoryHandle Pin(int elementIndex = 0) => new(owner._block + elementIndex);
        public override void Unpin() { }
        protected override void Dispose(bool disposing) { }
    }

    public void Dispose()
    {
        var block = _block;
        if (block is null) return;
        _block = null;
        if (_mapped != 0) Linux.Unmap(block, _mapped);
        else NativeMemory.AlignedFree(block);
    }

    private static class Linux
    {
        private const int PROT_READ = 1, PROT_WRITE = 2, MAP_PRIVATE = 2, MAP_ANONYMOUS = 0x20, MADV_HUGEPAGE = 14;

        [DllImport("libc", SetLastError = true)]
        private static extern nint mmap(nint addr, nuint length, int prot, int flags, int fd, nint offset);

        [DllImport("libc", SetLastError = true)]
        private static extern int munmap(nint addr, nuint length);

        [DllImport("libc", SetLastError = true)]
        private static extern int madvise(nint addr, nuint length, int advice);

        /// <summary>An anonymous mapping trimmed to huge-page boundaries and marked for huge pages; null when mmap fails.</summary>
        public static byte* MapHuge(nuint length)
        {
            nuint over = length + HugePage;
            nint raw = mmap(0, over, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (raw == -1) return null;
            nint start = (raw + HugePage - 1) & ~(nint)(HugePage - 1);
            if (start > raw) munmap(raw, (nuint)(start - raw));
            nint end = start + (nint)length, rawEnd = raw + (nint)over;
            if (rawEnd > end) munmap(end, (nuint)(rawEnd - end));
            madvise(start, length, MADV_HUGEPAGE); // advice only: without THP this is still page-aligned memory
            return (byte*)start;
        }

        public static void Unmap(byte* block, nuint length) => munmap((nint)block, length);
    }
}
