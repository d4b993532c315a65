namespace PbsRestore.Publishing.Iscsi;

/// <summary>
/// One iSCSI session (RFC 7143 §4.3): the initiator's ISID + name, its TSIH, the CmdSN window shared by its
/// connections, and the negotiated parameters. CmdSN arithmetic is serial (RFC 1982, 32 bits).
/// </summary>
internal sealed class IscsiSession
{
    private readonly object _lock = new();
    private readonly HashSet<uint> _ahead = [];
    private readonly List<IscsiConnection> _connections = [];
    private readonly int _window;
    private uint _expCmdSn;

    public IscsiSession(ulong isid, string initiatorName, bool discovery, uint firstCmdSn, int window, NegotiatedParameters parameters)
    {
        Isid = isid;
        InitiatorName = initiatorName;
        IsDiscovery = discovery;
        _expCmdSn = firstCmdSn;
        _window = window;
        Parameters = parameters;
    }

    public ulong Isid { get; }
    public ushort Tsih { get; set; }
    public string InitiatorName { get; }
    public bool IsDiscovery { get; }
    public NegotiatedParameters Parameters { get; }

    public uint ExpCmdSn { get { lock (_lock) return _expCmdSn; } }
    public uint MaxCmdSn { get { lock (_lock) return _expCmdSn + (uint)_window - 1; } }

    /// <summary>
    /// Takes a command's CmdSN. Immediate commands are always delivered; others only inside [ExpCmdSN, MaxCmdSN]
    /// and once (§4.2.2.1: anything else is silently ignored). ExpCmdSN advances over every contiguous CmdSN seen.
    /// </summary>
    public bool AcceptCmdSn(uint cmdSn, bool immediate)
    {
        if (immediate) return true;
        lock (_lock)
        {
            uint distance = cmdSn - _expCmdSn;
            if (distance >= (uint)_window) return false;
            if (distance == 0)
            {
                _expCmdSn++;
                while (_ahead.Remove(_expCmdSn)) _expCmdSn++;
                return true;
            }
            return _ahead.Add(cmdSn);
        }
    }

    /// <summary>
    /// ABORT TASK for a task that is not running: true when its CmdSN (<paramref name="refCmdSn"/>) never arrived but
    /// lies in the window before the TMF's own CmdSN; it is then taken as received (§11.5.1).
    /// </summary>
    public bool AcceptLostCmdSn(uint refCmdSn, uint tmfCmdSn)
    {
        lock (_lock)
        {
            uint distance = refCmdSn - _expCmdSn;
            if (distance >= (uint)_window || (int)(tmfCmdSn - refCmdSn) <= 0 || _ahead.Contains(refCmdSn)) return false;
        }
        return AcceptCmdSn(refCmdSn, false);
    }

    public bool TryAddConnection(IscsiConnection c, int max)
    {
        lock (_lock)
        {
            if (_connections.Count >= max) return false;
            _connections.Add(c);
            return true;
        }
    }

    /// <summary>Removes a connection; true when it was the last one (the session ends).</summary>
    public bool RemoveConnection(IscsiConnection c)
    {
        lock (_lock)
        {
            _connections.Remove(c);
            return _connections.Count == 0;
        }
    }

    public IscsiConnection[] Connections { get { lock (_lock) return [.. _connections]; } }
}

/// <summary>The target's sessions by TSIH, bounded by MaxSessions.</summary>
internal sealed class SessionTable(int maxSessions)
{
    private readonly Dictionary<ushort, IscsiSession> _sessions = [];
    private ushort _nextTsih;

    public int Count { get { lock (_sessions) return _sessions.Count; } }

    public bool TryAdd(IscsiSession session)
    {
        lock (_sessions)
        {
            if (_sessions.Count >= maxSessions) return false;
            do { _nextTsih++; } while (_nextTsih == 0 || _sessions.ContainsKey(_nextTsih));
            session.Tsih = _nextTsih;
            _sessions.Add(session.Tsih, session);
            return true;
        }
    }

    public IscsiSession? Find(ushort tsih) { lock (_sessions) return _sessions.GetValueOrDefault(tsih); }

    /// <summary>An existing normal session of the same initiator and ISID (to reinstate, §6.3.5).</summary>
    public IscsiSession? FindByIsid(ulong isid, string initiator)
    {
        lock (_sessions)
            return _sessions.Values.FirstOrDefault(s => s.Isid == isid && !s.IsDiscovery && string.Equals(s.InitiatorName, initiator, StringComparison.OrdinalIgnoreCase));
    }

    public void Remove(IscsiSession s) { lock (_sessions) _sessions.Remove(s.Tsih); }
}
