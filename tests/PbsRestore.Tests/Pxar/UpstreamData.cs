using System.Text.Json.Nodes;
using PbsRestore.Sources;

namespace PbsRestore.Tests.Pxar;

/// <summary>
/// The genuine upstream client's backups (make-data.sh), through the test contract's environment variables:
/// PBS_UPSTREAM_DATA (the folder with expected.json and enc.key) and PBS_UPSTREAM_DATASTORE (its datastore as a
/// folder). PBS_UPSTREAM_SKIP, when set, is the reason they are missing.
/// </summary>
internal static class UpstreamData
{
    public static string? DataFolder => Environment.GetEnvironmentVariable("PBS_UPSTREAM_DATA") is { Length: > 0 } d && File.Exists(Path.Combine(d, "expected.json")) ? d : null;
    public static string? DatastoreFolder => Environment.GetEnvironmentVariable("PBS_UPSTREAM_DATASTORE") is { Length: > 0 } d && Directory.Exists(d) ? d : null;

    /// <summary>Why upstream tests cannot run here, or null when they can.</summary>
    public static string? SkipReason =>
        DataFolder is not null && DatastoreFolder is not null ? null
        : Environment.GetEnvironmentVariable("PBS_UPSTREAM_SKIP") is { Length: > 0 } why ? $"genuine upstream data not available: {why}"
        : "genuine upstream data not available: PBS_UPSTREAM_DATA (with expected.json) and PBS_UPSTREAM_DATASTORE are not set (build.ps1 Test sets them)";

    private static readonly Lazy<JsonNode> ExpectedJson = new(() => JsonNode.Parse(File.ReadAllText(Path.Combine(DataFolder!, "expected.json")))!);
    public static JsonNode Expected => ExpectedJson.Value;

    public static JsonObject Snapshot(string type, string id) =>
        Expected["snapshots"]!.AsArray().Select(s => s!.AsObject()).Single(s => (string)s["type"]! == type && (string)s["id"]! == id);

    public static SnapshotRef RefOf(JsonObject snapshot) =>
        new(BackupNamespace.Parse((string?)snapshot["namespace"] ?? ""), (string)snapshot["type"]!, (string)snapshot["id"]!,
            DateTimeOffset.FromUnixTimeSeconds((long)snapshot["epoch"]!));

    public static string KeyFile(JsonObject snapshot) => Path.Combine(DataFolder!, (string)snapshot["keyfile"]!);
    public static string KeyPassword(JsonObject snapshot) => (string)snapshot["keypassword"]!;
}

/// <summary>A fact that needs the genuine upstream data; skipped, with the reason, when it is not there.</summary>
public sealed class UpstreamFactAttribute : FactAttribute
{
    public UpstreamFactAttribute()
    {
        if (UpstreamData.SkipReason is { } reason) Skip = reason;
    }
}

/// <summary>A theory that needs the genuine upstream data; skipped, with the reason, when it is not there.</summary>
public sealed class UpstreamTheoryAttribute : TheoryAttribute
{
    public UpstreamTheoryAttribute()
    {
        if (UpstreamData.SkipReason is { } reason) Skip = reason;
    }

    /// <summary>The test reads Linux metadata back (find, getfattr): skipped elsewhere.</summary>
    public bool LinuxOnly
    {
        get => false;
        init
        {
            if (value && !OperatingSystem.IsLinux()) Skip ??= "reads restored Linux metadata with find and getfattr";
        }
    }
}
