using PbsRestore.Access;
using PbsRestore.Formats;
using PbsRestore.Sources;

namespace PbsRestore.Publishing;

/// <summary>How an <see cref="ArchiveBlockDevice"/> is opened.</summary>
public sealed record ArchiveBlockDeviceOptions
{
    /// <summary>Refuse writes (the target reports a write-protected disk); no overlay is created.</summary>
    public bool ReadOnly { get; init; }

    /// <summary>The overlay file; a new file in the temp folder when null. An existing kept overlay is opened again.</summary>
    public string? OverlayPath { get; init; }

    /// <summary>Keep the overlay (file and map) at dispose.</summary>
    public bool KeepOverlay { get; init; }

    /// <summary>Logical block size the device reports.</summary>
    public int BlockSize { get; init; } = 512;

    /// <summary>Granularity of the overlay's map; smaller writes are read-modify-write.</summary>
    public int OverlayBlockSize { get; init; } = WriteOverlay.DefaultBlockSize;

    /// <summary>Decoded chunks kept in memory, in bytes (null: the reader's default).</summary>
    public long? CacheBytes { get; init; }

    /// <summary>Chunks fetched ahead of a sequential reader.</summary>
    public int ReadAhead { get; init; } = 4;
}

/// <summary>
/// A disk archive of a backup (fixed index, or a dynamic one) as a block device: reads come from the archive
/// through a <see cref="ChunkedArchiveReader"/> (every chunk verified before a byte of it is served), writes go to
/// a <see cref="WriteOverlay"/> and never to the backup. Reads merge the two per overlay block. The capacity is
/// the archive's size rounded up to the block size; the bytes past the archive's end read as zeros.
/// A chunk that cannot be read (missing, damaged, a server that stays unreachable after the source's own
/// retries and reconnects) fails the read with <see cref="BlockDeviceError.Medium"/>, naming the chunk's digest
/// and offset; never with other bytes.
/// </summary>
public sealed class ArchiveBlockDevice : IBlockDevice, IDisposable
{
    private readonly ChunkedArchiveReader _backing;
    private readonly WriteOverlay? _overlay;
    private readonly SemaphoreSlim _mutate = new(1, 1); // writes and unmaps, one at a time (read-modify-write safety)
    private long _reads, _writes, _bytesRead, _bytesWritten, _mediumErrors;
    private int _disposed;

    public ArchiveBlockDevice(string name, ChunkedArchiveReader backing, ArchiveBlockDeviceOptions? options = null)
    {
        options ??= new ArchiveBlockDeviceOptions();
        if (options.BlockSize < 512 || (options.BlockSize & (options.BlockSize - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.BlockSize, "the block size must be a power of two, 512 or more");
        Name = name;
        _backing = backing;
        BlockSize = options.BlockSize;
        Length = (backing.Length + BlockSize - 1) / BlockSize * BlockSize;
        ReadOnly = options.ReadOnly;
        if (!ReadOnly)
            _overlay = WriteOverlay.Open(options.OverlayPath, Length, Identity(name, backing),
                Math.Max(options.OverlayBlockSize, BlockSize), options.KeepOverlay);
    }

    /// <summary>Opens a disk archive of a snapshot (checks as a restore does: manifest, key, index checksum).</summary>
    public static async Task<ArchiveBlockDevice> OpenAsync(ISnapshotReader snapshot, CryptConfig? crypt, string archive,
        ArchiveBlockDeviceOptions? options, CancellationToken ct)
    {
        var opened = await OpenedSnapshot.OpenAsync(snapshot, crypt, ct).ConfigureAwait(false);
        return await OpenAsync(opened.Open(archive), options, ct).ConfigureAwait(false);
    }

    /// <summary>Opens an archive the one opener has resolved and key-checked: reads and checks its index.</summary>
    public static async Task<ArchiveBlockDevice> OpenAsync(OpenedArchive archive, ArchiveBlockDeviceOptions? options, CancellationToken ct)
    {
        options ??= new ArchiveBlockDeviceOptions();
        var reader = await ArchiveAccess.OpenAsync(archive,
            new ChunkedReaderOptions { CacheBytes = options.CacheBytes, ReadAhead = options.ReadAhead }, ct).ConfigureAwait(false);
        try
        {
            return new ArchiveBlockDevice($"{archive.Snapshot.Snapshot}/{archive.DisplayName}", reader, options);
        }
        catch
        {
            reader.Dispose();
            throw;
        }
    }

    /// <summary>What a kept overlay is tied to: the archive's name and its index checksum.</summary>
    private static string Identity(string name, ChunkedArchiveReader backing) => $"{name} index {Hex.Lower(backing.Index.ComputeCsum())}";

    /// <summary>Snapshot and archive, for messages.</summary>
    public string Name { get; }
    public long Length { get; }
    public int BlockSize { get; }
    public bool ReadOnly { get; }

    /// <summary>The archive's own size (the device may be up to one block longer).</summary>
    public long ArchiveSize => _backing.Length;
    public ChunkedArchiveReader Backing => _backing;
    /// <summary>The overlay (null when read-only).</summary>
    public WriteOverlay? Overlay => _overlay;

    public long Reads => Interlocked.Read(ref _reads);
    public long Writes => Interlocked.Read(ref _writes);
    public long BytesRead => Interlocked.Read(ref _bytesRead);
    public long BytesWritten => Interlocked.Read(ref _bytesWritten);
    /// <summary>Reads failed with a medium error.</summary>
    public long MediumErrors => Interlocked.Read(ref _mediumErrors);

    /// <summary>Keep the overlay at dispose (Unpublish-PbsImage -KeepOverlay decides late).</summary>
    public bool KeepOverlay
    {
        get => _overlay?.Keep ?? false;
        set { if (_overlay is not null) _overlay.Keep = value; }
    }

    public async ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct)
    {
        CheckRange(offset, buffer.Length);
        Interlocked.Increment(ref _reads);
        if (_overlay is null || _overlay.IsEmpty)
            await ReadBackingAsync(offset, buffer, ct).ConfigureAwait(false);
        else
        {
            // Runs of blocks in one state: one read of the archive or of the overlay file per run.
            int done = 0;
            while (done < buffer.Length)
            {
                long at = offset + done;
                var (state, run) = _overlay.RunAt(at, buffer.Length - done);
                var part = buffer.Slice(done, run);
                switch (state)
                {
                    case OverlayBlockState.Written: await _overlay.ReadAsync(at, part, ct).ConfigureAwait(false); break;
                    case OverlayBlockState.Zero: part.Span.Clear(); break;
                    default: await ReadBackingAsync(at, part, ct).ConfigureAwait(false); break;
                }
                done += run;
            }
        }
        Interlocked.Add(ref _bytesRead, buffer.Length);
    }

    /// <summary>The archive's bytes (zeros past its end); any failure to read or verify a chunk is a medium error.</summary>
    private async ValueTask ReadBackingAsync(long offset, Memory<byte> buffer, CancellationToken ct)
    {
        int inArchive = (int)Math.Clamp(_backing.Length - offset, 0, buffer.Length);
        if (inArchive < buffer.Length) buffer.Span[inArchive..].Clear();
        try
        {
            int done = 0;
            while (done < inArchive)
            {
                int n = await _backing.ReadAtAsync(offset + done, buffer[done..inArchive], ct).ConfigureAwait(false);
                if (n <= 0) throw new PbsFormatException($"{Name}: the archive ends before offset {offset + done}", "ReadBeyondEnd");
                done += n;
            }
        }
        catch (Exception e) when (e is PbsException or IOException or HttpRequestException && !ct.IsCancellationRequested)
        {
            // Whatever landed in the buffer before the failure must not reach the initiator.
            buffer.Span.Clear();
            throw MediumError(e, offset, buffer.Length);
        }
    }

    private BlockDeviceException MediumError(Exception e, long offset, int length)
    {
        Interlocked.Increment(ref _mediumErrors);
        return new BlockDeviceException(BlockDeviceError.Medium, $"{Name}: reading {length} bytes at offset {offset} failed: {e.Message}", e);
    }

    /// <summary>
    /// The archive's cached chunk lent as it is (no copy into a read buffer), in whole blocks, where the overlay does
    /// not cover it; nothing in the archive's last partial block or past it, or where the overlay holds written or
    /// unmapped blocks (the caller reads those).
    /// </summary>
    public async ValueTask<BlockLease> LeaseAsync(long offset, int maxLength, CancellationToken ct)
    {
        CheckRange(offset, 0);
        maxLength = (int)Math.Min(maxLength, _backing.Length - offset);
        if (maxLength <= 0) return default;
        if (_overlay is { IsEmpty: false } overlay)
        {
            // Only the run of never-written blocks from here on: a write may land on the next one at any time.
            var (state, run) = overlay.RunAt(offset, maxLength);
            if (state != OverlayBlockState.Backing) return default;
            maxLength = run;
        }
        Access.ChunkedArchiveReader.ChunkLease lease;
        try
        {
            lease = await _backing.LeaseAsync(offset, maxLength, ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is PbsException or IOException or HttpRequestException && !ct.IsCancellationRequested)
        {
            throw MediumError(e, offset, maxLength);
        }
        // Whole blocks only, so that what the caller reads next starts on a block: a chunk of a dynamic index or the
        // archive's tail can end inside one, and the rest of that block is read (with the zeros past the end).
        int whole = lease.Data.Length / BlockSize * BlockSize;
        if (whole == 0)
        {
            lease.Dispose();
            return default; // nothing lent: the caller reads
        }
        Interlocked.Increment(ref _reads);
        Interlocked.Add(ref _bytesRead, whole);
        return new BlockLease(lease.Data[..whole], lease);
    }

    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        var overlay = WritableOverlay();
        CheckRange(offset, data.Length);
        if (data.Length == 0) return;
        await _mutate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            int block = overlay.BlockSize;
            long first = offset / block, last = (offset + data.Length - 1) / block;
            int headSkip = (int)(offset % block);
            int tailEnd = (int)((offset + data.Length) % block);
            // Whole blocks go straight to the overlay; a partial first or last block is read (overlay or backup),
            // patched and written whole. One buffer for the common aligned case is the caller's own memory.
            if (headSkip == 0 && tailEnd == 0)
                await overlay.WriteBlocksAsync(first, data, ct).ConfigureAwait(false);
            else
            {
                var merged = new byte[(last - first + 1) * block];
                // The last overlay block may reach past the disk's end (a disk of 512-byte sectors): read what exists.
                int Within(long blockIndex) => (int)Math.Min(block, Length - blockIndex * block);
                if (headSkip != 0) await ReadAsync(first * block, merged.AsMemory(0, Within(first)), ct).ConfigureAwait(false);
                if (tailEnd != 0 && (last != first || headSkip == 0))
                    await ReadAsync(last * block, merged.AsMemory(merged.Length - block, Within(last)), ct).ConfigureAwait(false);
                data.CopyTo(merged.AsMemory(headSkip));
                await overlay.WriteBlocksAsync(first, merged, ct).ConfigureAwait(false);
            }
        }
        finally
        {
            _mutate.Release();
        }
        Interlocked.Increment(ref _writes);
        Interlocked.Add(ref _bytesWritten, data.Length);
    }

    public ValueTask FlushAsync(CancellationToken ct)
    {
        _overlay?.Flush();
        return ValueTask.CompletedTask;
    }

    public async ValueTask UnmapAsync(long offset, long length, CancellationToken ct)
    {
        var overlay = WritableOverlay();
        CheckRange(offset, length);
        if (length == 0) return;
        int block = overlay.BlockSize;
        long firstWhole = (offset + block - 1) / block, endWhole = (offset + length) / block;
        // Partial blocks at either end are written with zeros (read-modify-write); whole blocks just become Zero.
        long headEnd = Math.Min(offset + length, firstWhole * block);
        if (headEnd > offset) await WriteAsync(offset, new byte[headEnd - offset], ct).ConfigureAwait(false);
        if (endWhole > firstWhole)
        {
            await _mutate.WaitAsync(ct).ConfigureAwait(false);
            try { overlay.MarkZero(firstWhole, endWhole - firstWhole); }
            finally { _mutate.Release(); }
        }
        long tailStart = Math.Max(endWhole * block, headEnd);
        if (offset + length > tailStart) await WriteAsync(tailStart, new byte[offset + length - tailStart], ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Zero chunks of the backup (never fetched) and unmapped blocks of the overlay are deallocated; written blocks and
    /// the backup's data chunks are stored. Past the archive's end the disk reads zeros: deallocated too. Scans at
    /// most a few thousand chunk or overlay-block steps per call, so an answer stays cheap however large the disk.
    /// </summary>
    public BlockExtent ExtentAt(long offset)
    {
        CheckRange(offset, 1);
        const int MaxSteps = 4096;
        bool first = DeallocatedAt(offset, out long next);
        long at = next;
        for (int step = 0; at < Length && step < MaxSteps; step++)
        {
            if (DeallocatedAt(at, out next) != first) break;
            at = next;
        }
        return new BlockExtent(Math.Min(at, Length) - offset, first);
    }

    /// <summary>Whether the byte at <paramref name="offset"/> is deallocated; <paramref name="next"/>: where that answer may change.</summary>
    private bool DeallocatedAt(long offset, out long next)
    {
        next = Length;
        if (_overlay is not null && !_overlay.IsEmpty)
        {
            long block = _overlay.BlockSize;
            next = (offset / block + 1) * block;
            switch (_overlay.StateOf(offset / block))
            {
                case OverlayBlockState.Written: return false;
                case OverlayBlockState.Zero: return true;
            }
        }
        if (offset >= _backing.Length) return true;
        int chunk = _backing.FindChunk(offset);
        var index = _backing.Index;
        next = Math.Min(next, index.OffsetOf(chunk) + index.LengthOf(chunk));
        return _backing.IsZeroChunk(chunk);
    }

    private WriteOverlay WritableOverlay() => _overlay ?? throw new BlockDeviceException(BlockDeviceError.WriteProtected,
        $"{Name} is published read-only: writes are refused");

    private void CheckRange(long offset, long length)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (offset < 0 || length < 0 || offset > Length - length)
            throw new BlockDeviceException(BlockDeviceError.OutOfRange,
                $"{Name}: {length} bytes at offset {offset} are outside the disk ({Length} bytes)");
    }

    /// <summary>Closes the archive; the overlay is deleted unless <see cref="KeepOverlay"/>.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        try
        {
            _overlay?.Dispose();
        }
        finally
        {
            _backing.Dispose();
            _mutate.Dispose();
        }
    }
}
