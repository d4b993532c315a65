using System.Collections;
using System.Collections.Concurrent;
using System.Management.Automation;
using System.Management.Automation.Runspaces;
using System.Runtime.CompilerServices;
using PbsRestore.Sources.Remote;
using PbsRestore.Sources;
using PbsRestore.Sources.Local;

namespace PbsRestore.PowerShell.Completers;

/// <summary>
/// What the argument completers share: reading the parameters already on the command line (fakeBoundParameters),
/// opening the source they name exactly as the cmdlets would (folder, repository, connection, the session
/// default, PBS_REPOSITORY), running a listing with a time limit, matching the word being completed, and quoting.
/// Nothing here throws: any failure means "no completions".
/// </summary>
internal static class CompletionSupport
{
    /// <summary>How long a completion may wait for a server before it gives up and offers nothing.</summary>
    internal static readonly TimeSpan ServerTimeout = TimeSpan.FromSeconds(3);

    /// <summary>How long a server listing is reused, so that pressing Tab again does not ask the server again.</summary>
    private static readonly TimeSpan CacheLifetime = TimeSpan.FromSeconds(10);

    private static readonly ConcurrentDictionary<string, (DateTime At, object Value)> Cache = new(StringComparer.Ordinal);

    public static readonly IEnumerable<CompletionResult> None = Array.Empty<CompletionResult>();

    /// <summary>A bound parameter's value (unwrapped), by name, case-insensitively; null when absent.</summary>
    public static object? Bound(IDictionary? bound, string name)
    {
        if (bound is null) return null;
        foreach (DictionaryEntry e in bound)
            if (e.Key is string k && string.Equals(k, name, StringComparison.OrdinalIgnoreCase))
                return e.Value is PSObject p ? p.BaseObject : e.Value;
        return null;
    }

    /// <summary>A bound parameter's value as text (a string, or a scalar's text); null when absent or not text.</summary>
    public static string? BoundString(IDictionary? bound, string name) => Bound(bound, name) switch
    {
        null => null,
        string s => s,
        IEnumerable => null,
        var o when o.GetType().IsPrimitive => Convert.ToString(o, System.Globalization.CultureInfo.InvariantCulture),
        _ => null,
    };

    /// <summary>The word without an opening quote, and that quote (or null).</summary>
    public static (string Prefix, char? Quote) Word(string? wordToComplete)
    {
        string w = wordToComplete ?? "";
        if (w.Length > 0 && w[0] is '\'' or '"' or '\u2018' or '\u2019' or '\u201C' or '\u201D')
        {
            char q = w[0] is '"' or '\u201C' or '\u201D' ? '"' : '\'';
            w = w[1..];
            if (w.Length > 0 && w[^1] is '\'' or '"' or '\u2018' or '\u2019' or '\u201C' or '\u201D') w = w[..^1];
            return (w, q);
        }
        return (w, null);
    }

    public static bool Matches(string candidate, string prefix) =>
        candidate.StartsWith(prefix, StringComparison.OrdinalIgnoreCase);

    /// <summary>The text to insert: quoted when the user opened a quote or the value needs one.</summary>
    public static string Quote(string value, char? quote)
    {
        bool needs = quote is not null || value.Length == 0 || value[0] is '@' or '#' or '-' or '<' or '>'
                     || value.Any(c => char.IsWhiteSpace(c) || c is '\'' or '"' or '`' or '$' or '&' or '(' or ')' or '{' or '}' or ';' or ',' or '|'
                         or '\u2018' or '\u2019' or '\u201C' or '\u201D');
        if (!needs) return value;
        if (quote == '"')
            return "\"" + value.Replace("`", "``").Replace("$", "`$").Replace("\"", "`\"") + "\"";
        return "'" + value.Replace("'", "''") + "'";
    }

    /// <summary>Completion results for the candidates that match the word, in the given order, without duplicates.</summary>
    public static IEnumerable<CompletionResult> Results(IEnumerable<(string Value, string ToolTip)> candidates, string? wordToComplete)
    {
        var (prefix, quote) = Word(wordToComplete);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var results = new List<CompletionResult>();
        foreach (var (value, toolTip) in candidates)
        {
            if (string.IsNullOrEmpty(value) || !Matches(value, prefix) || !seen.Add(value)) continue;
            results.Add(new CompletionResult(Quote(value, quote), value, CompletionResultType.ParameterValue,
                string.IsNullOrEmpty(toolTip) ? value : toolTip));
        }
        return results;
    }

    /// <summary>Runs a nested command in the current runspace (reads session state); null on any failure.</summary>
    private static object? Nested(Action<System.Management.Automation.PowerShell> build)
    {
        try
        {
            if (Runspace.DefaultRunspace is null) return null;
            using var ps = System.Management.Automation.PowerShell.Create(RunspaceMode.CurrentRunspace);
            build(ps);
            var output = ps.Invoke();
            return output.Count > 0 ? output[0]?.BaseObject : null;
        }
        catch (Exception)
        {
            return null;
        }
    }

    /// <summary>$global:DefaultPbsServer if it is a live connection.</summary>
    public static PbsServerConnection? DefaultConnection() =>
        Nested(ps => ps.AddCommand("Get-Variable").AddParameter("Name", PbsSourceCmdlet.DefaultConnectionVariable)
            .AddParameter("Scope", "Global").AddParameter("ValueOnly").AddParameter("ErrorAction", ActionPreference.Ignore))
            is PbsServerConnection { IsConnected: true } c ? c : null;

    /// <summary>A user path as a file-system path, relative to the current PowerShell location (as the cmdlets resolve it).</summary>
    public static string? ResolvePath(string path)
    {
        if (Nested(ps => ps.AddScript("param($p) $ExecutionContext.SessionState.Path.GetUnresolvedProviderPathFromPSPath($p)").AddArgument(path))
            is string resolved && resolved.Length > 0)
            return resolved;
        try { return Path.GetFullPath(path); }
        catch (Exception) { return null; }
    }

    /// <summary>
    /// What the bound parameters name as the source, read by <see cref="SourceFactory"/> exactly as the cmdlets read
    /// theirs: -Datastore, -Repository (with -Fingerprint, -Credential), -Connection or the session default (with
    /// -Store), PBS_REPOSITORY. Null when there is none or it cannot be described (a folder without .chunks).
    /// </summary>
    public static SourceRequest? Describe(IDictionary? bound, bool useStore = true)
    {
        try
        {
            if (BoundString(bound, "Datastore") is { } folder)
            {
                if (string.IsNullOrWhiteSpace(folder)) return null;
                string? path = ResolvePath(folder);
                return path is null || !Directory.Exists(Path.Combine(path, ".chunks")) ? null : SourceRequest.ForFolder(path);
            }
            string? repository = BoundString(bound, "Repository");
            if (repository is not null && string.IsNullOrWhiteSpace(repository)) return null;
            string? store = useStore ? BoundString(bound, "Store") : null;
            if (store is not null && string.IsNullOrWhiteSpace(store)) return null;
            var given = Bound(bound, "Connection") as PbsServerConnection;
            var connection = repository is not null ? null : given ?? DefaultConnection();
            return SourceFactory.Describe(null, repository, BoundString(bound, "Fingerprint"), Bound(bound, "Credential") as PSCredential,
                connection is { IsConnected: true } ? connection : null, store, null);
        }
        catch (Exception)
        {
            return null;
        }
    }

    /// <summary>The snapshot source the bound parameters name (dispose it); <paramref name="key"/> identifies it for the cache.</summary>
    public static ISnapshotSource? OpenSource(IDictionary? bound, out string? key)
    {
        key = null;
        try
        {
            var request = Describe(bound);
            if (request is null) return null;
            var source = SourceFactory.Open(request, 1);
            // A folder is read afresh each time; a server's listing is reused for a few seconds.
            key = request.Folder is null ? request.Key : null;
            return source;
        }
        catch (Exception)
        {
            return null;
        }
    }

    /// <summary>A client for the server the bound parameters name; <paramref name="owned"/> when the caller must dispose it.</summary>
    public static PbsClient? OpenClient(IDictionary? bound, bool useStore, out string? key, out bool owned)
    {
        key = null;
        owned = false;
        try
        {
            var request = Describe(bound, useStore);
            if (request is null || request.Folder is not null) return null;
            var client = SourceFactory.OpenClient(request, useStore, out owned);
            key = request.Key;
            return client;
        }
        catch (Exception)
        {
            return null;
        }
    }

    /// <summary>
    /// Runs a listing off the pipeline thread with a time limit; on a server the result is reused for a few seconds
    /// (per source and <paramref name="what"/>). Returns null on failure or timeout. Disposes <paramref name="owned"/>
    /// once the work has ended, even after a timeout.
    /// </summary>
    public static T? Run<T>(string? key, string what, IDisposable? owned, Func<CancellationToken, Task<T>> work) where T : class
    {
        string? cacheKey = key is null ? null : key + "|" + what;
        if (cacheKey is not null && Cache.TryGetValue(cacheKey, out var hit) && DateTime.UtcNow - hit.At < CacheLifetime && hit.Value is T cached)
        {
            owned?.Dispose();
            return cached;
        }
        var cts = new CancellationTokenSource(ServerTimeout);
        Task<T> task;
        try
        {
            task = Task.Run(() => work(cts.Token));
        }
        catch (Exception)
        {
            owned?.Dispose();
            cts.Dispose();
            return null;
        }
        _ = task.ContinueWith(_ =>
        {
            owned?.Dispose();
            cts.Dispose();
        }, TaskScheduler.Default);
        try
        {
            if (!task.Wait(ServerTimeout + TimeSpan.FromMilliseconds(500))) return null;
            var value = task.Result;
            if (cacheKey is not null && value is not null)
            {
                if (Cache.Count > 64) Cache.Clear();
                Cache[cacheKey] = (DateTime.UtcNow, value);
            }
            return value;
        }
        catch (Exception)
        {
            return null;
        }
    }

    /// <summary>The namespace a bound -Namespace names (the root when absent); null when it is not a valid one.</summary>
    public static BackupNamespace? BoundNamespace(IDictionary? bound)
    {
        try { return BackupNamespace.Parse(BoundString(bound, "Namespace")); }
        catch (Exception) { return null; }
    }
}
