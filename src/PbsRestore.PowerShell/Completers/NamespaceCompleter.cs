using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;
using PbsRestore.Sources;

namespace PbsRestore.PowerShell.Completers;

/// <summary>Completes -Namespace with the namespaces of the source the command names (folder, server, connection).</summary>
public sealed class NamespaceCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        try
        {
            var source = CompletionSupport.OpenSource(fakeBoundParameters, out string? key);
            if (source is null) return CompletionSupport.None;
            var namespaces = CompletionSupport.Run(key, "namespaces", source as IDisposable,
                ct => source.ListNamespacesAsync(BackupNamespace.Root, BackupNamespace.MaxDepth, ct));
            if (namespaces is null) return CompletionSupport.None;
            return CompletionSupport.Results(namespaces.Where(n => !n.IsRoot)
                .Select(n => n.ToString()).Order(StringComparer.Ordinal)
                .Select(n => (n, $"namespace {n}")), wordToComplete);
        }
        catch (Exception)
        {
            return CompletionSupport.None;
        }
    }
}
