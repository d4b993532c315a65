using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;
using PbsRestore.Sources;

namespace PbsRestore.PowerShell.Completers;

/// <summary>
/// Completes -Snapshot with snapshot strings ('vm/100/2024-05-01T10:00:00Z') of the bound -Namespace (the root
/// when omitted); a word starting with 'ns/' completes the namespaced form ('ns/dev/vm/102/...') of every namespace.
/// </summary>
public sealed class SnapshotCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        try
        {
            var (prefix, _) = CompletionSupport.Word(wordToComplete);
            bool namespaced = CompletionSupport.BoundString(fakeBoundParameters, "Namespace") is null
                              && prefix.StartsWith("ns/", StringComparison.OrdinalIgnoreCase);
            var ns = CompletionSupport.BoundNamespace(fakeBoundParameters);
            if (ns is null) return CompletionSupport.None;
            var source = CompletionSupport.OpenSource(fakeBoundParameters, out string? key);
            if (source is null) return CompletionSupport.None;
            var snapshots = CompletionSupport.Run(key, namespaced ? "snapshots|*" : $"snapshots|{ns}", source as IDisposable, async ct =>
            {
                if (!namespaced) return await source.ListSnapshotsAsync(ns, null, null, ct).ConfigureAwait(false);
                var all = new List<SnapshotInfo>();
                foreach (var n in await source.ListNamespacesAsync(BackupNamespace.Root, BackupNamespace.MaxDepth, ct).ConfigureAwait(false))
                    if (!n.IsRoot) all.AddRange(await source.ListSnapshotsAsync(n, null, null, ct).ConfigureAwait(false));
                return (IReadOnlyList<SnapshotInfo>)all;
            });
            if (snapshots is null) return CompletionSupport.None;
            return CompletionSupport.Results(snapshots
                .OrderBy(s => s.Namespace, StringComparer.Ordinal).ThenBy(s => s.BackupType, StringComparer.Ordinal)
                .ThenBy(s => s.BackupId, StringComparer.Ordinal).ThenBy(s => s.BackupTime)
                .Select(s => (namespaced ? s.Ref.ToString() : s.Snapshot, ToolTip(s))), wordToComplete);
        }
        catch (Exception)
        {
            return CompletionSupport.None;
        }
    }

    internal static string ToolTip(SnapshotInfo s) =>
        (s.Namespace.Length == 0 ? "" : $"[{s.Namespace}] ") + $"{s.Snapshot}  {PbsFormat.Size(s.Size)}"
        + (s.Encrypted ? "  encrypted" : "") + "  " + string.Join(", ", s.Files.Select(f => f.ArchiveName));
}
