using System.Text.Json;

namespace PbsRestore.Tests.Upstream;

/// <summary>The connection facts start.sh wrote to state.json (secrets included: never print them).</summary>
public sealed record UpstreamState(Uri Url, string Host, int Port, string Fingerprint, string Datastore, string User, string Password,
    string TokenId, string Secret, string DatastorePath)
{
    /// <summary>The Authorization header for the API token (secret percent-encoded, as upstream's client sends it).</summary>
    public string TokenHeader => $"PBSAPIToken={TokenId}:{Uri.EscapeDataString(Secret)}";

    public string Repository(string authId) => $"{authId}@{Host}:{Port}:{Datastore}";
}

/// <summary>One snapshot of make-data.sh's expected.json (images and confs have Sha256 of their source).</summary>
public sealed record ExpectedSnapshot(string Type, string Id, string Namespace, long Epoch, bool Encrypted, string? KeyFile, string? KeyPassword,
    IReadOnlyList<ExpectedArchive> Archives)
{
    public string Path => $"{Type}/{Id}/{DateTimeOffset.FromUnixTimeSeconds(Epoch):yyyy-MM-ddTHH:mm:ssZ}";
}

public sealed record ExpectedArchive(string Name, string? Source, long? Size, string? Sha256);

/// <summary>
/// The genuine PBS 3.2.4 server of ../shared/upstream-pbs, as build.ps1 Test hands it to the tests (issue 12):
/// PBS_UPSTREAM_STATE (state.json), PBS_UPSTREAM_DATA (make-data.sh output with expected.json),
/// PBS_UPSTREAM_DATASTORE (its datastore folder), or PBS_UPSTREAM_SKIP with the reason it could not be started.
/// Tests that need it use <see cref="UpstreamFactAttribute"/>, which skips them visibly with that reason.
/// </summary>
public static class UpstreamPeer
{
    private static readonly Lazy<string?> Reason = new(FindSkipReason);
    private static readonly Lazy<UpstreamState> LazyState = new(LoadState);
    private static readonly Lazy<IReadOnlyList<ExpectedSnapshot>> LazyExpected = new(LoadExpected);

    /// <summary>Why the genuine-server tests cannot run here, or null when they can.</summary>
    public static string? SkipReason => Reason.Value;

    public static UpstreamState State => LazyState.Value;
    public static string DataFolder => Environment.GetEnvironmentVariable("PBS_UPSTREAM_DATA")!;
    public static string DatastoreFolder => Environment.GetEnvironmentVariable("PBS_UPSTREAM_DATASTORE")!;
    public static IReadOnlyList<ExpectedSnapshot> Expected => LazyExpected.Value;

    public static string DataPath(string relative) => System.IO.Path.Combine(DataFolder, relative);

    private static string? FindSkipReason()
    {
        if (Environment.GetEnvironmentVariable("PBS_UPSTREAM_SKIP") is { Length: > 0 } skip) return skip;
        foreach (var name in new[] { "PBS_UPSTREAM_STATE", "PBS_UPSTREAM_DATA", "PBS_UPSTREAM_DATASTORE" })
            if (string.IsNullOrEmpty(Environment.GetEnvironmentVariable(name)))
                return $"{name} is not set (build.ps1 Test starts the genuine server as root; or set PBS_UPSTREAM_STATE, _DATA and _DATASTORE)";
        if (!File.Exists(Environment.GetEnvironmentVariable("PBS_UPSTREAM_STATE"))) return "PBS_UPSTREAM_STATE names no file";
        if (!File.Exists(System.IO.Path.Combine(Environment.GetEnvironmentVariable("PBS_UPSTREAM_DATA")!, "expected.json")))
            return "PBS_UPSTREAM_DATA holds no expected.json";
        return null;
    }

    private static UpstreamState LoadState()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Environment.GetEnvironmentVariable("PBS_UPSTREAM_STATE")!));
        var r = doc.RootElement;
        string S(string n) => r.GetProperty(n).GetString()!;
        return new UpstreamState(new Uri(S("url")), S("host"), r.GetProperty("port").GetInt32(), S("fingerprint"), S("datastore"), S("user"),
            S("password"), S("tokenid"), S("secret"), S("datastore_path"));
    }

    private static IReadOnlyList<ExpectedSnapshot> LoadExpected()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(DataPath("expected.json")));
        static string? Str(JsonElement e, string n) => e.TryGetProperty(n, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
        return doc.RootElement.GetProperty("snapshots").EnumerateArray().Select(s => new ExpectedSnapshot(
            Str(s, "type")!, Str(s, "id")!, Str(s, "namespace") ?? "", s.GetProperty("epoch").GetInt64(), s.GetProperty("encrypted").GetBoolean(),
            Str(s, "keyfile"), Str(s, "keypassword"),
            s.GetProperty("archives").EnumerateArray().Select(a => new ExpectedArchive(Str(a, "name")!, Str(a, "source"),
                a.TryGetProperty("size", out var z) && z.ValueKind == JsonValueKind.Number ? z.GetInt64() : null, Str(a, "sha256"))).ToList())).ToList();
    }
}

/// <summary>A fact that needs the genuine server: skipped, with the reason, when it is not there (decided when the
/// tests are discovered, in the test process, from the variables build.ps1 exports).</summary>
public sealed class UpstreamFactAttribute : FactAttribute
{
    public UpstreamFactAttribute()
    {
        if (UpstreamPeer.SkipReason is { } reason) Skip = "genuine PBS server not available: " + reason;
    }
}
