using System.Diagnostics;
using System.Net;
using PbsRestore.Fixtures;
using PbsRestore.Formats;
using PbsRestore.Tests.Fixtures;

namespace PbsRestore.Tests.Server;

/// <summary>A small datastore for the injection tests: one snapshot, 16 incompressible 1 MiB chunks (blobs of ~1 MiB).</summary>
public sealed class InjectionDatastoreFixture : IDisposable
{
    public const int ChunkSize = 1 << 20;
    public static readonly DateTimeOffset Time = DateTimeOffset.FromUnixTimeSeconds(1714557600);
    private readonly TempDir _dir = new();

    public InjectionDatastoreFixture()
    {
        var writer = new DatastoreWriter(Path.Combine(_dir.Path, "store"));
        var snapshot = writer.BeginSnapshot("", "vm", "300", Time);
        snapshot.AddImage("drive-scsi0.img", ImagePattern.Parse("random", 16L * ChunkSize, seed: 7), ChunkSize);
        var info = snapshot.Finish();
        Store = writer.RootPath;
        Index = FixedIndex.Parse(File.ReadAllBytes(Path.Combine(info.Directory, "drive-scsi0.img.fidx")));
        Digests = Enumerable.Range(0, Index.Count).Select(Index.DigestAt).Distinct().ToList();
        BlobSizes = Digests.ToDictionary(d => d, d => new FileInfo(writer.ChunkPath(d)).Length);
    }

    public string Store { get; }
    public FixedIndex Index { get; }
    public IReadOnlyList<ChunkDigest> Digests { get; }
    public IReadOnlyDictionary<ChunkDigest, long> BlobSizes { get; }
    public string Query => ReaderTestClient.Query("bench", "vm", "300", Time.ToUnixTimeSeconds());

    public void Dispose() => _dir.Dispose();
}

/// <summary>
/// --chunk-latency-ms, --max-parallel-reads, --bandwidth-mbit, --connection-bandwidth-mbit. The machine is noisy:
/// every timing assertion is a lower bound (injection must never be skipped), never an upper bound.
/// </summary>
public sealed class ServerInjectionTests(InjectionDatastoreFixture store) : IClassFixture<InjectionDatastoreFixture>
{
    private Task<TestServer> StartAsync(params string[] flags) =>
        TestServer.StartAsync(["--datastore", "bench=" + store.Store, "--token", TestServer.DefaultToken, .. flags]);

    private async Task<HttpClient> SessionAsync(TestServer server)
    {
        var http = ReaderTestClient.Create(server, store.Query, TestServer.DefaultTokenHeader, streamWindow: ReaderTestClient.WholeChunkWindow);
        await http.GetByteArrayAsync("download?file-name=drive-scsi0.img.fidx");
        return http;
    }

    private static async Task<long> FetchAsync(HttpClient http, ChunkDigest digest)
    {
        using var response = await http.GetAsync($"chunk?digest={digest}");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return (await response.Content.ReadAsByteArrayAsync()).LongLength;
    }

    // Timer and clock granularity: allow a millisecond per wait.
    private static void AtLeast(TimeSpan expected, TimeSpan actual, string what) =>
        Assert.True(actual >= expected - TimeSpan.FromMilliseconds(1), $"{what}: took {actual.TotalMilliseconds:F1} ms, expected at least {expected.TotalMilliseconds:F1} ms");

    [Fact]
    public async Task Chunk_latency_delays_every_chunk()
    {
        await using var server = await StartAsync("--chunk-latency-ms", "80");
        using var http = await SessionAsync(server);
        foreach (var d in store.Digests.Take(4))
        {
            var sw = Stopwatch.StartNew();
            Assert.Equal(store.BlobSizes[d], await FetchAsync(http, d));
            AtLeast(TimeSpan.FromMilliseconds(80), sw.Elapsed, "one chunk");
        }
        // Index downloads are not chunk reads (no latency asserted either way), and the bytes are unchanged.
        Assert.Equal(File.ReadAllBytes(Path.Combine(store.Store, ".chunks", store.Digests[0].ToString()[..4], store.Digests[0].ToString())),
            await http.GetByteArrayAsync($"chunk?digest={store.Digests[0]}"));
    }

    [Fact]
    public async Task Max_parallel_reads_1_serializes_concurrent_fetches()
    {
        const int k = 6;
        await using var server = await StartAsync("--chunk-latency-ms", "60", "--max-parallel-reads", "1");
        using var a = await SessionAsync(server);
        using var b = await SessionAsync(server); // server-wide: two connections share the queue
        var sw = Stopwatch.StartNew();
        await Task.WhenAll(store.Digests.Take(k).Select((d, i) => FetchAsync(i % 2 == 0 ? a : b, d)));
        AtLeast(TimeSpan.FromMilliseconds(k * 60), sw.Elapsed, $"{k} concurrent fetches with one read at a time");
    }

    [Fact]
    public async Task Link_bandwidth_is_shared_by_all_connections()
    {
        const double mbit = 40; // 5 MB/s
        await using var server = await StartAsync("--bandwidth-mbit", "40");
        using var a = await SessionAsync(server);
        using var b = await SessionAsync(server);
        var chunks = store.Digests.Take(8).ToList();
        var sw = Stopwatch.StartNew();
        var sizes = await Task.WhenAll(chunks.Select((d, i) => FetchAsync(i % 2 == 0 ? a : b, d)));
        long bytes = sizes.Sum();
        // One 64 KiB slice may pass at once (the burst).
        var expected = TimeSpan.FromSeconds((bytes - 64 * 1024) / (mbit * 1e6 / 8));
        AtLeast(expected, sw.Elapsed, $"{bytes} bytes over two connections at {mbit} Mbit/s");
    }

    [Fact]
    public async Task Connection_bandwidth_caps_each_connection()
    {
        const double mbit = 40; // 5 MB/s per connection
        await using var server = await StartAsync("--connection-bandwidth-mbit", "40");
        using var a = await SessionAsync(server);
        using var b = await SessionAsync(server);
        // Each connection fetches 4 chunks concurrently on its own; each is held to the cap on its own.
        async Task<(long Bytes, TimeSpan Elapsed)> Run(HttpClient http, IEnumerable<ChunkDigest> digests)
        {
            var sw = Stopwatch.StartNew();
            var sizes = await Task.WhenAll(digests.Select(d => FetchAsync(http, d)));
            return (sizes.Sum(), sw.Elapsed);
        }
        var results = await Task.WhenAll(Run(a, store.Digests.Take(4)), Run(b, store.Digests.Skip(4).Take(4)));
        foreach (var (bytes, elapsed) in results)
            AtLeast(TimeSpan.FromSeconds((bytes - 64 * 1024) / (mbit * 1e6 / 8)), elapsed, $"{bytes} bytes on one connection at {mbit} Mbit/s");
        // The speed test body is paced too.
        var sw2 = Stopwatch.StartNew();
        for (int i = 0; i < 4; i++) Assert.Equal(1 << 20, (await a.GetByteArrayAsync("speedtest")).Length);
        AtLeast(TimeSpan.FromSeconds((4.0 * (1 << 20) - 64 * 1024) / (mbit * 1e6 / 8)), sw2.Elapsed, "4 MiB of speed test");
    }

    [Fact]
    public async Task Injection_flags_in_help_and_checked()
    {
        var (helpCode, text, _) = await TestServer.RunToExitAsync("--help");
        Assert.Equal(0, helpCode);
        foreach (var flag in new[] { "--chunk-latency-ms", "--max-parallel-reads", "--bandwidth-mbit", "--connection-bandwidth-mbit" })
            Assert.Contains(flag, text);
        foreach (var (flag, value) in new[] { ("--chunk-latency-ms", "-5"), ("--max-parallel-reads", "0"), ("--bandwidth-mbit", "fast"), ("--connection-bandwidth-mbit", "0") })
        {
            var (code, _, err) = await TestServer.RunToExitAsync("--datastore", "bench=" + store.Store, flag, value);
            Assert.Equal(2, code);
            Assert.Contains(flag, err);
        }
        // The "=value" form works as for the other flags, and a server with every flag starts.
        await using var server = await StartAsync("--chunk-latency-ms=1", "--max-parallel-reads=8", "--bandwidth-mbit=10000", "--connection-bandwidth-mbit=5000");
        using var http = await SessionAsync(server);
        Assert.Equal(store.BlobSizes[store.Digests[0]], await FetchAsync(http, store.Digests[0]));
    }
}
