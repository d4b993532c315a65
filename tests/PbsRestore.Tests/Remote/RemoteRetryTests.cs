using System.Security.Cryptography;
using PbsRestore.Sources.Remote;
using PbsRestore.Restore;
using PbsRestore.Sources;
using PbsRestore.Tests.Server;
using PbsRestore.Destinations;

namespace PbsRestore.Tests.Remote;

/// <summary>Transient faults injected by our server are retried; persistent ones end the restore with the chunk named.</summary>
[Collection(nameof(ServerFaultInjectionCollection))]
public sealed class RemoteRetryTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("pbsrestore-retry-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly GoldenArchive Scsi0 =
        GoldenManifest.Instance.Snapshot("vm/100/2024-05-01T10:00:00Z").Archives.Single(a => a.Name == "drive-scsi0.img.fidx");

    private static async Task<(RestoreResult Result, RemoteSnapshotReader Reader, RestoreCounters Counters)> RestoreAsync(TestServer server, string dest, int sessions)
    {
        var client = new PbsClient(PbsConnectionSettings.Resolve($"root@pam!test@127.0.0.1:{server.Port}:golden", server.Fingerprint,
            TestServer.DefaultTokenSecret, _ => null));
        using var remote = new RemoteDatastore(client, sessions, ownsClient: true);
        var reader = (RemoteSnapshotReader)await remote.OpenSnapshotAsync(
            new SnapshotRef(BackupNamespace.Root, "vm", "100", DateTimeOffset.FromUnixTimeSeconds(1714557600)), default);
        await using (reader)
        {
            var counters = new RestoreCounters();
            var result = await new ArchiveRestorer(reader, null).RestoreAsync("drive-scsi0.img", dest, new DestinationOptions(), new RestoreOptions { FetchConcurrency = 4 },
                counters, default);
            return (result, reader, counters);
        }
    }

    private static Task<TestServer> Start(params string[] faults) =>
        TestServer.StartAsync(["--datastore", "golden=" + TestPaths.GoldenPath("datastore"), "--token", TestServer.DefaultToken, .. faults]);

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task Dropped_connections_are_reconnected_and_the_restore_is_bit_exact(int sessions)
    {
        await using var server = await Start("--drop-after-chunks", "5");
        string dest = Path.Combine(_dir, $"drop{sessions}.img");
        var (_, reader, _) = await RestoreAsync(server, dest, sessions);
        Assert.Equal(Scsi0.PlaintextSha256, Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(dest))));
        // A broken connection is replaced by the session itself (and the chunk asked again there), indexes first.
        Assert.True(reader.Sessions.Sum(s => s.Connections) > sessions, "sessions reconnected");
    }

    [Fact]
    public async Task Random_server_errors_are_retried_and_the_restore_is_bit_exact()
    {
        await using var server = await Start("--chunk-error-rate", "0.3", "--fault-seed", "11");
        string dest = Path.Combine(_dir, "errors.img");
        var (_, _, counters) = await RestoreAsync(server, dest, 1);
        Assert.Equal(Scsi0.PlaintextSha256, Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(dest))));
        Assert.True(counters.Retries > 0);
    }

    [Fact]
    public async Task A_chunk_that_always_fails_ends_the_restore_naming_it_and_keeps_the_partial_for_resume()
    {
        var victim = Scsi0.Chunks.First(c => !c.IsZero);
        await using var server = await Start("--chunk-status", $"{victim.Digest}=500");
        string dest = Path.Combine(_dir, "fail.img");
        var e = await Assert.ThrowsAsync<ChunkException>(() => RestoreAsync(server, dest, 1));
        Assert.Equal("ServerError", e.ErrorId);
        Assert.Equal(victim.Digest, e.Digest);
        Assert.Equal(victim.Offset, e.Offset);
        Assert.Contains("drive-scsi0.img.fidx", e.Message);
        // A server error may be mended: nothing looks complete, but what is done is kept for -Resume.
        Assert.False(File.Exists(dest));
        Assert.True(File.Exists(DestinationFile.PartialPathFor(dest)));
        Assert.Equal(DestinationFile.PartialPathFor(dest), e.Data[ArchiveRestorer.ResumableKey]);
    }
}
