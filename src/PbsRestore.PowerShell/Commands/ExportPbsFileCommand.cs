using System.Collections.Concurrent;
using System.Management.Automation;
using PbsRestore.Restore;

namespace PbsRestore.PowerShell.Commands;

/// <summary>
/// <para type="synopsis">Writes a file archive (root.pxar) of a container or host backup, or a directory of it, into a .zip or .tar file.</para>
/// </summary>
[Cmdlet(VerbsData.Export, "PbsFile", DefaultParameterSetName = ConnectionSet, HelpUri = HelpLinks.ExportPbsFile, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(FileExportResult))]
public sealed class ExportPbsFileCommand : PbsFileArchiveCmdlet
{
    /// <summary>The path inside the archive to export ('/' exports everything).</summary>
    [Parameter(Position = 1)]
    [ValidateNotNullOrEmpty]
    public string Path { get; set; } = "/";

    /// <summary>The .zip or .tar file to write.</summary>
    [Parameter(Mandatory = true, Position = 2)]
    [ValidateNotNullOrEmpty]
    public string Destination { get; set; } = "";

    /// <summary>Zip or Tar; by default from the destination's extension.</summary>
    [Parameter]
    [ValidateSet("Zip", "Tar")]
    public string? Format { get; set; }

    /// <summary>Replace an existing file.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    protected override void ProcessRecord()
    {
        try
        {
            string destination = ResolvePath(Destination);
            var format = Format is not null ? Enum.Parse<FileExportFormat>(Format, ignoreCase: true)
                : destination.EndsWith(".zip", StringComparison.OrdinalIgnoreCase) ? FileExportFormat.Zip
                : destination.EndsWith(".tar", StringComparison.OrdinalIgnoreCase) ? FileExportFormat.Tar
                : throw new PbsException("FormatRequired", PbsErrorKind.InvalidArgument,
                    $"'{System.IO.Path.GetFileName(destination)}' ends in neither .zip nor .tar: name the format with -Format");
            var source = SourceForSnapshot();
            var (reader, archive) = OpenFileArchive(source);
            using (archive)
            {
                try
                {
                    string snapshot = reader.Snapshot.ToString();
                    var entry = Find(archive, Path, snapshot);
                    if (!ShouldProcess(destination, $"write '/{entry.Path}' of {archive.Name} of snapshot {snapshot} as {format}"))
                        return;
                    var counters = new FileRestoreCounters();
                    var warnings = new ConcurrentQueue<string>();
                    var exporter = new FileArchiveExporter(archive.Archive, counters, warnings.Enqueue);
                    string title = $"Exporting /{entry.Path} from {snapshot}";
                    try
                    {
                        var result = Run(ct => exporter.ExportAsync(archive.Name, entry, destination, format, Force, ct), () =>
                        {
                            while (warnings.TryDequeue(out var w)) WriteWarning(w);
                            WriteProgress(new ProgressRecord(1, title, $"{counters.Entries} entries, {ProgressView.Size(counters.Bytes)}") { CurrentOperation = counters.Current ?? "" });
                        });
                        WriteObject(result);
                    }
                    finally
                    {
                        while (warnings.TryDequeue(out var w)) WriteWarning(w);
                        WriteProgress(new ProgressRecord(1, title, "Done") { RecordType = ProgressRecordType.Completed });
                    }
                }
                finally
                {
                    reader.DisposeAsync().AsTask().GetAwaiter().GetResult();
                }
            }
        }
        catch (Exception e) when (IsFailure(e))
        {
            WriteFailure(e, Snapshot);
        }
    }
}
