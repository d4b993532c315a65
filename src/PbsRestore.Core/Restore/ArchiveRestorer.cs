using System.Diagnostics;
using System.Security.Cryptography;
using PbsRestore.Formats;
using PbsRestore.Sources;
using PbsRestore.Destinations;
using PbsRestore.Sources.Local;

namespace PbsRestore.Restore;

/// <summary>
/// Restores one archive of a snapshot to a file, in the order that keeps bad input away from the disk:
/// manifest → key check → index (checked against the manifest) → plan → pipeline → rename into place.
/// Wrong, missing or mismatched keys and bad manifests or indexes fail before the destination is created.
/// </summary>
public sealed class ArchiveRestorer
{
    /// <summary>Indexes larger than this are refused (see <see cref="OpenedSnapshot.MaxIndexSize"/>).</summary>
    public const long MaxIndexSize = OpenedSnapshot.MaxIndexSize;
    /// <summary>A blob archive (config, log) is small; upstream caps blobs at 128 MiB.</summary>
    public const long MaxBlobFileSize = OpenedSnapshot.MaxBlobFileSize;
    /// <summary>The client log, which no manifest lists (<see cref="OpenedSnapshot.ClientLogBlobName"/>).</summary>
    public const string ClientLogBlobName = OpenedSnapshot.ClientLogBlobName;

    private readonly ISnapshotReader _reader;
    private readonly CryptConfig? _crypt;

    /// <summary>A restorer that opens the snapshot itself (<see cref="RestoreAsync(string, string, DestinationOptions, RestoreOptions, RestoreCounters, CancellationToken, RestoreMetrics?)"/>).</summary>
    public ArchiveRestorer(ISnapshotReader reader, CryptConfig? crypt)
    {
        _reader = reader;
        _crypt = crypt;
    }

    /// <summary>Opens the snapshot and <paramref name="archive"/> (manifest, resolve, key) and restores it: for callers that have no opened archive yet.</summary>
    public async Task<RestoreResult> RestoreAsync(string archive, string destination, DestinationOptions destinationOptions, RestoreOptions options,
        RestoreCounters counters, CancellationToken ct, RestoreMetrics? metrics = null)
    {
        destination = Path.GetFullPath(destination);
        ImageDestinations.CheckWritable(destination, destinationOptions.Force, destinationOptions.Resume);
        var opened = await OpenedSnapshot.OpenArchiveAsync(_reader, _crypt, archive, ct).ConfigureAwait(false);
        return await RestoreAsync(opened, destination, destinationOptions, options, counters, ct, metrics).ConfigureAwait(false);
    }

    /// <summary>Opens the snapshot and <paramref name="archive"/> and restores it into <paramref name="sink"/> (see the overload).</summary>
    public async Task<RestoreResult> RestoreToSinkAsync(string archive, IImageSink sink, RestoreOptions options, RestoreCounters counters,
        RestoreMetrics? metrics, CancellationToken ct) =>
        await RestoreToSinkAsync(await OpenedSnapshot.OpenArchiveAsync(_reader, _crypt, archive, ct).ConfigureAwait(false), sink, options, counters, metrics, ct)
            .ConfigureAwait(false);

    /// <summary>
    /// Restores one archive to <paramref name="destination"/>. Images are journaled: a restore stopped by
    /// cancellation or a lost connection keeps its partial file and journal, and <see cref="DestinationOptions.Resume"/>
    /// continues it; other failures leave nothing behind.
    /// </summary>
    public static async Task<RestoreResult> RestoreAsync(OpenedArchive archive, string destination, DestinationOptions destinationOptions, RestoreOptions options,
        RestoreCounters counters, CancellationToken ct, RestoreMetrics? metrics = null)
    {
        var clock = Stopwatch.StartNew();
        destination = Path.GetFullPath(destination);
        ImageDestinations.CheckWritable(destination, destinationOptions.Force, destinationOptions.Resume);
        var entry = archive.Entry;
        var snapshot = archive.Snapshot.Snapshot;

        string shown = ArchiveNames.DisplayName(entry.FileName);
        if (entry.Kind != ArchiveKind.FixedIndex && ImageDestinations.IsDevice(destination))
            throw new PbsException("DestinationNotSupported", PbsErrorKind.InvalidArgument,
                $"'{shown}' is not a disk image: restore it to a file, not onto device '{destination}'");
        // Only disk images (fixed indexes) become VHDX or VHD; a config blob or a container's file archive would be
        // meaningless inside one.
        var format = ImageDestinations.FormatFor(destination, destinationOptions.Format);
        if (entry.Kind != ArchiveKind.FixedIndex && format != ImageFormat.Raw)
            throw new PbsException("FormatNotSupported", PbsErrorKind.InvalidArgument,
                $"'{shown}' is not a disk image, so it cannot be written as {format}" +
                (destinationOptions.Format is null ? $" (the name '{Path.GetFileName(destination)}' asks for it): give the file another extension" : ": leave out -Format"));
        if (entry.Kind == ArchiveKind.Blob)
        {
            // A journal there belongs to an interrupted image restore: never replace that partial with a blob. (An
            // image of another archive is refused by OpenTarget, which compares the whole journal identity.)
            if (destinationOptions.Resume && ImageDestinations.CanResume(destination))
                throw ResumeMismatch(destination, WithStartOverHint(() => RestoreJournal.Load(ImageDestinations.JournalPathFor(destination))).Identity,
                    $"{entry.FileName} of snapshot {snapshot}");
            return await RestoreBlobAsync(archive, destination, destinationOptions, counters, clock, ct).ConfigureAwait(false);
        }

        ImageDestinations.CheckResumeSupported(destination, format, destinationOptions.Resume);
        var plan = await PlanAsync(archive, ct).ConfigureAwait(false);
        var identity = new JournalIdentity(snapshot.ToString(), entry.FileName, entry.CsumHex, plan.Size, ImageDestinations.FormatName(destination, format));
        var (target, journal, finished) = OpenTarget(destination, plan, identity, format, archive.ChunkKey, destinationOptions);
        var bad = options.SkipBadChunks ? new System.Collections.Concurrent.ConcurrentBag<BadRange>() : null;
        await using (target)
        using (journal)
        {
            try
            {
                await RestorePipeline.RunAsync(plan.Without(finished), archive.Chunks, archive.Snapshot.Crypt, archive.Encrypted, target, options, counters, ct, metrics,
                    onChunkError: bad is null ? null : e => RecordBadRange(bad, e), journal: journal).ConfigureAwait(false);
                if (bad is { IsEmpty: false } && !target.ZerosAreHoles)
                {
                    // A device keeps its old bytes where nothing is written: the ranges given up on become zeros.
                    var zero = new byte[bad.Max(b => b.Length)];
                    foreach (var b in bad) target.Write(b.Offset, zero.AsSpan(0, b.Length));
                }
                target.Commit(destinationOptions.Force);
                journal.Delete();
            }
            catch (Exception e) when (IsResumable(e) && ImageDestinations.IsResumable(format))
            {
                // Keep what is done; the journal already names it. (No flush here: Ctrl+C must stop at once, and
                // the kernel has every write; a resume checks the records the last checkpoint did not cover.)
                target.KeepPartial = true;
                // A destination that finds its blocks through metadata written at checkpoints (a VHDX's BAT, a VHD's
                // footer) says so: write one now, or a resume would fetch again everything since the last one.
                if (target.CheckpointOnStop)
                {
                    try { journal.Checkpoint(target); }
                    catch (Exception) when (e is not null) { } // the original failure is what matters
                }
                e.Data[ResumableKey] = target.PartialPath;
                throw;
            }
            catch
            {
                journal.Delete();
                throw;
            }
        }
        return Result(archive, destination, counters, clock) with
        {
            Format = identity.Format,
            WriteMode = target.WriteMode,
            BadRanges = bad is null ? [] : bad.OrderBy(b => b.Offset).ToList(),
        };
    }

    /// <summary>
    /// -SkipBadChunks: a chunk that is missing or failed its checks on every read becomes zeros at each of its
    /// offsets; anything else (a lost connection, a full disk, cancellation) still ends the restore.
    /// </summary>
    private static bool RecordBadRange(System.Collections.Concurrent.ConcurrentBag<BadRange> bad, ChunkException e)
    {
        if (e.Kind is not (PbsErrorKind.Integrity or PbsErrorKind.InvalidData or PbsErrorKind.NotFound)) return false;
        foreach (long offset in e.Offsets) bad.Add(new BadRange(offset, e.Length, e.Digest, e.ErrorId));
        return true;
    }

    /// <summary>
    /// Set in <see cref="Exception.Data"/> of a failure that left a resumable partial file (its path): Ctrl+C, a
    /// connection lost for good, a full disk. Callers tell the user to run again with -Resume.
    /// </summary>
    public const string ResumableKey = "PbsRestore.ResumablePartial";

    private static bool IsResumable(Exception e) => e switch
    {
        OperationCanceledException => true,
        PbsException p => p.Kind is PbsErrorKind.Connection or PbsErrorKind.Authentication or PbsErrorKind.Io,
        IOException or UnauthorizedAccessException => true,
        _ => false,
    };

    /// <summary>
    /// A new destination and journal, or, with Resume and a journal that matches, the partial destination, its
    /// journal continued, and the chunk jobs already finished (records since the last checkpoint are checked
    /// against the destination's bytes first, where it can be read).
    /// </summary>
    private static (IDestination Target, RestoreJournal Journal, IReadOnlySet<int> Finished) OpenTarget(string destination, RestorePlan plan,
        JournalIdentity identity, ImageFormat format, CryptConfig? chunkKey, DestinationOptions destinationOptions)
    {
        string journalPath = ImageDestinations.JournalPathFor(destination);
        if (destinationOptions.Resume && ImageDestinations.CanResume(destination))
        {
            var contents = WithStartOverHint(() => RestoreJournal.Load(journalPath));
            if (contents.Identity != identity)
                throw ResumeMismatch(destination, contents.Identity, Describe(identity));
            var target = WithStartOverHint(() => ImageDestinations.Reopen(destination, plan.Size, plan.MaxChunkSize, format));
            try
            {
                var verified = VerifyUnconfirmed(target, plan, contents.Unconfirmed, chunkKey);
                var journal = RestoreJournal.Continue(journalPath, contents, verified);
                var finished = new HashSet<int>(contents.Confirmed);
                finished.UnionWith(verified);
                return (target, journal, finished);
            }
            catch
            {
                target.KeepPartial = true; // an unreadable journal must not cost the partial file
                target.DisposeAsync().AsTask().GetAwaiter().GetResult();
                throw;
            }
        }
        var fresh = ImageDestinations.Create(destination, plan.Size, plan.MaxChunkSize, format, destinationOptions.Force);
        try
        {
            // A valid (empty) image from the start: a VHD needs its footer, a VHDX its headers, to be reopened.
            fresh.Flush();
            return (fresh, RestoreJournal.Create(journalPath, identity), new HashSet<int>());
        }
        catch
        {
            fresh.DisposeAsync().AsTask().GetAwaiter().GetResult();
            throw;
        }
    }

    private static PbsException ResumeMismatch(string destination, JournalIdentity journal, string wanted) =>
        new("ResumeMismatch", PbsErrorKind.InvalidArgument,
            $"cannot resume the restore into '{destination}': its journal is for {Describe(journal)}, not {wanted}; " +
            "restore with -Force instead of -Resume to start over, or name the snapshot the interrupted run restored");

    /// <summary>A partial file or journal that cannot be used says how to go on.</summary>
    private static T WithStartOverHint<T>(Func<T> open)
    {
        try
        {
            return open();
        }
        catch (PbsException e) when (e.ErrorId is "ResumeStateMismatch" or "ResumeJournalInvalid" or "PartialFileNotFound")
        {
            throw new PbsException(e.ErrorId, e.Kind, $"{e.Message}; restore with -Force instead of -Resume to start over", e);
        }
    }

    private static string Describe(JournalIdentity i) =>
        $"{i.Archive} of snapshot {i.Snapshot} (index {i.IndexCsum[..Math.Min(12, i.IndexCsum.Length)]}…, {i.Size} bytes, {i.Format})";

    /// <summary>The journal's unconfirmed jobs whose bytes in the destination carry the right digest at every offset.</summary>
    private static List<int> VerifyUnconfirmed(IDestination target, RestorePlan plan, IReadOnlyList<int> unconfirmed, CryptConfig? chunkKey)
    {
        var verified = new List<int>();
        if (unconfirmed.Count == 0 || target is not IReadableDestination readable) return verified;
        var jobs = plan.Jobs.ToDictionary(j => j.FirstIndex);
        var buffer = new byte[plan.MaxChunkSize];
        foreach (int first in unconfirmed)
        {
            if (!jobs.TryGetValue(first, out var job)) continue;
            bool ok = true;
            foreach (long offset in job.Offsets)
            {
                var span = buffer.AsSpan(0, job.Length);
                int read;
                try { read = readable.Read(offset, span); }
                catch (IOException) { read = -1; } // e.g. an unaligned read from a Windows disk: fetch it again instead
                if (read != job.Length || ChunkVerifier.ComputeDigest(span, chunkKey) != job.Digest)
                {
                    ok = false;
                    break;
                }
            }
            if (ok) verified.Add(first);
        }
        return verified;
    }

    /// <summary>
    /// Restores an index archive into any sink (Measure-PbsRestore uses <see cref="NullImageSink"/> to measure fetch
    /// and decode alone); every check still runs.
    /// </summary>
    public static async Task<RestoreResult> RestoreToSinkAsync(OpenedArchive archive, IImageSink sink, RestoreOptions options, RestoreCounters counters,
        RestoreMetrics? metrics, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        if (archive.Kind == ArchiveKind.Blob)
            throw new PbsException("ArchiveNotAnIndex", PbsErrorKind.InvalidArgument, $"'{archive.FileName}' is a blob, not an image or dynamic archive");
        var plan = await PlanAsync(archive, ct).ConfigureAwait(false);
        await RestorePipeline.RunAsync(plan, archive.Chunks, archive.Snapshot.Crypt, archive.Encrypted, sink, options, counters, ct, metrics).ConfigureAwait(false);
        return Result(archive, sink is DestinationFile f ? f.Destination : "(null)", counters, clock);
    }

    private static async Task<RestorePlan> PlanAsync(OpenedArchive archive, CancellationToken ct)
    {
        var index = await archive.ReadIndexAsync(ct).ConfigureAwait(false);
        var key = archive.ChunkKey;
        return RestorePlan.Plan(archive.FileName, index,
            archive.Kind == ArchiveKind.FixedIndex ? len => ChunkVerifier.ZeroChunkDigest(len, key) : null);
    }

    private static async Task<RestoreResult> RestoreBlobAsync(OpenedArchive archive, string destination, DestinationOptions destinationOptions,
        RestoreCounters counters, Stopwatch clock, CancellationToken ct)
    {
        var raw = await archive.ReadBlobAsync(ct).ConfigureAwait(false);
        byte[] plain = archive.DecodeBlob(raw);
        counters.SetTotals(plain.Length, 1);
        counters.AddWire(raw.Length);
        await using (var file = DestinationFile.Create(destination, plain.Length, destinationOptions.Force))
        {
            file.Write(0, plain);
            file.Commit(destinationOptions.Force);
        }
        counters.AddDone(plain.Length, 1);
        // A journal of an earlier, interrupted image restore to this name (started over with -Force).
        if (File.Exists(ImageDestinations.JournalPathFor(destination))) File.Delete(ImageDestinations.JournalPathFor(destination));
        return Result(archive, destination, counters, clock);
    }

    private static RestoreResult Result(OpenedArchive archive, string destination, RestoreCounters counters, Stopwatch clock) => new()
    {
        Snapshot = archive.Snapshot.Snapshot.Path,
        Namespace = archive.Snapshot.Snapshot.Namespace.ToString(),
        Archive = archive.DisplayName,
        Destination = destination,
        LogicalBytes = counters.TotalBytes,
        BytesRead = counters.WireBytes,
        Chunks = counters.ChunksTotal,
        ZeroChunks = counters.ZeroChunks,
        DedupHits = counters.DedupHits,
        Duration = clock.Elapsed,
        ChunksFetched = counters.ChunksFetched,
        ChunksResumed = counters.ChunksResumed,
        ResumedBytes = counters.ResumedBytes,
        Rereads = counters.Rereads,
    };
}
