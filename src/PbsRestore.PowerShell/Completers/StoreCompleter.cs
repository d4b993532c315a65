using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;
using PbsRestore.Sources.Remote;

namespace PbsRestore.PowerShell.Completers;

/// <summary>Completes -Store with the datastore names of the server (the bound -Connection, else the session default).</summary>
public sealed class StoreCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        try
        {
            var client = CompletionSupport.OpenClient(fakeBoundParameters, useStore: false, out string? key, out bool owned);
            if (client is null) return CompletionSupport.None;
            var stores = CompletionSupport.Run(key, "datastores", owned ? client : null, ct => client.ListDatastoresAsync(ct));
            if (stores is null) return CompletionSupport.None;
            return CompletionSupport.Results(stores.OrderBy(s => s.Name, StringComparer.Ordinal)
                .Select(s => (s.Name, string.IsNullOrEmpty(s.Comment) ? $"datastore {s.Name}" : $"datastore {s.Name}: {s.Comment}")), wordToComplete);
        }
        catch (Exception)
        {
            return CompletionSupport.None;
        }
    }
}
