using System.Globalization;
using System.Net;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;
using Microsoft.Extensions.Logging;
using PbsRestore.Sources;

namespace PbsRestore.Server;

/// <summary>
/// <c>GET /api2/json/reader</c> (upstream src/api2/reader/mod.rs): checks the parameters and that the snapshot
/// exists, answers 101 with <c>Upgrade: proxmox-backup-reader-protocol-v1</c>, then hands the upgraded stream to
/// the HTTP/2 listener as a new connection and waits until that connection ends.
/// </summary>
public sealed class ReaderUpgrade(Datastores datastores, ReaderSessionTransport transport, TrafficShaper shaper, ILogger<ReaderUpgrade> log)
{
    public const string Protocol = "proxmox-backup-reader-protocol-v1";
    private static long _nextId;

    public async Task HandleAsync(HttpContext context, string authId)
    {
        var q = context.Request.Query;
        RestApi.OnlyParameters(q, "store", "ns", "backup-type", "backup-id", "backup-time", "debug");
        string storeName = q["store"].ToString();
        var store = datastores.Get(storeName, $"no permissions on /datastore/{storeName}");
        var ns = RestApi.ParseNs(q["ns"]);
        string? type = RestApi.ParseType(q["backup-type"]);
        if (type is null) throw new HttpError(400, "parameter verification failed - 'backup-type': parameter is missing.");
        string id = q["backup-id"].ToString();
        if (!SnapshotRef.IsValidId(id)) throw new HttpError(400, "parameter verification failed - 'backup-id': missing or invalid.");
        if (!long.TryParse(q["backup-time"], NumberStyles.None, CultureInfo.InvariantCulture, out long time) || time > 253402300799)
            throw new HttpError(400, string.IsNullOrEmpty(q["backup-time"])
                ? "parameter verification failed - 'backup-time': parameter is missing and it is not optional."
                : "parameter verification failed - 'backup-time': missing or invalid.");
        bool debug = q["debug"] is var d && (d == "1" || string.Equals(d, "true", StringComparison.OrdinalIgnoreCase));

        var upgrade = context.Features.Get<IHttpUpgradeFeature>();
        string? protocols = context.Request.Headers.Upgrade;
        if (upgrade is null || !upgrade.IsUpgradableRequest || string.IsNullOrEmpty(protocols))
            throw new HttpError(400, "missing Upgrade header");
        if (protocols != Protocol) throw new HttpError(400, "invalid protocol name");

        var snapshot = new SnapshotRef(ns, type, id, DateTimeOffset.FromUnixTimeSeconds(time));
        string where = (ns.IsRoot ? "" : $"ns/{string.Join("/ns/", ns.Components)}/") + snapshot.Path;
        // Upstream's words (PBS 3.2.4): the snapshot path without its namespace.
        string dir = store.GetSnapshotDirectory(snapshot)
                     ?? throw new HttpError(400, $"snapshot {snapshot.Path} does not exist.");
        if (!File.Exists(Path.Combine(dir, Formats.FileFormats.ManifestBlobName)))
            throw new HttpError(400, $"snapshot '{where}' in datastore '{storeName}' is not finished (no manifest)");

        string connectionId = "reader-" + Interlocked.Increment(ref _nextId).ToString(CultureInfo.InvariantCulture);
        var session = new ReaderSession(authId, storeName, snapshot, dir, Path.Combine(store.Location, ".chunks"), connectionId)
        {
            Bucket = shaper.NewConnectionBucket(),
        };

        // Upgraded streams are long-lived and mostly idle in the client-to-server direction: no data-rate limits.
        if (context.Features.Get<IHttpMinResponseDataRateFeature>() is { } responseRate) responseRate.MinDataRate = null;
        if (context.Features.Get<IHttpMinRequestBodyDataRateFeature>() is { } requestRate) requestRate.MinDataRate = null;
        var pool = context.Features.Get<IMemoryPoolFeature>()?.MemoryPool;

        context.Response.Headers.Upgrade = Protocol;
        Stream stream = await upgrade.UpgradeAsync();

        var connection = new UpgradedConnection(connectionId, stream, pool, session,
            LocalEndPointOf(context), RemoteEndPointOf(context), context.Abort);
        session.Faults.Abort = connection.Abort;
        log.LogInformation("reader session {Id}: '{AuthId}' opened {Store}:{Snapshot} (memory pool: {Pool})",
            connectionId, authId, storeName, where, pool is null ? "shared" : "kestrel");
        if (debug) log.LogInformation("reader session {Id}: debug requested", connectionId);
        if (!transport.Enqueue(connection))
        {
            context.Abort();
            return;
        }
        // Keep this request (and so the upgraded stream) alive until Kestrel's HTTP/2 side is done with it.
        using (context.RequestAborted.Register(() => connection.Abort()))
            await connection.Completed;
        log.LogInformation("reader session {Id} finished ({Count} chunks registered)", connectionId, session.RegisteredCount);
    }

    private static EndPoint? LocalEndPointOf(HttpContext c) =>
        c.Connection.LocalIpAddress is { } ip ? new IPEndPoint(ip, c.Connection.LocalPort) : null;

    private static EndPoint? RemoteEndPointOf(HttpContext c) =>
        c.Connection.RemoteIpAddress is { } ip ? new IPEndPoint(ip, c.Connection.RemotePort) : null;
}
