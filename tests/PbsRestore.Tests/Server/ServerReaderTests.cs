using System.Diagnostics;
using System.Net;
using System.Runtime.CompilerServices;
using System.Text.Json;
using PbsRestore.Formats;
using Xunit.Abstractions;
using PbsRestore.Sources.Local;

namespace PbsRestore.Tests.Server;

public sealed class ServerReaderTests(GoldenServerFixture fixture) : IClassFixture<GoldenServerFixture>
{
    private const long Vm100Time = 1714557600; // 2024-05-01T10:00:00Z
    private static readonly string Vm100 = ReaderTestClient.Query("golden", "vm", "100", Vm100Time);
    private static string Vm100Dir => TestPaths.GoldenPath("datastore/vm/100/2024-05-01T10:00:00Z");
    private static string ChunkPath(ChunkDigest d) => TestPaths.GoldenPath($"datastore/.chunks/{d.ToString()[..4]}/{d}");

    private TestServer Server => fixture.Server;

    private static FixedIndex Scsi0() => FixedIndex.Parse(File.ReadAllBytes(Path.Combine(Vm100Dir, "drive-scsi0.img.fidx")));

    /// <summary>An error's message: the plain-text body, as the genuine PBS sends it.</summary>
    private static async Task<string> MessageAsync(HttpResponseMessage response) => await response.Content.ReadAsStringAsync();

    [Fact]
    public async Task Downloads_the_index_then_its_chunks()
    {
        var connections = new StrongBox<int>();
        using var http = ReaderTestClient.Create(Server, Vm100, TestServer.DefaultTokenHeader, connections);
        var index = await http.GetByteArrayAsync("download?file-name=drive-scsi0.img.fidx");
        Assert.Equal(File.ReadAllBytes(Path.Combine(Vm100Dir, "drive-scsi0.img.fidx")), index);
        Assert.Equal(File.ReadAllBytes(Path.Combine(Vm100Dir, "index.json.blob")), await http.GetByteArrayAsync("download?file-name=index.json.blob"));
        Assert.Equal(File.ReadAllBytes(Path.Combine(Vm100Dir, "qemu-server.conf.blob")), await http.GetByteArrayAsync("download?file-name=qemu-server.conf.blob"));

        var fidx = FixedIndex.Parse(index);
        var digests = Enumerable.Range(0, fidx.Count).Select(fidx.DigestAt).Distinct().ToList();
        // All chunks, many streams at once on the one connection.
        var bodies = await Task.WhenAll(digests.Select(async d =>
        {
            using var response = await http.GetAsync($"chunk?digest={d}");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("application/octet-stream", response.Content.Headers.ContentType?.MediaType);
            var body = await response.Content.ReadAsByteArrayAsync();
            Assert.Equal(body.Length, response.Content.Headers.ContentLength);
            return (d, body);
        }));
        foreach (var (d, body) in bodies) Assert.Equal(File.ReadAllBytes(ChunkPath(d)), body);
        Assert.Equal(1, connections.Value);
    }

    [Fact]
    public async Task Chunks_are_refused_until_their_index_is_downloaded_in_the_same_session()
    {
        var digest = Scsi0().DigestAt(0);
        using var a = ReaderTestClient.Create(Server, Vm100, TestServer.DefaultTokenHeader);
        using var b = ReaderTestClient.Create(Server, Vm100, TestServer.DefaultTokenHeader);

        var refused = await a.GetAsync($"chunk?digest={digest}");
        Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        Assert.Equal($"download chunk {digest} not allowed", await MessageAsync(refused));

        await a.GetByteArrayAsync("download?file-name=drive-scsi0.img.fidx");
        Assert.Equal(File.ReadAllBytes(ChunkPath(digest)), await a.GetByteArrayAsync($"chunk?digest={digest}"));

        // Session b is a different connection: its own (empty) registration.
        Assert.Equal(HttpStatusCode.Unauthorized, (await b.GetAsync($"chunk?digest={digest}")).StatusCode);
        // Registering another index does not register this one's chunks.
        await b.GetByteArrayAsync("download?file-name=drive-virtio1.img.fidx");
        var virtio = FixedIndex.Parse(File.ReadAllBytes(Path.Combine(Vm100Dir, "drive-virtio1.img.fidx")));
        var onlyScsi = Enumerable.Range(0, Scsi0().Count).Select(Scsi0().DigestAt)
            .Except(Enumerable.Range(0, virtio.Count).Select(virtio.DigestAt)).First();
        Assert.Equal(HttpStatusCode.Unauthorized, (await b.GetAsync($"chunk?digest={onlyScsi}")).StatusCode);
        await b.GetByteArrayAsync("download?file-name=drive-scsi0.img.fidx");
        Assert.Equal(HttpStatusCode.OK, (await b.GetAsync($"chunk?digest={onlyScsi}")).StatusCode);

        // A blob download registers nothing; a malformed digest is a 400.
        Assert.Equal(HttpStatusCode.BadRequest, (await b.GetAsync("chunk?digest=xyz")).StatusCode);
    }

    [Fact]
    public async Task Dynamic_index_registers_its_chunks_in_a_namespace_free_ct_snapshot()
    {
        using var http = ReaderTestClient.Create(Server, ReaderTestClient.Query("golden", "ct", "200", 1714558200), TestServer.DefaultTokenHeader);
        var didx = DynamicIndex.Parse(await http.GetByteArrayAsync("download?file-name=data.didx"));
        var d = didx.DigestAt(didx.Count - 1);
        Assert.Equal(File.ReadAllBytes(ChunkPath(d)), await http.GetByteArrayAsync($"chunk?digest={d}"));
    }

    [Fact]
    public async Task Namespaced_snapshot_and_ticket_cookie_auth()
    {
        using var anonymous = Server.CreateRestClient();
        var login = await anonymous.PostAsync("/api2/json/access/ticket", new FormUrlEncodedContent(
            new Dictionary<string, string> { ["username"] = GoldenServerFixture.User, ["password"] = GoldenServerFixture.Password }));
        using var doc = JsonDocument.Parse(await login.Content.ReadAsStringAsync());
        string ticket = doc.RootElement.GetProperty("data").GetProperty("ticket").GetString()!;
        using var http = ReaderTestClient.Create(Server, ReaderTestClient.Query("golden", "vm", "102", 1714558500, "dev"),
            "PBSAuthCookie=" + Uri.EscapeDataString(ticket));
        Assert.Equal(File.ReadAllBytes(TestPaths.GoldenPath("datastore/ns/dev/vm/102/2024-05-01T10:15:00Z/drive-scsi0.img.fidx")),
            await http.GetByteArrayAsync("download?file-name=drive-scsi0.img.fidx"));
    }

    [Fact]
    public async Task Speedtest_is_one_MiB_of_A()
    {
        using var http = ReaderTestClient.Create(Server, Vm100, TestServer.DefaultTokenHeader);
        var body = await http.GetByteArrayAsync("speedtest");
        Assert.Equal(1 << 20, body.Length);
        Assert.True(body.All(b => b == (byte)'A'));
    }

    [Fact]
    public async Task Bad_file_names_and_missing_files_are_errors()
    {
        using var http = ReaderTestClient.Create(Server, Vm100, TestServer.DefaultTokenHeader);
        foreach (var name in new[] { "../../../.chunks", "..%2Fowner", "owner", "" })
        {
            var r = await http.GetAsync($"download?file-name={name}");
            Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
            Assert.StartsWith("parameter verification failed - 'file-name': ", await MessageAsync(r));
        }
        // A file the snapshot does not have: 404, as the genuine server answers (it names its server path; we do not).
        var missing = await http.GetAsync("download?file-name=nosuch.img.fidx");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Equal("open file \"vm/100/2024-05-01T10:00:00Z/nosuch.img.fidx\" failed - not found", await MessageAsync(missing));
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("nothing-here")).StatusCode);
    }

    [Theory]
    [InlineData("golden", "vm", "100", 1714557601, 400, "does not exist")] // one second off
    [InlineData("golden", "vm", "999", Vm100Time, 400, "vm/999/")]
    [InlineData("nope", "vm", "100", Vm100Time, 400, "no permissions on /datastore/nope")]
    [InlineData("golden", "xx", "100", Vm100Time, 400, "backup-type")]
    public async Task Unknown_snapshots_are_refused_without_upgrading(string store, string type, string id, long time, int status, string message)
    {
        var answer = await ReaderTestClient.UpgradeAsync(Server, ReaderTestClient.Query(store, type, id, time), TestServer.DefaultTokenHeader);
        Assert.Equal(status, answer.Status);
        Assert.Contains(message, answer.Body);
        Assert.Null(answer.Stream);
    }

    [Fact]
    public async Task Upgrade_needs_valid_auth()
    {
        var answer = await ReaderTestClient.UpgradeAsync(Server, Vm100, "PBSAPIToken=root@pam!test:wrong");
        Assert.Equal(401, answer.Status);
        Assert.Contains("authentication failed", answer.Body);
    }

    [Fact]
    public async Task An_idle_session_survives_longer_than_Kestrels_data_rate_grace_period()
    {
        var connections = new StrongBox<int>();
        using var http = ReaderTestClient.Create(Server, Vm100, TestServer.DefaultTokenHeader, connections);
        await http.GetByteArrayAsync("download?file-name=drive-scsi0.img.fidx");
        await Task.Delay(TimeSpan.FromSeconds(7));
        var digest = Scsi0().DigestAt(0);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync($"chunk?digest={digest}")).StatusCode); // still the same session
        Assert.Equal(1, connections.Value);
    }
}

public sealed class ServerShutdownTests
{
    [SkippableFact]
    public async Task Sigterm_stops_cleanly_with_an_open_session()
    {
        Skip.If(OperatingSystem.IsWindows(), "sends SIGTERM, which Windows does not have");
        var server = await TestServer.StartAsync("--datastore", "golden=" + TestPaths.GoldenPath("datastore"), "--token", TestServer.DefaultToken);
        await using (server)
        {
            using var http = ReaderTestClient.Create(server, ReaderTestClient.Query("golden", "vm", "100", 1714557600), TestServer.DefaultTokenHeader);
            await http.GetByteArrayAsync("speedtest");
            var sw = Stopwatch.StartNew();
            Assert.Equal(0, await server.StopAsync(TimeSpan.FromSeconds(20)));
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(15), $"took {sw.Elapsed}");
            Assert.Equal("", await server.ExtraStdout);
        }
    }
}
