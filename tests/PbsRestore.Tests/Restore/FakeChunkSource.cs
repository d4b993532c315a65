using System.Collections.Concurrent;
using PbsRestore.Formats;
using PbsRestore.Restore;
using PbsRestore.Sources;
using PbsRestore.Destinations;

namespace PbsRestore.Tests.Restore;

/// <summary>
/// An in-memory chunk source built from plaintext chunks, for pipeline tests that need no disk: it can fail
/// after N reads, serve a wrong blob for a digest, or block until cancelled.
/// </summary>
internal sealed class FakeChunkSource : IChunkSource
{
    private readonly ConcurrentDictionary<ChunkDigest, byte[]> _blobs = new();
    private int _reads;

    public int FailAfterReads { get; set; } = int.MaxValue;
    public bool BlockForever { get; set; }
    public int Reads => _reads;
    public ConcurrentBag<ChunkDigest> Requested { get; } = new();

    /// <summary>Stores the encoded chunk and returns its digest.</summary>
    public ChunkDigest Add(byte[] plaintext, CryptConfig? crypt = null, bool compress = true)
    {
        using var enc = new BlobEncoder();
        var digest = ChunkVerifier.ComputeDigest(plaintext, crypt);
        _blobs[digest] = enc.Encode(plaintext, crypt, compress);
        return digest;
    }

    /// <summary>Serves <paramref name="blob"/> for <paramref name="digest"/> from now on.</summary>
    public void Replace(ChunkDigest digest, byte[] blob) => _blobs[digest] = blob;

    public async ValueTask<int> ReadRawChunkAsync(ChunkDigest digest, byte[] buffer, CancellationToken ct)
    {
        Requested.Add(digest);
        if (BlockForever) await Task.Delay(Timeout.Infinite, ct);
        if (Interlocked.Increment(ref _reads) > FailAfterReads)
            throw new PbsNotFoundException("ChunkMissing", $"chunk {digest} is missing (injected)");
        if (!_blobs.TryGetValue(digest, out var blob))
            throw new PbsNotFoundException("ChunkMissing", $"chunk {digest} is missing");
        blob.CopyTo(buffer, 0);
        return blob.Length;
    }
}

/// <summary>A sink that records which offsets were written, and the bytes, in memory.</summary>
internal sealed class RecordingSink(long size, bool zerosAreHoles = true) : IImageSink
{
    private readonly byte[] _image = new byte[size];
    public ConcurrentBag<long> Offsets { get; } = new();
    public bool Flushed { get; private set; }
    public bool ZerosAreHoles => zerosAreHoles;
    public byte[] Image => _image;

    public void Write(long offset, ReadOnlySpan<byte> data)
    {
        Offsets.Add(offset);
        data.CopyTo(_image.AsSpan((int)offset));
    }

    public void Flush() => Flushed = true;
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
