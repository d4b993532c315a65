using System.Collections.Concurrent;
using System.Security.Cryptography;
using PbsRestore.Access;
using PbsRestore.Fixtures;
using PbsRestore.Formats;
using PbsRestore.Restore;
using PbsRestore.Sources;
using PbsRestore.Tests.Fixtures;
using PbsRestore.Tests.Restore;
using PbsRestore.Sources.Local;
using PbsRestore.Destinations;

namespace PbsRestore.Tests.Access;

/// <summary>A chunk source that counts reads per digest and can delay them (to make concurrent readers overlap).</summary>
internal sealed class CountingChunkSource(IChunkSource inner, int delayMs = 0) : IChunkSource
{
    private readonly List<(int Count, TaskCompletionSource Done)> _waiters = [];

    public ConcurrentDictionary<ChunkDigest, int> Reads { get; } = new();
    public int Total => Reads.Values.Sum();

    /// <summary>Completes once <paramref name="count"/> distinct chunks have been asked for (however long the machine takes).</summary>
    public Task WhenDistinctReads(int count)
    {
        lock (_waiters)
        {
            if (Reads.Count >= count) return Task.CompletedTask;
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiters.Add((count, done));
            return done.Task;
        }
    }

    public async ValueTask<int> ReadRawChunkAsync(ChunkDigest digest, byte[] buffer, CancellationToken ct)
    {
        Reads.AddOrUpdate(digest, 1, (_, n) => n + 1);
        lock (_waiters)
            foreach (var w in _waiters.Where(w => Reads.Count >= w.Count).ToList())
            {
                w.Done.TrySetResult();
                _waiters.Remove(w);
            }
        if (delayMs > 0) await Task.Delay(delayMs, ct);
        return await inner.ReadRawChunkAsync(digest, buffer, ct);
    }
}

/// <summary>A chunk source whose reads all wait until released, counting how many wait at once.</summary>
internal sealed class HeldChunkSource(IChunkSource inner) : IChunkSource
{
    private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _waiting;
    public int Waiting => Volatile.Read(ref _waiting);
    public void Release() => _release.TrySetResult();

    public async ValueTask<int> ReadRawChunkAsync(ChunkDigest digest, byte[] buffer, CancellationToken ct)
    {
        Interlocked.Increment(ref _waiting);
        await _release.Task.WaitAsync(ct);
        Interlocked.Decrement(ref _waiting);
        return await inner.ReadRawChunkAsync(digest, buffer, ct);
    }

    /// <summary>Completes once <paramref name="count"/> reads wait together (polled; bounded only to end a broken test).</summary>
    public async Task WhenWaiting(int count)
    {
        for (int i = 0; i < 3000 && Waiting < count; i++) await Task.Delay(10);
        Assert.Equal(count, Waiting);
    }
}

public sealed class ChunkedArchiveReaderTests : IDisposable
{
    private readonly TempDir _dir = new();
    public void Dispose() => _dir.Dispose();

    private static byte[] Content(int size, int seed)
    {
        var data = new byte[size];
        new Random(seed).NextBytes(data);
        return data;
    }

    /// <summary>The index of the root.pxar that <see cref="WriteDynamicAsync"/> wrote.</summary>
    private static async Task<IChunkIndex> ReadIndexAsync(ISnapshotReader reader) =>
        await (await OpenedSnapshot.OpenArchiveAsync(reader, null, "root.pxar", default)).ReadIndexAsync(default);

    private async Task<(ISnapshotReader Reader, byte[] Content)> WriteDynamicAsync(int size, CryptConfig? crypt = null)
    {
        var content = Content(size, 7);
        var store = new DatastoreWriter(Path.Combine(_dir.Path, "store"));
        var snap = store.BeginSnapshot("", "ct", "1", DateTimeOffset.FromUnixTimeSeconds(1_700_000_000), crypt);
        snap.AddDynamic("root.pxar", new MemoryStream(content), DynamicChunking.ContentDefined(64 << 10));
        snap.Finish();
        var source = new LocalDatastore(store.RootPath);
        var list = await source.ListSnapshotsAsync(BackupNamespace.Root, null, null, default);
        return (await source.OpenSnapshotAsync(list[0].Ref, default), content);
    }

    [Fact]
    public async Task Random_reads_match_the_content_and_a_full_read_has_the_restores_sha256()
    {
        var (reader, content) = await WriteDynamicAsync(3 << 20);
        await using var _ = reader;
        using var access = await ArchiveAccess.OpenAsync(reader, null, "root.pxar", new ChunkedReaderOptions { CacheChunks = 4 }, default);
        Assert.True(access.Index.Count > 10);
        Assert.Equal(content.LongLength, access.Length);

        var rng = new Random(3);
        for (int i = 0; i < 200; i++)
        {
            long offset = rng.NextInt64(access.Length);
            var buf = new byte[rng.Next(1, 300_000)];
            int n = await access.ReadAtAsync(offset, buf, default);
            Assert.Equal((int)Math.Min(buf.Length, access.Length - offset), n);
            Assert.True(content.AsSpan((int)offset, n).SequenceEqual(buf.AsSpan(0, n)), $"bytes differ at {offset}+{n}");
        }

        // Whole archive through a stream, against the restore pipeline's output of the same archive.
        string restored = Path.Combine(_dir.Path, "restored.pxar");
        await new ArchiveRestorer(reader, null).RestoreAsync("root.pxar", restored, new DestinationOptions(), new RestoreOptions(), new RestoreCounters(), default);
        var viaReader = await SHA256.HashDataAsync(access.OpenRange(0, access.Length));
        Assert.Equal(Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(restored))), Convert.ToHexString(viaReader));
        Assert.Equal(0, await access.ReadAtAsync(access.Length, new byte[10], default));
    }

    [Fact]
    public async Task Encrypted_archive_reads_back_exactly()
    {
        var crypt = new CryptConfig(Enumerable.Range(1, 32).Select(i => (byte)i).ToArray());
        var (reader, content) = await WriteDynamicAsync(1 << 20, crypt);
        await using var _ = reader;
        using var access = await ArchiveAccess.OpenAsync(reader, crypt, "root.pxar", null, default);
        var all = new byte[access.Length];
        await access.ReadExactlyAtAsync(0, all, "test", default);
        Assert.True(all.AsSpan().SequenceEqual(content));
        await Assert.ThrowsAsync<PbsKeyException>(() => ArchiveAccess.OpenAsync(reader, null, "root.pxar", null, default));
    }

    [Fact]
    public async Task Concurrent_readers_of_one_chunk_share_one_fetch_and_the_cache_stays_bounded()
    {
        var (reader, content) = await WriteDynamicAsync(2 << 20);
        await using var _ = reader;
        var index = await ReadIndexAsync(reader);
        var counting = new CountingChunkSource(reader.Chunks, delayMs: 50);
        using var access = new ChunkedArchiveReader("root.pxar", index, counting, null, false, new ChunkedReaderOptions { CacheChunks = 2, ReadAhead = 0 });

        var tasks = Enumerable.Range(0, 16).Select(async i =>
        {
            var buf = new byte[100];
            await access.ReadAtAsync(10 + i, buf, default);
            Assert.True(content.AsSpan(10 + i, 100).SequenceEqual(buf));
        });
        await Task.WhenAll(tasks);
        Assert.Equal(1, counting.Total);

        // Walk backwards over every chunk (no read-ahead then): each is fetched once, and the cache forgets old ones,
        // so going back to the start fetches chunk 0 again.
        for (int c = index.Count - 1; c >= 0; c--)
            await access.ReadAtAsync(index.OffsetOf(c), new byte[1], default);
        int before = counting.Total;
        Assert.Equal(index.Count, counting.Reads.Count);
        await access.ReadAtAsync(index.OffsetOf(index.Count - 1), new byte[1], default);
        Assert.Equal(before + 1, counting.Total);
    }

    [Fact]
    public async Task Evicted_chunks_arrays_are_reused_but_never_while_a_reader_copies_from_them()
    {
        var (reader, content) = await WriteDynamicAsync(4 << 20);
        await using var _ = reader;
        var index = await ReadIndexAsync(reader);
        Assert.True(index.Count > 30);
        var slow = new CountingChunkSource(reader.Chunks, delayMs: 1);
        using var access = new ChunkedArchiveReader("root.pxar", index, slow, null, false, new ChunkedReaderOptions { CacheChunks = 1, ReadAhead = 2 });

        // Eight readers at random offsets through a one-chunk cache: chunks are evicted while others still copy
        // from them; every byte must still be the archive's own.
        var tasks = Enumerable.Range(0, 8).Select(async seed =>
        {
            var rng = new Random(seed);
            for (int i = 0; i < 60; i++)
            {
                long offset = rng.NextInt64(access.Length);
                var buf = new byte[rng.Next(1, 200_000)];
                int n = await access.ReadAtAsync(offset, buf, default);
                Assert.True(content.AsSpan((int)offset, n).SequenceEqual(buf.AsSpan(0, n)), $"reader {seed}: bytes differ at {offset}+{n}");
            }
        });
        await Task.WhenAll(tasks);

        // One reader streaming the whole archive: arrays come back from evicted chunks instead of new ones each time.
        long before = access.PlainArraysAllocated;
        var viaReader = await SHA256.HashDataAsync(access.OpenRange(0, access.Length));
        Assert.Equal(Convert.ToHexString(SHA256.HashData(content)), Convert.ToHexString(viaReader));
        Assert.True(access.PlainArraysAllocated - before <= 8, $"{access.PlainArraysAllocated - before} new arrays for {index.Count} chunks");
    }

    [Fact]
    public async Task Lent_bytes_are_the_archives_own_and_stay_so_while_lent_even_when_the_chunk_is_evicted()
    {
        var (reader, content) = await WriteDynamicAsync(2 << 20);
        await using var _ = reader;
        var index = await ReadIndexAsync(reader);
        Assert.True(index.Count > 8);
        using var access = new ChunkedArchiveReader("root.pxar", index, reader.Chunks, null, false, new ChunkedReaderOptions { CacheChunks = 2, ReadAhead = 0 });

        // Leases walk the archive chunk by chunk (each ends at its chunk's end) and give its bytes exactly.
        var walked = new MemoryStream();
        for (long at = 0; at < access.Length;)
        {
            using var lease = await access.LeaseAsync(at, int.MaxValue, default);
            Assert.Equal(index.OffsetOf(access.FindChunk(at)) + index.LengthOf(access.FindChunk(at)), at + lease.Data.Length);
            walked.Write(lease.Data.Span);
            at += lease.Data.Length;
        }
        Assert.Equal(Convert.ToHexString(SHA256.HashData(content)), Convert.ToHexString(SHA256.HashData(walked.ToArray())));

        // One chunk lent (from the middle, shortened by maxLength), then every other chunk read through a two-chunk
        // cache: the lent chunk is evicted and arrays are reused all the while, but never the lent one.
        long from = index.OffsetOf(3) + 100;
        var held = await access.LeaseAsync(from, 5000, default);
        Assert.Equal(5000, held.Data.Length);
        for (int round = 0; round < 2; round++)
            for (int c = 0; c < index.Count; c++)
                if (c != 3) await access.ReadAtAsync(index.OffsetOf(c), new byte[index.LengthOf(c)], default);
        Assert.True(content.AsSpan((int)from, 5000).SequenceEqual(held.Data.Span), "the lent bytes changed while lent");
        held.Dispose();
        Assert.True(await access.LeaseAsync(access.Length, 10, default) is { Data.IsEmpty: true });

        // Half the cache lent at once (one chunk of two): the next lease is refused (empty, the caller copies) until one ends.
        var one = await access.LeaseAsync(0, 10, default);
        Assert.True((await access.LeaseAsync(index.OffsetOf(5), 10, default)).Data.IsEmpty);
        one.Dispose();
        using var again = await access.LeaseAsync(index.OffsetOf(5), 10, default);
        Assert.True(content.AsSpan((int)index.OffsetOf(5), 10).SequenceEqual(again.Data.Span));
    }

    [Theory]
    [InlineData(64, 8)] // an eighth of the budget in flight: random readers wait on latency together
    [InlineData(16, 2)] // a small budget: no more fetch buffers than it pays for, however many readers ask
    public async Task Fetches_in_flight_are_an_eighth_of_the_memory_budget(int budgetChunks, int inFlight)
    {
        var (reader, content) = await WriteDynamicAsync(4 << 20);
        await using var _ = reader;
        var index = await ReadIndexAsync(reader);
        Assert.True(index.Count > 12);
        var held = new HeldChunkSource(reader.Chunks);
        using var access = new ChunkedArchiveReader("root.pxar", index, held, null, false,
            new ChunkedReaderOptions { CacheBytes = (long)budgetChunks * index.MaxChunkSize, ReadAhead = 0 });
        Assert.Equal(budgetChunks - inFlight, access.CacheCapacity);
        // Twelve readers of twelve different chunks at once.
        var reads = Enumerable.Range(0, 12).Select(async c =>
        {
            var buf = new byte[index.LengthOf(c)];
            await access.ReadAtAsync(index.OffsetOf(c), buf, default);
            Assert.True(content.AsSpan((int)index.OffsetOf(c), buf.Length).SequenceEqual(buf), $"chunk {c}");
        }).ToList();
        await held.WhenWaiting(inFlight);
        await Task.Delay(200); // and no more join them
        Assert.Equal(inFlight, held.Waiting);
        held.Release();
        await Task.WhenAll(reads);
    }

    [Fact]
    public async Task Sequential_reading_fetches_ahead()
    {
        var (reader, _) = await WriteDynamicAsync(2 << 20);
        await using var __ = reader;
        var index = await ReadIndexAsync(reader);
        var counting = new CountingChunkSource(reader.Chunks);
        using var access = new ChunkedArchiveReader("root.pxar", index, counting, null, false, new ChunkedReaderOptions { ReadAhead = 3 });
        await access.ReadAtAsync(0, new byte[1], default);
        await access.ReadAtAsync(index.OffsetOf(1), new byte[1], default);
        // Reading chunk 1 right after chunk 0 starts chunks 2..4 in the background.
        // Waited for by the reads themselves, not for 2 s of real time that a busy machine can outlast; the bound only
        // ends a test whose read-ahead never comes.
        await counting.WhenDistinctReads(5).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(5, counting.Reads.Count);
        Assert.All(counting.Reads.Values, n => Assert.Equal(1, n));
    }

    [Fact]
    public async Task Zero_chunks_are_served_without_a_fetch_and_bad_chunks_are_never_served()
    {
        var source = new FakeChunkSource();
        const int size = 64 << 10;
        var data = Content(size, 1);
        var digests = new List<ChunkDigest> { source.Add(data), ChunkVerifier.ZeroChunkDigest(size, null), source.Add(Content(size, 2)) };
        var index = FixedIndex.Parse(FixedIndex.Build(Guid.NewGuid(), DateTimeOffset.UnixEpoch, 3L * size, size, digests));
        using var access = new ChunkedArchiveReader("disk.img", index, source, null, false, new ChunkedReaderOptions { ReadAhead = 0 });
        var zero = new byte[size];
        zero.AsSpan().Fill(0xAA);
        Assert.Equal(size, await access.ReadAtAsync(size, zero, default));
        Assert.All(zero, b => Assert.Equal(0, b));
        Assert.Equal(0, source.Reads);
        Assert.Equal(1, access.ZeroChunksServed);

        // Chunk 2's blob replaced by another chunk's: the digest check fails, the error names the chunk, no bytes.
        using (var enc = new BlobEncoder()) source.Replace(digests[2], enc.Encode(data, null, true));
        var buf = new byte[16];
        var e = await Assert.ThrowsAsync<ChunkException>(async () => await access.ReadAtAsync(2L * size + 5, buf, default));
        Assert.Equal("ChunkDigestMismatch", e.ErrorId);
        Assert.Equal(2, e.ChunkIndex);
        Assert.Contains(digests[2].ToString(), e.Message);
        Assert.All(buf, b => Assert.Equal(0, b));
        // Chunk 0 still reads fine.
        Assert.Equal(16, await access.ReadAtAsync(0, buf, default));
        Assert.True(data.AsSpan(0, 16).SequenceEqual(buf));
    }

    /// <summary>A source that damages the copies it hands out of one digest (a flipped bit in transit), a number of times.</summary>
    private sealed class DamagingSource(IChunkSource inner, ChunkDigest victim, int damagedCopies) : IChunkSource
    {
        private int _left = damagedCopies;
        public int VictimReads;

        public async ValueTask<int> ReadRawChunkAsync(ChunkDigest digest, byte[] buffer, CancellationToken ct)
        {
            int n = await inner.ReadRawChunkAsync(digest, buffer, ct);
            if (digest == victim)
            {
                Interlocked.Increment(ref VictimReads);
                if (Interlocked.Decrement(ref _left) >= 0) buffer[n / 2] ^= 0x10;
            }
            return n;
        }
    }

    private static (FakeChunkSource Source, FixedIndex Index, byte[] Image) MakeDisk(int chunks, int size)
    {
        var source = new FakeChunkSource();
        var image = Content(chunks * size, 5);
        var digests = Enumerable.Range(0, chunks).Select(i => source.Add(image.AsSpan(i * size, size).ToArray())).ToList();
        return (source, FixedIndex.Parse(FixedIndex.Build(Guid.NewGuid(), DateTimeOffset.UnixEpoch, image.Length, size, digests)), image);
    }

    [Fact]
    public async Task A_copy_damaged_on_the_way_is_read_again_and_the_bytes_served_are_exact()
    {
        const int size = 64 << 10;
        var (source, index, image) = MakeDisk(6, size);
        var damaging = new DamagingSource(source, index.DigestAt(3), damagedCopies: 1);
        using var chunkAccess = new ChunkAccess(damaging, new ChunkAccessOptions { FetchConcurrency = 4 });
        using var reader = new ChunkedArchiveReader("disk.img", index, chunkAccess, null, false, new ChunkedReaderOptions { ReadAhead = 0 });
        var all = new byte[image.Length];
        for (long off = 0; off < all.Length; off += 10_000)
            Assert.Equal((int)Math.Min(10_000, all.Length - off), await reader.ReadAtAsync(off, all.AsMemory((int)off, (int)Math.Min(10_000, all.Length - off)), default));
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(image)), Convert.ToHexStringLower(SHA256.HashData(all)));
        Assert.Equal(1, chunkAccess.Rereads);
        Assert.Equal(2, damaging.VictimReads);
    }

    [Fact]
    public async Task A_chunk_damaged_in_every_copy_fails_the_read_naming_it_and_serves_no_byte()
    {
        const int size = 64 << 10;
        var (source, index, image) = MakeDisk(4, size);
        var victim = index.DigestAt(2);
        var damaging = new DamagingSource(source, victim, damagedCopies: int.MaxValue);
        using var chunkAccess = new ChunkAccess(damaging, new ChunkAccessOptions { FetchConcurrency = 2 });
        using var reader = new ChunkedArchiveReader("disk.img", index, chunkAccess, null, false, new ChunkedReaderOptions { ReadAhead = 0 });
        var buf = new byte[100];
        buf.AsSpan().Fill(0xAA);
        // The read spans chunks 1 and 2: nothing of it is served, not even chunk 1's good bytes.
        var e = await Assert.ThrowsAsync<ChunkException>(async () => await reader.ReadAtAsync(2L * size - 50, buf, default));
        Assert.Equal("BlobCrcMismatch", e.ErrorId);
        Assert.Equal(PbsErrorKind.Integrity, e.Kind);
        Assert.Equal(victim.ToString(), e.Digest);
        Assert.Equal(2, e.ChunkIndex);
        Assert.Equal(2L * size, e.Offset);
        Assert.Contains($"disk.img: chunk 2 at offset {2L * size} (digest {victim})", e.Message);
        Assert.Contains($"on each of {ChunkDecoder.IntegrityReads} reads", e.Message);
        Assert.Equal(ChunkDecoder.IntegrityReads - 1, chunkAccess.Rereads);
        Assert.Equal(ChunkDecoder.IntegrityReads, damaging.VictimReads);
        Assert.All(buf.AsSpan(50).ToArray(), b => Assert.Equal(0xAA, b));
        // The failure is not cached: the other chunks still read, exactly.
        Assert.Equal(100, await reader.ReadAtAsync(0, buf, default));
        Assert.True(image.AsSpan(0, 100).SequenceEqual(buf));
    }

    /// <summary>A source that damages one digest's first copy, then loses it.</summary>
    private sealed class DamagedThenMissingSource(IChunkSource inner, ChunkDigest victim) : IChunkSource
    {
        private int _reads;

        public async ValueTask<int> ReadRawChunkAsync(ChunkDigest digest, byte[] buffer, CancellationToken ct)
        {
            if (digest == victim && Interlocked.Increment(ref _reads) > 1)
                throw new PbsNotFoundException("ChunkMissing", $"chunk {digest} is missing (injected)");
            int n = await inner.ReadRawChunkAsync(digest, buffer, ct);
            if (digest == victim) buffer[n / 2] ^= 0x10;
            return n;
        }
    }

    [Fact]
    public async Task A_reread_that_cannot_be_read_fails_naming_the_chunk()
    {
        const int size = 64 << 10;
        var (source, index, _) = MakeDisk(3, size);
        using var reader = new ChunkedArchiveReader("disk.img", index, new DamagedThenMissingSource(source, index.DigestAt(1)), null, false,
            new ChunkedReaderOptions { ReadAhead = 0 });
        var e = await Assert.ThrowsAsync<ChunkException>(async () => await reader.ReadAtAsync(size + 1, new byte[10], default));
        Assert.Equal("ChunkMissing", e.ErrorId);
        Assert.Equal(index.DigestAt(1).ToString(), e.Digest);
        Assert.Equal(size, e.Offset);
    }

    [Fact]
    public async Task Duplicate_chunks_are_fetched_and_decoded_once_and_read_back_at_every_offset()
    {
        var source = new FakeChunkSource();
        const int size = 64 << 10;
        byte[] a = Content(size, 11), b = Content(size, 12);
        ChunkDigest da = source.Add(a), db = source.Add(b);
        var layout = new[] { a, b, a, a, b, a };
        var index = FixedIndex.Parse(FixedIndex.Build(Guid.NewGuid(), DateTimeOffset.UnixEpoch, (long)layout.Length * size, size,
            [da, db, da, da, db, da]));
        using var access = new ChunkedArchiveReader("disk.img", index, source, null, false, new ChunkedReaderOptions { CacheChunks = 2, ReadAhead = 0 });
        var all = new byte[layout.Length * size];
        // Piecewise, crossing chunk boundaries, so every position is asked for on its own.
        for (int off = 0; off < all.Length; off += 24_000)
            await access.ReadExactlyAtAsync(off, all.AsMemory(off, Math.Min(24_000, all.Length - off)), "test", default);
        for (int i = 0; i < layout.Length; i++)
            Assert.True(layout[i].AsSpan().SequenceEqual(all.AsSpan(i * size, size)), $"chunk {i} differs");
        Assert.Equal(2, source.Reads);
        Assert.Equal(2, access.ChunksFetched);
    }
}
