using System.Security.Cryptography;
using System.Text;
using PbsRestore.Access;
using PbsRestore.Fixtures;
using PbsRestore.Formats.Pxar;
using PbsRestore.Sources;

namespace PbsRestore.Tests.Pxar;

/// <summary>A tree with every kind of pxar entry and attribute, written by our fixture writer, and datastores holding it as v1 and v2.</summary>
internal static class PxarFixtureTree
{
    public static byte[] Random(int size, int seed)
    {
        var b = new byte[size];
        new Random(seed).NextBytes(b);
        return b;
    }

    public static PxarNode Build(int bigFiles = 2, int bigSize = 1 << 20)
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
                PxarNode.Dir("sub", PxarNode.Dir("deeper", PxarNode.File("file.txt", "deep\n"u8.ToArray())), PxarNode.Dir("empty")),
                PxarNode.Symlink("link-rel", "hello.txt"),
                PxarNode.Symlink("link-out", "../../outside"),
                PxarNode.File("empty.txt", []),
                new PxarNode { Name = "fifo"u8.ToArray(), Type = PxarEntryType.Fifo, Permissions = 0x1A0 },
                new PxarNode { Name = "socket"u8.ToArray(), Type = PxarEntryType.Socket, Permissions = 0x1ED },
                new PxarNode { Name = "sda1"u8.ToArray(), Type = PxarEntryType.BlockDevice, Permissions = 0x1B0, DeviceMajor = 8, DeviceMinor = 1 },
                new PxarNode { Name = "null"u8.ToArray(), Type = PxarEntryType.CharDevice, Permissions = 0x1B6, DeviceMajor = 1, DeviceMinor = 3 },
                new PxarNode { Name = "ping"u8.ToArray(), Content = "ELF"u8.ToArray(), Permissions = 0x9ED, FCaps = [1, 0, 0, 2, 0, 32, 0, 0], QuotaProjectId = 42 },
                PxarNode.File("Ünïcödé-文件.txt", "unicode\n"u8.ToArray()),
                PxarNode.File("name:with*chars?.txt", "windows-hostile\n"u8.ToArray()),
                PxarNode.File("CON", "reserved\n"u8.ToArray()),
            ],
        };
    }

    /// <summary>Every node below <paramref name="dir"/> with its archive path, in archive order.</summary>
    public static IEnumerable<(string Path, PxarNode Node)> Flatten(PxarNode dir, string prefix = "")
    {
        foreach (var c in dir.Children.OrderBy(c => c.Name, Comparer<byte[]>.Create((a, b) => a.AsSpan().SequenceCompareTo(b))))
        {
            string p = prefix.Length == 0 ? Encoding.UTF8.GetString(c.Name) : prefix + "/" + Encoding.UTF8.GetString(c.Name);
            yield return (p, c);
            if (c.Type == PxarEntryType.Directory && c.HardlinkTo is null)
                foreach (var x in Flatten(c, p)) yield return x;
        }
    }

    public static string Sha(byte[] b) => Convert.ToHexStringLower(SHA256.HashData(b));

    /// <summary>Writes <paramref name="root"/> as ct/1 (v1: root.pxar) and ct/2 (v2: root.mpxar + root.ppxar) into a new datastore.</summary>
    public static string WriteDatastore(string folder, PxarNode root, int averageChunk = 64 << 10, string ids = "12")
    {
        var store = new DatastoreWriter(folder);
        if (ids.Contains('1'))
        {
        var v1 = store.BeginSnapshot("", "ct", "1", DateTimeOffset.FromUnixTimeSeconds(1_700_000_000));
        var one = new MemoryStream();
        PxarWriter.WriteV1(root, one);
        one.Position = 0;
        v1.AddDynamic("root.pxar", one, DynamicChunking.ContentDefined(averageChunk));
        v1.Finish();
        }
        if (!ids.Contains('2')) return store.RootPath;
        var v2 = store.BeginSnapshot("", "ct", "2", DateTimeOffset.FromUnixTimeSeconds(1_700_000_000));
        var meta = new MemoryStream();
        var payload = new MemoryStream();
        PxarWriter.WriteV2(root, meta, payload);
        meta.Position = payload.Position = 0;
        v2.AddDynamic("root.mpxar", meta, DynamicChunking.ContentDefined(averageChunk));
        v2.AddDynamic("root.ppxar", payload, DynamicChunking.ContentDefined(averageChunk));
        v2.Finish();
        return store.RootPath;
    }

    public static async Task<ISnapshotReader> OpenAsync(string store, string id)
    {
        var source = new LocalDatastore(store);
        var list = await source.ListSnapshotsAsync(BackupNamespace.Root, "ct", id, default);
        return await source.OpenSnapshotAsync(list.Single().Ref, default);
    }
}
