using System.Management.Automation;
using PbsRestore.Formats;
using PbsRestore.Restore;

namespace PbsRestore.PowerShell.Commands;

/// <summary>
/// <para type="synopsis">Verifies a snapshot without restoring it: reads and checks every chunk of its archives and reports every bad one.</para>
/// </summary>
[Cmdlet(VerbsDiagnostic.Test, "PbsSnapshot", DefaultParameterSetName = ConnectionSet, HelpUri = HelpLinks.TestPbsSnapshot)]
[OutputType(typeof(VerifyResult))]
public sealed class TestPbsSnapshotCommand : PbsArchiveCmdlet
{
    /// <summary>Which archives to verify, by name with wildcards ('drive-*', 'qemu-server.conf'); all index and blob archives when omitted.</summary>
    [Parameter(Position = 1, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(Completers.ArchiveCompleter))]
    public string? Archive { get; set; }

    protected override string? ArchiveName => Archive;

    /// <summary>Chunk reads in flight; automatic when omitted. PBS_RESTORE_FETCH_CONCURRENCY also sets it.</summary>
    [Parameter]
    [ValidateRange(1, 256)]
    public int FetchConcurrency { get; set; }

    private int _nextActivity = 1;

    protected override void ProcessRecord()
    {
        bool fetchGiven = MyInvocation.BoundParameters.ContainsKey(nameof(FetchConcurrency));
        var options = BaseOptions(fetchGiven ? FetchConcurrency : null, fetchGiven);
        try
        {
            var source = SourceForSnapshot();
            var pattern = Archive is null ? null : new WildcardPattern(Archive, WildcardOptions.IgnoreCase);
            var reader = Run(ct => OpenSnapshotAsync(source, ct));
            try
            {
                // Names and keys of every selected archive are checked before the first chunk is read.
                var restorer = new SnapshotRestorer(reader, Crypt);
                var (_, entries) = Run(ct => restorer.SelectAsync(n => pattern is null || pattern.IsMatch(n), ct));
                var snapshot = Run(restorer.OpenAsync); // opened by the selection: the manifest is not read again
                foreach (var entry in entries)
                {
                    string name = ArchiveNames.DisplayName(entry.FileName);
                    WriteVerbose($"Verifying {name} of {reader.Snapshot} from {source.Location}.");
                    var counters = new RestoreCounters();
                    var progress = new ProgressView(this, _nextActivity++, $"Verifying {name} of {reader.Snapshot}");
                    VerifyResult result;
                    try
                    {
                        result = Run(ct => ArchiveVerifier.VerifyAsync(snapshot.Open(entry), options, counters, ct), () => progress.Update(counters));
                    }
                    catch (Exception e) when (IsFailure(e) && e is not OperationCanceledException)
                    {
                        // The archive could not be verified at all (bad index, lost connection): say so, go on with the next.
                        WriteFailure(e, name);
                        continue;
                    }
                    finally
                    {
                        progress.Complete();
                    }
                    foreach (var b in result.BadChunks)
                        WriteVerbose($"{name}: bad chunk {b.Index} at offset {b.Offset} (digest {b.Digest ?? "-"}): {b.ErrorId}.");
                    WriteVerbose($"{name}: {result.Chunks} chunk(s) checked, {result.BadChunks.Count} bad.");
                    WriteObject(result);
                }
            }
            finally
            {
                reader.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
        }
        catch (Exception e) when (IsFailure(e))
        {
            WriteFailure(e, Snapshot);
        }
    }
}
