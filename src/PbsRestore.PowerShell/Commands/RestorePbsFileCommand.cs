using System.Collections.Concurrent;
using System.Management.Automation;
using PbsRestore.Restore;

namespace PbsRestore.PowerShell.Commands;

/// <summary>
/// <para type="synopsis">Restores files and directories from a file archive (root.pxar) of a container or host backup into a folder.</para>
/// </summary>
[Cmdlet(VerbsData.Restore, "PbsFile", DefaultParameterSetName = ConnectionSet, HelpUri = HelpLinks.RestorePbsFile, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(FileRestoreResult))]
public sealed class RestorePbsFileCommand : PbsFileArchiveCmdlet
{
    /// <summary>Paths inside the archive to restore ('/' restores everything).</summary>
    [Parameter(Position = 1)]
    [ValidateNotNullOrEmpty]
    public string[] Path { get; set; } = ["/"];

    /// <summary>The folder to restore into (created if missing). A directory lands there under its own name; '/' restores the archive's contents into it.</summary>
    [Parameter(Mandatory = true, Position = 2)]
    [ValidateNotNullOrEmpty]
    public string Destination { get; set; } = "";

    /// <summary>Replace existing files (directories are merged).</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    private int _nextActivity = 1;

    protected override void ProcessRecord()
    {
        try
        {
            var source = SourceForSnapshot();
            string destination = ResolvePath(Destination);
            var (reader, archive) = OpenFileArchive(source);
            using (archive)
            {
                try
                {
                    string snapshot = reader.Snapshot.ToString();
                    foreach (var path in Path)
                    {
                        var entry = Find(archive, path, snapshot);
                        if (!ShouldProcess(destination, $"restore '{"/" + entry.Path}' ({entry.Type}) of {archive.Name} of snapshot {snapshot}"))
                            continue;
                        var counters = new FileRestoreCounters();
                        var warnings = new ConcurrentQueue<string>();
                        var restorer = new FileRestorer(archive.Archive, new FileRestoreOptions { Force = Force }, counters, warnings.Enqueue);
                        int activity = _nextActivity++;
                        string title = $"Restoring {"/" + entry.Path} from {snapshot}";
                        var clock = System.Diagnostics.Stopwatch.StartNew();
                        try
                        {
                            var result = Run(ct => restorer.RestoreAsync(archive.Name, entry, destination, ct), () =>
                            {
                                while (warnings.TryDequeue(out var w)) WriteWarning(w);
                                double s = Math.Max(clock.Elapsed.TotalSeconds, 0.001);
                                WriteProgress(new ProgressRecord(activity, title,
                                    $"{counters.Files} files, {ProgressView.Size(counters.Bytes)}, {counters.Files / s:F0} files/s, {counters.Bytes / s / 1e6:F1} MB/s")
                                {
                                    CurrentOperation = counters.Current ?? "",
                                });
                            });
                            while (warnings.TryDequeue(out var w)) WriteWarning(w);
                            WriteObject(result);
                        }
                        finally
                        {
                            while (warnings.TryDequeue(out var w)) WriteWarning(w);
                            WriteProgress(new ProgressRecord(activity, title, "Done") { RecordType = ProgressRecordType.Completed });
                        }
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
