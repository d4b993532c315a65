using System.Buffers.Binary;
using System.Text;
using PbsRestore.Formats.Pxar;

namespace PbsRestore.Fixtures;

/// <summary>
/// One entry of a tree to write as pxar. Names are bytes (so that tests can write names no file system holds);
/// <see cref="Content"/> is a regular file's bytes; <see cref="HardlinkTo"/> makes this entry a hardlink to an
/// earlier regular file of the tree.
/// </summary>
public sealed class PxarNode
{
    public required byte[] Name { get; init; }
    public PxarEntryType Type { get; init; } = PxarEntryType.File;
    public int Permissions { get; init; } = 0x1A4; // 0644
    public uint Uid { get; init; }
    public uint Gid { get; init; }
    public long MtimeSeconds { get; init; } = 1_700_000_000;
    public uint MtimeNanos { get; init; }
    public byte[] Content { get; init; } = [];
    public string? LinkTarget { get; init; }
    public PxarNode? HardlinkTo { get; init; }
    /// <summary>Archive path written into a hardlink item (the target's path as stored); derived when null.</summary>
    public string? HardlinkPath { get; set; }
    public ulong DeviceMajor { get; init; }
    public ulong DeviceMinor { get; init; }
    public List<(byte[] Name, byte[] Value)> Xattrs { get; init; } = [];
    public List<PxarAclEntry> AclUsers { get; init; } = [];
    public List<PxarAclEntry> AclGroups { get; init; } = [];
    public ulong? AclGroupObj { get; init; }
    /// <summary>A directory's default ACL: owner, owning group, other and mask bits (mask <see cref="PxarFormat.AclNoMask"/> for none).</summary>
    public (ulong UserObj, ulong GroupObj, ulong Other, ulong Mask)? AclDefault { get; init; }
    public List<PxarAclEntry> AclDefaultUsers { get; init; } = [];
    public List<PxarAclEntry> AclDefaultGroups { get; init; } = [];
    public byte[]? FCaps { get; init; }
    public ulong? QuotaProjectId { get; init; }
    public List<PxarNode> Children { get; init; } = [];

    public static PxarNode Dir(string name, params PxarNode[] children) =>
        new() { Name = Encoding.UTF8.GetBytes(name), Type = PxarEntryType.Directory, Permissions = 0x1ED, Children = [.. children] };

    public static PxarNode File(string name, byte[] content) => new() { Name = Encoding.UTF8.GetBytes(name), Content = content };

    public static PxarNode Symlink(string name, string target) =>
        new() { Name = Encoding.UTF8.GetBytes(name), Type = PxarEntryType.Symlink, Permissions = 0x1FF, LinkTarget = target };

    /// <summary>Reads a directory from disk: directories, regular files (content, permissions, mtime) and symlinks.</summary>
    public static PxarNode FromDirectory(string path, string? name = null)
    {
        var info = new DirectoryInfo(path);
        var children = new List<PxarNode>();
        foreach (var fs in info.EnumerateFileSystemInfos())
        {
            var mtime = new DateTimeOffset(fs.LastWriteTimeUtc);
            long ticks = mtime.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks;
            long secs = Math.DivRem(ticks, TimeSpan.TicksPerSecond, out long rest);
            if (rest < 0) { secs--; rest += TimeSpan.TicksPerSecond; }
            int perms = OperatingSystem.IsWindows() ? 0x1A4 : (int)fs.UnixFileMode;
            if (fs.LinkTarget is { } target)
                children.Add(new PxarNode { Name = Encoding.UTF8.GetBytes(fs.Name), Type = PxarEntryType.Symlink, Permissions = 0x1FF, LinkTarget = target, MtimeSeconds = secs, MtimeNanos = (uint)(rest * 100) });
            else if (fs is DirectoryInfo d)
            {
                var sub = FromDirectory(d.FullName, d.Name);
                children.Add(new PxarNode { Name = sub.Name, Type = PxarEntryType.Directory, Permissions = perms, Children = sub.Children, MtimeSeconds = secs, MtimeNanos = (uint)(rest * 100) });
            }
            else
                children.Add(new PxarNode { Name = Encoding.UTF8.GetBytes(fs.Name), Content = System.IO.File.ReadAllBytes(fs.FullName), Permissions = perms, MtimeSeconds = secs, MtimeNanos = (uint)(rest * 100) });
        }
        return new PxarNode { Name = Encoding.UTF8.GetBytes(name ?? info.Name), Type = PxarEntryType.Directory, Permissions = OperatingSystem.IsWindows() ? 0x1ED : (int)info.UnixFileMode, Children = children };
    }
}

/// <summary>
/// Writes a pxar archive from a <see cref="PxarNode"/> tree, as upstream's encoder lays it out: format v1 (one
/// stream, contents inline as PAYLOAD) or v2 (a metadata stream starting with FORMAT_VERSION 2 whose files are
/// PAYLOAD_REFs into a payload stream framed by PAYLOAD_START_MARKER and PAYLOAD_TAIL_MARKER). Children are written
/// in bytewise name order; each directory ends with its goodbye table (SipHash-2-4 hashes, in binary-search-tree
/// order, and the tail item). For tests, benchmarks and the demo; not shipped.
/// </summary>
public sealed class PxarWriter
{
    private readonly Stream _out;
    private readonly Stream? _payload;
    private long _pos, _payloadPos;
    private readonly Dictionary<PxarNode, (long Offset, string Path)> _files = new(ReferenceEqualityComparer.Instance);

    private PxarWriter(Stream output, Stream? payload)
    {
        _out = output;
        _payload = payload;
    }

    /// <summary>Writes a v1 archive of <paramref name="root"/> (a directory) to <paramref name="output"/>.</summary>
    public static void WriteV1(PxarNode root, Stream output) => new PxarWriter(output, null).WriteRoot(root);

    /// <summary>Writes a split v2 archive: metadata to <paramref name="metadata"/>, file contents to <paramref name="payload"/>.</summary>
    public static void WriteV2(PxarNode root, Stream metadata, Stream payload) => new PxarWriter(metadata, payload).WriteRoot(root);

    private void WriteRoot(PxarNode root)
    {
        if (root.Type != PxarEntryType.Directory) throw new ArgumentException("the root must be a directory", nameof(root));
        if (_payload is not null)
        {
            Span<byte> v = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(v, 2);
            Item(PxarFormat.FormatVersion, v);
            Span<byte> marker = stackalloc byte[PxarFormat.HeaderSize];
            PxarFormat.WriteHeader(marker, PxarFormat.PayloadStartMarker, PxarFormat.HeaderSize);
            _payload.Write(marker);
            _payloadPos += marker.Length;
        }
        WriteDirectoryBody(root, _pos, "");
        if (_payload is not null)
        {
            Span<byte> marker = stackalloc byte[PxarFormat.HeaderSize];
            PxarFormat.WriteHeader(marker, PxarFormat.PayloadTailMarker, PxarFormat.HeaderSize);
            _payload.Write(marker);
        }
    }

    private void Item(ulong type, ReadOnlySpan<byte> content)
    {
        Span<byte> h = stackalloc byte[PxarFormat.HeaderSize];
        PxarFormat.WriteHeader(h, type, (ulong)(content.Length + PxarFormat.HeaderSize));
        _out.Write(h);
        _out.Write(content);
        _pos += PxarFormat.HeaderSize + content.Length;
    }

    private static ulong TypeBits(PxarEntryType t) => t switch
    {
        PxarEntryType.Directory => PxarFormat.ModeDirectory, PxarEntryType.File => PxarFormat.ModeRegular,
        PxarEntryType.Symlink => PxarFormat.ModeSymlink, PxarEntryType.BlockDevice => PxarFormat.ModeBlockDevice,
        PxarEntryType.CharDevice => PxarFormat.ModeCharDevice, PxarEntryType.Fifo => PxarFormat.ModeFifo,
        PxarEntryType.Socket => PxarFormat.ModeSocket, _ => throw new ArgumentException(t.ToString()),
    };

    /// <summary>ENTRY and the metadata items that follow it.</summary>
    private void WriteMetadata(PxarNode n)
    {
        Span<byte> stat = stackalloc byte[40];
        stat.Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(stat, TypeBits(n.Type) | (ulong)(uint)(n.Permissions & 0xFFF));
        BinaryPrimitives.WriteUInt32LittleEndian(stat[16..], n.Uid);
        BinaryPrimitives.WriteUInt32LittleEndian(stat[20..], n.Gid);
        BinaryPrimitives.WriteInt64LittleEndian(stat[24..], n.MtimeSeconds);
        BinaryPrimitives.WriteUInt32LittleEndian(stat[32..], n.MtimeNanos);
        Item(PxarFormat.Entry, stat);
        foreach (var (name, value) in n.Xattrs.OrderBy(x => x.Name, ByteOrder.Instance))
            Item(PxarFormat.Xattr, [.. name, 0, .. value]);
        Span<byte> pair = stackalloc byte[16];
        foreach (var u in n.AclUsers)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(pair, u.Id);
            BinaryPrimitives.WriteUInt64LittleEndian(pair[8..], u.Permissions);
            Item(PxarFormat.AclUser, pair);
        }
        foreach (var g in n.AclGroups)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(pair, g.Id);
            BinaryPrimitives.WriteUInt64LittleEndian(pair[8..], g.Permissions);
            Item(PxarFormat.AclGroup, pair);
        }
        if (n.AclGroupObj is { } go)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(pair, go);
            Item(PxarFormat.AclGroupObj, pair[..8]);
        }
        if (n.AclDefault is { } d)
        {
            Span<byte> four = stackalloc byte[32];
            BinaryPrimitives.WriteUInt64LittleEndian(four, d.UserObj);
            BinaryPrimitives.WriteUInt64LittleEndian(four[8..], d.GroupObj);
            BinaryPrimitives.WriteUInt64LittleEndian(four[16..], d.Other);
            BinaryPrimitives.WriteUInt64LittleEndian(four[24..], d.Mask);
            Item(PxarFormat.AclDefault, four);
        }
        foreach (var (list, type) in new[] { (n.AclDefaultUsers, PxarFormat.AclDefaultUser), (n.AclDefaultGroups, PxarFormat.AclDefaultGroup) })
            foreach (var u in list)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(pair, u.Id);
                BinaryPrimitives.WriteUInt64LittleEndian(pair[8..], u.Permissions);
                Item(type, pair);
            }
        if (n.FCaps is { } caps) Item(PxarFormat.FCaps, caps);
        if (n.QuotaProjectId is { } q)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(pair, q);
            Item(PxarFormat.QuotaProjectId, pair[..8]);
        }
    }

    /// <summary>Writes a directory's ENTRY, its children and its goodbye table; <paramref name="itemStart"/> is where its FILENAME (or, for the root, the archive) began.</summary>
    private void WriteDirectoryBody(PxarNode dir, long itemStart, string path)
    {
        long entryOffset = _pos;
        WriteMetadata(dir);
        var items = new List<(ulong Hash, long Start, long Size)>();
        foreach (var child in dir.Children.OrderBy(c => c.Name, ByteOrder.Instance))
        {
            long start = _pos;
            string childPath = path.Length == 0 ? Encoding.UTF8.GetString(child.Name) : path + "/" + Encoding.UTF8.GetString(child.Name);
            Item(PxarFormat.Filename, [.. child.Name, 0]);
            if (child.HardlinkTo is { } target)
            {
                var (offset, targetPath) = _files.TryGetValue(target, out var t) ? t
                    : throw new InvalidOperationException($"hardlink '{childPath}' points to a file not written before it");
                var link = new byte[8 + Encoding.UTF8.GetByteCount(child.HardlinkPath ?? targetPath) + 1];
                BinaryPrimitives.WriteUInt64LittleEndian(link, (ulong)(start - offset));
                Encoding.UTF8.GetBytes(child.HardlinkPath ?? targetPath, link.AsSpan(8));
                Item(PxarFormat.Hardlink, link);
            }
            else if (child.Type == PxarEntryType.Directory)
                WriteDirectoryBody(child, start, childPath);
            else
            {
                WriteMetadata(child);
                switch (child.Type)
                {
                    case PxarEntryType.File:
                        _files[child] = (start, childPath);
                        if (_payload is null) Item(PxarFormat.Payload, child.Content);
                        else
                        {
                            var reference = new byte[16];
                            BinaryPrimitives.WriteUInt64LittleEndian(reference, (ulong)_payloadPos);
                            BinaryPrimitives.WriteUInt64LittleEndian(reference.AsSpan(8), (ulong)child.Content.Length);
                            var h = new byte[PxarFormat.HeaderSize];
                            PxarFormat.WriteHeader(h, PxarFormat.Payload, (ulong)(child.Content.Length + PxarFormat.HeaderSize));
                            _payload.Write(h);
                            _payload.Write(child.Content);
                            _payloadPos += PxarFormat.HeaderSize + child.Content.Length;
                            Item(PxarFormat.PayloadRef, reference);
                        }
                        break;
                    case PxarEntryType.Symlink:
                        Item(PxarFormat.Symlink, [.. Encoding.UTF8.GetBytes(child.LinkTarget ?? ""), 0]);
                        break;
                    case PxarEntryType.BlockDevice or PxarEntryType.CharDevice:
                    {
                        var dev = new byte[16];
                        BinaryPrimitives.WriteUInt64LittleEndian(dev, child.DeviceMajor);
                        BinaryPrimitives.WriteUInt64LittleEndian(dev.AsSpan(8), child.DeviceMinor);
                        Item(PxarFormat.Device, dev);
                        break;
                    }
                }
            }
            items.Add((PxarFormat.HashFilename(child.Name), start, _pos - start));
        }
        // Goodbye table: items sorted by hash and laid out as an implicit binary search tree (in-order fill), then the tail.
        long gbStart = _pos;
        var sorted = items.OrderBy(i => i.Hash).ToArray();
        var tree = new (ulong Hash, long Start, long Size)[sorted.Length];
        int next = 0;
        void Fill(int i)
        {
            if (i >= tree.Length) return;
            Fill(2 * i + 1);
            tree[i] = sorted[next++];
            Fill(2 * i + 2);
        }
        Fill(0);
        long tableSize = PxarFormat.HeaderSize + (tree.Length + 1) * PxarFormat.GoodbyeItemSize;
        var table = new byte[(tree.Length + 1) * PxarFormat.GoodbyeItemSize];
        for (int i = 0; i < tree.Length; i++)
        {
            var span = table.AsSpan(i * PxarFormat.GoodbyeItemSize);
            BinaryPrimitives.WriteUInt64LittleEndian(span, tree[i].Hash);
            BinaryPrimitives.WriteUInt64LittleEndian(span[8..], (ulong)(gbStart - tree[i].Start));
            BinaryPrimitives.WriteUInt64LittleEndian(span[16..], (ulong)tree[i].Size);
        }
        var tail = table.AsSpan(tree.Length * PxarFormat.GoodbyeItemSize);
        BinaryPrimitives.WriteUInt64LittleEndian(tail, PxarFormat.GoodbyeTailMarker);
        BinaryPrimitives.WriteUInt64LittleEndian(tail[8..], (ulong)(gbStart - entryOffset));
        BinaryPrimitives.WriteUInt64LittleEndian(tail[16..], (ulong)tableSize);
        Item(PxarFormat.Goodbye, table);
        _ = itemStart;
    }

    private sealed class ByteOrder : IComparer<byte[]>
    {
        public static readonly ByteOrder Instance = new();
        public int Compare(byte[]? x, byte[]? y) => x.AsSpan().SequenceCompareTo(y);
    }
}
