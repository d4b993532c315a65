using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using PbsRestore.Formats;
using PbsRestore.Tests.Server;
using Xunit.Abstractions;

namespace PbsRestore.Tests.Upstream;

/// <summary>Our server over the genuine server's own datastore folder, with the same token and user.</summary>
public sealed class OursOverUpstreamFixture : IAsyncLifetime
{
    public TestServer? Server { get; private set; }

    public async Task InitializeAsync()
    {
        if (UpstreamPeer.SkipReason is not null) return;
        var p = UpstreamPeer.State;
        Server = await TestServer.StartAsync("--datastore", $"{p.Datastore}={UpstreamPeer.DatastoreFolder}",
            "--token", $"{p.TokenId}:{p.Secret}", "--user", $"{p.User}:{p.Password}");
    }

    public async Task DisposeAsync()
    {
        if (Server is not null) await Server.DisposeAsync();
    }
}

/// <summary>
/// The same requests to the genuine PBS 3.2.4 and to our server (serving the very same datastore folder, with the
/// same credentials): status, content type and body must be the same, apart from the differences listed in
/// <see cref="Accepted"/> (each explained in docs/server-vs-upstream.md). Every compared answer is written to the
/// test output, so a run shows the whole comparison.
/// </summary>
public sealed class UpstreamDifferenceTests(OursOverUpstreamFixture fixture, ITestOutputHelper output) : IClassFixture<OursOverUpstreamFixture>
{
    private sealed record Peer(string Name, Uri Url, Func<X509Certificate?, bool> IsPinned);

    private static UpstreamState P => UpstreamPeer.State;
    private Peer Genuine => new("genuine", P.Url, UpstreamHttp.IsPinned);
    private Peer Ours => new("ours", fixture.Server!.Url, fixture.Server.IsPinned);

    /// <summary>Answers that differ on purpose or cannot be made equal, by request name (see docs/server-vs-upstream.md).</summary>
    private static readonly Dictionary<string, string> Accepted = new()
    {
        ["GET version"] = "we are not PBS 3.2.4: version, release and repoid are ours",
        ["GET admin/datastore (PBSAuthCookie=PBS:test@pbs:00000000::forged)"] = "a signature that is not base64: upstream quotes its base64 decoder's error text",
        ["reader: download a file the snapshot does not have"] = "same status; upstream names the file's path on the server, we name it in the datastore",
        ["h2 SETTINGS (client advertises nothing)"] = "Kestrel also sends MAX_CONCURRENT_STREAMS 256, MAX_HEADER_LIST_SIZE 32 KiB and ENABLE_CONNECT_PROTOCOL; windows and frame size are the same",
        ["h2 SETTINGS (client allows 4 MiB frames and a 1 GiB window)"] = "as above",
    };

    private static HttpClient Rest(Peer peer, string? authorization)
    {
        var handler = new SocketsHttpHandler
        {
            SslOptions = new System.Net.Security.SslClientAuthenticationOptions { RemoteCertificateValidationCallback = (_, c, _, _) => peer.IsPinned(c) },
            UseCookies = false,
        };
        var client = new HttpClient(handler) { BaseAddress = peer.Url, Timeout = TimeSpan.FromSeconds(60) };
        if (authorization is not null) client.DefaultRequestHeaders.TryAddWithoutValidation(
            authorization.StartsWith("PBSAuthCookie=", StringComparison.Ordinal) ? "Cookie" : "Authorization", authorization);
        return client;
    }

    /// <summary>Status, content type and body of an answer, with JSON normalised (keys sorted; secrets and times out).</summary>
    private static async Task<string> DescribeAsync(HttpResponseMessage r)
    {
        string body = await r.Content.ReadAsStringAsync();
        string type = r.Content.Headers.ContentType?.ToString() ?? "-";
        return $"{(int)r.StatusCode} {type} {Normalise(body)}";
    }

    private static string Normalise(string body)
    {
        if (!body.StartsWith('{') && !body.StartsWith('[')) return body;
        try { return Sort(JsonNode.Parse(body))?.ToJsonString() ?? "null"; }
        catch (JsonException) { return body; }
    }

    private static JsonNode? Sort(JsonNode? node, string? key = null) => node switch
    {
        JsonObject o => new JsonObject(o.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => KeyValuePair.Create(p.Key,
            p.Key is "ticket" or "CSRFPreventionToken" ? JsonValue.Create("<" + p.Key + ">") : Sort(p.Value, p.Key)))),
        // The genuine server lists a group's files in directory order: compare them as a set.
        JsonArray a when key == "files" && a.All(x => x is JsonValue) => new JsonArray(a.Select(x => x!.ToJsonString()).Order(StringComparer.Ordinal)
            .Select(x => JsonNode.Parse(x)).ToArray()),
        // Upstream lists groups and snapshots in directory order (unspecified): compare them sorted.
        JsonArray a when key == "data" && a.All(x => x is JsonObject o && o.ContainsKey("backup-type")) => new JsonArray(a
            .Select(x => Sort(x)).OrderBy(x => x!.ToJsonString(), StringComparer.Ordinal).ToArray()),
        JsonArray a => new JsonArray(a.Select(x => Sort(x)).ToArray()),
        _ => node?.DeepClone(),
    };

    private readonly List<string> _differences = [];

    private void Compare(string name, string genuine, string ours)
    {
        bool same = genuine == ours;
        output.WriteLine($"{(same ? "same   " : Accepted.ContainsKey(name) ? "ACCEPTED" : "DIFFERS")} {name}\n    genuine: {Cut(genuine)}\n    ours:    {Cut(ours)}");
        if (!same && !Accepted.ContainsKey(name)) _differences.Add($"{name}: genuine '{Cut(genuine)}' vs ours '{Cut(ours)}'");
    }

    private static string Cut(string s) => s.Length > 400 ? s[..400] + "…" : s;

    private void AssertNoDifferences() => Assert.True(_differences.Count == 0, "differences:\n" + string.Join("\n", _differences));

    [UpstreamFact]
    public async Task Rest_answers_are_the_same()
    {
        string store = P.Datastore;
        string token = P.TokenHeader;
        var requests = new (string Path, string? Auth)[]
        {
            ("version", token),
            ("admin/datastore", token),
            ($"admin/datastore/{store}/namespace", token),
            ($"admin/datastore/{store}/namespace?parent=prod", token),
            ($"admin/datastore/{store}/namespace?parent=prod&max-depth=0", token),
            ($"admin/datastore/{store}/namespace?parent=nope", token),
            ($"admin/datastore/{store}/namespace?parent=prod/nope/x", token),
            ($"admin/datastore/{store}/groups", token),
            ($"admin/datastore/{store}/groups?ns=prod", token),
            ($"admin/datastore/{store}/groups?ns=prod/web", token),
            ($"admin/datastore/{store}/groups?ns=nope", token),
            ($"admin/datastore/{store}/groups?backup-type=vm", token),
            ($"admin/datastore/{store}/snapshots", token),
            ($"admin/datastore/{store}/snapshots?ns=prod", token),
            ($"admin/datastore/{store}/snapshots?ns=prod/web", token),
            ($"admin/datastore/{store}/snapshots?backup-type=ct", token),
            ($"admin/datastore/{store}/snapshots?backup-type=vm&backup-id=100", token),
            ($"admin/datastore/{store}/snapshots?backup-id=300", token),
            ($"admin/datastore/{store}/snapshots?backup-type=vm&backup-id=999", token),
            ($"admin/datastore/{store}/snapshots?ns=prod&backup-type=ct", token),
            ($"admin/datastore/{store}/snapshots?ns=prod/web&backup-type=vm", token),
            ($"admin/datastore/{store}/snapshots?ns=prod&backup-type=ct&backup-id=300", token),
            ($"admin/datastore/{store}/snapshots?ns=prod&backup-id=300", token),
            ($"admin/datastore/{store}/snapshots?ns=nope", token),
            ($"admin/datastore/{store}/snapshots?ns=nope&backup-type=ct", token),
            ($"admin/datastore/{store}/snapshots?backup-type=xx", token),
            ($"admin/datastore/{store}/snapshots?ns=a//b", token),
            ($"admin/datastore/{store}/snapshots?ns=/prod", token),
            ($"admin/datastore/{store}/snapshots?backup-time=5", token),
            ("admin/datastore/nostore/snapshots", token),
            ("admin/datastore/nostore/groups", token),
            ("admin/datastore/nostore/namespace", token),
            ($"admin/datastore/{store}/nothing", token),
            ("nothing", token),
            ("admin/datastore", null),
            ("nothing", null),
            ("admin/datastore", $"PBSAPIToken={P.TokenId}:wrong-secret"),
            ("admin/datastore", $"PBSAPIToken={P.User}!nosuch:{Uri.EscapeDataString(P.Secret)}"),
            ("admin/datastore", "Basic cm9vdDpwYXNz"),
            ("admin/datastore", "PBSAuthCookie=PBS:test@pbs:00000000::forged"),
            ("admin/datastore", "PBSAuthCookie=PBS:test@pbs:00000000::AAAAAAAA"), // expired (the age is checked before the signature)
            ("admin/datastore", "PBSAuthCookie=PBS:test@pbs:7FFFFFFF::AAAAAAAA"), // from the future
        };
        foreach (var (path, auth) in requests)
        {
            // (forged cookies hold no secret and are named in full; token headers only up to the secret)
            string name = "GET " + path + (auth == token ? "" : auth is null ? " (no credentials)"
                : auth.StartsWith("PBSAuthCookie=", StringComparison.Ordinal) ? $" ({auth})" : $" ({auth.Split(':')[0]}…)");
            using var g = Rest(Genuine, auth);
            using var o = Rest(Ours, auth);
            Compare(name, await DescribeAsync(await g.GetAsync("/api2/json/" + path)), await DescribeAsync(await o.GetAsync("/api2/json/" + path)));
        }
        AssertNoDifferences();
    }

    [UpstreamFact]
    public async Task Tickets_login_renewal_and_use_are_the_same()
    {
        async Task<(string Answer, string? Ticket)> LoginAsync(Peer peer, string user, string password)
        {
            using var http = Rest(peer, null);
            var r = await http.PostAsync("/api2/json/access/ticket", new FormUrlEncodedContent(new Dictionary<string, string> { ["username"] = user, ["password"] = password }));
            string body = await r.Content.ReadAsStringAsync();
            string? ticket = null;
            if (r.IsSuccessStatusCode)
            {
                using var doc = JsonDocument.Parse(body);
                ticket = doc.RootElement.GetProperty("data").GetProperty("ticket").GetString();
            }
            return ($"{(int)r.StatusCode} {r.Content.Headers.ContentType?.ToString() ?? "-"} {Normalise(body)}", ticket);
        }

        var gBad = await LoginAsync(Genuine, P.User, "wrong-password");
        var oBad = await LoginAsync(Ours, P.User, "wrong-password");
        Compare("POST access/ticket (wrong password)", gBad.Answer, oBad.Answer);
        var gOk = await LoginAsync(Genuine, P.User, P.Password);
        var oOk = await LoginAsync(Ours, P.User, P.Password);
        Compare("POST access/ticket", gOk.Answer, oOk.Answer);
        Assert.NotNull(gOk.Ticket);
        Assert.NotNull(oOk.Ticket);
        // Both tickets have the same shape: PBS:<user>:<8 hex time>::<signature>.
        Assert.Matches($"^PBS:{P.User}:[0-9A-F]{{8}}::", gOk.Ticket);
        Assert.Matches($"^PBS:{P.User}:[0-9A-F]{{8}}::", oOk.Ticket);

        // Renewal: the ticket as the password.
        var gRenew = await LoginAsync(Genuine, P.User, gOk.Ticket!);
        var oRenew = await LoginAsync(Ours, P.User, oOk.Ticket!);
        Compare("POST access/ticket (renewal with the ticket)", gRenew.Answer, oRenew.Answer);
        // A ticket of the other server is refused by each.
        Compare("POST access/ticket (the other server's ticket)", (await LoginAsync(Genuine, P.User, oOk.Ticket!)).Answer,
            (await LoginAsync(Ours, P.User, gOk.Ticket!)).Answer);

        // The ticket cookie lists like the token.
        string path = $"/api2/json/admin/datastore/{P.Datastore}/snapshots";
        using (var g = Rest(Genuine, "PBSAuthCookie=" + Uri.EscapeDataString(gOk.Ticket!)))
        using (var o = Rest(Ours, "PBSAuthCookie=" + Uri.EscapeDataString(oOk.Ticket!)))
            Compare("GET snapshots with the ticket cookie", await DescribeAsync(await g.GetAsync(path)), await DescribeAsync(await o.GetAsync(path)));
        // A cookie with a changed signature.
        using (var g = Rest(Genuine, "PBSAuthCookie=" + Uri.EscapeDataString(gOk.Ticket![..^4] + "AAAA")))
        using (var o = Rest(Ours, "PBSAuthCookie=" + Uri.EscapeDataString(oOk.Ticket![..^4] + "AAAA")))
            Compare("GET snapshots with a tampered ticket cookie", await DescribeAsync(await g.GetAsync(path)), await DescribeAsync(await o.GetAsync(path)));
        AssertNoDifferences();
    }

    private static string Query(ExpectedSnapshot s) =>
        ReaderTestClient.Query(P.Datastore, s.Type, s.Id, s.Epoch, s.Namespace);

    private static ExpectedSnapshot Vm100 => UpstreamPeer.Expected.First(s => s.Type == "vm" && s.Id == "100");

    [UpstreamFact]
    public async Task Reader_upgrade_refusals_are_the_same()
    {
        var vm100 = Vm100;
        var queries = new (string Name, string Query)[]
        {
            ("missing snapshot", ReaderTestClient.Query(P.Datastore, "vm", "100", 5)),
            ("missing snapshot in prod", ReaderTestClient.Query(P.Datastore, "vm", "200", 5, "prod")),
            ("namespace that does not exist", ReaderTestClient.Query(P.Datastore, "vm", "100", vm100.Epoch, "nope")),
            ("snapshot of the root asked in prod", ReaderTestClient.Query(P.Datastore, "vm", "100", vm100.Epoch, "prod")),
            ("unknown store", ReaderTestClient.Query("nostore", "vm", "100", vm100.Epoch)),
            ("bad backup-type", ReaderTestClient.Query(P.Datastore, "xx", "100", vm100.Epoch)),
            ("no backup-time", $"store={P.Datastore}&backup-type=vm&backup-id=100"),
            ("unknown parameter", Query(vm100) + "&foo=1"),
        };
        foreach (var (name, query) in queries)
        {
            var g = await ReaderTestClient.UpgradeAsync(Genuine.Url, Genuine.IsPinned, query, P.TokenHeader);
            var o = await ReaderTestClient.UpgradeAsync(Ours.Url, Ours.IsPinned, query, P.TokenHeader);
            Compare($"reader upgrade: {name}", $"{g.Status} {g.Body}", $"{o.Status} {o.Body}");
            if (g.Stream is not null) await g.Stream.DisposeAsync();
            if (o.Stream is not null) await o.Stream.DisposeAsync();
        }
        var gBad = await ReaderTestClient.UpgradeAsync(Genuine.Url, Genuine.IsPinned, Query(vm100), $"PBSAPIToken={P.TokenId}:wrong");
        var oBad = await ReaderTestClient.UpgradeAsync(Ours.Url, Ours.IsPinned, Query(vm100), $"PBSAPIToken={P.TokenId}:wrong");
        Compare("reader upgrade: wrong secret", $"{gBad.Status} {gBad.Body}", $"{oBad.Status} {oBad.Body}");
        AssertNoDifferences();
    }

    [UpstreamFact]
    public async Task Reader_session_answers_are_the_same()
    {
        var vm100 = Vm100;
        var fidx = FixedIndex.Parse(await File.ReadAllBytesAsync(Path.Combine(UpstreamPeer.DatastoreFolder, "vm", "100",
            SnapshotTime(vm100.Epoch), "drive-scsi0.img.fidx")));
        // A chunk of another snapshot's index, not registered in a vm/100 session (vm/100's first image has none of vm/101's chunks).
        var vm101 = UpstreamPeer.Expected.First(s => s.Id == "101");
        var other = FixedIndex.Parse(await File.ReadAllBytesAsync(Path.Combine(UpstreamPeer.DatastoreFolder, "vm", "101",
            SnapshotTime(vm101.Epoch), "drive-scsi0.img.fidx")));
        var unregistered = Enumerable.Range(0, other.Count).Select(i => other.DigestAt(i)).First(d => !Enumerable.Range(0, fidx.Count).Any(i => fidx.DigestAt(i) == d));

        using var g = ReaderTestClient.Create(Genuine.Url, Genuine.IsPinned, Query(vm100), P.TokenHeader, streamWindow: ReaderTestClient.WholeChunkWindow);
        using var o = ReaderTestClient.Create(Ours.Url, Ours.IsPinned, Query(vm100), P.TokenHeader, streamWindow: ReaderTestClient.WholeChunkWindow);
        var steps = new (string Name, string Path)[]
        {
            ("chunk before its index is downloaded", $"chunk?digest={fidx.DigestAt(0)}"),
            ("index of the session", ""),
            ("download index.json.blob", "download?file-name=index.json.blob"),
            ("download qemu-server.conf.blob", "download?file-name=qemu-server.conf.blob"),
            ("download a file the snapshot does not have", "download?file-name=nope.blob"),
            ("download a path", "download?file-name=../owner"),
            ("download without file-name", "download"),
            ("download the fixed index", "download?file-name=drive-scsi0.img.fidx"),
            ("registered chunk", $"chunk?digest={fidx.DigestAt(0)}"),
            ("chunk not registered in the session", $"chunk?digest={unregistered}"),
            ("chunk digest not hex", "chunk?digest=zz"),
            ("chunk without digest", "chunk"),
            ("speedtest", "speedtest"),
            ("unknown path", "nothing"),
        };
        foreach (var (name, path) in steps)
            Compare($"reader: {name}", await DescribeBytesAsync(await g.GetAsync(path)), await DescribeBytesAsync(await o.GetAsync(path)));
        AssertNoDifferences();
    }

    private static string SnapshotTime(long epoch) => DateTimeOffset.FromUnixTimeSeconds(epoch).ToString("yyyy-MM-dd'T'HH:mm:ss'Z'");

    /// <summary>Status, content type and, for a binary body, its length and SHA-256 (the same bytes on both).</summary>
    private static async Task<string> DescribeBytesAsync(HttpResponseMessage r)
    {
        byte[] body = await r.Content.ReadAsByteArrayAsync();
        string type = r.Content.Headers.ContentType?.ToString() ?? "-";
        string text = r.IsSuccessStatusCode && type.Contains("octet-stream", StringComparison.Ordinal)
            ? $"{body.Length} bytes sha256 {Convert.ToHexStringLower(SHA256.HashData(body))}"
            : Normalise(Encoding.UTF8.GetString(body));
        return $"{(int)r.StatusCode} {type} {text}";
    }

    [UpstreamFact]
    public async Task Reader_http2_settings_and_frame_sizes()
    {
        var results = new Dictionary<string, Http2Probe.Result>();
        foreach (var peer in new[] { Genuine, Ours })
            foreach (var (label, settings) in new (string, Dictionary<int, uint>)[]
                     {
                         ("client advertises nothing", new()),
                         ("client allows 4 MiB frames and a 1 GiB window", new() { [0x4] = (1u << 30), [0x5] = 4u << 20 }),
                     })
            {
                var answer = await ReaderTestClient.UpgradeAsync(peer.Url, peer.IsPinned, Query(Vm100), P.TokenHeader);
                Assert.Equal(101, answer.Status);
                await using var stream = answer.Stream!;
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
                var r = await Http2Probe.GetAsync(stream, $"{peer.Url.Host}:{peer.Url.Port}", "/speedtest", settings, cts.Token);
                output.WriteLine($"{peer.Name}, {label}: settings {string.Join(", ", r.ServerSettings.OrderBy(k => k.Key).Select(k => $"0x{k.Key:x}={k.Value}"))}; " +
                                 $"connection WINDOW_UPDATE {r.ConnectionWindowUpdate}; status {r.Status}; {r.BodyBytes} bytes in {r.DataFrames} DATA frames, largest {r.MaxDataFrame}");
                Assert.Equal(1 << 20, r.BodyBytes);
                results[$"{peer.Name}|{label}"] = r;
            }
        foreach (var label in new[] { "client advertises nothing", "client allows 4 MiB frames and a 1 GiB window" })
        {
            var g = results[$"genuine|{label}"];
            var o = results[$"ours|{label}"];
            string Settings(Http2Probe.Result r) => string.Join(",", r.ServerSettings.OrderBy(k => k.Key).Select(k => $"0x{k.Key:x}={k.Value}"));
            Compare($"h2 SETTINGS ({label})", Settings(g), Settings(o));
            Compare($"h2 connection window ({label})", (g.ConnectionWindowUpdate + 65535).ToString(), (o.ConnectionWindowUpdate + 65535).ToString());
            Compare($"h2 largest DATA frame of a 1 MiB answer ({label})", g.MaxDataFrame.ToString(), o.MaxDataFrame.ToString());
        }
        AssertNoDifferences();
    }
}
