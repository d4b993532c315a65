using System.Net;
using System.Text;
using PbsRestore.Formats;
using PbsRestore.Sources;

namespace PbsRestore.Publishing;

/// <summary>CHAP login a publication demands of initiators. The secret is never shown (ToString hides it).</summary>
public sealed class ChapLogin(string user, string secret)
{
    public string User { get; } = user;
    internal string Secret { get; } = secret;
    public override string ToString() => User;
}

/// <summary>How a snapshot's disks are published.</summary>
public sealed record PublicationOptions
{
    /// <summary>Address and port to listen on; port 0 picks a free one. Loopback unless the user says otherwise.</summary>
    public IPEndPoint Listen { get; init; } = new(IPAddress.Loopback, 0);

    /// <summary>The target's IQN; made from the snapshot when null.</summary>
    public string? TargetName { get; init; }

    /// <summary>CHAP login initiators must pass (null: none).</summary>
    public ChapLogin? Chap { get; init; }

    /// <summary>Initiator IQNs allowed to log in (empty: any that passes CHAP, or any on loopback).</summary>
    public IReadOnlyList<string> AllowedInitiators { get; init; } = [];

    /// <summary>Decoded chunks kept in memory for the whole publication, shared out evenly among its disks.</summary>
    public long CacheBytes { get; init; } = 256L << 20;

    public bool ReadOnly { get; init; }

    /// <summary>Folder for the overlays (a kept overlay there is used again); the temp folder when null.</summary>
    public string? OverlayFolder { get; init; }

    public bool KeepOverlay { get; init; }
}

/// <summary>One disk of a publication: a LUN of its target.</summary>
public sealed class PublishedLun
{
    internal PublishedLun(int lun, string archive, ArchiveBlockDevice device)
    {
        Lun = lun;
        Archive = archive;
        Device = device;
    }

    public int Lun { get; }
    /// <summary>The archive as users name it, e.g. drive-scsi0.img.</summary>
    public string Archive { get; }
    /// <summary>Capacity in bytes the initiator sees (the archive's size rounded up to whole 512-byte sectors).</summary>
    public long Size => Device.Length;
    public long ArchiveSize => Device.ArchiveSize;
    public bool ReadOnly => Device.ReadOnly;
    public string? OverlayPath => Device.Overlay?.Path;
    public long ChunksFetched => Device.Backing.ChunksFetched;
    public long BytesRead => Device.BytesRead;
    public long BytesWritten => Device.BytesWritten;
    public long MediumErrors => Device.MediumErrors;
    public ArchiveBlockDevice Device { get; }
    public override string ToString() => $"LUN {Lun}: {Archive}";
}

/// <summary>
/// A snapshot's disks served as the LUNs of one iSCSI target, until disposed. Owns the snapshot reader, the
/// devices (and their overlays) and the target; whatever it owns it closes, in that order reversed.
/// </summary>
public sealed class Publication : IAsyncDisposable
{
    private readonly ISnapshotReader _reader;
    private readonly IDisposable? _ownedSource;
    private ITargetHost? _target;
    private int _disposed;

    private Publication(int id, ISnapshotReader reader, IDisposable? ownedSource, string targetName, IReadOnlyList<PublishedLun> luns, PublicationOptions options)
    {
        Id = id;
        _reader = reader;
        _ownedSource = ownedSource;
        TargetName = targetName;
        Luns = luns;
        Options = options;
    }

    public int Id { get; }
    public SnapshotRef Snapshot => _reader.Snapshot;
    /// <summary>Where the snapshot is read from (folder or repository; never a secret).</summary>
    public string Source => _reader.Location;
    public string TargetName { get; }
    public IPEndPoint EndPoint => _target?.LocalEndPoint ?? Options.Listen;
    /// <summary>The portal initiators connect to, address:port (IPv6 in brackets).</summary>
    public string Portal => EndPoint.ToString();
    public IReadOnlyList<PublishedLun> Luns { get; }
    public DateTimeOffset Published { get; } = DateTimeOffset.UtcNow;
    public PublicationOptions Options { get; }
    public bool ReadOnly => Options.ReadOnly;
    public string? ChapUser => Options.Chap?.User;
    public bool IsPublished => Volatile.Read(ref _disposed) == 0;

    public long BytesRead => Luns.Sum(l => l.BytesRead);
    public long BytesWritten => Luns.Sum(l => l.BytesWritten);
    public long ChunksFetched => Luns.Sum(l => l.ChunksFetched);
    public long MediumErrors => Luns.Sum(l => l.MediumErrors);
    /// <summary>Initiator sessions logged in now (discovery included).</summary>
    public int Sessions => IsPublished ? _target?.ActiveSessions ?? 0 : 0;
    /// <summary>Logins refused so far (wrong CHAP, an initiator not allowed).</summary>
    public long LoginFailures => _target?.LoginFailures ?? 0;

    /// <summary>Which disks of a manifest are published by default: every fixed-index archive (the VM's disks).</summary>
    public static IReadOnlyList<string> DefaultArchives(BackupManifest manifest) =>
        manifest.Files.Where(f => f.Kind == ArchiveKind.FixedIndex).Select(f => ArchiveNames.DisplayName(f.FileName)).ToList();

    /// <summary>
    /// Safe by default: a target reachable from elsewhere must ask for something. Anything but a loopback address
    /// needs CHAP or a list of allowed initiators.
    /// </summary>
    public static void CheckSafe(PublicationOptions options)
    {
        if (!IPAddress.IsLoopback(options.Listen.Address) && options.Chap is null && options.AllowedInitiators.Count == 0)
            throw new PbsException("PublishNotSecured", PbsErrorKind.InvalidArgument,
                $"listening on {options.Listen.Address} makes the disks reachable from other machines: give a CHAP login (-ChapCredential) " +
                "or the initiators allowed to connect (-AllowedInitiator), or listen on loopback (127.0.0.1) only");
        if (options.Chap is { } chap && (string.IsNullOrEmpty(chap.User) || chap.Secret.Length is < 12 or > 16))
            throw new PbsException("ChapSecretLength", PbsErrorKind.InvalidArgument,
                "the CHAP secret must be 12 to 16 characters long (the length Windows' iSCSI initiator accepts), with a user name");
    }

    /// <summary>
    /// The default IQN: iqn.2024-05.io.github.pbsrestore:&lt;namespace&gt;.&lt;type&gt;-&lt;id&gt;-&lt;time&gt;, lower case, every
    /// character an IQN does not allow replaced by '-'.
    /// </summary>
    public static string DefaultTargetName(SnapshotRef s)
    {
        string ns = s.Namespace.IsRoot ? "" : s.Namespace + ".";
        string name = $"{ns}{s.BackupType}-{s.BackupId}-{s.BackupTime.UtcDateTime:yyyyMMdd'T'HHmmss'Z'}".ToLowerInvariant();
        var sb = new StringBuilder("iqn.2024-05.io.github.pbsrestore:");
        foreach (char c in name) sb.Append(c is >= 'a' and <= 'z' or >= '0' and <= '9' or '-' or '.' ? c : c == '/' ? '.' : '-');
        return sb.ToString();
    }

    /// <summary>
    /// Opens the archives of <paramref name="reader"/> (all disks when <paramref name="archives"/> is empty) as block
    /// devices and starts the target. Takes ownership of <paramref name="reader"/> and <paramref name="ownedSource"/>,
    /// also when it fails.
    /// </summary>
    public static async Task<Publication> StartAsync(int id, ISnapshotReader reader, IDisposable? ownedSource, CryptConfig? crypt,
        IReadOnlyList<string> archives, PublicationOptions options, CancellationToken ct)
    {
        OpenedSnapshot snapshot;
        try
        {
            snapshot = await OpenedSnapshot.OpenAsync(reader, crypt, ct).ConfigureAwait(false);
        }
        catch
        {
            await reader.DisposeAsync().ConfigureAwait(false);
            ownedSource?.Dispose();
            throw;
        }
        return await StartAsync(id, snapshot, ownedSource, archives, options, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// As above, for a snapshot the one opener has already opened (its manifest read and decoded once, for every
    /// disk of the publication). Takes ownership of the snapshot's reader and of <paramref name="ownedSource"/>.
    /// </summary>
    public static async Task<Publication> StartAsync(int id, OpenedSnapshot snapshot, IDisposable? ownedSource,
        IReadOnlyList<string> archives, PublicationOptions options, CancellationToken ct)
    {
        var reader = snapshot.Reader;
        var devices = new List<PublishedLun>();
        Publication? publication = null;
        try
        {
            CheckSafe(options);
            if (archives.Count == 0)
            {
                archives = DefaultArchives(snapshot.Manifest);
                if (archives.Count == 0)
                    throw new PbsNotFoundException("NoDiskArchives",
                        $"snapshot '{reader.Snapshot}' has no disk archives (.img.fidx) to publish; name a dynamic archive with -Archive");
            }
            long cachePerDisk = Math.Max(1, options.CacheBytes / archives.Count);
            for (int i = 0; i < archives.Count; i++)
            {
                string name = ArchiveNames.DisplayName(archives[i]);
                string? overlay = options.ReadOnly ? null
                    : options.OverlayFolder is { } folder ? Path.Combine(folder, OverlayFileName(reader.Snapshot, name)) : null;
                var device = await ArchiveBlockDevice.OpenAsync(snapshot.Open(archives[i]), new ArchiveBlockDeviceOptions
                {
                    ReadOnly = options.ReadOnly,
                    OverlayPath = overlay,
                    KeepOverlay = options.KeepOverlay,
                    CacheBytes = cachePerDisk,
                }, ct).ConfigureAwait(false);
                devices.Add(new PublishedLun(i, name, device));
            }
            string targetName = options.TargetName ?? DefaultTargetName(reader.Snapshot);
            publication = new Publication(id, reader, ownedSource, targetName, devices, options);
            publication._target = await TargetHost.StartAsync(new TargetSpec(targetName, options.Listen,
                devices.Select(d => (d.Lun, d.Archive, (IBlockDevice)d.Device)).ToList(), options.Chap, options.AllowedInitiators), ct).ConfigureAwait(false);
            return publication;
        }
        catch
        {
            if (publication is not null) await publication.DisposeAsync().ConfigureAwait(false);
            else
            {
                foreach (var d in devices) d.Device.Dispose();
                await reader.DisposeAsync().ConfigureAwait(false);
                ownedSource?.Dispose();
            }
            throw;
        }
    }

    /// <summary>An overlay's file name in -OverlayPath: snapshot and archive, so the same disk finds its kept overlay again.</summary>
    public static string OverlayFileName(SnapshotRef s, string archive)
    {
        string raw = $"{(s.Namespace.IsRoot ? "" : s.Namespace + "_")}{s.BackupType}-{s.BackupId}-{s.BackupTime.UtcDateTime:yyyyMMdd'T'HHmmss'Z'}-{archive}.overlay";
        return string.Concat(raw.Select(c => char.IsLetterOrDigit(c) || c is '-' or '.' or '_' ? c : '_'));
    }

    /// <summary>Stops the target, closes the disks (their overlays are deleted unless kept) and the snapshot.</summary>
    /// <param name="keepOverlay">Keep the overlays whatever the publication was started with (null: as started).</param>
    public async ValueTask UnpublishAsync(bool? keepOverlay)
    {
        if (keepOverlay is { } keep)
            foreach (var l in Luns) l.Device.KeepOverlay = keep;
        await DisposeAsync().ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        try
        {
            if (_target is not null) await _target.DisposeAsync().ConfigureAwait(false);
        }
        finally
        {
            foreach (var l in Luns) l.Device.Dispose();
            await _reader.DisposeAsync().ConfigureAwait(false);
            _ownedSource?.Dispose();
        }
    }

    public override string ToString() => $"{TargetName} at {Portal}";
}

/// <summary>What the target is started with: the seam between a publication and the iSCSI target code.</summary>
internal sealed record TargetSpec(string TargetName, IPEndPoint Listen, IReadOnlyList<(int Lun, string Name, IBlockDevice Device)> Luns,
    ChapLogin? Chap, IReadOnlyList<string> AllowedInitiators);

/// <summary>A running target, as a publication sees it.</summary>
internal interface ITargetHost : IAsyncDisposable
{
    IPEndPoint LocalEndPoint { get; }
    int ActiveSessions { get; }
    long LoginFailures { get; }
}

/// <summary>
/// Starts the iSCSI target for a publication. The only place that names the target's types: implemented in
/// TargetHost.Iscsi.cs when Publishing/Iscsi is in the build, else by TargetHost.Missing.cs (see the csproj).
/// </summary>
internal static partial class TargetHost
{
    public static partial Task<ITargetHost> StartAsync(TargetSpec spec, CancellationToken ct);
}
