using PbsRestore.Formats;
using PbsRestore.Formats.Pxar;
using PbsRestore.Sources;

namespace PbsRestore.Access;

/// <summary>
/// A file archive of a snapshot opened for browsing and extraction: a pxar archive (<c>root.pxar.didx</c>) or a
/// split pair (<c>root.mpxar.didx</c> + <c>root.ppxar.didx</c>), each behind a <see cref="ChunkedArchiveReader"/>.
/// Users name it as the client does: <c>root.pxar</c> finds either form, <c>root.mpxar</c>/<c>root.ppxar</c> the pair.
/// </summary>
public sealed class FileArchive : IDisposable
{
    private readonly ChunkedArchiveReader _metadata;
    private readonly ChunkedArchiveReader? _payload;

    private FileArchive(string name, PxarArchive archive, ChunkedArchiveReader metadata, ChunkedArchiveReader? payload)
    {
        Name = name;
        Archive = archive;
        _metadata = metadata;
        _payload = payload;
    }

    /// <summary>The archive's name as users see it (<c>root.pxar</c>, or <c>root.mpxar</c> for a split pair).</summary>
    public string Name { get; }
    public PxarArchive Archive { get; }

    /// <summary>Chunks fetched so far from both archives (a measure of how little a lookup reads).</summary>
    public long ChunksFetched => _metadata.ChunksFetched + (_payload?.ChunksFetched ?? 0);
    /// <summary>Chunks the indexes list, both archives.</summary>
    public long ChunkCount => _metadata.Index.Count + (_payload?.Index.Count ?? 0);
    /// <summary>Encoded bytes fetched so far.</summary>
    public long BytesFetched => _metadata.BytesFetched + (_payload?.BytesFetched ?? 0);

    /// <summary>True for the names of file archives: *.pxar, *.mpxar, *.ppxar (with or without .didx).</summary>
    public static bool IsFileArchive(string storedName)
    {
        string n = ArchiveNames.DisplayName(storedName);
        return n.EndsWith(".pxar", StringComparison.Ordinal) || n.EndsWith(".mpxar", StringComparison.Ordinal) || n.EndsWith(".ppxar", StringComparison.Ordinal);
    }

    /// <summary>The file archives a manifest lists, one per pair (the .mpxar names a split pair).</summary>
    public static IEnumerable<string> ListNames(BackupManifest manifest) =>
        manifest.Files.Select(f => ArchiveNames.DisplayName(f.FileName))
            .Where(n => n.EndsWith(".pxar", StringComparison.Ordinal) || n.EndsWith(".mpxar", StringComparison.Ordinal));

    public static async Task<FileArchive> OpenAsync(ISnapshotReader snapshot, CryptConfig? crypt, string archive, ChunkedReaderOptions? options, CancellationToken ct) =>
        await OpenAsync(await OpenedSnapshot.OpenAsync(snapshot, crypt, ct).ConfigureAwait(false), archive, options, ct).ConfigureAwait(false);

    /// <summary>Opens a file archive of a snapshot already opened (its manifest is not read again).</summary>
    public static async Task<FileArchive> OpenAsync(OpenedSnapshot snapshot, string archive, ChunkedReaderOptions? options, CancellationToken ct)
    {
        var manifest = snapshot.Manifest;
        string name = ArchiveNames.DisplayName(archive);
        string stem = name.EndsWith(".pxar", StringComparison.Ordinal) ? name[..^5]
            : name.EndsWith(".mpxar", StringComparison.Ordinal) || name.EndsWith(".ppxar", StringComparison.Ordinal) ? name[..^6]
            : name;
        var single = manifest.FindFile(stem + ".pxar.didx");
        var meta = manifest.FindFile(stem + ".mpxar.didx");
        var payload = manifest.FindFile(stem + ".ppxar.didx");
        bool wantSplit = name.EndsWith(".mpxar", StringComparison.Ordinal) || name.EndsWith(".ppxar", StringComparison.Ordinal);
        if (single is not null && !wantSplit)
        {
            var data = await ArchiveAccess.OpenAsync(snapshot.Open(single), options, ct).ConfigureAwait(false);
            try
            {
                return new FileArchive(stem + ".pxar", await PxarArchive.OpenAsync(data, null, ct).ConfigureAwait(false), data, null);
            }
            catch
            {
                data.Dispose();
                throw;
            }
        }
        if (meta is not null && payload is not null)
        {
            var m = await ArchiveAccess.OpenAsync(snapshot.Open(meta), options, ct).ConfigureAwait(false);
            ChunkedArchiveReader? p = null;
            try
            {
                p = await ArchiveAccess.OpenAsync(snapshot.Open(payload), options, ct).ConfigureAwait(false);
                return new FileArchive(stem + ".mpxar", await PxarArchive.OpenAsync(m, p, ct).ConfigureAwait(false), m, p);
            }
            catch
            {
                m.Dispose();
                p?.Dispose();
                throw;
            }
        }
        if (meta is not null || payload is not null)
            throw new PbsNotFoundException("ArchiveIncomplete",
                $"snapshot '{snapshot.Snapshot}' has only half of the split archive '{stem}' ({(meta ?? payload)!.FileName}); both .mpxar and .ppxar are needed");
        var names = ListNames(manifest).ToList();
        throw new PbsNotFoundException("ArchiveNotFound",
            $"snapshot '{snapshot.Snapshot}' has no file archive '{archive}'" +
            (names.Count == 0 ? "; it has no file archives (pxar) at all" : $"; it has: {string.Join(", ", names)}"));
    }

    public void Dispose()
    {
        _metadata.Dispose();
        _payload?.Dispose();
    }
}
