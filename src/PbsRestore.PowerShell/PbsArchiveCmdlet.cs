using System.Management.Automation;
using System.Security;
using PbsRestore.Formats;
using PbsRestore.PowerShell.Completers;
using PbsRestore.Sources.Remote;
using PbsRestore.Restore;
using PbsRestore.Sources;
using PbsRestore.Destinations;
using PbsRestore.Sources.Local;

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

    protected override void BeginProcessing()
    {
        if (Keyfile is null) return;
        string path = ResolvePath(Keyfile);
        try
        {
            // Opened once for the whole pipeline; a wrong password fails here, before anything is written.
            try
            {
                Crypt = KeyLoader.Open(path, KeyPassword);
            }
            catch (PbsKeyException e) when (e.ErrorId == "KeyPasswordRequired" && PromptForKeyPassword(path) is { } typed)
            {
                using (typed) Crypt = KeyLoader.Open(path, typed);
            }
        }
        catch (PbsException e)
        {
            ThrowTerminatingError(ToErrorRecord(e, Keyfile));
        }
    }

    /// <summary>
    /// Asks for the key file's password when neither -KeyPassword nor PBS_ENCRYPTION_PASSWORD gave one, so that the
    /// user need not type the command again. Null when the host cannot ask (pwsh -NonInteractive, a job, a runspace
    /// without a UI): then the KeyPasswordRequired error stands.
    /// </summary>
    private SecureString? PromptForKeyPassword(string keyfile)
    {
        try
        {
            if (Host?.UI is not { } ui) return null;
            ui.Write($"Password for key file '{keyfile}': ");
            var typed = ui.ReadLineAsSecureString();
            return typed is { Length: > 0 } ? typed : null;
        }
        catch (Exception e) when (e is PSInvalidOperationException or System.Management.Automation.Host.HostException or NotImplementedException or InvalidOperationException)
        {
            return null;
        }
    }

    /// <summary>Options from the common parameters and upstream's PBS_RESTORE_* variables.</summary>
    protected RestoreOptions BaseOptions(int? fetchConcurrency, bool fetchGiven) =>
        new RestoreOptions { FetchConcurrency = fetchConcurrency }.WithEnvironmentDefaults(fetchGiven, decodeGiven: false);

    /// <summary>
    /// Where the current snapshot is read from: a piped snapshot object restores from the source that listed it,
    /// unless a source is named; otherwise the named source. Each is opened once per pipeline and closed at its end.
    /// </summary>
    protected ISnapshotSource SourceForSnapshot()
    {
        var info = SnapshotResolver.AsSnapshotInfo(Snapshot);
        bool sourceNamed = ParameterSetName != ConnectionSet || Connection is not null || Store is not null;
        if (!sourceNamed && info is not null)
        {
            if (SnapshotSources.Of(info) is { } listed) return OpenSource(listed);
            if (Directory.Exists(info.Location)) return OpenSource(SourceRequest.ForFolder(info.Location));
        }
        return OpenSource();
    }

    /// <summary>Finds the snapshot and opens it (dispose the reader).</summary>
    protected async Task<ISnapshotReader> OpenSnapshotAsync(ISnapshotSource source, CancellationToken ct)
    {
        var ns = Namespace is null ? null : BackupNamespace.Parse(Namespace);
        var reference = await SnapshotResolver.ResolveAsync(source, Snapshot, ns, ct).ConfigureAwait(false);
        return await source.OpenSnapshotAsync(reference, ct).ConfigureAwait(false);
    }

    /// <summary>An opened archive: its reader (dispose it) and the archive (manifest read once, resolved, key checked).</summary>
    protected sealed record OpenedArchive(ISnapshotReader Reader, Sources.OpenedArchive Archive)
    {
        public ManifestFile Entry => Archive.Entry;
    }

    /// <summary>Finds the snapshot and archive and checks the key; reads only the manifest.</summary>
    protected async Task<OpenedArchive> OpenArchiveAsync(ISnapshotSource source, CancellationToken ct)
    {
        var reader = await OpenSnapshotAsync(source, ct).ConfigureAwait(false);
        try
        {
            var archive = await Sources.OpenedSnapshot.OpenArchiveAsync(reader, Crypt, ArchiveName ?? "", ct).ConfigureAwait(false);
            return new OpenedArchive(reader, archive);
        }
        catch
        {
            await reader.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// Asks before an archive is written to <paramref name="destination"/> (Restore-PbsImage, Measure-PbsRestore
    /// -Destination): ShouldProcess always; for a block device the question names the device, its size and model
    /// and is asked under default preferences, as a ConfirmImpact High cmdlet would (Clear-Disk, Format-Volume):
    /// only -Confirm:$false or $ConfirmPreference = 'None' skip it. -Force is the permission to overwrite (checked
    /// before), never the answer to this question. Refused here (DeviceTooSmall, DeviceInUse, ...) before asking.
    /// </summary>
    protected bool ShouldWrite(string destination, ManifestFile entry, string action)
    {
        bool device = ImageDestinations.IsDevice(destination) && entry.Kind != ArchiveKind.Blob;
        if (device)
        {
            var info = DeviceDestination.Check(destination, entry.Size);
            string what = info.Description is { Length: > 0 } d ? $"{d}, {ProgressView.Size(info.Size)}" : ProgressView.Size(info.Size);
            action = $"overwrite everything on block device {destination} ({what}): {action}";
        }
        if (!ShouldProcess(destination, action)) return false;
        return !device || !DeviceNeedsPrompt() || ShouldContinue($"Are you sure you want to {action}?", $"Overwrite block device {destination}");
    }

    /// <summary>
    /// Whether ShouldProcess left the device question unasked: -Confirm was not given (either value decides alone)
    /// and $ConfirmPreference is High (Low or Medium made ShouldProcess ask already; None means never ask).
    /// </summary>
    private bool DeviceNeedsPrompt()
    {
        if (MyInvocation.BoundParameters.ContainsKey("Confirm")) return false;
        var preference = SessionState.PSVariable.GetValue("ConfirmPreference");
        var level = preference is ConfirmImpact c ? c
            : Enum.TryParse(preference?.ToString(), ignoreCase: true, out ConfirmImpact parsed) ? parsed : ConfirmImpact.High;
        return level == ConfirmImpact.High;
    }

    /// <summary>
    /// What an error is about, for its TargetObject: the destination for destination, device and resume errors (and
    /// file system errors), the archive for data errors, the key file for key errors, else the snapshot.
    /// </summary>
    protected object? FailureTarget(Exception e, string? destination)
    {
        string? id = (e as PbsException)?.ErrorId;
        if (destination is not null && (e is IOException or UnauthorizedAccessException ||
            id is not null && (id.StartsWith("Destination", StringComparison.Ordinal) || id.StartsWith("Device", StringComparison.Ordinal) ||
                               id.StartsWith("Resume", StringComparison.Ordinal) || id is "InterruptedRestoreExists" or "FormatNotSupported")))
            return destination;
        if (id is not null && id.StartsWith("Key", StringComparison.Ordinal) && Keyfile is not null)
            return Keyfile;
        if (ArchiveName is { Length: > 0 } archive &&
            (e is PbsException { Kind: PbsErrorKind.Integrity or PbsErrorKind.InvalidData } || id is "ArchiveNotFound" or "ArchiveNotAnIndex" or "ChunkMissing"))
            return archive;
        return Snapshot;
    }

    protected static bool IsFailure(Exception e) =>
        e is PbsException or IOException or UnauthorizedAccessException or OperationCanceledException or ArgumentException or HttpRequestException;
}
