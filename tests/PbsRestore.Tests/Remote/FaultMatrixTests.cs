using System.Security.Cryptography;
using PbsRestore.Formats;
using PbsRestore.Fixtures;
using PbsRestore.Sources.Remote;
using PbsRestore.Restore;
using PbsRestore.Sources;
using PbsRestore.Tests.Fixtures;
using PbsRestore.Tests.Server;
using Xunit.Abstractions;
using PbsRestore.Destinations;

namespace PbsRestore.Tests.Remote;

/// <summary>An image of 128 small chunks (random, text, zero and duplicate) for fault tests.</summary>
public sealed class FaultStoreFixture : IDisposable
{
    public const int ChunkSize = 64 * 1024;
    public static readonly DateTimeOffset Time = DateTimeOffset.FromUnixTimeSeconds(1714557600);
    public static readonly SnapshotRef Snapshot = new(BackupNamespace.Root, "vm", "400", Time);
    private readonly TempDir _dir = new();

    public FaultStoreFixture()
    {
        var writer = new DatastoreWriter(Path.Combine(_dir.Path, "store"));
        var snapshot = writer.BeginSnapshot("", "vm", "400", Time);
        var image = snapshot.AddImage("drive-scsi0.img", ImagePattern.Parse("random:3,zero:1,text:2,dup:1", 128L * ChunkSize, seed: 40), ChunkSize);
        var info = snapshot.Finish();
        Store = writer.RootPath;
        Sha256 = image.Sha256;
        Index = FixedIndex.Parse(File.ReadAllBytes(Path.Combine(info.Directory, "drive-scsi0.img.fidx")));
        var zero = ChunkVerifier.ZeroChunkDigest(ChunkSize, null);
        // The first data chunk and where it sits: the victim of the persistent faults.
        Victim = Enumerable.Range(0, Index.Count).Select(i => (Index: i, Digest: Index.DigestAt(i))).First(c => c.Digest != zero);
    }

    public string Store { get; }
    public string Sha256 { get; }
    public FixedIndex Index { get; }
    public (int Index, ChunkDigest Digest) Victim { get; }
    public long VictimOffset => (long)Victim.Index * ChunkSize;

    public void Dispose() => _dir.Dispose();
}

/// <summary>
/// Issue 5's fault matrix: each fault the server can inject, with one reader session and with several, either
/// restores bit-exactly (transient faults: dropped connections, corruption in transit, 5xx, stalls) or ends with
/// an error naming the archive, chunk, offset and digest and leaves no file (persistent faults). Plus faults we
/// did not build into our server: a TCP proxy that resets connections, a chunk altered on disk with a valid CRC.
/// </summary>
[Collection(nameof(ServerFaultInjectionCollection))]
public sealed class FaultMatrixTests(FaultStoreFixture store, ITestOutputHelper output) : IClassFixture<FaultStoreFixture>, IDisposable
{
    /// <summary>Short, so that stall tests take seconds; real restores use 60 s.</summary>
    private static readonly TimeSpan StallTimeout = TimeSpan.FromSeconds(1.5);
    /// <summary>For the stalls that must be waited for: far above them, as a busy machine adds its own delays.</summary>
    private static readonly TimeSpan PatientStallTimeout = TimeSpan.FromSeconds(5);
    /// <summary>Shifts every seed: `build.ps1 Soak` runs the matrix round after round with PBS_FAULT_SEED = 1, 2, ...</summary>
    private static readonly int Seed = int.TryParse(Environment.GetEnvironmentVariable("PBS_FAULT_SEED"), out int s) ? s : 0;
    private static string Seeded(int seed) => (seed + Seed).ToString(System.Globalization.CultureInfo.InvariantCulture);
    private readonly TempDir _dir = new();
    public void Dispose() => _dir.Dispose();

    private Task<TestServer> StartAsync(string storePath, params string[] flags) =>
        TestServer.StartAsync(["--datastore", "faults=" + storePath, "--token", TestServer.DefaultToken, .. flags]);

    internal sealed record Outcome(RestoreResult? Result, RestoreCounters Counters, int Retries, int Connections, Exception? Error, string Destination);

    private async Task<Outcome> RestoreAsync(int port, string fingerprint, int sessions, string name, int? fetch = null, TimeSpan? stallTimeout = null)
    {
        string dest = Path.Combine(_dir.Path, name + ".img");
        var client = new PbsClient(PbsConnectionSettings.Resolve($"{TestServer.DefaultTokenId}@127.0.0.1:{port}:faults", fingerprint,
            TestServer.DefaultTokenSecret, _ => null), new PbsClientOptions { StallTimeout = stallTimeout ?? StallTimeout });
        using var remote = new RemoteDatastore(client, sessions, ownsClient: true);
        var counters = new RestoreCounters();
        var reader = (RemoteSnapshotReader)await remote.OpenSnapshotAsync(FaultStoreFixture.Snapshot, default);
        await using (reader)
        {
            try
            {
                var result = await new ArchiveRestorer(reader, null).RestoreAsync("drive-scsi0.img", dest,
                    new DestinationOptions(), new RestoreOptions { FetchConcurrency = fetch }, counters, default);
                return new Outcome(result, counters, (int)counters.Retries, reader.Sessions.Sum(s => s.Connections), null, dest);
            }
            catch (Exception e)
            {
                return new Outcome(null, counters, (int)counters.Retries, reader.Sessions.Sum(s => s.Connections), e, dest);
            }
        }
    }

    private void AssertBitExact(Outcome o)
    {
        Assert.True(o.Error is null, $"restore failed: {o.Error}");
        Assert.Equal(store.Sha256, Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(o.Destination))));
        output.WriteLine($"bit-exact; retries {o.Retries}, rereads {o.Counters.Rereads}, connections {o.Connections}");
    }

    public static TheoryData<string, int> Transient()
    {
        var data = new TheoryData<string, int>();
        foreach (var fault in new[] { "drop", "corrupt-rate", "error-rate", "stall", "short-stall" })
            foreach (int sessions in new[] { 1, 4 })
                data.Add(fault, sessions);
        return data;
    }

    [Theory]
    [MemberData(nameof(Transient))]
    public async Task Transient_faults_are_survived_bit_exactly(string fault, int sessions)
    {
        string[] flags = fault switch
        {
            "drop" => ["--drop-after-chunks", "7"],
            // Rates low enough that a chunk failing every try is practically impossible (0.04^4 per chunk).
            "corrupt-rate" => ["--corrupt-rate", "0.04", "--corrupt-seed", Seeded(5)],
            "error-rate" => ["--chunk-error-rate", "0.1", "--fault-seed", Seeded(3)],
            "stall" => ["--stall-chunk-ms", "5000", "--stall-every", "16"],
            "short-stall" => ["--stall-chunk-ms", "300", "--stall-every", "8"],
            _ => throw new ArgumentException(fault),
        };
        await using var server = await StartAsync(store.Store, flags);
        var o = await RestoreAsync(server.Port, server.Fingerprint, sessions, $"{fault}-{sessions}",
            stallTimeout: fault == "short-stall" ? PatientStallTimeout : StallTimeout);
        AssertBitExact(o);
        switch (fault)
        {
            case "drop": Assert.True(o.Connections > sessions, "connections were dropped and replaced"); break;
            case "corrupt-rate": Assert.True(o.Counters.Rereads > 0, "corrupted copies were read again"); break;
            case "error-rate": Assert.True(o.Retries > 0, "5xx answers were retried"); break;
            case "stall": Assert.True(o.Retries > 0, "stalled requests were given up and retried"); break;
            case "short-stall": Assert.Equal(0, o.Retries); break; // below the deadline: waited for, not retried
        }
        Assert.Contains("fault:", server.StandardError);
    }

    public static TheoryData<string, int> Persistent()
    {
        var data = new TheoryData<string, int>();
        foreach (var fault in new[] { "corrupt", "404", "500" })
            foreach (int sessions in new[] { 1, 4 })
                data.Add(fault, sessions);
        return data;
    }

    [Theory]
    [MemberData(nameof(Persistent))]
    public async Task Persistent_faults_end_the_restore_naming_the_chunk(string fault, int sessions)
    {
        string victim = store.Victim.Digest.ToString();
        string[] flags = fault switch
        {
            "corrupt" => ["--corrupt-chunk", victim],
            "404" => ["--chunk-status", $"{victim}=404"],
            "500" => ["--chunk-status", $"{victim}=500"],
            _ => throw new ArgumentException(fault),
        };
        await using var server = await StartAsync(store.Store, flags);
        var o = await RestoreAsync(server.Port, server.Fingerprint, sessions, $"{fault}-{sessions}");
        var e = Assert.IsType<ChunkException>(o.Error);
        Assert.Equal(fault switch { "corrupt" => "BlobCrcMismatch", "404" => "ChunkMissing", _ => "ServerError" }, e.ErrorId);
        Assert.Equal(victim, e.Digest);
        Assert.Equal(store.Victim.Index, e.ChunkIndex);
        Assert.Equal(store.VictimOffset, e.Offset);
        Assert.Contains($"drive-scsi0.img.fidx: chunk {store.Victim.Index} at offset {store.VictimOffset} (digest {victim})", e.Message);
        if (fault == "corrupt") Assert.Contains($"on each of {RestorePipeline.IntegrityReads} reads", e.Message);
        if (fault == "500") Assert.True(o.Retries >= ChunkRetryPolicy.MaxAttempts - 1, $"retried {o.Retries} times");
        Assert.False(File.Exists(o.Destination));
        // Damaged or missing data will not mend itself: nothing is kept. A server error might: the partial stays for -Resume.
        Assert.Equal(fault == "500", File.Exists(DestinationFile.PartialPathFor(o.Destination)));
        Assert.Equal(fault == "500", File.Exists(ImageDestinations.JournalPathFor(o.Destination)));
    }

    [Fact]
    public async Task A_chunk_altered_on_disk_with_a_recomputed_crc_fails_its_digest_over_the_wire()
    {
        // A copy of the store whose victim chunk holds other valid content (a valid blob, CRC and all).
        string copy = Path.Combine(_dir.Path, "altered");
        CopyDirectory(store.Store, copy);
        string victimPath = Path.Combine(copy, ".chunks", store.Victim.Digest.ToString()[..4], store.Victim.Digest.ToString());
        var other = new byte[FaultStoreFixture.ChunkSize];
        other.AsSpan().Fill(0x5A);
        using (var encoder = new BlobEncoder())
            File.WriteAllBytes(victimPath, encoder.Encode(other, null, compress: true));
        await using var server = await StartAsync(copy);
        var o = await RestoreAsync(server.Port, server.Fingerprint, 2, "altered");
        var e = Assert.IsType<ChunkException>(o.Error);
        Assert.Equal("ChunkDigestMismatch", e.ErrorId);
        Assert.Equal(store.VictimOffset, e.Offset);
        Assert.Contains(store.Victim.Digest.ToString(), e.Message);
        Assert.False(File.Exists(o.Destination));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    public async Task A_tcp_proxy_that_resets_connections_is_survived(int sessions)
    {
        await using var server = await StartAsync(store.Store);
        // Cuts each connection after 0.3-2 MiB towards the client: mid-TLS-record, mid-frame, mid-chunk.
        await using var proxy = new TcpCutProxy(server.Port, 300_000, 2_000_000, seed: 17 + sessions + Seed);
        var o = await RestoreAsync(proxy.Port, server.Fingerprint, sessions, $"proxy-{sessions}");
        AssertBitExact(o);
        Assert.True(proxy.Cuts > 0, "the proxy cut connections");
        output.WriteLine($"proxy: {proxy.Connections} connections, {proxy.Cuts} cut");
    }

    [Fact]
    public async Task Twenty_concurrent_restores_through_one_server_with_random_drops_are_all_bit_exact()
    {
        await using var server = await StartAsync(store.Store, "--chunk-error-rate", "0.05", "--fault-seed", Seeded(9));
        await using var proxy = new TcpCutProxy(server.Port, 200_000, 3_000_000, seed: 20 + Seed);
        var outcomes = await Task.WhenAll(Enumerable.Range(0, 20).Select(i =>
            Task.Run(() => RestoreAsync(proxy.Port, server.Fingerprint, 1 + i % 3, $"concurrent-{i}", fetch: 4))));
        foreach (var o in outcomes) AssertBitExact(o);
        Assert.True(proxy.Cuts >= 10, $"the proxy cut {proxy.Cuts} connections");
    }

    private static void CopyDirectory(string from, string to)
    {
        foreach (var dir in Directory.EnumerateDirectories(from, "*", SearchOption.AllDirectories))
            Directory.CreateDirectory(Path.Combine(to, Path.GetRelativePath(from, dir)));
        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
            File.Copy(file, Path.Combine(to, Path.GetRelativePath(from, file)));
    }
}
