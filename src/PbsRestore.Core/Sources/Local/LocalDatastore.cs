using PbsRestore.Formats;

namespace PbsRestore.Sources.Local;

/// <summary>
/// A PBS datastore folder: a removable datastore, a synced copy, the disks of a dead server. Layout
/// (upstream pbs-datastore/src/datastore.rs): <c>.chunks/&lt;4 hex&gt;/&lt;digest&gt;</c>, snapshots at
/// <c>[ns/a/ns/b/]&lt;type&gt;/&lt;id&gt;/&lt;time&gt;/</c>. Snapshot folder names copied to Windows may have their
/// colons mapped (U+F03A or '_'); both are found. Read-only: nothing here ever writes to the datastore.
/// </summary>
public sealed class LocalDatastore : ISnapshotSource
{
    private readonly string _root;
    private readonly string _chunkDir;

    public LocalDatastore(string path)
    {
        _root = System.IO.Path.GetFullPath(path);
        if (!Directory.Exists(_root))
            throw new PbsNotFoundException("DatastoreNotFound", $"datastore folder '{_root}' does not exist");
        _chunkDir = System.IO.Path.Combine(_root, ".chunks");
        if (!Directory.Exists(_chunkDir))
            throw new PbsNotFoundException("DatastoreNotFound", $"'{_root}' is not a PBS datastore: it has no .chunks folder");
        Chunks = new LocalChunkStore(_chunkDir);
    }

    public string Location => _root;

    internal LocalChunkStore Chunks { get; }

    private string NamespaceDir(BackupNamespace ns)
    {
        string dir = _root;
        foreach (var c in ns.Components) dir = System.IO.Path.Combine(dir, "ns", c);
        return dir;
    }

    /// <summary>The folder of a namespace (ns/a/ns/b under the datastore), or null when it does not exist.</summary>
    public string? GetNamespaceDirectory(BackupNamespace ns) => NamespaceDir(ns) is var dir && Directory.Exists(dir) ? dir : null;

    public Task<IReadOnlyList<BackupNamespace>> ListNamespacesAsync(BackupNamespace parent, int maxDepth, CancellationToken ct)
    {
        var result = new List<BackupNamespace>();
        if (!Directory.Exists(NamespaceDir(parent)))
            throw new PbsNotFoundException("NamespaceNotFound", $"namespace '{parent}' does not exist in datastore '{_root}'");
        void Walk(BackupNamespace ns, int depth)
        {
            ct.ThrowIfCancellationRequested();
            result.Add(ns);
            if (depth >= maxDepth || ns.Depth >= BackupNamespace.MaxDepth) return;
            string nsDir = System.IO.Path.Combine(NamespaceDir(ns), "ns");
            if (!Directory.Exists(nsDir)) return;
            foreach (var child in Directory.EnumerateDirectories(nsDir).Select(System.IO.Path.GetFileName).OrderBy(n => n, StringComparer.Ordinal))
                if (child is not null && BackupNamespace.IsValidComponent(child))
                    Walk(ns.Child(child), depth + 1);
        }
        Walk(parent, 0);
        return Task.FromResult<IReadOnlyList<BackupNamespace>>(result);
    }

    public async Task<IReadOnlyList<SnapshotInfo>> ListSnapshotsAsync(BackupNamespace ns, string? backupType, string? backupId, CancellationToken ct)
    {
        string nsDir = NamespaceDir(ns);
        if (!Directory.Exists(nsDir))
            throw new PbsNotFoundException("NamespaceNotFound", $"namespace '{ns}' does not exist in datastore '{_root}'");
        var result = new List<SnapshotInfo>();
        foreach (var type in SnapshotRef.BackupTypes)
        {
            if (backupType is not null && backupType != type) continue;
            string typeDir = System.IO.Path.Combine(nsDir, type);
            if (!Directory.Exists(typeDir)) continue;
            foreach (var idDir in Directory.EnumerateDirectories(typeDir))
            {
                string id = System.IO.Path.GetFileName(idDir);
                if (!SnapshotRef.IsValidId(id) || (backupId is not null && backupId != id)) continue;
                string? owner = ReadOwner(idDir);
                foreach (var (time, dir) in SnapshotDirs(idDir))
                {
                    ct.ThrowIfCancellationRequested();
                    var reference = new SnapshotRef(ns, type, id, time);
                    var manifestPath = System.IO.Path.Combine(dir, FileFormats.ManifestBlobName);
                    if (!File.Exists(manifestPath)) continue; // a backup still running or aborted: not a snapshot yet
                    byte[] rawManifest = await ReadLimitedAsync(manifestPath, BackupManifest.MaxJsonSize + 1024, ct);
                    var manifest = BackupManifest.FromBlob(rawManifest, manifestPath);
                    var files = manifest.Files.Select(f => new SnapshotFile(f.FileName, f.Size, f.CryptMode)).ToList();
                    // Size as the server lists it: the manifest's files plus index.json.blob itself.
                    result.Add(new SnapshotInfo(reference, _root, files, manifest.KeyFingerprint, owner, manifest.Comment,
                        size: files.Sum(f => f.Size) + rawManifest.Length));
                }
            }
        }
        return result.OrderBy(s => s.BackupType, StringComparer.Ordinal).ThenBy(s => s.BackupId, StringComparer.Ordinal)
            .ThenBy(s => s.Ref.BackupTime).ToList();
    }

    private static string? ReadOwner(string groupDir)
    {
        try
        {
            var path = System.IO.Path.Combine(groupDir, "owner");
            return File.Exists(path) ? File.ReadAllText(path).Trim() : null;
        }
        catch (IOException) { return null; }
    }

    private static IEnumerable<(DateTimeOffset Time, string Dir)> SnapshotDirs(string groupDir)
    {
        foreach (var dir in Directory.EnumerateDirectories(groupDir))
            if (SnapshotTime.TryParse(System.IO.Path.GetFileName(dir), out var time) && !System.IO.Path.GetFileName(dir).All(char.IsAsciiDigit))
                yield return (time, dir);
    }

    /// <summary>Finds the snapshot folder whatever mapping its name has.</summary>
    internal string? FindSnapshotDir(SnapshotRef snapshot)
    {
        string groupDir = System.IO.Path.Combine(NamespaceDir(snapshot.Namespace), snapshot.BackupType, snapshot.BackupId);
        if (!Directory.Exists(groupDir)) return null;
        string exact = System.IO.Path.Combine(groupDir, SnapshotTime.Format(snapshot.BackupTime));
        if (Directory.Exists(exact)) return exact;
        return SnapshotDirs(groupDir).Where(s => s.Time == snapshot.BackupTime).Select(s => s.Dir).FirstOrDefault();
    }

    /// <summary>The folder of a snapshot (whatever mapping its name has), or null when it does not exist.</summary>
    public string? GetSnapshotDirectory(SnapshotRef snapshot) => FindSnapshotDir(snapshot);

    public Task<ISnapshotReader> OpenSnapshotAsync(SnapshotRef snapshot, CancellationToken ct)
    {
        var dir = FindSnapshotDir(snapshot)
                  ?? throw new PbsNotFoundException("SnapshotNotFound", $"snapshot '{snapshot}' not found in datastore '{_root}'");
        return Task.FromResult<ISnapshotReader>(new LocalSnapshotReader(snapshot, dir, Chunks));
    }

    internal static async Task<byte[]> ReadLimitedAsync(string path, long maxSize, CancellationToken ct)
    {
        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        long length = RandomAccess.GetLength(handle);
        if (length > maxSize)
            throw new PbsFormatException($"{path}: {length} bytes exceeds the limit of {maxSize} for this file", "FileTooLarge");
        var data = new byte[length];
        int read = 0;
        while (read < length)
        {
            int n = await RandomAccess.ReadAsync(handle, data.AsMemory(read), read, ct);
            if (n == 0) throw new PbsFormatException($"{path}: file shrank while being read (truncated at offset {read})", "FileTruncated");
            read += n;
        }
        return data;
    }
}

/// <summary>One snapshot folder of a <see cref="LocalDatastore"/>.</summary>
internal sealed class LocalSnapshotReader(SnapshotRef snapshot, string dir, LocalChunkStore chunks) : ISnapshotReader
{
    public SnapshotRef Snapshot => snapshot;
    public string Location => dir;
    public IChunkSource Chunks => chunks;

    public Task<byte[]> ReadFileAsync(string storedName, long maxSize, CancellationToken ct)
    {
        if (storedName != FileFormats.ManifestBlobName && !ArchiveNames.IsValidStoredName(storedName))
            throw new PbsFormatException($"refusing to open '{storedName}': not a plain archive file name", "ManifestBadFileName");
        string path = Path.Combine(dir, storedName);
        if (!File.Exists(path))
            throw new PbsNotFoundException("FileNotFound", $"snapshot '{snapshot}' has no file '{storedName}' ({path})");
        return LocalDatastore.ReadLimitedAsync(path, maxSize, ct);
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

/// <summary>The <c>.chunks</c> folder: one file per chunk, named by digest under its first 4 hex digits.</summary>
internal sealed class LocalChunkStore(string chunkDir) : IChunkSource
{
    public string PathOf(ChunkDigest digest)
    {
        string hex = digest.ToString();
        return Path.Combine(chunkDir, hex[..4], hex);
    }

    public ValueTask<int> ReadRawChunkAsync(ChunkDigest digest, byte[] buffer, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        string path = PathOf(digest);
        Microsoft.Win32.SafeHandles.SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new PbsNotFoundException("ChunkMissing", $"chunk {digest} is missing from the datastore ({path})", e);
        }
        using (handle)
        {
            long length = RandomAccess.GetLength(handle);
            if (length > buffer.Length)
                throw new PbsFormatException($"chunk file {path} has {length} bytes, more than any chunk of this index can have ({buffer.Length})", "ChunkTooLarge");
            int read = 0;
            while (read < length)
            {
                int n = RandomAccess.Read(handle, buffer.AsSpan(read, (int)length - read), read);
                if (n == 0) break;
                read += n;
            }
            return ValueTask.FromResult(read);
        }
    }
}
