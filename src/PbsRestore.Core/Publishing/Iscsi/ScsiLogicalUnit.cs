using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace PbsRestore.Publishing.Iscsi;

/// <summary>SCSI sense data (SPC-4 §4.5): key, additional sense code and qualifier.</summary>
internal readonly record struct Sense(byte Key, byte Asc, byte Ascq)
{
    public const byte NotReady = 0x02, MediumError = 0x03, IllegalRequest = 0x05, UnitAttention = 0x06,
        DataProtect = 0x07, AbortedCommand = 0x0B, Miscompare = 0x0E;

    public static readonly Sense InvalidOpcode = new(IllegalRequest, 0x20, 0x00);
    public static readonly Sense LbaOutOfRange = new(IllegalRequest, 0x21, 0x00);
    public static readonly Sense InvalidFieldInCdb = new(IllegalRequest, 0x24, 0x00);
    public static readonly Sense LunNotSupported = new(IllegalRequest, 0x25, 0x00);
    public static readonly Sense InvalidFieldInParameterList = new(IllegalRequest, 0x26, 0x00);
    public static readonly Sense ParameterListLengthError = new(IllegalRequest, 0x1A, 0x00);
    public static readonly Sense SavingParametersNotSupported = new(IllegalRequest, 0x39, 0x00);
    public static readonly Sense WriteProtected = new(DataProtect, 0x27, 0x00);
    public static readonly Sense UnrecoveredReadError = new(MediumError, 0x11, 0x00);
    public static readonly Sense WriteError = new(MediumError, 0x0C, 0x00);
    public static readonly Sense LunNotReady = new(NotReady, 0x04, 0x00);
    public static readonly Sense MiscompareDuringVerify = new(Miscompare, 0x1D, 0x00);
    public static readonly Sense DataPhaseError = new(AbortedCommand, 0x4B, 0x00);

    /// <summary>Fixed-format sense data (response code 70h, 18 bytes).</summary>
    public byte[] ToFixedFormat()
    {
        var s = new byte[18];
        s[0] = 0x70;
        s[2] = Key;
        s[7] = 10;
        s[12] = Asc;
        s[13] = Ascq;
        return s;
    }

    /// <summary>Maps a block device failure to sense data (the seam's documented mapping).</summary>
    public static Sense From(BlockDeviceException e, bool write) => e.Error switch
    {
        BlockDeviceError.WriteProtected => WriteProtected,
        BlockDeviceError.OutOfRange => LbaOutOfRange,
        BlockDeviceError.NotReady => LunNotReady,
        _ => write ? WriteError : UnrecoveredReadError,
    };
}

/// <summary>What a decoded CDB asks the transport to do next.</summary>
internal enum PlanKind { Done, Read, Write, NeedsDataOut }

/// <summary>
/// The outcome of decoding a CDB: finished (GOOD with optional data-in, or CHECK CONDITION), a read or write of
/// <see cref="Length"/> bytes at <see cref="Offset"/> for the transport to stream, or a parameter list of
/// <see cref="Length"/> bytes to collect and hand to <see cref="ScsiLogicalUnit.CompleteDataOutAsync"/>.
/// </summary>
internal sealed class ScsiPlan
{
    public PlanKind Kind;
    public byte[]? DataIn;
    public Sense? Sense;
    public long Offset;
    public long Length;
    public bool ForceUnitAccess;
    public bool TaskSetFull;

    public static ScsiPlan Good(byte[]? data = null) => new() { Kind = PlanKind.Done, DataIn = data };
    public static ScsiPlan Check(Sense sense) => new() { Kind = PlanKind.Done, Sense = sense };
}

/// <summary>
/// SBC-3/SPC-4 block commands over one <see cref="IBlockDevice"/>: the commands Windows and Linux initiators send.
/// Everything else gets CHECK CONDITION, ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE.
/// </summary>
internal sealed class ScsiLogicalUnit
{
    public const int MaxTransferBytes = 8 << 20;
    public const int MaxUnmapDescriptors = 256;
    public const int MaxParameterList = 64 * 1024;

    private readonly IBlockDevice _device;
    private readonly string _targetName;
    private readonly byte[] _naa;

    public ScsiLogicalUnit(IscsiLun lun, string targetName)
    {
        Lun = lun;
        _device = lun.Device;
        _targetName = targetName;
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes($"{targetName}/{lun.Number}/{lun.Name}"));
        Serial = lun.SerialNumber ?? Convert.ToHexString(hash, 0, 8).ToLowerInvariant();
        _naa = hash[..8];
        _naa[0] = (byte)(0x30 | (_naa[0] & 0x0F)); // NAA 3h: locally assigned (SPC-4 §7.8.6.6.4)
    }

    public IscsiLun Lun { get; }

    // Per-LUN counters (IscsiTarget.LunCounters); updated by the connections with Interlocked.
    internal long Commands, BytesRead, BytesWritten, DeviceErrors;

    public IscsiLunCounters Snapshot() => new(Lun.Number, Interlocked.Read(ref Commands), Interlocked.Read(ref BytesRead),
        Interlocked.Read(ref BytesWritten), Interlocked.Read(ref DeviceErrors));
    public string Serial { get; }
    public IBlockDevice Device => _device;
    private long Blocks => _device.Length / _device.BlockSize;

    /// <summary>GET LBA STATUS parameter data: up to <paramref name="max"/> descriptors of block runs from <paramref name="lba"/>.</summary>
    private byte[] LbaStatus(long lba, int max)
    {
        int bs = _device.BlockSize;
        var runs = new List<(long Lba, long Blocks, bool Deallocated)>();
        // Bounded work per command: a shorter answer is allowed (the initiator asks again from where it ends).
        for (int calls = 0; runs.Count < max && lba < Blocks && calls < 256; calls++)
        {
            var extent = _device.ExtentAt(lba * bs);
            // A run is whole blocks of one state; a block that is part one, part the other counts as mapped.
            long blocks = extent.Length / bs;
            bool deallocated = extent.Deallocated && blocks > 0;
            blocks = Math.Clamp(blocks, 1, Math.Min(uint.MaxValue, Blocks - lba));
            if (runs.Count > 0 && runs[^1].Deallocated == deallocated && runs[^1].Blocks + blocks <= uint.MaxValue)
                runs[^1] = (runs[^1].Lba, runs[^1].Blocks + blocks, deallocated);
            else
                runs.Add((lba, blocks, deallocated));
            lba += blocks;
        }
        var d = new byte[8 + 16 * runs.Count];
        BinaryPrimitives.WriteUInt32BigEndian(d, (uint)(d.Length - 4));
        for (int i = 0; i < runs.Count; i++)
        {
            var at = d.AsSpan(8 + 16 * i);
            BinaryPrimitives.WriteUInt64BigEndian(at, (ulong)runs[i].Lba);
            BinaryPrimitives.WriteUInt32BigEndian(at[8..], (uint)runs[i].Blocks);
            at[12] = runs[i].Deallocated ? (byte)0x01 : (byte)0x00;
        }
        return d;
    }
    private int MaxTransferBlocks => MaxTransferBytes / _device.BlockSize;

    /// <summary>INQUIRY/REPORT LUNS answers for a LUN the target does not have (SPC-4 §6.6.2: peripheral qualifier 3).</summary>
    public static ScsiPlan ForMissingLun(ReadOnlySpan<byte> cdb, IReadOnlyList<int> luns)
    {
        return cdb[0] switch
        {
            0x12 when (cdb[1] & 1) == 0 => Allocate(StandardInquiry(0x7F), cdb[3] << 8 | cdb[4]),
            0xA0 => ReportLuns(cdb, luns),
            0x03 => RequestSense(cdb),
            _ => ScsiPlan.Check(Sense.LunNotSupported),
        };
    }

    /// <summary>Decodes and, for commands without bulk data, executes a CDB.</summary>
    public async ValueTask<ScsiPlan> PrepareAsync(ReadOnlyMemory<byte> cdbMemory, IReadOnlyList<int> luns, CancellationToken ct)
    {
        var cdb = cdbMemory.Span;
        switch (cdb[0])
        {
            case 0x00: // TEST UNIT READY
                return ScsiPlan.Good();
            case 0x03: // REQUEST SENSE
                return RequestSense(cdb);
            case 0x12: // INQUIRY
                return Inquiry(cdb);
            case 0x25: // READ CAPACITY (10)
                {
                    var d = new byte[8];
                    BinaryPrimitives.WriteUInt32BigEndian(d, (uint)Math.Min(Blocks - 1, 0xFFFFFFFF));
                    BinaryPrimitives.WriteUInt32BigEndian(d.AsSpan(4), (uint)_device.BlockSize);
                    return ScsiPlan.Good(d);
                }
            case 0x9E when (cdb[1] & 0x1F) == 0x10: // READ CAPACITY (16)
                {
                    var d = new byte[32];
                    BinaryPrimitives.WriteUInt64BigEndian(d, (ulong)(Blocks - 1));
                    BinaryPrimitives.WriteUInt32BigEndian(d.AsSpan(8), (uint)_device.BlockSize);
                    d[14] = 0x80 | 0x40; // LBPME: UNMAP supported; LBPRZ: unmapped blocks read as zeros
                    return Allocate(d, BinaryPrimitives.ReadUInt32BigEndian(cdb[10..]));
                }
            case 0x9E when (cdb[1] & 0x1F) == 0x12: // GET LBA STATUS (16)
                {
                    // We advertise logical block provisioning (LBPME, LBPRZ), so initiators ask: runs of mapped
                    // (SBC-4 0h) and deallocated (1h: zero chunks of the backup, unmapped blocks) blocks from the start
                    // LBA, as many descriptors as the allocation length holds (at most 64 per answer).
                    ulong start = BinaryPrimitives.ReadUInt64BigEndian(cdb[2..]);
                    uint alloc = BinaryPrimitives.ReadUInt32BigEndian(cdb[10..]);
                    if (start >= (ulong)Blocks) return ScsiPlan.Check(Sense.LbaOutOfRange);
                    return Allocate(LbaStatus((long)start, (int)Math.Clamp((alloc - 8L) / 16, 1, 64)), alloc);
                }
            case 0x1A: // MODE SENSE (6)
                return ModeSense(cdb, ten: false);
            case 0x5A: // MODE SENSE (10)
                return ModeSense(cdb, ten: true);
            case 0xA0: // REPORT LUNS
                return ReportLuns(cdb, luns);
            case 0x35: // SYNCHRONIZE CACHE (10)
            case 0x91: // SYNCHRONIZE CACHE (16)
                {
                    bool sixteen = cdb[0] == 0x91;
                    long lba = sixteen ? (long)BinaryPrimitives.ReadUInt64BigEndian(cdb[2..]) : BinaryPrimitives.ReadUInt32BigEndian(cdb[2..]);
                    long count = sixteen ? BinaryPrimitives.ReadUInt32BigEndian(cdb[10..]) : BinaryPrimitives.ReadUInt16BigEndian(cdb[7..]);
                    if (!InRange(lba, count)) return ScsiPlan.Check(Sense.LbaOutOfRange);
                    return await DeviceCallAsync(() => _device.FlushAsync(ct), write: true).ConfigureAwait(false);
                }
            case 0x08 or 0x28 or 0xA8 or 0x88: // READ (6/10/12/16)
            case 0x0A or 0x2A or 0xAA or 0x8A: // WRITE (6/10/12/16)
            case 0x2E or 0xAE or 0x8E: // WRITE AND VERIFY (10/12/16)
                return ReadWrite(cdb);
            case 0x2F or 0xAF or 0x8F: // VERIFY (10/12/16)
                return await VerifyAsync(cdbMemory, ct).ConfigureAwait(false);
            case 0x42: // UNMAP
                {
                    if ((cdb[1] & 0x01) != 0) return ScsiPlan.Check(Sense.InvalidFieldInCdb); // ANCHOR
                    int length = BinaryPrimitives.ReadUInt16BigEndian(cdb[7..]);
                    if (_device.ReadOnly) return ScsiPlan.Check(Sense.WriteProtected);
                    if (length == 0) return ScsiPlan.Good();
                    if (length < 8) return ScsiPlan.Check(Sense.ParameterListLengthError);
                    return new ScsiPlan { Kind = PlanKind.NeedsDataOut, Length = length };
                }
            default:
                return ScsiPlan.Check(Sense.InvalidOpcode);
        }
    }

    /// <summary>Finishes a command whose parameter list (data-out) has arrived.</summary>
    public async ValueTask<ScsiPlan> CompleteDataOutAsync(ReadOnlyMemory<byte> cdbMemory, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        byte op = cdbMemory.Span[0];
        if (op == 0x42) return await UnmapAsync(data, ct).ConfigureAwait(false);
        if (op is 0x2F or 0xAF or 0x8F) return await CompareAsync(cdbMemory, data, ct).ConfigureAwait(false);
        return ScsiPlan.Check(Sense.InvalidOpcode);
    }

    private bool InRange(long lba, long count) => lba >= 0 && count >= 0 && lba <= Blocks && count <= Blocks - lba;

    /// <summary>
    /// The LBA and transfer length of a block command, by its CDB's group code (SBC: 6, 10, 12 or 16 bytes; READ,
    /// WRITE, WRITE AND VERIFY, VERIFY and COMPARE share these layouts). A 16-byte LBA no disk can have gives null.
    /// </summary>
    private static (long? Lba, long Count) LbaAndLength(ReadOnlySpan<byte> cdb) => (cdb[0] >> 5) switch
    {
        0 => (((cdb[1] & 0x1F) << 16) | (cdb[2] << 8) | cdb[3], cdb[4] == 0 ? 256 : cdb[4]),
        1 => (BinaryPrimitives.ReadUInt32BigEndian(cdb[2..]), BinaryPrimitives.ReadUInt16BigEndian(cdb[7..])),
        5 => (BinaryPrimitives.ReadUInt32BigEndian(cdb[2..]), BinaryPrimitives.ReadUInt32BigEndian(cdb[6..])),
        _ => BinaryPrimitives.ReadUInt64BigEndian(cdb[2..]) is var l && l <= long.MaxValue
            ? ((long)l, BinaryPrimitives.ReadUInt32BigEndian(cdb[10..]))
            : (null, 0),
    };

    private ScsiPlan ReadWrite(ReadOnlySpan<byte> cdb)
    {
        byte op = cdb[0];
        var (at, count) = LbaAndLength(cdb);
        if (at is not { } lba) return ScsiPlan.Check(Sense.LbaOutOfRange);
        byte flags = op is 0x08 or 0x0A ? (byte)0 : cdb[1]; // a 6-byte CDB has no flags: byte 1 holds the LBA's top bits
        bool write = op is 0x0A or 0x2A or 0xAA or 0x8A or 0x2E or 0xAE or 0x8E;
        if ((flags & 0xE0) != 0) return ScsiPlan.Check(Sense.InvalidFieldInCdb); // RDPROTECT/WRPROTECT: no protection information
        if (write && _device.ReadOnly) return ScsiPlan.Check(Sense.WriteProtected);
        if (!InRange(lba, count)) return ScsiPlan.Check(Sense.LbaOutOfRange);
        if (count > MaxTransferBlocks) return ScsiPlan.Check(Sense.InvalidFieldInCdb);
        if (count == 0) return ScsiPlan.Good();
        return new ScsiPlan
        {
            Kind = write ? PlanKind.Write : PlanKind.Read,
            Offset = lba * _device.BlockSize,
            Length = count * _device.BlockSize,
            ForceUnitAccess = (flags & 0x08) != 0 || op is 0x2E or 0xAE or 0x8E,
        };
    }

    private async ValueTask<ScsiPlan> VerifyAsync(ReadOnlyMemory<byte> cdbMemory, CancellationToken ct)
    {
        var (lba, count, bytchk, bad) = VerifyFields(cdbMemory.Span);
        if (bad) return ScsiPlan.Check(Sense.InvalidFieldInCdb);
        if (!InRange(lba, count)) return ScsiPlan.Check(Sense.LbaOutOfRange);
        if (count > MaxTransferBlocks) return ScsiPlan.Check(Sense.InvalidFieldInCdb);
        if (count == 0) return ScsiPlan.Good();
        if (bytchk == 1) return new ScsiPlan { Kind = PlanKind.NeedsDataOut, Length = count * _device.BlockSize };
        // BYTCHK 0: a medium verification: read the blocks (an archive-backed disk verifies every chunk it reads).
        var buffer = new byte[count * _device.BlockSize];
        return await DeviceCallAsync(() => _device.ReadAsync(lba * _device.BlockSize, buffer, ct), write: false).ConfigureAwait(false);
    }

    private static (long Lba, long Count, int ByteCheck, bool Bad) VerifyFields(ReadOnlySpan<byte> cdb)
    {
        int bytchk = (cdb[1] >> 1) & 0x03;
        bool bad = (cdb[1] & 0xE0) != 0 || bytchk is 2 or 3; // VRPROTECT; BYTCHK 11b (one block compared to all) unsupported
        var (lba, count) = LbaAndLength(cdb);
        return (lba ?? long.MaxValue, lba is null ? 0 : count, bytchk, bad); // an impossible LBA is out of range
    }

    private async ValueTask<ScsiPlan> CompareAsync(ReadOnlyMemory<byte> cdb, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        var (lba, count, _, _) = VerifyFields(cdb.Span);
        var current = new byte[count * _device.BlockSize];
        var plan = await DeviceCallAsync(() => _device.ReadAsync(lba * _device.BlockSize, current, ct), write: false).ConfigureAwait(false);
        if (plan.Sense is not null) return plan;
        return current.AsSpan().SequenceEqual(data.Span) ? ScsiPlan.Good() : ScsiPlan.Check(Sense.MiscompareDuringVerify);
    }

    private async ValueTask<ScsiPlan> UnmapAsync(ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        var p = data.Span;
        if (p.Length < 8) return ScsiPlan.Check(Sense.ParameterListLengthError);
        int descriptorBytes = BinaryPrimitives.ReadUInt16BigEndian(p[2..]);
        if (descriptorBytes > p.Length - 8 || descriptorBytes % 16 != 0)
            return ScsiPlan.Check(descriptorBytes > p.Length - 8 ? Sense.ParameterListLengthError : Sense.InvalidFieldInParameterList);
        int n = descriptorBytes / 16;
        if (n > MaxUnmapDescriptors) return ScsiPlan.Check(Sense.InvalidFieldInParameterList);
        var ranges = new List<(long, long)>(n);
        for (int i = 0; i < n; i++)
        {
            var d = p.Slice(8 + 16 * i, 16);
            ulong lba = BinaryPrimitives.ReadUInt64BigEndian(d);
            uint count = BinaryPrimitives.ReadUInt32BigEndian(d[8..]);
            if (lba > long.MaxValue || !InRange((long)lba, count)) return ScsiPlan.Check(Sense.LbaOutOfRange);
            if (count > MaxTransferBlocks * 16L) return ScsiPlan.Check(Sense.InvalidFieldInParameterList);
            if (count > 0) ranges.Add(((long)lba, count));
        }
        foreach (var (lba, count) in ranges)
        {
            var r = await DeviceCallAsync(() => _device.UnmapAsync(lba * _device.BlockSize, count * _device.BlockSize, ct), write: true).ConfigureAwait(false);
            if (r.Sense is not null) return r;
        }
        return ScsiPlan.Good();
    }

    private async ValueTask<ScsiPlan> DeviceCallAsync(Func<ValueTask> call, bool write)
    {
        try
        {
            await call().ConfigureAwait(false);
            return ScsiPlan.Good();
        }
        catch (BlockDeviceException e)
        {
            Interlocked.Increment(ref DeviceErrors);
            return ScsiPlan.Check(Sense.From(e, write));
        }
    }

    private static ScsiPlan RequestSense(ReadOnlySpan<byte> cdb)
    {
        // Autosense carries every error; nothing is pending here: NO SENSE.
        bool descriptor = (cdb[1] & 0x01) != 0;
        byte[] d = descriptor ? [0x72, 0, 0, 0, 0, 0, 0, 0] : new Sense(0, 0, 0).ToFixedFormat();
        return Allocate(d, cdb[4]);
    }

    private ScsiPlan Inquiry(ReadOnlySpan<byte> cdb)
    {
        int alloc = (cdb[3] << 8) | cdb[4];
        bool evpd = (cdb[1] & 0x01) != 0;
        if ((cdb[1] & 0xFE) != 0) return ScsiPlan.Check(Sense.InvalidFieldInCdb); // CMDDT (obsolete) and reserved bits
        if (!evpd) return cdb[2] != 0 ? ScsiPlan.Check(Sense.InvalidFieldInCdb) : Allocate(StandardInquiry(0x00), alloc);
        byte[]? page = cdb[2] switch
        {
            0x00 => Vpd(0x00, [0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2]),
            0x80 => Vpd(0x80, Encoding.ASCII.GetBytes(Serial)),
            0x83 => Vpd(0x83, Identification()),
            0xB0 => Vpd(0xB0, BlockLimits()),
            0xB1 => Vpd(0xB1, BlockCharacteristics()),
            0xB2 => Vpd(0xB2, [0x00, 0x80 | 0x04, 0x02, 0x00]), // LBPU, LBPRZ; thin provisioned
            _ => null,
        };
        return page is null ? ScsiPlan.Check(Sense.InvalidFieldInCdb) : Allocate(page, alloc);
    }

    private static byte[] StandardInquiry(byte peripheral)
    {
        var d = new byte[66];
        d[0] = peripheral;
        d[2] = 0x06; // SPC-4
        d[3] = 0x12; // HISUP, response data format 2
        d[4] = (byte)(d.Length - 5);
        d[7] = 0x02; // CMDQUE
        Encoding.ASCII.GetBytes("PBSRSTOR").CopyTo(d, 8);
        Encoding.ASCII.GetBytes("Backup Image    ").CopyTo(d, 16);
        Encoding.ASCII.GetBytes("0001").CopyTo(d, 32);
        // Version descriptors (SPC-4 §6.6.2 table): SAM-5, iSCSI, SPC-4, SBC-3.
        ushort[] versions = [0x00A0, 0x0960, 0x0460, 0x04C0];
        for (int i = 0; i < versions.Length; i++) BinaryPrimitives.WriteUInt16BigEndian(d.AsSpan(58 + 2 * i), versions[i]);
        return d;
    }

    private static byte[] Vpd(byte code, byte[] body)
    {
        var d = new byte[4 + body.Length];
        d[1] = code;
        BinaryPrimitives.WriteUInt16BigEndian(d.AsSpan(2), (ushort)body.Length);
        body.CopyTo(d, 4);
        return d;
    }

    private byte[] Identification()
    {
        var list = new List<byte>();
        void Designator(byte protocolAndCodeSet, byte piv_assoc_type, byte[] value)
        {
            list.Add(protocolAndCodeSet);
            list.Add(piv_assoc_type);
            list.Add(0);
            list.Add((byte)value.Length);
            list.AddRange(value);
        }
        Designator(0x01, 0x03, _naa); // binary, LU, NAA
        var t10 = new List<byte>(Encoding.ASCII.GetBytes("PBSRSTOR"));
        t10.AddRange(Encoding.ASCII.GetBytes(Serial));
        Designator(0x02, 0x01, [.. t10]); // ASCII, LU, T10 vendor ID
        // The target port (relative port 1) and the target device's SCSI name string, for iSCSI (protocol 5, PIV).
        Designator(0x51, 0x94, [0, 0, 0, 1]);
        byte[] name = Encoding.UTF8.GetBytes(_targetName);
        int padded = (name.Length + 1 + 3) & ~3;
        var nameField = new byte[padded];
        name.CopyTo(nameField, 0);
        Designator(0x53, 0xA8, nameField);
        return [.. list];
    }

    private byte[] BlockLimits()
    {
        var d = new byte[0x3C];
        // Offsets below are page offsets minus the 4-byte header.
        BinaryPrimitives.WriteUInt16BigEndian(d.AsSpan(2), (ushort)Math.Max(1, 4096 / _device.BlockSize)); // optimal granularity
        BinaryPrimitives.WriteUInt32BigEndian(d.AsSpan(4), (uint)MaxTransferBlocks);
        BinaryPrimitives.WriteUInt32BigEndian(d.AsSpan(8), (uint)Math.Min(MaxTransferBlocks, (1 << 20) / _device.BlockSize));
        BinaryPrimitives.WriteUInt32BigEndian(d.AsSpan(16), (uint)(MaxTransferBlocks * 16L));      // max unmap LBA count
        BinaryPrimitives.WriteUInt32BigEndian(d.AsSpan(20), MaxUnmapDescriptors);                  // max unmap descriptors
        BinaryPrimitives.WriteUInt32BigEndian(d.AsSpan(24), (uint)Math.Max(1, 4096 / _device.BlockSize)); // optimal unmap granularity
        return d;
    }

    private static byte[] BlockCharacteristics()
    {
        var d = new byte[0x3C];
        BinaryPrimitives.WriteUInt16BigEndian(d, 1); // non-rotating medium
        return d;
    }

    private ScsiPlan ModeSense(ReadOnlySpan<byte> cdb, bool ten)
    {
        bool dbd = (cdb[1] & 0x08) != 0;
        bool llbaa = ten && (cdb[1] & 0x10) != 0;
        int pc = cdb[2] >> 6;
        int page = cdb[2] & 0x3F;
        int subpage = cdb[3];
        int alloc = ten ? BinaryPrimitives.ReadUInt16BigEndian(cdb[7..]) : cdb[4];
        if (pc == 3) return ScsiPlan.Check(Sense.SavingParametersNotSupported);
        if (subpage != 0 && !(subpage == 0xFF && page == 0x3F)) return ScsiPlan.Check(Sense.InvalidFieldInCdb);
        var pages = new List<byte>();
        bool changeable = pc == 1;
        void Caching()
        {
            var p = new byte[20];
            p[0] = 0x08; p[1] = 18;
            if (!changeable) p[2] = _device.ReadOnly ? (byte)0 : (byte)0x04; // WCE: writes reach a cache; SYNCHRONIZE CACHE flushes
            pages.AddRange(p);
        }
        void Control()
        {
            var p = new byte[12];
            p[0] = 0x0A; p[1] = 10;
            if (!changeable)
            {
                p[2] = 0x00;     // TST 0, D_SENSE 0: fixed-format sense
                p[3] = 0x10;     // queue algorithm modifier 1: unrestricted reordering
                p[8] = 0xFF; p[9] = 0xFF; // busy timeout period: unlimited
            }
            pages.AddRange(p);
        }
        switch (page)
        {
            case 0x08: Caching(); break;
            case 0x0A: Control(); break;
            case 0x3F: Caching(); Control(); break;
            default: return ScsiPlan.Check(Sense.InvalidFieldInCdb);
        }
        byte deviceSpecific = (byte)((_device.ReadOnly ? 0x80 : 0) | 0x10); // WP, DPOFUA
        byte[] block = [];
        if (!dbd)
        {
            long blocks = Blocks;
            if (llbaa)
            {
                block = new byte[16];
                BinaryPrimitives.WriteUInt64BigEndian(block, (ulong)blocks);
                BinaryPrimitives.WriteUInt32BigEndian(block.AsSpan(12), (uint)_device.BlockSize);
            }
            else
            {
                block = new byte[8];
                BinaryPrimitives.WriteUInt32BigEndian(block, (uint)Math.Min(blocks, 0xFFFFFFFF));
                block[0] = 0; // density code; the block count above uses bytes 1..3 when small
                if (blocks > 0xFFFFFF) { block[1] = 0xFF; block[2] = 0xFF; block[3] = 0xFF; }
                else { block[1] = (byte)(blocks >> 16); block[2] = (byte)(blocks >> 8); block[3] = (byte)blocks; }
                BinaryPrimitives.WriteUInt32BigEndian(block.AsSpan(4), (uint)_device.BlockSize);
                block[4] = 0;
            }
        }
        byte[] d;
        if (ten)
        {
            d = new byte[8 + block.Length + pages.Count];
            BinaryPrimitives.WriteUInt16BigEndian(d, (ushort)(d.Length - 2));
            d[3] = deviceSpecific;
            if (llbaa && block.Length == 16) d[4] = 0x01;
            BinaryPrimitives.WriteUInt16BigEndian(d.AsSpan(6), (ushort)block.Length);
            block.CopyTo(d, 8);
            pages.CopyTo(d, 8 + block.Length);
        }
        else
        {
            d = new byte[4 + block.Length + pages.Count];
            d[0] = (byte)(d.Length - 1);
            d[2] = deviceSpecific;
            d[3] = (byte)block.Length;
            block.CopyTo(d, 4);
            pages.CopyTo(d, 4 + block.Length);
        }
        return Allocate(d, alloc);
    }

    private static ScsiPlan ReportLuns(ReadOnlySpan<byte> cdb, IReadOnlyList<int> luns)
    {
        byte select = cdb[2];
        int alloc = (int)Math.Min(BinaryPrimitives.ReadUInt32BigEndian(cdb[6..]), int.MaxValue);
        if (alloc < 16) return ScsiPlan.Check(Sense.InvalidFieldInCdb); // SPC-4 §6.33: allocation length below 16
        if (select is not (0x00 or 0x02)) return select == 0x01 ? Allocate(new byte[8], alloc) : ScsiPlan.Check(Sense.InvalidFieldInCdb);
        var d = new byte[8 + 8 * luns.Count];
        BinaryPrimitives.WriteUInt32BigEndian(d, (uint)(8 * luns.Count));
        for (int i = 0; i < luns.Count; i++) BinaryPrimitives.WriteUInt64BigEndian(d.AsSpan(8 + 8 * i), Pdu.EncodeLun(luns[i]));
        return Allocate(d, alloc);
    }

    /// <summary>Returns at most the allocation length of <paramref name="data"/> (SPC-4 §4.2.5.6).</summary>
    private static ScsiPlan Allocate(byte[] data, long allocation) =>
        ScsiPlan.Good(allocation >= data.Length ? data : data[..(int)allocation]);
}
