using System.Collections.Concurrent;
using System.Diagnostics;
using System.Security.Cryptography;
using PbsRestore.Formats;
using PbsRestore.Sources;
using PbsRestore.Destinations;

namespace PbsRestore.Restore;

/// <summary>
/// One chunk (or blob) that failed verification: the first index entry that needs it, that entry's offset, its
/// digest (null for a blob archive), the stable error id (ChunkMissing, BlobCrcMismatch, ChunkDigestMismatch, ...)
/// and the full message.
/// </summary>
public sealed record BadChunk(int Index, long Offset, string? Digest, string ErrorId, string Message)
{
    public override string ToString() => Digest is null ? $"{ErrorId}: {Message}" : $"#{Index} @{Offset} {Digest}: {ErrorId}";
}

/// <summary>What verifying one archive found (Test-PbsSnapshot's output object).</summary>
public sealed record VerifyResult
{
    /// <summary>type/id/time, as Get-PbsSnapshot's Snapshot (the namespace is separate).</summary>
    public required string Snapshot { get; init; }
    /// <summary>Namespace of the snapshot, '' for the root.</summary>
    public string Namespace { get; init; } = "";
    public required string Archive { get; init; }
    /// <summary>Distinct chunks checked (a chunk used at several offsets counts once; zero chunks included); 1 for a blob.</summary>
    public required long Chunks { get; init; }
    /// <summary>Every chunk that could not be read or failed a check, in index order.</summary>
    public required DisplayList<BadChunk> BadChunks { get; init; }
    public bool Ok => BadChunks.Count == 0;
    /// <summary>Logical size of the archive (the image, the dynamic archive, the blob's plaintext).</summary>
    public required long Bytes { get; init; }
    /// <summary>Encoded bytes read from the source.</summary>
    public required long BytesRead { get; init; }
    public required TimeSpan Duration { get; init; }
}

/// <summary>
/// Verifies archives of a snapshot without writing anything: every chunk an index names (duplicates once, zero
/// chunks too) is fetched and decoded through <see cref="RestorePipeline"/> into a <see cref="NullImageSink"/>
/// with an error policy that records each bad chunk and goes on, so one run reports all of them. Blobs are checked
/// against the manifest's size and checksum and decoded (CRC, tag). Failures that are not about one chunk
/// (connection, authentication, a bad manifest or index, cancellation) still abort and are thrown.
/// </summary>
public sealed class ArchiveVerifier(ISnapshotReader reader, CryptConfig? crypt)
{
    /// <summary>True for a failure that is the chunk's (missing, corrupt, wrong digest), not the source's or the user's.</summary>
    public static bool IsChunkFault(PbsException e) => e.Kind is PbsErrorKind.Integrity or PbsErrorKind.NotFound or PbsErrorKind.InvalidData;

    /// <summary>Verifies one archive of the snapshot; its key must have been checked (<see cref="ArchiveRestorer.CheckKey"/>).</summary>
    public async Task<VerifyResult> VerifyAsync(ManifestFile entry, RestoreOptions options, RestoreCounters counters, CancellationToken ct,
        RestoreMetrics? metrics = null)
    {
        var clock = Stopwatch.StartNew();
        bool encrypted = entry.CryptMode == CryptMode.Encrypt;
        if (entry.Kind == ArchiveKind.Blob)
            return await VerifyBlobAsync(entry, encrypted, counters, clock, ct).ConfigureAwait(false);

        var index = await new ArchiveRestorer(reader, crypt).ReadIndexAsync(entry, ct).ConfigureAwait(false);
        // No zero-chunk shortcut: the zero chunks are in the chunk store too, and a restore of a used device needs them checked.
        var plan = RestorePlan.Plan(entry.FileName, index, zeroDigestFor: null);
        var bad = new ConcurrentBag<BadChunk>();
        await RestorePipeline.RunAsync(plan, reader.Chunks, crypt, encrypted, new NullImageSink(), options, counters, ct, metrics,
            onChunkError: e =>
            {
                if (!IsChunkFault(e)) return false;
                bad.Add(new BadChunk(e.ChunkIndex, e.Offset, e.Digest, e.ErrorId, e.Message));
                return true;
            }).ConfigureAwait(false);
        return Result(entry, plan.Jobs.Count, new DisplayList<BadChunk>(bad.OrderBy(b => b.Index).ToList()), plan.Size, counters.WireBytes, clock);
    }

    private async Task<VerifyResult> VerifyBlobAsync(ManifestFile entry, bool encrypted, RestoreCounters counters, Stopwatch clock, CancellationToken ct)
    {
        string where = $"{reader.Location}/{entry.FileName}";
        counters.SetTotals(Math.Max(entry.Size, 0), 1);
        long plainLength = 0, read = 0;
        var bad = new List<BadChunk>();
        try
        {
            var raw = await reader.ReadFileAsync(entry.FileName, ArchiveRestorer.MaxBlobFileSize, ct).ConfigureAwait(false);
            read = raw.LongLength;
            counters.AddWire(raw.Length);
            BackupManifest.VerifyFile(entry, raw.LongLength, SHA256.HashData(raw), where);
            if (encrypted && crypt is null)
                throw new PbsKeyException("KeyRequired", $"{where} is encrypted; give its key file with -Keyfile");
            var kind = DataBlob.GetKind(raw);
            if (DataBlob.IsEncrypted(kind) != encrypted)
                throw new PbsIntegrityException("BlobCryptModeMismatch", $"{where}: the blob's encryption does not match the manifest's crypt-mode");
            using var decoder = new BlobDecoder(encrypted ? crypt : null, FileFormats.MaxBlobSize);
            plainLength = decoder.DecodeToArray(raw).LongLength;
        }
        catch (PbsException e) when (IsChunkFault(e))
        {
            bad.Add(new BadChunk(0, 0, null, e.ErrorId, e.Message.StartsWith(where, StringComparison.Ordinal) ? e.Message : $"{where}: {e.Message}"));
        }
        counters.AddDone(Math.Max(entry.Size, 0), 1);
        return Result(entry, 1, new DisplayList<BadChunk>(bad), plainLength, read, clock);
    }

    private VerifyResult Result(ManifestFile entry, long chunks, DisplayList<BadChunk> bad, long bytes, long read, Stopwatch clock) => new()
    {
        Snapshot = reader.Snapshot.Path,
        Namespace = reader.Snapshot.Namespace.ToString(),
        Archive = ArchiveNames.DisplayName(entry.FileName),
        Chunks = chunks,
        BadChunks = bad,
        Bytes = bytes,
        BytesRead = read,
        Duration = clock.Elapsed,
    };
}
