using PbsRestore.Formats;
using PbsRestore.Restore;
using PbsRestore.Sources;

namespace PbsRestore.Access;

/// <summary>
/// Opens an index archive of a snapshot for random access, with the same checks as a restore, in the same order:
/// manifest, key against the manifest, index against the manifest's checksum and size. Nothing is fetched but the
/// manifest and the index.
/// </summary>
public static class ArchiveAccess
{
    public static async Task<ChunkedArchiveReader> OpenAsync(ISnapshotReader snapshot, CryptConfig? crypt, string archive,
        ChunkedReaderOptions? options, CancellationToken ct)
    {
        var restorer = new ArchiveRestorer(snapshot, crypt);
        var manifest = await restorer.ReadManifestAsync(ct).ConfigureAwait(false);
        var entry = restorer.ResolveArchive(manifest, archive);
        return await OpenAsync(restorer, manifest, entry, crypt, options, ct).ConfigureAwait(false);
    }

    /// <summary>Opens a manifest entry already resolved (e.g. the second archive of a split pair).</summary>
    public static async Task<ChunkedArchiveReader> OpenAsync(ArchiveRestorer restorer, BackupManifest manifest, ManifestFile entry,
        CryptConfig? crypt, ChunkedReaderOptions? options, CancellationToken ct)
    {
        if (entry.Kind == ArchiveKind.Blob)
            throw new PbsException("ArchiveNotAnIndex", PbsErrorKind.InvalidArgument, $"'{entry.FileName}' is a blob, not an index archive");
        restorer.CheckKey(manifest, entry);
        var index = await restorer.ReadIndexAsync(entry, ct).ConfigureAwait(false);
        return new ChunkedArchiveReader(ArchiveNames.DisplayName(entry.FileName), index, restorer.Chunks, crypt,
            entry.CryptMode == CryptMode.Encrypt, options);
    }
}
