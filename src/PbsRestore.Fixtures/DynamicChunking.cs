using System.Numerics;

namespace PbsRestore.Fixtures;

/// <summary>
/// Where a dynamic archive (<c>.didx</c>) is cut into chunks. Upstream cuts pxar streams content-defined
/// (buzhash, 4 MiB average, a quarter to four times that); these strategies give the same kind of index.
/// </summary>
public abstract class DynamicChunking
{
    /// <summary>The largest chunk this strategy cuts (the size of the pipeline's buffers).</summary>
    public abstract int MaxChunkSize { get; }

    /// <summary>
    /// The length of the next chunk, given the <paramref name="available"/> bytes at the start of the stream's
    /// remainder (<paramref name="atEnd"/>: nothing follows them). <paramref name="available"/> holds at least
    /// <see cref="MaxChunkSize"/> bytes unless at the end. <paramref name="chunkIndex"/> counts the chunks cut so far.
    /// </summary>
    public abstract int NextCut(ReadOnlySpan<byte> available, bool atEnd, long chunkIndex);

    /// <summary>Chunks of exactly <paramref name="size"/> bytes (the last one shorter).</summary>
    public static DynamicChunking Fixed(int size) => new FixedChunking(size);

    /// <summary>Content-defined chunks (gear rolling hash): average about <paramref name="averageSize"/>, between a quarter and four times that.</summary>
    public static DynamicChunking ContentDefined(int averageSize = 4 << 20) => new ContentDefinedChunking(averageSize);

    /// <summary>Chunks of these lengths in order; once they run out, the last length repeats.</summary>
    public static DynamicChunking Explicit(IEnumerable<int> lengths) => new ExplicitChunking(lengths.ToArray());

    private sealed class FixedChunking : DynamicChunking
    {
        private readonly int _size;

        public FixedChunking(int size)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
            _size = size;
        }

        public override int MaxChunkSize => _size;
        public override int NextCut(ReadOnlySpan<byte> available, bool atEnd, long chunkIndex) => Math.Min(_size, available.Length);
    }

    private sealed class ExplicitChunking : DynamicChunking
    {
        private readonly int[] _lengths;

        public ExplicitChunking(int[] lengths)
        {
            if (lengths.Length == 0 || lengths.Any(l => l < 1)) throw new ArgumentException("give at least one positive chunk length", nameof(lengths));
            _lengths = lengths;
        }

        public override int MaxChunkSize => _lengths.Max();

        public override int NextCut(ReadOnlySpan<byte> available, bool atEnd, long chunkIndex)
        {
            int length = _lengths[(int)Math.Min(chunkIndex, _lengths.Length - 1)];
            return Math.Min(length, available.Length);
        }
    }

    private sealed class ContentDefinedChunking : DynamicChunking
    {
        private static readonly ulong[] Gear = BuildGear();
        private readonly int _min, _max;
        private readonly ulong _mask;

        public ContentDefinedChunking(int average)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(average, 256);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(average, 32 << 20);
            _min = average / 4;
            _max = average * 4;
            // Expected length is about min + 2^bits: aim for the average.
            int bits = Math.Max(1, BitOperations.Log2((uint)(average - _min)));
            _mask = ((1UL << bits) - 1) << (64 - bits);
        }

        public override int MaxChunkSize => _max;

        public override int NextCut(ReadOnlySpan<byte> available, bool atEnd, long chunkIndex)
        {
            int limit = Math.Min(_max, available.Length);
            if (limit <= _min) return limit;
            ulong h = 0;
            // The gear hash depends on the last 64 bytes only; start just before the minimum.
            int start = Math.Max(0, _min - 64);
            for (int i = start; i < limit; i++)
            {
                h = (h << 1) + Gear[available[i]];
                if (i >= _min && (h & _mask) == 0) return i + 1;
            }
            return limit;
        }

        private static ulong[] BuildGear()
        {
            var rng = new Prng(0x6EA2_0000_0000_0DC5UL);
            var t = new ulong[256];
            for (int i = 0; i < t.Length; i++) t[i] = rng.Next();
            return t;
        }
    }
}
