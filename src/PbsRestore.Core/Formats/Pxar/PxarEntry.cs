using System.Text;

namespace PbsRestore.Formats.Pxar;

public enum PxarEntryType { Directory, File, Symlink, Hardlink, BlockDevice, CharDevice, Fifo, Socket }

/// <summary>One extended attribute: raw name and value.</summary>
public sealed record PxarXattr(byte[] Name, byte[] Value)
{
    public string NameText => Encoding.UTF8.GetString(Name);
}

/// <summary>An ACL entry of a named user or group: id and rwx bits.</summary>
public readonly record struct PxarAclEntry(ulong Id, ulong Permissions);

/// <summary>POSIX ACLs as pxar stores them: named entries, the group-object entry, and the default ACL of a directory.</summary>
public sealed class PxarAcl
{
    public List<PxarAclEntry> Users { get; } = [];
    public List<PxarAclEntry> Groups { get; } = [];
    public ulong? GroupObj { get; set; }
    /// <summary>Default ACL (directories): user_obj, group_obj, other and mask permissions (mask may be <see cref="PxarFormat.AclNoMask"/>).</summary>
    public (ulong UserObj, ulong GroupObj, ulong Other, ulong Mask)? Default { get; set; }
    public List<PxarAclEntry> DefaultUsers { get; } = [];
    public List<PxarAclEntry> DefaultGroups { get; } = [];

    public bool IsEmpty => Users.Count == 0 && Groups.Count == 0 && GroupObj is null && Default is null && DefaultUsers.Count == 0 && DefaultGroups.Count == 0;

    /// <summary>The access ACL in getfacl's text form (numeric ids), e.g. <c>user:34:r--</c>; empty when there is none.</summary>
    public IReadOnlyList<string> AccessText(ulong mode)
    {
        if (Users.Count == 0 && Groups.Count == 0 && GroupObj is null) return [];
        var list = new List<string> { "user::" + Rwx(mode >> 6) };
        list.AddRange(Users.Select(u => $"user:{u.Id}:{Rwx(u.Permissions)}"));
        list.Add("group::" + Rwx(GroupObj ?? (mode >> 3)));
        list.AddRange(Groups.Select(g => $"group:{g.Id}:{Rwx(g.Permissions)}"));
        // With an extended ACL the mode's group bits are the mask (POSIX).
        list.Add("mask::" + Rwx(mode >> 3));
        list.Add("other::" + Rwx(mode));
        return list;
    }

    /// <summary>The default ACL in getfacl's text form; empty when there is none.</summary>
    public IReadOnlyList<string> DefaultText()
    {
        if (Default is not { } d) return [];
        var list = new List<string> { "user::" + Rwx(d.UserObj) };
        list.AddRange(DefaultUsers.Select(u => $"user:{u.Id}:{Rwx(u.Permissions)}"));
        list.Add("group::" + Rwx(d.GroupObj));
        list.AddRange(DefaultGroups.Select(g => $"group:{g.Id}:{Rwx(g.Permissions)}"));
        if (d.Mask != PxarFormat.AclNoMask) list.Add("mask::" + Rwx(d.Mask));
        list.Add("other::" + Rwx(d.Other));
        return list;
    }

    private static string Rwx(ulong bits) =>
        $"{((bits & 4) != 0 ? 'r' : '-')}{((bits & 2) != 0 ? 'w' : '-')}{((bits & 1) != 0 ? 'x' : '-')}";
}

/// <summary>
/// One entry of a pxar archive with its metadata and where its parts are. Paths use '/' and are relative to the
/// archive root ("" is the root itself). Names are bytes in the archive; <see cref="Name"/> decodes them as UTF-8.
/// </summary>
public sealed class PxarEntry
{
    public required string Path { get; init; }
    public required byte[] NameBytes { get; init; }
    public string Name => NameBytes.Length == 0 ? "" : Encoding.UTF8.GetString(NameBytes);
    public PxarEntryType Type { get; internal set; }

    /// <summary>The whole st_mode: file-type bits and permission bits (including setuid, setgid, sticky).</summary>
    public ulong Mode { get; internal set; }
    public int Permissions => (int)(Mode & 0xFFF);
    public ulong Flags { get; internal set; }
    public uint Uid { get; internal set; }
    public uint Gid { get; internal set; }
    public long MtimeSeconds { get; internal set; }
    public uint MtimeNanos { get; internal set; }
    public DateTimeOffset ModifiedTime => DateTimeOffset.UnixEpoch.AddSeconds(MtimeSeconds).AddTicks(MtimeNanos / 100);

    /// <summary>File size (regular files and hardlinks once resolved), else 0.</summary>
    public long Size { get; internal set; }

    /// <summary>Where the content starts: in the archive (v1, <c>PAYLOAD</c>) or in the payload archive (v2, <c>PAYLOAD_REF</c>, after its header).</summary>
    public long ContentOffset { get; internal set; }
    public bool ContentInPayloadArchive { get; internal set; }

    /// <summary>Symlink target, or for a hardlink the archive path of the file it links to (as stored).</summary>
    public string? LinkTarget { get; internal set; }
    public byte[]? LinkTargetBytes { get; internal set; }

    /// <summary>For a hardlink: archive offset of the target's FILENAME item.</summary>
    public long HardlinkTargetOffset { get; internal set; } = -1;

    public ulong DeviceMajor { get; internal set; }
    public ulong DeviceMinor { get; internal set; }
    public List<PxarXattr> Xattrs { get; } = [];
    public PxarAcl Acl { get; } = new();
    public byte[]? FCaps { get; internal set; }
    public ulong? QuotaProjectId { get; internal set; }

    /// <summary>Offset of this entry's FILENAME item (the ENTRY item for the root).</summary>
    public long ItemOffset { get; internal set; }
    /// <summary>Offset of the ENTRY (or HARDLINK) item.</summary>
    public long EntryOffset { get; internal set; }
    /// <summary>End of the whole item (for a directory: after its goodbye table); -1 when unknown (a followed hardlink).</summary>
    public long End { get; internal set; } = -1;

    /// <summary>Where the entry's own items end (for a directory: where its children start).</summary>
    internal long ContentEnd { get; set; }

    public bool IsDirectory => Type == PxarEntryType.Directory;

    public override string ToString() => $"{Type} {(Path.Length == 0 ? "/" : Path)}";
}
