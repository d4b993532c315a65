using System.Globalization;
using System.Text;
using System.Text.Json;
using PbsRestore.Formats;
using PbsRestore.Sources;

namespace PbsRestore.Sources.Remote;

/// <summary>Tunables of a <see cref="PbsClient"/>.</summary>
public sealed record PbsClientOptions
{
    /// <summary>
    /// How long the server's tickets live (upstream: 2 hours). The ticket carries no lifetime, so the client has to
    /// know it to renew at 3/4 of it; a server with a shorter one still works, through a password re-login on 401.
    /// </summary>
    public TimeSpan TicketLifetime { get; init; } = TimeSpan.FromHours(2);

    /// <summary>
    /// A chunk request that receives nothing (no headers, no body bytes) for this long is given up as stalled and
    /// retried; the clock restarts with every byte, so a slow but moving link never trips it. Default 60 s, or
    /// PBS_RESTORE_STALL_TIMEOUT (seconds).
    /// </summary>
    public TimeSpan StallTimeout { get; init; } = DefaultStallTimeout();

    public const string StallTimeoutVariable = "PBS_RESTORE_STALL_TIMEOUT";

    /// <summary>The clock a ticket's age is measured by (tests give a manual one, shared with an in-process server).</summary>
    public TimeProvider Clock { get; init; } = TimeProvider.System;

    private static TimeSpan DefaultStallTimeout() =>
        double.TryParse(Environment.GetEnvironmentVariable(StallTimeoutVariable), System.Globalization.NumberStyles.Float,
            System.Globalization.CultureInfo.InvariantCulture, out double s) && s > 0 && s <= 3600
            ? TimeSpan.FromSeconds(s)
            : TimeSpan.FromSeconds(60);
}

/// <summary>A datastore as the server lists it.</summary>
public sealed record DatastoreListItem(string Name, string? Comment);

/// <summary>
/// The REST API of a PBS server (listing and login) plus the factory of reader sessions. One per repository;
/// thread-safe; dispose it to close its connections. Secrets live in the authenticator and never in messages.
/// </summary>
public sealed class PbsClient : IDisposable
{
    private readonly RestTransport _rest;
    private readonly PbsAuth _auth;
    private readonly TlsConnector _tls;

    public PbsClient(PbsConnectionSettings settings, PbsClientOptions? options = null)
    {
        Repository = settings.Repository;
        Options = options ?? new PbsClientOptions();
        RetryPolicy = ChunkRetryPolicy.Default with { StallTimeout = Options.StallTimeout };
        _tls = new TlsConnector(Repository, settings.Fingerprint);
        _rest = new RestTransport(Repository, _tls);
        _auth = PbsAuth.Create(settings, _rest.LoginAsync, Options.TicketLifetime, Options.Clock);
    }

    public PbsRepository Repository { get; }
    public PbsClientOptions Options { get; }
    /// <summary>How reader sessions' requests are retried: the one policy, with <see cref="PbsClientOptions.StallTimeout"/>.</summary>
    public ChunkRetryPolicy RetryPolicy { get; }

    internal PbsAuth Auth => _auth;
    internal TlsConnector Tls => _tls;

    /// <summary>Checks the connection and credentials now (a ticket login, or a cheap listing for a token).</summary>
    public async Task ConnectAsync(CancellationToken ct)
    {
        if (_auth is TicketAuth) await _auth.GetAsync(ct).ConfigureAwait(false);
        else await ListDatastoresAsync(ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Checks that the repository's datastore exists (among those this user may see); DatastoreNotFound names the
    /// ones that do, so a typo ('gloden') or a port taken for a datastore ('host:8007') shows at once.
    /// </summary>
    public async Task CheckDatastoreAsync(CancellationToken ct)
    {
        var stores = await ListDatastoresAsync(ct).ConfigureAwait(false);
        if (stores.Any(s => s.Name == Repository.Store)) return;
        throw new PbsNotFoundException("DatastoreNotFound", stores.Count == 0
            ? $"datastore '{Repository.Store}' does not exist on {Repository.Authority}, or {Repository.AuthId} may not see it (it sees no datastore)"
            : $"datastore '{Repository.Store}' does not exist on {Repository.Authority}; datastores there: {string.Join(", ", stores.Select(s => s.Name))}");
    }

    public async Task<IReadOnlyList<DatastoreListItem>> ListDatastoresAsync(CancellationToken ct)
    {
        var data = await _rest.GetDataAsync("admin/datastore", _auth, $"listing the datastores of {Repository.Authority}", "DatastoreNotFound", ct).ConfigureAwait(false);
        return Array(data).Select(e => new DatastoreListItem(Str(e, "store") ?? "", Str(e, "comment"))).ToList();
    }

    /// <summary>The namespace <paramref name="parent"/> and those below it, to <paramref name="maxDepth"/> levels (null = all).</summary>
    public async Task<IReadOnlyList<BackupNamespace>> ListNamespacesAsync(string store, BackupNamespace parent, int? maxDepth, CancellationToken ct)
    {
        var q = new Query();
        if (!parent.IsRoot) q.Add("parent", parent.ToString());
        if (maxDepth is { } d) q.Add("max-depth", Math.Min(d, BackupNamespace.MaxDepth).ToString(CultureInfo.InvariantCulture));
        var data = await _rest.GetDataAsync($"admin/datastore/{Uri.EscapeDataString(store)}/namespace{q}", _auth,
            $"listing namespaces of '{parent}' in {Where(store)}", "NamespaceNotFound", ct).ConfigureAwait(false);
        // Depth-first, children by name: the order LocalDatastore lists them in.
        return Array(data).Select(e => BackupNamespace.Parse(Str(e, "ns"))).Order(NamespaceOrder.Instance).ToList();
    }

    public async Task<IReadOnlyList<BackupGroupInfo>> ListGroupsAsync(string store, BackupNamespace ns, CancellationToken ct)
    {
        var q = new Query();
        if (!ns.IsRoot) q.Add("ns", ns.ToString());
        var data = await _rest.GetDataAsync($"admin/datastore/{Uri.EscapeDataString(store)}/groups{q}", _auth,
            $"listing groups of namespace '{ns}' in {Where(store)}", "NamespaceNotFound", ct).ConfigureAwait(false);
        return Array(data).Select(e => new BackupGroupInfo(ns, Str(e, "backup-type") ?? "", Str(e, "backup-id") ?? "",
                (int)(Long(e, "backup-count") ?? 0), DateTimeOffset.FromUnixTimeSeconds(Long(e, "last-backup") ?? 0), Str(e, "owner"),
                e.TryGetProperty("files", out var f) && f.ValueKind == JsonValueKind.Array
                    ? f.EnumerateArray().Select(x => x.GetString() ?? "").ToList() : []))
            .OrderBy(g => g.BackupType, StringComparer.Ordinal).ThenBy(g => g.BackupId, StringComparer.Ordinal).ToList();
    }

    /// <summary>
    /// Snapshots of one namespace as <see cref="SnapshotInfo"/>, equal to what <c>LocalDatastore</c> lists
    /// for the same datastore: the files are the manifest's entries only (the server adds the manifest itself and
    /// unlisted files such as client.log.blob, with a null size), sorted by type, id, time.
    /// </summary>
    public async Task<IReadOnlyList<SnapshotInfo>> ListSnapshotsAsync(string store, BackupNamespace ns, string? backupType, string? backupId, CancellationToken ct)
    {
        var q = new Query();
        if (!ns.IsRoot) q.Add("ns", ns.ToString());
        if (backupType is not null) q.Add("backup-type", backupType);
        if (backupId is not null) q.Add("backup-id", backupId);
        var data = await _rest.GetDataAsync($"admin/datastore/{Uri.EscapeDataString(store)}/snapshots{q}", _auth,
            $"listing snapshots of namespace '{ns}' in {Where(store)}", "NamespaceNotFound", ct).ConfigureAwait(false);
        string location = LocationOf(store);
        var result = new List<SnapshotInfo>();
        foreach (var e in Array(data))
        {
            string type = Str(e, "backup-type") ?? "", id = Str(e, "backup-id") ?? "";
            long time = Long(e, "backup-time") ?? throw new PbsFormatException($"{Where(store)}: a snapshot without backup-time", "ServerAnswerInvalid");
            if (!SnapshotRef.IsValidType(type) || !SnapshotRef.IsValidId(id)) continue; // not something we could open
            var files = new List<SnapshotFile>();
            long listedSize = 0; // every file with a size, the manifest included: what PBS sums into "size"
            if (e.TryGetProperty("files", out var fs) && fs.ValueKind == JsonValueKind.Array)
                foreach (var f in fs.EnumerateArray())
                {
                    string? name = Str(f, "filename");
                    long? size = Long(f, "size");
                    if (name is null || size is null) continue;
                    listedSize += size.Value;
                    if (name == FileFormats.ManifestBlobName) continue;
                    files.Add(new SnapshotFile(name, size.Value, CryptModeNames.Parse(Str(f, "crypt-mode"))));
                }
            KeyFingerprint? fp = null;
            if (Str(e, "fingerprint") is { Length: > 0 } fpText)
            {
                try { fp = KeyFingerprint.Parse(fpText); }
                catch (FormatException) { /* a short or odd rendering: the manifest check at restore time still applies */ }
            }
            result.Add(new SnapshotInfo(new SnapshotRef(ns, type, id, DateTimeOffset.FromUnixTimeSeconds(time)), location, files, fp,
                Str(e, "owner"), Str(e, "comment"), size: Long(e, "size") ?? listedSize));
        }
        return result.OrderBy(s => s.BackupType, StringComparer.Ordinal).ThenBy(s => s.BackupId, StringComparer.Ordinal)
            .ThenBy(s => s.Ref.BackupTime).ToList();
    }

    /// <summary>Opens one reader session (one upgraded HTTP/2 connection, reconnecting as needed) on a snapshot.</summary>
    public ReaderSession OpenReaderSession(string store, SnapshotRef snapshot) => new(this, store, snapshot);

    /// <summary>The repository string for a given datastore of this server (no secret in it).</summary>
    internal string LocationOf(string store) =>
        store == Repository.Store ? Repository.ToString() : PbsRepository.Parse($"{Repository.AuthId}@{Repository.Authority}:{store}").ToString();

    private string Where(string store) => $"datastore '{store}' on {Repository.Authority}";

    private static IEnumerable<JsonElement> Array(JsonElement data) =>
        data.ValueKind == JsonValueKind.Array ? data.EnumerateArray() : [];

    private static string? Str(JsonElement e, string name) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    private static long? Long(JsonElement e, string name) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out long l) ? l : null;

    public override string ToString() => $"PbsClient {Repository}";

    /// <summary>
    /// Closes the client for good: the secret is zeroed and dropped, open connections are closed, and every later
    /// call (listing, opening a snapshot, a reader session reconnecting) fails with NotConnected and <paramref name="reason"/>.
    /// </summary>
    public void Close(string reason)
    {
        _auth.Revoke(reason);
        _rest.Dispose();
    }

    /// <summary>Whether the client still holds its password or token secret (false once closed).</summary>
    public bool HoldsSecret => _auth.HoldsSecret;

    public void Dispose() => Close($"the connection to {Repository.Authority} was closed");

    private sealed class NamespaceOrder : IComparer<BackupNamespace>
    {
        public static readonly NamespaceOrder Instance = new();
        public int Compare(BackupNamespace? x, BackupNamespace? y)
        {
            var a = x!.Components; var b = y!.Components;
            for (int i = 0; i < Math.Min(a.Count, b.Count); i++)
                if (string.CompareOrdinal(a[i], b[i]) is var c and not 0) return c;
            return a.Count.CompareTo(b.Count);
        }
    }

    /// <summary>A query string builder that escapes values ('/' in namespaces included).</summary>
    internal sealed class Query
    {
        private readonly StringBuilder _sb = new();
        public Query Add(string name, string value)
        {
            _sb.Append(_sb.Length == 0 ? '?' : '&').Append(name).Append('=').Append(Uri.EscapeDataString(value));
            return this;
        }
        public override string ToString() => _sb.ToString();
    }
}
