using PbsRestore.Formats;
using PbsRestore.Sources;

namespace PbsRestore.Access;

/// <summary>Tuning of a <see cref="ChunkedArchiveReader"/>.</summary>
public sealed record ChunkedReaderOptions
{
    /// <summary>Decoded chunks held at most, read-ahead included (least recently used go first). 16 x 4 MiB = 64 MiB.</summary>
    public int CacheChunks { get; init; } = 16;

    /// <summary>
    /// A memory budget in bytes for chunks (e.g. from -CacheSize); when set it replaces <see cref="CacheChunks"/>. It
    /// counts in the index's largest chunk: one fetch buffer per chunk in flight (an eighth of the budget, at least the
    /// read-ahead and the chunk being read) comes out of it first, the rest holds decoded chunks (at least one),
    /// read-ahead included.
    /// </summary>
    public long? CacheBytes { get; init; }

    /// <summary>
    /// Chunks fetched ahead of a sequential reader (0 = none); they are fetched at once, all in flight together. At most
    /// the cache's capacity less one, so that the chunk being read is never pushed out by its own read-ahead.
    /// </summary>
    public int ReadAhead { get; init; } = 4;
}

/// <summary>
/// Random access to the plaintext of one index archive (dynamic or fixed): any offset, any length. Chunks are
/// fetched through the chunk-access service (<see cref="IChunkAccess"/>: the same gate, bandwidth cap and retry
/// policy as a restore) only when a read touches them, decoded and verified by
/// the one <see cref="ChunkDecoder"/> (CRC, GCM tag, size, digest; a damaged copy is read again, as in a restore)
/// before a byte is served, and kept in a
/// bounded LRU cache. Concurrent reads of one chunk share a single fetch; all-zero chunks are never fetched; a
/// reader moving forward through the archive gets the next chunks fetched in the background (read-ahead).
/// Used by the file-level restore (pxar) and meant for any block-level consumer.
/// </summary>
public sealed class ChunkedArchiveReader : IRandomAccessData, IDisposable
{
    private readonly string _archive;
    private readonly IChunkIndex _index;
    private readonly IChunkAccess _access;
    private readonly ChunkAccess? _ownAccess;
    private readonly CryptConfig? _crypt;
    private readonly bool _encrypted;
    private readonly ChunkedReaderOptions _options;
    private readonly ChunkDigest? _zeroFull, _zeroLast;
    private readonly int _rawSize;
    private readonly System.Collections.Concurrent.ConcurrentBag<ChunkDecoder> _decoders = [];
    private readonly System.Collections.Concurrent.ConcurrentBag<byte[]> _rawBuffers = [];
    // Decoded chunks' arrays, reused: a fresh 4 MiB array per fetch is large-object-heap garbage until a full
    // collection, so a reader streaming through a disk would grow the working set far beyond its cache. Under _gate.
    private readonly Stack<byte[]> _plainBuffers = new();
    private readonly object _gate = new();
    // Keyed by digest, not by position: an archive's duplicate chunks (one digest at several offsets, as PBS
    // deduplicates) share one fetch and one decoded copy, as they do in a restore.
    private readonly Dictionary<ChunkDigest, LinkedListNode<Slot>> _cache = [];
    private readonly LinkedList<Slot> _lru = new();
    private readonly CancellationTokenSource _life = new();
    // Fetches and decodes running at once (at least the read-ahead and the chunk being read). Each holds a raw buffer,
    // so this bounds the memory beside the cache: many initiators asking for many chunks at once would otherwise each
    // get their own.
    private readonly SemaphoreSlim _fetchSlots;
    private readonly int _cacheChunks, _readAhead;
    private int _lastChunk = int.MinValue / 2;
    private long _fetched, _zeroServed, _bytesFetched;

    /// <summary>
    /// A cached or in-flight chunk. Its array goes back to the pool only once it has left the cache and no reader
    /// is still copying from it (<see cref="Users"/>; both under the reader's lock), so a reused array can never
    /// hand one chunk's bytes to a reader of another.
    /// </summary>
    internal sealed class Slot(ChunkDigest digest, Task<byte[]> task)
    {
        public ChunkDigest Digest { get; } = digest;
        public Task<byte[]> Task { get; } = task;
        public int Users;
        public bool Evicted;
    }

    /// <summary>A reader over <paramref name="chunks"/> with its own chunk access (gate at its automatic ceiling, retries).</summary>
    public ChunkedArchiveReader(string archive, IChunkIndex index, IChunkSource chunks, CryptConfig? crypt, bool encrypted,
        ChunkedReaderOptions? options = null)
        : this(archive, index, OwnAccess(chunks, out var own), crypt, encrypted, options) => _ownAccess = own;

    /// <summary>A reader fetching through <paramref name="access"/> (e.g. one shared with other readers or a restore).</summary>
    public ChunkedArchiveReader(string archive, IChunkIndex index, IChunkAccess access, CryptConfig? crypt, bool encrypted,
        ChunkedReaderOptions? options = null)
    {
        if (encrypted && crypt is null) throw new PbsKeyException("KeyRequired", $"{archive} is encrypted; a key is needed to read it");
        _archive = archive;
        _index = index;
        _access = access;
        _crypt = encrypted ? crypt : null;
        _encrypted = encrypted;
        _options = options ?? new ChunkedReaderOptions();
        if (_options.CacheChunks < 1) throw new ArgumentOutOfRangeException(nameof(options), "the cache needs room for one chunk");
        if (_options.CacheBytes is < 0) throw new ArgumentOutOfRangeException(nameof(options), "the cache size cannot be negative");
        int slots;
        if (_options.CacheBytes is { } bytes)
        {
            // A memory budget: the chunks in flight (a fetch buffer each) are paid from it first, the rest is cache.
            // An eighth of it may be in flight (random readers with many requests out, e.g. a VM booting from a
            // distant server, wait on latency, not on decoding), at least the read-ahead and the chunk being read.
            int budget = (int)Math.Clamp(bytes / Math.Max(1, index.MaxChunkSize), 1, int.MaxValue / 2);
            slots = Math.Clamp(Math.Max(_options.ReadAhead + 1, budget / 8), 1, Math.Max(1, budget / 2));
            _cacheChunks = Math.Max(1, budget - slots);
        }
        else
        {
            _cacheChunks = _options.CacheChunks;
            slots = Math.Max(1, _options.ReadAhead + 1);
        }
        _readAhead = Math.Clamp(_options.ReadAhead, 0, Math.Min(_cacheChunks, slots) - 1);
        _fetchSlots = new SemaphoreSlim(slots);
        _rawSize = index.MaxChunkSize + FileFormats.EncryptedBlobHeaderSize;
        if (index.Count > 0)
        {
            // Zero chunks: a fixed index's chunk size and its last chunk's; a dynamic index's largest chunk, which is
            // what a content-defined chunker cuts out of a long run of zeros (its hash never hits a boundary there).
            _zeroFull = ChunkVerifier.ZeroChunkDigest(index.MaxChunkSize, _crypt);
            int last = index.LengthOf(index.Count - 1);
            if (last != index.MaxChunkSize) _zeroLast = ChunkVerifier.ZeroChunkDigest(last, _crypt);
        }
    }

    // A fixed ceiling above what the cache and read-ahead ever ask at once: the gate never holds a reader back, and
    // the retry policy and counters are the restore's.
    private static ChunkAccess OwnAccess(IChunkSource chunks, out ChunkAccess own) =>
        own = new ChunkAccess(chunks, new ChunkAccessOptions { FetchConcurrency = FetchBudget.AutoFetchLimit });

    public long Length => _index.Size;
    public IChunkIndex Index => _index;

    /// <summary>Chunks fetched from the source so far (zero chunks and cache hits, duplicates included, not counted).</summary>
    public long ChunksFetched => Interlocked.Read(ref _fetched);

    /// <summary>Encoded bytes fetched from the source so far.</summary>
    public long BytesFetched => Interlocked.Read(ref _bytesFetched);

    /// <summary>Decoded chunks the cache keeps at most, read-ahead included.</summary>
    public int CacheCapacity => _cacheChunks;

    /// <summary>Zero chunks served without a fetch.</summary>
    public long ZeroChunksServed => Interlocked.Read(ref _zeroServed);

    public async ValueTask<int> ReadAtAsync(long offset, Memory<byte> buffer, CancellationToken ct)
    {
        if (offset < 0) throw new ArgumentOutOfRangeException(nameof(offset));
        if (offset >= Length || buffer.Length == 0) return 0;
        int want = (int)Math.Min(buffer.Length, Length - offset);
        int done = 0;
        int chunk = FindChunk(offset);
        while (done < want)
        {
            long start = _index.OffsetOf(chunk);
            int length = _index.LengthOf(chunk);
            int within = (int)(offset + done - start);
            int n = Math.Min(length - within, want - done);
            var slot = Acquire(chunk);
            if (slot is null) buffer.Span.Slice(done, n).Clear(); // a zero chunk
            else
            {
                var data = await WaitHeldAsync(slot, ct).ConfigureAwait(false);
                try { data.AsSpan(within, n).CopyTo(buffer.Span[done..]); }
                finally { Release(slot); }
            }
            done += n;
            chunk++;
        }
        return done;
    }

    /// <summary>
    /// The bytes from <paramref name="offset"/> to the end of their chunk (at most <paramref name="maxLength"/>), lent
    /// from the cache instead of copied: a sender can hand them to the socket as they are. The chunk is verified as
    /// for <see cref="ReadAtAsync"/>, and its array is not reused until the lease is disposed (evicted meanwhile, it
    /// is recycled then). A zero chunk lends shared zeros (at most 1 MiB at a time). Empty at or past the end, and
    /// when half the cache is lent already (the caller then reads a copy).
    /// </summary>
    public async ValueTask<ChunkLease> LeaseAsync(long offset, int maxLength, CancellationToken ct)
    {
        if (offset < 0) throw new ArgumentOutOfRangeException(nameof(offset));
        if (offset >= Length || maxLength <= 0) return default;
        int chunk = FindChunk(offset);
        int within = (int)(offset - _index.OffsetOf(chunk));
        int n = Math.Min(_index.LengthOf(chunk) - within, maxLength);
        if (IsZeroChunk(chunk))
        {
            Acquire(chunk); // for the read-ahead of a reader crossing a hole
            return new ChunkLease(SharedZeros.AsMemory(0, Math.Min(n, SharedZeros.Length)), null, null);
        }
        // A lent chunk evicted meanwhile keeps its array until the lease ends, on top of the cache: at most half the
        // cache's chunks are lent at once, beyond that the caller copies (and the bound holds however slow it sends).
        if (Interlocked.Increment(ref _leases) > Math.Max(1, _cacheChunks / 2))
        {
            Interlocked.Decrement(ref _leases);
            return default;
        }
        var slot = Acquire(chunk)!;
        try
        {
            var data = await WaitHeldAsync(slot, ct).ConfigureAwait(false);
            return new ChunkLease(data.AsMemory(within, n), this, slot);
        }
        catch
        {
            Interlocked.Decrement(ref _leases);
            throw;
        }
    }

    /// <summary>
    /// The verified bytes of a slot the caller holds (<see cref="Acquire"/>). The fetch runs on its own token (others
    /// may be waiting for it); this caller stops waiting when cancelled. If the bytes never come (a failed fetch, a
    /// cancelled wait), the slot is released here.
    /// </summary>
    private async ValueTask<byte[]> WaitHeldAsync(Slot slot, CancellationToken ct)
    {
        try
        {
            return await slot.Task.WaitAsync(ct).ConfigureAwait(false);
        }
        catch
        {
            Release(slot);
            throw;
        }
    }

    private int _leases;
    private static readonly byte[] SharedZeros = new byte[1 << 20];

    /// <summary>Bytes lent by <see cref="LeaseAsync"/>; dispose once they are sent (once only).</summary>
    public readonly struct ChunkLease : IDisposable
    {
        private readonly ChunkedArchiveReader? _reader;
        private readonly Slot? _slot;

        internal ChunkLease(ReadOnlyMemory<byte> data, ChunkedArchiveReader? reader, Slot? slot)
        {
            Data = data;
            _reader = reader;
            _slot = slot;
        }

        public ReadOnlyMemory<byte> Data { get; }

        public void Dispose()
        {
            if (_slot is { } slot)
            {
                _reader!.Release(slot);
                Interlocked.Decrement(ref _reader._leases);
            }
        }
    }

    /// <summary>The index entry holding <paramref name="offset"/> (binary search over the end offsets).</summary>
    public int FindChunk(long offset)
    {
        if (_index is FixedIndex f) return (int)(offset / f.ChunkSize);
        int lo = 0, hi = _index.Count - 1;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if (_index.OffsetOf(mid) + _index.LengthOf(mid) <= offset) lo = mid + 1;
            else hi = mid;
        }
        return lo;
    }

    /// <summary>True when index entry <paramref name="chunk"/> is an all-zero chunk (served without a fetch).</summary>
    public bool IsZeroChunk(int chunk)
    {
        var d = _index.DigestAt(chunk);
        int len = _index.LengthOf(chunk);
        return (len == _index.MaxChunkSize && _zeroFull == d) || (_zeroLast == d && chunk == _index.Count - 1);
    }

    /// <summary>
    /// The chunk's slot (cached, or one shared fetch), held for the caller until <see cref="Release"/>; null for an
    /// all-zero chunk, which is never fetched.
    /// </summary>
    private Slot? Acquire(int chunk)
    {
        bool zero = IsZeroChunk(chunk);
        Slot? slot = null;
        lock (_gate)
        {
            if (!zero)
            {
                slot = Lookup(chunk);
                slot.Users++;
            }
            // A few requests of one sequential reader arrive out of order (an initiator keeps several in flight), so
            // a step back by one or ahead by two still counts as sequential; the front only moves forward then.
            // Zero chunks move the front too: a sequential reader crossing a hole keeps its read-ahead.
            bool sequential = chunk >= _lastChunk - 1 && chunk <= _lastChunk + 2;
            if (!sequential || chunk > _lastChunk) _lastChunk = chunk;
            if (sequential)
                for (int ahead = 1; ahead <= _readAhead && chunk + ahead < _index.Count; ahead++)
                    if (!IsZeroChunk(chunk + ahead)) Lookup(chunk + ahead);
        }
        if (slot is null) Interlocked.Increment(ref _zeroServed);
        return slot;
    }

    /// <summary>The caller is done copying from the slot's array.</summary>
    private void Release(Slot slot)
    {
        lock (_gate)
        {
            slot.Users--;
            Recycle(slot);
        }
    }

    /// <summary>Under the lock: returns an evicted slot's array to the pool once nobody reads it any more.</summary>
    private void Recycle(Slot slot)
    {
        if (!slot.Evicted || slot.Users > 0 || !slot.Task.IsCompletedSuccessfully) return;
        slot.Evicted = false; // once only
        ReturnPlain(slot.Task.Result);
    }

    /// <summary>Under the lock: keeps a decoded chunk's array for the next fetch, up to what the cache can use.</summary>
    private void ReturnPlain(byte[] array)
    {
        if (array.Length == _index.MaxChunkSize && _plainBuffers.Count < _cacheChunks + 4)
            _plainBuffers.Push(array);
    }

    private byte[] RentPlain()
    {
        lock (_gate)
            if (_plainBuffers.TryPop(out var b)) return b;
        Interlocked.Increment(ref _plainAllocated);
        return GC.AllocateUninitializedArray<byte>(_index.MaxChunkSize);
    }

    private long _plainAllocated;

    /// <summary>Arrays allocated for decoded chunks (the rest were reused from evicted chunks); for tests.</summary>
    internal long PlainArraysAllocated => Interlocked.Read(ref _plainAllocated);

    /// <summary>Under the lock: the cached or in-flight slot of a chunk, else a new fetch; trims the cache.</summary>
    private Slot Lookup(int chunk)
    {
        var digest = _index.DigestAt(chunk);
        if (_cache.TryGetValue(digest, out var node))
        {
            _lru.Remove(node);
            _lru.AddFirst(node);
            return node.Value;
        }
        var task = Task.Run(() => FetchAsync(chunk));
        var slot = new Slot(digest, task);
        var added = _lru.AddFirst(slot);
        _cache[digest] = added;
        // Failed fetches leave the cache, so that a later read tries again instead of repeating an old error.
        task.ContinueWith(t =>
        {
            lock (_gate)
                if (_cache.TryGetValue(digest, out var n) && n == added)
                {
                    _cache.Remove(digest);
                    _lru.Remove(n);
                }
        }, CancellationToken.None, TaskContinuationOptions.NotOnRanToCompletion, TaskScheduler.Default);
        // A chunk evicted while its fetch was still running is recycled when the fetch completes.
        task.ContinueWith(_ =>
        {
            lock (_gate) Recycle(slot);
        }, CancellationToken.None, TaskContinuationOptions.OnlyOnRanToCompletion, TaskScheduler.Default);
        // Evict the least recently used; readers still copying from one keep its array until they release it.
        while (_cache.Count > _cacheChunks && _lru.Last is { } last && last != added)
        {
            _lru.RemoveLast();
            _cache.Remove(last.Value.Digest);
            last.Value.Evicted = true;
            Recycle(last.Value);
        }
        return slot;
    }

    private async Task<byte[]> FetchAsync(int chunk)
    {
        var ct = _life.Token;
        var job = new ChunkJob(_index.DigestAt(chunk), chunk, _index.LengthOf(chunk), [_index.OffsetOf(chunk)]);
        await _fetchSlots.WaitAsync(ct).ConfigureAwait(false);
        var raw = _rawBuffers.TryTake(out var r) ? r : GC.AllocateUninitializedArray<byte>(_rawSize);
        var decoder = _decoders.TryTake(out var d) ? d : new ChunkDecoder(_archive, _crypt, _encrypted, _index.MaxChunkSize);
        try
        {
            int length;
            try
            {
                using var fetch = await _access.FetchAsync(job.Digest, raw, ct).ConfigureAwait(false);
                length = fetch.Length;
            }
            catch (PbsException e)
            {
                throw ChunkDecoder.Blame(_archive, job, e);
            }
            Interlocked.Increment(ref _fetched);
            Interlocked.Add(ref _bytesFetched, length);
            var plain = RentPlain();
            try
            {
                // Throws (and clears) on any failed check, after rereading a damaged copy as a restore does.
                await decoder.DecodeOrRereadAsync(job, raw, length, plain.AsMemory(0, job.Length), _access, null, ct).ConfigureAwait(false);
            }
            catch
            {
                lock (_gate) ReturnPlain(plain); // cleared by the failed decode
                throw;
            }
            return plain;
        }
        finally
        {
            _rawBuffers.Add(raw);
            _decoders.Add(decoder);
            _fetchSlots.Release();
        }
    }

    public void Dispose()
    {
        _life.Cancel();
        while (_decoders.TryTake(out var d)) d.Dispose();
        _ownAccess?.Dispose();
        _life.Dispose();
    }
}
