using System.Security.Cryptography;
using System.Text;
using PbsRestore.Access;
using PbsRestore.Fixtures;
using PbsRestore.Formats.Pxar;
using PbsRestore.Sources;
using PbsRestore.Sources.Local;

namespace PbsRestore.Tests.Pxar;

/// <summary>A tree with every kind of pxar entry and attribute, written by our fixture writer, and datastores holding it as v1 and v2.</summary>
internal static class PxarFixtureTree
{
    public static byte[] Random(int size, int seed) => PxarSamples.Random(size, seed);

    public static PxarNode Build(int bigFiles = 2, int bigSize = 1 << 20) => PxarSamples.Tree(bigFiles, bigSize);

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
