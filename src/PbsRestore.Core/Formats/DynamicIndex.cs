using System.Buffers.Binary;
using System.Security.Cryptography;

namespace PbsRestore.Formats;

/// <summary>
/// A dynamic index, <c>*.didx</c> (upstream: pbs-datastore/src/dynamic_index.rs): a 4096-byte header
/// (magic, uuid, ctime, index_csum) followed by entries of (end offset u64 LE, digest). Chunk i spans
/// [end(i-1), end(i)). Offsets must strictly increase. Immutable.
/// </summary>
public sealed class DynamicIndex : IChunkIndex
{
    private const int EntrySize = 8 + ChunkDigest.Size;
    private readonly byte[] _data;

    private DynamicIndex(byte[] data, int count, int maxChunk)
    {
        _data = data;
        Count = count;
        MaxChunkSize = maxChunk;
        Size = count == 0 ? 0 : EndOf(count - 1);
    }

    public int Count { get; }
    public long Size { get; }
    public int MaxChunkSize { get; }
    public Guid Uuid => new(_data.AsSpan(8, 16), bigEndian: true);
    public DateTimeOffset CTime => DateTimeOffset.FromUnixTimeSeconds(BinaryPrimitives.ReadInt64LittleEndian(_data.AsSpan(24)));

    public static DynamicIndex Parse(byte[] data, string? source = null)
    {
        string where = source ?? "dynamic index";
        if (data.Length < FileFormats.IndexHeaderSize)
            throw new PbsFormatException($"{where}: truncated, {data.Length} bytes is less than the {FileFormats.IndexHeaderSize}-byte header", "IndexTruncated");
        if (!data.AsSpan(0, 8).SequenceEqual(FileFormats.DynamicIndexMagic))
            throw new PbsFormatException($"{where}: not a dynamic index (bad magic at offset 0)", "IndexBadMagic");
        long body = data.LongLength - FileFormats.IndexHeaderSize;
        if (body % EntrySize != 0)
            throw new PbsFormatException($"{where}: truncated entry at offset {FileFormats.IndexHeaderSize + body / EntrySize * EntrySize} (entries are {EntrySize} bytes)", "IndexTruncated");
        int count = checked((int)(body / EntrySize));
        ulong previous = 0;
        int max = 0;
        for (int i = 0; i < count; i++)
        {
            int at = FileFormats.IndexHeaderSize + i * EntrySize;
            ulong end = BinaryPrimitives.ReadUInt64LittleEndian(data.AsSpan(at));
            if (end <= previous)
                throw new PbsFormatException($"{where}: entry {i} at offset {at}: end offset {end} does not increase (previous {previous})", "IndexOffsetsNotIncreasing");
            ulong length = end - previous;
            if (length > (ulong)FileFormats.MaxBlobSize || end > 1UL << 50)
                throw new PbsFormatException($"{where}: entry {i} at offset {at}: chunk of {length} bytes is absurd", "IndexBadChunkSize");
            max = Math.Max(max, (int)length);
            previous = end;
        }
        return new DynamicIndex(data, count, max);
    }

    private long EndOf(int index) =>
        (long)BinaryPrimitives.ReadUInt64LittleEndian(_data.AsSpan(FileFormats.IndexHeaderSize + index * EntrySize));

    public ChunkDigest DigestAt(int index) => new(_data.AsSpan(FileFormats.IndexHeaderSize + index * EntrySize + 8, ChunkDigest.Size));

    public long OffsetOf(int index) => index == 0 ? 0 : EndOf(index - 1);

    public int LengthOf(int index) => (int)(EndOf(index) - OffsetOf(index));

    public byte[] ComputeCsum() => SHA256.HashData(_data.AsSpan(FileFormats.IndexHeaderSize));

    /// <summary>Builds the bytes of a dynamic index from (end offset, digest) entries.</summary>
    public static byte[] Build(Guid uuid, DateTimeOffset ctime, IReadOnlyList<(long End, ChunkDigest Digest)> entries)
    {
        var data = new byte[FileFormats.IndexHeaderSize + (long)entries.Count * EntrySize];
        FileFormats.DynamicIndexMagic.CopyTo(data);
        uuid.TryWriteBytes(data.AsSpan(8, 16), bigEndian: true, out _);
        BinaryPrimitives.WriteInt64LittleEndian(data.AsSpan(24), ctime.ToUnixTimeSeconds());
        for (int i = 0; i < entries.Count; i++)
        {
            int at = FileFormats.IndexHeaderSize + i * EntrySize;
            BinaryPrimitives.WriteUInt64LittleEndian(data.AsSpan(at), (ulong)entries[i].End);
            entries[i].Digest.CopyTo(data.AsSpan(at + 8));
        }
        SHA256.HashData(data.AsSpan(FileFormats.IndexHeaderSize), data.AsSpan(32, 32));
        return data;
    }
}
