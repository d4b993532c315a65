using System.Collections;
using System.Collections.Concurrent;
using System.Management.Automation;
using System.Management.Automation.Provider;
using System.Security;
using System.Text;
using PbsRestore.Access;
using PbsRestore.Formats;
using PbsRestore.Formats.Pxar;
using PbsRestore.Sources.Remote;
using PbsRestore.Restore;
using PbsRestore.PowerShell.Commands;
using PbsRestore.Sources;
using PbsRestore.Sources.Local;

namespace PbsRestore.PowerShell.Provider;

/// <summary>A drive of the PbsRestore provider: a datastore folder or a server datastore, with the file archives it has opened.</summary>
public sealed class PbsDriveInfo : PSDriveInfo
{
    private readonly IDisposable? _owned;
    private readonly Dictionary<string, (DateTime At, IReadOnlyList<SnapshotInfo> List)> _snapshots = new(StringComparer.Ordinal);

    internal PbsDriveInfo(PSDriveInfo drive, ISnapshotSource source, SourceRequest request, CryptConfig? crypt, IDisposable? owned) : base(drive)
    {
        Source = source;
        Request = request;
        Crypt = crypt;
        _owned = owned;
    }

    /// <summary>Where the drive reads from: a datastore folder or a repository (user@realm!token@host:port:store).</summary>
    public string Location => Source.Location;

    internal ISnapshotSource Source { get; }

    /// <summary>How to open the drive's source again: snapshots listed here remember it, not the live source.</summary>
    internal SourceRequest Request { get; }
    internal CryptConfig? Crypt { get; }
    internal Dictionary<string, (ISnapshotReader Reader, FileArchive Archive)> Open { get; } = new(StringComparer.Ordinal);

    /// <summary>
    /// Snapshot listings, kept a few seconds: one Get-ChildItem asks the provider several times about the same path
    /// (exists? container? children?), and over a server each question would be a request.
    /// </summary>
    internal IReadOnlyList<SnapshotInfo> Snapshots(BackupNamespace ns, string? type, string? id)
    {
        // A server answers one listing of the namespace as fast as a filtered one: filter that here.
        if (Source is RemoteDatastore && (type is not null || id is not null))
            return Snapshots(ns, null, null).Where(s => (type is null || s.Ref.BackupType == type) && (id is null || s.Ref.BackupId == id)).ToList();
        string key = $"{ns}|{type}|{id}";
        if (_snapshots.TryGetValue(key, out var hit) && DateTime.UtcNow - hit.At < TimeSpan.FromSeconds(5)) return hit.List;
        var list = Source.ListSnapshotsAsync(ns, type, id, CancellationToken.None).GetAwaiter().GetResult();
        foreach (var s in list) SnapshotSources.Remember(s, Request);
        _snapshots[key] = (DateTime.UtcNow, list);
        return list;
    }

    private readonly Queue<string> _openOrder = new();

    /// <summary>
    /// Keeps an opened archive for the next paths inside it; beyond a few, the oldest is closed (over a server each
    /// holds reader sessions, which the server keeps as tasks).
    /// </summary>
    internal void Remember(string key, ISnapshotReader reader, FileArchive archive)
    {
        const int MaxOpen = 4;
        while (_openOrder.Count >= MaxOpen && _openOrder.TryDequeue(out var oldest))
        {
            if (!Open.Remove(oldest, out var old)) continue;
            old.Archive.Dispose();
            old.Reader.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
        Open[key] = (reader, archive);
        _openOrder.Enqueue(key);
    }

    private readonly Dictionary<string, (DateTime At, IReadOnlyList<BackupNamespace> List)> _namespaces = new(StringComparer.Ordinal);

    /// <summary>A namespace and its children, kept a few seconds like the snapshot listings.</summary>
    internal IReadOnlyList<BackupNamespace> NamespacesBelow(BackupNamespace parent)
    {
        string key = parent.ToString();
        if (_namespaces.TryGetValue(key, out var hit) && DateTime.UtcNow - hit.At < TimeSpan.FromSeconds(5)) return hit.List;
        var list = Source.ListNamespacesAsync(parent, 1, CancellationToken.None).GetAwaiter().GetResult();
        _namespaces[key] = (DateTime.UtcNow, list);
        return list;
    }

    internal void CloseAll()
    {
        foreach (var (reader, archive) in Open.Values)
        {
            archive.Dispose();
            reader.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
        Open.Clear();
        _openOrder.Clear();
        _owned?.Dispose();
    }
}

/// <summary>New-PSDrive's parameters for a PbsRestore drive (besides -Root and -Credential).</summary>
public sealed class PbsDriveParameters
{
    /// <summary>SHA-256 fingerprint of the server certificate (colon hex); PBS_FINGERPRINT when omitted.</summary>
    [Parameter]
    public string? Fingerprint { get; set; }

    /// <summary>A connection from Connect-PbsServer; -Root is then the datastore on that server.</summary>
    [Parameter]
    public PbsServerConnection? Connection { get; set; }

    /// <summary>Key file for encrypted snapshots.</summary>
    [Parameter]
    public string? Keyfile { get; set; }

    /// <summary>Password of the key file; PBS_ENCRYPTION_PASSWORD when omitted.</summary>
    [Parameter]
    public SecureString? KeyPassword { get; set; }
}

/// <summary>
/// A navigation provider over a datastore folder or a server datastore:
/// <c>New-PSDrive -Name pbs -PSProvider PbsRestore -Root D:\pbs</c> (or <c>-Root user@pbs!token@host:store
/// -Credential ... -Fingerprint ...</c>, or <c>-Root store -Connection $c</c>), then
/// <c>pbs:\ns\prod\ct\200\2024-05-01T10_10_00Z\root.pxar\etc</c>: namespaces (under <c>ns</c>, as on disk), backup
/// types, ids, snapshot times (':' shown as '_', which PowerShell paths cannot hold), the snapshot's file archives,
/// and the files inside them, for Get-ChildItem, Get-Item, Test-Path, Get-Content and Copy-Item. Read-only; every
/// chunk read is verified. Copy-Item writes to the file system through the same <see cref="FileRestorer"/> as
/// Restore-PbsFile; PowerShell only hands a copy to the source's provider when the destination names that provider
/// too, so the destination is written <c>PbsRestore::C:\dest</c>.
/// </summary>
[CmdletProvider("PbsRestore", ProviderCapabilities.Credentials | ProviderCapabilities.ShouldProcess)]
public sealed class PbsProvider : NavigationCmdletProvider, IContentCmdletProvider
{
    private const string NamespaceFolder = "ns";

    protected override object NewDriveDynamicParameters() => new PbsDriveParameters();

    protected override PSDriveInfo? NewDrive(PSDriveInfo drive)
    {
        if (drive is null || string.IsNullOrWhiteSpace(drive.Root))
            throw new PSArgumentException("give -Root: a datastore folder, or a repository [[user@realm[!token]@]host[:port]:]datastore");
        var p = DynamicParameters as PbsDriveParameters;
        var crypt = p?.Keyfile is { } keyfile ? KeyLoader.Open(SessionState.Path.GetUnresolvedProviderPathFromPSPath(keyfile), p.KeyPassword) : null;
        string root = drive.Root.Trim();
        var credential = drive.Credential is { } c && c != PSCredential.Empty ? c : null;
        SourceRequest request;
        try
        {
            var connection = p?.Connection;
            var sessionDefault = SessionState.PSVariable.GetValue("global:" + PbsSourceCmdlet.DefaultConnectionVariable) as PbsServerConnection;
            bool pathLike = Rooted(root) || !root.Contains(':');
            string? folder = pathLike ? FileSystemPath(root) : null;
            if (connection is null && folder is not null && Directory.Exists(folder))
                request = SourceRequest.ForFolder(folder);
            else if (connection is not null || (!root.Contains(':') && sessionDefault is { IsConnected: true }))
                // Over a connection (given, or the session default): -Root names a datastore of that server.
                request = SourceRequest.ForConnection(connection ?? sessionDefault!, root.Contains(':') ? PbsRepository.Parse(root).Store : root);
            else if (pathLike)
                throw new PSArgumentException($"'{folder}' is not a folder; -Root must be a datastore folder (the one holding .chunks), " +
                                              "a repository [[user@realm[!token]@]host[:port]:]datastore, or a datastore of the server connected with Connect-PbsServer");
            else
                request = SourceRequest.ForRepository(PbsSourceCmdlet.SettingsFor(root, p?.Fingerprint, credential));
        }
        catch (PbsException e)
        {
            throw new PSInvalidOperationException($"{e.ErrorId}: {e.Message}", e);
        }
        // The one opener the cmdlets use; a drive differs only in checking the login and the datastore at once, so a
        // mistyped root or password fails New-PSDrive rather than the first listing.
        var source = SourceFactory.Open(request, RemoteDatastore.DefaultSessionsPerSnapshot);
        try
        {
            if (source is RemoteDatastore remote) Sync(Check(remote.Client));
        }
        catch (PbsException e)
        {
            (source as IDisposable)?.Dispose();
            throw new PSInvalidOperationException($"{e.ErrorId}: {e.Message}", e);
        }
        catch
        {
            (source as IDisposable)?.Dispose();
            throw;
        }
        // A source over a repository owns its client (closed with the drive); a connection's client stays the connection's.
        var owned = request.Settings is not null ? source as IDisposable : null;
        return new PbsDriveInfo(new PSDriveInfo(drive.Name, drive.Provider, source.Location, drive.Description, drive.Credential), source, request, crypt, owned);

        static async Task<bool> Check(PbsClient client)
        {
            await client.ConnectAsync(CancellationToken.None).ConfigureAwait(false);
            await client.CheckDatastoreAsync(CancellationToken.None).ConfigureAwait(false);
            return true;
        }
    }

    private static bool Rooted(string path) => System.IO.Path.IsPathRooted(path) || path.StartsWith('.') || path.StartsWith('~');

    /// <summary>A file-system path as given (relative to the current file-system location, '~' the home folder).</summary>
    private string FileSystemPath(string path)
    {
        if (path == "~" || path.StartsWith("~/", StringComparison.Ordinal) || path.StartsWith("~\\", StringComparison.Ordinal))
            path = System.IO.Path.Join(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), path[1..]);
        return System.IO.Path.GetFullPath(path, SessionState.Path.CurrentFileSystemLocation.ProviderPath);
    }

    protected override PSDriveInfo RemoveDrive(PSDriveInfo drive)
    {
        (drive as PbsDriveInfo)?.CloseAll();
        return drive;
    }

    // ---- paths ----

    /// <summary>The drive a provider path belongs to: the current one, or (for a provider-qualified path such as a PSPath) the one whose root it starts with.</summary>
    private PbsDriveInfo? DriveOf(string path)
    {
        if (PSDriveInfo is PbsDriveInfo d && Under(path, d.Root) is not null) return d;
        return ProviderInfo.Drives.OfType<PbsDriveInfo>().Where(x => Under(path, x.Root) is not null).MaxBy(x => x.Root.Length);
    }

    /// <summary>The part of <paramref name="path"/> below <paramref name="root"/>, or null when it is not below it.</summary>
    private static string? Under(string path, string root)
    {
        string p = path.Replace('/', '\\');
        string r = root.Replace('/', '\\').TrimEnd('\\');
        if (!p.StartsWith(r, StringComparison.Ordinal)) return null;
        string rest = p[r.Length..];
        return rest.Length == 0 || rest[0] == '\\' ? rest : null;
    }

    /// <summary>Where a drive path points, or null for a path outside every PbsRestore drive (a Copy-Item destination).</summary>
    private Where? Locate(string path)
    {
        var drive = DriveOf(path);
        if (drive is null) return null;
        var parts = Under(path, drive.Root)!.Split('\\', StringSplitOptions.RemoveEmptyEntries);
        var ns = BackupNamespace.Root;
        int i = 0;
        while (i < parts.Length && parts[i] == NamespaceFolder)
        {
            if (i + 1 == parts.Length) return new Where(drive, ns, true, []);
            if (!BackupNamespace.IsValidComponent(parts[i + 1]) || ns.Depth >= BackupNamespace.MaxDepth) return new Where(drive, ns, false, [], Invalid: true);
            ns = ns.Child(parts[i + 1]);
            i += 2;
        }
        return new Where(drive, ns, false, parts[i..]);
    }

    /// <summary>A path inside a drive: its namespace, whether it is the namespace's 'ns' folder, then type, id, time, archive, path in the archive.</summary>
    private sealed record Where(PbsDriveInfo Drive, BackupNamespace Ns, bool NamespaceList, string[] Rest, bool Invalid = false)
    {
        public string ArchivePath => string.Join('/', Rest.Skip(4));
        /// <summary>As Get-PbsFile shows it: ns/prod/ct/200/2024-05-01T10:10:00Z.</summary>
        public string SnapshotText => string.Concat(Ns.Components.Select(c => $"ns/{c}/")) + $"{Rest[0]}/{Rest[1]}/{Rest[2].Replace('_', ':')}";
    }

    private static T Sync<T>(Task<T> task) => task.GetAwaiter().GetResult();

    private sealed record Node(bool Container, object Item);

    /// <summary>What a path points to, or null when nothing is there.</summary>
    private Node? Resolve(Where w)
    {
        if (w.Invalid) return null;
        var drive = w.Drive;
        if (w.NamespaceList || w.Rest.Length == 0)
        {
            if (w.Ns.IsRoot) return new Node(true, w.NamespaceList ? new PbsNamespaceInfo("", 0, drive.Location) : drive.Location);
            if (!NamespaceExists(drive, w.Ns)) return null;
            return new Node(true, new PbsNamespaceInfo(w.Ns.ToString(), w.Ns.Depth, drive.Location));
        }
        if (!NamespaceExists(drive, w.Ns)) return null;
        switch (w.Rest.Length)
        {
            case 1 or 2:
            {
                if (!SnapshotRef.BackupTypes.Contains(w.Rest[0])) return null;
                var list = drive.Snapshots(w.Ns, w.Rest[0], w.Rest.Length == 2 ? w.Rest[1] : null);
                return list.Count == 0 ? null : new Node(true, w.Rest[^1]);
            }
            case 3:
                return FindSnapshot(w) is { } s ? new Node(true, s) : null;
        }
        var archive = Archive(w);
        if (archive is null) return null;
        var entry = Sync(archive.Archive.LookupAsync(w.ArchivePath, CancellationToken.None));
        return entry is null ? null : new Node(entry.Type == PxarEntryType.Directory, Info(entry, archive, w));
    }

    private static bool NamespaceExists(PbsDriveInfo drive, BackupNamespace ns)
    {
        if (ns.IsRoot) return true;
        try
        {
            // Asked of the parent: a server may answer a listing below a namespace that does not exist with an empty one.
            var parent = BackupNamespace.Parse(string.Join('/', ns.Components.Take(ns.Depth - 1)));
            return drive.NamespacesBelow(parent).Contains(ns);
        }
        catch (PbsNotFoundException)
        {
            return false;
        }
    }

    private static SnapshotInfo? FindSnapshot(Where w)
    {
        if (!SnapshotRef.BackupTypes.Contains(w.Rest[0]) || !SnapshotTime.TryParse(w.Rest[2], out var time)) return null;
        return w.Drive.Snapshots(w.Ns, w.Rest[0], w.Rest[1]).FirstOrDefault(s => s.Ref.BackupTime == time);
    }

    private static string Key(Where w) => $"{w.Ns}|{w.Rest[0]}|{w.Rest[1]}|{w.Rest[2]}|{w.Rest[3]}";

    private static FileArchive? Archive(Where w)
    {
        var drive = w.Drive;
        if (drive.Open.TryGetValue(Key(w), out var open)) return open.Archive;
        var snapshot = FindSnapshot(w);
        if (snapshot is null) return null;
        if (!snapshot.Files.Any(f => ArchiveNames.DisplayName(f.Name) is var n && (n == w.Rest[3] || n == w.Rest[3].Replace(".pxar", ".mpxar"))))
            return null;
        var reader = Sync(drive.Source.OpenSnapshotAsync(snapshot.Ref, CancellationToken.None));
        try
        {
            var archive = Sync(FileArchive.OpenAsync(reader, snapshot.Encrypted ? drive.Crypt : null, w.Rest[3], null, CancellationToken.None));
            drive.Remember(Key(w), reader, archive);
            return archive;
        }
        catch
        {
            reader.DisposeAsync().AsTask().GetAwaiter().GetResult();
            throw;
        }
    }

    private static PbsFileInfo Info(PxarEntry e, FileArchive archive, Where w) => new(e, null, w.SnapshotText, archive.Name);

    private static string Join(string parent, string child) => parent.TrimEnd('\\', '/') + "\\" + child;

    protected override bool IsValidPath(string path) => true;

    protected override bool ItemExists(string path) => Guard(() => Locate(path) is { } w && Resolve(w) is not null);

    protected override bool IsItemContainer(string path) => Guard(() => Locate(path) is { } w && (Resolve(w)?.Container ?? false));

    protected override bool HasChildItems(string path) => IsItemContainer(path);

    protected override void GetItem(string path)
    {
        var node = Guard(() => Locate(path) is { } w ? Resolve(w) : null);
        if (node is not null) WriteItem(node.Item, path, node.Container, DriveOf(path)!);
    }

    /// <summary>
    /// Writes an item. A file's Path becomes its drive path (pbs:\...\etc\hosts; ArchivePath keeps '/etc/hosts'):
    /// cmdlets bind a piped object's Path before its PSPath, and '/etc/hosts' would name the local file, so
    /// Get-ChildItem pbs:\...\etc | Get-Content would read the wrong files.
    /// </summary>
    private void WriteItem(object item, string path, bool container, PbsDriveInfo drive)
    {
        if (item is PbsFileInfo f)
        {
            var o = PSObject.AsPSObject(f);
            o.Properties.Add(new PSNoteProperty("ArchivePath", f.Path));
            o.Properties.Add(new PSNoteProperty("Path", $"{drive.Name}:\\{Under(path, drive.Root)!.TrimStart('\\')}"));
            item = o;
        }
        WriteItemObject(item, path, container);
    }

    protected override void GetChildItems(string path, bool recurse) => Guard(() => Children(path, recurse, namesOnly: false));

    protected override void GetChildNames(string path, ReturnContainers returnContainers) => Guard(() => Children(path, false, namesOnly: true));

    private bool Children(string path, bool recurse, bool namesOnly)
    {
        var w = Locate(path) ?? throw new ItemNotFoundException($"'{path}' is not on a PbsRestore drive");
        if (w.Invalid) throw new ItemNotFoundException($"nothing at '{path}'");
        var drive = w.Drive;
        IEnumerable<(string Name, bool Container, object Item)> items;
        if (w.NamespaceList)
            items = drive.NamespacesBelow(w.Ns).Where(n => n.Depth == w.Ns.Depth + 1)
                .Select(n => (n.Components[^1], true, (object)new PbsNamespaceInfo(n.ToString(), n.Depth, drive.Location)));
        else
            switch (w.Rest.Length)
            {
                case 0:
                {
                    var types = drive.Snapshots(w.Ns, null, null).Select(s => s.Ref.BackupType).Distinct().OrderBy(t => t, StringComparer.Ordinal)
                        .Select(t => (t, true, (object)t)).ToList();
                    bool hasChildren = w.Ns.Depth < BackupNamespace.MaxDepth
                                       && drive.NamespacesBelow(w.Ns).Any(n => n.Depth > w.Ns.Depth);
                    if (hasChildren) types.Add((NamespaceFolder, true, new PbsNamespaceInfo(w.Ns.ToString(), w.Ns.Depth, drive.Location)));
                    items = types;
                    break;
                }
                case 1:
                    items = drive.Snapshots(w.Ns, w.Rest[0], null).Select(s => s.Ref.BackupId).Distinct()
                        .Select(i => (i, true, (object)i));
                    break;
                case 2:
                    items = drive.Snapshots(w.Ns, w.Rest[0], w.Rest[1])
                        .Select(s => (SnapshotTime.Format(s.Ref.BackupTime).Replace(':', '_'), true, (object)s));
                    break;
                case 3:
                {
                    var s = FindSnapshot(w) ?? throw new ItemNotFoundException($"no snapshot at '{path}'");
                    items = s.Files.Select(f => ArchiveNames.DisplayName(f.Name))
                        .Where(n => n.EndsWith(".pxar", StringComparison.Ordinal) || n.EndsWith(".mpxar", StringComparison.Ordinal))
                        .Select(n => (n.Replace(".mpxar", ".pxar"), true, (object)n));
                    break;
                }
                default:
                {
                    var archive = Archive(w) ?? throw new ItemNotFoundException($"no file archive at '{path}'");
                    var dir = Sync(archive.Archive.LookupAsync(w.ArchivePath, CancellationToken.None));
                    if (dir is null || dir.Type != PxarEntryType.Directory) return true;
                    items = Sync(archive.Archive.ListAsync(dir, CancellationToken.None))
                        .Select(e => (e.Name, e.Type == PxarEntryType.Directory, (object)Info(e, archive, w)));
                    break;
                }
            }
        foreach (var (name, container, item) in items)
        {
            if (Stopping) return true;
            string child = Join(path, name);
            if (namesOnly) WriteItemObject(name, child, container);
            else WriteItem(item, child, container, drive);
            if (recurse && container && !namesOnly) Children(child, true, false);
        }
        return true;
    }

    private static T Guard<T>(Func<T> f)
    {
        try { return f(); }
        catch (PbsException e) { throw new PSInvalidOperationException($"{e.ErrorId}: {e.Message}", e); }
    }

    // ---- Copy-Item to the file system ----

    /// <summary>
    /// Copy-Item of a file or directory inside a file archive to the file system (the destination given as
    /// <c>PbsRestore::C:\dest</c>, see the class comment). As Copy-Item does: into an existing folder under the item's
    /// own name, else to the destination path itself. Existing files are replaced only with -Force; -WhatIf and
    /// -Confirm ask per item; progress shows files and bytes; warnings are Restore-PbsFile's.
    /// </summary>
    protected override void CopyItem(string path, string copyPath, bool recurse)
    {
        var w = Locate(path);
        try
        {
            if (w is null || w.Invalid || w.NamespaceList || w.Rest.Length < 4)
                throw new PbsException("CopySourceNotInArchive", PbsErrorKind.InvalidArgument,
                    $"'{path}' is not inside a file archive: Copy-Item copies files and directories of a .pxar archive " +
                    "(for whole archives or disk images use Restore-PbsFile or Restore-PbsImage)");
            if (Locate(copyPath) is not null)
                throw new PbsException("DestinationReadOnly", PbsErrorKind.InvalidArgument, $"'{copyPath}' is on a PbsRestore drive, which is read-only; copy to the file system");
            var archive = Archive(w) ?? throw new PbsNotFoundException("PathNotFound", $"no file archive at '{path}'");
            var entry = Sync(archive.Archive.LookupAsync(w.ArchivePath, CancellationToken.None))
                        ?? throw new PbsNotFoundException("PathNotFound", $"'/{w.ArchivePath}' does not exist in {archive.Name} of snapshot {w.SnapshotText}");
            if (entry.Type == PxarEntryType.Directory && !recurse)
                throw new PbsException("DirectoryNeedsRecurse", PbsErrorKind.InvalidArgument,
                    $"'/{entry.Path}' is a directory: add -Recurse to copy it with its contents");
            string destination = FileSystemPath(copyPath.StartsWith("PbsRestore::", StringComparison.OrdinalIgnoreCase) ? copyPath["PbsRestore::".Length..] : copyPath);
            // Like Copy-Item: into an existing folder under the item's own name, else as the destination path itself.
            string folder, name;
            if (Directory.Exists(destination))
            {
                folder = destination;
                name = entry.Path.Length == 0 ? w.Rest[3] : entry.Name;
            }
            else
            {
                folder = System.IO.Path.GetDirectoryName(System.IO.Path.TrimEndingDirectorySeparator(destination)) ?? destination;
                name = System.IO.Path.GetFileName(System.IO.Path.TrimEndingDirectorySeparator(destination));
            }
            string target = System.IO.Path.Combine(folder, name);
            if (!ShouldProcess(target, $"Copy {entry.Type.ToString().ToLowerInvariant()} '/{entry.Path}' of {archive.Name} of snapshot {w.SnapshotText}"))
                return;
            var result = Restore(archive, entry, folder, entry.Path.Length == 0 || name != entry.Name ? name : null, w);
            if (Directory.Exists(target)) WriteItemObject(new DirectoryInfo(target), target, true);
            else WriteItemObject(new FileInfo(target), target, false);
            WriteVerbose($"Copied '/{entry.Path}' to '{target}': {result.Files} files, {result.Bytes} bytes, {result.Skipped} skipped.");
        }
        catch (Exception e) when (e is PbsException or IOException or UnauthorizedAccessException)
        {
            string id = e is PbsException pe ? pe.ErrorId : e.GetType().Name;
            var category = e switch
            {
                PbsNotFoundException => ErrorCategory.ObjectNotFound,
                PbsException { Kind: PbsErrorKind.ResourceExists } => ErrorCategory.ResourceExists,
                PbsException { Kind: PbsErrorKind.InvalidArgument } => ErrorCategory.InvalidArgument,
                UnauthorizedAccessException => ErrorCategory.PermissionDenied,
                _ => ErrorCategory.ReadError,
            };
            WriteError(new ErrorRecord(e, id, category, path));
        }
    }

    /// <summary>Runs the restore on a worker and reports progress and warnings on the pipeline thread; Ctrl+C cancels it.</summary>
    private FileRestoreResult Restore(FileArchive archive, PxarEntry entry, string folder, string? name, Where w)
    {
        var counters = new FileRestoreCounters();
        var warnings = new ConcurrentQueue<string>();
        var restorer = new FileRestorer(archive.Archive, new FileRestoreOptions { Force = Force }, counters, warnings.Enqueue);
        using var cts = new CancellationTokenSource();
        var task = Task.Run(() => restorer.RestoreAsync(archive.Name, entry, folder, cts.Token, name));
        string title = $"Copying /{entry.Path} from {w.SnapshotText}";
        var clock = System.Diagnostics.Stopwatch.StartNew();
        try
        {
            while (!((IAsyncResult)task).AsyncWaitHandle.WaitOne(200))
            {
                if (Stopping) cts.Cancel();
                while (warnings.TryDequeue(out var m)) WriteWarning(m);
                double s = Math.Max(clock.Elapsed.TotalSeconds, 0.001);
                WriteProgress(new ProgressRecord(1, title, $"{counters.Files} files, {ProgressView.Size(counters.Bytes)}, {counters.Bytes / s / 1e6:F1} MB/s")
                {
                    CurrentOperation = counters.Current ?? "",
                });
            }
            return task.GetAwaiter().GetResult();
        }
        finally
        {
            while (warnings.TryDequeue(out var m)) WriteWarning(m);
            WriteProgress(new ProgressRecord(1, title, "Done") { RecordType = ProgressRecordType.Completed });
        }
    }

    // ---- content (Get-Content): lines of text ----

    public IContentReader GetContentReader(string path)
    {
        var w = Locate(path);
        var archive = w is { Invalid: false, NamespaceList: false, Rest.Length: > 4 } ? Guard(() => Archive(w)) : null;
        var entry = archive is null ? null : Guard(() => Sync(archive.Archive.LookupAsync(w!.ArchivePath, CancellationToken.None)));
        if (entry is null) throw new ItemNotFoundException($"no file at '{path}'");
        if (entry.Type == PxarEntryType.Hardlink) entry = Guard(() => Sync(archive!.Archive.ResolveHardlinkAsync(entry, CancellationToken.None)));
        if (entry.Type != PxarEntryType.File) throw new PSArgumentException($"'{path}' is a {entry.Type}, not a file");
        var stream = Guard(() => Sync(archive!.Archive.OpenContentAsync(entry, CancellationToken.None)));
        var p = DynamicParameters as PbsContentParameters;
        return p?.AsByteStream == true ? new ByteReader(stream, p.Raw) : new LineReader(stream, p?.Raw == true);
    }

    public object? GetContentReaderDynamicParameters(string path) => new PbsContentParameters();
    public IContentWriter GetContentWriter(string path) => throw new PSNotSupportedException("PbsRestore drives are read-only");
    public object? GetContentWriterDynamicParameters(string path) => null;
    public void ClearContent(string path) => throw new PSNotSupportedException("PbsRestore drives are read-only");
    public object? ClearContentDynamicParameters(string path) => null;

    private sealed class LineReader(Stream stream, bool raw) : IContentReader
    {
        private readonly StreamReader _reader = new(stream, Encoding.UTF8);
        private bool _done;

        public IList Read(long readCount)
        {
            if (raw)
            {
                if (_done) return new List<string>();
                _done = true;
                return new List<string> { _reader.ReadToEnd() };
            }
            var lines = new List<string>();
            while (readCount <= 0 || lines.Count < readCount)
            {
                var line = _reader.ReadLine();
                if (line is null) break;
                lines.Add(line);
            }
            return lines;
        }

        public void Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public void Close() => _reader.Dispose();
        public void Dispose() => _reader.Dispose();
    }

    /// <summary>Bytes as the file system's Get-Content -AsByteStream gives them: one byte[] with -Raw, else single bytes.</summary>
    private sealed class ByteReader(Stream stream, bool raw) : IContentReader
    {
        private bool _done;

        public IList Read(long readCount)
        {
            if (raw)
            {
                if (_done) return Array.Empty<object>();
                _done = true;
                using var all = new MemoryStream();
                stream.CopyTo(all);
                return new List<object> { all.ToArray() };
            }
            var buffer = new byte[readCount <= 0 ? 64 * 1024 : (int)Math.Min(readCount, 64 * 1024)];
            int n = stream.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false);
            var list = new List<object>(n);
            for (int i = 0; i < n; i++) list.Add(buffer[i]);
            return list;
        }

        public void Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public void Close() => stream.Dispose();
        public void Dispose() => stream.Dispose();
    }
}

/// <summary>Get-Content's parameters on a PbsRestore drive, as the file system has them: -Raw and -AsByteStream.</summary>
public sealed class PbsContentParameters
{
    /// <summary>The whole content as one object (a string, or with -AsByteStream a byte[]).</summary>
    [Parameter]
    public SwitchParameter Raw { get; set; }

    /// <summary>Bytes instead of lines of text.</summary>
    [Parameter]
    public SwitchParameter AsByteStream { get; set; }
}
