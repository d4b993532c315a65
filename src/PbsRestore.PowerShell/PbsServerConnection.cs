using System.Collections.Concurrent;
using PbsRestore.Sources.Remote;

namespace PbsRestore.PowerShell;

/// <summary>
/// A connection to a PBS server, made by Connect-PbsServer and kept as the session default (as PowerCLI keeps
/// $DefaultVIServer). It holds one client per datastore used, all with the same credentials and certificate
/// pin. The secret stays inside the clients; nothing here prints it.
/// </summary>
public sealed class PbsServerConnection : IDisposable
{
    private PbsConnectionSettings _settings;
    private readonly ConcurrentDictionary<string, Lazy<PbsClient>> _clients = new(StringComparer.Ordinal);

    internal PbsServerConnection(PbsConnectionSettings settings, PbsClient first)
    {
        _settings = settings;
        _clients[settings.Repository.Store] = new Lazy<PbsClient>(first);
        ConnectedAt = DateTime.UtcNow;
    }

    /// <summary>host:port of the server.</summary>
    public string Server => _settings.Repository.Authority;
    public string AuthId => _settings.Repository.AuthId;
    /// <summary>The datastore used when a command names none.</summary>
    public string Datastore => _settings.Repository.Store;
    public string Repository => _settings.Repository.ToString();
    /// <summary>The pinned certificate fingerprint, or null when the system store is trusted.</summary>
    public string? Fingerprint => _settings.Fingerprint?.ToString();
    public DateTime ConnectedAt { get; }
    public bool IsConnected { get; private set; } = true;

    /// <summary>The client for a datastore of this server (the default one when <paramref name="store"/> is null).</summary>
    internal PbsClient ClientFor(string? store)
    {
        if (!IsConnected) throw new PbsException("NotConnected", PbsErrorKind.InvalidArgument, $"the connection to {Server} was closed by Disconnect-PbsServer");
        store ??= Datastore;
        return _clients.GetOrAdd(store, s => new Lazy<PbsClient>(() =>
        {
            var repo = PbsRepository.Parse($"{AuthId}@{Server}:{s}");
            return new PbsClient(new PbsConnectionSettings(repo, _settings.Fingerprint, _settings.Secret));
        })).Value;
    }

    public override string ToString() => $"{AuthId}@{Server}";

    /// <summary>Whether the connection still holds the password or token secret (false after Disconnect-PbsServer).</summary>
    internal bool HoldsSecret => _settings.HasSecret || _clients.Values.Any(c => c.IsValueCreated && c.Value.HoldsSecret);

    /// <summary>
    /// Disconnects: every client of this connection is closed for good, so snapshot objects listed through it fail
    /// with NotConnected when used later, and the secret is zeroed in the clients and no longer referenced here.
    /// </summary>
    public void Dispose()
    {
        IsConnected = false;
        string reason = $"the connection to {Server} was closed by Disconnect-PbsServer";
        foreach (var c in _clients.Values)
            if (c.IsValueCreated) c.Value.Close(reason);
        _clients.Clear();
        _settings = new PbsConnectionSettings(_settings.Repository, _settings.Fingerprint, secret: null);
    }
}
