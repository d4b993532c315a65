using System.Diagnostics;
using System.Runtime.InteropServices;
using PbsRestore.Access;
using PbsRestore.Platform;
using PbsRestore.Restore;
using PbsRestore.Tests.Fixtures;
using PbsRestore.Tests.Pxar;

namespace PbsRestore.Tests.Platform;

/// <summary>Reads a path's ACLs with getfacl (numeric ids, no effective-rights comments): access and default entries.</summary>
internal static class Getfacl
{
    public static string? SkipReason =>
        !OperatingSystem.IsLinux() ? "POSIX ACLs are restored on Linux only"
        : !File.Exists("/usr/bin/getfacl") && !File.Exists("/bin/getfacl") ? "getfacl (Debian package acl) is not installed; build.ps1 Test installs it as root"
        : null;

    public static (List<string> Access, List<string> Default) Read(string path)
    {
        var psi = new ProcessStartInfo("getfacl", ["-n", "-p", "-P", "-E", "--", path]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        string text = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"getfacl {path}: {p.StandardError.ReadToEnd()}");
        var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Where(l => !l.StartsWith('#')).ToList();
        return (lines.Where(l => !l.StartsWith("default:", StringComparison.Ordinal)).ToList(),
            lines.Where(l => l.StartsWith("default:", StringComparison.Ordinal)).Select(l => l["default:".Length..]).ToList());
    }
}

public sealed class PosixAclFactAttribute : FactAttribute
{
    public PosixAclFactAttribute()
    {
        if (Getfacl.SkipReason is { } reason) Skip = reason;
    }
}

public sealed class PosixAclTests : IDisposable
{
    private readonly TempDir _dir = new();
    public void Dispose() => _dir.Dispose();

    [DllImport("libc", SetLastError = true)]
    private static extern nint lgetxattr(string path, string name, byte[] value, nuint size);

    [PosixAclFact]
    public void The_access_ACL_is_the_kernel_s_binary_form_that_setfacl_writes()
    {
        string file = Path.Combine(_dir.Path, "f");
        File.WriteAllText(file, "x");
        FileMetadata.SetPosixAcl(file, false, 6, [new FileMetadata.AclEntry(34, 4)], 4, [], 4, 4);
        var buffer = new byte[256];
        int n = (int)lgetxattr(file, "system.posix_acl_access", buffer, (nuint)buffer.Length);
        Assert.True(n > 0, $"lgetxattr: errno {Marshal.GetLastPInvokeError()}");
        // What `setfacl -m u:34:r` leaves on a 0644 file (read back with getfattr -e hex on this kernel).
        Assert.Equal("0200000001000600ffffffff020004002200000004000400ffffffff10000400ffffffff20000400ffffffff", Convert.ToHexStringLower(buffer, 0, n));
        Assert.Equal(["user::rw-", "user:34:r--", "group::r--", "mask::r--", "other::r--"], Getfacl.Read(file).Access);
    }

    [PosixAclFact]
    public void Named_entries_are_sorted_by_id_and_a_default_ACL_lands_on_a_directory()
    {
        string dir = Path.Combine(_dir.Path, "d");
        Directory.CreateDirectory(dir);
        FileMetadata.SetPosixAcl(dir, true, 7, [new FileMetadata.AclEntry(65534, 5), new FileMetadata.AclEntry(34, 7)], 5, [new FileMetadata.AclEntry(100, 1)], 7, 0);
        Assert.Equal(["user::rwx", "user:34:rwx", "user:65534:r-x", "group::r-x", "group:100:--x", "mask::rwx", "other::---"], Getfacl.Read(dir).Default);
    }

    [PosixAclFact]
    public void An_invalid_ACL_is_an_IOException_naming_the_path()
    {
        string dir = Path.Combine(_dir.Path, "bad");
        Directory.CreateDirectory(dir);
        // Named entries without a mask: the kernel refuses it (EINVAL).
        var e = Assert.Throws<IOException>(() => FileMetadata.SetPosixAcl(dir, true, 7, [new FileMetadata.AclEntry(34, 7)], 5, [], null, 5));
        Assert.Contains(dir, e.Message);
    }

    [PosixAclFact]
    public async Task The_fixture_archive_s_ACLs_and_default_ACLs_are_restored_and_fcaps_as_root()
    {
        var tree = PxarFixtureTree.Build(bigFiles: 0);
        foreach (var id in new[] { "1", "2" })
        {
            string store = PxarFixtureTree.WriteDatastore(Path.Combine(_dir.Path, "s" + id), tree, ids: id);
            await using var reader = await PxarFixtureTree.OpenAsync(store, id);
            using var file = await FileArchive.OpenAsync(reader, null, "root.pxar", null, default);
            string dest = Path.Combine(_dir.Path, "out" + id);
            var warnings = new List<string>();
            await new FileRestorer(file.Archive, new FileRestoreOptions(), new FileRestoreCounters(), warnings.Add).RestoreAsync("root.pxar", file.Archive.Root, dest, default);
            Assert.DoesNotContain(warnings, w => w.Contains("ACL"));
            Assert.Equal(["user::rwx", "user:34:rwx", "group::r-x", "mask::rwx", "other::r-x"], Getfacl.Read(Path.Combine(dest, "sub")).Default);
            Assert.Equal(["user::rwx", "user:65534:r-x", "group::r-x", "group:34:rwx", "mask::r-x", "other::---"], Getfacl.Read(Path.Combine(dest, "sub", "deeper")).Access);
            Assert.Equal(["user::rw-", "user:34:r--", "group::r--", "mask::rw-", "other::r--"], Getfacl.Read(Path.Combine(dest, "hello.txt")).Access);
            // The default ACL was set after the children were written: they keep their own ACLs, not inherited ones.
            Assert.Equal(["user::rw-", "group::r--", "other::r--"], Getfacl.Read(Path.Combine(dest, "sub", "deeper", "file.txt")).Access);
            if (OperatingSystem.IsLinux()) Assert.Equal(0x1E8, (int)File.GetUnixFileMode(Path.Combine(dest, "sub", "deeper")));
            if (FileMetadata.CanSetOwner && File.Exists("/usr/sbin/getcap"))
            {
                var psi = new ProcessStartInfo("/usr/sbin/getcap", [Path.Combine(dest, "ping")]) { RedirectStandardOutput = true };
                using var p = Process.Start(psi)!;
                Assert.Contains("cap_net_raw=ep", p.StandardOutput.ReadToEnd());
                p.WaitForExit();
            }
        }
    }
}
