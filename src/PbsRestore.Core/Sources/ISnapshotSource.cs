using PbsRestore.Formats;

namespace PbsRestore.Sources;

/// <summary>
/// A place snapshots live: a datastore folder (<c>Local.LocalDatastore</c>) or a PBS server (<c>Remote.RemoteDatastore</c>).
/// Restore code depends on this and <see cref="ISnapshotReader"/> only.
/// </summary>
public interface ISnapshotSource
{
    /// <summary>Where this is, for messages and listings: a folder path or a repository string.</summary>
    string Location { get; }

    /// <summary>The namespace and those below it, to <paramref name="maxDepth"/> levels down.</summary>
    Task<IReadOnlyList<BackupNamespace>> ListNamespacesAsync(BackupNamespace parent, int maxDepth, CancellationToken ct);

    /// <summary>Snapshots of one namespace (not below it), filtered by type and id when given.</summary>
    Task<IReadOnlyList<SnapshotInfo>> ListSnapshotsAsync(BackupNamespace ns, string? backupType, string? backupId, CancellationToken ct);

    /// <summary>The backup groups of one namespace; by default derived from the snapshot listing.</summary>
    async Task<IReadOnlyList<BackupGroupInfo>> ListGroupsAsync(BackupNamespace ns, CancellationToken ct) =>
        BackupGroupInfo.FromSnapshots(await ListSnapshotsAsync(ns, null, null, ct).ConfigureAwait(false));

    /// <summary>Opens a snapshot for reading. Throws <see cref="PbsNotFoundException"/> when it does not exist.</summary>
    Task<ISnapshotReader> OpenSnapshotAsync(SnapshotRef snapshot, CancellationToken ct);
}

/// <summary>Reads one snapshot's files and chunks.</summary>
public interface ISnapshotReader : IAsyncDisposable
{
    SnapshotRef Snapshot { get; }

    /// <summary>Where the snapshot is, for messages.</summary>
    string Location { get; }

    /// <summary>
    /// The raw bytes of a file of the snapshot (the manifest, an index, a blob), at most <paramref name="maxSize"/>.
    /// <paramref name="storedName"/> must be a plain file name (checked); it is never a path.
    /// </summary>
    Task<byte[]> ReadFileAsync(string storedName, long maxSize, CancellationToken ct);

    /// <summary>The chunks this snapshot's indexes refer to.</summary>
    IChunkSource Chunks { get; }
}

/// <summary>
/// Reads raw chunk blobs by digest, one attempt per call: a transient failure is a <see cref="PbsException"/> of kind
/// <see cref="PbsErrorKind.Connection"/>, a chunk to ask for again after re-registering its index a
/// <see cref="ChunkRefusedException"/>; retrying is the <see cref="RetryPolicy"/>'s. What comes back has passed no
/// check at all, not even the CRC: decoding and verification are the decoder's job. Implementations must be safe to
/// call concurrently.
/// </summary>
public interface IChunkSource
{
    /// <summary>
    /// Reads the raw DataBlob of a chunk into <paramref name="buffer"/> (owned by the caller, who may reuse it as
    /// soon as the call completes) and returns its length. Throws <see cref="PbsNotFoundException"/> (ChunkMissing)
    /// for an absent chunk, <see cref="PbsFormatException"/> (ChunkTooLarge) when it does not fit the buffer.
    /// </summary>
    ValueTask<int> ReadRawChunkAsync(ChunkDigest digest, byte[] buffer, CancellationToken ct);

    /// <summary>
    /// How reads of this source are retried (<see cref="ChunkAccess"/> applies it: one attempt per call here); a
    /// server gives one with its client's stall deadline.
    /// </summary>
    ChunkRetryPolicy RetryPolicy => ChunkRetryPolicy.Default;
}
