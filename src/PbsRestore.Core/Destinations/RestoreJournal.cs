using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;

namespace PbsRestore.Destinations;

/// <summary>What a journal belongs to: a resumed restore must write the same image in the same form.</summary>
/// <param name="Snapshot">The snapshot path (<c>vm/100/2024-05-01T10:00:00Z</c>, with its namespace).</param>
/// <param name="Archive">The archive file name (<c>drive-scsi0.img.fidx</c>).</param>
/// <param name="IndexCsum">The index checksum from the manifest: same checksum, same chunks at the same offsets.</param>
/// <param name="Size">The image size.</param>
/// <param name="Format">How the image is written (Raw, Vhdx, Vhd, Device).</param>
public sealed record JournalIdentity(string Snapshot, string Archive, string IndexCsum, long Size, string Format);

/// <summary>
/// The resume journal of one restore, kept beside its partial destination (<c>&lt;destination&gt;.partial.journal</c>).
/// A header names what is restored (<see cref="JournalIdentity"/>); then one 4-byte record per finished chunk
/// job (its first index entry), appended as soon as the chunk's bytes were handed to the target, and a
/// checkpoint marker each time the target was flushed to stable storage. So after Ctrl+C or a killed process
/// (the kernel still holds every write) all finished chunks are known; after a power loss the records since the
/// last checkpoint are checked against the target's bytes before they are trusted (see <see cref="Load"/>).
/// </summary>
public sealed class RestoreJournal : IDisposable
{
    private static readonly byte[] Magic = "PBSRJNL1"u8.ToArray();
    private const uint CheckpointMarker = uint.MaxValue;
    /// <summary>Header JSON larger than this is not a journal of ours.</summary>
    private const int MaxHeader = 64 * 1024;

    private readonly SafeFileHandle _file;
    private readonly object _lock = new();
    private long _length;
    private long _recordsSinceCheckpoint;
    private bool _disposed;

    private RestoreJournal(string path, SafeFileHandle file, long length, JournalIdentity identity)
    {
        Path = path;
        _file = file;
        _length = length;
        Identity = identity;
    }

    public string Path { get; }
    public JournalIdentity Identity { get; }

    /// <summary>The journal of a destination's partial file.</summary>
    public static string PathFor(string partialPath) => partialPath + ".journal";

    /// <summary>Starts a new journal (replacing any old one).</summary>
    public static RestoreJournal Create(string path, JournalIdentity identity)
    {
        var json = JsonSerializer.SerializeToUtf8Bytes(identity);
        var header = new byte[Magic.Length + 4 + json.Length];
        Magic.CopyTo(header, 0);
        BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(Magic.Length), json.Length);
        json.CopyTo(header, Magic.Length + 4);
        // A device's journal lives in a folder of its own (see ImageDestinations.JournalPathFor), made when first needed.
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!);
        var file = File.OpenHandle(path, FileMode.Create, FileAccess.ReadWrite, FileShare.Read);
        try
        {
            RandomAccess.Write(file, header, 0);
            RandomAccess.FlushToDisk(file);
            return new RestoreJournal(path, file, header.Length, identity);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>What an existing journal holds; <paramref name="HeaderLength"/> is where its records start.</summary>
    public sealed record Contents(JournalIdentity Identity, IReadOnlySet<int> Confirmed, IReadOnlyList<int> Unconfirmed, int HeaderLength);

    /// <summary>
    /// Reads a journal: the chunk jobs confirmed by a checkpoint, and those recorded after the last checkpoint
    /// (finished, but not yet known to be on stable storage). A torn last record (the process died mid-append)
    /// is ignored. Throws ResumeJournalInvalid for a file that is not a journal.
    /// </summary>
    public static Contents Load(string path)
    {
        byte[] data = File.ReadAllBytes(path);
        PbsException Invalid(string why) => new("ResumeJournalInvalid", PbsErrorKind.InvalidData, $"resume journal '{path}' is not usable: {why}");
        if (data.Length < Magic.Length + 4 || !data.AsSpan(0, Magic.Length).SequenceEqual(Magic)) throw Invalid("not a PbsRestore journal");
        int jsonLength = BinaryPrimitives.ReadInt32LittleEndian(data.AsSpan(Magic.Length));
        if (jsonLength is <= 0 or > MaxHeader || Magic.Length + 4 + jsonLength > data.Length) throw Invalid("bad header length");
        JournalIdentity? identity;
        try
        {
            identity = JsonSerializer.Deserialize<JournalIdentity>(data.AsSpan(Magic.Length + 4, jsonLength));
        }
        catch (JsonException)
        {
            throw Invalid("its header is damaged");
        }
        if (identity is null || identity.Snapshot is null || identity.Archive is null || identity.IndexCsum is null || identity.Format is null)
            throw Invalid("incomplete header");
        var confirmed = new HashSet<int>();
        var pending = new List<int>();
        int start = Magic.Length + 4 + jsonLength;
        int end = start + (data.Length - start) / 4 * 4;
        for (int at = start; at < end; at += 4)
        {
            uint record = BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan(at));
            if (record == CheckpointMarker)
            {
                confirmed.UnionWith(pending);
                pending.Clear();
            }
            else if (record <= int.MaxValue)
            {
                pending.Add((int)record);
            }
        }
        return new Contents(identity, confirmed, pending, start);
    }

    /// <summary>
    /// Continues an existing journal after <see cref="Load"/>: the records <paramref name="verified"/> (unconfirmed ones
    /// checked against the target) are confirmed by a new checkpoint, and appending goes on after them.
    /// </summary>
    public static RestoreJournal Continue(string path, Contents contents, IEnumerable<int> verified)
    {
        var file = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.Read);
        try
        {
            // Rewrite the record area: every trusted job once, then a checkpoint (the target was just checked or flushed).
            var all = contents.Confirmed.Concat(verified).Distinct().ToList();
            long headerEnd = contents.HeaderLength;
            var records = new byte[(all.Count + 1) * 4];
            for (int i = 0; i < all.Count; i++) BinaryPrimitives.WriteUInt32LittleEndian(records.AsSpan(i * 4), (uint)all[i]);
            BinaryPrimitives.WriteUInt32LittleEndian(records.AsSpan(all.Count * 4), CheckpointMarker);
            RandomAccess.Write(file, records, headerEnd);
            RandomAccess.SetLength(file, headerEnd + records.Length);
            RandomAccess.FlushToDisk(file);
            return new RestoreJournal(path, file, headerEnd + records.Length, contents.Identity);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Records that the chunk job first needed at <paramref name="firstIndex"/> is written (one small write, no flush).</summary>
    public void MarkDone(int firstIndex)
    {
        Span<byte> record = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(record, (uint)firstIndex);
        lock (_lock)
        {
            if (_disposed) return;
            RandomAccess.Write(_file, record, _length);
            _length += 4;
            _recordsSinceCheckpoint++;
        }
    }

    /// <summary>
    /// Makes the recorded chunks durable: flushes <paramref name="target"/> (every recorded chunk was written before
    /// its record), then places a checkpoint after the records that existed before the flush and flushes the journal.
    /// Writes may go on meanwhile: records appended during the flush move after the marker (not yet covered).
    /// </summary>
    public void Checkpoint(IImageSink target)
    {
        long upTo;
        lock (_lock)
        {
            if (_disposed || _recordsSinceCheckpoint == 0) return;
            upTo = _length;
        }
        target.Flush();
        lock (_lock)
        {
            if (_disposed) return;
            // Records appended during the flush are not covered by it: move them after the marker.
            int later = (int)((_length - upTo) / 4);
            var tail = new byte[later * 4 + 4];
            if (later > 0) RandomAccess.Read(_file, tail.AsSpan(4), upTo);
            BinaryPrimitives.WriteUInt32LittleEndian(tail, CheckpointMarker);
            RandomAccess.Write(_file, tail, upTo);
            _length = upTo + tail.Length;
            _recordsSinceCheckpoint = later;
            RandomAccess.FlushToDisk(_file);
        }
    }

    /// <summary>Closes and deletes the journal (the restore finished, or is being started over).</summary>
    public void Delete()
    {
        Dispose();
        try { File.Delete(Path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            _file.Dispose();
        }
    }
}
