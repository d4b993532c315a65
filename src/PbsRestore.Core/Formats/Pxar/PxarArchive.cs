using System.Buffers.Binary;
using System.Text;
using PbsRestore.Formats;

namespace PbsRestore.Formats.Pxar;

/// <summary>A pxar archive that breaks the format, with the entry (archive path) and offset where it does.</summary>
public sealed class PxarFormatException : PbsFormatException
{
    public PxarFormatException(string errorId, string entryPath, long offset, string message)
        : base($"pxar entry '/{entryPath}' at offset {offset}: {message}", errorId)
    {
        EntryPath = entryPath;
        Offset = offset;
    }

    public string EntryPath { get; }
    public long Offset { get; }
}

/// <summary>
/// Random access to a pxar archive (upstream: proxmox/pxar, the accessor): format v1 (one stream) and v2 (a
/// metadata archive, .mpxar, whose files point with PAYLOAD_REF into a payload archive, .ppxar). Directories are
/// found and listed through their goodbye tables, so looking up one path reads only the tables and entries on the
/// way, never the archive. Every offset and size read from the archive is checked against the range it must lie
/// in: children strictly inside their directory, goodbye items inside their table, contents inside the archive;
/// so a hostile archive cannot make it loop, read outside, or hand out a name with '/', NUL, '.' or '..'.
/// Thread-safe (no state but the inputs).
/// </summary>
public sealed class PxarArchive
{
    /// <summary>Directories nested deeper than this are refused (upstream has no limit; 4096-byte paths allow ~2048).</summary>
    public const int MaxDepth = 2048;

    private readonly IRandomAccessData _data;
    private readonly IRandomAccessData? _payload;

    private PxarArchive(IRandomAccessData data, IRandomAccessData? payload, int version, PxarEntry root)
    {
        _data = data;
        _payload = payload;
        Version = version;
        Root = root;
    }

    /// <summary>1 (one stream) or 2 (split: metadata and payload archives).</summary>
    public int Version { get; }
    public PxarEntry Root { get; }
    public IRandomAccessData Data => _data;
    public IRandomAccessData? PayloadData => _payload;

    /// <summary>Opens an archive: checks the start (format version, prelude) and the root's goodbye tail.</summary>
    public static async Task<PxarArchive> OpenAsync(IRandomAccessData data, IRandomAccessData? payload, CancellationToken ct)
    {
        long length = data.Length;
        if (length < PxarFormat.HeaderSize + 32 + PxarFormat.HeaderSize + PxarFormat.GoodbyeItemSize)
            throw new PxarFormatException("PxarTruncated", "", 0, $"an archive of {length} bytes is too short to hold a root directory");
        var (type, size) = await ReadHeaderAsync(data, 0, length, "", ct).ConfigureAwait(false);
        int version = 1;
        if (type == PxarFormat.FormatVersion)
        {
            if (size != PxarFormat.HeaderSize + 8)
                throw new PxarFormatException("PxarBadItem", "", 0, $"FORMAT_VERSION item of {size} bytes (expected 24)");
            var v = new byte[8];
            await data.ReadExactlyAtAsync(8 + 8, v, "pxar format version", ct).ConfigureAwait(false);
            ulong value = BinaryPrimitives.ReadUInt64LittleEndian(v);
            if (value != 2)
                throw new PxarFormatException("PxarUnknownVersion", "", 0, $"format version {value} is not supported (1 and 2 are)");
            version = 2;
        }
        if (version == 2 && payload is null)
            throw new PbsException("PxarPayloadMissing", PbsErrorKind.InvalidArgument,
                "this is a split (format v2) metadata archive: its file contents are in the payload archive (.ppxar), which must be opened with it");
        if (payload is not null)
        {
            if (version != 2)
                throw new PxarFormatException("PxarBadItem", "", 0, "a payload archive was given but the metadata archive has no format version 2 item");
            var (ptype, psize) = await ReadHeaderAsync(payload, 0, payload.Length, "", ct).ConfigureAwait(false);
            if (ptype != PxarFormat.PayloadStartMarker || psize != PxarFormat.HeaderSize)
                throw new PxarFormatException("PxarBadPayloadArchive", "", 0, $"the payload archive does not start with PAYLOAD_START_MARKER (found {PxarFormat.Describe(ptype)})");
        }

        var (gbStart, entryOffset) = await ReadTailAsync(data, 0, length, "", ct).ConfigureAwait(false);
        var root = new PxarEntry { Path = "", NameBytes = [], ItemOffset = entryOffset, EntryOffset = entryOffset, End = length };
        await ReadEntryBodyAsync(data, root, gbStart, ct).ConfigureAwait(false);
        if (root.Type != PxarEntryType.Directory)
            throw new PxarFormatException("PxarRootNotDirectory", "", entryOffset, $"the root entry is a {root.Type}, not a directory");
        var archive = new PxarArchive(data, payload, version, root);
        return archive;
    }

    /// <summary>The entries of a directory, in archive order (names sorted bytewise).</summary>
    public async Task<IReadOnlyList<PxarEntry>> ListAsync(PxarEntry directory, CancellationToken ct)
    {
        var items = await ReadGoodbyeAsync(directory, ct).ConfigureAwait(false);
        var result = new List<PxarEntry>(items.Count);
        foreach (var item in items)
        {
            var child = await ReadChildAsync(directory, item.Start, item.End, ct).ConfigureAwait(false);
            // Names are unique and sorted bytewise (the encoder refuses anything else): a repeated name could make an
            // extractor write through a symlink it created a moment before.
            if (result.Count > 0 && result[^1].NameBytes.AsSpan().SequenceCompareTo(child.NameBytes) >= 0)
                throw new PxarFormatException("PxarBadFileName", directory.Path, item.Start,
                    $"file name '{child.Name}' repeats or is out of order after '{result[^1].Name}'");
            result.Add(child);
        }
        return result;
    }

    /// <summary>
    /// Finds a path ('/'-separated, relative to the root; "" or "/" is the root) through the goodbye tables: only
    /// the tables on the way and the entries whose name hash matches are read. Null when it does not exist.
    /// Symlinks are not followed (a symlink in the middle of the path ends the walk: null).
    /// </summary>
    public async Task<PxarEntry?> LookupAsync(string path, CancellationToken ct)
    {
        var current = Root;
        foreach (var part in path.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            if (part == ".") continue;
            if (current.Type != PxarEntryType.Directory) return null;
            var name = Encoding.UTF8.GetBytes(part);
            ulong hash = PxarFormat.HashFilename(name);
            var items = await ReadGoodbyeAsync(current, ct).ConfigureAwait(false);
            PxarEntry? found = null;
            foreach (var item in items)
            {
                if (item.Hash != hash) continue;
                var child = await ReadChildAsync(current, item.Start, item.End, ct).ConfigureAwait(false);
                if (child.NameBytes.AsSpan().SequenceEqual(name))
                {
                    found = child;
                    break;
                }
            }
            if (found is null) return null;
            current = found;
        }
        return current;
    }

    /// <summary>Every entry below <paramref name="directory"/>, depth first in archive order (the directory itself not included).</summary>
    public async IAsyncEnumerable<PxarEntry> WalkAsync(PxarEntry directory, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        var stack = new Stack<IEnumerator<PxarEntry>>();
        stack.Push((await ListAsync(directory, ct).ConfigureAwait(false)).GetEnumerator());
        while (stack.Count > 0)
        {
            var top = stack.Peek();
            if (!top.MoveNext())
            {
                stack.Pop();
                continue;
            }
            var entry = top.Current;
            yield return entry;
            if (entry.Type == PxarEntryType.Directory)
            {
                if (stack.Count >= MaxDepth)
                    throw new PxarFormatException("PxarTooDeep", entry.Path, entry.ItemOffset, $"directories nested more than {MaxDepth} deep");
                stack.Push((await ListAsync(entry, ct).ConfigureAwait(false)).GetEnumerator());
            }
        }
    }

    /// <summary>The regular file a hardlink points to (its metadata and content), checked to be an earlier file.</summary>
    public async Task<PxarEntry> ResolveHardlinkAsync(PxarEntry link, CancellationToken ct)
    {
        if (link.Type != PxarEntryType.Hardlink) throw new ArgumentException($"{link} is not a hardlink", nameof(link));
        try
        {
            return await ReadHardlinkTargetAsync(link, ct).ConfigureAwait(false);
        }
        catch (PxarFormatException e) when (e.ErrorId != "PxarBadHardlink")
        {
            throw new PxarFormatException("PxarBadHardlink", link.Path, link.ItemOffset, $"hardlink target at offset {link.HardlinkTargetOffset} is not a file entry: {e.Message}");
        }
    }

    private async Task<PxarEntry> ReadHardlinkTargetAsync(PxarEntry link, CancellationToken ct)
    {
        long at = link.HardlinkTargetOffset;
        var (type, size) = await ReadHeaderAsync(_data, at, _data.Length, link.Path, ct).ConfigureAwait(false);
        if (type != PxarFormat.Filename)
            throw new PxarFormatException("PxarBadHardlink", link.Path, link.ItemOffset, $"hardlink target offset {at} does not point to a file name item");
        var name = await ReadNameAsync(_data, at, size, link.Path, ct).ConfigureAwait(false);
        string targetPath = link.LinkTarget ?? Encoding.UTF8.GetString(name);
        var target = new PxarEntry { Path = targetPath, NameBytes = name, ItemOffset = at, EntryOffset = at + (long)size };
        await ReadEntryBodyAsync(_data, target, link.ItemOffset, ct).ConfigureAwait(false);
        if (target.Type != PxarEntryType.File)
            throw new PxarFormatException("PxarBadHardlink", link.Path, link.ItemOffset, $"hardlink target at offset {at} is a {target.Type}, not a regular file");
        return target;
    }

    /// <summary>A stream of a regular file's content (checked against the payload archive's item header in v2).</summary>
    public async Task<Stream> OpenContentAsync(PxarEntry file, CancellationToken ct)
    {
        if (file.Type != PxarEntryType.File) throw new ArgumentException($"{file} is not a regular file", nameof(file));
        if (!file.ContentInPayloadArchive) return _data.OpenRange(file.ContentOffset, file.Size);
        var payload = _payload!;
        long header = file.ContentOffset - PxarFormat.HeaderSize;
        var (type, size) = await ReadHeaderAsync(payload, header, payload.Length, file.Path, ct).ConfigureAwait(false);
        if (type != PxarFormat.Payload || size != (ulong)file.Size + PxarFormat.HeaderSize)
            throw new PxarFormatException("PxarBadPayloadRef", file.Path, file.EntryOffset,
                $"PAYLOAD_REF to payload offset {header} finds {PxarFormat.Describe(type)} of {size} bytes, not PAYLOAD of {file.Size + PxarFormat.HeaderSize}");
        return payload.OpenRange(file.ContentOffset, file.Size);
    }

    // ---- parsing ----

    private readonly record struct GoodbyeItem(ulong Hash, long Start, long End);

    /// <summary>A directory's goodbye items as absolute ranges, sorted by offset, each checked to lie inside the directory.</summary>
    private async Task<List<GoodbyeItem>> ReadGoodbyeAsync(PxarEntry dir, CancellationToken ct)
    {
        if (dir.Type != PxarEntryType.Directory) throw new ArgumentException($"{dir} is not a directory", nameof(dir));
        var (gbStart, _) = await ReadTailAsync(_data, dir.EntryOffset, dir.End, dir.Path, ct).ConfigureAwait(false);
        long tableSize = dir.End - gbStart;
        int count = (int)((tableSize - PxarFormat.HeaderSize) / PxarFormat.GoodbyeItemSize) - 1;
        var table = new byte[count * PxarFormat.GoodbyeItemSize];
        await _data.ReadExactlyAtAsync(gbStart + PxarFormat.HeaderSize, table, $"goodbye table of '/{dir.Path}'", ct).ConfigureAwait(false);
        // Children lie between the end of the directory's own metadata and the table.
        long first = dir.ContentOffset;
        if (gbStart < first)
            throw new PxarFormatException("PxarBadGoodbye", dir.Path, gbStart, $"goodbye table at {gbStart} starts before the directory's entries at {first}");
        var items = new List<GoodbyeItem>(count);
        for (int i = 0; i < count; i++)
        {
            var span = table.AsSpan(i * PxarFormat.GoodbyeItemSize);
            ulong hash = BinaryPrimitives.ReadUInt64LittleEndian(span);
            ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(span[8..]);
            ulong size = BinaryPrimitives.ReadUInt64LittleEndian(span[16..]);
            if (hash == PxarFormat.GoodbyeTailMarker)
                throw new PxarFormatException("PxarBadGoodbye", dir.Path, gbStart, $"goodbye item {i} carries the tail marker before the end of the table");
            if (offset > (ulong)(gbStart - first) || offset == 0 || size < PxarFormat.HeaderSize * 2 || size > offset)
                throw new PxarFormatException("PxarBadGoodbye", dir.Path, gbStart,
                    $"goodbye item {i} (offset {offset}, size {size}) points outside the directory's entries [{first}, {gbStart})");
            long start = gbStart - (long)offset;
            items.Add(new GoodbyeItem(hash, start, start + (long)size));
        }
        items.Sort((a, b) => a.Start.CompareTo(b.Start));
        for (int i = 1; i < items.Count; i++)
            if (items[i].Start < items[i - 1].End)
                throw new PxarFormatException("PxarBadGoodbye", dir.Path, gbStart,
                    $"goodbye items overlap: [{items[i - 1].Start}, {items[i - 1].End}) and [{items[i].Start}, {items[i].End})");
        return items;
    }

    /// <summary>
    /// Reads the goodbye tail at <paramref name="end"/> - 24 of an item that starts at <paramref name="entryFloor"/>:
    /// returns the table's start and the directory's ENTRY offset, checked to lie in order within the item.
    /// </summary>
    private static async Task<(long GoodbyeStart, long EntryOffset)> ReadTailAsync(IRandomAccessData data, long entryFloor, long end, string path, CancellationToken ct)
    {
        long at = end - PxarFormat.GoodbyeItemSize;
        if (at < entryFloor + PxarFormat.HeaderSize)
            throw new PxarFormatException("PxarBadGoodbye", path, entryFloor, $"directory item ending at {end} is too short for a goodbye table");
        var tail = new byte[PxarFormat.GoodbyeItemSize];
        await data.ReadExactlyAtAsync(at, tail, $"goodbye tail of '/{path}'", ct).ConfigureAwait(false);
        ulong hash = BinaryPrimitives.ReadUInt64LittleEndian(tail);
        ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(tail.AsSpan(8));
        ulong size = BinaryPrimitives.ReadUInt64LittleEndian(tail.AsSpan(16));
        if (hash != PxarFormat.GoodbyeTailMarker)
            throw new PxarFormatException("PxarBadGoodbye", path, at, "no goodbye tail marker at the end of the directory");
        long span = end - entryFloor;
        if (size < PxarFormat.HeaderSize + PxarFormat.GoodbyeItemSize || size > (ulong)span || (size - PxarFormat.HeaderSize) % PxarFormat.GoodbyeItemSize != 0)
            throw new PxarFormatException("PxarBadGoodbye", path, at, $"goodbye table size {size} does not fit the directory ({span} bytes)");
        long gbStart = end - (long)size;
        if (offset > (ulong)(gbStart - entryFloor))
            throw new PxarFormatException("PxarBadGoodbye", path, at, $"goodbye tail offset {offset} points before the directory's start {entryFloor}");
        var (type, full) = await ReadHeaderAsync(data, gbStart, end, path, ct).ConfigureAwait(false);
        if (type != PxarFormat.Goodbye || full != size)
            throw new PxarFormatException("PxarBadGoodbye", path, gbStart, $"goodbye table starts with {PxarFormat.Describe(type)} of {full} bytes, not GOODBYE of {size}");
        return (gbStart, gbStart - (long)offset);
    }

    private async Task<PxarEntry> ReadChildAsync(PxarEntry dir, long start, long end, CancellationToken ct)
    {
        var (type, size) = await ReadHeaderAsync(_data, start, end, dir.Path, ct).ConfigureAwait(false);
        if (type != PxarFormat.Filename)
            throw new PxarFormatException("PxarBadItem", dir.Path, start, $"goodbye item points to {PxarFormat.Describe(type)}, not FILENAME");
        var name = await ReadNameAsync(_data, start, size, dir.Path, ct).ConfigureAwait(false);
        string childPath = dir.Path.Length == 0 ? Encoding.UTF8.GetString(name) : dir.Path + "/" + Encoding.UTF8.GetString(name);
        var entry = new PxarEntry { Path = childPath, NameBytes = name, ItemOffset = start, EntryOffset = start + (long)size, End = end };
        await ReadEntryBodyAsync(_data, entry, end, ct).ConfigureAwait(false);
        if (entry.Type == PxarEntryType.Directory)
        {
            // Its goodbye tail must sit at the item's end and point back to this ENTRY.
            var (_, entryOffset) = await ReadTailAsync(_data, entry.EntryOffset, end, childPath, ct).ConfigureAwait(false);
            if (entryOffset != entry.EntryOffset)
                throw new PxarFormatException("PxarBadGoodbye", childPath, end, $"goodbye tail names the entry at {entryOffset}, but the directory's entry is at {entry.EntryOffset}");
        }
        else if (entry.ContentEnd != end)
            throw new PxarFormatException("PxarBadGoodbye", childPath, start, $"goodbye item size says the entry ends at {end}, its items end at {entry.ContentEnd}");
        if (entry.Type == PxarEntryType.File && entry.ContentInPayloadArchive && entry.ContentOffset + entry.Size > _payload!.Length)
            throw new PxarFormatException("PxarBadPayloadRef", childPath, entry.EntryOffset,
                $"file of {entry.Size} bytes at payload offset {entry.ContentOffset} runs past the payload archive ({_payload.Length} bytes)");
        return entry;
    }

    /// <summary>Reads a FILENAME item's name and validates it as one path component.</summary>
    private static async Task<byte[]> ReadNameAsync(IRandomAccessData data, long at, ulong size, string parent, CancellationToken ct)
    {
        if (size <= PxarFormat.HeaderSize + 1 || size > PxarFormat.HeaderSize + PxarFormat.MaxFilenameLength + 1)
            throw new PxarFormatException("PxarBadFileName", parent, at, $"FILENAME item of {size} bytes");
        var raw = new byte[(int)size - PxarFormat.HeaderSize];
        await data.ReadExactlyAtAsync(at + PxarFormat.HeaderSize, raw, $"file name in '/{parent}'", ct).ConfigureAwait(false);
        if (raw[^1] != 0)
            throw new PxarFormatException("PxarBadFileName", parent, at, "file name is not NUL-terminated");
        var name = raw[..^1];
        CheckName(name, parent, at);
        return name;
    }

    /// <summary>A name must be one path component: not empty, '.', '..', and without '/' or NUL.</summary>
    public static void CheckName(ReadOnlySpan<byte> name, string parent, long offset)
    {
        string shown = Encoding.UTF8.GetString(name).Replace("\0", "\\0");
        if (name.Length == 0 || name.SequenceEqual("."u8) || name.SequenceEqual(".."u8))
            throw new PxarFormatException("PxarBadFileName", parent, offset, $"illegal file name '{shown}'");
        if (name.IndexOf((byte)'/') >= 0)
            throw new PxarFormatException("PxarBadFileName", parent, offset, $"file name '{shown}' contains '/' (absolute or a path)");
        if (name.IndexOf((byte)0) >= 0)
            throw new PxarFormatException("PxarBadFileName", parent, offset, $"file name '{shown}' contains NUL");
    }

    private static async Task<(ulong Type, ulong Size)> ReadHeaderAsync(IRandomAccessData data, long at, long end, string path, CancellationToken ct)
    {
        if (at < 0 || at + PxarFormat.HeaderSize > end)
            throw new PxarFormatException("PxarTruncated", path, at, $"item header at {at} lies outside [0, {end})");
        var h = new byte[PxarFormat.HeaderSize];
        await data.ReadExactlyAtAsync(at, h, $"pxar item header of '/{path}'", ct).ConfigureAwait(false);
        ulong type = BinaryPrimitives.ReadUInt64LittleEndian(h);
        ulong size = BinaryPrimitives.ReadUInt64LittleEndian(h.AsSpan(8));
        if (size < PxarFormat.HeaderSize || size > (ulong)(end - at))
            throw new PxarFormatException("PxarBadItemSize", path, at, $"{PxarFormat.Describe(type)} item of {size} bytes does not fit in the {end - at} bytes left");
        return (type, size);
    }

    /// <summary>
    /// Parses an entry from its ENTRY (or HARDLINK) item at <see cref="PxarEntry.EntryOffset"/>: the metadata items
    /// and what ends it (payload, payload ref, symlink, device; for directories, FIFOs and sockets the next
    /// FILENAME or GOODBYE). Nothing may reach past <paramref name="end"/>.
    /// </summary>
    private static async Task ReadEntryBodyAsync(IRandomAccessData data, PxarEntry e, long end, CancellationToken ct)
    {
        string path = e.Path;
        long at = e.EntryOffset;
        var (type, size) = await ReadHeaderAsync(data, at, end, path, ct).ConfigureAwait(false);
        if (type == PxarFormat.Hardlink)
        {
            if (size <= PxarFormat.HeaderSize + 8 + 1 || size > PxarFormat.HeaderSize + 8 + PxarFormat.MaxPathLength + 1)
                throw new PxarFormatException("PxarBadHardlink", path, at, $"HARDLINK item of {size} bytes");
            var raw = await ReadContentAsync(data, at, size, path, ct).ConfigureAwait(false);
            ulong back = BinaryPrimitives.ReadUInt64LittleEndian(raw);
            if (raw[^1] != 0) throw new PxarFormatException("PxarBadHardlink", path, at, "hardlink target is not NUL-terminated");
            if (back == 0 || back > (ulong)e.ItemOffset)
                throw new PxarFormatException("PxarBadHardlink", path, at, $"hardlink offset {back} does not point to an earlier entry");
            e.Type = PxarEntryType.Hardlink;
            e.HardlinkTargetOffset = e.ItemOffset - (long)back;
            e.LinkTargetBytes = raw[8..^1];
            e.LinkTarget = Encoding.UTF8.GetString(e.LinkTargetBytes);
            e.ContentEnd = at + (long)size;
            return;
        }
        if (type == PxarFormat.Entry || type == PxarFormat.EntryV1)
        {
            int expect = type == PxarFormat.Entry ? 40 : 32;
            if (size != (ulong)(PxarFormat.HeaderSize + expect))
                throw new PxarFormatException("PxarBadItem", path, at, $"{PxarFormat.Describe(type)} item of {size} bytes (expected {PxarFormat.HeaderSize + expect})");
            var stat = await ReadContentAsync(data, at, size, path, ct).ConfigureAwait(false);
            e.Mode = BinaryPrimitives.ReadUInt64LittleEndian(stat);
            e.Flags = BinaryPrimitives.ReadUInt64LittleEndian(stat.AsSpan(8));
            e.Uid = BinaryPrimitives.ReadUInt32LittleEndian(stat.AsSpan(16));
            e.Gid = BinaryPrimitives.ReadUInt32LittleEndian(stat.AsSpan(20));
            if (type == PxarFormat.Entry)
            {
                e.MtimeSeconds = BinaryPrimitives.ReadInt64LittleEndian(stat.AsSpan(24));
                e.MtimeNanos = BinaryPrimitives.ReadUInt32LittleEndian(stat.AsSpan(32));
                if (e.MtimeNanos >= 1_000_000_000)
                    throw new PxarFormatException("PxarBadItem", path, at, $"mtime nanoseconds {e.MtimeNanos} out of range");
            }
            else
            {
                ulong ns = BinaryPrimitives.ReadUInt64LittleEndian(stat.AsSpan(24));
                e.MtimeSeconds = (long)(ns / 1_000_000_000);
                e.MtimeNanos = (uint)(ns % 1_000_000_000);
            }
        }
        else
            throw new PxarFormatException("PxarBadItem", path, at, $"expected ENTRY, found {PxarFormat.Describe(type)}");

        ulong fileType = e.Mode & PxarFormat.ModeTypeMask;
        at += (long)size;
        while (true)
        {
            // A FIFO or socket is all metadata: its item can end right after it (the last entry of a directory
            // range does, as does an entry read alone).
            (type, size) = at == end ? (PxarFormat.Goodbye, 0UL) : await ReadHeaderAsync(data, at, end, path, ct).ConfigureAwait(false);
            switch (type)
            {
                case PxarFormat.Xattr:
                {
                    CheckMax(type, size, PxarFormat.MaxXattrLength, path, at);
                    var raw = await ReadContentAsync(data, at, size, path, ct).ConfigureAwait(false);
                    int nul = Array.IndexOf(raw, (byte)0);
                    if (nul <= 0) throw new PxarFormatException("PxarBadItem", path, at, "XATTR item without a name and NUL separator");
                    e.Xattrs.Add(new PxarXattr(raw[..nul], raw[(nul + 1)..]));
                    break;
                }
                case PxarFormat.AclUser or PxarFormat.AclDefaultUser or PxarFormat.AclGroup or PxarFormat.AclDefaultGroup:
                {
                    var raw = await ReadFixedAsync(data, at, size, 16, type, path, ct).ConfigureAwait(false);
                    var entry = new PxarAclEntry(BinaryPrimitives.ReadUInt64LittleEndian(raw), BinaryPrimitives.ReadUInt64LittleEndian(raw.AsSpan(8)));
                    (type switch
                    {
                        PxarFormat.AclUser => e.Acl.Users,
                        PxarFormat.AclDefaultUser => e.Acl.DefaultUsers,
                        PxarFormat.AclGroup => e.Acl.Groups,
                        _ => e.Acl.DefaultGroups,
                    }).Add(entry);
                    break;
                }
                case PxarFormat.AclGroupObj:
                {
                    var raw = await ReadFixedAsync(data, at, size, 8, type, path, ct).ConfigureAwait(false);
                    if (e.Acl.GroupObj is not null) throw Duplicate(type, path, at);
                    e.Acl.GroupObj = BinaryPrimitives.ReadUInt64LittleEndian(raw);
                    break;
                }
                case PxarFormat.AclDefault:
                {
                    var raw = await ReadFixedAsync(data, at, size, 32, type, path, ct).ConfigureAwait(false);
                    if (e.Acl.Default is not null) throw Duplicate(type, path, at);
                    e.Acl.Default = (BinaryPrimitives.ReadUInt64LittleEndian(raw), BinaryPrimitives.ReadUInt64LittleEndian(raw.AsSpan(8)),
                        BinaryPrimitives.ReadUInt64LittleEndian(raw.AsSpan(16)), BinaryPrimitives.ReadUInt64LittleEndian(raw.AsSpan(24)));
                    break;
                }
                case PxarFormat.FCaps:
                    CheckMax(type, size, PxarFormat.MaxXattrLength, path, at);
                    if (e.FCaps is not null) throw Duplicate(type, path, at);
                    e.FCaps = await ReadContentAsync(data, at, size, path, ct).ConfigureAwait(false);
                    break;
                case PxarFormat.QuotaProjectId:
                {
                    var raw = await ReadFixedAsync(data, at, size, 8, type, path, ct).ConfigureAwait(false);
                    if (e.QuotaProjectId is not null) throw Duplicate(type, path, at);
                    e.QuotaProjectId = BinaryPrimitives.ReadUInt64LittleEndian(raw);
                    break;
                }
                case PxarFormat.Payload:
                    Expect(fileType, PxarFormat.ModeRegular, type, path, at);
                    e.Type = PxarEntryType.File;
                    e.Size = (long)size - PxarFormat.HeaderSize;
                    e.ContentOffset = at + PxarFormat.HeaderSize;
                    e.ContentEnd = at + (long)size;
                    return;
                case PxarFormat.PayloadRef:
                {
                    Expect(fileType, PxarFormat.ModeRegular, type, path, at);
                    var raw = await ReadFixedAsync(data, at, size, 16, type, path, ct).ConfigureAwait(false);
                    ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(raw);
                    ulong length = BinaryPrimitives.ReadUInt64LittleEndian(raw.AsSpan(8));
                    if (offset > 1UL << 60 || length > 1UL << 60)
                        throw new PxarFormatException("PxarBadPayloadRef", path, at, $"payload reference ({offset}, {length}) is absurd");
                    e.Type = PxarEntryType.File;
                    e.Size = (long)length;
                    e.ContentOffset = (long)offset + PxarFormat.HeaderSize;
                    e.ContentInPayloadArchive = true;
                    e.ContentEnd = at + (long)size;
                    return;
                }
                case PxarFormat.Symlink:
                {
                    Expect(fileType, PxarFormat.ModeSymlink, type, path, at);
                    CheckMax(type, size, PxarFormat.MaxPathLength + 1, path, at);
                    var raw = await ReadContentAsync(data, at, size, path, ct).ConfigureAwait(false);
                    if (raw.Length == 0 || raw[^1] != 0) throw new PxarFormatException("PxarBadItem", path, at, "symlink target is not NUL-terminated");
                    e.Type = PxarEntryType.Symlink;
                    e.LinkTargetBytes = raw[..^1];
                    if (Array.IndexOf(e.LinkTargetBytes, (byte)0) >= 0) throw new PxarFormatException("PxarBadItem", path, at, "symlink target contains NUL");
                    e.LinkTarget = Encoding.UTF8.GetString(e.LinkTargetBytes);
                    e.ContentEnd = at + (long)size;
                    return;
                }
                case PxarFormat.Device:
                {
                    if (fileType != PxarFormat.ModeBlockDevice && fileType != PxarFormat.ModeCharDevice)
                        throw new PxarFormatException("PxarBadItem", path, at, $"DEVICE item for an entry of mode {Convert.ToString((long)e.Mode, 8)}");
                    var raw = await ReadFixedAsync(data, at, size, 16, type, path, ct).ConfigureAwait(false);
                    e.Type = fileType == PxarFormat.ModeBlockDevice ? PxarEntryType.BlockDevice : PxarEntryType.CharDevice;
                    e.DeviceMajor = BinaryPrimitives.ReadUInt64LittleEndian(raw);
                    e.DeviceMinor = BinaryPrimitives.ReadUInt64LittleEndian(raw.AsSpan(8));
                    e.ContentEnd = at + (long)size;
                    return;
                }
                case PxarFormat.Filename or PxarFormat.Goodbye:
                    // The entry has no item of its own: a directory (its children follow), a FIFO or a socket.
                    e.Type = fileType switch
                    {
                        PxarFormat.ModeDirectory => PxarEntryType.Directory,
                        PxarFormat.ModeFifo => PxarEntryType.Fifo,
                        PxarFormat.ModeSocket => PxarEntryType.Socket,
                        _ => throw new PxarFormatException("PxarBadItem", path, at, $"entry of mode {Convert.ToString((long)e.Mode, 8)} has no content item"),
                    };
                    e.ContentOffset = at; // for a directory: where its children start
                    e.ContentEnd = at;
                    return;
                default:
                    throw new PxarFormatException("PxarBadItem", path, at, $"unexpected {PxarFormat.Describe(type)} in an entry");
            }
            at += (long)size;
        }
    }

    private static PxarFormatException Duplicate(ulong type, string path, long at) =>
        new("PxarBadItem", path, at, $"more than one {PxarFormat.Describe(type)} item");

    private static void Expect(ulong fileType, ulong wanted, ulong type, string path, long at)
    {
        if (fileType != wanted)
            throw new PxarFormatException("PxarBadItem", path, at, $"{PxarFormat.Describe(type)} item for an entry of file type {Convert.ToString((long)fileType, 8)}");
    }

    private static void CheckMax(ulong type, ulong size, int max, string path, long at)
    {
        if (size - PxarFormat.HeaderSize > (ulong)max)
            throw new PxarFormatException("PxarBadItemSize", path, at, $"{PxarFormat.Describe(type)} item of {size} bytes exceeds the format's limit");
    }

    private static async Task<byte[]> ReadFixedAsync(IRandomAccessData data, long at, ulong size, int content, ulong type, string path, CancellationToken ct)
    {
        if (size != (ulong)(PxarFormat.HeaderSize + content))
            throw new PxarFormatException("PxarBadItemSize", path, at, $"{PxarFormat.Describe(type)} item of {size} bytes (expected {PxarFormat.HeaderSize + content})");
        return await ReadContentAsync(data, at, size, path, ct).ConfigureAwait(false);
    }

    private static async Task<byte[]> ReadContentAsync(IRandomAccessData data, long at, ulong size, string path, CancellationToken ct)
    {
        var buf = new byte[(int)size - PxarFormat.HeaderSize];
        await data.ReadExactlyAtAsync(at + PxarFormat.HeaderSize, buf, $"pxar item of '/{path}'", ct).ConfigureAwait(false);
        return buf;
    }
}
