using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;
using PbsRestore.Formats;
using PbsRestore.Sources;

namespace PbsRestore.PowerShell.Completers;

/// <summary>
/// Completes -Archive with the archive names (as users type them: 'drive-scsi0.img', 'qemu-server.conf') of the
/// bound -Snapshot: a snapshot object, or a string ('vm/100/...' or 'vm/100' for the latest) looked up in the
/// bound source and namespace.
/// </summary>
public sealed class ArchiveCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        try
        {
            var snapshot = Find(fakeBoundParameters);
            if (snapshot is null) return CompletionSupport.None;
            return CompletionSupport.Results(snapshot.Files
                .Where(f => f.Name != FileFormats.ManifestBlobName)
                .Select(f => (f.ArchiveName, $"{f.ArchiveName}  {PbsFormat.Size(f.Size)}  {ArchiveNames.KindOf(f.Name)}  {f.CryptMode}")), wordToComplete);
        }
        catch (Exception)
        {
            return CompletionSupport.None;
        }
    }

    private static SnapshotInfo? Find(IDictionary bound)
    {
        var value = CompletionSupport.Bound(bound, "Snapshot");
        if (SnapshotResolver.AsSnapshotInfo(value) is { } info) return info;
        if (value is not string text || string.IsNullOrWhiteSpace(text)) return null;
        var ns = CompletionSupport.BoundNamespace(bound);
        if (ns is null) return null;
        SnapshotSpec spec;
        try { spec = SnapshotSpec.Parse(text); }
        catch (Exception) { return null; }
        var effectiveNs = spec.Namespace ?? ns;
        var source = CompletionSupport.OpenSource(bound, out string? key);
        if (source is null) return null;
        var group = CompletionSupport.Run(key, $"group|{effectiveNs}|{spec.BackupType}/{spec.BackupId}", source as IDisposable,
            ct => source.ListSnapshotsAsync(effectiveNs, spec.BackupType, spec.BackupId, ct));
        if (group is null) return null;
        return spec.BackupTime is { } time
            ? group.FirstOrDefault(s => s.Ref.BackupTime == time)
            : group.OrderBy(s => s.Ref.BackupTime).LastOrDefault();
    }
}
