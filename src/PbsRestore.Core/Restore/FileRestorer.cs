using System.Diagnostics;
using PbsRestore.Formats.Pxar;
using PbsRestore.Platform;

namespace PbsRestore.Restore;

/// <summary>Options of a file-level restore.</summary>
public sealed record FileRestoreOptions
{
    /// <summary>Replace existing files (directories are merged).</summary>
    public bool Force { get; init; }
    /// <summary>Set owners and groups (possible as root on Unix).</summary>
    public bool RestoreOwners { get; init; } = FileMetadata.CanSetOwner;
    /// <summary>Map names Windows cannot hold (always on Windows; settable for tests).</summary>
    public bool MapWindowsNames { get; init; } = FileMetadata.IsWindows;
}

/// <summary>Live counters of a file restore, for progress (read from another thread).</summary>
public sealed class FileRestoreCounters
{
    private long _entries, _files, _bytes;
    public long Entries => Interlocked.Read(ref _entries);
    public long Files => Interlocked.Read(ref _files);
    public long Bytes => Interlocked.Read(ref _bytes);
    public string? Current { get; internal set; }
    internal void AddEntry() => Interlocked.Increment(ref _entries);
    internal void AddFile() => Interlocked.Increment(ref _files);
    internal void AddBytes(long n) => Interlocked.Add(ref _bytes, n);
}

/// <summary>What a file restore did.</summary>
public sealed record FileRestoreResult
{
    public required string Archive { get; init; }
    public required string Path { get; init; }
    public required string Destination { get; init; }
    public long Files { get; init; }
    public long Directories { get; init; }
    public long Symlinks { get; init; }
    public long Hardlinks { get; init; }
    public long Bytes { get; init; }
    /// <summary>Entries not restored (FIFOs, devices, sockets where the OS does not allow them).</summary>
    public long Skipped { get; init; }
    public long Warnings { get; init; }
    /// <summary>Archive paths whose names were mapped for Windows, with the name written.</summary>
    public IReadOnlyList<string> MappedNames { get; init; } = [];
    public TimeSpan Duration { get; init; }
}

/// <summary>
/// Extracts entries of a pxar archive into a folder: contents bit-exact (every chunk verified by the reader),
/// modification times to the nanosecond, permission bits, owners and xattrs where the OS allows, symlinks and
/// hardlinks as links (else a warning and, for hardlinks, a copy), FIFOs and devices where allowed. Nothing is
/// ever written outside the destination: names are single components (the reader guarantees it), every target
/// path is checked to lie below the destination, and no directory on the way may be a symlink, so a symlink in
/// the archive (or already in the destination) cannot redirect a later write.
/// </summary>
public sealed class FileRestorer(PxarArchive archive, FileRestoreOptions options, FileRestoreCounters counters, Action<string> warning)
{
    private readonly Dictionary<long, string> _restoredFiles = [];
    private readonly List<string> _mapped = [];
    private long _files, _dirs, _symlinks, _hardlinks, _skipped, _warnings, _bytes;
    private bool _aclWarned;
    private string _root = "";

    /// <summary>
    /// Restores <paramref name="entry"/> into <paramref name="destination"/> (created if missing): a file or
    /// directory lands there under its own name, or under <paramref name="targetName"/> when given (a copy to a new
    /// name, as Copy-Item does); the archive root's contents land directly in it unless a target name is given.
    /// </summary>
    public async Task<FileRestoreResult> RestoreAsync(string archiveName, PxarEntry entry, string destination, CancellationToken ct, string? targetName = null)
    {
        var clock = Stopwatch.StartNew();
        if (targetName is not null && (targetName.Length == 0 || targetName is "." or ".." || targetName.IndexOfAny(['/', '\\', '\0']) >= 0))
            throw new PbsException("TargetNameInvalid", PbsErrorKind.InvalidArgument, $"'{targetName}' is not a single file name");
        _root = Path.GetFullPath(destination);
        Directory.CreateDirectory(_root);
        CheckRealDirectory(_root, "");
        if (entry.Path.Length == 0 && targetName is null)
            await RestoreChildrenAsync(entry, _root, ct).ConfigureAwait(false);
        else
            await RestoreEntryAsync(entry, _root, ct, targetName).ConfigureAwait(false);
        return new FileRestoreResult
        {
            Archive = archiveName, Path = "/" + entry.Path, Destination = _root, Files = _files, Directories = _dirs,
            Symlinks = _symlinks, Hardlinks = _hardlinks, Bytes = _bytes, Skipped = _skipped, Warnings = _warnings,
            MappedNames = _mapped, Duration = clock.Elapsed,
        };
    }

    /// <summary>The path an entry would be written to under <paramref name="destination"/> (mapped on Windows).</summary>
    public string TargetName(PxarEntry entry)
    {
        string name = entry.Name;
        if (!options.MapWindowsNames) return name;
        string mapped = WindowsNames.Map(name);
        if (mapped != name)
        {
            _mapped.Add($"/{entry.Path} -> {mapped}");
            Warn($"'/{entry.Path}': the name cannot exist on Windows; written as '{mapped}' (characters mapped to U+F0xx, as Cygwin and WSL do)");
        }
        return mapped;
    }

    private void Warn(string message)
    {
        _warnings++;
        warning(message);
    }

    private async Task RestoreChildrenAsync(PxarEntry dir, string target, CancellationToken ct)
    {
        foreach (var child in await archive.ListAsync(dir, ct).ConfigureAwait(false))
        {
            ct.ThrowIfCancellationRequested();
            await RestoreEntryAsync(child, target, ct).ConfigureAwait(false);
        }
    }

    private async Task RestoreEntryAsync(PxarEntry e, string parent, CancellationToken ct, string? name = null)
    {
        string path = Path.Combine(parent, name ?? TargetName(e));
        EnsureInside(path, e);
        counters.Current = "/" + e.Path;
        counters.AddEntry();
        switch (e.Type)
        {
            case PxarEntryType.Directory:
                if (Directory.Exists(path) || File.Exists(path))
                {
                    if (File.Exists(path) && !IsDirectory(path))
                    {
                        if (!options.Force) throw Exists(path, e);
                        File.Delete(path);
                        Directory.CreateDirectory(path);
                    }
                    CheckRealDirectory(path, e.Path);
                }
                else Directory.CreateDirectory(path);
                _dirs++;
                await RestoreChildrenAsync(e, path, ct).ConfigureAwait(false);
                ApplyMetadata(e, path);
                return;
            case PxarEntryType.File:
                PrepareTarget(path, e);
                await WriteContentAsync(e, path, ct).ConfigureAwait(false);
                _restoredFiles[e.ItemOffset] = path;
                ApplyMetadata(e, path);
                _files++;
                counters.AddFile();
                return;
            case PxarEntryType.Hardlink:
            {
                var target = await archive.ResolveHardlinkAsync(e, ct).ConfigureAwait(false);
                PrepareTarget(path, e);
                if (_restoredFiles.TryGetValue(target.ItemOffset, out var existing))
                {
                    try
                    {
                        FileMetadata.CreateHardLink(existing, path);
                        _hardlinks++;
                        return;
                    }
                    catch (IOException x)
                    {
                        Warn($"'/{e.Path}': hardlink to '/{e.LinkTarget}' not possible here ({x.Message}); written as a copy");
                    }
                }
                await WriteContentAsync(target, path, ct).ConfigureAwait(false);
                _restoredFiles[target.ItemOffset] = path;
                ApplyMetadata(target, path);
                _files++;
                counters.AddFile();
                return;
            }
            case PxarEntryType.Symlink:
                PrepareTarget(path, e);
                try
                {
                    File.CreateSymbolicLink(path, e.LinkTarget!);
                }
                catch (Exception x) when (x is IOException or UnauthorizedAccessException)
                {
                    Warn($"'/{e.Path}': symlink to '{e.LinkTarget}' not created ({x.Message})");
                    _skipped++;
                    return;
                }
                _symlinks++;
                ApplyMetadata(e, path);
                return;
            case PxarEntryType.Fifo when FileMetadata.CanCreateFifo:
                PrepareTarget(path, e);
                FileMetadata.CreateFifo(path, e.Permissions & 0x1FF);
                ApplyMetadata(e, path);
                return;
            case PxarEntryType.BlockDevice or PxarEntryType.CharDevice when FileMetadata.CanCreateDevice:
                PrepareTarget(path, e);
                FileMetadata.CreateDevice(path, e.Type == PxarEntryType.BlockDevice, e.Permissions & 0x1FF, e.DeviceMajor, e.DeviceMinor);
                ApplyMetadata(e, path);
                return;
            default:
                _skipped++;
                Warn($"'/{e.Path}': {Describe(e.Type)} skipped: " + (FileMetadata.IsWindows ? "Windows has no such files"
                    : e.Type == PxarEntryType.Socket ? "a socket is only meaningful to the process that listens on it" : "creating one needs root"));
                return;
        }
    }

    private static string Describe(PxarEntryType t) => t switch
    {
        PxarEntryType.Fifo => "FIFO", PxarEntryType.Socket => "socket", PxarEntryType.BlockDevice => "block device",
        PxarEntryType.CharDevice => "character device", _ => t.ToString(),
    };

    private async Task WriteContentAsync(PxarEntry file, string path, CancellationToken ct)
    {
        await using var source = await archive.OpenContentAsync(file, ct).ConfigureAwait(false);
        await using var output = new FileStream(path, new FileStreamOptions
        {
            Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None, BufferSize = 0, PreallocationSize = file.Size,
        });
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent((int)Math.Clamp(file.Size, 4096, 1 << 20));
        try
        {
            int n;
            while ((n = await source.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0)
            {
                await output.WriteAsync(buffer.AsMemory(0, n), ct).ConfigureAwait(false);
                _bytes += n;
                counters.AddBytes(n);
            }
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>A new file, link or node: an existing one is refused, or removed with Force (a link itself, never what it points to).</summary>
    private void PrepareTarget(string path, PxarEntry e)
    {
        var info = new FileInfo(path);
        bool exists = info.Exists || info.LinkTarget is not null || Directory.Exists(path);
        if (!exists) return;
        if (!options.Force) throw Exists(path, e);
        if (IsDirectory(path)) throw new PbsException("DestinationExists", PbsErrorKind.ResourceExists,
            $"'/{e.Path}': '{path}' is a directory; a {Describe(e.Type).ToLowerInvariant()} cannot replace it");
        File.Delete(path);
    }

    private static bool IsDirectory(string path) =>
        File.GetAttributes(path).HasFlag(FileAttributes.Directory) && new DirectoryInfo(path).LinkTarget is null;

    private static PbsException Exists(string path, PxarEntry e) =>
        new("DestinationExists", PbsErrorKind.ResourceExists, $"'/{e.Path}': '{path}' already exists; use -Force to replace it");

    /// <summary>A directory we write into must be a real one, not a symlink or junction (which could point anywhere).</summary>
    private static void CheckRealDirectory(string path, string entry)
    {
        var info = new DirectoryInfo(path);
        if (info.LinkTarget is not null || info.Attributes.HasFlag(FileAttributes.ReparsePoint))
            throw new PbsException("DestinationIsLink", PbsErrorKind.InvalidArgument,
                $"'/{entry}': '{path}' is a symbolic link or junction; nothing is written through it");
    }

    private void EnsureInside(string path, PxarEntry e)
    {
        string full = Path.GetFullPath(path);
        string root = _root.EndsWith(Path.DirectorySeparatorChar) ? _root : _root + Path.DirectorySeparatorChar;
        if (!full.StartsWith(root, FileMetadata.PathComparison))
            throw new PbsException("PathOutsideDestination", PbsErrorKind.InvalidData,
                $"'/{e.Path}' would be written to '{full}', outside the destination '{_root}'; refused");
    }

    /// <summary>
    /// POSIX ACLs (before the permission bits: setting the access ACL sets the rwx bits from it, chmod then puts back
    /// setuid/setgid/sticky). The archive keeps the owning group's entry apart; the mode's group bits are the mask.
    /// </summary>
    private void ApplyAcl(PxarEntry e, string path)
    {
        if (!FileMetadata.CanSetAcls)
        {
            if (!_aclWarned) Warn($"'/{e.Path}' (and maybe others): POSIX ACLs not restored: this OS has none; permission bits are");
            _aclWarned = true;
            return;
        }
        static IEnumerable<FileMetadata.AclEntry> Named(List<PxarAclEntry> list) => list.Select(x => new FileMetadata.AclEntry((uint)x.Id, (uint)x.Permissions));
        var acl = e.Acl;
        uint mode = (uint)e.Permissions;
        try
        {
            if (acl.Users.Count > 0 || acl.Groups.Count > 0 || acl.GroupObj is not null)
                FileMetadata.SetPosixAcl(path, false, (mode >> 6) & 7, Named(acl.Users), (uint)(acl.GroupObj ?? ((mode >> 3) & 7)), Named(acl.Groups), (mode >> 3) & 7, mode & 7);
            if (acl.Default is { } d && e.Type == PxarEntryType.Directory)
                FileMetadata.SetPosixAcl(path, true, (uint)d.UserObj, Named(acl.DefaultUsers), (uint)d.GroupObj, Named(acl.DefaultGroups),
                    d.Mask == PxarFormat.AclNoMask ? null : (uint)d.Mask, (uint)d.Other);
        }
        catch (IOException x)
        {
            Warn($"'/{e.Path}': POSIX ACL not restored: {x.Message}");
        }
    }

    /// <summary>Owner, permission bits, xattrs, then the time (last: everything before it changes the ctime/mtime).</summary>
    private void ApplyMetadata(PxarEntry e, string path)
    {
        bool link = e.Type == PxarEntryType.Symlink;
        if (options.RestoreOwners)
        {
            try { FileMetadata.SetOwner(path, e.Uid, e.Gid); }
            catch (IOException x) { Warn($"'/{e.Path}': {x.Message}"); }
        }
        if (!e.Acl.IsEmpty && !link) ApplyAcl(e, path);
        if (!link) FileMetadata.SetPermissions(path, e.Permissions);
        if (FileMetadata.CanSetXattrs)
        {
            foreach (var x in e.Xattrs)
            {
                try { FileMetadata.SetXattr(path, x.Name, x.Value); }
                catch (IOException ex) { Warn($"'/{e.Path}': {ex.Message}"); }
            }
            if (e.FCaps is { } caps)
            {
                try { FileMetadata.SetXattr(path, "security.capability"u8.ToArray(), caps); }
                catch (IOException ex) { Warn($"'/{e.Path}': file capabilities not restored: {ex.Message}"); }
            }
        }
        else if (e.Xattrs.Count > 0 || e.FCaps is not null)
            Warn($"'/{e.Path}': {e.Xattrs.Count + (e.FCaps is null ? 0 : 1)} extended attribute(s) not restored: this OS has no xattrs");
        try { FileMetadata.SetModifiedTime(path, e.MtimeSeconds, e.MtimeNanos, link); }
        catch (IOException x) { Warn($"'/{e.Path}': {x.Message}"); }
    }
}
