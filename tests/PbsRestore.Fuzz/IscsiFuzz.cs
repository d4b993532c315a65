using System.Buffers.Binary;
using System.Text;
using PbsRestore.Publishing;
using PbsRestore.Publishing.Iscsi;

namespace PbsRestore.Fuzz;

/// <summary>
/// Fuzz targets for the iSCSI target (issue 15 item 5): "iscsipdu" (the PDU parser, with and without digests),
/// "iscsilogin" (login negotiation, one Login Request per record) and "iscsisession" (a whole connection: the input
/// is the byte stream an initiator sends; the target's answers are discarded). Contract: protocol errors are
/// expected; any other exception, or an Error-level diagnostic (an exception the connection caught that is not a
/// protocol or I/O error), is a crash. Also compiled into the xunit project to replay saved regressions.
/// </summary>
public static class IscsiFuzz
{
    public static readonly string[] Targets = ["iscsipdu", "iscsilogin", "iscsisession"];
    public const string TargetName = "iqn.2024-01.org.pbsrestore:fuzz";
    public const string Initiator = "iqn.2024-01.org.pbsrestore.fuzz:initiator";

    private static readonly Lazy<(IscsiTarget Target, List<string> Errors)> Shared = new(() =>
    {
        var errors = new List<string>();
        var options = new IscsiTargetOptions
        {
            TargetName = TargetName,
            Luns = [new IscsiLun(0, "fuzz", new MemoryBlockDevice(1 << 20)), new IscsiLun(3, "ro", new MemoryBlockDevice(64 << 10, readOnly: true))],
            LoginTimeout = TimeSpan.FromSeconds(5),
            Log = d => { if (d.Level == IscsiDiagnosticLevel.Error) lock (errors) errors.Add(d.Message); },
        };
        return (IscsiTarget.StartAsync(options).GetAwaiter().GetResult(), errors);
    });

    /// <summary>Runs one input; returns the number of expected (protocol) errors; throws on a crash.</summary>
    public static int Run(string target, byte[] input)
    {
        switch (target)
        {
            case "iscsipdu":
                {
                    int errors = 0;
                    foreach (var digests in new[] { false, true })
                    {
                        var limits = new PduLimits { HeaderDigest = digests, DataDigest = digests, MaxRecvDataSegment = 65536 };
                        var ms = new MemoryStream(input, writable: false);
                        try
                        {
                            while (true)
                            {
                                using var pdu = PduReader.ReadAsync(ms, limits, default).AsTask().GetAwaiter().GetResult();
                                if (pdu is null) break;
                                _ = (pdu.Opcode, pdu.Lun, Pdu.DecodeLun(pdu.Lun), pdu.InitiatorTaskTag, pdu.Data.Length);
                                _ = TextKeys.Parse(pdu.Data, out _);
                            }
                        }
                        catch (IscsiProtocolException) { errors++; }
                    }
                    return errors;
                }
            case "iscsilogin":
                {
                    using var chap = new IscsiChapSecret("fuzz-user", "fuzz-secret-123");
                    int errors = 0;
                    foreach (var withChap in new[] { false, true })
                    {
                        var n = new LoginNegotiator(new IscsiTargetOptions
                        {
                            TargetName = TargetName,
                            Luns = [new IscsiLun(0, "fuzz", new MemoryBlockDevice(4096))],
                            Chap = withChap ? chap : null,
                            AllowedInitiators = withChap ? [Initiator] : null,
                        });
                        // Records: [flags: T C CSG NSG as in the BHS][version-min][u16 length][text]...
                        var span = input.AsSpan();
                        while (span.Length >= 4)
                        {
                            byte flags = span[0];
                            int length = Math.Min(BinaryPrimitives.ReadUInt16BigEndian(span[2..]), span.Length - 4);
                            var req = new LoginRequest((flags & 0x80) != 0, (flags & 0x40) != 0, (flags >> 2) & 3, flags & 3, 0, span[1], 1, 0);
                            var answer = n.Step(req, span.Slice(4, length));
                            span = span[(4 + length)..];
                            if (answer.Failed) { errors++; break; }
                            if (answer.Text.Length > 8192) throw new InvalidOperationException($"login answer of {answer.Text.Length} bytes");
                        }
                    }
                    return errors;
                }
            case "iscsisession":
                {
                    var (t, crashes) = Shared.Value;
                    lock (crashes) crashes.Clear();
                    long before = t.Counters.ProtocolErrors + t.Counters.LoginFailures;
                    using var stream = new InputOnlyStream(input);
                    t.RunConnectionAsync(stream).GetAwaiter().GetResult();
                    lock (crashes)
                        if (crashes.Count > 0) throw new InvalidOperationException("the connection failed unexpectedly: " + string.Join(" | ", crashes));
                    return (int)Math.Min(int.MaxValue, t.Counters.ProtocolErrors + t.Counters.LoginFailures - before);
                }
            default:
                throw new ArgumentException($"unknown target {target}");
        }
    }

    /// <summary>Reads the input, swallows every answer.</summary>
    private sealed class InputOnlyStream(byte[] input) : Stream
    {
        private readonly MemoryStream _in = new(input, writable: false);
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => _in.Read(buffer, offset, count);
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) { }
        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken ct = default) => ValueTask.CompletedTask;
    }

    // ------------------------------------------------------------------ seeds

    public static List<byte[]> Seeds(string target) => target switch
    {
        "iscsipdu" => [Session(false, false), Session(true, true), Discovery()],
        "iscsilogin" => LoginSeeds(),
        _ => [Session(false, false), Session(true, true), Session(false, true), Discovery(), WriteWithR2T()],
    };

    private static byte[] Text(params string[] pairs) => Encoding.UTF8.GetBytes(string.Concat(pairs.Select(p => p + "\0")));

    private static List<byte[]> LoginSeeds()
    {
        static byte[] Record(byte flags, byte[] text)
        {
            var r = new byte[4 + text.Length];
            r[0] = flags;
            BinaryPrimitives.WriteUInt16BigEndian(r.AsSpan(2), (ushort)text.Length);
            text.CopyTo(r, 4);
            return r;
        }
        var first = Text($"InitiatorName={Initiator}", $"TargetName={TargetName}", "SessionType=Normal", "AuthMethod=CHAP,None");
        var op = Text("HeaderDigest=CRC32C,None", "DataDigest=None", "MaxRecvDataSegmentLength=262144", "MaxBurstLength=1048576",
            "FirstBurstLength=65536", "InitialR2T=No", "ImmediateData=Yes", "MaxOutstandingR2T=1", "ErrorRecoveryLevel=0",
            "DefaultTime2Wait=2", "DefaultTime2Retain=0", "IFMarker=No", "OFMarker=No", "MaxConnections=1", "DataPDUInOrder=Yes",
            "DataSequenceInOrder=Yes", "X-vendor=1");
        return
        [
            [.. Record(0x81, first), .. Record(0x87, op)],
            [.. Record(0x00 | 0x01, first), .. Record(0x01, Text("CHAP_A=5")), .. Record(0x81, Text("CHAP_N=fuzz-user", "CHAP_R=0x00112233445566778899aabbccddeeff")), .. Record(0x87, op)],
            [.. Record(0x87, Text($"InitiatorName={Initiator}", "SessionType=Discovery"))],
            [.. Record(0x40 | 0x01, first[..20]), .. Record(0x81, first[20..]), .. Record(0x87, op)],
        ];
    }

    private sealed class Builder
    {
        private readonly MemoryStream _out = new();
        private readonly PduWriter _writer;
        public readonly PduLimits Limits = new();
        public uint CmdSn = 1, Itt = 1;
        public Builder() => _writer = new PduWriter(_out, Limits);

        public void Pdu(byte[] bhs, byte[]? data = null) => _writer.WriteAsync(bhs, data ?? [], default).AsTask().GetAwaiter().GetResult();
        public byte[] Bytes => _out.ToArray();

        public void Login(string keys)
        {
            var b = new byte[48];
            b[0] = 0x43;
            b[1] = 0x87;
            BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(8), 0x0000_4000_0000_1234UL << 16);
            BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(16), Itt++);
            BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(24), CmdSn);
            Pdu(b, Encoding.UTF8.GetBytes(keys));
        }

        public void Scsi(byte[] cdb, uint edtl, byte flags, byte[]? data = null, int lun = 0)
        {
            var b = new byte[48];
            b[0] = 0x01;
            b[1] = flags;
            BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(8), PbsRestore.Publishing.Iscsi.Pdu.EncodeLun(lun));
            BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(16), Itt++);
            BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(20), edtl);
            BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(24), CmdSn++);
            cdb.CopyTo(b, 32);
            Pdu(b, data);
        }

        public void Simple(byte opcode, byte flags, uint field20 = 0xFFFFFFFF, byte[]? data = null, bool immediate = true)
        {
            var b = new byte[48];
            b[0] = (byte)(opcode | (immediate ? 0x40 : 0));
            b[1] = flags;
            BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(16), Itt++);
            BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(20), field20);
            BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(24), immediate ? CmdSn : CmdSn++);
            Pdu(b, data);
        }
    }

    private static string OpKeys(bool hd, bool dd, string more = "") =>
        $"InitiatorName={Initiator}\0TargetName={TargetName}\0HeaderDigest={(hd ? "CRC32C" : "None")}\0DataDigest={(dd ? "CRC32C" : "None")}\0" +
        $"MaxRecvDataSegmentLength=8192\0MaxBurstLength=65536\0FirstBurstLength=16384\0{more}";

    private static byte[] Session(bool headerDigest, bool dataDigest)
    {
        var s = new Builder();
        s.Login(OpKeys(headerDigest, dataDigest, "InitialR2T=No\0ImmediateData=Yes\0"));
        s.Limits.HeaderDigest = headerDigest;
        s.Limits.DataDigest = dataDigest;
        byte[] Cdb(params byte[] b) { var c = new byte[16]; b.CopyTo(c, 0); return c; }
        s.Scsi(Cdb(0x12, 0, 0, 0, 96), 96, 0xC1);                                  // INQUIRY
        s.Scsi(Cdb(0x12, 1, 0x83, 0, 255), 255, 0xC1);                             // VPD 83
        s.Scsi(Cdb(0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32), 32, 0xC1);    // READ CAPACITY 16
        s.Scsi(Cdb(0x1A, 0, 0x3F, 0, 255), 255, 0xC1);                             // MODE SENSE 6
        s.Scsi(Cdb(0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0), 256, 0xC1);                   // REPORT LUNS
        s.Scsi(Cdb(0x28, 0, 0, 0, 0, 8, 0, 0, 64), 64 * 512, 0xC1);                // READ 10
        s.Scsi(Cdb(0x2A, 0, 0, 0, 0, 16, 0, 0, 2), 1024, 0xA1, new byte[1024]);   // WRITE 10, immediate data
        s.Scsi(Cdb(0x2A, 0, 0, 0, 0, 32, 0, 0, 1), 512, 0xA1, new byte[512], lun: 3); // read-only LUN
        s.Scsi(Cdb(0x42, 0, 0, 0, 0, 0, 0, 0, 24), 24, 0xA1, [0, 22, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 2, 0, 0, 0, 0]); // UNMAP
        s.Scsi(Cdb(0x35), 0, 0x81);                                                 // SYNCHRONIZE CACHE
        s.Scsi(Cdb(0x00), 0, 0x81, lun: 9);                                         // missing LUN
        s.Simple(0x00, 0x80, data: [1, 2, 3, 4]);                                   // NOP-Out ping
        s.Simple(0x02, 0x81, field20: 12345);                                       // ABORT TASK
        s.Simple(0x02, 0x85);                                                       // LUN RESET
        s.Simple(0x04, 0x80, data: Text("SendTargets=")) ;                          // Text
        s.Simple(0x06, 0x80);                                                       // Logout (session)
        return s.Bytes;
    }

    private static byte[] WriteWithR2T()
    {
        var s = new Builder();
        s.Login(OpKeys(false, false, "InitialR2T=Yes\0ImmediateData=No\0"));
        var cdb = new byte[16];
        cdb[0] = 0x2A; cdb[8] = 4;
        uint itt = s.Itt;
        s.Scsi(cdb, 2048, 0xA1);
        // The connection's first R2T carries TTT 2 (tags start after 1).
        var d = new byte[48];
        d[0] = 0x05; d[1] = 0x80;
        BinaryPrimitives.WriteUInt32BigEndian(d.AsSpan(16), itt);
        BinaryPrimitives.WriteUInt32BigEndian(d.AsSpan(20), 2);
        s.Pdu(d, new byte[2048]);
        s.Simple(0x06, 0x80);
        return s.Bytes;
    }

    private static byte[] Discovery()
    {
        var s = new Builder();
        s.Login($"InitiatorName={Initiator}\0SessionType=Discovery\0");
        s.Simple(0x04, 0x80, data: Text("SendTargets=All"));
        s.Simple(0x06, 0x80);
        return s.Bytes;
    }
}
