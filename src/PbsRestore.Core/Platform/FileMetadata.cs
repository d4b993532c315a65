using System.ComponentModel;
using System.Runtime.InteropServices;
using System.Text;

namespace PbsRestore.Platform;

/// <summary>
/// What a file-level restore needs from the OS beyond System.IO: hardlinks, owners, extended attributes, FIFOs and
/// device nodes, and timestamps with nanoseconds that do not follow symlinks. Linux through libc; Windows through
/// kernel32 where it has an equivalent (hardlinks), else reported as unsupported. Each call throws
/// <see cref="IOException"/> with the OS's reason on failure; <c>Can*</c> say beforehand what is possible.
/// </summary>
public static class FileMetadata
{
    public static bool IsUnix => !OperatingSystem.IsWindows();

    /// <summary>Owners can be set: Unix as root (upstream's client restores owners only then, too).</summary>
    /// <summary>Whether the host is Windows (an analyzer guard, so Windows-only calls after it are checked as such).</summary>
    [System.Runtime.Versioning.SupportedOSPlatformGuard("windows")]
    public static bool IsWindows => OperatingSystem.IsWindows();

    /// <summary>How paths compare on this host: case-insensitively on Windows, exactly elsewhere.</summary>
    public static StringComparison PathComparison => OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;

    /// <summary>Sets the Unix permission bits (and setuid/setgid/sticky); Windows has none, so nothing happens there.</summary>
    public static void SetPermissions(string path, int mode)
    {
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, (UnixFileMode)(mode & 0xFFF));
    }

    public static bool CanSetOwner => IsUnix && Unix.geteuid() == 0;

    /// <summary>Extended attributes (user.*; others need privileges) can be set: Linux.</summary>
    public static bool CanSetXattrs => OperatingSystem.IsLinux();

    /// <summary>FIFOs can be created: Unix.</summary>
    public static bool CanCreateFifo => IsUnix;

    /// <summary>Device nodes can be created: Unix as root.</summary>
    public static bool CanCreateDevice => CanSetOwner;

    public static void CreateHardLink(string existing, string link)
    {
        if (OperatingSystem.IsWindows())
        {
            if (!Windows.CreateHardLinkW(link, existing, IntPtr.Zero)) throw Fail("create hardlink", link);
            return;
        }
        if (Unix.link(existing, link) != 0) throw Fail("create hardlink", link);
    }

    /// <summary>Sets owner and group of a path itself (a symlink is not followed).</summary>
    public static void SetOwner(string path, uint uid, uint gid)
    {
        if (Unix.lchown(path, uid, gid) != 0) throw Fail("set owner of", path);
    }

    public static void SetXattr(string path, byte[] name, byte[] value)
    {
        var n = new byte[name.Length + 1];
        name.CopyTo(n, 0);
        if (Unix.lsetxattr(path, n, value, (nuint)value.Length, 0) != 0) throw Fail($"set xattr {Encoding.UTF8.GetString(name)} on", path);
    }

    /// <summary>POSIX ACLs can be set (as the system.posix_acl_* xattrs the kernel translates): Linux.</summary>
    public static bool CanSetAcls => OperatingSystem.IsLinux();

    /// <summary>One entry of a POSIX ACL: a named user or group and its rwx bits.</summary>
    public readonly record struct AclEntry(uint Id, uint Permissions);

    /// <summary>
    /// Sets the access ACL (<paramref name="isDefault"/> false) or a directory's default ACL of a path itself, as the
    /// kernel's binary xattr (version 2, then tag/permission/id triples in the order the kernel checks: owner,
    /// named users by id, owning group, named groups by id, mask, other). Setting the access ACL also sets the
    /// mode's rwx bits (owner, mask, other), as setfacl does.
    /// </summary>
    public static void SetPosixAcl(string path, bool isDefault, uint owner, IEnumerable<AclEntry> users, uint group, IEnumerable<AclEntry> groups, uint? mask, uint other)
    {
        var entries = new List<(ushort Tag, uint Perm, uint Id)> { (0x01, owner, uint.MaxValue) };
        entries.AddRange(users.OrderBy(u => u.Id).Select(u => ((ushort)0x02, u.Permissions, u.Id)));
        entries.Add((0x04, group, uint.MaxValue));
        entries.AddRange(groups.OrderBy(g => g.Id).Select(g => ((ushort)0x08, g.Permissions, g.Id)));
        if (mask is { } m) entries.Add((0x10, m, uint.MaxValue));
        entries.Add((0x20, other, uint.MaxValue));
        var value = new byte[4 + 8 * entries.Count];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(value, 2);
        for (int i = 0; i < entries.Count; i++)
        {
            var span = value.AsSpan(4 + 8 * i);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(span, entries[i].Tag);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(span[2..], (ushort)(entries[i].Perm & 7));
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(span[4..], entries[i].Id);
        }
        string name = isDefault ? "system.posix_acl_default" : "system.posix_acl_access";
        var n = Encoding.ASCII.GetBytes(name + "\0");
        if (Unix.lsetxattr(path, n, value, (nuint)value.Length, 0) != 0) throw Fail($"set the {(isDefault ? "default " : "")}ACL of", path);
    }

    public static void CreateFifo(string path, int permissions)
    {
        if (Unix.mkfifo(path, (uint)permissions) != 0) throw Fail("create FIFO", path);
    }

    /// <summary>Creates a block or character device node (Linux dev_t encoding of major and minor).</summary>
    public static void CreateDevice(string path, bool block, int permissions, ulong major, ulong minor)
    {
        ulong dev = ((major & 0xfff) << 8) | ((major & ~0xfffUL) << 32) | (minor & 0xff) | ((minor & ~0xffUL) << 12);
        uint mode = (block ? 0x6000u : 0x2000u) | (uint)permissions;
        if (Unix.mknod(path, mode, dev) != 0) throw Fail("create device", path);
    }

    /// <summary>Sets the modification time (and access time to the same) of the path itself, to the nanosecond on Unix.</summary>
    public static void SetModifiedTime(string path, long seconds, uint nanos, bool isSymlink)
    {
        if (IsUnix)
        {
            var times = new Unix.Timespec[] { new(seconds, nanos), new(seconds, nanos) };
            if (Unix.utimensat(Unix.AtFdCwd, path, times, Unix.AtSymlinkNoFollow) != 0) throw Fail("set the time of", path);
            return;
        }
        var time = DateTime.UnixEpoch.AddSeconds(seconds).AddTicks(nanos / 100);
        if (isSymlink) return; // .NET follows links on Windows; leaving the link's own time is the lesser harm
        if (Directory.Exists(path)) Directory.SetLastWriteTimeUtc(path, time);
        else File.SetLastWriteTimeUtc(path, time);
    }

    private static IOException Fail(string what, string path)
    {
        int errno = Marshal.GetLastPInvokeError();
        return new IOException($"cannot {what} '{path}': {new Win32Exception(errno).Message}", errno);
    }

    private static class Unix
    {
        public const int AtFdCwd = -100, AtSymlinkNoFollow = 0x100;

        [StructLayout(LayoutKind.Sequential)]
        public readonly struct Timespec(long seconds, long nanos)
        {
            public readonly long Seconds = seconds;
            public readonly long Nanos = nanos;
        }

        [DllImport("libc", SetLastError = true)] public static extern uint geteuid();
        [DllImport("libc", SetLastError = true)] public static extern int link(string oldpath, string newpath);
        [DllImport("libc", SetLastError = true)] public static extern int lchown(string path, uint owner, uint group);
        [DllImport("libc", SetLastError = true)] public static extern int lsetxattr(string path, byte[] name, byte[] value, nuint size, int flags);
        [DllImport("libc", SetLastError = true)] public static extern int mkfifo(string path, uint mode);
        [DllImport("libc", SetLastError = true)] public static extern int mknod(string path, uint mode, ulong dev);
        [DllImport("libc", SetLastError = true)] public static extern int utimensat(int dirfd, string path, Timespec[] times, int flags);
    }

    private static class Windows
    {
        [DllImport("kernel32.dll", SetLastError = true, CharSet = CharSet.Unicode)]
        public static extern bool CreateHardLinkW(string fileName, string existingFileName, IntPtr securityAttributes);
    }
}

/// <summary>
/// Names Windows cannot hold, mapped reversibly as Cygwin and WSL do: each character Windows forbids in a name
/// (<c>&lt;&gt;:"/\|?*</c> and controls 1-31), a trailing dot or space, and the first character of a reserved
/// device name (CON, PRN, AUX, NUL, COM1-9, LPT1-9, with or without extension) become U+F000 plus their code.
/// </summary>
public static class WindowsNames
{
    private static readonly HashSet<string> Reserved = new(StringComparer.OrdinalIgnoreCase)
    {
        "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8", "COM9",
        "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
    };

    /// <summary>The name as Windows can hold it (the same string when nothing needs mapping).</summary>
    public static string Map(string name)
    {
        var sb = new StringBuilder(name.Length);
        for (int i = 0; i < name.Length; i++)
        {
            char c = name[i];
            bool last = i == name.Length - 1;
            bool bad = c < 32 || c is '<' or '>' or ':' or '"' or '/' or '\\' or '|' or '?' or '*' || (last && c is '.' or ' ');
            sb.Append(bad ? (char)(0xF000 + c) : c);
        }
        string stem = sb.ToString();
        int dot = stem.IndexOf('.');
        if (Reserved.Contains(dot < 0 ? stem : stem[..dot]))
            stem = (char)(0xF000 + stem[0]) + stem[1..];
        return stem;
    }

    /// <summary>The original name of a mapped one.</summary>
    public static string Unmap(string name)
    {
        var sb = new StringBuilder(name.Length);
        foreach (char c in name) sb.Append(c is >= '\uF000' and < '\uF080' ? (char)(c - 0xF000) : c);
        return sb.ToString();
    }
}
