using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using PbsRestore.Publishing.Iscsi;

namespace PbsRestore.Tests.Publishing;

/// <summary>
/// A minimal hand-driven initiator for wire-level tests: raw PDUs over a real socket, so tests can send what real
/// initiators never would (hostile lengths, unknown opcodes, CmdSNs outside the window).
/// </summary>
internal sealed class RawInitiator : IAsyncDisposable
{
    public const string Name = "iqn.2024-01.org.pbsrestore.test:raw";
    private readonly TcpClient _client = new();
    private NetworkStream _stream = null!;
    private PduWriter _writer = null!;
    public readonly PduLimits Limits = new() { MaxRecvDataSegment = 1 << 24 };
    public uint CmdSn = 1;
    public uint Itt = 0x100;
    public uint ExpStatSn;

    public static async Task<RawInitiator> ConnectAsync(IPEndPoint ep)
    {
        var r = new RawInitiator();
        await r._client.ConnectAsync(ep);
        r._stream = r._client.GetStream();
        r._writer = new PduWriter(r._stream, r.Limits);
        return r;
    }

    public NetworkStream Stream => _stream;

    public ValueTask SendAsync(byte[] bhs, ReadOnlyMemory<byte> data = default) => _writer.WriteAsync(bhs, data, default);

    public async Task<Pdu?> ReceiveAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(10));
        var pdu = await PduReader.ReadAsync(_stream, Limits, cts.Token);
        if (pdu is not null && pdu.Opcode is not (Opcode.DataIn or Opcode.ReadyToTransfer)) ExpStatSn = pdu.U32(24) + 1;
        else if (pdu is not null && pdu.Opcode == Opcode.DataIn && (pdu.Flags & 1) != 0) ExpStatSn = pdu.U32(24) + 1;
        return pdu;
    }

    /// <summary>Logs in straight to full feature phase (operational stage only) with the given keys.</summary>
    public ushort Tsih;
    public ulong Isid = 0x4000_0000_0001UL;
    public ushort Cid;

    public async Task<(byte Class, byte Detail, Dictionary<string, string> Keys)> LoginAsync(string target, params string[] keys)
    {
        var bhs = new byte[48];
        bhs[0] = 0x43;
        bhs[1] = 0x80 | (1 << 2) | 3;
        BinaryPrimitives.WriteUInt64BigEndian(bhs.AsSpan(8), (Isid << 16) | Tsih);
        BinaryPrimitives.WriteUInt16BigEndian(bhs.AsSpan(20), Cid);
        BinaryPrimitives.WriteUInt32BigEndian(bhs.AsSpan(16), Itt++);
        BinaryPrimitives.WriteUInt32BigEndian(bhs.AsSpan(24), CmdSn);
        var text = new List<string> { $"InitiatorName={Name}" };
        text.Add(target.Length == 0 ? "SessionType=Discovery" : $"TargetName={target}");
        text.AddRange(keys);
        await SendAsync(bhs, Encoding.UTF8.GetBytes(string.Concat(text.Select(t => t + "\0"))));
        using var r = await ReceiveAsync() ?? throw new IOException("connection closed during login");
        var parsed = TextKeys.Parse(r.Data, out _)!.ToDictionary(k => k.Key, k => k.Value);
        if (r.Bhs[36] == 0)
        {
            Tsih = r.U16(14);
            Limits.HeaderDigest = parsed.GetValueOrDefault("HeaderDigest") == "CRC32C";
            Limits.DataDigest = parsed.GetValueOrDefault("DataDigest") == "CRC32C";
        }
        return (r.Bhs[36], r.Bhs[37], parsed);
    }

    public byte[] ScsiCommand(byte[] cdb, uint edtl, bool read, bool write, bool final = true, int lun = 0)
    {
        var bhs = new byte[48];
        bhs[0] = 0x01;
        bhs[1] = (byte)((final ? 0x80 : 0) | (read ? 0x40 : 0) | (write ? 0x20 : 0) | 0x01);
        BinaryPrimitives.WriteUInt64BigEndian(bhs.AsSpan(8), Pdu.EncodeLun(lun));
        BinaryPrimitives.WriteUInt32BigEndian(bhs.AsSpan(16), Itt++);
        BinaryPrimitives.WriteUInt32BigEndian(bhs.AsSpan(20), edtl);
        BinaryPrimitives.WriteUInt32BigEndian(bhs.AsSpan(24), CmdSn++);
        BinaryPrimitives.WriteUInt32BigEndian(bhs.AsSpan(28), ExpStatSn);
        cdb.CopyTo(bhs, 32);
        return bhs;
    }

    /// <summary>True when the target closed the connection (EOF or reset) within the timeout.</summary>
    public async Task<bool> ClosedByPeerAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        var buf = new byte[4096];
        try
        {
            while (true)
                if (await _stream.ReadAsync(buf, cts.Token) == 0) return true;
        }
        catch (IOException) { return true; }
        catch (OperationCanceledException) { return false; }
    }

    public async ValueTask DisposeAsync()
    {
        _client.Dispose();
        await Task.CompletedTask;
    }
}
