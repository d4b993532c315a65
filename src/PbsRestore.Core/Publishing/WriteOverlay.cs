using System.Buffers.Binary;
using System.Text;
using Microsoft.Win32.SafeHandles;
using PbsRestore.Platform;

namespace PbsRestore.Publishing;

/// <summary>What the overlay knows of one of its blocks.</summary>
public enum OverlayBlockState
{
    /// <summary>Never written: the backup's bytes show through.</summary>
    Backing,

    /// <summary>Written: the overlay file holds the block.</summary>
    Written,

    /// <summary>Unmapped (discarded): reads return zeros.</summary>
    Zero,
}

/// <summary>
/// The writes made to a published disk, kept apart from the backup: a sparse file as long as the disk (a written
/// block sits at its own offset, everything else is a hole) and a map of which blocks were written or unmapped.
/// Block granularity is fixed per overlay (4 KiB by default: what NTFS and ext4 write, so most writes need no
/// read-modify-write). The map lives in memory as two bitmaps, allocated 1 GiB of disk at a time, and is saved
/// beside the file (<c>&lt;file&gt;.map</c>, with the archive's identity) when the overlay is kept, so that a kept
/// overlay can be published again on top of the same archive and of nothing else.
/// Thread-safety: state reads are lock-free; the caller serialises mutations (ArchiveBlockDevice does).
/// </summary>
public sealed class WriteOverlay : IDisposable
{
    public const int DefaultBlockSize = 4096;
    private const int BlocksPerRegion = 1 << 18; // 1 GiB of 4 KiB blocks per bitmap region
    private const int WordsPerRegion = BlocksPerRegion / 64;
    private static ReadOnlySpan<byte> MapMagic => "PBSOVMP1"u8;

    private readonly SafeFileHandle _file;
    private readonly FileStream _stream; // for fsync (Flush(true)); I/O goes through RandomAccess on the handle
    private readonly ulong[]?[] _written, _zero;
    private readonly string _identity;
    private long _writtenBlocks;
    private volatile bool _mapDirty = true;
    private readonly object _saveLock = new();
    private int _disposed;

    private WriteOverlay(string path, FileStream stream, long length, int blockSize, string identity, bool created)
    {
        Path = path;
        _stream = stream;
        _file = stream.SafeFileHandle;
        Length = length;
        BlockSize = blockSize;
        _identity = identity;
        Created = created;
        long blocks = BlockCount;
        int regions = (int)((blocks + BlocksPerRegion - 1) / BlocksPerRegion);
        _written = new ulong[]?[regions];
        _zero = new ulong[]?[regions];
    }

    /// <summary>The overlay file (the map is <see cref="MapPath"/>).</summary>
    public string Path { get; }
    public string MapPath => MapPathFor(Path);
    public static string MapPathFor(string path) => path + ".map";

    public long Length { get; }
    public int BlockSize { get; }
    public long BlockCount => (Length + BlockSize - 1) / BlockSize;

    /// <summary>False when an overlay kept earlier was opened again.</summary>
    public bool Created { get; }

    /// <summary>Keep file and map at dispose (else both are deleted).</summary>
    public bool Keep { get; set; }

    /// <summary>Blocks the overlay file holds (written and not unmapped since).</summary>
    public long WrittenBlocks => Interlocked.Read(ref _writtenBlocks);

    /// <summary>True once anything was written or unmapped (reads can skip the map while false).</summary>
    public bool IsEmpty { get; private set; } = true;

    /// <summary>
    /// Creates an overlay at <paramref name="path"/> (a new file in the temp folder when null), or opens one kept
    /// earlier there: that needs its map, made for the same archive (<paramref name="identity"/>), length and block size.
    /// </summary>
    public static WriteOverlay Open(string? path, long length, string identity, int blockSize = DefaultBlockSize, bool keep = false)
    {
        if (blockSize < 512 || (blockSize & (blockSize - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(blockSize), blockSize, "a power of two, 512 or more");
        path ??= System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"pbsrestore-overlay-{Guid.NewGuid():N}.img");
        path = System.IO.Path.GetFullPath(path);
        bool exists = File.Exists(path);
        if (!exists && File.Exists(MapPathFor(path)))
            File.Delete(MapPathFor(path)); // a map whose file is gone describes nothing
        if (exists && !File.Exists(MapPathFor(path)))
            throw new PbsException("OverlayNotAnOverlay", PbsErrorKind.ResourceExists,
                $"'{path}' exists but has no overlay map ('{MapPathFor(path)}'): it is not an overlay kept by Unpublish-PbsImage -KeepOverlay; choose another -OverlayPath");
        var stream = new FileStream(path, exists ? FileMode.Open : FileMode.CreateNew, FileAccess.ReadWrite, FileShare.Read, 1,
            FileOptions.Asynchronous | FileOptions.RandomAccess);
        try
        {
            var overlay = new WriteOverlay(path, stream, length, blockSize, identity, created: !exists) { Keep = keep };
            if (exists) overlay.LoadMap();
            else
            {
                SparseFiles.PrepareSparse(stream.SafeFileHandle);
                stream.SetLength(overlay.BlockCount * blockSize);
            }
            return overlay;
        }
        catch
        {
            stream.Dispose();
            if (!exists) File.Delete(path);
            throw;
        }
    }

    public OverlayBlockState StateOf(long block)
    {
        if (IsSet(_written, block)) return OverlayBlockState.Written;
        return IsSet(_zero, block) ? OverlayBlockState.Zero : OverlayBlockState.Backing;
    }

    /// <summary>
    /// The state of the block holding byte <paramref name="offset"/>, and how many bytes from there (at most
    /// <paramref name="max"/>) lie in blocks of that same state: one read of the backup or of this file covers them.
    /// </summary>
    public (OverlayBlockState State, int Length) RunAt(long offset, int max)
    {
        var state = StateOf(offset / BlockSize);
        long run = BlockSize - offset % BlockSize;
        while (run < max && StateOf((offset + run) / BlockSize) == state) run += BlockSize;
        return (state, (int)Math.Min(run, max));
    }

    /// <summary>Reads whole bytes of the overlay file (only meaningful for Written blocks).</summary>
    public async ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct)
    {
        int done = 0;
        while (done < buffer.Length)
        {
            int n = await RandomAccess.ReadAsync(_file, buffer[done..], offset + done, ct).ConfigureAwait(false);
            if (n <= 0) throw new IOException($"overlay '{Path}' ends before offset {offset + done}");
            done += n;
        }
    }

    /// <summary>Writes whole blocks at <paramref name="firstBlock"/>, then marks them written (data before map, so a
    /// concurrent read never sees a block marked written whose bytes are not there yet).</summary>
    public async ValueTask WriteBlocksAsync(long firstBlock, ReadOnlyMemory<byte> blocks, CancellationToken ct)
    {
        if (blocks.Length % BlockSize != 0) throw new ArgumentException("whole blocks only", nameof(blocks));
        await RandomAccess.WriteAsync(_file, blocks, firstBlock * BlockSize, ct).ConfigureAwait(false);
        IsEmpty = false;
        long count = blocks.Length / BlockSize;
        for (long b = firstBlock; b < firstBlock + count; b++)
        {
            if (Set(_written, b, true)) Interlocked.Increment(ref _writtenBlocks);
            Set(_zero, b, false);
        }
        _mapDirty = true; // after the bits: a map saved concurrently is saved again at the next flush
    }

    /// <summary>Marks whole blocks unmapped: they read as zeros; their bytes in the file are dropped where the OS can.</summary>
    public void MarkZero(long firstBlock, long count)
    {
        IsEmpty = false;
        for (long b = firstBlock; b < firstBlock + count; b++)
        {
            Set(_zero, b, true);
            if (Set(_written, b, false)) Interlocked.Decrement(ref _writtenBlocks);
        }
        _mapDirty = true;
    }

    /// <summary>Makes the written blocks durable (fsync), and the map too when the overlay is kept.</summary>
    public void Flush()
    {
        _stream.Flush(flushToDisk: true);
        if (Keep)
            lock (_saveLock) SaveMap();
    }

    // Bitmaps: a region's words are allocated on its first set bit; Interlocked keeps concurrent updates whole.
    private static bool IsSet(ulong[]?[] map, long block)
    {
        var region = Volatile.Read(ref map[block / BlocksPerRegion]);
        if (region is null) return false;
        long bit = block % BlocksPerRegion;
        return (Volatile.Read(ref region[bit >> 6]) & (1UL << (int)(bit & 63))) != 0;
    }

    /// <summary>Sets or clears a bit; true when it changed.</summary>
    private static bool Set(ulong[]?[] map, long block, bool value)
    {
        ref var slot = ref map[block / BlocksPerRegion];
        var region = Volatile.Read(ref slot);
        if (region is null)
        {
            if (!value) return false;
            Interlocked.CompareExchange(ref slot, new ulong[WordsPerRegion], null);
            region = Volatile.Read(ref slot)!;
        }
        long bit = block % BlocksPerRegion;
        ulong mask = 1UL << (int)(bit & 63);
        ulong before = value ? Interlocked.Or(ref region[bit >> 6], mask) : Interlocked.And(ref region[bit >> 6], ~mask);
        return ((before & mask) != 0) != value;
    }

    /// <summary>
    /// The map file: magic, block size, length, identity, then runs of (first block, count, state) for every block
    /// not Backing. Written to a temporary name, synced and renamed, so a crash leaves the old map or the new one.
    /// </summary>
    private void SaveMap()
    {
        if (!_mapDirty && File.Exists(MapPath)) return;
        _mapDirty = false;
        var runs = new List<(long First, long Count, byte State)>();
        long start = -1;
        var current = OverlayBlockState.Backing;
        for (long b = 0; b < BlockCount;)
        {
            // Outside a run, skip what holds no bits: whole regions never touched, then 64 blocks at a time, so a
            // flush of a large disk with a few writes costs little (SYNCHRONIZE CACHE comes often).
            if (current == OverlayBlockState.Backing && (b & 63) == 0)
            {
                long region = b / BlocksPerRegion;
                ulong[]? w = Volatile.Read(ref _written[region]), z = Volatile.Read(ref _zero[region]);
                if (w is null && z is null) { b = (region + 1) * BlocksPerRegion; continue; }
                long word = (b % BlocksPerRegion) >> 6;
                if ((w is null || Volatile.Read(ref w[word]) == 0) && (z is null || Volatile.Read(ref z[word]) == 0)) { b += 64; continue; }
            }
            var s = StateOf(b);
            if (s != current)
            {
                if (current != OverlayBlockState.Backing) runs.Add((start, b - start, (byte)current));
                current = s;
                start = b;
            }
            b++;
        }
        if (current != OverlayBlockState.Backing) runs.Add((start, BlockCount - start, (byte)current));
        string tmp = MapPath + ".tmp";
        using (var f = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            var id = Encoding.UTF8.GetBytes(_identity);
            var head = new byte[8 + 4 + 8 + 4 + id.Length + 8];
            MapMagic.CopyTo(head);
            BinaryPrimitives.WriteInt32LittleEndian(head.AsSpan(8), BlockSize);
            BinaryPrimitives.WriteInt64LittleEndian(head.AsSpan(12), Length);
            BinaryPrimitives.WriteInt32LittleEndian(head.AsSpan(20), id.Length);
            id.CopyTo(head.AsSpan(24));
            BinaryPrimitives.WriteInt64LittleEndian(head.AsSpan(24 + id.Length), runs.Count);
            f.Write(head);
            var rec = new byte[17];
            foreach (var (first, count, state) in runs)
            {
                BinaryPrimitives.WriteInt64LittleEndian(rec, first);
                BinaryPrimitives.WriteInt64LittleEndian(rec.AsSpan(8), count);
                rec[16] = state;
                f.Write(rec);
            }
            f.Flush(flushToDisk: true);
        }
        File.Move(tmp, MapPath, overwrite: true);
    }

    private void LoadMap()
    {
        byte[] data = File.ReadAllBytes(MapPath);
        var s = data.AsSpan();
        PbsException Bad(string why) => new("OverlayMismatch", PbsErrorKind.InvalidArgument,
            $"the kept overlay '{Path}' cannot be used here: {why}");
        if (s.Length < 32 || !s[..8].SequenceEqual(MapMagic)) throw Bad("its map is damaged or not an overlay map");
        int blockSize = BinaryPrimitives.ReadInt32LittleEndian(s[8..]);
        long length = BinaryPrimitives.ReadInt64LittleEndian(s[12..]);
        int idLength = BinaryPrimitives.ReadInt32LittleEndian(s[20..]);
        if (idLength < 0 || 24 + idLength + 8 > s.Length) throw Bad("its map is damaged");
        string identity = Encoding.UTF8.GetString(s.Slice(24, idLength));
        if (identity != _identity) throw Bad($"it was made for another archive ({identity}), not {_identity}");
        if (length != Length || blockSize != BlockSize) throw Bad($"it was made for a disk of {length} bytes in {blockSize}-byte blocks, not {Length} in {BlockSize}");
        long runs = BinaryPrimitives.ReadInt64LittleEndian(s[(24 + idLength)..]);
        var body = s[(32 + idLength)..];
        if (runs < 0 || body.Length != runs * 17) throw Bad("its map is damaged (truncated)");
        for (int i = 0; i < runs; i++)
        {
            var rec = body.Slice(i * 17, 17);
            long first = BinaryPrimitives.ReadInt64LittleEndian(rec);
            long count = BinaryPrimitives.ReadInt64LittleEndian(rec[8..]);
            if (first < 0 || count <= 0 || first + count > BlockCount || rec[16] is not (1 or 2)) throw Bad("its map is damaged (a run out of range)");
            for (long b = first; b < first + count; b++)
            {
                if (rec[16] == (byte)OverlayBlockState.Written)
                {
                    if (Set(_written, b, true)) _writtenBlocks++;
                }
                else Set(_zero, b, true);
            }
            IsEmpty = false;
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        try
        {
            if (Keep) Flush();
        }
        finally
        {
            _stream.Dispose();
            if (!Keep)
            {
                File.Delete(Path);
                File.Delete(MapPath);
            }
        }
    }
}
