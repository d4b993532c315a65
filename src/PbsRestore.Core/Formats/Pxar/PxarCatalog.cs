using System.Buffers.Binary;
using System.Text;
using PbsRestore.Formats;

namespace PbsRestore.Formats.Pxar;

public enum CatalogEntryType { Directory, File, Symlink, Hardlink, BlockDevice, CharDevice, Fifo, Socket }

/// <summary>One catalog entry: a name, a type, and for files size and mtime; for directories where their table is.</summary>
public sealed record CatalogEntry(byte[] NameBytes, CatalogEntryType Type, long Size, long MtimeSeconds, long TableOffset)
{
    public string Name => Encoding.UTF8.GetString(NameBytes);
}

/// <summary>
/// The catalog of a file backup, <c>catalog.pcat1</c> (upstream: proxmox-backup pbs-datastore/src/catalog.rs): a
/// magic, then one table per directory written after its children's tables, the root's last, and the root table's
/// offset as the final u64 LE. A table is a varint byte length, then a varint count and the entries: a type
/// letter, a varint name length and the name, then for a directory the varint distance back to its table, for a
/// file varint size and signed-varint mtime. The root table lists one directory per archive (<c>root.pxar.didx</c>).
/// Every offset is checked: a child's table lies before its parent's, so no walk can loop.
/// </summary>
public sealed class PxarCatalog
{
    public static ReadOnlySpan<byte> Magic => [145, 253, 96, 249, 196, 103, 88, 213];
    /// <summary>A directory table larger than this is refused (a million entries of long names fit).</summary>
    public const int MaxTableSize = 256 << 20;

    private readonly IRandomAccessData _data;

    private PxarCatalog(IRandomAccessData data, CatalogEntry root)
    {
        _data = data;
        Root = root;
    }

    public CatalogEntry Root { get; }

    public static async Task<PxarCatalog> OpenAsync(IRandomAccessData data, CancellationToken ct)
    {
        if (data.Length < Magic.Length + 8 + 2)
            throw new PbsFormatException($"catalog: {data.Length} bytes is too short", "CatalogTruncated");
        var head = new byte[8];
        await data.ReadExactlyAtAsync(0, head, "catalog magic", ct).ConfigureAwait(false);
        if (!head.AsSpan().SequenceEqual(Magic))
            throw new PbsFormatException("catalog: bad magic at offset 0 (not a pcat1 catalog)", "CatalogBadMagic");
        await data.ReadExactlyAtAsync(data.Length - 8, head, "catalog root offset", ct).ConfigureAwait(false);
        ulong root = BinaryPrimitives.ReadUInt64LittleEndian(head);
        if (root < (ulong)Magic.Length || root >= (ulong)(data.Length - 8))
            throw new PbsFormatException($"catalog: root table offset {root} lies outside the tables [8, {data.Length - 8})", "CatalogBadOffset");
        return new PxarCatalog(data, new CatalogEntry("/"u8.ToArray(), CatalogEntryType.Directory, 0, 0, (long)root));
    }

    /// <summary>The entries of a directory, in the order stored (names sorted as the archive has them).</summary>
    public async Task<IReadOnlyList<CatalogEntry>> ListAsync(CatalogEntry dir, CancellationToken ct)
    {
        if (dir.Type != CatalogEntryType.Directory) throw new ArgumentException($"'{dir.Name}' is not a directory", nameof(dir));
        long start = dir.TableOffset;
        long limit = _data.Length - 8;
        // The table length prefix: at most 10 bytes.
        var prefix = new byte[(int)Math.Min(10, limit - start)];
        await _data.ReadExactlyAtAsync(start, prefix, "catalog table length", ct).ConfigureAwait(false);
        int pos = 0;
        ulong length = ReadVarint(prefix, ref pos, start);
        if (length > MaxTableSize || (ulong)(start + pos) + length > (ulong)limit)
            throw new PbsFormatException($"catalog: table at offset {start} claims {length} bytes, beyond the catalog's {limit}", "CatalogBadTable");
        var table = new byte[(int)length];
        await _data.ReadExactlyAtAsync(start + pos, table, "catalog table", ct).ConfigureAwait(false);
        return Parse(table, start, dir.Name);
    }

    /// <summary>Parses one directory table (its bytes after the length prefix). <paramref name="tableOffset"/> is where the table starts.</summary>
    public static List<CatalogEntry> Parse(ReadOnlySpan<byte> table, long tableOffset, string dirName)
    {
        int pos = 0;
        ulong count = ReadVarint(table, ref pos, tableOffset);
        if (count > (ulong)table.Length)
            throw new PbsFormatException($"catalog: table of '{dirName}' at offset {tableOffset} claims {count} entries in {table.Length} bytes", "CatalogBadTable");
        var list = new List<CatalogEntry>((int)count);
        for (ulong i = 0; i < count; i++)
        {
            if (pos >= table.Length) throw Truncated(tableOffset, dirName);
            byte letter = table[pos++];
            var type = letter switch
            {
                (byte)'d' => CatalogEntryType.Directory, (byte)'f' => CatalogEntryType.File, (byte)'l' => CatalogEntryType.Symlink,
                (byte)'h' => CatalogEntryType.Hardlink, (byte)'b' => CatalogEntryType.BlockDevice, (byte)'c' => CatalogEntryType.CharDevice,
                (byte)'p' => CatalogEntryType.Fifo, (byte)'s' => CatalogEntryType.Socket,
                _ => throw new PbsFormatException($"catalog: entry {i} of '{dirName}' (table at {tableOffset}) has unknown type 0x{letter:x2}", "CatalogBadEntry"),
            };
            ulong nameLength = ReadVarint(table, ref pos, tableOffset);
            if (nameLength == 0 || nameLength > PxarFormat.MaxFilenameLength || (ulong)pos + nameLength > (ulong)table.Length)
                throw new PbsFormatException($"catalog: entry {i} of '{dirName}' (table at {tableOffset}) has a name of {nameLength} bytes", "CatalogBadEntry");
            var name = table.Slice(pos, (int)nameLength).ToArray();
            pos += (int)nameLength;
            try { PxarArchive.CheckName(name, dirName, tableOffset); }
            catch (PxarFormatException e) { throw new PbsFormatException($"catalog: {e.Message}", "CatalogBadName"); }
            long size = 0, mtime = 0, child = 0;
            if (type == CatalogEntryType.Directory)
            {
                ulong back = ReadVarint(table, ref pos, tableOffset);
                if (back == 0 || back > (ulong)(tableOffset - Magic.Length))
                    throw new PbsFormatException($"catalog: directory '{Encoding.UTF8.GetString(name)}' in '{dirName}' points {back} bytes back from {tableOffset}, outside the earlier tables", "CatalogBadOffset");
                child = tableOffset - (long)back;
            }
            else if (type == CatalogEntryType.File)
            {
                ulong s = ReadVarint(table, ref pos, tableOffset);
                if (s > long.MaxValue) throw new PbsFormatException($"catalog: file size {s} is absurd", "CatalogBadEntry");
                size = (long)s;
                mtime = ReadSignedVarint(table, ref pos, tableOffset);
            }
            list.Add(new CatalogEntry(name, type, size, mtime, child));
        }
        if (pos != table.Length)
            throw new PbsFormatException($"catalog: table of '{dirName}' at offset {tableOffset} has {table.Length - pos} bytes after its {count} entries", "CatalogBadTable");
        return list;
    }

    /// <summary>Finds a '/'-separated path from the root (its first component is the archive, e.g. <c>root.pxar.didx</c>).</summary>
    public async Task<CatalogEntry?> LookupAsync(string path, CancellationToken ct)
    {
        var current = Root;
        foreach (var part in path.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            if (current.Type != CatalogEntryType.Directory) return null;
            var bytes = Encoding.UTF8.GetBytes(part);
            var next = (await ListAsync(current, ct).ConfigureAwait(false)).FirstOrDefault(e => e.NameBytes.AsSpan().SequenceEqual(bytes));
            if (next is null) return null;
            current = next;
        }
        return current;
    }

    private static PbsFormatException Truncated(long at, string dir) =>
        new($"catalog: table of '{dir}' at offset {at} ends inside an entry", "CatalogBadTable");

    /// <summary>Unsigned LEB128 as upstream writes it: at most 10 bytes.</summary>
    private static ulong ReadVarint(ReadOnlySpan<byte> data, ref int pos, long at)
    {
        ulong v = 0;
        for (int i = 0; i < 10; i++)
        {
            if (pos >= data.Length) throw new PbsFormatException($"catalog: number at table {at} runs past the end", "CatalogBadTable");
            byte b = data[pos++];
            v |= (ulong)(b & 0x7f) << (7 * i);
            if (b < 0x80) return v;
        }
        throw new PbsFormatException($"catalog: number at table {at} has no end marker within 10 bytes", "CatalogBadTable");
    }

    /// <summary>Upstream's signed varint: the magnitude as LEB128 whose last byte keeps its high bit, then a 0 byte for negatives.</summary>
    private static long ReadSignedVarint(ReadOnlySpan<byte> data, ref int pos, long at)
    {
        ulong v = 0;
        for (int i = 0; i < 11; i++)
        {
            if (pos >= data.Length) throw new PbsFormatException($"catalog: number at table {at} runs past the end", "CatalogBadTable");
            byte b = data[pos++];
            if (b == 0) return v == 0 ? 0 : -(long)(v - 1) - 1;
            if (b < 0x80) return (long)(v | (ulong)b << (7 * i));
            v |= (ulong)(b & 0x7f) << (7 * i);
        }
        throw new PbsFormatException($"catalog: signed number at table {at} has no end marker within 11 bytes", "CatalogBadTable");
    }
}
