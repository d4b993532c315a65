using PbsRestore.Formats;
using PbsRestore.Sources;
using PbsRestore.Destinations;

namespace PbsRestore.Restore;

/// <summary>
/// Restores a whole snapshot into a folder: its configuration and log blobs first (small), then every disk
/// and dynamic archive at once, sharing one fetch budget so that a VM with four disks keeps the source as busy
/// as one restore, not four times busier. Names are predictable: one folder per snapshot
/// (<see cref="FolderName"/>), one file per archive named as users see it (<c>drive-scsi0.img</c>,
/// <c>qemu-server.conf</c>). Keys are checked for every selected archive before anything is created. The manifest is
/// read once (<see cref="OpenedSnapshot"/>) for the selection and every archive.
/// </summary>
public sealed class SnapshotRestorer
{
    private readonly ISnapshotReader _reader;
    private readonly CryptConfig? _crypt;
    private OpenedSnapshot? _opened;

    /// <summary>A restorer that reads the manifest itself, once, on first use.</summary>
    public SnapshotRestorer(ISnapshotReader reader, CryptConfig? crypt)
    {
        _reader = reader;
        _crypt = crypt;
    }

    /// <summary>A restorer of a snapshot already opened.</summary>
    public SnapshotRestorer(OpenedSnapshot snapshot) : this(snapshot.Reader, snapshot.Crypt) => _opened = snapshot;

    /// <summary>The opened snapshot (the manifest read on the first call only).</summary>
    public async Task<OpenedSnapshot> OpenAsync(CancellationToken ct) =>
        _opened ??= await OpenedSnapshot.OpenAsync(_reader, _crypt, ct).ConfigureAwait(false);

    /// <summary>
    /// <c>vm-100-2024-05-01T10-00-00Z</c>, prefixed with the namespace (<c>prod-web_vm-100-…</c>): no ':' so the
    /// name is valid on Windows, and unique per snapshot.
    /// </summary>
    public static string FolderName(SnapshotRef snapshot)
    {
        string name = $"{snapshot.BackupType}-{snapshot.BackupId}-{SnapshotTime.Format(snapshot.BackupTime).Replace(':', '-')}";
        return snapshot.Namespace.IsRoot ? name : $"{string.Join('-', snapshot.Namespace.Components)}_{name}";
    }

    /// <summary>The archives to restore, in restore order (blobs first), after checking names and keys.</summary>
    public async Task<(BackupManifest Manifest, IReadOnlyList<ManifestFile> Entries)> SelectAsync(Func<string, bool> include, CancellationToken ct)
    {
        var snapshot = await OpenAsync(ct).ConfigureAwait(false);
        var manifest = snapshot.Manifest;
        var entries = manifest.Files.Where(f => include(ArchiveNames.DisplayName(f.FileName)))
            .OrderBy(f => f.Kind == ArchiveKind.Blob ? 0 : 1).ThenBy(f => f.FileName, StringComparer.Ordinal).ToList();
        if (entries.Count == 0)
            throw new PbsNotFoundException("ArchiveNotFound", $"snapshot '{snapshot.Snapshot}' has no archive matching the filter; it has: " +
                string.Join(", ", manifest.Files.Select(f => ArchiveNames.DisplayName(f.FileName))));
        foreach (var e in entries) snapshot.CheckKey(e);
        return (manifest, entries);
    }

    /// <summary>
    /// Restores <paramref name="entries"/> into <paramref name="folder"/> (created if needed). <paramref name="countersFor"/>
    /// gives each archive's counters (for progress). The first failure cancels the others and is thrown; archives
    /// already finished stay, unfinished ones leave no file. <paramref name="finished"/>, when given, hears of each
    /// archive as soon as it is complete (the caller can report it while the others go on).
    /// </summary>
    public async Task<IReadOnlyList<RestoreResult>> RestoreAsync(IReadOnlyList<ManifestFile> entries, string folder, DestinationOptions destinationOptions,
        RestoreOptions options, Func<ManifestFile, RestoreCounters> countersFor, CancellationToken ct, Action<RestoreResult>? finished = null)
    {
        var snapshot = await OpenAsync(ct).ConfigureAwait(false);
        Directory.CreateDirectory(folder);
        var results = new List<RestoreResult>();
        foreach (var blob in entries.Where(e => e.Kind == ArchiveKind.Blob))
        {
            var done = await ArchiveRestorer.RestoreAsync(snapshot.Open(blob), PathFor(folder, blob), destinationOptions with { Format = null }, options,
                countersFor(blob), ct).ConfigureAwait(false);
            results.Add(done);
            finished?.Invoke(done);
        }

        var indexes = entries.Where(e => e.Kind != ArchiveKind.Blob).ToList();
        if (indexes.Count == 0) return results;
        using var budget = new FetchBudget(options.FetchConcurrency);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var shared = options with { Budget = budget };
        var tasks = indexes.Select(async e =>
        {
            try
            {
                // -Format applies to the disk images; a container's file archive stays as it is.
                var own = e.Kind == ArchiveKind.FixedIndex ? destinationOptions : destinationOptions with { Format = null };
                var done = await ArchiveRestorer.RestoreAsync(snapshot.Open(e), PathFor(folder, e, own.Format), own, shared, countersFor(e), cts.Token).ConfigureAwait(false);
                finished?.Invoke(done);
                return done;
            }
            catch
            {
                cts.Cancel(); // first failure stops the siblings
                throw;
            }
        }).ToList();
        try
        {
            results.AddRange(await Task.WhenAll(tasks).ConfigureAwait(false));
        }
        catch
        {
            // Report the real failure, not a sibling's cancellation.
            var real = tasks.Where(t => t.IsFaulted).Select(t => t.Exception!.InnerException!).FirstOrDefault(x => x is not OperationCanceledException);
            if (real is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(real).Throw();
            throw;
        }
        return results;
    }

    /// <summary>
    /// Where an archive goes in the snapshot's folder: its display name (<c>drive-scsi0.img</c>), or for a disk image
    /// written as VHDX, VHD or VMDK that name with the fitting extension (<c>drive-scsi0.vhdx</c>), which Windows goes by.
    /// </summary>
    public static string PathFor(string folder, ManifestFile entry, ImageFormat? format = null)
    {
        string name = ArchiveNames.DisplayName(entry.FileName);
        if (entry.Kind == ArchiveKind.FixedIndex && format is { } f and (ImageFormat.Vhdx or ImageFormat.Vhd or ImageFormat.Vmdk))
            name = Path.ChangeExtension(name, "." + f.ToString().ToLowerInvariant());
        return Path.Combine(folder, name);
    }
}
