using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using PbsRestore.Formats;
using PbsRestore.Sources;
using PbsRestore.Sources.Local;

namespace PbsRestore.Server;

/// <summary>The datastores served, by name.</summary>
public sealed class Datastores(IReadOnlyList<(string Name, LocalDatastore Store)> stores)
{
    public IReadOnlyList<(string Name, LocalDatastore Store)> All => stores;

    public LocalDatastore Get(string? name)
    {
        if (string.IsNullOrEmpty(name)) throw new HttpError(400, "parameter verification failed - 'store': parameter is missing.");
        foreach (var (n, s) in stores)
            if (n == name) return s;
        // Upstream checks privileges on /datastore/{name} first: for an id with privileges only on the stores that exist
        // (every id here) an unknown store is a permission error, worded per endpoint (seen on PBS 3.2.4).
        throw new HttpError(403, $"permission check failed - missing Datastore.Audit|Datastore.Backup on /datastore/{name}");
    }

    /// <summary>The store for the namespace listing and the reader, whose unknown-store answers are 400s of their own.</summary>
    public LocalDatastore Get(string? name, string unknownMessage)
    {
        try { return Get(name); }
        catch (HttpError e) when (e.Status == 403) { throw new HttpError(400, unknownMessage); }
    }
}

/// <summary>
/// The REST part (HTTP/1.1 over TLS): the ticket, and the listing handlers of upstream's
/// src/api2/admin/datastore.rs that a restore client needs, computed from <see cref="LocalDatastore"/>.
/// </summary>
public sealed class RestApi(Datastores datastores, Authenticator auth, ReaderUpgrade reader, ILogger<RestApi> log)
{
    private const string Prefix = "/api2/json";

    public async Task HandleAsync(HttpContext context)
    {
        try
        {
            string path = context.Request.Path.Value ?? "/";
            if (path.Length > 1 && path.EndsWith('/')) path = path.TrimEnd('/');
            if (!path.StartsWith(Prefix + "/", StringComparison.Ordinal))
                throw new HttpError(404, $"Path '{path}' not found.");
            string rest = path[Prefix.Length..];

            if (rest == "/access/ticket")
            {
                if (!HttpMethods.IsPost(context.Request.Method)) throw new HttpError(405, $"Method '{context.Request.Method}' not allowed on '{path}'.");
                await TicketAsync(context);
                return;
            }

            var who = auth.Authenticate(context.Request);
            if (!who.Ok)
            {
                log.LogInformation("{Method} {Path}: {Error}", context.Request.Method, path, who.Error);
                await Json.WriteErrorAsync(context, 401, who.Error!, contentType: false);
                return;
            }
            if (!HttpMethods.IsGet(context.Request.Method))
                throw new HttpError(405, $"Method '{context.Request.Method}' not allowed on '{path}'.");

            var q = context.Request.Query;
            switch (rest.Split('/', StringSplitOptions.RemoveEmptyEntries))
            {
                case ["reader"]:
                    await reader.HandleAsync(context, who.AuthId!);
                    return;
                case ["version"]:
                    await Json.WriteDataAsync(context, w =>
                    {
                        w.WriteStartObject();
                        w.WriteString("version", "3.0");
                        w.WriteString("release", "0");
                        w.WriteString("repoid", "pbsrestore-server");
                        w.WriteEndObject();
                    });
                    return;
                case ["admin", "datastore"]:
                    await Json.WriteDataAsync(context, w =>
                    {
                        w.WriteStartArray();
                        foreach (var (name, _) in datastores.All)
                        {
                            w.WriteStartObject();
                            w.WriteString("store", name);
                            w.WriteNull("comment");
                            w.WriteEndObject();
                        }
                        w.WriteEndArray();
                    });
                    return;
                case ["admin", "datastore", var store, "namespace"]:
                    OnlyParameters(q, "parent", "max-depth");
                    await NamespacesAsync(context, datastores.Get(store, $"no such datastore '{store}'"), q["parent"], q["max-depth"]);
                    return;
                case ["admin", "datastore", var store, "groups"]:
                    OnlyParameters(q, "ns");
                    await GroupsAsync(context, datastores.Get(store), q["ns"]);
                    return;
                case ["admin", "datastore", var store, "snapshots"]:
                    OnlyParameters(q, "ns", "backup-type", "backup-id");
                    await SnapshotsAsync(context, datastores.Get(store), q["ns"], q["backup-type"], q["backup-id"]);
                    return;
                default:
                    throw new HttpError(404, $"Path '{path}' not found.");
            }
        }
        catch (HttpError e)
        {
            await Json.WriteErrorAsync(context, e.Status, e.Message, e.ContentType);
        }
        catch (PbsException e) when (e.Kind is PbsErrorKind.InvalidArgument or PbsErrorKind.NotFound)
        {
            await Json.WriteErrorAsync(context, 400, e.Message);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            log.LogError(e, "{Method} {Path} failed", context.Request.Method, context.Request.Path);
            await Json.WriteErrorAsync(context, 500, "internal error: " + e.Message);
        }
    }

    private async Task TicketAsync(HttpContext context)
    {
        string? username = null, password = null;
        if (context.Request.HasFormContentType)
        {
            var form = await context.Request.ReadFormAsync(context.RequestAborted);
            username = form["username"];
            password = form["password"];
        }
        else if (context.Request.ContentType?.StartsWith("application/json", StringComparison.OrdinalIgnoreCase) == true)
        {
            using var doc = await JsonDocument.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted);
            if (doc.RootElement.ValueKind == JsonValueKind.Object)
            {
                if (doc.RootElement.TryGetProperty("username", out var u) && u.ValueKind == JsonValueKind.String) username = u.GetString();
                if (doc.RootElement.TryGetProperty("password", out var p) && p.ValueKind == JsonValueKind.String) password = p.GetString();
            }
        }
        if (string.IsNullOrEmpty(username) || password is null)
            throw new HttpError(400, "parameter verification failed - 'username' and 'password' are required.");
        var r = auth.Login(username, password);
        if (!r.Ok)
        {
            log.LogInformation("ticket for '{User}' refused", username);
            throw new HttpError(401, r.Error!);
        }
        string ticket = auth.CreateTicket(username), csrf = auth.CreateCsrfToken(username);
        await Json.WriteDataAsync(context, w =>
        {
            w.WriteStartObject();
            w.WriteString("username", username);
            w.WriteString("ticket", ticket);
            w.WriteString("CSRFPreventionToken", csrf);
            w.WriteEndObject();
        });
    }

    /// <summary>Upstream's schemas refuse parameters they do not name.</summary>
    internal static void OnlyParameters(IQueryCollection q, params string[] allowed)
    {
        foreach (var key in q.Keys)
            if (Array.IndexOf(allowed, key) < 0)
                throw new HttpError(400, $"parameter verification failed - '{key}': schema does not allow additional properties.");
    }

    internal static BackupNamespace ParseNs(string? text, string param = "ns")
    {
        // Upstream's pattern: components joined by single slashes, no leading or trailing slash.
        if (!string.IsNullOrEmpty(text) && (text.StartsWith('/') || text.EndsWith('/') || text.Contains("//", StringComparison.Ordinal)))
            throw new HttpError(400, $"parameter verification failed - '{param}': value does not match the regex pattern");
        try { return BackupNamespace.Parse(text); }
        catch (PbsException) { throw new HttpError(400, $"parameter verification failed - '{param}': value does not match the regex pattern"); }
    }

    internal static string? ParseType(string? type)
    {
        if (string.IsNullOrEmpty(type)) return null;
        if (!SnapshotRef.IsValidType(type)) throw new HttpError(400, $"parameter verification failed - 'backup-type': value '{type}' is not defined in the enumeration.");
        return type;
    }

    /// <summary>
    /// Upstream lists a namespace by opening its folder (and, with a type filter, the type's folder): one that is not
    /// there is the OS error, 400 "ENOENT: No such file or directory", whether the namespace or only the type is missing.
    /// </summary>
    internal const string Enoent = "ENOENT: No such file or directory";

    private static async Task NamespacesAsync(HttpContext context, LocalDatastore store, string? parentText, string? maxDepthText)
    {
        var parent = ParseNs(parentText, "parent");
        int maxDepth = BackupNamespace.MaxDepth;
        if (!string.IsNullOrEmpty(maxDepthText) && (!int.TryParse(maxDepthText, out maxDepth) || maxDepth < 0 || maxDepth > BackupNamespace.MaxDepth))
            throw new HttpError(400, $"parameter verification failed - 'max-depth': value must be between 0 and {BackupNamespace.MaxDepth}.");
        // Upstream lists a parent that does not exist as itself, with nothing below it (PBS 3.2.4).
        var list = store.GetNamespaceDirectory(parent) is not null
            ? await store.ListNamespacesAsync(parent, maxDepth, context.RequestAborted)
            : [parent];
        await Json.WriteDataAsync(context, w =>
        {
            w.WriteStartArray();
            foreach (var ns in list)
            {
                w.WriteStartObject();
                w.WriteString("ns", ns.ToString()); // upstream leaves "comment" out when there is none
                w.WriteEndObject();
            }
            w.WriteEndArray();
        });
    }

    /// <summary>One snapshot's wire entry: manifest files, then the manifest, then other files of the folder (size null).</summary>
    private sealed record WireFile(string Name, long? Size, string? CryptMode);

    private sealed record WireSnapshot(SnapshotInfo Info, List<WireFile> Files, long Size, bool Protected, string? Comment, string? VerificationJson);

    private static async Task<List<WireSnapshot>> LoadSnapshotsAsync(LocalDatastore store, BackupNamespace ns, string? type, string? id, CancellationToken ct)
    {
        string? nsDir = store.GetNamespaceDirectory(ns);
        if (nsDir is null || (type is not null && id is null && !Directory.Exists(Path.Combine(nsDir, type))))
            throw new HttpError(400, Enoent);
        var infos = await store.ListSnapshotsAsync(ns, type, id, ct);
        var result = new List<WireSnapshot>(infos.Count);
        foreach (var info in infos)
        {
            string? dir = store.GetSnapshotDirectory(info.Ref);
            if (dir is null) continue; // removed since listed
            var files = info.Files.Select(f => new WireFile(f.Name, f.Size, f.Mode.ToPbsString())).ToList();
            string manifestPath = Path.Combine(dir, FileFormats.ManifestBlobName);
            BackupManifest? manifest = null;
            long manifestSize = 0;
            try
            {
                byte[] raw = await File.ReadAllBytesAsync(manifestPath, ct);
                manifestSize = raw.Length;
                using var decoder = new BlobDecoder(null, BackupManifest.MaxJsonSize);
                manifest = BackupManifest.Parse(decoder.DecodeToArray(raw), manifestPath);
            }
            catch (Exception e) when (e is IOException or PbsException) { }
            files.Add(new WireFile(FileFormats.ManifestBlobName, manifestSize, manifest?.Signature is not null ? "sign-only" : "none"));
            var known = new HashSet<string>(files.Select(f => f.Name), StringComparer.Ordinal);
            foreach (var extra in Directory.EnumerateFiles(dir).Select(Path.GetFileName).Order(StringComparer.Ordinal))
                if (extra is not null && !known.Contains(extra) && ArchiveNames.IsValidStoredName(extra))
                    files.Add(new WireFile(extra, null, null));
            string? comment = null, verification = null;
            if (manifest is not null)
            {
                try
                {
                    using var u = JsonDocument.Parse(manifest.UnprotectedJson);
                    if (u.RootElement.ValueKind == JsonValueKind.Object)
                    {
                        if (u.RootElement.TryGetProperty("notes", out var notes) && notes.ValueKind == JsonValueKind.String)
                            comment = notes.GetString()!.Split('\n')[0];
                        if (u.RootElement.TryGetProperty("verify_state", out var vs) && vs.ValueKind == JsonValueKind.Object)
                            verification = vs.GetRawText();
                    }
                }
                catch (JsonException) { }
            }
            result.Add(new WireSnapshot(info, files, files.Sum(f => f.Size ?? 0), File.Exists(Path.Combine(dir, ".protected")), comment, verification));
        }
        return result;
    }

    private static async Task SnapshotsAsync(HttpContext context, LocalDatastore store, string? nsText, string? typeText, string? id)
    {
        var ns = ParseNs(nsText);
        string? type = ParseType(typeText);
        var snapshots = await LoadSnapshotsAsync(store, ns, type, string.IsNullOrEmpty(id) ? null : id, context.RequestAborted);
        await Json.WriteDataAsync(context, w =>
        {
            w.WriteStartArray();
            foreach (var s in snapshots)
            {
                w.WriteStartObject();
                w.WriteString("backup-type", s.Info.BackupType);
                w.WriteString("backup-id", s.Info.BackupId);
                w.WriteNumber("backup-time", s.Info.Ref.BackupTimeEpoch);
                if (s.Comment is not null) w.WriteString("comment", s.Comment);
                if (s.VerificationJson is not null)
                {
                    w.WritePropertyName("verification");
                    w.WriteRawValue(s.VerificationJson);
                }
                if (s.Info.KeyFingerprint is not null) w.WriteString("fingerprint", s.Info.KeyFingerprint);
                w.WriteStartArray("files");
                foreach (var f in s.Files)
                {
                    w.WriteStartObject();
                    w.WriteString("filename", f.Name);
                    if (f.Size is { } size) w.WriteNumber("size", size); else w.WriteNull("size");
                    if (f.CryptMode is not null) w.WriteString("crypt-mode", f.CryptMode);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteNumber("size", s.Size);
                if (s.Info.Owner is not null) w.WriteString("owner", s.Info.Owner);
                w.WriteBoolean("protected", s.Protected);
                w.WriteEndObject();
            }
            w.WriteEndArray();
        });
    }

    private static async Task GroupsAsync(HttpContext context, LocalDatastore store, string? nsText)
    {
        var ns = ParseNs(nsText);
        var snapshots = await LoadSnapshotsAsync(store, ns, null, null, context.RequestAborted);
        var groups = snapshots.GroupBy(s => (s.Info.BackupType, s.Info.BackupId))
            .OrderBy(g => g.Key.BackupType, StringComparer.Ordinal).ThenBy(g => g.Key.BackupId, StringComparer.Ordinal);
        await Json.WriteDataAsync(context, w =>
        {
            w.WriteStartArray();
            foreach (var g in groups)
            {
                var last = g.MaxBy(s => s.Info.Ref.BackupTime)!;
                w.WriteStartObject();
                w.WriteString("backup-type", g.Key.BackupType);
                w.WriteString("backup-id", g.Key.BackupId);
                w.WriteNumber("last-backup", last.Info.Ref.BackupTimeEpoch);
                w.WriteNumber("backup-count", g.Count());
                if (last.Info.Owner is not null) w.WriteString("owner", last.Info.Owner);
                w.WriteStartArray("files");
                foreach (var f in last.Files) w.WriteStringValue(f.Name);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndArray();
        });
    }
}
