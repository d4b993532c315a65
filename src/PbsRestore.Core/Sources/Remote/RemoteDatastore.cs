using PbsRestore.Formats;
using PbsRestore.Sources;

namespace PbsRestore.Sources.Remote;

/// <summary>
/// A datastore on a PBS server, behind the same <see cref="ISnapshotSource"/> as a datastore folder, so listing
/// and restore code does not care where snapshots come from. <see cref="Location"/> is the repository string
/// (no secret). Each opened snapshot gets <see cref="SessionsPerSnapshot"/> reader sessions (connections).
/// </summary>
public sealed class RemoteDatastore : ISnapshotSource, IDisposable
{
    private readonly PbsClient _client;
    private readonly bool _ownsClient;

    /// <param name="client">The server connection; the datastore is the repository's.</param>
    /// <param name="sessionsPerSnapshot">Reader sessions per opened snapshot, 1..16. One HTTP/2 connection is usually
    /// enough; more can help on a long fat network where one TCP connection's window limits throughput.</param>
    /// <param name="ownsClient">Dispose the client with this.</param>
    public RemoteDatastore(PbsClient client, int sessionsPerSnapshot = DefaultSessionsPerSnapshot, bool ownsClient = false)
    {
        if (sessionsPerSnapshot is < 1 or > 16)
            throw new ArgumentOutOfRangeException(nameof(sessionsPerSnapshot), sessionsPerSnapshot, "must be 1..16");
        _client = client;
        _ownsClient = ownsClient;
        SessionsPerSnapshot = sessionsPerSnapshot;
    }

    /// <summary>
    /// Reader sessions (HTTP/2 connections) per snapshot by default. One connection is capped by its TCP window
    /// and by per-flow limits of WAN paths and firewalls; a few in parallel lift that cap, and on a fast LAN
    /// they cost only an index download each.
    /// </summary>
    public const int DefaultSessionsPerSnapshot = 4;

    public PbsClient Client => _client;
    public string Store => _client.Repository.Store;
    public int SessionsPerSnapshot { get; }
    public string Location => _client.Repository.ToString();

    public Task<IReadOnlyList<BackupNamespace>> ListNamespacesAsync(BackupNamespace parent, int maxDepth, CancellationToken ct) =>
        _client.ListNamespacesAsync(Store, parent, maxDepth, ct);

    public async Task<IReadOnlyList<SnapshotInfo>> ListSnapshotsAsync(BackupNamespace ns, string? backupType, string? backupId, CancellationToken ct)
    {
        try
        {
            return await _client.ListSnapshotsAsync(Store, ns, backupType, backupId, ct).ConfigureAwait(false);
        }
        catch (PbsNotFoundException) when (backupType is not null)
        {
            // PBS opens the type's folder for a type filter and answers 400 "ENOENT" when the namespace holds no group
            // of that type, the same answer as for a namespace that does not exist. If the namespace's groups can be
            // listed (this throws NamespaceNotFound otherwise) and none has that type, nothing matches.
            var groups = await _client.ListGroupsAsync(Store, ns, ct).ConfigureAwait(false);
            if (groups.Any(g => g.BackupType == backupType)) throw;
            return [];
        }
    }

    /// <summary>Opens the snapshot: connects the first session and downloads the manifest, so a snapshot that does
    /// not exist (or credentials that do not work) fail here, not at the first chunk.</summary>
    public Task<IReadOnlyList<BackupGroupInfo>> ListGroupsAsync(BackupNamespace ns, CancellationToken ct) =>
        _client.ListGroupsAsync(Store, ns, ct);

    public async Task<ISnapshotReader> OpenSnapshotAsync(SnapshotRef snapshot, CancellationToken ct) =>
        await RemoteSnapshotReader.OpenAsync(_client, Store, snapshot, SessionsPerSnapshot, ct).ConfigureAwait(false);

    public override string ToString() => Location;

    public void Dispose()
    {
        if (_ownsClient) _client.Dispose();
    }
}

/// <summary>
/// Reads one snapshot over K reader sessions. Files come through the first session; every index downloaded
/// through <see cref="ReadFileAsync"/> is registered with all sessions, which download it themselves before
/// their first chunk (the server only serves chunks of indexes downloaded in the same session). Chunk requests
/// go to the session with the fewest in flight.
/// </summary>
public sealed class RemoteSnapshotReader : ISnapshotReader, IChunkSource
{
    private readonly ReaderSession[] _sessions;
    private readonly byte[] _manifest;
    private int _disposed;

    private RemoteSnapshotReader(SnapshotRef snapshot, ReaderSession[] sessions, byte[] manifest)
    {
        Snapshot = snapshot;
        _sessions = sessions;
        _manifest = manifest;
    }

    internal static async Task<RemoteSnapshotReader> OpenAsync(PbsClient client, string store, SnapshotRef snapshot, int sessions, CancellationToken ct)
    {
        var list = Enumerable.Range(0, sessions).Select(_ => client.OpenReaderSession(store, snapshot)).ToArray();
        try
        {
            var manifest = await list[0].DownloadAsync(FileFormats.ManifestBlobName, BackupManifestLimit, ct).ConfigureAwait(false);
            return new RemoteSnapshotReader(snapshot, list, manifest);
        }
        catch (PbsNotFoundException e) when (e.ErrorId == "FileNotFound")
        {
            foreach (var s in list) s.Dispose();
            throw new PbsNotFoundException("SnapshotNotFound", $"snapshot '{snapshot}' of {client.LocationOf(store)} has no manifest: {e.Message}", e);
        }
        catch
        {
            foreach (var s in list) s.Dispose();
            throw;
        }
    }

    private const long BackupManifestLimit = BackupManifest.MaxJsonSize + 1024;

    public SnapshotRef Snapshot { get; }
    public string Location => _sessions[0].Location;
    public IChunkSource Chunks => this;
    /// <summary>The sessions (diagnostics and tests).</summary>
    public IReadOnlyList<ReaderSession> Sessions => _sessions;

    /// <summary>
    /// The raw wire rate in bytes/s: /speedtest bodies (1 MiB each, no decoding) with <paramref name="inFlightPerSession"/>
    /// requests at a time on every session for about <paramref name="duration"/>: what the connections carry when
    /// nothing else limits them, to compare a restore's wire rate with.
    /// </summary>
    public async Task<double> SpeedtestAsync(int inFlightPerSession, TimeSpan duration, CancellationToken ct)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        long requests = 0;
        var workers = _sessions.SelectMany(session => Enumerable.Range(0, Math.Max(1, inFlightPerSession)).Select(async _ =>
        {
            while (clock.Elapsed < duration)
            {
                await session.SpeedtestAsync(1, ct).ConfigureAwait(false);
                Interlocked.Increment(ref requests);
            }
        }));
        await Task.WhenAll(workers).ConfigureAwait(false);
        return Interlocked.Read(ref requests) * (1 << 20) / Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
    }

    public async Task<byte[]> ReadFileAsync(string storedName, long maxSize, CancellationToken ct)
    {
        if (storedName != FileFormats.ManifestBlobName && !ArchiveNames.IsValidStoredName(storedName))
            throw new PbsFormatException($"refusing to open '{storedName}': not a plain archive file name", "ManifestBadFileName");
        if (storedName == FileFormats.ManifestBlobName)
        {
            // Downloaded when the snapshot was opened; a snapshot's files never change.
            if (_manifest.Length > maxSize)
                throw new PbsFormatException($"{Location}/{storedName}: {_manifest.Length} bytes exceeds the limit of {maxSize} for this file", "FileTooLarge");
            return (byte[])_manifest.Clone();
        }
        var data = await _sessions[0].DownloadAsync(storedName, maxSize, ct).ConfigureAwait(false);
        for (int i = 1; i < _sessions.Length; i++) _sessions[i].RequireIndex(storedName, maxSize);
        return data;
    }

    /// <summary>
    /// Reads a chunk on the least busy session, once (<see cref="ReaderSession.ReadChunkOnceAsync"/>): a transient
    /// failure or a refusal is thrown for the retry policy (<see cref="RetryPolicy"/>, applied by
    /// <see cref="ChunkAccess"/>), which then asks again on whichever session is least busy.
    /// </summary>
    public ValueTask<int> ReadRawChunkAsync(ChunkDigest digest, byte[] buffer, CancellationToken ct)
    {
        var best = _sessions[0];
        for (int i = 1; i < _sessions.Length; i++)
            if (_sessions[i].InFlight < best.InFlight) best = _sessions[i];
        return best.ReadChunkOnceAsync(digest, buffer, ct);
    }

    /// <summary>The sessions' policy: the client's stall deadline.</summary>
    public ChunkRetryPolicy RetryPolicy => _sessions[0].RetryPolicy;

    public override string ToString() => Location;

    public ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
            foreach (var s in _sessions) s.Dispose();
        return ValueTask.CompletedTask;
    }
}
