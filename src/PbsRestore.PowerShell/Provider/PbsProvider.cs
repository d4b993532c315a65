using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Provider;
using System.Text;
using PbsRestore.Access;
using PbsRestore.Formats;
using PbsRestore.Formats.Pxar;
using PbsRestore.Sources;
using PbsRestore.Sources.Local;

namespace PbsRestore.PowerShell.Provider;

/// <summary>A drive of the PbsRestore provider: one datastore folder, with the file archives it has opened.</summary>
public sealed class PbsDriveInfo : PSDriveInfo
{
    internal PbsDriveInfo(PSDriveInfo drive, LocalDatastore source) : base(drive) => Source = source;

    internal LocalDatastore Source { get; }
    internal Dictionary<string, (ISnapshotReader Reader, FileArchive Archive)> Open { get; } = new(StringComparer.Ordinal);

    internal void CloseAll()
    {
        foreach (var (reader, archive) in Open.Values)
        {
            archive.Dispose();
            reader.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
        Open.Clear();
    }
}

/// <summary>
/// A navigation provider over a datastore folder: <c>New-PSDrive -Name pbs -PSProvider PbsRestore -Root D:\pbs</c>,
/// then <c>pbs:\ct\200\2024-05-01T10_10_00Z\root.pxar\etc</c>: backup types, ids, snapshot times (':' shown as
/// '_', which PowerShell paths cannot hold), the snapshot's file archives, and the files inside them, for
/// Get-ChildItem, Get-Item, Test-Path and Get-Content. Namespaces are not shown yet (root namespace only).
/// Read-only; every chunk read is verified.
/// </summary>
[CmdletProvider("PbsRestore", ProviderCapabilities.None)]
public sealed class PbsProvider : NavigationCmdletProvider, IContentCmdletProvider
{
    protected override PSDriveInfo NewDrive(PSDriveInfo drive)
    {
        if (drive is null || string.IsNullOrWhiteSpace(drive.Root))
            throw new PSArgumentException("give -Root, a datastore folder");
        string root = System.IO.Path.GetFullPath(drive.Root);
        if (!Directory.Exists(root))
            throw new PSArgumentException($"'{root}' is not a folder; -Root must be a datastore folder (the one holding .chunks)");
        return new PbsDriveInfo(new PSDriveInfo(drive.Name, drive.Provider, root, drive.Description, drive.Credential), new LocalDatastore(root));
    }

    protected override PSDriveInfo RemoveDrive(PSDriveInfo drive)
    {
        (drive as PbsDriveInfo)?.CloseAll();
        return drive;
    }

    private PbsDriveInfo Drive => PSDriveInfo as PbsDriveInfo ?? throw new PSInvalidOperationException("not a PbsRestore drive");

    /// <summary>The path's parts below the drive root.</summary>
    private string[] Parts(string path)
    {
        string p = path.Replace('/', '\\');
        string root = Drive.Root.Replace('/', '\\').TrimEnd('\\');
        if (p.StartsWith(root, StringComparison.Ordinal)) p = p[root.Length..];
        return p.Split('\\', StringSplitOptions.RemoveEmptyEntries);
    }

    private static T Sync<T>(Task<T> task) => task.GetAwaiter().GetResult();

    private sealed record Node(string Name, bool Container, object Item);

    /// <summary>Where a path points: a level of the datastore, or an entry of a file archive (null when nothing is there).</summary>
    private Node? Resolve(string[] parts)
    {
        var source = Drive.Source;
        switch (parts.Length)
        {
            case 0:
                return new Node("", true, Drive.Root);
            case 1 or 2:
            {
                var list = Sync(source.ListSnapshotsAsync(BackupNamespace.Root, parts[0], parts.Length == 2 ? parts[1] : null, CancellationToken.None));
                return list.Count == 0 ? null : new Node(parts[^1], true, parts[^1]);
            }
            case 3:
                return FindSnapshot(parts) is { } s ? new Node(parts[2], true, s) : null;
        }
        var archive = Archive(parts);
        if (archive is null) return null;
        var entry = Sync(archive.Archive.LookupAsync(string.Join('/', parts[4..]), CancellationToken.None));
        return entry is null ? null : new Node(parts[^1], entry.Type == PxarEntryType.Directory, Info(entry, archive, parts));
    }

    private SnapshotInfo? FindSnapshot(string[] parts)
    {
        if (!SnapshotTime.TryParse(parts[2], out var time)) return null;
        return Sync(Drive.Source.ListSnapshotsAsync(BackupNamespace.Root, parts[0], parts[1], CancellationToken.None))
            .FirstOrDefault(s => s.Ref.BackupTime == time);
    }

    private FileArchive? Archive(string[] parts)
    {
        var snapshot = FindSnapshot(parts);
        if (snapshot is null) return null;
        string key = snapshot.Ref + "|" + parts[3];
        if (Drive.Open.TryGetValue(key, out var open)) return open.Archive;
        if (!snapshot.Files.Any(f => ArchiveNames.DisplayName(f.Name) is var n && (n == parts[3] || n == parts[3].Replace(".pxar", ".mpxar"))))
            return null;
        var reader = Sync(Drive.Source.OpenSnapshotAsync(snapshot.Ref, CancellationToken.None));
        var archive = Sync(FileArchive.OpenAsync(reader, null, parts[3], null, CancellationToken.None));
        Drive.Open[key] = (reader, archive);
        return archive;
    }

    private static PbsFileInfo Info(PxarEntry e, FileArchive archive, string[] parts) =>
        new(e, null, $"{parts[0]}/{parts[1]}/{parts[2]}", archive.Name);

    private string Join(string parent, string child) => parent.TrimEnd('\\', '/') + "\\" + child;

    protected override bool IsValidPath(string path) => true;

    protected override bool ItemExists(string path) => Guard(() => Resolve(Parts(path)) is not null);

    protected override bool IsItemContainer(string path) => Guard(() => Resolve(Parts(path))?.Container ?? false);

    protected override bool HasChildItems(string path) => IsItemContainer(path);

    protected override void GetItem(string path)
    {
        var node = Guard(() => Resolve(Parts(path)));
        if (node is not null) WriteItemObject(node.Item, path, node.Container);
    }

    protected override void GetChildItems(string path, bool recurse) => Children(path, recurse, namesOnly: false);

    protected override void GetChildNames(string path, ReturnContainers returnContainers) => Children(path, false, namesOnly: true);

    private void Children(string path, bool recurse, bool namesOnly)
    {
        var parts = Parts(path);
        var source = Drive.Source;
        IEnumerable<(string Name, bool Container, object Item)> items;
        switch (parts.Length)
        {
            case 0:
                items = Sync(source.ListSnapshotsAsync(BackupNamespace.Root, null, null, CancellationToken.None)).Select(s => s.Ref.BackupType).Distinct()
                    .Select(t => (t, true, (object)t));
                break;
            case 1:
                items = Sync(source.ListSnapshotsAsync(BackupNamespace.Root, parts[0], null, CancellationToken.None)).Select(s => s.Ref.BackupId).Distinct()
                    .Select(i => (i, true, (object)i));
                break;
            case 2:
                items = Sync(source.ListSnapshotsAsync(BackupNamespace.Root, parts[0], parts[1], CancellationToken.None))
                    .Select(s => (SnapshotTime.Format(s.Ref.BackupTime).Replace(':', '_'), true, (object)s));
                break;
            case 3:
            {
                var s = FindSnapshot(parts) ?? throw new ItemNotFoundException($"no snapshot at '{path}'");
                items = s.Files.Select(f => ArchiveNames.DisplayName(f.Name)).Where(n => n.EndsWith(".pxar", StringComparison.Ordinal) || n.EndsWith(".mpxar", StringComparison.Ordinal))
                    .Select(n => (n.Replace(".mpxar", ".pxar"), true, (object)n));
                break;
            }
            default:
            {
                var archive = Archive(parts) ?? throw new ItemNotFoundException($"no file archive at '{path}'");
                var dir = Sync(archive.Archive.LookupAsync(string.Join('/', parts[4..]), CancellationToken.None));
                if (dir is null || dir.Type != PxarEntryType.Directory) return;
                items = Sync(archive.Archive.ListAsync(dir, CancellationToken.None))
                    .Select(e => (e.Name, e.Type == PxarEntryType.Directory, (object)Info(e, archive, parts)));
                break;
            }
        }
        foreach (var (name, container, item) in items)
        {
            if (Stopping) return;
            string child = Join(path, name);
            if (namesOnly) WriteItemObject(name, child, container);
            else WriteItemObject(item, child, container);
            if (recurse && container && !namesOnly) Children(child, true, false);
        }
    }

    private static T Guard<T>(Func<T> f)
    {
        try { return f(); }
        catch (PbsException e) { throw new PSInvalidOperationException(e.Message, e); }
    }

    // ---- content (Get-Content): lines of text ----

    public IContentReader GetContentReader(string path)
    {
        var parts = Parts(path);
        var archive = parts.Length > 4 ? Archive(parts) : null;
        var entry = archive is null ? null : Sync(archive.Archive.LookupAsync(string.Join('/', parts[4..]), CancellationToken.None));
        if (entry is null) throw new ItemNotFoundException($"no file at '{path}'");
        if (entry.Type == PxarEntryType.Hardlink) entry = Sync(archive!.Archive.ResolveHardlinkAsync(entry, CancellationToken.None));
        if (entry.Type != PxarEntryType.File) throw new PSArgumentException($"'{path}' is a {entry.Type}, not a file");
        return new LineReader(Sync(archive!.Archive.OpenContentAsync(entry, CancellationToken.None)));
    }

    public object? GetContentReaderDynamicParameters(string path) => null;
    public IContentWriter GetContentWriter(string path) => throw new PSNotSupportedException("PbsRestore drives are read-only");
    public object? GetContentWriterDynamicParameters(string path) => null;
    public void ClearContent(string path) => throw new PSNotSupportedException("PbsRestore drives are read-only");
    public object? ClearContentDynamicParameters(string path) => null;

    private sealed class LineReader(Stream stream) : IContentReader
    {
        private readonly StreamReader _reader = new(stream, Encoding.UTF8);

        public IList Read(long readCount)
        {
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
}
