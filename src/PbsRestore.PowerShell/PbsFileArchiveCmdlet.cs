using System.Management.Automation;
using PbsRestore.Access;
using PbsRestore.Formats.Pxar;

namespace PbsRestore.PowerShell;

/// <summary>
/// Base of the cmdlets that work inside a file archive of a container or host backup (Get-PbsFile,
/// Restore-PbsFile): the source, snapshot and key parameters of <see cref="PbsArchiveCmdlet"/>, the archive
/// (root.pxar by default; a split pair is found by the same name), and opening it for random access.
/// </summary>
public abstract class PbsFileArchiveCmdlet : PbsArchiveCmdlet
{
    /// <summary>The file archive: 'root.pxar' (default); a split pair root.mpxar + root.ppxar is found by that name too.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(Completers.ArchiveCompleter))]
    public string Archive { get; set; } = "root.pxar";

    protected override string? ArchiveName => Archive;

    /// <summary>Opens the current snapshot's file archive (dispose both).</summary>
    protected (Sources.ISnapshotReader Reader, FileArchive Archive) OpenFileArchive(Sources.ISnapshotSource source)
    {
        var reader = Run(ct => OpenSnapshotAsync(source, ct));
        try
        {
            var archive = Run(ct => FileArchive.OpenAsync(reader, Crypt, Archive, null, ct));
            return (reader, archive);
        }
        catch
        {
            reader.DisposeAsync().AsTask().GetAwaiter().GetResult();
            throw;
        }
    }

    /// <summary>Finds a path of the archive ('/' is the root) or fails naming it.</summary>
    protected PxarEntry Find(FileArchive archive, string path, string snapshot) =>
        Run(ct => archive.Archive.LookupAsync(path, ct)) ?? throw new PbsNotFoundException("PathNotFound",
            $"'{path}' does not exist in {archive.Name} of snapshot {snapshot}");
}

/// <summary>An entry of a file archive, as Get-PbsFile lists it.</summary>
public sealed class PbsFileInfo
{
    internal PbsFileInfo(PxarEntry e, PxarEntry? target, string snapshot, string archive)
    {
        var meta = target ?? e;
        Path = "/" + e.Path;
        Name = e.Path.Length == 0 ? "/" : e.Name;
        Type = e.Type.ToString();
        Size = meta.Type == PxarEntryType.File ? meta.Size : 0;
        Permissions = Convert.ToString(meta.Permissions, 8).PadLeft(4, '0');
        Mode = ModeString(e.Type, meta.Permissions);
        Uid = meta.Uid;
        Gid = meta.Gid;
        ModifiedTime = meta.ModifiedTime.UtcDateTime;
        LinkTarget = e.LinkTarget;
        Snapshot = snapshot;
        Archive = archive;
        if (e.Type is PxarEntryType.BlockDevice or PxarEntryType.CharDevice) Device = $"{e.DeviceMajor},{e.DeviceMinor}";
        Xattrs = meta.Xattrs.Select(x => x.NameText).ToArray();
        Acl = [.. meta.Acl.AccessText(meta.Mode), .. meta.Acl.DefaultText().Select(d => "default:" + d)];
        Entry = e;
    }

    public string Path { get; }
    public string Name { get; }
    /// <summary>Directory, File, Symlink, Hardlink, BlockDevice, CharDevice, Fifo or Socket.</summary>
    public string Type { get; }
    public long Size { get; }
    /// <summary>ls-style: type letter and rwx bits with setuid/setgid/sticky, e.g. '-rwsr-x---'.</summary>
    public string Mode { get; }
    /// <summary>Octal permission bits, e.g. '0644' or '4750'.</summary>
    public string Permissions { get; }
    public uint Uid { get; }
    public uint Gid { get; }
    /// <summary>Modification time, UTC (to 100 ns; the archive has nanoseconds).</summary>
    public DateTime ModifiedTime { get; }
    /// <summary>Symlink target, or for a hardlink the archive path of the file it shares content with.</summary>
    public string? LinkTarget { get; }
    public string? Device { get; }
    public string[] Xattrs { get; }
    /// <summary>POSIX ACL entries (getfacl form; default ACL entries prefixed 'default:').</summary>
    public string[] Acl { get; }
    public string Snapshot { get; }
    public string Archive { get; }
    internal PxarEntry Entry { get; }

    private static string ModeString(PxarEntryType type, int p)
    {
        char t = type switch
        {
            PxarEntryType.Directory => 'd', PxarEntryType.Symlink => 'l', PxarEntryType.BlockDevice => 'b',
            PxarEntryType.CharDevice => 'c', PxarEntryType.Fifo => 'p', PxarEntryType.Socket => 's', _ => '-',
        };
        var c = new char[10];
        c[0] = t;
        string rwx = "rwxrwxrwx";
        for (int i = 0; i < 9; i++) c[i + 1] = (p & (1 << (8 - i))) != 0 ? rwx[i] : '-';
        if ((p & 0x800) != 0) c[3] = c[3] == 'x' ? 's' : 'S';
        if ((p & 0x400) != 0) c[6] = c[6] == 'x' ? 's' : 'S';
        if ((p & 0x200) != 0) c[9] = c[9] == 'x' ? 't' : 'T';
        return new string(c);
    }
}
