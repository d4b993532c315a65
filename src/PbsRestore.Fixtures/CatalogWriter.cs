using System.Buffers.Binary;
using PbsRestore.Formats.Pxar;

namespace PbsRestore.Fixtures;

/// <summary>
/// Writes a catalog (<c>catalog.pcat1</c>) of a <see cref="PxarNode"/> tree as upstream's client does: one table per
/// directory after its children's tables, the root table (one directory per archive) last, then its offset.
/// </summary>
public static class CatalogWriter
{
    public static byte[] Write(PxarNode root, string archiveName = "root.pxar.didx")
    {
        var output = new MemoryStream();
        output.Write(PxarCatalog.Magic);
        long archiveTable = WriteDirectory(output, root);
        var top = new MemoryStream();
        Varint(top, 1);
        Entry(top, 'd', System.Text.Encoding.UTF8.GetBytes(archiveName));
        long rootStart = output.Position;
        Varint(top, (ulong)(rootStart - archiveTable));
        Table(output, top);
        Span<byte> tail = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(tail, (ulong)rootStart);
        output.Write(tail);
        return output.ToArray();
    }

    private static long WriteDirectory(MemoryStream output, PxarNode dir)
    {
        var children = dir.Children.OrderBy(c => c.Name, Comparer<byte[]>.Create((a, b) => a.AsSpan().SequenceCompareTo(b))).ToList();
        var starts = new Dictionary<PxarNode, long>(ReferenceEqualityComparer.Instance);
        foreach (var c in children.Where(c => c.Type == PxarEntryType.Directory && c.HardlinkTo is null))
            starts[c] = WriteDirectory(output, c);
        long start = output.Position;
        var table = new MemoryStream();
        Varint(table, (ulong)children.Count);
        foreach (var c in children)
        {
            char letter = c.HardlinkTo is not null ? 'h' : c.Type switch
            {
                PxarEntryType.Directory => 'd', PxarEntryType.File => 'f', PxarEntryType.Symlink => 'l', PxarEntryType.BlockDevice => 'b',
                PxarEntryType.CharDevice => 'c', PxarEntryType.Fifo => 'p', _ => 's',
            };
            Entry(table, letter, c.Name);
            if (letter == 'd') Varint(table, (ulong)(start - starts[c]));
            else if (letter == 'f')
            {
                Varint(table, (ulong)c.Content.Length);
                SignedVarint(table, c.MtimeSeconds);
            }
        }
        Table(output, table);
        return start;
    }

    private static void Entry(Stream s, char letter, byte[] name)
    {
        s.WriteByte((byte)letter);
        Varint(s, (ulong)name.Length);
        s.Write(name);
    }

    private static void Table(Stream output, MemoryStream table)
    {
        Varint(output, (ulong)table.Length);
        table.Position = 0;
        table.CopyTo(output);
    }

    private static void Varint(Stream s, ulong v)
    {
        while (v >= 0x80)
        {
            s.WriteByte((byte)(v | 0x80));
            v >>= 7;
        }
        s.WriteByte((byte)v);
    }

    /// <summary>Upstream's signed form: the magnitude with the high bit on every byte, then a 0 byte, for negatives.</summary>
    private static void SignedVarint(Stream s, long v)
    {
        if (v >= 0)
        {
            Varint(s, (ulong)v);
            return;
        }
        ulong d = (ulong)(-(v + 1)) + 1;
        while (d >= 0x80)
        {
            s.WriteByte((byte)(d | 0x80));
            d >>= 7;
        }
        s.WriteByte((byte)(0x80 | d));
        s.WriteByte(0);
    }
}
