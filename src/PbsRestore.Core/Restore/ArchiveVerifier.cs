using System.Collections.Concurrent;
using System.Diagnostics;
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
public static class ArchiveVerifier
{
    /// <summary>True for a failure that is the chunk's (missing, corrupt, wrong digest), not the source's or the user's.</summary>
    public static bool IsChunkFault(PbsException e) => e.Kind is PbsErrorKind.Integrity or PbsErrorKind.NotFound or PbsErrorKind.InvalidData;

    /// <summary>Verifies one opened archive (its key was checked when it was opened).</summary>
    public static async Task<VerifyResult> VerifyAsync(OpenedArchive archive, RestoreOptions options, RestoreCounters counters, CancellationToken ct,
        RestoreMetrics? metrics = null)
    {
        var clock = Stopwatch.StartNew();
        if (archive.Kind == ArchiveKind.Blob)
            return await VerifyBlobAsync(archive, counters, clock, ct).ConfigureAwait(false);

        var index = await archive.ReadIndexAsync(ct).ConfigureAwait(false);
        // No zero-chunk shortcut: the zero chunks are in the chunk store too, and a restore of a used device needs them checked.
        var plan = RestorePlan.Plan(archive.FileName, index, zeroDigestFor: null);
        var bad = new ConcurrentBag<BadChunk>();
        await RestorePipeline.RunAsync(plan, archive.Chunks, archive.Snapshot.Crypt, archive.Encrypted, new NullImageSink(), options, counters, ct, metrics,
            onChunkError: e =>
            {
                if (!IsChunkFault(e)) return false;
                bad.Add(new BadChunk(e.ChunkIndex, e.Offset, e.Digest, e.ErrorId, e.Message));
                return true;
            }).ConfigureAwait(false);
        return Result(archive, plan.Jobs.Count, new DisplayList<BadChunk>(bad.OrderBy(b => b.Index).ToList()), plan.Size, counters.WireBytes, clock);
    }

    private static async Task<VerifyResult> VerifyBlobAsync(OpenedArchive archive, RestoreCounters counters, Stopwatch clock, CancellationToken ct)
    {
        var entry = archive.Entry;
        string where = archive.Location;
        counters.SetTotals(Math.Max(entry.Size, 0), 1);
        long plainLength = 0, read = 0;
        var bad = new List<BadChunk>();
        try
        {
            var raw = await archive.ReadBlobAsync(ct).ConfigureAwait(false);
            read = raw.LongLength;
            counters.AddWire(raw.Length);
            plainLength = archive.DecodeBlob(raw).LongLength;
        }
        catch (PbsException e) when (IsChunkFault(e))
        {
            bad.Add(new BadChunk(0, 0, null, e.ErrorId, e.Message.StartsWith(where, StringComparison.Ordinal) ? e.Message : $"{where}: {e.Message}"));
        }
        counters.AddDone(Math.Max(entry.Size, 0), 1);
        return Result(archive, 1, new DisplayList<BadChunk>(bad), plainLength, read, clock);
    }

    private static VerifyResult Result(OpenedArchive archive, long chunks, DisplayList<BadChunk> bad, long bytes, long read, Stopwatch clock) => new()
    {
        Snapshot = archive.Snapshot.Snapshot.Path,
        Namespace = archive.Snapshot.Snapshot.Namespace.ToString(),
        Archive = archive.DisplayName,
        Chunks = chunks,
        BadChunks = bad,
        Bytes = bytes,
        BytesRead = read,
        Duration = clock.Elapsed,
    };
}
