using System.Diagnostics;
using System.Management.Automation;
using PbsRestore.Formats;
using PbsRestore.Sources.Remote;
using PbsRestore.Restore;
using PbsRestore.Destinations;

namespace PbsRestore.PowerShell.Commands;

/// <summary>
/// <para type="synopsis">Measures a restore of a snapshot's archive and tells what limits it: network, server, CPU or disk.</para>
/// </summary>
[Cmdlet(VerbsDiagnostic.Measure, "PbsRestore", DefaultParameterSetName = ConnectionSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium,
    HelpUri = HelpLinks.MeasurePbsRestore)]
[OutputType(typeof(RestoreMeasurement))]
public sealed class MeasurePbsRestoreCommand : PbsArchiveCmdlet
{
    /// <summary>The archive to measure: an image ('drive-scsi0.img') or a dynamic archive.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(Completers.ArchiveCompleter))]
    public string Archive { get; set; } = "";

    protected override string? ArchiveName => Archive;

    /// <summary>Fetch concurrencies to try, one run each (e.g. 1,4,16,32); one automatic run when omitted.</summary>
    [Parameter]
    [ValidateRange(1, 256)]
    public int[]? FetchConcurrency { get; set; }

    /// <summary>
    /// Write the restored image here instead of discarding it, to include the disk. The rules of Restore-PbsImage
    /// -Destination apply: an existing file or a block device needs -Force, and the write is confirmed (ShouldProcess).
    /// Later runs overwrite what the first one wrote.
    /// </summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Destination { get; set; }

    /// <summary>Overwrite an existing -Destination file, or write onto a block device.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    protected override void ProcessRecord()
    {
        string? destination = null;
        try
        {
            var source = SourceForSnapshot();
            destination = Destination is null ? null : ResolvePath(Destination);
            var runs = FetchConcurrency is { Length: > 0 } f ? f.Select(x => (int?)x).ToArray() : [null];
            var opened = Run(async ct =>
            {
                var o = await OpenArchiveAsync(source, ct).ConfigureAwait(false);
                if (destination is not null) ImageDestinations.CheckWritable(destination, Force);
                return o;
            });
            try
            {
                if (opened.Entry.Kind == ArchiveKind.Blob)
                    throw new PbsException("ArchiveNotAnIndex", PbsErrorKind.InvalidArgument,
                        $"'{opened.Entry.FileName}' is a blob; measure an image or dynamic archive");
                if (destination is not null &&
                    !ShouldWrite(destination, opened.Entry, $"write {runs.Length} measured restore(s) of {ArchiveNames.DisplayName(opened.Entry.FileName)} " +
                                                            $"({ProgressView.Size(opened.Entry.Size)}) of snapshot {opened.Reader.Snapshot}"))
                    return;
                double? speedtest = null;
                if (opened.Reader is RemoteSnapshotReader remote)
                {
                    // The raw wire rate: what the connections move without any decoding, 4 requests at a time on each.
                    speedtest = Run(ct => remote.SpeedtestAsync(4, TimeSpan.FromSeconds(2), ct));
                    WriteVerbose($"Speedtest: {speedtest / 1e6:F0} MB/s over {remote.Sessions.Count} reader session(s).");
                }
                int connections = opened.Reader is RemoteSnapshotReader r ? r.Sessions.Count : 1;
                string name = ArchiveNames.DisplayName(opened.Entry.FileName);
                for (int i = 0; i < runs.Length; i++)
                {
                    var options = BaseOptions(runs[i], runs[i] is not null);
                    var destinationOptions = new DestinationOptions { Force = Force || i > 0 }; // later runs replace the first run's file
                    var counters = new RestoreCounters();
                    var metrics = new RestoreMetrics();
                    var progress = new ProgressView(this, 1,
                        $"Measuring {name} of {opened.Reader.Snapshot} (run {i + 1}/{runs.Length}, fetch {options.FetchConcurrency?.ToString() ?? "automatic"})");
                    var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
                    RestoreResult result;
                    try
                    {
                        result = Run(ct => destination is null
                                ? ArchiveRestorer.RestoreToSinkAsync(opened.Archive, new NullImageSink(), options, counters, metrics, ct)
                                : ArchiveRestorer.RestoreAsync(opened.Archive, destination, destinationOptions, options, counters, ct, metrics),
                            () => progress.Update(counters));
                    }
                    finally
                    {
                        progress.Complete();
                    }
                    var cpu = Process.GetCurrentProcess().TotalProcessorTime - cpuBefore;
                    var row = RestoreMeasurement.From(result, source.Location, counters, metrics, options, connections, cpu, speedtest);
                    WriteVerbose($"Run {i + 1}: {row.LogicalMBps:F0} MB/s logical, bottleneck {row.Bottleneck}, suggested fetch concurrency {row.SuggestedFetchConcurrency}.");
                    WriteObject(row);
                }
            }
            finally
            {
                opened.Reader.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
        }
        catch (Exception e) when (IsFailure(e))
        {
            WriteFailure(e, FailureTarget(e, destination));
        }
    }
}
