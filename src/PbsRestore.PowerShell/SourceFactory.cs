using System.Management.Automation;
using System.Runtime.CompilerServices;
using PbsRestore.Sources.Local;
using PbsRestore.Sources.Remote;
using PbsRestore.Sources;

namespace PbsRestore.PowerShell;

/// <summary>
/// Where snapshots come from, as a command line names it: a datastore folder, a server repository (with its
/// fingerprint and secret; a client opened for it belongs to whoever opens it), or a connection from
/// Connect-PbsServer with an optional datastore (its clients belong to the connection). Nothing is opened yet.
/// </summary>
internal sealed class SourceRequest
{
    private SourceRequest(string? folder, PbsConnectionSettings? settings, PbsServerConnection? connection, string? store, string key)
    {
        Folder = folder;
        Settings = settings;
        Connection = connection;
        Store = store;
        Key = key;
    }

    public string? Folder { get; }
    public PbsConnectionSettings? Settings { get; }
    public PbsServerConnection? Connection { get; }
    public string? Store { get; }

    /// <summary>Tells requests apart (for reuse and caches) without holding a secret.</summary>
    public string Key { get; }

    public static SourceRequest ForFolder(string path) => new(path, null, null, null, "folder|" + path);

    public static SourceRequest ForRepository(PbsConnectionSettings settings) =>
        new(null, settings, null, null, $"repo|{settings.Repository}|{settings.Fingerprint}|{SecretTag(settings)}");

    public static SourceRequest ForConnection(PbsServerConnection connection, string? store) =>
        new(null, null, connection, store, $"conn|{RuntimeHelpers.GetHashCode(connection)}|{connection.Repository}|{store}");

    /// <summary>A one-way tag of the secret, so that a listing made with one password is never reused for another.</summary>
    private static string SecretTag(PbsConnectionSettings settings) =>
        settings.Secret is { } secret
            ? Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes("pbs-source|" + secret)))[..16]
            : "-";
}

/// <summary>
/// The one place the module turns parameters into a <see cref="SourceRequest"/> and a request into a source or
/// client: the cmdlets (PbsSourceCmdlet, Get-PbsDatastore) and the argument completers both come here, so they
/// read the same parameters, variables and defaults the same way. Whoever opens a source or an owned client
/// disposes it.
/// </summary>
internal static class SourceFactory
{
    /// <summary>
    /// The source the parameters name: -Datastore (a resolved folder), else -Repository (with -Fingerprint and
    /// -Credential), else -Connection or the session default (with -Store), else PBS_REPOSITORY (with PBS_PASSWORD,
    /// PBS_FINGERPRINT, like proxmox-backup-client). Null when none is named.
    /// </summary>
    public static SourceRequest? Describe(string? folder, string? repository, string? fingerprint, PSCredential? credential,
        PbsServerConnection? connection, string? store, PbsServerConnection? defaultConnection)
    {
        if (folder is not null) return SourceRequest.ForFolder(folder);
        if (repository is not null) return SourceRequest.ForRepository(PbsSourceCmdlet.SettingsFor(repository, fingerprint, credential));
        if ((connection ?? defaultConnection) is { } c) return SourceRequest.ForConnection(c, store);
        if (!string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable(PbsConnectionSettings.RepositoryVariable)))
            return SourceRequest.ForRepository(PbsSourceCmdlet.SettingsFor(null, null, null));
        return null;
    }

    /// <summary>The error for a command that names no source.</summary>
    public static PbsException NoSource() => new("NoSource", PbsErrorKind.InvalidArgument,
        "no datastore given: use -Datastore <folder>, -Repository <repository> (or PBS_REPOSITORY), or connect first with Connect-PbsServer");

    /// <summary>Opens the source (dispose it when done: that closes a client opened for a repository).</summary>
    public static ISnapshotSource Open(SourceRequest request, int sessionsPerSnapshot)
    {
        if (request.Folder is { } folder) return new LocalDatastore(folder);
        var client = OpenClient(request, useStore: true, out bool owned);
        return new RemoteDatastore(client, sessionsPerSnapshot, ownsClient: owned);
    }

    /// <summary>
    /// A client for the request's server; <paramref name="owned"/> when the caller must dispose it (a repository's),
    /// not when it belongs to a connection. <paramref name="useStore"/>: the connection's client for -Store.
    /// </summary>
    public static PbsClient OpenClient(SourceRequest request, bool useStore, out bool owned)
    {
        if (request.Settings is { } settings)
        {
            owned = true;
            return new PbsClient(settings);
        }
        if (request.Connection is { } connection)
        {
            owned = false;
            return connection.ClientFor(useStore ? request.Store : null);
        }
        throw new InvalidOperationException($"a folder has no server client ({request.Key})");
    }
}
