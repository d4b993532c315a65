using System.Diagnostics;
using System.Security.Cryptography;
using PbsRestore.Formats;
using PbsRestore.Sources;

namespace PbsRestore.Restore;

/// <summary>
/// Restores one archive of a snapshot to a file, in the order that keeps bad input away from the disk:
/// manifest → key check → index (checked against the manifest) → plan → pipeline → rename into place.
/// Wrong, missing or mismatched keys and bad manifests or indexes fail before the destination is created.
/// </summary>
public sealed class ArchiveRestorer
{
    /// <summary>Indexes larger than this are refused (a 1 PiB image at 4 MiB chunks has an 8 GiB index...; 256 MiB covers 32 TiB).</summary>
    public const long MaxIndexSize = 256L << 20;
    /// <summary>A blob archive (config, log) is small; upstream caps blobs at 128 MiB.</summary>
    public const long MaxBlobFileSize = FileFormats.MaxBlobSize;

    private readonly ISnapshotReader _reader;
    private readonly CryptConfig? _crypt;

    public ArchiveRestorer(ISnapshotReader reader, CryptConfig? crypt)
    {
        _reader = reader;
        _crypt = crypt;
    }

    /// <summary>The chunks of the snapshot this restorer reads.</summary>
    public IChunkSource Chunks => _reader.Chunks;

    /// <summary>Reads and decodes the manifest, and checks the key against it.</summary>
    public async Task<BackupManifest> ReadManifestAsync(CancellationToken ct)
    {
        var raw = await _reader.ReadFileAsync(FileFormats.ManifestBlobName, BackupManifest.MaxJsonSize + 1024, ct).ConfigureAwait(false);
        return LocalDatastore.ReadManifest(raw, $"{_reader.Snapshot}/{FileFormats.ManifestBlobName}");
    }

    /// <summary>
    /// The client log is uploaded after the manifest is written, so no manifest lists it (upstream
    /// CLIENT_LOG_BLOB_NAME). It can still be restored; only its CRC (and tag, if encrypted) can be checked.
    /// </summary>
    public const string ClientLogBlobName = "client.log.blob";

    /// <summary>Finds the manifest entry for what the user typed, or fails listing what exists.</summary>
    public ManifestFile ResolveArchive(BackupManifest manifest, string archive) =>
        ArchiveNames.Resolve(manifest, archive)
        ?? (archive is ClientLogBlobName or "client.log" ? new ManifestFile(ClientLogBlobName, CryptMode.None, -1, []) : null)
        ?? throw new PbsNotFoundException("ArchiveNotFound",
            $"snapshot '{_reader.Snapshot}' has no archive '{archive}'; it has: {string.Join(", ", manifest.Files.Select(f => ArchiveNames.DisplayName(f.FileName)))}");

    /// <summary>Checks the key before anything else: required for encrypted archives, must match the manifest's.</summary>
    public void CheckKey(BackupManifest manifest, ManifestFile entry)
    {
        if (IsUnlisted(entry)) return;
        if (entry.CryptMode == CryptMode.Encrypt && _crypt is null)
            throw new PbsKeyException("KeyRequired",
                $"archive '{entry.FileName}' of snapshot '{_reader.Snapshot}' is encrypted" +
                (manifest.KeyFingerprint is { } fp ? $" with key {fp.ToShortString()}" : "") + "; give its key file with -Keyfile");
        manifest.VerifyKey(_crypt, $"{_reader.Snapshot}/{FileFormats.ManifestBlobName}");
    }

    /// <summary>Downloads an index and checks it against its manifest entry.</summary>
    public async Task<IChunkIndex> ReadIndexAsync(ManifestFile entry, CancellationToken ct)
    {
        var raw = await _reader.ReadFileAsync(entry.FileName, MaxIndexSize, ct).ConfigureAwait(false);
        string where = $"{_reader.Location}/{entry.FileName}";
        IChunkIndex index = entry.Kind switch
        {
            ArchiveKind.FixedIndex => FixedIndex.Parse(raw, where),
            ArchiveKind.DynamicIndex => DynamicIndex.Parse(raw, where),
            _ => throw new ArgumentException($"{entry.FileName} is not an index"),
        };
        // Upstream checks the recomputed checksum (never the header's) and the size against the manifest.
        BackupManifest.VerifyFile(entry, index.Size, index.ComputeCsum(), where);
        return index;
    }

    /// <summary>
    /// Restores one archive to <paramref name="destination"/>. Images are journaled: a restore stopped by
    /// cancellation or a lost connection keeps its partial file and journal, and <see cref="RestoreOptions.Resume"/>
    /// continues it; other failures leave nothing behind.
    /// </summary>
    public async Task<RestoreResult> RestoreAsync(string archive, string destination, RestoreOptions options, RestoreCounters counters, CancellationToken ct,
        RestoreMetrics? metrics = null)
    {
        var clock = Stopwatch.StartNew();
        destination = Path.GetFullPath(destination);
        Destinations.CheckWritable(destination, options.Force, options.Resume);
        var manifest = await ReadManifestAsync(ct).ConfigureAwait(false);
        var entry = ResolveArchive(manifest, archive);
        CheckKey(manifest, entry);
        bool encrypted = entry.CryptMode == CryptMode.Encrypt;

        string shown = ArchiveNames.DisplayName(entry.FileName);
        if (entry.Kind != ArchiveKind.FixedIndex && Destinations.IsDevice(destination))
            throw new PbsException("DestinationNotSupported", PbsErrorKind.InvalidArgument,
                $"'{shown}' is not a disk image: restore it to a file, not onto device '{destination}'");
        // Only disk images (fixed indexes) become VHDX or VHD; a config blob or a container's file archive would be
        // meaningless inside one.
        var format = Destinations.FormatFor(destination, options.Format);
        if (entry.Kind != ArchiveKind.FixedIndex && format != ImageFormat.Raw)
            throw new PbsException("FormatNotSupported", PbsErrorKind.InvalidArgument,
                $"'{shown}' is not a disk image, so it cannot be written as {format}" +
                (options.Format is null ? $" (the name '{Path.GetFileName(destination)}' asks for it): give the file another extension" : ": leave out -Format"));
        if (entry.Kind == ArchiveKind.Blob)
        {
            // A journal there belongs to an interrupted image restore: never replace that partial with a blob. (An
            // image of another archive is refused by OpenTarget, which compares the whole journal identity.)
            if (options.Resume && Destinations.CanResume(destination))
                throw ResumeMismatch(destination, WithStartOverHint(() => RestoreJournal.Load(Destinations.JournalPathFor(destination))).Identity,
                    $"{entry.FileName} of snapshot {_reader.Snapshot}");
            return await RestoreBlobAsync(entry, encrypted, destination, options, counters, clock, ct).ConfigureAwait(false);
        }

        Destinations.CheckResumeSupported(destination, format, options.Resume);
        var plan = await PlanAsync(entry, ct).ConfigureAwait(false);
        var identity = new JournalIdentity(_reader.Snapshot.ToString(), entry.FileName, entry.CsumHex, plan.Size, Destinations.FormatName(destination, format));
        var (target, journal, finished) = OpenTarget(destination, plan, identity, format, encrypted, options);
        var bad = options.SkipBadChunks ? new System.Collections.Concurrent.ConcurrentBag<BadRange>() : null;
        await using (target)
        using (journal)
        {
            try
            {
                await RestorePipeline.RunAsync(plan.Without(finished), _reader.Chunks, _crypt, encrypted, target, options, counters, ct, metrics,
                    onChunkError: bad is null ? null : e => RecordBadRange(bad, e), journal: journal).ConfigureAwait(false);
                if (bad is { IsEmpty: false } && !target.ZerosAreHoles)
                {
                    // A device keeps its old bytes where nothing is written: the ranges given up on become zeros.
                    var zero = new byte[bad.Max(b => b.Length)];
                    foreach (var b in bad) target.Write(b.Offset, zero.AsSpan(0, b.Length));
                }
                target.Commit(options.Force);
                journal.Delete();
            }
            catch (Exception e) when (IsResumable(e) && Destinations.IsResumable(format))
            {
                // Keep what is done; the journal already names it. (No flush here: Ctrl+C must stop at once, and
                // the kernel has every write; a resume checks the records the last checkpoint did not cover.)
                target.KeepPartial = true;
                // A VHDX or VHD finds its blocks through metadata (BAT, footer) written at checkpoints: write it now,
                // or a resume would have to fetch again everything since the last one. (Raw files need nothing.)
                if (target is VhdxDestination or VhdDestination)
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
        return Result(entry, destination, counters, clock) with
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
    private (IDestination Target, RestoreJournal Journal, IReadOnlySet<int> Finished) OpenTarget(string destination, RestorePlan plan,
        JournalIdentity identity, ImageFormat format, bool encrypted, RestoreOptions options)
    {
        string journalPath = Destinations.JournalPathFor(destination);
        if (options.Resume && Destinations.CanResume(destination))
        {
            var contents = WithStartOverHint(() => RestoreJournal.Load(journalPath));
            if (contents.Identity != identity)
                throw ResumeMismatch(destination, contents.Identity, Describe(identity));
            var target = WithStartOverHint(() => Destinations.Reopen(destination, plan.Size, plan.MaxChunkSize, format));
            try
            {
                var verified = VerifyUnconfirmed(target, plan, contents.Unconfirmed, encrypted);
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
        var fresh = Destinations.Create(destination, plan.Size, plan.MaxChunkSize, format, options.Force);
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
    private List<int> VerifyUnconfirmed(IDestination target, RestorePlan plan, IReadOnlyList<int> unconfirmed, bool encrypted)
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
                if (read != job.Length || ChunkVerifier.ComputeDigest(span, encrypted ? _crypt : null) != job.Digest)
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
    public async Task<RestoreResult> RestoreToSinkAsync(string archive, IImageSink sink, RestoreOptions options, RestoreCounters counters,
        RestoreMetrics? metrics, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        var manifest = await ReadManifestAsync(ct).ConfigureAwait(false);
        var entry = ResolveArchive(manifest, archive);
        CheckKey(manifest, entry);
        if (entry.Kind == ArchiveKind.Blob)
            throw new PbsException("ArchiveNotAnIndex", PbsErrorKind.InvalidArgument, $"'{entry.FileName}' is a blob, not an image or dynamic archive");
        var plan = await PlanAsync(entry, ct).ConfigureAwait(false);
        await RestorePipeline.RunAsync(plan, _reader.Chunks, _crypt, entry.CryptMode == CryptMode.Encrypt, sink, options, counters, ct, metrics).ConfigureAwait(false);
        return Result(entry, sink is DestinationFile f ? f.Destination : "(null)", counters, clock);
    }

    private async Task<RestorePlan> PlanAsync(ManifestFile entry, CancellationToken ct)
    {
        bool encrypted = entry.CryptMode == CryptMode.Encrypt;
        var index = await ReadIndexAsync(entry, ct).ConfigureAwait(false);
        return RestorePlan.Plan(entry.FileName, index,
            entry.Kind == ArchiveKind.FixedIndex ? len => ChunkVerifier.ZeroChunkDigest(len, encrypted ? _crypt : null) : null);
    }

    private async Task<RestoreResult> RestoreBlobAsync(ManifestFile entry, bool encrypted, string destination, RestoreOptions options,
        RestoreCounters counters, Stopwatch clock, CancellationToken ct)
    {
        var raw = await _reader.ReadFileAsync(entry.FileName, MaxBlobFileSize, ct).ConfigureAwait(false);
        string where = $"{_reader.Location}/{entry.FileName}";
        if (IsUnlisted(entry))
            encrypted = raw.Length >= 8 && DataBlob.IsEncrypted(DataBlob.GetKind(raw));
        else
            BackupManifest.VerifyFile(entry, raw.LongLength, SHA256.HashData(raw), where);
        if (encrypted && _crypt is null)
            throw new PbsKeyException("KeyRequired", $"{where} is encrypted; give its key file with -Keyfile");
        byte[] plain;
        try
        {
            var kind = DataBlob.GetKind(raw);
            if (DataBlob.IsEncrypted(kind) != encrypted)
                throw new PbsIntegrityException("BlobCryptModeMismatch", "the blob's encryption does not match the manifest's crypt-mode");
            using var decoder = new BlobDecoder(encrypted ? _crypt : null, FileFormats.MaxBlobSize);
            plain = decoder.DecodeToArray(raw);
        }
        catch (PbsException e)
        {
            throw new PbsIntegrityException(e.ErrorId, $"{where}: {e.Message}", e);
        }
        counters.SetTotals(plain.Length, 1);
        counters.AddWire(raw.Length);
        await using (var file = DestinationFile.Create(destination, plain.Length, options.Force))
        {
            file.Write(0, plain);
            file.Commit(options.Force);
        }
        counters.AddDone(plain.Length, 1);
        // A journal of an earlier, interrupted image restore to this name (started over with -Force).
        if (File.Exists(Destinations.JournalPathFor(destination))) File.Delete(Destinations.JournalPathFor(destination));
        return Result(entry, destination, counters, clock);
    }

    private static bool IsUnlisted(ManifestFile entry) => entry.Size < 0;

    private RestoreResult Result(ManifestFile entry, string destination, RestoreCounters counters, Stopwatch clock) => new()
    {
        Snapshot = _reader.Snapshot.Path,
        Namespace = _reader.Snapshot.Namespace.ToString(),
        Archive = ArchiveNames.DisplayName(entry.FileName),
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
