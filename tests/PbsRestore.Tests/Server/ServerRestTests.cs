using System.Net;
using System.Text.Json;
using PbsRestore.Sources;
using PbsRestore.Sources.Local;

namespace PbsRestore.Tests.Server;

public sealed class ServerRestTests(GoldenServerFixture fixture) : IClassFixture<GoldenServerFixture>
{
    private TestServer Server => fixture.Server;

    private static async Task<JsonElement> DataAsync(HttpResponseMessage response)
    {
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{(int)response.StatusCode}: {text}");
        using var doc = JsonDocument.Parse(text);
        return doc.RootElement.GetProperty("data").Clone();
    }

    /// <summary>An error's message: the plain-text body, as the genuine PBS sends it.</summary>
    private static async Task<string> MessageAsync(HttpResponseMessage response) => await response.Content.ReadAsStringAsync();

    [Fact]
    public async Task Prints_only_the_json_line_and_lists_datastores()
    {
        Assert.StartsWith("https://127.0.0.1:", Server.Url.ToString());
        Assert.Matches("^([0-9a-f]{2}:){31}[0-9a-f]{2}$", Server.Fingerprint);
        using var http = Server.CreateRestClient(TestServer.DefaultTokenHeader);
        var data = await DataAsync(await http.GetAsync("/api2/json/admin/datastore"));
        var store = Assert.Single(data.EnumerateArray());
        Assert.Equal("golden", store.GetProperty("store").GetString());
    }

    [Theory]
    [InlineData("=")]
    [InlineData(" ")]
    public async Task Token_is_accepted_in_both_header_forms(string separator)
    {
        using var http = Server.CreateRestClient($"PBSAPIToken{separator}{TestServer.DefaultTokenId}:{Uri.EscapeDataString(TestServer.DefaultTokenSecret)}");
        var data = await DataAsync(await http.GetAsync("/api2/json/admin/datastore/golden/namespace"));
        Assert.Equal(["", "dev"], data.EnumerateArray().Select(n => n.GetProperty("ns").GetString()));
        // Unencoded secret (no characters that need it) works too for the second token.
        using var other = Server.CreateRestClient($"PBSAPIToken{separator}bob@pbs!other:second-secret");
        Assert.Equal(HttpStatusCode.OK, (await other.GetAsync("/api2/json/admin/datastore")).StatusCode);
    }

    [Theory]
    [InlineData("PBSAPIToken=root@pam!test:wrong")]
    [InlineData("PBSAPIToken=root@pam!nosuch:s3cret")]
    [InlineData("PBSAPIToken=bob@pbs!other:s3cret%2Fwith%3Aodd%2Bchars")] // another token's id with this secret
    [InlineData("Basic cm9vdDpwYXNz")]
    [InlineData(null)]
    public async Task Bad_or_missing_credentials_get_401_with_a_message(string? header)
    {
        using var http = Server.CreateRestClient(header);
        var response = await http.GetAsync("/api2/json/admin/datastore");
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.StartsWith("authentication failed - ", await MessageAsync(response));
        Assert.DoesNotContain("s3cret", Server.StandardError);
    }

    [Fact]
    public async Task Unknown_store_and_namespace_are_errors_with_messages()
    {
        using var http = Server.CreateRestClient(TestServer.DefaultTokenHeader);
        // The genuine PBS 3.2.4's answers (tests/PbsRestore.Tests/Upstream/UpstreamDifferenceTests compares them live).
        var r = await http.GetAsync("/api2/json/admin/datastore/nope/snapshots");
        Assert.Equal(HttpStatusCode.Forbidden, r.StatusCode);
        Assert.Equal("permission check failed - missing Datastore.Audit|Datastore.Backup on /datastore/nope", await MessageAsync(r));
        r = await http.GetAsync("/api2/json/admin/datastore/nope/namespace");
        Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
        Assert.Equal("no such datastore 'nope'", await MessageAsync(r));
        r = await http.GetAsync("/api2/json/admin/datastore/golden/snapshots?ns=nosuch");
        Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
        Assert.Equal("ENOENT: No such file or directory", await MessageAsync(r));
        r = await http.GetAsync("/api2/json/admin/datastore/golden/snapshots?ns=dev&backup-type=ct");
        Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
        Assert.Equal("ENOENT: No such file or directory", await MessageAsync(r));
        r = await http.GetAsync("/api2/json/admin/datastore/golden/snapshots?ns=dev&backup-type=ct&backup-id=1");
        Assert.Equal("{\"data\":[]}", await r.Content.ReadAsStringAsync());
        r = await http.GetAsync("/api2/json/admin/datastore/golden/snapshots?foo=1");
        Assert.Equal("parameter verification failed - 'foo': schema does not allow additional properties.", await MessageAsync(r));
        r = await http.GetAsync("/api2/json/admin/datastore/golden/snapshots?backup-type=vmx");
        Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
        r = await http.GetAsync("/api2/json/admin/nothing");
        Assert.Equal(HttpStatusCode.NotFound, r.StatusCode);
    }

    [Fact]
    public async Task Ticket_login_cookie_and_renewal()
    {
        using var anonymous = Server.CreateRestClient();
        var bad = await anonymous.PostAsync("/api2/json/access/ticket", new FormUrlEncodedContent(
            new Dictionary<string, string> { ["username"] = GoldenServerFixture.User, ["password"] = "wrong" }));
        Assert.Equal(HttpStatusCode.Unauthorized, bad.StatusCode);
        Assert.Equal("permission check failed.", await MessageAsync(bad));

        var login = await DataAsync(await anonymous.PostAsync("/api2/json/access/ticket", new FormUrlEncodedContent(
            new Dictionary<string, string> { ["username"] = GoldenServerFixture.User, ["password"] = GoldenServerFixture.Password })));
        string ticket = login.GetProperty("ticket").GetString()!;
        Assert.Equal(GoldenServerFixture.User, login.GetProperty("username").GetString());
        Assert.Matches("^PBS:alice@pbs:[0-9A-F]{8}::[A-Za-z0-9_-]+$", ticket);
        Assert.False(string.IsNullOrEmpty(login.GetProperty("CSRFPreventionToken").GetString()));

        // Raw and URL-encoded cookie values.
        foreach (var value in new[] { ticket, Uri.EscapeDataString(ticket) })
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "/api2/json/admin/datastore/golden/groups");
            request.Headers.Add("Cookie", "PBSAuthCookie=" + value);
            var groups = await DataAsync(await anonymous.SendAsync(request));
            Assert.Equal(["ct/200", "vm/100", "vm/101"],
                groups.EnumerateArray().Select(g => $"{g.GetProperty("backup-type").GetString()}/{g.GetProperty("backup-id").GetString()}"));
        }

        // A forged ticket is refused.
        using (var forged = new HttpRequestMessage(HttpMethod.Get, "/api2/json/admin/datastore"))
        {
            forged.Headers.Add("Cookie", "PBSAuthCookie=" + ticket.Replace("alice@pbs", "root@pam"));
            Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.SendAsync(forged)).StatusCode);
        }

        // Renewal: the ticket as password gives a new, working ticket.
        var renewed = await DataAsync(await anonymous.PostAsync("/api2/json/access/ticket", new FormUrlEncodedContent(
            new Dictionary<string, string> { ["username"] = GoldenServerFixture.User, ["password"] = ticket })));
        string ticket2 = renewed.GetProperty("ticket").GetString()!;
        using var withCookie = new HttpRequestMessage(HttpMethod.Get, "/api2/json/admin/datastore");
        withCookie.Headers.Add("Cookie", "PBSAuthCookie=" + ticket2);
        Assert.Equal(HttpStatusCode.OK, (await anonymous.SendAsync(withCookie)).StatusCode);
        // ...but not for another user name.
        var other = await anonymous.PostAsync("/api2/json/access/ticket", new FormUrlEncodedContent(
            new Dictionary<string, string> { ["username"] = "root@pam", ["password"] = ticket }));
        Assert.Equal(HttpStatusCode.Unauthorized, other.StatusCode);
        Assert.DoesNotContain(ticket, Server.StandardError);
        Assert.DoesNotContain(GoldenServerFixture.Password, Server.StandardError);
    }

    [Fact]
    public async Task Snapshot_listing_equals_the_folder_listing()
    {
        var local = new LocalDatastore(TestPaths.GoldenPath("datastore"));
        using var http = Server.CreateRestClient(TestServer.DefaultTokenHeader);
        int compared = 0;
        foreach (var ns in await local.ListNamespacesAsync(BackupNamespace.Root, 7, default))
        {
            var expected = await local.ListSnapshotsAsync(ns, null, null, default);
            var wire = (await DataAsync(await http.GetAsync($"/api2/json/admin/datastore/golden/snapshots?ns={Uri.EscapeDataString(ns.ToString())}")))
                .EnumerateArray().ToList();
            Assert.Equal(expected.Count, wire.Count);
            foreach (var (e, w) in expected.Zip(wire))
            {
                Assert.Equal(e.BackupType, w.GetProperty("backup-type").GetString());
                Assert.Equal(e.BackupId, w.GetProperty("backup-id").GetString());
                Assert.Equal(e.Ref.BackupTimeEpoch, w.GetProperty("backup-time").GetInt64());
                Assert.Equal(e.Owner, w.GetProperty("owner").GetString());
                Assert.Equal(e.KeyFingerprint, w.TryGetProperty("fingerprint", out var fp) ? fp.GetString() : null);
                Assert.False(w.GetProperty("protected").GetBoolean());
                var files = w.GetProperty("files").EnumerateArray().ToList();
                // Manifest files first, in manifest order, then the manifest, then other files with size null.
                var manifestFiles = files.Take(e.Files.Count).ToList();
                Assert.Equal(e.Files.Select(f => (f.Name, (long?)f.Size, f.CryptMode.ToString())),
                    manifestFiles.Select(f => (f.GetProperty("filename").GetString()!, (long?)f.GetProperty("size").GetInt64(),
                        PbsRestore.Formats.CryptModeNames.Parse(f.GetProperty("crypt-mode").GetString()).ToString())));
                var manifest = files[e.Files.Count];
                Assert.Equal("index.json.blob", manifest.GetProperty("filename").GetString());
                string dir = local.GetSnapshotDirectory(e.Ref)!;
                Assert.Equal(new FileInfo(Path.Combine(dir, "index.json.blob")).Length, manifest.GetProperty("size").GetInt64());
                Assert.Equal(e.KeyFingerprint is null ? "none" : "sign-only", manifest.GetProperty("crypt-mode").GetString());
                foreach (var extra in files.Skip(e.Files.Count + 1))
                    Assert.Equal(JsonValueKind.Null, extra.GetProperty("size").ValueKind);
                Assert.Equal(e.Size, w.GetProperty("size").GetInt64()); // both count the manifest file
                compared++;
            }
        }
        Assert.Equal(4, compared);
        // client.log.blob is in the folder of vm/100 but not in its manifest.
        var vm100 = (await DataAsync(await http.GetAsync("/api2/json/admin/datastore/golden/snapshots?backup-type=vm&backup-id=100"))).EnumerateArray().Single();
        Assert.Contains(vm100.GetProperty("files").EnumerateArray(), f => f.GetProperty("filename").GetString() == "client.log.blob");
    }

    [Fact]
    public async Task Namespace_listing_honours_parent_and_max_depth()
    {
        using var http = Server.CreateRestClient(TestServer.DefaultTokenHeader);
        var rootOnly = await DataAsync(await http.GetAsync("/api2/json/admin/datastore/golden/namespace?max-depth=0"));
        Assert.Equal([""], rootOnly.EnumerateArray().Select(n => n.GetProperty("ns").GetString()));
        var dev = await DataAsync(await http.GetAsync("/api2/json/admin/datastore/golden/namespace?parent=dev"));
        Assert.Equal(["dev"], dev.EnumerateArray().Select(n => n.GetProperty("ns").GetString()));
        var groups = await DataAsync(await http.GetAsync("/api2/json/admin/datastore/golden/groups?ns=dev"));
        var g = Assert.Single(groups.EnumerateArray());
        Assert.Equal("102", g.GetProperty("backup-id").GetString());
        Assert.Equal(1, g.GetProperty("backup-count").GetInt32());
    }
}

public sealed class ServerLifecycleTests
{
    [Fact]
    public async Task Ticket_expires_after_the_given_lifetime()
    {
        // The server's clock is a manual one (in-process server): the lifetime passes without sleeping through it.
        var clock = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.FromUnixTimeSeconds(1_800_000_000));
        await using var server = await TestServer.StartInProcessAsync(clock, "--datastore", "golden=" + TestPaths.GoldenPath("datastore"),
            "--user", "carol@pbs:pw", "--ticket-lifetime", "2");
        using var http = server.CreateRestClient();
        var response = await http.PostAsync("/api2/json/access/ticket", new FormUrlEncodedContent(
            new Dictionary<string, string> { ["username"] = "carol@pbs", ["password"] = "pw" }));
        response.EnsureSuccessStatusCode();
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        string ticket = doc.RootElement.GetProperty("data").GetProperty("ticket").GetString()!;

        HttpRequestMessage WithTicket()
        {
            var r = new HttpRequestMessage(HttpMethod.Get, "/api2/json/admin/datastore");
            r.Headers.Add("Cookie", "PBSAuthCookie=" + ticket);
            return r;
        }
        Assert.Equal(HttpStatusCode.OK, (await http.SendAsync(WithTicket())).StatusCode);
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(HttpStatusCode.OK, (await http.SendAsync(WithTicket())).StatusCode); // still inside its 2 s
        clock.Advance(TimeSpan.FromSeconds(2.5)); // 3.5 s: tickets carry whole seconds, so past 2 s whatever the rounding
        var expired = await http.SendAsync(WithTicket());
        Assert.Equal(HttpStatusCode.Unauthorized, expired.StatusCode);
        Assert.Contains("expired", await expired.Content.ReadAsStringAsync());
        // An expired ticket cannot be renewed either.
        var renew = await http.PostAsync("/api2/json/access/ticket", new FormUrlEncodedContent(
            new Dictionary<string, string> { ["username"] = "carol@pbs", ["password"] = ticket }));
        Assert.Equal(HttpStatusCode.Unauthorized, renew.StatusCode);
    }

    [Fact]
    public async Task Help_and_bad_arguments()
    {
        var (code, text, _) = await TestServer.RunToExitAsync("--help");
        Assert.Equal(0, code);
        foreach (var flag in new[] { "--datastore", "--listen", "--token", "--user", "--ticket-lifetime", "--help" })
            Assert.Contains(flag, text);
        var (bogusCode, _, err) = await TestServer.RunToExitAsync("--bogus");
        Assert.NotEqual(0, bogusCode);
        Assert.Contains("--bogus", err);
    }
}
