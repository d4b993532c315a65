using System.Buffers.Binary;
using System.Security.Cryptography;

namespace PbsRestore.Formats;

/// <summary>
/// A fixed index, <c>*.img.fidx</c> (upstream: pbs-datastore/src/fixed_index.rs): a 4096-byte header
/// (magic, uuid, ctime, index_csum, size, chunk_size) followed by ceil(size / chunk_size) digests.
/// Every chunk has chunk_size bytes except the last, which holds the remainder. Immutable.
/// </summary>
public sealed class FixedIndex : IChunkIndex
{
    /// <summary>Chunk sizes outside this range are refused as corrupt or hostile.</summary>
    public const int MinChunkSize = 512, MaxChunkSizeAllowed = 64 << 20;

    private readonly byte[] _data;

    private FixedIndex(byte[] data, long size, int chunkSize, int count)
    {
        _data = data;
        Size = size;
        ChunkSize = chunkSize;
        Count = count;
    }

    public long Size { get; }
    public int ChunkSize { get; }
    public int Count { get; }
    public int MaxChunkSize => ChunkSize;
    public Guid Uuid => new(_data.AsSpan(8, 16), bigEndian: true);
    public DateTimeOffset CTime => DateTimeOffset.FromUnixTimeSeconds(BinaryPrimitives.ReadInt64LittleEndian(_data.AsSpan(24)));

    /// <summary>The checksum the header claims; restore trusts only <see cref="ComputeCsum"/> compared with the manifest.</summary>
    public ReadOnlySpan<byte> HeaderCsum => _data.AsSpan(32, 32);

    /// <summary>Parses a whole .fidx file. <paramref name="source"/> names it in errors.</summary>
    public static FixedIndex Parse(byte[] data, string? source = null)
    {
        string where = source ?? "fixed index";
        if (data.Length < FileFormats.IndexHeaderSize)
            throw new PbsFormatException($"{where}: truncated, {data.Length} bytes is less than the {FileFormats.IndexHeaderSize}-byte header", "IndexTruncated");
        if (!data.AsSpan(0, 8).SequenceEqual(FileFormats.FixedIndexMagic))
            throw new PbsFormatException($"{where}: not a fixed index (bad magic at offset 0)", "IndexBadMagic");
        ulong size = BinaryPrimitives.ReadUInt64LittleEndian(data.AsSpan(64));
        ulong chunkSize = BinaryPrimitives.ReadUInt64LittleEndian(data.AsSpan(72));
        if (chunkSize < MinChunkSize || chunkSize > MaxChunkSizeAllowed || (chunkSize & (chunkSize - 1)) != 0)
            throw new PbsFormatException($"{where}: chunk size {chunkSize} at offset 72 is not a power of two between {MinChunkSize} and {MaxChunkSizeAllowed}", "IndexBadChunkSize");
        // 2^50 bytes (1 PiB) is far beyond any disk image and keeps the arithmetic below exact.
        if (size > 1UL << 50)
            throw new PbsFormatException($"{where}: image size {size} at offset 64 is absurd", "IndexBadSize");
        ulong count = (size + chunkSize - 1) / chunkSize;
        ulong expected = FileFormats.IndexHeaderSize + count * ChunkDigest.Size;
        if ((ulong)data.LongLength != expected)
            throw new PbsFormatException(
                $"{where}: size disagrees with length: header says {size} bytes in {count} chunks of {chunkSize}, so the file should have {expected} bytes, but it has {data.LongLength}" +
                ((ulong)data.LongLength < expected ? $" (truncated at offset {data.LongLength})" : ""),
                "IndexSizeMismatch");
        if (count > int.MaxValue)
            throw new PbsFormatException($"{where}: {count} chunks is too many", "IndexBadSize");
        return new FixedIndex(data, (long)size, (int)chunkSize, (int)count);
    }

    public ChunkDigest DigestAt(int index) =>
        new(_data.AsSpan(FileFormats.IndexHeaderSize + checked(index * ChunkDigest.Size), ChunkDigest.Size));

    public long OffsetOf(int index) => (long)index * ChunkSize;

    public int LengthOf(int index) => (int)Math.Min(ChunkSize, Size - OffsetOf(index));

    public byte[] ComputeCsum() => SHA256.HashData(_data.AsSpan(FileFormats.IndexHeaderSize));

    /// <summary>Builds the bytes of a fixed index (the test datastore writer uses this).</summary>
    public static byte[] Build(Guid uuid, DateTimeOffset ctime, long size, int chunkSize, IReadOnlyList<ChunkDigest> digests)
    {
        long count = (size + chunkSize - 1) / chunkSize;
        if (digests.Count != count) throw new ArgumentException($"{count} digests needed, {digests.Count} given", nameof(digests));
        var data = new byte[FileFormats.IndexHeaderSize + count * ChunkDigest.Size];
        FileFormats.FixedIndexMagic.CopyTo(data);
        uuid.TryWriteBytes(data.AsSpan(8, 16), bigEndian: true, out _);
        BinaryPrimitives.WriteInt64LittleEndian(data.AsSpan(24), ctime.ToUnixTimeSeconds());
        BinaryPrimitives.WriteUInt64LittleEndian(data.AsSpan(64), (ulong)size);
        BinaryPrimitives.WriteUInt64LittleEndian(data.AsSpan(72), (ulong)chunkSize);
        for (int i = 0; i < digests.Count; i++)
            digests[i].CopyTo(data.AsSpan(FileFormats.IndexHeaderSize + i * ChunkDigest.Size));
        SHA256.HashData(data.AsSpan(FileFormats.IndexHeaderSize), data.AsSpan(32, 32));
        return data;
    }
}
