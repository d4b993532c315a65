using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace PbsRestore.Publishing.Iscsi;

/// <summary>
/// One TCP connection: login (bounded by the login timeout), then the full feature phase. A single reader loop
/// takes PDUs in order; READs run concurrently (bounded by the command window, which also bounds memory; each starts
/// on the reader loop and leaves it at its first wait), writes
/// are streamed to the device as their Data-Out PDUs arrive. Every send goes through one lock that also stamps
/// StatSN, ExpCmdSN and MaxCmdSN, so status numbers go out in order.
/// </summary>
internal sealed partial class IscsiConnection
{
    private const int ReadPieceBytes = 256 * 1024;
    private const int MaxReadPieceBytes = 1024 * 1024;
    private const int WriteStageBytes = 256 * 1024;

    private readonly IscsiTarget _target;
    private readonly Socket? _socket;
    private readonly Stream _stream;
    private readonly EndPoint? _remote;
    private readonly EndPoint? _local;
    private readonly PduLimits _limits = new();
    private readonly PduWriter _writer;
    private readonly CancellationTokenSource _closed;
    private readonly ConcurrentDictionary<uint, RunningRead> _reads = new();
    private readonly Dictionary<uint, PendingWrite> _writes = [];
    private readonly SemaphoreSlim _inflight;
    private IscsiSession? _session;
    private ushort _cid;
    private uint _statSn;
    private uint _nextTtt = 1;
    private long _lastActivity;
    private bool _pingOutstanding;

    public IscsiConnection(IscsiTarget target, Socket socket)
        : this(target, new NetworkStream(socket, ownsSocket: true), socket.RemoteEndPoint, socket.LocalEndPoint)
    {
        _socket = socket;
        _writer.Socket = socket;
    }

    /// <summary>Over any duplex stream (the fuzzer feeds PDUs through a memory stream).</summary>
    public IscsiConnection(IscsiTarget target, Stream stream, EndPoint? remote, EndPoint? local)
    {
        _target = target;
        _stream = stream;
        _remote = remote;
        _local = local;
        _writer = new PduWriter(stream, _limits);
        _closed = CancellationTokenSource.CreateLinkedTokenSource(target.Stopping);
        _inflight = new SemaphoreSlim(target.Options.CommandWindow);
    }

    private IscsiTargetOptions Options => _target.Options;
    private TargetStats Stats => _target.Stats;

    public void Close()
    {
        try { _closed.Cancel(); } catch (ObjectDisposedException) { }
        try { _socket?.Shutdown(SocketShutdown.Both); } catch { }
        try { _stream.Dispose(); } catch { }
    }

    /// <summary>Runs the connection to its end; the caller has counted it in ActiveConnections (decremented here).</summary>
    public async Task RunAsync()
    {
        try
        {
            if (!await LoginAsync().ConfigureAwait(false)) return;
            _lastActivity = Environment.TickCount64;
            using var watchdog = new Timer(_ => _ = IdleCheckAsync(), null, Options.IdleTimeout / 2, Options.IdleTimeout / 2);
            await FullFeatureAsync().ConfigureAwait(false);
        }
        catch (IscsiProtocolException e)
        {
            Interlocked.Increment(ref Stats.ProtocolErrors);
            _target.Log(IscsiDiagnosticLevel.Warning, $"connection dropped: {e.Message}", _remote);
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            _target.Log(IscsiDiagnosticLevel.Debug, $"connection closed: {e.GetType().Name}", _remote);
        }
        catch (Exception e)
        {
            Interlocked.Increment(ref Stats.ProtocolErrors);
            // Not a protocol or I/O error: a bug. The stack says where (no secrets live in this code's messages).
            _target.Log(IscsiDiagnosticLevel.Error, $"connection failed: {e}", _remote);
        }
        finally
        {
            Close();
            foreach (var r in _reads.Values) r.Cancel.Cancel();
            try { await Task.WhenAll(_reads.Values.Select(r => r.Task)).WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false); } catch { }
            foreach (var w in _writes.Values) w.Dispose();
            _writes.Clear();
            if (_session is { } s && s.RemoveConnection(this))
            {
                _target.Sessions.Remove(s);
                _target.Log(IscsiDiagnosticLevel.Info, $"session {s.Tsih} of {s.InitiatorName} ended", _remote);
            }
            Interlocked.Decrement(ref Stats.ActiveConnections);
            _closed.Dispose();
        }
    }

    // ---------------------------------------------------------------- login

    private async Task<bool> LoginAsync()
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(_closed.Token);
        deadline.CancelAfter(Options.LoginTimeout);
        var negotiator = new LoginNegotiator(Options);
        bool first = true;
        ulong isid = 0;
        ushort tsih = 0;
        uint cmdSn = 0;
        try
        {
            while (true)
            {
                using var pdu = await PduReader.ReadAsync(_stream, _limits, deadline.Token).ConfigureAwait(false);
                if (pdu is null) return false;
                if (pdu.Opcode != Opcode.LoginRequest)
                    throw new IscsiProtocolException($"opcode 0x{(byte)pdu.Opcode:x2} before login completed");
                var b = pdu.Bhs;
                var req = new LoginRequest((b[1] & 0x80) != 0, (b[1] & 0x40) != 0, (b[1] >> 2) & 3, b[1] & 3, b[2], b[3],
                    BinaryPrimitives.ReadUInt64BigEndian(b.AsSpan(8)) >> 16, pdu.U16(14));
                if (first)
                {
                    first = false;
                    isid = req.Isid;
                    tsih = req.Tsih;
                    _cid = pdu.U16(20);
                    _statSn = pdu.U32(28);
                    cmdSn = pdu.U32(24);
                }
                else if (req.Isid != isid || req.Tsih != tsih)
                    throw new IscsiProtocolException("ISID or TSIH changed during login");
                var answer = negotiator.Step(req, pdu.Data);
                ushort tsihOut = tsih;
                if (!answer.Failed && negotiator.Complete)
                {
                    var (cls, detail) = JoinSession(negotiator, isid, tsih, cmdSn);
                    if (cls != 0) answer = answer with { StatusClass = cls, StatusDetail = detail, Transit = false, Text = [] };
                    else tsihOut = _session!.Tsih;
                }
                uint expCmd = _session?.ExpCmdSn ?? cmdSn;
                uint maxCmd = _session?.MaxCmdSn ?? cmdSn + (uint)Options.CommandWindow - 1;
                var r = PduWriter.NewBhs(Opcode.LoginResponse, (byte)((answer.Transit ? 0x80 : 0) | (answer.CurrentStage << 2) | (answer.Transit ? answer.NextStage : 0)));
                BinaryPrimitives.WriteUInt64BigEndian(r.AsSpan(8), (isid << 16) | tsihOut);
                PduWriter.Put32(r, 16, pdu.InitiatorTaskTag);
                PduWriter.Put32(r, 24, _statSn++);
                PduWriter.Put32(r, 28, expCmd);
                PduWriter.Put32(r, 32, maxCmd);
                r[36] = answer.StatusClass;
                r[37] = answer.StatusDetail;
                await _writer.WriteAsync(r, answer.Text, deadline.Token).ConfigureAwait(false);
                if (answer.Failed)
                {
                    Interlocked.Increment(ref Stats.LoginFailures);
                    _target.Log(IscsiDiagnosticLevel.Warning,
                        $"login of '{negotiator.InitiatorName ?? "?"}' refused: status {answer.StatusClass:x2}{answer.StatusDetail:x2} ({LoginStatusText(answer.StatusClass, answer.StatusDetail)})", _remote);
                    return false;
                }
                if (negotiator.Complete)
                {
                    var p = negotiator.Parameters;
                    _limits.HeaderDigest = p.HeaderDigest;
                    _limits.DataDigest = p.DataDigest;
                    _limits.MaxRecvDataSegment = Options.MaxRecvDataSegmentLength;
                    _writer.PeerMaxRecvDataSegment = p.InitiatorMaxRecvDataSegment;
                    _target.Log(IscsiDiagnosticLevel.Info,
                        $"{(negotiator.IsDiscovery ? "discovery" : "normal")} login of '{negotiator.InitiatorName}' (session {_session!.Tsih}, connection {_cid})", _remote);
                    return true;
                }
            }
        }
        catch (OperationCanceledException) when (!_closed.IsCancellationRequested)
        {
            Interlocked.Increment(ref Stats.LoginFailures);
            _target.Log(IscsiDiagnosticLevel.Warning, $"login not completed within {Options.LoginTimeout.TotalSeconds:F0} s; connection dropped", _remote);
            return false;
        }
    }

    private (byte, byte) JoinSession(LoginNegotiator n, ulong isid, ushort tsih, uint cmdSn)
    {
        IscsiSession session;
        if (tsih == 0)
        {
            if (!n.IsDiscovery && _target.Sessions.FindByIsid(isid, n.InitiatorName!) is { } old)
            {
                // Session reinstatement (§6.3.5): the old session's connections are closed.
                foreach (var c in old.Connections) c.Close();
                _target.Sessions.Remove(old);
            }
            session = new IscsiSession(isid, n.InitiatorName!, n.IsDiscovery, cmdSn, Options.CommandWindow, n.Parameters);
            if (!_target.Sessions.TryAdd(session)) return (0x03, 0x02); // out of resources
            Interlocked.Increment(ref Stats.TotalSessions);
        }
        else
        {
            var existing = _target.Sessions.Find(tsih);
            if (existing is null || existing.Isid != isid || existing.IsDiscovery != n.IsDiscovery ||
                !string.Equals(existing.InitiatorName, n.InitiatorName, StringComparison.OrdinalIgnoreCase))
                return (0x02, 0x0A); // session does not exist
            session = existing;
            // A connection that reuses a CID replaces the old one (§6.3.4: implicit logout).
            foreach (var c in session.Connections.Where(c => c._cid == _cid)) c.Close();
        }
        if (!session.TryAddConnection(this, Math.Max(1, session.Parameters.MaxConnections)))
        {
            if (tsih == 0) _target.Sessions.Remove(session);
            return (0x02, 0x06); // too many connections
        }
        _session = session;
        return (0, 0);
    }

    private static string LoginStatusText(byte cls, byte detail) => (cls, detail) switch
    {
        (2, 0) => "initiator error",
        (2, 1) => "authentication failure",
        (2, 2) => "authorization failure",
        (2, 3) => "target not found",
        (2, 5) => "unsupported version",
        (2, 6) => "too many connections",
        (2, 7) => "missing parameter",
        (2, 9) => "session type not supported",
        (2, 0x0A) => "session does not exist",
        (2, 0x0B) => "invalid during login",
        (3, 2) => "out of resources",
        _ => "error",
    };

    // ---------------------------------------------------------------- full feature phase

    private async Task FullFeatureAsync()
    {
        var ct = _closed.Token;
        while (true)
        {
            var pdu = await PduReader.ReadAsync(_stream, _limits, ct).ConfigureAwait(false);
            if (pdu is null) return;
            Volatile.Write(ref _lastActivity, Environment.TickCount64);
            _pingOutstanding = false;
            bool keep = false;
            try
            {
                if (_session!.IsDiscovery && pdu.Opcode is not (Opcode.TextRequest or Opcode.LogoutRequest or Opcode.NopOut))
                {
                    await RejectAsync(pdu, RejectReason.ProtocolError, ct).ConfigureAwait(false);
                    continue;
                }
                switch (pdu.Opcode)
                {
                    case Opcode.NopOut: await NopOutAsync(pdu, ct).ConfigureAwait(false); break;
                    case Opcode.ScsiCommand: keep = await ScsiCommandAsync(pdu, ct).ConfigureAwait(false); break;
                    case Opcode.DataOut: await DataOutAsync(pdu, ct).ConfigureAwait(false); break;
                    case Opcode.TaskManagementRequest: await TaskManagementAsync(pdu, ct).ConfigureAwait(false); break;
                    case Opcode.TextRequest: await TextAsync(pdu, ct).ConfigureAwait(false); break;
                    case Opcode.LogoutRequest:
                        if (await LogoutAsync(pdu, ct).ConfigureAwait(false)) return;
                        break;
                    case Opcode.Snack:
                        await RejectAsync(pdu, RejectReason.CommandNotSupported, ct).ConfigureAwait(false); // ErrorRecoveryLevel 0
                        break;
                    case Opcode.LoginRequest:
                        await RejectAsync(pdu, RejectReason.ProtocolError, ct).ConfigureAwait(false);
                        break;
                    default:
                        await RejectAsync(pdu, RejectReason.CommandNotSupported, ct).ConfigureAwait(false);
                        break;
                }
            }
            finally
            {
                if (!keep) pdu.Dispose();
            }
        }
    }

    private async Task IdleCheckAsync()
    {
        try
        {
            long idle = Environment.TickCount64 - Volatile.Read(ref _lastActivity);
            long limit = (long)Options.IdleTimeout.TotalMilliseconds;
            if (idle > 2 * limit && _reads.IsEmpty) { _target.Log(IscsiDiagnosticLevel.Warning, "no answer to NOP-In; connection dropped", _remote); Close(); return; }
            if (idle > limit && !_pingOutstanding)
            {
                _pingOutstanding = true;
                var b = PduWriter.NewBhs(Opcode.NopIn, 0x80);
                PduWriter.Put32(b, 16, Pdu.ReservedTag);
                PduWriter.Put32(b, 20, NextTtt());
                await SendAsync(b, default, advanceStatSn: false, _closed.Token).ConfigureAwait(false);
            }
        }
        catch { /* the reader loop notices a dead connection */ }
    }

    private uint NextTtt()
    {
        uint t = Interlocked.Increment(ref _nextTtt);
        return t == Pdu.ReservedTag ? Interlocked.Increment(ref _nextTtt) : t;
    }

    /// <summary>Sends one target PDU, stamping StatSN (advancing it for status-bearing PDUs), ExpCmdSN and MaxCmdSN.</summary>
    private async ValueTask SendAsync(byte[] bhs, ReadOnlyMemory<byte> data, bool advanceStatSn, CancellationToken ct)
    {
        await _writer.EnterAsync(ct).ConfigureAwait(false);
        try
        {
            Stamp(bhs, advanceStatSn);
            await _writer.WriteLockedAsync(bhs, data, ct).ConfigureAwait(false);
        }
        finally { _writer.Exit(); }
    }

    private void Stamp(byte[] bhs, bool advanceStatSn)
    {
        PduWriter.Put32(bhs, 24, advanceStatSn ? _statSn++ : _statSn);
        PduWriter.Put32(bhs, 28, _session!.ExpCmdSn);
        PduWriter.Put32(bhs, 32, _session.MaxCmdSn);
    }

    private async ValueTask RejectAsync(Pdu pdu, RejectReason reason, CancellationToken ct)
    {
        Interlocked.Increment(ref Stats.ProtocolErrors);
        _target.Log(IscsiDiagnosticLevel.Warning, $"rejected a PDU with opcode 0x{(byte)pdu.Opcode:x2}: {reason}", _remote);
        var b = PduWriter.NewBhs(Opcode.Reject, 0x80);
        b[2] = (byte)reason;
        PduWriter.Put32(b, 16, Pdu.ReservedTag);
        await SendAsync(b, pdu.Bhs, advanceStatSn: true, ct).ConfigureAwait(false);
    }

    private async ValueTask NopOutAsync(Pdu pdu, CancellationToken ct)
    {
        uint itt = pdu.InitiatorTaskTag;
        if (itt == Pdu.ReservedTag)
        {
            // An answer to our ping (TTT valid) or a bare CmdSN update: nothing to send (§11.18).
            if (!pdu.Immediate) _session!.AcceptCmdSn(pdu.U32(24), false);
            return;
        }
        if (!_session!.AcceptCmdSn(pdu.U32(24), pdu.Immediate)) return;
        var b = PduWriter.NewBhs(Opcode.NopIn, 0x80);
        Array.Copy(pdu.Bhs, 8, b, 8, 8); // LUN
        PduWriter.Put32(b, 16, itt);
        PduWriter.Put32(b, 20, Pdu.ReservedTag);
        // The ping data comes back, up to what the initiator can receive.
        var data = pdu.DataMemory[..Math.Min(pdu.DataLength, _writer.PeerMaxRecvDataSegment)];
        await SendAsync(b, data, advanceStatSn: true, ct).ConfigureAwait(false);
    }

    private async ValueTask TextAsync(Pdu pdu, CancellationToken ct)
    {
        if (!_session!.AcceptCmdSn(pdu.U32(24), pdu.Immediate)) return;
        var keys = TextKeys.Parse(pdu.Data, out _);
        var reply = new List<byte>();
        if (keys is null || (pdu.Flags & 0x40) != 0)
        {
            await RejectAsync(pdu, RejectReason.InvalidPduField, ct).ConfigureAwait(false);
            return;
        }
        foreach (var (key, value) in keys)
        {
            if (key == "SendTargets")
            {
                bool all = value == "All";
                if (!all && _session.IsDiscovery && value.Length == 0) continue;
                if (all ? _session.IsDiscovery : value.Length == 0 || string.Equals(value, Options.TargetName, StringComparison.OrdinalIgnoreCase))
                {
                    TextKeys.Append(reply, "TargetName", Options.TargetName);
                    if (_local is IPEndPoint ep)
                    {
                        string host = ep.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{ep.Address}]" : ep.Address.ToString();
                        TextKeys.Append(reply, "TargetAddress", $"{host}:{ep.Port},1");
                    }
                }
            }
            else TextKeys.Append(reply, key, "NotUnderstood");
        }
        var b = PduWriter.NewBhs(Opcode.TextResponse, 0x80);
        Array.Copy(pdu.Bhs, 8, b, 8, 8);
        PduWriter.Put32(b, 16, pdu.InitiatorTaskTag);
        PduWriter.Put32(b, 20, Pdu.ReservedTag);
        var data = reply.ToArray();
        if (data.Length > _writer.PeerMaxRecvDataSegment) data = data[.._writer.PeerMaxRecvDataSegment];
        await SendAsync(b, data, advanceStatSn: true, ct).ConfigureAwait(false);
    }

    private async ValueTask<bool> LogoutAsync(Pdu pdu, CancellationToken ct)
    {
        if (!_session!.AcceptCmdSn(pdu.U32(24), pdu.Immediate)) return false;
        int reason = pdu.Flags & 0x7F;
        ushort cid = pdu.U16(20);
        byte response = 0;
        bool closeThis = true;
        if (reason == 0)
        {
            foreach (var c in _session.Connections.Where(c => c != this)) c.Close();
        }
        else if (reason == 1 && cid != _cid)
        {
            var other = _session.Connections.FirstOrDefault(c => c._cid == cid);
            if (other is null) response = 1; else other.Close();
            closeThis = false;
        }
        else if (reason == 2) { response = 2; closeThis = false; } // recovery: needs ErrorRecoveryLevel 2
        else if (reason > 2) { await RejectAsync(pdu, RejectReason.InvalidPduField, ct).ConfigureAwait(false); return false; }
        if (closeThis) await DrainReadsAsync().ConfigureAwait(false);
        var b = PduWriter.NewBhs(Opcode.LogoutResponse, 0x80);
        b[2] = response;
        PduWriter.Put32(b, 16, pdu.InitiatorTaskTag);
        await SendAsync(b, default, advanceStatSn: true, ct).ConfigureAwait(false);
        if (closeThis) _target.Log(IscsiDiagnosticLevel.Info, $"logout ({(reason == 0 ? "session" : "connection")})", _remote);
        return closeThis;
    }

    private async Task DrainReadsAsync()
    {
        try { await Task.WhenAll(_reads.Values.Select(r => r.Task)).ConfigureAwait(false); } catch { }
    }

    // ---------------------------------------------------------------- task management

    private async ValueTask TaskManagementAsync(Pdu pdu, CancellationToken ct)
    {
        if (!_session!.AcceptCmdSn(pdu.U32(24), pdu.Immediate)) return;
        int function = pdu.Flags & 0x7F;
        int lun = Pdu.DecodeLun(pdu.Lun);
        byte response;
        switch (function)
        {
            case 1: // ABORT TASK
                {
                    uint referenced = pdu.U32(20);
                    bool found = false;
                    if (_reads.TryGetValue(referenced, out var read)) { await AbortAsync(read).ConfigureAwait(false); found = true; }
                    if (_writes.Remove(referenced, out var write)) { write.Dispose(); found = true; }
                    // Not found: a task that already completed is "task does not exist"; one whose CmdSN never
                    // arrived counts as received and aborted (§11.5.1).
                    response = found ? (byte)0 : _session.AcceptLostCmdSn(pdu.U32(32), pdu.U32(24)) ? (byte)0 : (byte)1;
                    break;
                }
            case 2 or 4 or 5: // ABORT TASK SET, CLEAR TASK SET, LUN RESET
                if (_target.Unit(lun) is null && function == 5) { response = 2; break; }
                await AbortAllAsync(lun).ConfigureAwait(false);
                response = 0;
                break;
            case 6 or 7: // TARGET WARM / COLD RESET
                await AbortAllAsync(-1).ConfigureAwait(false);
                response = 0;
                break;
            default: // CLEAR ACA, TASK REASSIGN, ...: not supported
                response = 5;
                break;
        }
        var b = PduWriter.NewBhs(Opcode.TaskManagementResponse, 0x80);
        b[2] = response;
        PduWriter.Put32(b, 16, pdu.InitiatorTaskTag);
        await SendAsync(b, default, advanceStatSn: true, ct).ConfigureAwait(false);
        if (function == 7) Close();
    }

    private async Task AbortAllAsync(int lun)
    {
        foreach (var r in _reads.Values.Where(r => lun < 0 || r.Lun == lun)) await AbortAsync(r).ConfigureAwait(false);
        foreach (var key in _writes.Where(w => lun < 0 || w.Value.Lun == lun).Select(w => w.Key).ToList())
            if (_writes.Remove(key, out var w)) w.Dispose();
    }

    private static async Task AbortAsync(RunningRead read)
    {
        read.Aborted = true;
        read.Cancel.Cancel();
        try { await read.Task.ConfigureAwait(false); } catch { }
    }

    // ---------------------------------------------------------------- SCSI commands

    private sealed class RunningRead
    {
        public required int Lun;
        public required CancellationTokenSource Cancel;
        public Task Task = Task.CompletedTask;
        public volatile bool Aborted;
    }

    /// <summary>A write whose data is still arriving: staged into whole blocks and written in order.</summary>
    private sealed class PendingWrite : IDisposable
    {
        public required uint Itt;
        public required int Lun;
        public required ScsiLogicalUnit Unit;
        public required ScsiPlan Plan;
        public required byte[] Cdb;
        public required uint Edtl;
        public long Transfer;       // bytes we take: min(needed, EDTL)
        public long Received;       // bytes seen in order (may run past Transfer; the excess is discarded)
        public long Requested;      // end of the range covered by unsolicited data or R2Ts so far
        public uint R2TSn;
        public uint Ttt = Pdu.ReservedTag;
        public uint ExpDataSn;      // next DataSN of the current sequence (unsolicited or one R2T's)
        public bool UnsolicitedOpen;
        public byte[] Stage = [];
        public int StageCount;
        public long StageOffset;    // device offset of Stage[0]
        public Sense? Error;

        public void Dispose()
        {
            if (Stage.Length > 0) ArrayPool<byte>.Shared.Return(Stage);
            Stage = [];
        }
    }

    private async ValueTask<bool> ScsiCommandAsync(Pdu pdu, CancellationToken ct)
    {
        if (!_session!.AcceptCmdSn(pdu.U32(24), pdu.Immediate)) return false;
        Interlocked.Increment(ref Stats.Commands);
        uint itt = pdu.InitiatorTaskTag;
        uint edtl = pdu.U32(20);
        bool readFlag = (pdu.Flags & 0x40) != 0, writeFlag = (pdu.Flags & 0x20) != 0;
        int lun = Pdu.DecodeLun(pdu.Lun);
        byte[] cdb = pdu.Bhs.AsSpan(32, 16).ToArray();
        if (pdu.Ahs.Length > 0 && pdu.Ahs.Length >= 4 && pdu.Ahs[2] == 0x01)
        {
            await SendStatusAsync(itt, ScsiPlan.Check(Sense.InvalidFieldInCdb), edtl, 0, ct).ConfigureAwait(false); // extended CDBs: none needed
            return false;
        }
        if (_reads.ContainsKey(itt) || _writes.ContainsKey(itt))
        {
            await RejectAsync(pdu, RejectReason.TaskInProgress, ct).ConfigureAwait(false);
            return false;
        }
        var unit = _target.Unit(lun);
        if (unit is not null) Interlocked.Increment(ref unit.Commands);
        ScsiPlan plan = unit is null
            ? ScsiLogicalUnit.ForMissingLun(cdb, _target.LunNumbers)
            : await unit.PrepareAsync(cdb, _target.LunNumbers, ct).ConfigureAwait(false);

        switch (plan.Kind)
        {
            case PlanKind.Done:
                await SendDoneAsync(itt, plan, edtl, readFlag, ct).ConfigureAwait(false);
                return false;
            case PlanKind.Read:
                {
                    if (!readFlag && edtl > 0)
                    {
                        // A READ the initiator flagged as a write: nothing goes to the initiator; any data it pushed
                        // is dropped; GOOD with the whole EDTL as residual (what libiscsi's Read10Invalid expects).
                        await SendStatusAsync(itt, ScsiPlan.Good(), edtl, 0, ct).ConfigureAwait(false);
                        return false;
                    }
                    await _inflight.WaitAsync(ct).ConfigureAwait(false);
                    var running = new RunningRead { Lun = lun, Cancel = CancellationTokenSource.CreateLinkedTokenSource(ct) };
                    _reads[itt] = running;
                    // Started here, not queued to the thread pool: a READ of cached data is answered before the next
                    // PDU is read (no thread hop, the latency of a small read); one that must wait (a chunk being
                    // fetched, a full socket) yields at that await and this loop goes on with the next command.
                    running.Task = RunReadAsync(itt, unit!, plan, edtl, running);
                    return false;
                }
            default: // Write or NeedsDataOut
                {
                    if (_writes.Count >= Options.CommandWindow)
                    {
                        // Writes whose data never comes would otherwise pile up (the CmdSN window slides on arrival).
                        await SendStatusAsync(itt, new ScsiPlan { Kind = PlanKind.Done, TaskSetFull = true }, edtl, 0, ct).ConfigureAwait(false);
                        return false;
                    }
                    if (!writeFlag && edtl > 0 && plan.Kind == PlanKind.Write) { await SendStatusAsync(itt, ScsiPlan.Check(Sense.InvalidFieldInCdb), edtl, 0, ct).ConfigureAwait(false); return false; }
                    if (plan.Kind == PlanKind.NeedsDataOut && plan.Length > ScsiLogicalUnit.MaxParameterList * 16)
                    {
                        await SendStatusAsync(itt, ScsiPlan.Check(Sense.InvalidFieldInCdb), edtl, 0, ct).ConfigureAwait(false);
                        return false;
                    }
                    var p = _session.Parameters;
                    var w = new PendingWrite
                    {
                        Itt = itt, Lun = lun, Unit = unit!, Plan = plan, Cdb = cdb, Edtl = edtl,
                        Transfer = Math.Min(plan.Length, edtl),
                        StageOffset = plan.Offset,
                        UnsolicitedOpen = !pdu.Final && !p.InitialR2T,
                    };
                    w.Requested = w.UnsolicitedOpen ? Math.Min(p.FirstBurstLength, edtl) : 0;
                    w.Stage = ArrayPool<byte>.Shared.Rent(plan.Kind == PlanKind.Write ? (int)Math.Min(WriteStageBytes, Math.Max(w.Transfer, 1)) : (int)Math.Max(w.Transfer, 1));
                    _writes[itt] = w;
                    if (pdu.DataLength > 0)
                    {
                        if (!p.ImmediateData || pdu.DataLength > p.FirstBurstLength || pdu.DataLength > edtl)
                        {
                            _writes.Remove(itt);
                            w.Dispose();
                            throw new IscsiProtocolException($"immediate data of {pdu.DataLength} bytes not allowed (ImmediateData {p.ImmediateData}, FirstBurstLength {p.FirstBurstLength}, EDTL {edtl})");
                        }
                        w.Requested = Math.Max(w.Requested, pdu.DataLength);
                        await AcceptDataAsync(w, pdu.DataMemory, ct).ConfigureAwait(false);
                    }
                    await AdvanceWriteAsync(w, ct).ConfigureAwait(false);
                    return false;
                }
        }
    }

    private async ValueTask DataOutAsync(Pdu pdu, CancellationToken ct)
    {
        uint itt = pdu.InitiatorTaskTag;
        if (!_writes.TryGetValue(itt, out var w)) return; // a finished or aborted task: discard (ErrorRecoveryLevel 0)
        uint ttt = pdu.U32(20);
        uint offset = pdu.U32(40);
        if (offset != w.Received)
            throw new IscsiProtocolException($"Data-Out at buffer offset {offset}, expected {w.Received} (DataPDUInOrder)");
        if (ttt == Pdu.ReservedTag ? !w.UnsolicitedOpen : ttt != w.Ttt)
            throw new IscsiProtocolException($"Data-Out with target transfer tag 0x{ttt:x8} not issued for task 0x{itt:x8}");
        if (offset + (long)pdu.DataLength > Math.Max(w.Requested, w.Transfer) && offset + (long)pdu.DataLength > w.Edtl)
            throw new IscsiProtocolException($"Data-Out beyond the expected data transfer length {w.Edtl}");
        uint dataSn = pdu.U32(36);
        if (dataSn != w.ExpDataSn && w.Error is null)
        {
            // A lost or reordered Data-Out: the task's data cannot be trusted; nothing more of it is written and the
            // command ends with ABORTED COMMAND (the connection stays up; the initiator retries the command).
            Interlocked.Increment(ref Stats.ProtocolErrors);
            _target.Log(IscsiDiagnosticLevel.Warning, $"Data-Out DataSN {dataSn}, expected {w.ExpDataSn} (task 0x{itt:x8}); command aborted", _remote);
            w.Error = Sense.DataPhaseError;
        }
        w.ExpDataSn = dataSn + 1;
        await AcceptDataAsync(w, pdu.DataMemory, ct).ConfigureAwait(false);
        if (pdu.Final)
        {
            if (ttt == Pdu.ReservedTag) w.UnsolicitedOpen = false;
            else w.Ttt = Pdu.ReservedTag;
        }
        await AdvanceWriteAsync(w, ct).ConfigureAwait(false);
    }

    /// <summary>Takes in-order data: stages it and writes whole blocks; bytes past the transfer length are dropped.</summary>
    private async ValueTask AcceptDataAsync(PendingWrite w, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        long take = Math.Clamp(w.Transfer - w.Received, 0, data.Length);
        w.Received += data.Length;
        var rest = data[..(int)take];
        while (!rest.IsEmpty)
        {
            int n = Math.Min(rest.Length, w.Stage.Length - w.StageCount);
            rest.Span[..n].CopyTo(w.Stage.AsSpan(w.StageCount));
            w.StageCount += n;
            rest = rest[n..];
            if (w.StageCount == w.Stage.Length && w.Plan.Kind == PlanKind.Write) await FlushStageAsync(w, ct).ConfigureAwait(false);
        }
    }

    private async ValueTask FlushStageAsync(PendingWrite w, CancellationToken ct)
    {
        int bs = w.Unit.Device.BlockSize;
        int whole = w.StageCount / bs * bs;
        if (whole > 0 && w.Error is null)
        {
            try
            {
                await w.Unit.Device.WriteAsync(w.StageOffset, w.Stage.AsMemory(0, whole), ct).ConfigureAwait(false);
                Interlocked.Add(ref Stats.BytesWritten, whole);
                Interlocked.Add(ref w.Unit.BytesWritten, whole);
            }
            catch (BlockDeviceException e)
            {
                Interlocked.Increment(ref w.Unit.DeviceErrors);
                _target.Log(IscsiDiagnosticLevel.Warning, $"LUN {w.Unit.Lun.Number}: write at {w.StageOffset} failed: {e.Message}", _remote);
                w.Error = Sense.From(e, write: true);
            }
        }
        w.StageOffset += whole;
        w.Stage.AsSpan(whole, w.StageCount - whole).CopyTo(w.Stage);
        w.StageCount -= whole;
    }

    /// <summary>Issues the next R2T, or completes the write when all its data is in.</summary>
    private async ValueTask AdvanceWriteAsync(PendingWrite w, CancellationToken ct)
    {
        if (w.Received < w.Transfer)
        {
            if (w.UnsolicitedOpen || w.Ttt != Pdu.ReservedTag) return; // data still due on the current sequence
            if (w.Received < w.Requested) return;
            uint length = (uint)Math.Min(_session!.Parameters.MaxBurstLength, w.Transfer - w.Received);
            w.Ttt = NextTtt();
            w.Requested = w.Received + length;
            w.ExpDataSn = 0;
            var r = PduWriter.NewBhs(Opcode.ReadyToTransfer, 0x80);
            BinaryPrimitives.WriteUInt64BigEndian(r.AsSpan(8), Pdu.EncodeLun(Math.Max(w.Lun, 0)));
            PduWriter.Put32(r, 16, w.Itt);
            PduWriter.Put32(r, 20, w.Ttt);
            PduWriter.Put32(r, 36, w.R2TSn++);
            PduWriter.Put32(r, 40, (uint)w.Received);
            PduWriter.Put32(r, 44, length);
            await SendAsync(r, default, advanceStatSn: false, ct).ConfigureAwait(false);
            return;
        }
        _writes.Remove(w.Itt);
        try
        {
            ScsiPlan result;
            if (w.Plan.Kind == PlanKind.Write)
            {
                await FlushStageAsync(w, ct).ConfigureAwait(false);
                if (w.Error is null && w.Plan.ForceUnitAccess)
                {
                    try { await w.Unit.Device.FlushAsync(ct).ConfigureAwait(false); }
                    catch (BlockDeviceException e) { w.Error = Sense.From(e, write: true); }
                }
                result = w.Error is { } s ? ScsiPlan.Check(s) : ScsiPlan.Good();
            }
            else if (w.Error is { } failed)
                result = ScsiPlan.Check(failed);
            else if (w.Transfer < w.Plan.Length)
                result = ScsiPlan.Check(Sense.ParameterListLengthError);
            else
                result = await w.Unit.CompleteDataOutAsync(w.Cdb, w.Stage.AsMemory(0, w.StageCount), ct).ConfigureAwait(false);
            await SendStatusAsync(w.Itt, result, w.Edtl, w.Plan.Length, ct).ConfigureAwait(false);
        }
        finally { w.Dispose(); }
    }

    private async Task RunReadAsync(uint itt, ScsiLogicalUnit unit, ScsiPlan plan, uint edtl, RunningRead running)
    {
        try { await ReadAsync(itt, unit, plan, edtl, running).ConfigureAwait(false); }
        finally
        {
            _reads.TryRemove(itt, out _);
            running.Cancel.Dispose();
            _inflight.Release();
        }
    }

    private async Task ReadAsync(uint itt, ScsiLogicalUnit unit, ScsiPlan plan, uint edtl, RunningRead running)
    {
        var ct = running.Cancel.Token;
        var device = unit.Device;
        int bs = device.BlockSize;
        long transfer = Math.Min(plan.Length, edtl);
        int mrdsl = _writer.PeerMaxRecvDataSegment;
        int maxBurst = _session!.Parameters.MaxBurstLength;
        // Bytes the device lends (a cached chunk) go out as they are; others are read into one pooled buffer per
        // running READ (256 KiB, or the initiator's segment size up to 1 MiB), taken only when first needed.
        int piece = (int)Math.Min(Math.Max(ReadPieceBytes, Math.Min(mrdsl, MaxReadPieceBytes)), transfer + bs);
        piece = (piece + bs - 1) / bs * bs;
        byte[]? buffer = null;
        uint dataSn = 0;
        long sent = 0, burst = 0;
        try
        {
            if (transfer == 0)
            {
                await SendStatusAsync(itt, ScsiPlan.Good(), edtl, plan.Length, ct).ConfigureAwait(false);
                return;
            }
            while (sent < transfer)
            {
                BlockLease lease = default;
                ReadOnlyMemory<byte> data;
                try
                {
                    lease = await device.LeaseAsync(plan.Offset + sent, (int)Math.Min(transfer - sent, int.MaxValue), ct).ConfigureAwait(false);
                    if (!lease.IsEmpty) data = lease.Data;
                    else
                    {
                        long want = Math.Min(piece, transfer - sent);
                        int readLength = (int)((want + bs - 1) / bs * bs);
                        buffer ??= ArrayPool<byte>.Shared.Rent(piece);
                        await device.ReadAsync(plan.Offset + sent, buffer.AsMemory(0, readLength), ct).ConfigureAwait(false);
                        data = buffer.AsMemory(0, (int)want);
                    }
                }
                catch (BlockDeviceException e)
                {
                    Interlocked.Increment(ref unit.DeviceErrors);
                    _target.Log(IscsiDiagnosticLevel.Warning, $"LUN {unit.Lun.Number}: read at {plan.Offset + sent} failed: {e.Message}", _remote);
                    await SendStatusAsync(itt, ScsiPlan.Check(Sense.From(e, write: false)), edtl, plan.Length, ct).ConfigureAwait(false);
                    return;
                }
                using (lease)
                {
                    Interlocked.Add(ref Stats.BytesRead, data.Length);
                    Interlocked.Add(ref unit.BytesRead, data.Length);
                    int done = 0;
                    while (done < data.Length)
                    {
                        int n = (int)Math.Min(Math.Min(mrdsl, data.Length - done), maxBurst - burst);
                        bool last = sent + done + n == transfer;
                        burst += n;
                        bool endOfBurst = last || burst == maxBurst;
                        if (burst == maxBurst) burst = 0;
                        var b = PduWriter.NewBhs(Opcode.DataIn, (byte)(endOfBurst ? 0x80 : 0));
                        PduWriter.Put32(b, 16, itt);
                        PduWriter.Put32(b, 20, Pdu.ReservedTag);
                        PduWriter.Put32(b, 36, dataSn++);
                        PduWriter.Put32(b, 40, (uint)(sent + done));
                        if (last)
                        {
                            // Status rides on the last Data-In (S bit) with the residual (§11.7.4).
                            b[1] |= 0x01;
                            SetResidual(b, edtl, plan.Length);
                        }
                        else BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(8), 0);
                        if (running.Aborted) return;
                        await SendAsync(b, data.Slice(done, n), advanceStatSn: last, ct).ConfigureAwait(false);
                        done += n;
                    }
                    sent += data.Length;
                }
            }
        }
        catch (OperationCanceledException) when (running.Aborted || _closed.IsCancellationRequested) { }
        catch (Exception e) when (e is IOException or ObjectDisposedException or SocketException) { Close(); }
        finally { if (buffer is not null) ArrayPool<byte>.Shared.Return(buffer); }
    }

    private static void SetResidual(byte[] b, uint edtl, long needed)
    {
        if (needed > edtl) { b[1] |= 0x04; PduWriter.Put32(b, 44, (uint)Math.Min(needed - edtl, uint.MaxValue)); }
        else if (needed < edtl) { b[1] |= 0x02; PduWriter.Put32(b, 44, (uint)(edtl - needed)); }
    }

    /// <summary>A finished command: its data-in (trimmed to EDTL) with status on the last PDU, or a SCSI Response.</summary>
    private async ValueTask SendDoneAsync(uint itt, ScsiPlan plan, uint edtl, bool readFlag, CancellationToken ct)
    {
        if (plan.Sense is null && plan.DataIn is { Length: > 0 } data && readFlag && edtl > 0)
        {
            int n = (int)Math.Min(data.Length, edtl);
            int mrdsl = _writer.PeerMaxRecvDataSegment;
            uint dataSn = 0;
            for (int off = 0; off < n; off += mrdsl)
            {
                int len = Math.Min(mrdsl, n - off);
                bool last = off + len == n;
                var b = PduWriter.NewBhs(Opcode.DataIn, (byte)(last ? 0x81 : 0));
                PduWriter.Put32(b, 16, itt);
                PduWriter.Put32(b, 20, Pdu.ReservedTag);
                PduWriter.Put32(b, 36, dataSn++);
                PduWriter.Put32(b, 40, (uint)off);
                if (last) SetResidual(b, edtl, data.Length);
                await SendAsync(b, data.AsMemory(off, len), advanceStatSn: last, ct).ConfigureAwait(false);
            }
            return;
        }
        await SendStatusAsync(itt, plan, edtl, plan.DataIn?.Length ?? 0, ct).ConfigureAwait(false);
    }

    /// <summary>A SCSI Response PDU: status, sense data (autosense) and the residual against EDTL.</summary>
    private async ValueTask SendStatusAsync(uint itt, ScsiPlan plan, uint edtl, long needed, CancellationToken ct)
    {
        var b = PduWriter.NewBhs(Opcode.ScsiResponse, 0x80);
        PduWriter.Put32(b, 16, itt);
        byte[] data = [];
        if (plan.TaskSetFull)
        {
            b[3] = 0x28; // TASK SET FULL: the initiator retries later
            if (edtl > 0) { b[1] |= 0x02; PduWriter.Put32(b, 44, edtl); }
        }
        else if (plan.Sense is { } sense)
        {
            Interlocked.Increment(ref Stats.CheckConditions);
            b[3] = 0x02; // CHECK CONDITION
            byte[] s = sense.ToFixedFormat();
            data = new byte[2 + s.Length];
            BinaryPrimitives.WriteUInt16BigEndian(data, (ushort)s.Length);
            s.CopyTo(data, 2);
            if (edtl > 0) { b[1] |= 0x02; PduWriter.Put32(b, 44, edtl); } // nothing transferred
        }
        else SetResidual(b, edtl, needed);
        await SendAsync(b, data, advanceStatSn: true, ct).ConfigureAwait(false);
    }
}
