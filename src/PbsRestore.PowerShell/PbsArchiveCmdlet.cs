using System.Management.Automation;
using System.Security;
using PbsRestore.Formats;
using PbsRestore.PowerShell.Completers;
using PbsRestore.Remote;
using PbsRestore.Restore;
using PbsRestore.Sources;

namespace PbsRestore.PowerShell;

/// <summary>
/// Base of the cmdlets that read one archive of a snapshot (Restore-PbsImage, Measure-PbsRestore): the snapshot
/// and archive parameters, the key, the tuning knobs, and opening the archive read-only with every check that
/// can run before a byte is written.
/// </summary>
public abstract class PbsArchiveCmdlet : PbsSourceCmdlet
{
    /// <summary>Namespace of the snapshot, e.g. 'prod/web' (taken from a piped snapshot object, or a Namespace column of Import-Csv).</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ArgumentCompleter(typeof(NamespaceCompleter))]
    public string? Namespace { get; set; }

    /// <summary>The snapshot: 'vm/100/2024-05-01T10:00:00Z', 'vm/100' for the latest, or an object from Get-PbsSnapshot.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNull]
    [ArgumentCompleter(typeof(SnapshotCompleter))]
    public object Snapshot { get; set; } = null!;

    /// <summary>The archive the cmdlet works on (each cmdlet declares its own -Archive).</summary>
    protected abstract string? ArchiveName { get; }

    /// <summary>Key file of an encrypted backup.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Keyfile { get; set; }

    /// <summary>Password of the key file (else PBS_ENCRYPTION_PASSWORD is used).</summary>
    [Parameter]
    public SecureString? KeyPassword { get; set; }

    /// <summary>Reader sessions (HTTP/2 connections) per snapshot on a server; 4 when omitted.</summary>
    [Parameter]
    [ValidateRange(1, 16)]
    public int Connections { get; set; } = RemoteDatastore.DefaultSessionsPerSnapshot;

    protected override int SessionsPerSnapshot => Connections;

    protected CryptConfig? Crypt { get; private set; }

    private ISnapshotSource? _namedSource;

    protected override void BeginProcessing()
    {
        if (Keyfile is null) return;
        try
        {
            // Opened once for the whole pipeline; a wrong password fails here, before anything is written.
            Crypt = KeyLoader.Open(ResolvePath(Keyfile), KeyPassword);
        }
        catch (PbsException e)
        {
            ThrowTerminatingError(ToErrorRecord(e, Keyfile));
        }
    }

    /// <summary>Options from the common parameters and upstream's PBS_RESTORE_* variables.</summary>
    protected RestoreOptions BaseOptions(int? fetchConcurrency, bool fetchGiven) =>
        new RestoreOptions { FetchConcurrency = fetchConcurrency }.WithEnvironmentDefaults(fetchGiven, decodeGiven: false);

    /// <summary>
    /// Where the current snapshot is read from: a piped snapshot object restores from the source that listed it,
    /// unless a source is named; otherwise the named source, opened once per pipeline.
    /// </summary>
    protected ISnapshotSource SourceForSnapshot()
    {
        var info = SnapshotResolver.AsSnapshotInfo(Snapshot);
        bool sourceNamed = ParameterSetName != ConnectionSet || Connection is not null || Store is not null;
        if (!sourceNamed && info is not null)
        {
            if (SnapshotSources.Of(info) is { } listed) return listed;
            if (Directory.Exists(info.Location)) return new LocalDatastore(info.Location);
        }
        return _namedSource ??= OpenSource();
    }

    /// <summary>Finds the snapshot and opens it (dispose the reader).</summary>
    protected async Task<ISnapshotReader> OpenSnapshotAsync(ISnapshotSource source, CancellationToken ct)
    {
        var ns = Namespace is null ? null : BackupNamespace.Parse(Namespace);
        var reference = await SnapshotResolver.ResolveAsync(source, Snapshot, ns, ct).ConfigureAwait(false);
        return await source.OpenSnapshotAsync(reference, ct).ConfigureAwait(false);
    }

    /// <summary>An opened archive: its reader (dispose it), the restorer, and its manifest entry.</summary>
    protected sealed record OpenedArchive(ISnapshotReader Reader, ArchiveRestorer Restorer, ManifestFile Entry);

    /// <summary>Finds the snapshot and archive and checks the key; reads only the manifest.</summary>
    protected async Task<OpenedArchive> OpenArchiveAsync(ISnapshotSource source, CancellationToken ct)
    {
        var reader = await OpenSnapshotAsync(source, ct).ConfigureAwait(false);
        try
        {
            var restorer = new ArchiveRestorer(reader, Crypt);
            var manifest = await restorer.ReadManifestAsync(ct).ConfigureAwait(false);
            var entry = restorer.ResolveArchive(manifest, ArchiveName ?? "");
            restorer.CheckKey(manifest, entry);
            return new OpenedArchive(reader, restorer, entry);
        }
        catch
        {
            await reader.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    protected override void EndProcessing()
    {
        (_namedSource as IDisposable)?.Dispose();
        _namedSource = null;
    }

    protected static bool IsFailure(Exception e) =>
        e is PbsException or IOException or UnauthorizedAccessException or OperationCanceledException or ArgumentException or HttpRequestException;
}
