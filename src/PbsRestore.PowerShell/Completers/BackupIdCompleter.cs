using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;
using PbsRestore.Sources;

namespace PbsRestore.PowerShell.Completers;

/// <summary>
/// Completes -BackupId with the backup ids Get-PbsSnapshot would find: those of the bound -Namespace (the root when
/// omitted) and the namespaces below it down to -MaxDepth, of the bound -BackupType when given.
/// </summary>
public sealed class BackupIdCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        try
        {
            var ns = CompletionSupport.BoundNamespace(fakeBoundParameters);
            if (ns is null) return CompletionSupport.None;
            int maxDepth = BackupNamespace.MaxDepth;
            if (CompletionSupport.BoundString(fakeBoundParameters, "MaxDepth") is { } depthText)
            {
                if (!int.TryParse(depthText, out maxDepth) || maxDepth < 0) return CompletionSupport.None;
            }
            string? type = CompletionSupport.BoundString(fakeBoundParameters, "BackupType")?.ToLowerInvariant();
            var source = CompletionSupport.OpenSource(fakeBoundParameters, out string? key);
            if (source is null) return CompletionSupport.None;
            var groups = CompletionSupport.Run(key, $"groups|{ns}|{maxDepth}", source as IDisposable, async ct =>
            {
                var all = new List<BackupGroupInfo>();
                foreach (var n in await source.ListNamespacesAsync(ns, maxDepth, ct).ConfigureAwait(false))
                    all.AddRange(await source.ListGroupsAsync(n, ct).ConfigureAwait(false));
                return all;
            });
            if (groups is null) return CompletionSupport.None;
            var ids = groups.Where(g => type is null || g.BackupType == type)
                .GroupBy(g => g.BackupId, StringComparer.Ordinal)
                .OrderBy(g => g.Key, StringComparer.Ordinal)
                .Select(g => (g.Key, string.Join(", ", g.Select(x => (x.Namespace.IsRoot ? "" : x.Namespace + ": ") + x.Group).Distinct())));
            return CompletionSupport.Results(ids, wordToComplete);
        }
        catch (Exception)
        {
            return CompletionSupport.None;
        }
    }
}
