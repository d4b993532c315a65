namespace PbsRestore.Fixtures;

/// <summary>What <see cref="IImageContent.Fill"/> produced.</summary>
public enum ChunkFill
{
    /// <summary>The destination holds the chunk's bytes.</summary>
    Data,

    /// <summary>The chunk is all zeros; the implementation need not have touched the destination.</summary>
    Zero,
}

/// <summary>
/// The content of a disk image, chunk by chunk, for <see cref="SnapshotWriter.AddImage(string, IImageContent, int)"/>.
/// Random access and deterministic: chunk <c>index</c> at a given chunk size always yields the same bytes, so the
/// writer never needs the whole image in memory. Implementations must be safe to call from several threads.
/// </summary>
public interface IImageContent
{
    /// <summary>Logical image size in bytes (need not be a multiple of the chunk size).</summary>
    long Size { get; }

    /// <summary>
    /// Writes chunk <paramref name="index"/> (bytes <c>index * chunkSize</c> .. + destination.Length) into
    /// <paramref name="destination"/>, whose length is <c>min(chunkSize, Size - index * chunkSize)</c>.
    /// Returns <see cref="ChunkFill.Zero"/> for an all-zero chunk (then the destination may be left as it was).
    /// </summary>
    ChunkFill Fill(long index, int chunkSize, Span<byte> destination);
}

/// <summary>Ready-made <see cref="IImageContent"/> implementations.</summary>
public static class ImageContent
{
    /// <summary>An image of <paramref name="size"/> zero bytes.</summary>
    public static IImageContent Zeros(long size) => new ZeroImage(size);

    /// <summary>An image holding exactly these bytes (small test images).</summary>
    public static IImageContent FromBytes(byte[] data) => new BytesImage(data);

    /// <summary>
    /// <paramref name="inner"/> with a deterministic fraction of its chunks replaced by new content (half
    /// random, half text) derived from <paramref name="seed"/>: the next day's backup of the same disk, which
    /// shares all unchanged chunks with the first.
    /// </summary>
    public static IImageContent WithChangedChunks(IImageContent inner, double fraction, ulong seed) =>
        new ChangedImage(inner, fraction, seed);

    /// <summary>
    /// A read-only sequential stream of the image's bytes, generated <paramref name="unit"/> bytes at a time
    /// (the chunk size the content is defined at), e.g. the input of a dynamic archive.
    /// </summary>
    public static Stream AsStream(IImageContent content, int unit = 1 << 20) => new ContentStream(content, unit);

    private sealed class ContentStream(IImageContent content, int unit) : Stream
    {
        private readonly byte[] _chunk = new byte[unit];
        private long _position;
        private long _chunkIndex = -1;

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => content.Size;
        public override long Position { get => _position; set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            int total = 0;
            while (buffer.Length > 0 && _position < content.Size)
            {
                long index = _position / unit;
                int inChunk = (int)(_position - index * unit);
                int length = (int)Math.Min(unit, content.Size - index * unit);
                if (index != _chunkIndex)
                {
                    if (content.Fill(index, unit, _chunk.AsSpan(0, length)) == ChunkFill.Zero) _chunk.AsSpan(0, length).Clear();
                    _chunkIndex = index;
                }
                int n = Math.Min(buffer.Length, length - inChunk);
                _chunk.AsSpan(inChunk, n).CopyTo(buffer);
                buffer = buffer[n..];
                _position += n;
                total += n;
            }
            return total;
        }

        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    private sealed class ZeroImage(long size) : IImageContent
    {
        public long Size => size;
        public ChunkFill Fill(long index, int chunkSize, Span<byte> destination) => ChunkFill.Zero;
    }

    private sealed class BytesImage(byte[] data) : IImageContent
    {
        public long Size => data.LongLength;

        public ChunkFill Fill(long index, int chunkSize, Span<byte> destination)
        {
            var source = data.AsSpan(checked((int)(index * chunkSize)), destination.Length);
            if (!source.ContainsAnyExcept((byte)0)) return ChunkFill.Zero;
            source.CopyTo(destination);
            return ChunkFill.Data;
        }
    }

    private sealed class ChangedImage(IImageContent inner, double fraction, ulong seed) : IImageContent
    {
        public long Size => inner.Size;

        public ChunkFill Fill(long index, int chunkSize, Span<byte> destination)
        {
            ulong h = Prng.Mix(seed ^ 0xC4A9_6E1D_0B5F_3A27UL, (ulong)index);
            if ((h >> 11) * (1.0 / (1UL << 53)) >= fraction) return inner.Fill(index, chunkSize, destination);
            if ((h & 1) == 0) ImagePattern.FillRandom(destination, Prng.Mix(seed, (ulong)index));
            else ImagePattern.FillText(destination, Prng.Mix(seed, (ulong)index));
            return ChunkFill.Data;
        }
    }
}
