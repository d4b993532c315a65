namespace PbsRestore.Formats;

/// <summary>
/// Bytes that can be read at any offset: an archive behind its index (<c>Access.ChunkedArchiveReader</c>), or a
/// plain buffer in tests. Format readers (pxar, catalog) depend on this only, so they never know where bytes live.
/// Implementations must allow concurrent reads.
/// </summary>
public interface IRandomAccessData
{
    /// <summary>Total length in bytes.</summary>
    long Length { get; }

    /// <summary>
    /// Reads up to <paramref name="buffer"/>.Length bytes at <paramref name="offset"/>; returns fewer only at the
    /// end of the data (0 at or beyond it).
    /// </summary>
    ValueTask<int> ReadAtAsync(long offset, Memory<byte> buffer, CancellationToken ct);
}

/// <summary>An in-memory <see cref="IRandomAccessData"/> (tests, fuzzing, small decoded blobs).</summary>
public sealed class MemoryAccessData(ReadOnlyMemory<byte> data) : IRandomAccessData
{
    public long Length => data.Length;

    public ValueTask<int> ReadAtAsync(long offset, Memory<byte> buffer, CancellationToken ct)
    {
        if (offset < 0) throw new ArgumentOutOfRangeException(nameof(offset));
        if (offset >= data.Length) return ValueTask.FromResult(0);
        int n = (int)Math.Min(buffer.Length, data.Length - offset);
        data.Span.Slice((int)offset, n).CopyTo(buffer.Span);
        return ValueTask.FromResult(n);
    }
}

/// <summary>Helpers over <see cref="IRandomAccessData"/>.</summary>
public static class RandomAccessDataExtensions
{
    /// <summary>Reads exactly <paramref name="buffer"/>.Length bytes or throws (<paramref name="what"/> names the read in the error).</summary>
    public static async ValueTask ReadExactlyAtAsync(this IRandomAccessData data, long offset, Memory<byte> buffer, string what, CancellationToken ct)
    {
        int done = 0;
        while (done < buffer.Length)
        {
            int n = await data.ReadAtAsync(offset + done, buffer[done..], ct).ConfigureAwait(false);
            if (n <= 0)
                throw new PbsFormatException($"{what}: {buffer.Length} bytes at offset {offset} run past the end of the data ({data.Length} bytes)", "ReadBeyondEnd");
            done += n;
        }
    }

    /// <summary>A stream over a range of the data, for copying a file's contents.</summary>
    public static Stream OpenRange(this IRandomAccessData data, long offset, long length) => new RangeStream(data, offset, length);

    private sealed class RangeStream(IRandomAccessData data, long start, long length) : Stream
    {
        private long _position;
        public override bool CanRead => true;
        public override bool CanSeek => true;
        public override bool CanWrite => false;
        public override long Length => length;
        public override long Position { get => _position; set => _position = Math.Clamp(value, 0, length); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            long left = length - _position;
            if (left <= 0) return 0;
            if (buffer.Length > left) buffer = buffer[..(int)left];
            int n = await data.ReadAtAsync(start + _position, buffer, cancellationToken).ConfigureAwait(false);
            if (n <= 0) throw new PbsFormatException($"range of {length} bytes at offset {start} runs past the end of the data ({data.Length} bytes)", "ReadBeyondEnd");
            _position += n;
            return n;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override long Seek(long offset, SeekOrigin origin) => Position = origin switch
        {
            SeekOrigin.Begin => offset,
            SeekOrigin.Current => _position + offset,
            _ => length + offset,
        };

        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
