using System.Security.Cryptography;
using PbsRestore.Formats;
using PbsRestore.Sources.Remote;
using PbsRestore.Restore;
using PbsRestore.Sources;
using PbsRestore.Tests.Server;
using PbsRestore.Sources.Local;
using PbsRestore.Destinations;

namespace PbsRestore.Tests.Remote;

/// <summary>The real server over the golden datastore, with a token and a user, for the client tests.</summary>
public sealed class RemoteGoldenFixture : IAsyncLifetime
{
    public const string Store = "golden";
    public const string User = "alice@pbs";
    public const string Password = "alice-Pa55word";

    public TestServer Server { get; private set; } = null!;

    public async Task InitializeAsync() =>
        Server = await TestServer.StartAsync("--datastore", $"{Store}=" + TestPaths.GoldenPath("datastore"),
            "--token", TestServer.DefaultToken, "--user", $"{User}:{Password}");

    public async Task DisposeAsync() => await Server.DisposeAsync();

    public string Repository(string authId, string store = Store) => $"{authId}@127.0.0.1:{Server.Port}:{store}";

    public PbsClient TokenClient(string? store = null) =>
        new(PbsConnectionSettings.Resolve(Repository(TestServer.DefaultTokenId, store ?? Store), Server.Fingerprint, TestServer.DefaultTokenSecret, _ => null));

    /// <summary>How often the server refused a chunk as "not allowed" so far (its log).</summary>
    public int NotAllowedInLog() =>
        Server.StandardError.Split('\n').Count(l => l.Contains("download chunk", StringComparison.Ordinal) && l.Contains("not allowed", StringComparison.Ordinal));

    /// <summary>
    /// Returns once the server's log, as read here, holds every line the server wrote before this call: it sends a
    /// request the server logs (an unauthenticated one, for a path never asked before) and waits for that line. The
    /// log is one ordered stream, so what came before it is in too; no guess at how long the reading takes.
    /// </summary>
    public async Task LogBarrierAsync()
    {
        string marker = "log-barrier-" + Guid.NewGuid().ToString("N");
        using (var http = Server.CreateRestClient())
        using (var answer = await http.GetAsync($"/api2/json/{marker}"))
            Assert.Equal(System.Net.HttpStatusCode.Unauthorized, answer.StatusCode);
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (!Server.StandardError.Contains(marker, StringComparison.Ordinal))
        {
            Assert.True(waited.Elapsed < TimeSpan.FromSeconds(60), $"the server never logged {marker}");
            await Task.Delay(10);
        }
    }
}

public sealed class RemoteServerTests(RemoteGoldenFixture fixture) : IClassFixture<RemoteGoldenFixture>, IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("pbsrestore-remote-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task Listing_over_the_wire_equals_the_folder_listing()
    {
        using var client = fixture.TokenClient();
        using var remote = new RemoteDatastore(client);
        var local = new LocalDatastore(TestPaths.GoldenPath("datastore"));
        Assert.Equal($"root@pam!test@127.0.0.1:{fixture.Server.Port}:golden", remote.Location);

        var localNs = await local.ListNamespacesAsync(BackupNamespace.Root, 7, default);
        var remoteNs = await remote.ListNamespacesAsync(BackupNamespace.Root, 7, default);
        Assert.Equal(localNs.Select(n => n.ToString()), remoteNs.Select(n => n.ToString()));

        int snapshots = 0;
        foreach (var ns in localNs)
        {
            var a = await local.ListSnapshotsAsync(ns, null, null, default);
            var b = await remote.ListSnapshotsAsync(ns, null, null, default);
            Assert.Equal(a.Select(s => s.Ref), b.Select(s => s.Ref));
            foreach (var (l, r) in a.Zip(b))
            {
                Assert.Equal(l.Files, r.Files); // names, sizes, crypt modes (records)
                Assert.Equal(l.KeyFingerprint, r.KeyFingerprint);
                Assert.Equal(l.Owner, r.Owner);
                Assert.Equal(l.Size, r.Size);
                Assert.Equal(l.Encrypted, r.Encrypted);
                Assert.Equal(remote.Location, r.Location);
                snapshots++;
            }
        }
        Assert.Equal(GoldenManifest.Instance.Snapshots.Count, snapshots);

        // Filters pass through.
        var vm100 = await remote.ListSnapshotsAsync(BackupNamespace.Root, "vm", "100", default);
        Assert.All(vm100, s => Assert.Equal("100", s.BackupId));
        Assert.NotEmpty(vm100);
    }

    [Fact]
    public async Task A_type_filter_over_a_namespace_without_that_type_lists_nothing_instead_of_failing()
    {
        // The server answers 400 ENOENT for snapshots?ns=dev&backup-type=ct, as the genuine PBS does (dev holds only vm).
        using var http = fixture.Server.CreateRestClient(TestServer.DefaultTokenHeader);
        var raw = await http.GetAsync("/api2/json/admin/datastore/golden/snapshots?ns=dev&backup-type=ct");
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, raw.StatusCode);
        Assert.Equal("ENOENT: No such file or directory", await raw.Content.ReadAsStringAsync());

        using var client = fixture.TokenClient();
        using var remote = new RemoteDatastore(client);
        Assert.Empty(await remote.ListSnapshotsAsync(BackupNamespace.Parse("dev"), "ct", null, default));
        Assert.Single(await remote.ListSnapshotsAsync(BackupNamespace.Root, "ct", null, default));
        Assert.Single(await remote.ListSnapshotsAsync(BackupNamespace.Parse("dev"), "vm", null, default));
        foreach (var type in new[] { null, "ct" })
        {
            var e = await Assert.ThrowsAsync<PbsNotFoundException>(() => remote.ListSnapshotsAsync(BackupNamespace.Parse("nosuch"), type, null, default));
            Assert.Equal("NamespaceNotFound", e.ErrorId);
        }
    }

    [Fact]
    public async Task Datastores_and_groups()
    {
        using var client = fixture.TokenClient();
        var stores = await client.ListDatastoresAsync(default);
        Assert.Contains(stores, s => s.Name == "golden");
        var groups = await client.ListGroupsAsync("golden", BackupNamespace.Root, default);
        Assert.Contains(groups, g => g.BackupType == "vm" && g.BackupId == "100" && g.SnapshotCount >= 1);
        var e = await Assert.ThrowsAsync<PbsNotFoundException>(() => client.ListSnapshotsAsync("golden", BackupNamespace.Parse("no/such"), null, null, default));
        Assert.Equal("NamespaceNotFound", e.ErrorId);
    }

    public static TheoryData<string, string, int, int> GoldenArchives()
    {
        var data = new TheoryData<string, string, int, int>();
        foreach (var (snapshot, archive) in GoldenManifest.Instance.AllArchives())
            foreach (int sessions in new[] { 1, 3 })
                foreach (int fetch in new[] { 1, 16 })
                    data.Add(snapshot.Path, archive.Name, sessions, fetch);
        return data;
    }

    [Theory]
    [MemberData(nameof(GoldenArchives))]
    public async Task Every_golden_archive_restores_bit_exactly_over_the_wire(string snapshotPath, string archiveName, int sessions, int fetch)
    {
        var snap = GoldenManifest.Instance.Snapshot(snapshotPath);
        var archive = snap.Archives.Concat(snap.ExtraFiles).Single(a => a.Name == archiveName);
        using var client = fixture.TokenClient();
        using var remote = new RemoteDatastore(client, sessions);
        int refusedBefore = fixture.NotAllowedInLog();
        await using var reader = await remote.OpenSnapshotAsync(snap.Reference, default);
        string dest = Path.Combine(_dir, archiveName + ".out");

        var result = await new ArchiveRestorer(reader, snap.OpenKey()).RestoreAsync(ArchiveNames.DisplayName(archiveName), dest,
            new DestinationOptions(), new RestoreOptions { FetchConcurrency = fetch }, new RestoreCounters(), default);

        Assert.Equal(archive.PlaintextSha256, Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(dest))));
        Assert.Equal(archive.PlaintextSize, result.LogicalBytes);
        var remoteReader = Assert.IsType<RemoteSnapshotReader>(reader);
        Assert.All(remoteReader.Sessions, s => Assert.Equal(0, s.NotAllowedRefusals));
        Assert.All(remoteReader.Sessions, s => Assert.True(s.Connections <= 1));
        await fixture.LogBarrierAsync(); // the log is read asynchronously: everything up to now, not a guess of 50 ms
        Assert.Equal(refusedBefore, fixture.NotAllowedInLog());
    }

    [Fact]
    public async Task Chunks_spread_over_sessions()
    {
        var snap = GoldenManifest.Instance.Snapshot("vm/100/2024-05-01T10:00:00Z");
        using var client = fixture.TokenClient();
        using var remote = new RemoteDatastore(client, 3);
        await using var reader = (RemoteSnapshotReader)await remote.OpenSnapshotAsync(snap.Reference, default);
        await new ArchiveRestorer(reader, null).RestoreAsync("drive-scsi0.img", Path.Combine(_dir, "x"),
            new DestinationOptions(), new RestoreOptions { FetchConcurrency = 16 }, new RestoreCounters(), default);
        Assert.True(reader.Sessions.Count(s => s.Connections == 1) >= 2, string.Join(", ", reader.Sessions.Select(s => s.Connections)));
    }

    [Fact]
    public async Task A_replaced_connection_re_downloads_the_index_before_its_chunks()
    {
        var snap = GoldenManifest.Instance.Snapshot("vm/100/2024-05-01T10:00:00Z");
        using var client = fixture.TokenClient();
        using var remote = new RemoteDatastore(client);
        await using var reader = (RemoteSnapshotReader)await remote.OpenSnapshotAsync(snap.Reference, default);
        var index = FixedIndex.Parse(await reader.ReadFileAsync("drive-scsi0.img.fidx", 1 << 20, default));
        var buffer = new byte[8 << 20];
        int n = await reader.ReadRawChunkAsync(index.DigestAt(0), buffer, default);
        Assert.True(n > 0);
        var session = reader.Sessions[0];
        Assert.Equal(1, session.Connections);

        session.DropConnection();
        await Task.Delay(100);
        for (int i = 0; i < index.Count; i++)
            Assert.True(await reader.ReadRawChunkAsync(index.DigestAt(i), buffer, default) > 0);

        Assert.Equal(2, session.Connections);
        Assert.Equal(1, session.IndexReplays);
        Assert.Equal(0, session.NotAllowedRefusals);
    }

    [Fact]
    public async Task A_not_allowed_refusal_re_downloads_the_index_and_retries()
    {
        var snap = GoldenManifest.Instance.Snapshot("vm/100/2024-05-01T10:00:00Z");
        using var client = fixture.TokenClient();
        await using var session = client.OpenReaderSession("golden", snap.Reference);
        var index = FixedIndex.Parse(await session.DownloadAsync("drive-scsi0.img.fidx", 1 << 20, default));
        // A fresh session that believes it registered the index: the server disagrees.
        await using var other = client.OpenReaderSession("golden", snap.Reference);
        await other.DownloadAsync("index.json.blob", 1 << 20, default);
        other.PretendIndexDownloaded("drive-scsi0.img.fidx", 1 << 20);
        var buffer = new byte[8 << 20];
        int n = await other.ReadChunkAsync(index.DigestAt(0), buffer, default);
        Assert.Equal(File.ReadAllBytes(TestPaths.GoldenPath($"datastore/.chunks/{index.DigestAt(0).ToString()[..4]}/{index.DigestAt(0)}")), buffer[..n]);
        Assert.Equal(1, other.NotAllowedRefusals);
        Assert.Equal(1, other.IndexReplays);
    }

    [Fact]
    public async Task A_chunk_of_no_downloaded_index_is_refused_clearly()
    {
        var snap = GoldenManifest.Instance.Snapshot("vm/100/2024-05-01T10:00:00Z");
        using var client = fixture.TokenClient();
        await using var session = client.OpenReaderSession("golden", snap.Reference);
        await session.DownloadAsync("drive-scsi0.img.fidx", 1 << 20, default);
        var e = await Assert.ThrowsAsync<PbsNotFoundException>(() => session.ReadChunkAsync(new ChunkDigest(new byte[32]), new byte[1024], default).AsTask());
        Assert.Equal("ChunkNotAllowed", e.ErrorId);
    }

    [Fact]
    public async Task A_chunk_larger_than_the_buffer_is_refused()
    {
        var snap = GoldenManifest.Instance.Snapshot("vm/100/2024-05-01T10:00:00Z");
        using var client = fixture.TokenClient();
        await using var session = client.OpenReaderSession("golden", snap.Reference);
        var index = FixedIndex.Parse(await session.DownloadAsync("drive-scsi0.img.fidx", 1 << 20, default));
        var e = await Assert.ThrowsAsync<PbsFormatException>(() => session.ReadChunkAsync(index.DigestAt(0), new byte[10], default).AsTask());
        Assert.Equal("ChunkTooLarge", e.ErrorId);
        Assert.True(await session.ReadChunkAsync(index.DigestAt(0), new byte[8 << 20], default) > 10); // the session still works
    }

    [Fact]
    public async Task Unknown_snapshot_and_file_are_not_found()
    {
        using var client = fixture.TokenClient();
        using var remote = new RemoteDatastore(client);
        var e = await Assert.ThrowsAsync<PbsNotFoundException>(() =>
            remote.OpenSnapshotAsync(new SnapshotRef(BackupNamespace.Root, "vm", "100", DateTimeOffset.FromUnixTimeSeconds(1000)), default));
        Assert.Equal("SnapshotNotFound", e.ErrorId);

        var snap = GoldenManifest.Instance.Snapshot("vm/100/2024-05-01T10:00:00Z");
        await using var reader = await remote.OpenSnapshotAsync(snap.Reference, default);
        var f = await Assert.ThrowsAsync<PbsNotFoundException>(() => reader.ReadFileAsync("nope.img.fidx", 1 << 20, default));
        Assert.Equal("FileNotFound", f.ErrorId);
        var big = await Assert.ThrowsAsync<PbsFormatException>(() => reader.ReadFileAsync("drive-scsi0.img.fidx", 100, default));
        Assert.Equal("FileTooLarge", big.ErrorId);
    }

    [Fact]
    public async Task Speedtest_measures_the_wire()
    {
        var snap = GoldenManifest.Instance.Snapshot("vm/100/2024-05-01T10:00:00Z");
        using var client = fixture.TokenClient();
        await using var session = client.OpenReaderSession("golden", snap.Reference);
        double bps = await session.SpeedtestAsync(4, default);
        Assert.True(bps > 1e6, bps.ToString());
    }

    private static readonly string[] Secrets = [TestServer.DefaultTokenSecret, Uri.EscapeDataString(TestServer.DefaultTokenSecret),
        RemoteGoldenFixture.Password, "wrong-secret-4711", "wrong-Pa55word-0815"];

    private static void AssertNoSecret(string text)
    {
        foreach (var s in Secrets) Assert.DoesNotContain(s, text);
    }

    [Fact]
    public async Task Wrong_token_is_AuthenticationFailed_without_the_secret()
    {
        var settings = PbsConnectionSettings.Resolve(fixture.Repository(TestServer.DefaultTokenId), fixture.Server.Fingerprint, "wrong-secret-4711", _ => null);
        using var client = new PbsClient(settings);
        var e = await Assert.ThrowsAsync<PbsException>(() => client.ListDatastoresAsync(default));
        Assert.Equal("AuthenticationFailed", e.ErrorId);
        Assert.Equal(PbsErrorKind.Authentication, e.Kind);
        AssertNoSecret(e.ToString());

        using var remote = new RemoteDatastore(client);
        var snap = GoldenManifest.Instance.Snapshot("vm/100/2024-05-01T10:00:00Z");
        var r = await Assert.ThrowsAsync<PbsException>(() => remote.OpenSnapshotAsync(snap.Reference, default));
        Assert.Equal("AuthenticationFailed", r.ErrorId);
        AssertNoSecret(r.ToString());
    }

    [Fact]
    public async Task Wrong_password_is_AuthenticationFailed_without_the_password()
    {
        var settings = PbsConnectionSettings.Resolve(fixture.Repository(RemoteGoldenFixture.User), fixture.Server.Fingerprint, "wrong-Pa55word-0815", _ => null);
        using var client = new PbsClient(settings);
        var e = await Assert.ThrowsAsync<PbsException>(() => client.ListDatastoresAsync(default));
        Assert.Equal("AuthenticationFailed", e.ErrorId);
        AssertNoSecret(e.ToString());
    }

    [Fact]
    public async Task Ticket_login_lists_and_restores()
    {
        var settings = PbsConnectionSettings.Resolve(fixture.Repository(RemoteGoldenFixture.User), fixture.Server.Fingerprint, RemoteGoldenFixture.Password, _ => null);
        using var client = new PbsClient(settings);
        using var remote = new RemoteDatastore(client, 2);
        Assert.NotEmpty(await remote.ListSnapshotsAsync(BackupNamespace.Root, null, null, default));
        var snap = GoldenManifest.Instance.Snapshot("vm/100/2024-05-01T10:00:00Z");
        await using var reader = await remote.OpenSnapshotAsync(snap.Reference, default);
        string dest = Path.Combine(_dir, "t.img");
        await new ArchiveRestorer(reader, null).RestoreAsync("drive-scsi0.img", dest, new DestinationOptions(), new RestoreOptions(), new RestoreCounters(), default);
        var archive = snap.Archives.Single(a => a.Name == "drive-scsi0.img.fidx");
        Assert.Equal(archive.PlaintextSha256, Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(dest))));
    }

    [Fact]
    public async Task Wrong_fingerprint_is_refused_showing_the_real_one()
    {
        string wrong = string.Join(':', Enumerable.Repeat("5a", 32));
        var settings = PbsConnectionSettings.Resolve(fixture.Repository(TestServer.DefaultTokenId), wrong, TestServer.DefaultTokenSecret, _ => null);
        using var client = new PbsClient(settings);
        var e = await Assert.ThrowsAsync<PbsException>(() => client.ListDatastoresAsync(default));
        Assert.Equal("CertificateFingerprintMismatch", e.ErrorId);
        Assert.Equal(PbsErrorKind.Authentication, e.Kind);
        Assert.Contains(fixture.Server.Fingerprint, e.Message);
        AssertNoSecret(e.ToString());

        var snap = GoldenManifest.Instance.Snapshot("vm/100/2024-05-01T10:00:00Z");
        var r = await Assert.ThrowsAsync<PbsException>(() => new RemoteDatastore(client).OpenSnapshotAsync(snap.Reference, default));
        Assert.Equal("CertificateFingerprintMismatch", r.ErrorId);
        Assert.Contains(fixture.Server.Fingerprint, r.Message);
    }

    [Fact]
    public async Task Self_signed_certificate_without_pin_is_refused_with_a_hint()
    {
        var settings = PbsConnectionSettings.Resolve(fixture.Repository(TestServer.DefaultTokenId), null, TestServer.DefaultTokenSecret, _ => null);
        using var client = new PbsClient(settings);
        var e = await Assert.ThrowsAsync<PbsException>(() => client.ListDatastoresAsync(default));
        Assert.Equal("CertificateUntrusted", e.ErrorId);
        Assert.Contains(fixture.Server.Fingerprint, e.Message);
        Assert.Contains("-Fingerprint", e.Message);
    }

    [Fact]
    public async Task Nothing_prints_a_secret()
    {
        using var client = fixture.TokenClient();
        using var remote = new RemoteDatastore(client, 2);
        var snap = GoldenManifest.Instance.Snapshot("vm/100/2024-05-01T10:00:00Z");
        await using var reader = (RemoteSnapshotReader)await remote.OpenSnapshotAsync(snap.Reference, default);
        var settings = PbsConnectionSettings.Resolve(fixture.Repository(TestServer.DefaultTokenId), fixture.Server.Fingerprint, TestServer.DefaultTokenSecret, _ => null);
        foreach (var o in new object[] { client, remote, reader, reader.Sessions[0], settings, client.Auth, client.Repository,
                     (await remote.ListSnapshotsAsync(BackupNamespace.Root, null, null, default))[0] })
            AssertNoSecret(o.ToString()!);
    }
}

/// <summary>
/// A server whose tickets live 3 seconds: the client must renew (or log in again) to keep going. Server and client
/// share a manual clock (the server runs in this process), so the lifetime passes when the test says, not while a
/// busy machine happens to stall: on real time, a stall longer than the 750 ms renewal window made the client log in
/// again with its password, failing "one login" about once in four runs.
/// </summary>
public sealed class RemoteTicketRenewalTests : IAsyncLifetime, IDisposable
{
    private readonly Microsoft.Extensions.Time.Testing.FakeTimeProvider _clock = new(DateTimeOffset.FromUnixTimeSeconds(1_800_000_000));
    private TestServer _server = null!;
    private readonly string _dir = Directory.CreateTempSubdirectory("pbsrestore-ticket-").FullName;

    public async Task InitializeAsync() =>
        _server = await TestServer.StartInProcessAsync(_clock, "--datastore", "golden=" + TestPaths.GoldenPath("datastore"),
            "--user", "carol@pbs:carol-Pa55", "--ticket-lifetime", "3");

    public async Task DisposeAsync() => await _server.DisposeAsync();
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private PbsClient Client(TimeSpan lifetime) => new(
        PbsConnectionSettings.Resolve($"carol@pbs@127.0.0.1:{_server.Port}:golden", _server.Fingerprint, "carol-Pa55", _ => null),
        new PbsClientOptions { TicketLifetime = lifetime, Clock = _clock });

    private async Task RestoreScsi0Async(RemoteSnapshotReader reader, string name)
    {
        var archive = GoldenManifest.Instance.Snapshot("vm/100/2024-05-01T10:00:00Z").Archives.Single(a => a.Name == "drive-scsi0.img.fidx");
        string dest = Path.Combine(_dir, name);
        await new ArchiveRestorer(reader, null).RestoreAsync("drive-scsi0.img", dest, new DestinationOptions(), new RestoreOptions(), new RestoreCounters(), default);
        Assert.Equal(archive.PlaintextSha256, Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(dest))));
    }

    [Fact]
    public async Task Listing_and_restoring_past_the_ticket_lifetime_renews_the_ticket()
    {
        using var client = Client(TimeSpan.FromSeconds(3));
        using var remote = new RemoteDatastore(client);
        var snap = GoldenManifest.Instance.Snapshot("vm/100/2024-05-01T10:00:00Z");
        var reference = new SnapshotRef(BackupNamespace.Root, "vm", "100", DateTimeOffset.FromUnixTimeSeconds(snap.BackupTime));
        await using var reader = (RemoteSnapshotReader)await remote.OpenSnapshotAsync(reference, default);
        await RestoreScsi0Async(reader, "first.img");
        var auth = Assert.IsType<TicketAuth>(client.Auth);
        Assert.Equal((1, 0), (auth.Logins, auth.Renewals));

        // In the last quarter of the lifetime the next request renews the ticket (the old one is still valid).
        _clock.Advance(TimeSpan.FromSeconds(2.5));
        Assert.NotEmpty(await remote.ListSnapshotsAsync(BackupNamespace.Root, null, null, default));
        Assert.Equal((1, 1), (auth.Logins, auth.Renewals));

        // Past the first ticket's lifetime, inside the renewed one's: restoring and listing go on without a login.
        _clock.Advance(TimeSpan.FromSeconds(2));
        await RestoreScsi0Async(reader, "second.img");
        Assert.NotEmpty(await remote.ListSnapshotsAsync(BackupNamespace.Root, null, null, default));
        // A new connection late in the restore authenticates with the renewed ticket (the first one would be refused).
        reader.Sessions[0].DropConnection();
        await RestoreScsi0Async(reader, "last.img");
        Assert.Equal((1, 1), (auth.Logins, auth.Renewals));
        Assert.Equal(2, reader.Sessions[0].Connections);
    }

    [Fact]
    public async Task A_client_that_does_not_know_the_short_lifetime_logs_in_again_after_a_401()
    {
        using var client = Client(TimeSpan.FromHours(2));
        using var remote = new RemoteDatastore(client);
        Assert.NotEmpty(await remote.ListSnapshotsAsync(BackupNamespace.Root, null, null, default));
        _clock.Advance(TimeSpan.FromSeconds(5)); // past the server's 3 s, far inside the 2 h the client expects
        Assert.NotEmpty(await remote.ListSnapshotsAsync(BackupNamespace.Root, null, null, default));
        var snap = GoldenManifest.Instance.Snapshot("vm/100/2024-05-01T10:00:00Z");
        await using var reader = await remote.OpenSnapshotAsync(
            new SnapshotRef(BackupNamespace.Root, "vm", "100", DateTimeOffset.FromUnixTimeSeconds(snap.BackupTime)), default);
        Assert.Equal(2, ((TicketAuth)client.Auth).Logins);
    }
}
