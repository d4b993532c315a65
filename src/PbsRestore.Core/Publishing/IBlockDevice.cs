namespace PbsRestore.Publishing;

/// <summary>
/// A disk as a block target sees it: fixed length, fixed logical block size, read and (unless read-only) written at
/// any block-aligned offset. The iSCSI target serves LUNs through this seam only, so it never knows whether the
/// blocks come from a backup archive with a write overlay, a plain file (tests), or memory (fuzzing).
/// Implementations must allow concurrent calls; a read must never return bytes that failed verification
/// (throw <see cref="BlockDeviceException"/> with <see cref="BlockDeviceError.Medium"/> instead).
/// </summary>
public interface IBlockDevice
{
    /// <summary>Capacity in bytes (a multiple of <see cref="BlockSize"/>).</summary>
    long Length { get; }

    /// <summary>Logical block size in bytes (512 unless the device says otherwise).</summary>
    int BlockSize { get; }

    /// <summary>True when writes are refused (the target reports a write-protected disk).</summary>
    bool ReadOnly { get; }

    /// <summary>Reads exactly <paramref name="buffer"/>.Length bytes at <paramref name="offset"/>.</summary>
    ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct);

    /// <summary>Writes <paramref name="data"/> at <paramref name="offset"/>; throws <see cref="BlockDeviceException"/> (WriteProtected) when read-only.</summary>
    ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken ct);

    /// <summary>Makes completed writes durable (SYNCHRONIZE CACHE).</summary>
    ValueTask FlushAsync(CancellationToken ct);

    /// <summary>Discards a range (UNMAP); later reads of it return zeros. Devices that cannot may ignore it.</summary>
    ValueTask UnmapAsync(long offset, long length, CancellationToken ct);

    /// <summary>
    /// From <paramref name="offset"/> on: whether the bytes are known to be zeros that are not stored (a backup's zero
    /// chunks, unmapped ranges), and how far that holds (at least one byte; a shorter answer than the truth is fine,
    /// the caller asks again). GET LBA STATUS answers with it, so an initiator copying the disk (qemu-img, dd with
    /// sparse output) skips what it need not read. By default everything is stored.
    /// </summary>
    BlockExtent ExtentAt(long offset) => new(Length - offset, Deallocated: false);

    /// <summary>
    /// The device's own bytes from <paramref name="offset"/> on (at most <paramref name="maxLength"/>, whole blocks), lent
    /// without a copy when it holds them in memory (a backup's cached chunk), so a target can send them as they are; an empty
    /// lease when it does not, and the caller reads into a buffer of its own instead. Fails as <see cref="ReadAsync"/>
    /// does. Dispose the lease once the bytes are sent. By default nothing is lent.
    /// </summary>
    ValueTask<BlockLease> LeaseAsync(long offset, int maxLength, CancellationToken ct) => default;
}

/// <summary>Bytes a block device lends (<see cref="IBlockDevice.LeaseAsync"/>); empty when it lent nothing.</summary>
public readonly struct BlockLease(ReadOnlyMemory<byte> data, Access.ChunkedArchiveReader.ChunkLease chunk = default) : IDisposable
{
    public ReadOnlyMemory<byte> Data { get; } = data;
    public bool IsEmpty => Data.IsEmpty;
    public void Dispose() => chunk.Dispose();
}

/// <summary>A run of bytes in one provisioning state (<see cref="IBlockDevice.ExtentAt"/>).</summary>
public readonly record struct BlockExtent(long Length, bool Deallocated);

/// <summary>Why a block device refused an operation; the target maps each to SCSI sense data.</summary>
public enum BlockDeviceError
{
    /// <summary>Bytes could not be read or verified (MEDIUM ERROR, unrecovered read error).</summary>
    Medium,

    /// <summary>The device is read-only (DATA PROTECT, write protected).</summary>
    WriteProtected,

    /// <summary>Offset or length outside the device (ILLEGAL REQUEST, LBA out of range).</summary>
    OutOfRange,

    /// <summary>The backing source is gone for now (NOT READY / retry later).</summary>
    NotReady,
}

/// <summary>A block device operation that failed with a reason the target can report as sense data.</summary>
public sealed class BlockDeviceException(BlockDeviceError error, string message, Exception? inner = null)
    : Exception(message, inner)
{
    public BlockDeviceError Error { get; } = error;
}
