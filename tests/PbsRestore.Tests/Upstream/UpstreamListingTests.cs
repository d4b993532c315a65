using System.Net;
using System.Text.Json;
using PbsRestore.Sources.Remote;
using PbsRestore.Sources;
using PbsRestore.Tests.Server;
using PbsRestore.Sources.Local;

namespace PbsRestore.Tests.Upstream;

/// <summary>Our client's listings against the genuine PBS 3.2.4, compared with make-data.sh's expected.json and with
/// the same datastore read as a folder.</summary>
public sealed class UpstreamListingTests
{
    private static UpstreamState Peer => UpstreamPeer.State;

    internal static PbsClient TokenClient() =>
        new(PbsConnectionSettings.Resolve(Peer.Repository(Peer.TokenId), Peer.Fingerprint, Peer.Secret, _ => null));

    private static async Task<List<SnapshotInfo>> ListAllAsync(ISnapshotSource source, string? type = null, string? id = null)
    {
        var all = new List<SnapshotInfo>();
        foreach (var ns in await source.ListNamespacesAsync(BackupNamespace.Root, BackupNamespace.MaxDepth, default))
            all.AddRange(await source.ListSnapshotsAsync(ns, type, id, default));
        return all;
    }

    [UpstreamFact]
    public async Task Every_snapshot_of_expected_json_is_listed_with_its_archives()
    {
        using var client = TokenClient();
        using var remote = new RemoteDatastore(client);
        var listed = await ListAllAsync(remote);
        Assert.Equal(UpstreamPeer.Expected.Select(e => $"{e.Namespace}|{e.Path}").Order(StringComparer.Ordinal),
            listed.Select(s => $"{s.Namespace}|{s.Snapshot}").Order(StringComparer.Ordinal));
        foreach (var e in UpstreamPeer.Expected)
        {
            var s = listed.Single(x => x.Namespace == e.Namespace && x.Snapshot == e.Path);
            Assert.Equal(e.Encrypted, s.Encrypted);
            Assert.Equal(e.Archives.Select(a => a.Name).Order(StringComparer.Ordinal), s.Files.Select(f => f.Name).Order(StringComparer.Ordinal));
            foreach (var a in e.Archives.Where(a => a.Size is not null && a.Name.EndsWith(".fidx", StringComparison.Ordinal)))
                Assert.Equal(a.Size, s.Files.Single(f => f.Name == a.Name).Size);
            Assert.Equal(e.Encrypted, s.KeyFingerprint is not null);
            Assert.Equal(Peer.TokenId, s.Owner);
        }
    }

    [UpstreamFact]
    public async Task Listing_over_the_wire_equals_the_datastore_folder_including_Size()
    {
        using var client = TokenClient();
        using var remote = new RemoteDatastore(client);
        var local = new LocalDatastore(UpstreamPeer.DatastoreFolder);
        var a = await ListAllAsync(local);
        var b = await ListAllAsync(remote);
        Assert.Equal(a.Select(s => s.Ref), b.Select(s => s.Ref));
        foreach (var (l, r) in a.Zip(b))
        {
            Assert.Equal(l.Files, r.Files);
            Assert.Equal(l.KeyFingerprint, r.KeyFingerprint);
            Assert.Equal(l.Owner, r.Owner);
            Assert.Equal(l.Size, r.Size);
        }

        // Size is what the genuine server says (every file, index.json.blob included).
        using var http = UpstreamHttp.RestClient(Peer.TokenHeader);
        using var doc = JsonDocument.Parse(await http.GetStringAsync($"/api2/json/admin/datastore/{Peer.Datastore}/snapshots"));
        foreach (var w in doc.RootElement.GetProperty("data").EnumerateArray())
        {
            var s = b.Single(x => x.Namespace == "" && x.BackupType == w.GetProperty("backup-type").GetString()
                                  && x.BackupId == w.GetProperty("backup-id").GetString() && x.Ref.BackupTimeEpoch == w.GetProperty("backup-time").GetInt64());
            Assert.Equal(w.GetProperty("size").GetInt64(), s.Size);
            long manifest = w.GetProperty("files").EnumerateArray().Single(f => f.GetProperty("filename").GetString() == "index.json.blob").GetProperty("size").GetInt64();
            Assert.Equal(s.Files.Sum(f => f.Size) + manifest, s.Size);
        }
    }

    [UpstreamFact]
    public async Task A_type_filter_lists_what_matches_although_a_namespace_has_no_group_of_that_type()
    {
        // The genuine server answers 400 ENOENT for snapshots?ns=prod&backup-type=ct (prod holds only vm/200).
        using (var http = UpstreamHttp.RestClient(Peer.TokenHeader))
        {
            var raw = await http.GetAsync($"/api2/json/admin/datastore/{Peer.Datastore}/snapshots?ns=prod&backup-type=ct");
            Assert.Equal(HttpStatusCode.BadRequest, raw.StatusCode);
            Assert.Equal("ENOENT: No such file or directory", await raw.Content.ReadAsStringAsync());
        }
        using var client = TokenClient();
        using var remote = new RemoteDatastore(client);
        foreach (var type in new[] { "ct", "host", "vm" })
        {
            var listed = await ListAllAsync(remote, type);
            Assert.Equal(UpstreamPeer.Expected.Where(e => e.Type == type).Select(e => $"{e.Namespace}|{e.Path}").Order(StringComparer.Ordinal),
                listed.Select(s => $"{s.Namespace}|{s.Snapshot}").Order(StringComparer.Ordinal));
        }
        Assert.Empty(await remote.ListSnapshotsAsync(BackupNamespace.Parse("prod"), "ct", null, default));
        Assert.Empty(await remote.ListSnapshotsAsync(BackupNamespace.Parse("prod/web"), "vm", null, default));
        Assert.Empty(await remote.ListSnapshotsAsync(BackupNamespace.Parse("prod"), "ct", "300", default));
        Assert.Single(await remote.ListSnapshotsAsync(BackupNamespace.Parse("prod"), "vm", null, default));

        // A namespace that does not exist is still an error, with or without the filter.
        foreach (var type in new[] { null, "ct" })
        {
            var e = await Assert.ThrowsAsync<PbsNotFoundException>(() => remote.ListSnapshotsAsync(BackupNamespace.Parse("nope"), type, null, default));
            Assert.Equal("NamespaceNotFound", e.ErrorId);
            Assert.Contains("'nope'", e.Message);
        }
    }
}

/// <summary>Plain HTTP clients for the genuine server (certificate pinned to state.json's fingerprint).</summary>
internal static class UpstreamHttp
{
    public static bool IsPinned(System.Security.Cryptography.X509Certificates.X509Certificate? c) =>
        c is not null && TestServer.FingerprintOf(c) == UpstreamPeer.State.Fingerprint;

    public static HttpClient RestClient(string? authorization = null)
    {
        var handler = new SocketsHttpHandler
        {
            SslOptions = new System.Net.Security.SslClientAuthenticationOptions { RemoteCertificateValidationCallback = (_, c, _, _) => IsPinned(c) },
            UseCookies = false,
        };
        var client = new HttpClient(handler) { BaseAddress = UpstreamPeer.State.Url, Timeout = TimeSpan.FromSeconds(60) };
        if (authorization is not null) client.DefaultRequestHeaders.TryAddWithoutValidation("Authorization", authorization);
        return client;
    }
}
