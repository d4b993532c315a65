using System.Buffers;
using System.Buffers.Binary;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace PbsRestore.Publishing.Iscsi;

/// <summary>iSCSI opcodes (RFC 7143 §11.1.1.1).</summary>
internal enum Opcode : byte
{
    NopOut = 0x00, ScsiCommand = 0x01, TaskManagementRequest = 0x02, LoginRequest = 0x03, TextRequest = 0x04,
    DataOut = 0x05, LogoutRequest = 0x06, Snack = 0x10,
    NopIn = 0x20, ScsiResponse = 0x21, TaskManagementResponse = 0x22, LoginResponse = 0x23, TextResponse = 0x24,
    DataIn = 0x25, LogoutResponse = 0x26, ReadyToTransfer = 0x31, AsyncMessage = 0x32, Reject = 0x3F,
}

/// <summary>Reject reasons (RFC 7143 §11.17.1).</summary>
internal enum RejectReason : byte
{
    DataDigestError = 0x02, SnackReject = 0x03, ProtocolError = 0x04, CommandNotSupported = 0x05,
    ImmediateCommandReject = 0x06, TaskInProgress = 0x07, InvalidDataAck = 0x08, InvalidPduField = 0x09,
    LongOperationReject = 0x0A, WaitingForLogout = 0x0C,
}

/// <summary>A violation that ends the connection (RFC 7143 §7.12 at ErrorRecoveryLevel 0: the connection is dropped).</summary>
internal sealed class IscsiProtocolException(string message) : Exception(message);

/// <summary>
/// One received PDU: the 48-byte basic header segment, the additional header segments and the data segment
/// (rented from the shared pool; <see cref="Dispose"/> returns it).
/// </summary>
internal sealed class Pdu : IDisposable
{
    public const int BhsLength = 48;
    public const uint ReservedTag = 0xFFFFFFFF;

    public readonly byte[] Bhs = new byte[BhsLength];
    public byte[] Ahs = [];
    private byte[]? _data;
    public int DataLength;

    public Opcode Opcode => (Opcode)(Bhs[0] & 0x3F);
    public bool Immediate => (Bhs[0] & 0x40) != 0;
    public bool Final => (Bhs[1] & 0x80) != 0;
    public byte Flags => Bhs[1];
    public int TotalAhsLength => Bhs[4] * 4;
    public int DataSegmentLength => (Bhs[5] << 16) | (Bhs[6] << 8) | Bhs[7];
    public ulong Lun => BinaryPrimitives.ReadUInt64BigEndian(Bhs.AsSpan(8));
    public uint InitiatorTaskTag => U32(16);
    public ReadOnlySpan<byte> Data => _data is null ? [] : _data.AsSpan(0, DataLength);
    public ReadOnlyMemory<byte> DataMemory => _data is null ? ReadOnlyMemory<byte>.Empty : _data.AsMemory(0, DataLength);

    public uint U32(int offset) => BinaryPrimitives.ReadUInt32BigEndian(Bhs.AsSpan(offset));
    public ushort U16(int offset) => BinaryPrimitives.ReadUInt16BigEndian(Bhs.AsSpan(offset));

    internal Span<byte> AllocateData(int length)
    {
        _data = length == 0 ? null : ArrayPool<byte>.Shared.Rent(length);
        DataLength = length;
        return _data is null ? [] : _data.AsSpan(0, length);
    }

    public void Dispose()
    {
        if (_data is not null) ArrayPool<byte>.Shared.Return(_data);
        _data = null;
        DataLength = 0;
    }

    /// <summary>The LUN number from an 8-byte LUN field (SAM: peripheral or flat addressing; else -1).</summary>
    public static int DecodeLun(ulong lun)
    {
        byte b0 = (byte)(lun >> 56), b1 = (byte)(lun >> 48);
        if ((lun & 0x0000FFFFFFFFFFFFUL) != 0) return -1;
        return (b0 >> 6) switch
        {
            0 => b0 == 0 ? b1 : -1,
            1 => ((b0 & 0x3F) << 8) | b1,
            _ => -1,
        };
    }

    /// <summary>Encodes a LUN number as an 8-byte LUN field (peripheral addressing below 256, flat above).</summary>
    public static ulong EncodeLun(int lun) =>
        lun < 256 ? (ulong)lun << 48 : ((ulong)(0x40 | ((lun >> 8) & 0x3F)) << 56) | ((ulong)(lun & 0xFF) << 48);
}

/// <summary>Per-connection PDU limits and digests, as negotiated.</summary>
internal sealed class PduLimits
{
    /// <summary>Largest data segment this side accepts (our declared MaxRecvDataSegmentLength; 8 KiB during login).</summary>
    public int MaxRecvDataSegment = 8192;
    public bool HeaderDigest;
    public bool DataDigest;
}

/// <summary>Reads PDUs from a stream, enforcing lengths and digests (RFC 7143 §11.2).</summary>
internal static class PduReader
{
    /// <summary>Reads one PDU; null at a clean end of stream before any byte of a PDU.</summary>
    public static async ValueTask<Pdu?> ReadAsync(Stream stream, PduLimits limits, CancellationToken ct)
    {
        var pdu = new Pdu();
        if (!await FillAsync(stream, pdu.Bhs, allowEof: true, ct).ConfigureAwait(false)) return null;
        try
        {
            int ahs = pdu.TotalAhsLength;
            int dataLength = pdu.DataSegmentLength;
            if (dataLength > limits.MaxRecvDataSegment)
                throw new IscsiProtocolException($"data segment of {dataLength} bytes exceeds MaxRecvDataSegmentLength {limits.MaxRecvDataSegment} (opcode 0x{(byte)pdu.Opcode:x2})");
            uint crc = 0;
            if (limits.HeaderDigest) crc = Crc32C.Update(0xFFFFFFFFu, pdu.Bhs);
            if (ahs > 0)
            {
                pdu.Ahs = new byte[ahs]; // at most 1020 bytes
                await FillAsync(stream, pdu.Ahs, allowEof: false, ct).ConfigureAwait(false);
                if (limits.HeaderDigest) crc = Crc32C.Update(crc, pdu.Ahs);
            }
            var digest = new byte[4];
            if (limits.HeaderDigest)
            {
                await FillAsync(stream, digest, allowEof: false, ct).ConfigureAwait(false);
                if (BinaryPrimitives.ReadUInt32LittleEndian(digest) != ~crc)
                    throw new IscsiProtocolException($"header digest mismatch (opcode 0x{(byte)pdu.Opcode:x2})");
            }
            if (dataLength > 0)
            {
                pdu.AllocateData(dataLength);
                int padded = (dataLength + 3) & ~3;
                var buffer = System.Runtime.InteropServices.MemoryMarshal.AsMemory(pdu.DataMemory);
                await FillAsync(stream, buffer, allowEof: false, ct).ConfigureAwait(false);
                if (padded > dataLength) await FillAsync(stream, digest.AsMemory(0, padded - dataLength), allowEof: false, ct).ConfigureAwait(false);
                if (limits.DataDigest)
                {
                    await FillAsync(stream, digest, allowEof: false, ct).ConfigureAwait(false);
                    uint dc = Crc32C.Update(0xFFFFFFFFu, pdu.Data);
                    if (padded > dataLength) dc = Crc32C.Update(dc, new byte[padded - dataLength]);
                    if (BinaryPrimitives.ReadUInt32LittleEndian(digest) != ~dc)
                        throw new IscsiProtocolException($"data digest mismatch (opcode 0x{(byte)pdu.Opcode:x2}, {dataLength} bytes)");
                }
            }
            return pdu;
        }
        catch
        {
            pdu.Dispose();
            throw;
        }
    }

    private static async ValueTask<bool> FillAsync(Stream stream, Memory<byte> buffer, bool allowEof, CancellationToken ct)
    {
        int done = 0;
        while (done < buffer.Length)
        {
            int n = await stream.ReadAsync(buffer[done..], ct).ConfigureAwait(false);
            if (n == 0)
            {
                if (done == 0 && allowEof) return false;
                throw new IscsiProtocolException($"connection closed inside a PDU ({done} of {buffer.Length} bytes)");
            }
            done += n;
        }
        return true;
    }
}

/// <summary>Builds outgoing PDUs: header (+ digest), data, padding (+ digest), written under the connection's send lock.</summary>
internal sealed class PduWriter(Stream stream, PduLimits limits)
{
    private readonly SemaphoreSlim _lock = new(1, 1);
    private readonly byte[] _header = new byte[Pdu.BhsLength + 4];
    private readonly byte[] _trailer = new byte[8];
    private readonly List<ArraySegment<byte>> _gather = new(3);

    /// <summary>
    /// The connection's socket, when the stream is one: a large PDU then goes out in one gathering send (header,
    /// data and trailer in one sendmsg, one segment train) instead of a write per part.
    /// </summary>
    public Socket? Socket { get; set; }

    /// <summary>Maximum data segment the peer accepts (its declared MaxRecvDataSegmentLength).</summary>
    public int PeerMaxRecvDataSegment = 8192;

    public async ValueTask EnterAsync(CancellationToken ct) => await _lock.WaitAsync(ct).ConfigureAwait(false);
    public void Exit() => _lock.Release();

    /// <summary>Writes one PDU; the caller holds the lock (<see cref="EnterAsync"/>). <paramref name="bhs"/> gets its data length set here.</summary>
    public async ValueTask WriteLockedAsync(byte[] bhs, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        if (data.Length > 0xFFFFFF) throw new InvalidOperationException("data segment too long");
        bhs[4] = 0;
        bhs[5] = (byte)(data.Length >> 16); bhs[6] = (byte)(data.Length >> 8); bhs[7] = (byte)data.Length;
        bhs.AsSpan(0, Pdu.BhsLength).CopyTo(_header);
        int headerLength = Pdu.BhsLength;
        if (limits.HeaderDigest)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(_header.AsSpan(Pdu.BhsLength), Crc32C.Compute(_header.AsSpan(0, Pdu.BhsLength)));
            headerLength += 4;
        }
        int pad = (4 - (data.Length & 3)) & 3;
        int trailer = pad;
        _trailer.AsSpan().Clear();
        if (limits.DataDigest && data.Length > 0)
        {
            uint crc = Crc32C.Update(0xFFFFFFFFu, data.Span);
            if (pad > 0) crc = Crc32C.Update(crc, _trailer.AsSpan(0, pad));
            BinaryPrimitives.WriteUInt32LittleEndian(_trailer.AsSpan(pad), ~crc);
            trailer += 4;
        }
        if (data.Length <= 16384)
        {
            // Small PDUs go out in one write (one segment with Nagle off).
            byte[] one = ArrayPool<byte>.Shared.Rent(headerLength + data.Length + trailer);
            try
            {
                _header.AsSpan(0, headerLength).CopyTo(one);
                data.Span.CopyTo(one.AsSpan(headerLength));
                _trailer.AsSpan(0, trailer).CopyTo(one.AsSpan(headerLength + data.Length));
                await stream.WriteAsync(one.AsMemory(0, headerLength + data.Length + trailer), ct).ConfigureAwait(false);
            }
            finally { ArrayPool<byte>.Shared.Return(one); }
            return;
        }
        if (Socket is { } socket && MemoryMarshal.TryGetArray(data, out var segment))
        {
            // Not cancellable once started: a PDU is sent whole or the connection is closed (Close disposes the
            // socket, which fails the send), so the initiator never sees half a PDU followed by another.
            _gather.Clear();
            _gather.Add(new ArraySegment<byte>(_header, 0, headerLength));
            _gather.Add(segment);
            if (trailer > 0) _gather.Add(new ArraySegment<byte>(_trailer, 0, trailer));
            int total = headerLength + data.Length + trailer;
            int sent = await socket.SendAsync(_gather, SocketFlags.None).ConfigureAwait(false);
            if (sent == total) return;
            // A short send (not seen on a blocking-semantics stream socket, but allowed): the rest through the stream.
            await WriteRestAsync(sent, headerLength, data, trailer, ct).ConfigureAwait(false);
            return;
        }
        await stream.WriteAsync(_header.AsMemory(0, headerLength), ct).ConfigureAwait(false);
        await stream.WriteAsync(data, ct).ConfigureAwait(false);
        if (trailer > 0) await stream.WriteAsync(_trailer.AsMemory(0, trailer), ct).ConfigureAwait(false);
    }

    private async ValueTask WriteRestAsync(int sent, int headerLength, ReadOnlyMemory<byte> data, int trailer, CancellationToken ct)
    {
        if (sent < headerLength) await stream.WriteAsync(_header.AsMemory(sent, headerLength - sent), ct).ConfigureAwait(false);
        int fromData = Math.Max(0, sent - headerLength);
        if (fromData < data.Length) await stream.WriteAsync(data[fromData..], ct).ConfigureAwait(false);
        int fromTrailer = Math.Max(0, sent - headerLength - data.Length);
        if (fromTrailer < trailer) await stream.WriteAsync(_trailer.AsMemory(fromTrailer, trailer - fromTrailer), ct).ConfigureAwait(false);
    }

    public async ValueTask WriteAsync(byte[] bhs, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        await EnterAsync(ct).ConfigureAwait(false);
        try { await WriteLockedAsync(bhs, data, ct).ConfigureAwait(false); }
        finally { Exit(); }
    }

    public static byte[] NewBhs(Opcode op, byte flags)
    {
        var b = new byte[Pdu.BhsLength];
        b[0] = (byte)op;
        b[1] = flags;
        return b;
    }

    public static void Put32(byte[] bhs, int offset, uint value) => BinaryPrimitives.WriteUInt32BigEndian(bhs.AsSpan(offset), value);
    public static void Put16(byte[] bhs, int offset, ushort value) => BinaryPrimitives.WriteUInt16BigEndian(bhs.AsSpan(offset), value);
    public static void Put64(byte[] bhs, int offset, ulong value) => BinaryPrimitives.WriteUInt64BigEndian(bhs.AsSpan(offset), value);
}
