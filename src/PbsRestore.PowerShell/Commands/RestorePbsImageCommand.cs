using System.Management.Automation;
using PbsRestore.Formats;
using PbsRestore.Restore;
using PbsRestore.Destinations;

namespace PbsRestore.PowerShell.Commands;

/// <summary>
/// <para type="synopsis">Restores an archive of a Proxmox Backup Server snapshot (a disk image, a config blob or a dynamic archive) to a file,
/// or every archive of a snapshot into a folder.</para>
/// </summary>
[Cmdlet(VerbsData.Restore, "PbsImage", DefaultParameterSetName = ConnectionSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium,
    HelpUri = HelpLinks.RestorePbsImage)]
[OutputType(typeof(RestoreResult))]
[OutputType(typeof(RestoreJob))]
public sealed class RestorePbsImageCommand : PbsArchiveCmdlet
{
    /// <summary>
    /// The archive: 'drive-scsi0.img' (or 'drive-scsi0.img.fidx'), 'qemu-server.conf', a dynamic archive name.
    /// Required with -Destination; with -DestinationFolder a wildcard filter (all archives when omitted).
    /// </summary>
    [Parameter(Position = 1, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(Completers.ArchiveCompleter))]
    public string? Archive { get; set; }

    protected override string? ArchiveName => Archive;

    /// <summary>The file to write (one archive); also taken from a Destination property (Import-Csv).</summary>
    [Parameter(Position = 2, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string? Destination { get; set; }

    /// <summary>Restore every archive of each snapshot into a subfolder of this folder (disks at once, config next to them).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? DestinationFolder { get; set; }

    /// <summary>Overwrite existing files.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>
    /// Continue an interrupted restore (Ctrl+C, a lost connection, a killed process) from the journal kept beside
    /// its partial file; starts a new restore when there is nothing to continue. Refused when the snapshot, index
    /// or format differ from the interrupted one.
    /// </summary>
    [Parameter]
    public SwitchParameter Resume { get; set; }

    /// <summary>Raw, Vhdx (dynamic, for Hyper-V and Mount-DiskImage), Vhd (fixed, for Azure) or Vmdk (monolithic sparse, for VMware); by default from the destination's extension (.vhdx, .vhd, .vmdk), else Raw.</summary>
    [Parameter]
    [ValidateSet("Raw", "Vhdx", "Vhd", "Vmdk")]
    public string? Format { get; set; }

    /// <summary>
    /// Disaster-recovery mode: restore everything readable; a chunk that is missing or damaged in the datastore (after
    /// every reread) is written as zeros, reported in the result's BadRanges and by a warning, instead of failing.
    /// </summary>
    [Parameter]
    public SwitchParameter SkipBadChunks { get; set; }

    /// <summary>Chunk reads in flight; automatic when omitted (grows while throughput rises). PBS_RESTORE_FETCH_CONCURRENCY also sets it.</summary>
    [Parameter]
    [ValidateRange(1, 256)]
    public int FetchConcurrency { get; set; }

    /// <summary>Cap on the read rate, in MB/s (10^6 bytes) of encoded chunk data, e.g. for restores in business hours.</summary>
    [Parameter]
    [ValidateRange(0.1, 1_000_000)]
    public double MaxBandwidth { get; set; }

    /// <summary>
    /// Runs the restores as a PowerShell job (Get-Job, Wait-Job, Receive-Job) and returns the job at once: one
    /// job for the command, one restore per pipeline input, in this process.
    /// </summary>
    [Parameter]
    public SwitchParameter AsJob { get; set; }

    private int _nextActivity = 1;
    private readonly List<System.Collections.Hashtable> _jobRestores = [];

    protected override void ProcessRecord()
    {
        if (AsJob)
        {
            _jobRestores.Add(JobParameters());
            return;
        }
        bool fetchGiven = MyInvocation.BoundParameters.ContainsKey(nameof(FetchConcurrency));
        var destinationOptions = new DestinationOptions
        {
            Force = Force,
            Resume = Resume,
            Format = Format is null ? null : Enum.Parse<ImageFormat>(Format, ignoreCase: true),
        };
        var options = BaseOptions(fetchGiven ? FetchConcurrency : null, fetchGiven) with
        {
            SkipBadChunks = SkipBadChunks,
            MaxBytesPerSecond = MyInvocation.BoundParameters.ContainsKey(nameof(MaxBandwidth)) ? (long)(MaxBandwidth * 1e6) : null,
        };
        string? target = null;
        try
        {
            target = Destination is not null ? ResolvePath(Destination) : DestinationFolder is not null ? ResolvePath(DestinationFolder) : null;
            if ((Destination is null) == (DestinationFolder is null))
                throw new PbsException("DestinationRequired", PbsErrorKind.InvalidArgument, "give either -Destination (one archive) or -DestinationFolder (a whole snapshot)");
            if (Destination is not null && Archive is null)
                throw new PbsException("ArchiveRequired", PbsErrorKind.InvalidArgument, "-Destination restores one archive: name it with -Archive");
            var source = SourceForSnapshot();
            if (Destination is not null) RestoreOne(source, ResolvePath(Destination), destinationOptions, options);
            else RestoreSnapshot(source, ResolvePath(DestinationFolder!), destinationOptions, options);
        }
        catch (Exception e) when (IsFailure(e))
        {
            WriteFailure(e, FailureTarget(e, target));
        }
    }

    /// <summary>
    /// This record's parameters for the job's runspace: paths resolved here (the job has no current location of
    /// ours), and the session's default connection passed on explicitly (the job has no $DefaultPbsServer).
    /// </summary>
    private System.Collections.Hashtable JobParameters()
    {
        var p = new System.Collections.Hashtable(StringComparer.OrdinalIgnoreCase);
        foreach (var (key, value) in MyInvocation.BoundParameters)
            if (key != nameof(AsJob)) p[key] = value;
        p[nameof(Snapshot)] = Snapshot;
        foreach (var name in new[] { nameof(Destination), nameof(DestinationFolder), nameof(Keyfile), nameof(Datastore) })
            if (p[name] is string path) p[name] = ResolvePath(path);
        var info = SnapshotResolver.AsSnapshotInfo(Snapshot);
        bool remembered = info is not null && (SnapshotSources.Of(info) is not null || Directory.Exists(info.Location));
        if (ParameterSetName == ConnectionSet && Connection is null && Store is null && !remembered && DefaultConnection is { } c)
            p[nameof(Connection)] = c;
        return p;
    }

    protected override void EndProcessing()
    {
        base.EndProcessing();
        if (!AsJob || _jobRestores.Count == 0) return;
        // The manifest the user imported (PbsRestore.psd1 beside the module base), else the assembly itself.
        var info = MyInvocation.MyCommand.Module;
        string? manifest = info is null ? null : Path.Combine(info.ModuleBase, info.Name + ".psd1");
        string module = manifest is not null && File.Exists(manifest) ? manifest : typeof(RestorePbsImageCommand).Assembly.Location;
        // The job's Command names what it restores, never the typed line: that may hold a password or secret.
        string Describe(System.Collections.Hashtable p) =>
            $"{SnapshotResolver.Unwrap(p[nameof(Snapshot)]!)} {p[nameof(Archive)] ?? "*"} -> {p[nameof(Destination)] ?? p[nameof(DestinationFolder)]}";
        string what = string.Join("; ", _jobRestores.Take(3).Select(Describe)) + (_jobRestores.Count > 3 ? $"; and {_jobRestores.Count - 3} more" : "");
        var job = new RestoreJob($"Restore-PbsImage {what}", module, _jobRestores);
        JobRepository.Add(job);
        job.Start();
        WriteObject(job);
    }

    private void RestoreOne(Sources.ISnapshotSource source, string destination, DestinationOptions destinationOptions, RestoreOptions options)
    {
        // Phase 1, read-only: find the snapshot and archive, check key and destination.
        var opened = Run(async ct =>
        {
            var o = await OpenArchiveAsync(source, ct).ConfigureAwait(false);
            ImageDestinations.CheckWritable(destination, Force, Resume);
            return o;
        });
        try
        {
            string name = ArchiveNames.DisplayName(opened.Entry.FileName);
            string action = $"restore {name} ({ProgressView.Size(opened.Entry.Size)}) of snapshot {opened.Reader.Snapshot}";
            bool image = opened.Entry.Kind == ArchiveKind.FixedIndex;
            bool onDevice = ImageDestinations.IsDevice(destination);
            bool resumable = Resume && opened.Entry.Kind != ArchiveKind.Blob;
            bool canResume = resumable && ImageDestinations.CanResume(destination);
            if (image && !onDevice)
            {
                var format = ImageDestinations.FormatFor(destination, destinationOptions.Format);
                ImageDestinations.CheckResumeSupported(destination, format, Resume);
                if (format != ImageFormat.Raw) action += $" as {format.ToString().ToUpperInvariant()}";
                var byName = ImageDestinations.FormatFor(destination, null);
                if (destinationOptions.Format is { } asked && asked != byName)
                    WriteWarning($"'{Path.GetFileName(destination)}' is named like a {byName} file but is written as {asked}; " +
                                 (byName == ImageFormat.Vmdk || asked == ImageFormat.Vmdk
                                     ? "VMware tools go by the content and the extension: name it to match, or leave out -Format."
                                     : "Windows (Mount-DiskImage, Hyper-V) goes by the extension."));
            }
            if (image && canResume) action += ", continuing the interrupted restore";
            if (!ShouldWrite(destination, opened.Entry, action))
                return;
            if (resumable)
                WriteVerbose(canResume
                    ? $"Resuming the interrupted restore into {DestinationFile.PartialPathFor(destination)}."
                    : $"Nothing to resume for {destination}: starting a new restore.");
            WriteVerbose($"Restoring {name} of {opened.Reader.Snapshot} from {source.Location}: fetch concurrency " +
                         $"{(options.FetchConcurrency?.ToString() ?? "automatic")}, {options.DecodeConcurrency} decode threads.");

            // Phase 2: the restore itself, with progress drawn on this thread.
            var counters = new RestoreCounters();
            var metrics = new RestoreMetrics();
            var progress = new ProgressView(this, _nextActivity++, $"Restoring {name} from {opened.Reader.Snapshot}");
            try
            {
                var result = Run(ct => ArchiveRestorer.RestoreAsync(opened.Archive, destination, destinationOptions, options, counters, ct, metrics),
                    () => progress.Update(counters));
                WriteVerbose($"{name}: fetch concurrency ended at {metrics.FetchConcurrency}, chunk latency p50 {metrics.LatencyPercentile(0.5):F1} ms" +
                             (result.ChunksResumed > 0 ? $"; {result.ChunksResumed} chunks kept from the interrupted run, {result.ChunksFetched} fetched" : "") +
                             (result.Rereads > 0 ? $"; {result.Rereads} damaged copies read again" : "") +
                             (result.WriteMode.Length > 0 ? $"; writes {result.WriteMode}" : "") + ".");
                WarnBadRanges(result);
                WriteObject(result);
            }
            finally
            {
                progress.Complete();
            }
        }
        finally
        {
            opened.Reader.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    }

    private void RestoreSnapshot(Sources.ISnapshotSource source, string folder, DestinationOptions destinationOptions, RestoreOptions options)
    {
        var pattern = Archive is null ? null : new WildcardPattern(Archive, WildcardOptions.IgnoreCase);
        var reader = Run(ct => OpenSnapshotAsync(source, ct));
        try
        {
            var restorer = new SnapshotRestorer(reader, Crypt);
            var (_, entries) = Run(ct => restorer.SelectAsync(n => pattern is null || pattern.IsMatch(n), ct));
            string target = Path.Combine(folder, SnapshotRestorer.FolderName(reader.Snapshot));
            if (Resume)
            {
                // An interrupted snapshot restore: archives whose file is complete (renamed into place) stay as they are.
                var done = entries.Where(e => File.Exists(SnapshotRestorer.PathFor(target, e, destinationOptions.Format))).ToList();
                foreach (var e in done) WriteVerbose($"Kept {SnapshotRestorer.PathFor(target, e, destinationOptions.Format)}: restored by the interrupted run.");
                entries = entries.Except(done).ToList();
                if (entries.Count == 0)
                {
                    WriteVerbose($"Nothing left to restore in {target}.");
                    return;
                }
            }
            foreach (var e in entries)
            {
                string path = SnapshotRestorer.PathFor(target, e, destinationOptions.Format);
                ImageDestinations.CheckNotInterrupted(path, Force, Resume);
                DestinationFile.CheckWritable(path, Force, folderMustExist: false);
            }
            string list = string.Join(", ", entries.Select(e => ArchiveNames.DisplayName(e.FileName)));
            if (!ShouldProcess(target, $"restore {entries.Count} archive(s) of snapshot {reader.Snapshot} ({list}, {ProgressView.Size(entries.Sum(e => e.Size))})"))
                return;
            WriteVerbose($"Restoring {list} of {reader.Snapshot} into {target}; disks at once, sharing fetch concurrency " +
                         $"{(options.FetchConcurrency?.ToString() ?? "automatic")}.");

            // A parent progress record for the snapshot and a child per archive.
            int parentId = _nextActivity++;
            var parent = new ProgressView(this, parentId, $"Restoring snapshot {reader.Snapshot}");
            var children = entries.ToDictionary(e => e, e => (Counters: new RestoreCounters(),
                View: new ProgressView(this, _nextActivity++, $"Restoring {ArchiveNames.DisplayName(e.FileName)}", parentId)));
            var total = new TotalCounters(children.Values.Select(c => c.Counters).ToList(), entries.Sum(e => e.Size));
            try
            {
                void Draw()
                {
                    parent.Update(total.Snapshot());
                    foreach (var c in children.Values) c.View.Update(c.Counters);
                }
                // Each archive's result is written as soon as it is complete, while the others go on.
                RunWithBridge(async (bridge, ct) =>
                {
                    using (bridge.DrawEvery(ProgressInterval, Draw))
                        await restorer.RestoreAsync(entries, target, destinationOptions, options, e => children[e].Counters, ct, r => bridge.Post(() =>
                        {
                            WarnBadRanges(r);
                            WriteObject(r);
                        })).ConfigureAwait(false);
                    bridge.Post(Draw);
                });
            }
            finally
            {
                foreach (var c in children.Values) c.View.Complete();
                parent.Complete();
            }
        }
        finally
        {
            reader.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    }

    /// <summary>-SkipBadChunks: a restore that gave up on some chunks says so, once per archive.</summary>
    private void WarnBadRanges(RestoreResult result)
    {
        if (result.BadRanges.Count == 0) return;
        var first = result.BadRanges[0];
        WriteWarning($"{result.Archive}: {result.BadRanges.Count} range(s), {ProgressView.Size(result.BadRanges.Sum(b => (long)b.Length))}, " +
                     $"could not be read and were restored as zeros in '{result.Destination}'; the first at offset {first.Offset} " +
                     $"(chunk {first.Digest}, {first.Reason}). The result's BadRanges lists them all.");
    }

    /// <summary>Sums the archives' counters for the parent progress record.</summary>
    private sealed class TotalCounters(IReadOnlyList<RestoreCounters> parts, long plannedBytes)
    {
        public RestoreCounters Snapshot()
        {
            var sum = new RestoreCounters();
            sum.SetTotals(Math.Max(plannedBytes, parts.Sum(p => p.TotalBytes)), parts.Sum(p => p.ChunksTotal));
            sum.AddDone(parts.Sum(p => p.DoneBytes), parts.Sum(p => p.ChunksDone));
            sum.AddZero(parts.Sum(p => p.ZeroChunks));
            // Resumed and instant bytes too: the parent bar's MB/s and time left follow the same rules as each archive's.
            sum.AddResumed(parts.Sum(p => p.ChunksResumed), parts.Sum(p => p.ResumedBytes));
            sum.AddInstant(parts.Sum(p => p.InstantBytes - p.ResumedBytes));
            return sum;
        }
    }
}
