using PbsRestore.Formats;
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
        var opened = await OpenedSnapshot.OpenAsync(snapshot, crypt, ct).ConfigureAwait(false);
        var entry = opened.Resolve(archive);
        if (entry.Kind == ArchiveKind.Blob) throw NotAnIndex(entry);
        return await OpenAsync(opened.Open(entry), options, ct).ConfigureAwait(false);
    }

    /// <summary>Opens an archive already opened (resolved, key checked): reads and checks its index.</summary>
    public static async Task<ChunkedArchiveReader> OpenAsync(OpenedArchive archive, ChunkedReaderOptions? options, CancellationToken ct)
    {
        if (archive.Kind == ArchiveKind.Blob) throw NotAnIndex(archive.Entry);
        var index = await archive.ReadIndexAsync(ct).ConfigureAwait(false);
        return new ChunkedArchiveReader(archive.DisplayName, index, archive.Chunks, archive.Snapshot.Crypt, archive.Encrypted, options);
    }

    private static PbsException NotAnIndex(ManifestFile entry) =>
        new("ArchiveNotAnIndex", PbsErrorKind.InvalidArgument, $"'{entry.FileName}' is a blob, not an index archive");
}
