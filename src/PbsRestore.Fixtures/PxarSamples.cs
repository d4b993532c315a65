using System.Text;
using PbsRestore.Formats.Pxar;

namespace PbsRestore.Fixtures;

/// <summary>
/// A sample tree with every kind of pxar entry and attribute (files of several sizes, nested and empty
/// directories, symlinks, a hardlink, a FIFO, a socket, devices, xattrs, ACLs, fcaps, a quota project id, unicode
/// names and names Windows cannot hold), for tests, help examples and the demo.
/// </summary>
public static class PxarSamples
{
    public static byte[] Random(int size, int seed)
    {
        var b = new byte[size];
        new Random(seed).NextBytes(b);
        return b;
    }

    public static PxarNode Tree(int bigFiles = 2, int bigSize = 1 << 20)
    {
        var hello = new PxarNode { Name = "hello.txt"u8.ToArray(), Content = "hello world\n"u8.ToArray(), Uid = 1234, Gid = 5678, Permissions = 0x1B4,
            MtimeSeconds = 1_234_567_890, MtimeNanos = 123_456_789,
            Xattrs = [("user.comment"u8.ToArray(), [0, 1, 2, 255])], AclUsers = [new PxarAclEntry(34, 4)], AclGroupObj = 4 };
        var big = PxarNode.Dir("big", Enumerable.Range(0, bigFiles).Select(i => PxarNode.File($"blob{i:D3}.bin", Random(bigSize, 100 + i))).ToArray());
        var etc = PxarNode.Dir("etc", Enumerable.Range(0, 20).Select(i => PxarNode.File($"conf{i:D2}", Random(500 + i * 37, i))).ToArray());
        return new PxarNode
        {
            Name = [], Type = PxarEntryType.Directory, Permissions = 0x1ED, MtimeSeconds = 1_600_000_000,
            Children =
            [
                big, etc, hello,
                new PxarNode { Name = "zz-hardlink"u8.ToArray(), HardlinkTo = hello },
                // ACLs as the genuine client's sample has them: a default ACL on sub, an access ACL with a named user and group on deeper.
                new PxarNode
                {
                    Name = "sub"u8.ToArray(), Type = PxarEntryType.Directory, Permissions = 0x1ED,
                    AclDefault = (7, 5, 5, 7), AclDefaultUsers = [new PxarAclEntry(34, 7)],
                    Children =
                    [
                        new PxarNode
                        {
                            Name = "deeper"u8.ToArray(), Type = PxarEntryType.Directory, Permissions = 0x1E8,
                            AclUsers = [new PxarAclEntry(65534, 5)], AclGroupObj = 5, AclGroups = [new PxarAclEntry(34, 7)],
                            Children = [PxarNode.File("file.txt", "deep\n"u8.ToArray())],
                        },
                        PxarNode.Dir("empty"),
                    ],
                },
                PxarNode.Symlink("link-rel", "hello.txt"),
                PxarNode.Symlink("link-out", "../../outside"),
                PxarNode.File("empty.txt", []),
                new PxarNode { Name = "fifo"u8.ToArray(), Type = PxarEntryType.Fifo, Permissions = 0x1A0 },
                new PxarNode { Name = "socket"u8.ToArray(), Type = PxarEntryType.Socket, Permissions = 0x1ED },
                new PxarNode { Name = "sda1"u8.ToArray(), Type = PxarEntryType.BlockDevice, Permissions = 0x1B0, DeviceMajor = 8, DeviceMinor = 1 },
                new PxarNode { Name = "null"u8.ToArray(), Type = PxarEntryType.CharDevice, Permissions = 0x1B6, DeviceMajor = 1, DeviceMinor = 3 },
                new PxarNode { Name = "ping"u8.ToArray(), Content = "ELF"u8.ToArray(), Permissions = 0x9ED, FCaps = [1, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] /* VFS caps v2: cap_net_raw=ep */, QuotaProjectId = 42 },
                PxarNode.File("Ünïcödé-文件.txt", "unicode\n"u8.ToArray()),
                PxarNode.File("name:with*chars?.txt", "windows-hostile\n"u8.ToArray()),
                PxarNode.File("CON", "reserved\n"u8.ToArray()),
            ],
        };
    }

}
