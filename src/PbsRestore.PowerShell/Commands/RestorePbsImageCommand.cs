using System.Management.Automation;
using System.Security;
using PbsRestore.Formats;
using PbsRestore.Restore;
using PbsRestore.Sources;

namespace PbsRestore.PowerShell.Commands;

/// <summary>
/// <para type="synopsis">Restores an archive of a Proxmox Backup Server snapshot (a disk image, a config blob or a dynamic archive) to a file.</para>
/// </summary>
[Cmdlet(VerbsData.Restore, "PbsImage", DefaultParameterSetName = ConnectionSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(RestoreResult))]
public sealed class RestorePbsImageCommand : PbsSourceCmdlet
{
    /// <summary>Namespace of the snapshot, e.g. 'prod/web' (taken from a piped snapshot object).</summary>
    [Parameter]
    public string? Namespace { get; set; }

    /// <summary>The snapshot: 'vm/100/2024-05-01T10:00:00Z', 'vm/100' for the latest, or an object from Get-PbsSnapshot.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true)]
    [ValidateNotNull]
    public object Snapshot { get; set; } = null!;

    /// <summary>The archive: 'drive-scsi0.img' (or 'drive-scsi0.img.fidx'), 'qemu-server.conf', a dynamic archive name.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNullOrEmpty]
    public string Archive { get; set; } = "";

    /// <summary>The file to write.</summary>
    [Parameter(Mandatory = true, Position = 2)]
    [ValidateNotNullOrEmpty]
    public string Destination { get; set; } = "";

    /// <summary>Key file of an encrypted backup.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Keyfile { get; set; }

    /// <summary>Password of the key file (else PBS_ENCRYPTION_PASSWORD is used).</summary>
    [Parameter]
    public SecureString? KeyPassword { get; set; }

    /// <summary>Overwrite an existing destination.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>Chunk reads in flight; automatic when omitted (grows while throughput rises). PBS_RESTORE_FETCH_CONCURRENCY also sets it.</summary>
    [Parameter]
    [ValidateRange(1, 256)]
    public int FetchConcurrency { get; set; }

    /// <summary>Cap on the read rate, in MB/s (10^6 bytes) of encoded chunk data, e.g. for restores in business hours.</summary>
    [Parameter]
    [ValidateRange(0.1, 1_000_000)]
    public double MaxBandwidth { get; set; }

    private CryptConfig? _crypt;

    protected override void BeginProcessing()
    {
        if (Keyfile is null) return;
        try
        {
            // Opened once for the whole pipeline; a wrong password fails here, before anything is written.
            _crypt = KeyLoader.Open(ResolvePath(Keyfile), KeyPassword);
        }
        catch (PbsException e)
        {
            ThrowTerminatingError(ToErrorRecord(e, Keyfile));
        }
    }

    protected override void ProcessRecord()
    {
        // A snapshot object from Get-PbsSnapshot restores from where it was listed, unless a source is named.
        var info = SnapshotResolver.AsSnapshotInfo(Snapshot);
        bool sourceNamed = ParameterSetName != ConnectionSet || Connection is not null || Store is not null;
        ISnapshotSource source;
        try
        {
            source = (!sourceNamed && info is not null ? SnapshotSources.Of(info) : null)
                     ?? (!sourceNamed && info is not null && Directory.Exists(info.Location) ? new LocalDatastore(info.Location) : null)
                     ?? OpenSource();
        }
        catch (PbsException e)
        {
            WriteFailure(e, Snapshot);
            return;
        }
        string destination = ResolvePath(Destination);
        var options = new RestoreOptions
        {
            Force = Force,
            FetchConcurrency = MyInvocation.BoundParameters.ContainsKey(nameof(FetchConcurrency)) ? FetchConcurrency : null,
            MaxBytesPerSecond = MyInvocation.BoundParameters.ContainsKey(nameof(MaxBandwidth)) ? (long)(MaxBandwidth * 1e6) : null,
        }.WithEnvironmentDefaults(fetchGiven: MyInvocation.BoundParameters.ContainsKey(nameof(FetchConcurrency)), decodeGiven: false);
        try
        {
            // Phase 1, read-only: find the snapshot and archive, check key and destination.
            var (reader, restorer, entry) = Run(async ct =>
            {
                var ns = Namespace is null ? null : BackupNamespace.Parse(Namespace);
                var reference = await SnapshotResolver.ResolveAsync(source, Snapshot, ns, ct).ConfigureAwait(false);
                var reader = await source.OpenSnapshotAsync(reference, ct).ConfigureAwait(false);
                var restorer = new ArchiveRestorer(reader, _crypt);
                var manifest = await restorer.ReadManifestAsync(ct).ConfigureAwait(false);
                var entry = restorer.ResolveArchive(manifest, Archive);
                restorer.CheckKey(manifest, entry);
                DestinationFile.CheckWritable(destination, Force);
                return (reader, restorer, entry);
            });
            string what = $"restore {ArchiveNames.DisplayName(entry.FileName)} ({ProgressView.Size(entry.Size)}) of snapshot {reader.Snapshot}";
            if (!ShouldProcess(destination, what)) return;

            // Phase 2: the restore itself, with progress drawn on this thread.
            var counters = new RestoreCounters();
            var progress = new ProgressView(this, 1, $"Restoring {ArchiveNames.DisplayName(entry.FileName)} from {reader.Snapshot}");
            try
            {
                var result = Run(ct => restorer.RestoreAsync(entry.FileName, destination, options, counters, ct), () => progress.Update(counters));
                WriteObject(result);
            }
            finally
            {
                progress.Complete();
                reader.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
        }
        catch (Exception e) when (e is PbsException or IOException or UnauthorizedAccessException or OperationCanceledException or ArgumentException or HttpRequestException)
        {
            WriteFailure(e, Snapshot);
        }
    }
}
