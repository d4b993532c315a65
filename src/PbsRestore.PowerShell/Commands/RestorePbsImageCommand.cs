using System.Management.Automation;
using PbsRestore.Formats;
using PbsRestore.Restore;

namespace PbsRestore.PowerShell.Commands;

/// <summary>
/// <para type="synopsis">Restores an archive of a Proxmox Backup Server snapshot (a disk image, a config blob or a dynamic archive) to a file.</para>
/// </summary>
[Cmdlet(VerbsData.Restore, "PbsImage", DefaultParameterSetName = ConnectionSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(RestoreResult))]
public sealed class RestorePbsImageCommand : PbsArchiveCmdlet
{
    /// <summary>The file to write.</summary>
    [Parameter(Mandatory = true, Position = 2)]
    [ValidateNotNullOrEmpty]
    public string Destination { get; set; } = "";

    /// <summary>Overwrite an existing destination.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>Chunk reads in flight; automatic when omitted (grows while throughput rises). PBS_RESTORE_FETCH_CONCURRENCY also sets it.</summary>
    [Parameter]
    [ValidateRange(1, 256)]
    public int FetchConcurrency { get; set; }

    /// <summary>Cap on the read rate, in MB/s (10^6 bytes) of encoded chunk data, e.g. for restores in business hours.</summary>
    [Parameter]
    [ValidateRange(0.1, 1_000_000)]
    public double MaxBandwidth { get; set; }

    protected override void ProcessRecord()
    {
        bool fetchGiven = MyInvocation.BoundParameters.ContainsKey(nameof(FetchConcurrency));
        var options = BaseOptions(fetchGiven ? FetchConcurrency : null, fetchGiven) with
        {
            Force = Force,
            MaxBytesPerSecond = MyInvocation.BoundParameters.ContainsKey(nameof(MaxBandwidth)) ? (long)(MaxBandwidth * 1e6) : null,
        };
        try
        {
            var source = SourceForSnapshot();
            string destination = ResolvePath(Destination);
            // Phase 1, read-only: find the snapshot and archive, check key and destination.
            var opened = Run(async ct =>
            {
                var o = await OpenArchiveAsync(source, ct).ConfigureAwait(false);
                DestinationFile.CheckWritable(destination, Force);
                return o;
            });
            try
            {
                string name = ArchiveNames.DisplayName(opened.Entry.FileName);
                if (!ShouldProcess(destination, $"restore {name} ({ProgressView.Size(opened.Entry.Size)}) of snapshot {opened.Reader.Snapshot}"))
                    return;
                WriteVerbose($"Restoring {name} of {opened.Reader.Snapshot} from {source.Location}: fetch concurrency " +
                             $"{(options.FetchConcurrency?.ToString() ?? "automatic")}, {options.DecodeConcurrency} decode threads.");

                // Phase 2: the restore itself, with progress drawn on this thread.
                var counters = new RestoreCounters();
                var progress = new ProgressView(this, 1, $"Restoring {name} from {opened.Reader.Snapshot}");
                try
                {
                    WriteObject(Run(ct => opened.Restorer.RestoreAsync(opened.Entry.FileName, destination, options, counters, ct),
                        () => progress.Update(counters)));
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
        catch (Exception e) when (IsFailure(e))
        {
            WriteFailure(e, Snapshot);
        }
    }
}
