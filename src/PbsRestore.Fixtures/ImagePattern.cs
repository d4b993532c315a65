using System.Globalization;
using System.Numerics;
using System.Runtime.InteropServices;

namespace PbsRestore.Fixtures;

/// <summary>The kinds of chunk an <see cref="ImagePattern"/> produces.</summary>
public enum ChunkKind
{
    /// <summary>All zero bytes (unwritten disk space): the zero-chunk digest.</summary>
    Zero,

    /// <summary>Text-like log lines, about 3-4x smaller with zstd level 1.</summary>
    Compressible,

    /// <summary>Pseudo-random bytes (xoshiro256**): zstd keeps them uncompressed.</summary>
    Incompressible,

    /// <summary>A copy of an earlier Compressible or Incompressible chunk of the same image (same digest).</summary>
    Duplicate,
}

/// <summary>
/// A deterministic synthetic disk image: the content of every chunk is a function of (seed, chunk index,
/// chunk kind) only, so chunks can be generated in any order, in parallel, at any power-of-two chunk size.
/// The kinds come either from a sequence repeated to fill the image (<c>"zero:4,random:2,text:3,dup:2"</c>)
/// or from a mix by percentages (<c>"zero:70%,random:10%,text:15%,dup:5%"</c>), chosen per chunk by a hash.
/// Random data is generated at several GB/s.
/// </summary>
public sealed class ImagePattern : IImageContent
{
    private readonly ChunkKind[] _sequence;     // sequence mode: kind of each position in one period
    private readonly uint[]? _thresholds;       // mix mode: cumulative weights out of 2^32 per kind
    private readonly ChunkKind[]? _mixKinds;

    /// <summary>A pattern that repeats <paramref name="sequence"/> (kind, count of chunks) to fill the image.</summary>
    public ImagePattern(long size, IEnumerable<(ChunkKind Kind, int Count)> sequence, ulong seed = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        Size = size;
        Seed = seed;
        var seq = new List<ChunkKind>();
        foreach (var (kind, count) in sequence)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(count);
            seq.AddRange(Enumerable.Repeat(kind, count));
        }
        if (seq.Count == 0) throw new ArgumentException("the sequence is empty", nameof(sequence));
        _sequence = seq.ToArray();
        Spec = string.Join(",", Group(_sequence).Select(g => $"{Name(g.Kind)}:{g.Count}"));
    }

    private ImagePattern(long size, IReadOnlyList<(ChunkKind Kind, double Percent)> mix, ulong seed)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        Size = size;
        Seed = seed;
        double total = mix.Sum(m => m.Percent);
        if (total <= 0) throw new ArgumentException("the percentages add up to zero", nameof(mix));
        _sequence = [];
        _mixKinds = mix.Select(m => m.Kind).ToArray();
        _thresholds = new uint[mix.Count];
        double acc = 0;
        for (int i = 0; i < mix.Count; i++)
        {
            acc += mix[i].Percent / total;
            _thresholds[i] = i == mix.Count - 1 ? uint.MaxValue : (uint)Math.Min(uint.MaxValue, acc * 4294967296.0);
        }
        Spec = string.Join(",", mix.Select(m => $"{Name(m.Kind)}:{m.Percent.ToString(CultureInfo.InvariantCulture)}%"));
    }

    /// <summary>A mix: every chunk's kind is drawn by a hash of (seed, index) with these percentages (weights).</summary>
    public static ImagePattern Mix(long size, IReadOnlyList<(ChunkKind Kind, double Percent)> mix, ulong seed = 0) =>
        new(size, mix, seed);

    /// <summary>
    /// Parses <c>"zero:4,random:2,text:3,dup:2"</c> (a sequence of chunk counts, repeated) or
    /// <c>"zero:70%,random:10%,text:15%,dup:5%"</c> (a mix). Kind names: zero; random | rand | incompressible;
    /// text | compressible; dup | duplicate. A count may be omitted (<c>"random"</c> = <c>"random:1"</c>).
    /// </summary>
    public static ImagePattern Parse(string spec, long size, ulong seed = 0)
    {
        var terms = spec.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (terms.Length == 0) throw new FormatException("empty image pattern");
        var parsed = new List<(ChunkKind Kind, string Amount)>();
        foreach (var term in terms)
        {
            int colon = term.IndexOf(':');
            string name = colon < 0 ? term : term[..colon].Trim();
            string amount = colon < 0 ? "1" : term[(colon + 1)..].Trim();
            parsed.Add((ParseKind(name), amount));
        }
        bool percent = parsed.Any(p => p.Amount.EndsWith('%'));
        if (percent)
        {
            if (!parsed.All(p => p.Amount.EndsWith('%')))
                throw new FormatException($"image pattern '{spec}': mix counts and percentages");
            return Mix(size, parsed.Select(p => (p.Kind, ParseNumber(p.Amount[..^1], spec))).ToList(), seed);
        }
        return new ImagePattern(size, parsed.Select(p => (p.Kind, (int)ParseNumber(p.Amount, spec))).ToList(), seed);
    }

    private static double ParseNumber(string text, string spec) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && v >= 0
            ? v
            : throw new FormatException($"image pattern '{spec}': '{text}' is not a non-negative number");

    private static ChunkKind ParseKind(string name) => name.ToLowerInvariant() switch
    {
        "zero" or "zeros" => ChunkKind.Zero,
        "random" or "rand" or "incompressible" => ChunkKind.Incompressible,
        "text" or "compressible" => ChunkKind.Compressible,
        "dup" or "duplicate" => ChunkKind.Duplicate,
        _ => throw new FormatException($"unknown chunk kind '{name}' (zero, random, text, dup)"),
    };

    private static string Name(ChunkKind kind) => kind switch
    {
        ChunkKind.Zero => "zero",
        ChunkKind.Compressible => "text",
        ChunkKind.Incompressible => "random",
        _ => "dup",
    };

    private static IEnumerable<(ChunkKind Kind, int Count)> Group(ChunkKind[] kinds)
    {
        for (int i = 0; i < kinds.Length;)
        {
            int j = i;
            while (j < kinds.Length && kinds[j] == kinds[i]) j++;
            yield return (kinds[i], j - i);
            i = j;
        }
    }

    public long Size { get; }
    public ulong Seed { get; }

    /// <summary>The normalized pattern text.</summary>
    public string Spec { get; }

    /// <summary>The kind of chunk <paramref name="index"/> (independent of the chunk size).</summary>
    public ChunkKind KindOf(long index)
    {
        if (_thresholds is null) return _sequence[index % _sequence.Length];
        uint h = (uint)(Prng.Mix(Seed ^ 0x6B1D_2F3E_91A4_C055UL, (ulong)index) >> 32);
        for (int i = 0; i < _thresholds.Length; i++)
            if (h <= _thresholds[i]) return _mixKinds![i];
        return _mixKinds![^1];
    }

    /// <summary>
    /// The earlier chunk a Duplicate chunk copies: a pseudo-random earlier Compressible or Incompressible chunk,
    /// or -1 when there is none nearby (the chunk then gets text content of its own).
    /// </summary>
    public long DuplicateSourceOf(long index)
    {
        if (index <= 0) return -1;
        long start = (long)(Prng.Mix(Seed ^ 0x2545_F491_4F6C_DD1DUL, (ulong)index) % (ulong)index);
        const int maxSteps = 4096;
        int steps = 0;
        for (long j = start; j >= 0 && steps < maxSteps; j--, steps++)
            if (KindOf(j) is ChunkKind.Compressible or ChunkKind.Incompressible) return j;
        for (long j = index - 1; j > start && steps < maxSteps; j--, steps++)
            if (KindOf(j) is ChunkKind.Compressible or ChunkKind.Incompressible) return j;
        return -1;
    }

    public ChunkFill Fill(long index, int chunkSize, Span<byte> destination)
    {
        var kind = KindOf(index);
        long source = index;
        if (kind == ChunkKind.Duplicate)
        {
            source = DuplicateSourceOf(index);
            kind = source < 0 ? ChunkKind.Compressible : KindOf(source);
            if (source < 0) source = index;
        }
        ulong chunkSeed = Prng.Mix(Seed, (ulong)source);
        switch (kind)
        {
            case ChunkKind.Zero:
                return ChunkFill.Zero;
            case ChunkKind.Incompressible:
                FillRandom(destination, chunkSeed);
                return ChunkFill.Data;
            default:
                FillText(destination, chunkSeed);
                return ChunkFill.Data;
        }
    }

    /// <summary>Fills with xoshiro256** output seeded from <paramref name="seed"/> (several GB/s; not crypto).</summary>
    public static void FillRandom(Span<byte> destination, ulong seed)
    {
        var rng = new Prng(seed);
        var words = MemoryMarshal.Cast<byte, ulong>(destination);
        for (int i = 0; i < words.Length; i++) words[i] = rng.Next();
        int done = words.Length * 8;
        if (done < destination.Length)
        {
            Span<byte> tail = stackalloc byte[8];
            BitConverter.TryWriteBytes(tail, rng.Next());
            tail[..(destination.Length - done)].CopyTo(destination[done..]);
        }
    }

    // Text: syslog-like lines of words drawn from a vocabulary, with numbers. Tuned for ~3-4x with zstd -1.
    private static readonly byte[][] Vocabulary = BuildVocabulary();

    private static byte[][] BuildVocabulary()
    {
        string[] common =
        [
            "the", "kernel", "systemd", "started", "stopped", "session", "user", "root", "service", "unit",
            "failed", "success", "connection", "from", "port", "accepted", "closed", "for", "with", "disk",
            "sda", "nvme0n1", "eth0", "link", "up", "down", "backup", "restore", "chunk", "index", "snapshot",
            "datastore", "verify", "task", "worker", "error", "warning", "info", "debug", "timeout", "retry",
        ];
        var words = new List<byte[]>(common.Select(w => System.Text.Encoding.ASCII.GetBytes(w)));
        var rng = new Prng(0x7E57_0000_0000_0001UL);
        while (words.Count < 1024)
        {
            int len = 3 + (int)(rng.Next() % 8);
            var w = new byte[len];
            for (int i = 0; i < len; i++) w[i] = (byte)('a' + rng.Next() % 26);
            words.Add(w);
        }
        return words.ToArray();
    }

    /// <summary>Fills with deterministic text-like log lines (compressible about 3-4x by zstd level 1).</summary>
    public static void FillText(Span<byte> destination, ulong seed)
    {
        var rng = new Prng(seed);
        int pos = 0;
        int n = destination.Length;
        ulong line = rng.Next() % 100000;
        while (pos < n)
        {
            // "<seq> host<id> <word> <word> ... <number>\n"
            pos = Put(destination, pos, "May  1 10:"u8);
            ulong r = rng.Next();
            pos = PutNumber(destination, pos, 10 + r % 50);
            pos = Put(destination, pos, ":"u8);
            pos = PutNumber(destination, pos, 10 + (r >> 8) % 50);
            pos = Put(destination, pos, " pve "u8);
            pos = PutNumber(destination, pos, line++);
            int words = 4 + (int)((r >> 16) % 9);
            ulong bits = rng.Next();
            for (int w = 0; w < words && pos < n; w++)
            {
                if (w % 5 == 4) bits = rng.Next();
                pos = Put(destination, pos, " "u8);
                // Skew towards the first words (common ones) like natural text.
                int pick = (int)(bits & 1023);
                if ((bits & 0xC00) != 0) pick &= 63;
                bits >>= 12;
                pos = Put(destination, pos, Vocabulary[pick]);
            }
            pos = Put(destination, pos, " rc="u8);
            pos = PutNumber(destination, pos, (r >> 24) % 1000);
            pos = Put(destination, pos, "\n"u8);
        }
    }

    private static int Put(Span<byte> destination, int pos, ReadOnlySpan<byte> text)
    {
        int room = destination.Length - pos;
        if (room <= 0) return pos;
        if (text.Length > room) text = text[..room];
        text.CopyTo(destination[pos..]);
        return pos + text.Length;
    }

    private static int PutNumber(Span<byte> destination, int pos, ulong value)
    {
        Span<byte> digits = stackalloc byte[20];
        int i = digits.Length;
        do { digits[--i] = (byte)('0' + value % 10); value /= 10; } while (value != 0);
        return Put(destination, pos, digits[i..]);
    }
}

/// <summary>xoshiro256** seeded by SplitMix64; plus a stateless 64-bit mixer. Fast, deterministic, not crypto.</summary>
internal struct Prng
{
    private ulong _s0, _s1, _s2, _s3;

    public Prng(ulong seed)
    {
        _s0 = SplitMix(ref seed);
        _s1 = SplitMix(ref seed);
        _s2 = SplitMix(ref seed);
        _s3 = SplitMix(ref seed);
    }

    private static ulong SplitMix(ref ulong x)
    {
        ulong z = x += 0x9E37_79B9_7F4A_7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58_476D_1CE4_E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D0_49BB_1331_11EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>A well-mixed hash of two 64-bit values.</summary>
    public static ulong Mix(ulong a, ulong b)
    {
        ulong x = a ^ (b * 0xD6E8_FEB8_6659_FD93UL);
        return SplitMix(ref x);
    }

    public ulong Next()
    {
        ulong result = BitOperations.RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = BitOperations.RotateLeft(_s3, 45);
        return result;
    }
}
