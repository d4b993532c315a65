using System.Buffers.Binary;
using System.Text;

namespace PbsRestore.Tests.Upstream;

/// <summary>
/// TEST-ONLY raw HTTP/2 on an upgraded reader stream, to see what a server sends at the frame level (its SETTINGS,
/// its connection WINDOW_UPDATE, the DATA frame sizes of an answer), which HttpClient hides. It sends the preface,
/// one SETTINGS frame (<paramref name="clientSettings"/>), a connection WINDOW_UPDATE, and one GET.
/// </summary>
public static class Http2Probe
{
    public sealed record Result(IReadOnlyDictionary<int, uint> ServerSettings, long ConnectionWindowUpdate, int Status, long BodyBytes,
        int MaxDataFrame, int DataFrames);

    private const byte Data = 0, Headers = 1, Settings = 4, Ping = 6, GoAway = 7, WindowUpdate = 8;

    public static async Task<Result> GetAsync(Stream stream, string authority, string path, IReadOnlyDictionary<int, uint> clientSettings,
        CancellationToken ct)
    {
        var output = new MemoryStream();
        output.Write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8);
        var settings = new byte[clientSettings.Count * 6];
        int at = 0;
        foreach (var (id, value) in clientSettings)
        {
            BinaryPrimitives.WriteUInt16BigEndian(settings.AsSpan(at), (ushort)id);
            BinaryPrimitives.WriteUInt32BigEndian(settings.AsSpan(at + 2), value);
            at += 6;
        }
        WriteFrame(output, Settings, 0, 0, settings);
        var increment = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(increment, (1u << 30) - 65535);
        WriteFrame(output, WindowUpdate, 0, 0, increment);
        // HPACK without Huffman or indexing: :method GET (static 2), :scheme https (static 7), :path and :authority literal.
        var block = new MemoryStream();
        block.WriteByte(0x82);
        block.WriteByte(0x87);
        WriteLiteral(block, 0x04, path);
        WriteLiteral(block, 0x01, authority);
        WriteFrame(output, Headers, 0x4 | 0x1, 1, block.ToArray()); // END_HEADERS | END_STREAM
        await stream.WriteAsync(output.ToArray(), ct);
        await stream.FlushAsync(ct);

        var serverSettings = new Dictionary<int, uint>();
        long windowUpdate = 0, body = 0;
        int status = 0, maxData = 0, frames = 0;
        var head = new byte[9];
        while (true)
        {
            await stream.ReadExactlyAsync(head, ct);
            int length = (head[0] << 16) | (head[1] << 8) | head[2];
            byte type = head[3], flags = head[4];
            int streamId = (int)(BinaryPrimitives.ReadUInt32BigEndian(head.AsSpan(5)) & 0x7fffffff);
            var payload = new byte[length];
            await stream.ReadExactlyAsync(payload, ct);
            switch (type)
            {
                case Settings when (flags & 1) == 0:
                    for (int i = 0; i + 6 <= length; i += 6)
                        serverSettings[BinaryPrimitives.ReadUInt16BigEndian(payload.AsSpan(i))] = BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(i + 2));
                    var ack = new MemoryStream();
                    WriteFrame(ack, Settings, 1, 0, []);
                    await stream.WriteAsync(ack.ToArray(), ct);
                    await stream.FlushAsync(ct);
                    break;
                case WindowUpdate when streamId == 0:
                    windowUpdate += BinaryPrimitives.ReadUInt32BigEndian(payload) & 0x7fffffff;
                    break;
                case Headers when streamId == 1:
                    // The first header of an answer is :status; servers send it from the static table (8 = 200) or literally.
                    status = payload.Length > 0 && payload[0] is >= 0x88 and <= 0x8e ? StaticStatus(payload[0] & 0x7f) : LiteralStatus(payload);
                    if ((flags & 1) != 0) return new Result(serverSettings, windowUpdate, status, body, maxData, frames);
                    break;
                case Data when streamId == 1:
                    frames++;
                    body += length;
                    maxData = Math.Max(maxData, length);
                    // Keep the stream window open: the answer may be larger than the initial window.
                    var more = new MemoryStream();
                    var inc = new byte[4];
                    BinaryPrimitives.WriteUInt32BigEndian(inc, (uint)Math.Max(length, 1));
                    if (length > 0) { WriteFrame(more, WindowUpdate, 0, 1, inc); WriteFrame(more, WindowUpdate, 0, 0, inc); }
                    await stream.WriteAsync(more.ToArray(), ct);
                    if ((flags & 1) != 0) return new Result(serverSettings, windowUpdate, status, body, maxData, frames);
                    break;
                case GoAway:
                    throw new IOException($"GOAWAY from the server: {Encoding.ASCII.GetString(payload.AsSpan(Math.Min(8, payload.Length)))}");
                case Ping when (flags & 1) == 0:
                    var pong = new MemoryStream();
                    WriteFrame(pong, Ping, 1, 0, payload);
                    await stream.WriteAsync(pong.ToArray(), ct);
                    break;
            }
        }
    }

    private static int StaticStatus(int index) => index switch { 8 => 200, 9 => 204, 10 => 206, 11 => 304, 12 => 400, 13 => 404, 14 => 500, _ => 0 };

    private static int LiteralStatus(byte[] block)
    {
        // A literal with the :status name (static index 8..14) and a 3-digit value, not Huffman-coded.
        int at = 1;
        if (at < block.Length && (block[at] & 0x80) == 0 && block[at] == 3 && at + 4 <= block.Length)
            return int.Parse(Encoding.ASCII.GetString(block, at + 1, 3));
        return -1; // Huffman-coded: not decoded here
    }

    private static void WriteLiteral(Stream s, byte nameIndex, string value)
    {
        var bytes = Encoding.ASCII.GetBytes(value);
        if (bytes.Length >= 127) throw new ArgumentException("value too long for this probe", nameof(value));
        s.WriteByte(nameIndex);
        s.WriteByte((byte)bytes.Length);
        s.Write(bytes);
    }

    private static void WriteFrame(Stream s, byte type, byte flags, int streamId, ReadOnlySpan<byte> payload)
    {
        Span<byte> head = stackalloc byte[9];
        head[0] = (byte)(payload.Length >> 16);
        head[1] = (byte)(payload.Length >> 8);
        head[2] = (byte)payload.Length;
        head[3] = type;
        head[4] = flags;
        BinaryPrimitives.WriteUInt32BigEndian(head[5..], (uint)streamId);
        s.Write(head);
        s.Write(payload);
    }
}
