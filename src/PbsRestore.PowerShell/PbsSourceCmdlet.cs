using System.Management.Automation;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Security;
using PbsRestore.PowerShell.Completers;
using PbsRestore.Sources.Remote;
using PbsRestore.Sources;
using PbsRestore.Sources.Local;

namespace PbsRestore.PowerShell;

/// <summary>
/// Declares once, for every cmdlet that reads snapshots, where they come from: a datastore folder
/// (-Datastore), a server repository (-Repository, -Fingerprint, -Credential), or a connection from
/// Connect-PbsServer (-Connection, else the session default, with -Store to pick another datastore).
/// </summary>
public abstract class PbsSourceCmdlet : PbsCmdlet
{
    protected const string FolderSet = "Folder";
    protected const string RepositorySet = "Repository";
    protected const string ConnectionSet = "Connection";

    /// <summary>Path of a datastore folder (the folder holding .chunks).</summary>
    [Parameter(Mandatory = true, ParameterSetName = FolderSet)]
    [ValidateNotNullOrEmpty]
    public string Datastore { get; set; } = "";

    /// <summary>A PBS repository, [[user@realm[!token]@]host[:port]:]datastore. PBS_REPOSITORY is used when omitted in this set.</summary>
    [Parameter(Mandatory = true, ParameterSetName = RepositorySet)]
    [ValidateNotNullOrEmpty]
    public string Repository { get; set; } = "";

    /// <summary>SHA-256 fingerprint of the server certificate (colon hex); PBS_FINGERPRINT when omitted.</summary>
    [Parameter(ParameterSetName = RepositorySet)]
    public string? Fingerprint { get; set; }

    /// <summary>User (user@realm) or API token (user@realm!token) and its password or secret; PBS_PASSWORD when omitted.</summary>
    [Parameter(ParameterSetName = RepositorySet)]
    [Credential]
    public PSCredential? Credential { get; set; }

    /// <summary>A connection from Connect-PbsServer; the session default when omitted.</summary>
    [Parameter(ParameterSetName = ConnectionSet)]
    public PbsServerConnection? Connection { get; set; }

    /// <summary>Datastore on the connected server; the connection's datastore when omitted.</summary>
    [Parameter(ParameterSetName = ConnectionSet)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(StoreCompleter))]
    public string? Store { get; set; }

    internal const string DefaultConnectionVariable = "DefaultPbsServer";

    /// <summary>The connection made the session default by Connect-PbsServer, if any.</summary>
    protected PbsServerConnection? DefaultConnection =>
        SessionState.PSVariable.GetValue("global:" + DefaultConnectionVariable) is PbsServerConnection c && c.IsConnected ? c : null;

    /// <summary>Reader sessions per snapshot for server sources.</summary>
    protected virtual int SessionsPerSnapshot => RemoteDatastore.DefaultSessionsPerSnapshot;

    private readonly Dictionary<string, ISnapshotSource> _opened = new(StringComparer.Ordinal);

    /// <summary>
    /// The source the parameters name (SourceFactory reads them as the completers do). Call on the pipeline thread
    /// (it reads session state).
    /// </summary>
    private protected SourceRequest DescribeSource() => ParameterSetName switch
    {
        FolderSet => SourceFactory.Describe(ResolvePath(Datastore), null, null, null, null, null, null),
        RepositorySet => SourceFactory.Describe(null, Repository, Fingerprint, Credential, null, null, null),
        _ => SourceFactory.Describe(null, null, null, null, Connection, Store, DefaultConnection),
    } ?? throw SourceFactory.NoSource();

    /// <summary>
    /// Opens the source the parameters name. Call on the pipeline thread (it reads session state). The command
    /// owns it: it is closed when the command ends (a client opened for -Repository included).
    /// </summary>
    protected ISnapshotSource OpenSource() => OpenSource(DescribeSource());

    /// <summary>Opens a request's source once per command; closed by <see cref="CloseSources"/> when the command ends.</summary>
    private protected ISnapshotSource OpenSource(SourceRequest request)
    {
        if (!_opened.TryGetValue(request.Key, out var source))
            _opened[request.Key] = source = SourceFactory.Open(request, SessionsPerSnapshot);
        return source;
    }

    /// <summary>Closes every source this command opened (at EndProcessing, and again on Dispose after a stop or a failure).</summary>
    protected void CloseSources()
    {
        foreach (var source in _opened.Values) (source as IDisposable)?.Dispose();
        _opened.Clear();
    }

    protected override void EndProcessing() => CloseSources();

    protected override void DisposeResources() => CloseSources();

    /// <summary>Settings from parameters and PBS_* variables; a credential's user name replaces the repository's.</summary>
    internal static PbsConnectionSettings SettingsFor(string? repository, string? fingerprint, PSCredential? credential)
    {
        string? secret = credential is null ? null : Plain(credential.Password);
        var settings = PbsConnectionSettings.Resolve(repository, fingerprint, secret);
        if (credential is not null && !string.IsNullOrEmpty(credential.UserName) && credential.UserName != settings.Repository.AuthId)
        {
            string user = credential.UserName.Trim();
            if (!(user.Contains('!') ? user[..user.IndexOf('!')] : user).Contains('@'))
                throw PbsRepository.NoRealm(user);
            var repo = PbsRepository.Parse($"{credential.UserName}@{settings.Repository.Authority}:{settings.Repository.Store}");
            settings = PbsConnectionSettings.Resolve(repo.ToString(), fingerprint, secret);
        }
        return settings;
    }

    private static string Plain(SecureString s)
    {
        IntPtr p = Marshal.SecureStringToGlobalAllocUnicode(s);
        try { return Marshal.PtrToStringUni(p, s.Length); }
        finally { Marshal.ZeroFreeGlobalAllocUnicode(p); }
    }
}

/// <summary>
/// Remembers which source listed a snapshot object, so that piping it into Restore-PbsImage restores from the
/// same place with the same credentials: the request, not an open client, so the listing command can close what it
/// opened and the restoring command opens (and closes) its own. Weak: objects are collected as usual.
/// </summary>
internal static class SnapshotSources
{
    private static readonly ConditionalWeakTable<SnapshotInfo, SourceRequest> Table = new();

    public static SnapshotInfo Remember(SnapshotInfo info, SourceRequest source)
    {
        Table.AddOrUpdate(info, source);
        return info;
    }

    public static SourceRequest? Of(SnapshotInfo info) => Table.TryGetValue(info, out var s) ? s : null;
}
