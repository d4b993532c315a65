using System.Management.Automation;
using PbsRestore.Formats.Pxar;

namespace PbsRestore.PowerShell.Commands;

/// <summary>
/// <para type="synopsis">Lists files and directories inside a file archive (root.pxar) of a container or host backup.</para>
/// </summary>
[Cmdlet(VerbsCommon.Get, "PbsFile", DefaultParameterSetName = ConnectionSet, HelpUri = HelpLinks.GetPbsFile)]
[OutputType(typeof(PbsFileInfo))]
public sealed class GetPbsFileCommand : PbsFileArchiveCmdlet
{
    /// <summary>Path inside the archive ('/' is its root). A directory lists its entries, anything else itself.</summary>
    [Parameter(Position = 1)]
    [ValidateNotNullOrEmpty]
    public string Path { get; set; } = "/";

    /// <summary>List the directory's whole subtree.</summary>
    [Parameter]
    public SwitchParameter Recurse { get; set; }

    /// <summary>A wildcard on entry names (e.g. '*.conf').</summary>
    [Parameter]
    public string? Filter { get; set; }

    /// <summary>Wildcards on entry names; an entry matching any of them is listed.</summary>
    [Parameter]
    public string[]? Include { get; set; }

    protected override void ProcessRecord()
    {
        try
        {
            var source = SourceForSnapshot();
            var (reader, archive) = OpenFileArchive(source);
            using (archive)
            {
                try
                {
                    string snapshot = reader.Snapshot.ToString();
                    var start = Find(archive, Path, snapshot);
                    var patterns = new List<WildcardPattern>();
                    if (Filter is not null) patterns.Add(new WildcardPattern(Filter, WildcardOptions.IgnoreCase));
                    var include = (Include ?? []).Select(i => new WildcardPattern(i, WildcardOptions.IgnoreCase)).ToList();
                    bool Wanted(PxarEntry e) =>
                        patterns.All(p => p.IsMatch(e.Name)) && (include.Count == 0 || include.Any(p => p.IsMatch(e.Name)));
                    void Emit(PxarEntry e)
                    {
                        if (!Wanted(e)) return;
                        var target = e.Type == PxarEntryType.Hardlink ? Run(ct => archive.Archive.ResolveHardlinkAsync(e, ct)) : null;
                        WriteObject(new PbsFileInfo(e, target, snapshot, archive.Name));
                    }
                    if (start.Type != PxarEntryType.Directory)
                    {
                        Emit(start);
                        return;
                    }
                    if (Recurse)
                    {
                        // Walked on the pipeline thread: entries stream out as they are read.
                        var walk = archive.Archive.WalkAsync(start, StopToken).GetAsyncEnumerator(StopToken);
                        try
                        {
                            while (Run(async _ => await walk.MoveNextAsync())) Emit(walk.Current);
                        }
                        finally
                        {
                            walk.DisposeAsync().AsTask().GetAwaiter().GetResult();
                        }
                    }
                    else
                        foreach (var e in Run(ct => archive.Archive.ListAsync(start, ct))) Emit(e);
                    WriteVerbose($"{archive.Name} of {snapshot}: {archive.ChunksFetched} of {archive.ChunkCount} chunks read.");
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
