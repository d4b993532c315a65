using System.Globalization;
using System.Security.Cryptography;

namespace PbsRestore.Publishing.Iscsi;

/// <summary>The fields of a Login Request the negotiation needs (RFC 7143 §11.12).</summary>
internal readonly record struct LoginRequest(bool Transit, bool Continue, int CurrentStage, int NextStage, byte VersionMax, byte VersionMin, ulong Isid, ushort Tsih);

/// <summary>What to answer one Login Request with.</summary>
internal readonly record struct LoginAnswer(byte StatusClass, byte StatusDetail, bool Transit, int CurrentStage, int NextStage, byte[] Text)
{
    public bool Failed => StatusClass != 0;
}

/// <summary>Operational parameters of a connection/session after login (RFC 7143 §13).</summary>
internal sealed record NegotiatedParameters
{
    public bool HeaderDigest { get; set; }
    public bool DataDigest { get; set; }
    public int InitiatorMaxRecvDataSegment { get; set; } = 8192;
    public int MaxBurstLength { get; set; } = 262144;
    public int FirstBurstLength { get; set; } = 65536;
    public bool InitialR2T { get; set; } = true;
    public bool ImmediateData { get; set; } = true;
    public int MaxOutstandingR2T { get; set; } = 1;
    public int MaxConnections { get; set; } = 1;
    public bool DataPduInOrder { get; set; } = true;
    public bool DataSequenceInOrder { get; set; } = true;
}

/// <summary>
/// The target side of login (RFC 7143 §6): security stage (AuthMethod None or CHAP with MD5, RFC 1994), operational
/// stage (digests, burst lengths, R2T policy, ErrorRecoveryLevel 0) and the transition to full feature phase.
/// Pure: bytes in, bytes out, no I/O (so it is fuzzed as it is).
/// </summary>
internal sealed class LoginNegotiator
{
    public const int MaxPendingText = 64 * 1024;

    private readonly IscsiTargetOptions _options;
    private readonly List<byte> _pending = [];
    private bool _first = true;
    private bool _authDone;
    private string? _authMethod;
    private byte _chapId;
    private byte[]? _chapChallenge;
    private bool _declaredMrdsl;

    public LoginNegotiator(IscsiTargetOptions options) => _options = options;

    public string? InitiatorName { get; private set; }
    public string? InitiatorAlias { get; private set; }
    public bool IsDiscovery { get; private set; }
    public bool Complete { get; private set; }
    public NegotiatedParameters Parameters { get; } = new();

    /// <summary>Handles one Login Request and its text; the caller sends the answer and closes the connection when it failed.</summary>
    public LoginAnswer Step(LoginRequest req, ReadOnlySpan<byte> text)
    {
        if (Complete) return Fail(0x02, 0x0B, req); // invalid during login: already complete
        if (req.VersionMin > 0) return Fail(0x02, 0x05, req);
        if (req.CurrentStage is 2 || req.NextStage is 2 || (req.Transit && req.NextStage <= req.CurrentStage) || (req.Transit && req.Continue))
            return Fail(0x02, 0x00, req);
        if (_pending.Count + text.Length > MaxPendingText) return Fail(0x02, 0x00, req);
        _pending.AddRange(text);
        if (req.Continue)
            return new LoginAnswer(0, 0, false, req.CurrentStage, 0, []); // more text follows (§6.2)

        var keys = TextKeys.Parse(_pending.ToArray(), out _);
        _pending.Clear();
        if (keys is null) return Fail(0x02, 0x00, req);
        var reply = new List<byte>();
        var dict = keys.ToDictionary(k => k.Key, k => k.Value, StringComparer.Ordinal);

        if (_first)
        {
            _first = false;
            if (!dict.TryGetValue("InitiatorName", out var initiator) || !IscsiNames.IsValid(initiator.ToLowerInvariant()))
                return Fail(0x02, 0x07, req);
            InitiatorName = initiator;
            dict.TryGetValue("InitiatorAlias", out var alias);
            InitiatorAlias = alias;
            string sessionType = dict.GetValueOrDefault("SessionType", "Normal");
            if (sessionType is not ("Normal" or "Discovery")) return Fail(0x02, 0x09, req);
            IsDiscovery = sessionType == "Discovery";
            if (!IsDiscovery)
            {
                if (!dict.TryGetValue("TargetName", out var tn)) return Fail(0x02, 0x07, req);
                if (!string.Equals(tn, _options.TargetName, StringComparison.OrdinalIgnoreCase)) return Fail(0x02, 0x03, req);
            }
            if (_options.AllowedInitiators is { Count: > 0 } allowed &&
                !allowed.Any(a => string.Equals(a, initiator, StringComparison.OrdinalIgnoreCase)))
                return Fail(0x02, 0x02, req);
            if (!IsDiscovery)
            {
                TextKeys.Append(reply, "TargetPortalGroupTag", "1");
                if (_options.TargetAlias is { Length: > 0 } ta) TextKeys.Append(reply, "TargetAlias", ta);
            }
        }
        else if (dict.ContainsKey("InitiatorName") || dict.ContainsKey("SessionType") || dict.ContainsKey("TargetName"))
        {
            // Declared once, in the first request only; tolerate a repeat of the same value.
            if (dict.TryGetValue("InitiatorName", out var again) && !string.Equals(again, InitiatorName, StringComparison.Ordinal)) return Fail(0x02, 0x00, req);
        }

        bool chapRequired = _options.Chap is not null;
        if (req.CurrentStage == 0)
        {
            foreach (var (key, value) in keys)
            {
                switch (key)
                {
                    case "InitiatorName" or "InitiatorAlias" or "SessionType" or "TargetName":
                        break;
                    case "AuthMethod":
                        {
                            var offered = value.Split(',');
                            string? chosen = chapRequired ? offered.FirstOrDefault(o => o == "CHAP") : offered.FirstOrDefault(o => o == "None");
                            if (chosen is null) return Fail(0x02, 0x01, req);
                            _authMethod = chosen;
                            TextKeys.Append(reply, "AuthMethod", chosen);
                            if (chosen == "None") _authDone = true;
                            break;
                        }
                    case "CHAP_A":
                        {
                            if (_authMethod != "CHAP" || _chapChallenge is not null) return Fail(0x02, 0x01, req);
                            if (!value.Split(',').Contains("5")) return Fail(0x02, 0x01, req); // MD5 only
                            _chapId = (byte)RandomNumberGenerator.GetInt32(256);
                            _chapChallenge = RandomNumberGenerator.GetBytes(16);
                            TextKeys.Append(reply, "CHAP_A", "5");
                            TextKeys.Append(reply, "CHAP_I", _chapId.ToString(CultureInfo.InvariantCulture));
                            TextKeys.Append(reply, "CHAP_C", "0x" + Convert.ToHexString(_chapChallenge).ToLowerInvariant());
                            break;
                        }
                    case "CHAP_N" or "CHAP_R" or "CHAP_I" or "CHAP_C":
                        break; // checked together below
                    default:
                        if (IsOperationalKey(key)) { if (!Negotiate(key, value, reply)) return Fail(0x02, 0x00, req); }
                        else TextKeys.Append(reply, key, "NotUnderstood");
                        break;
                }
            }
            if (dict.ContainsKey("CHAP_R") || dict.ContainsKey("CHAP_N"))
            {
                if (_authMethod != "CHAP" || _chapChallenge is null || dict.ContainsKey("CHAP_I") || dict.ContainsKey("CHAP_C"))
                    return Fail(0x02, 0x01, req); // out of order, or mutual CHAP (the target has no secret of its own)
                if (!VerifyChap(dict.GetValueOrDefault("CHAP_N"), dict.GetValueOrDefault("CHAP_R"))) return Fail(0x02, 0x01, req);
                _authDone = true;
                _chapChallenge = null;
            }
            if (!chapRequired && _authMethod is null && req.Transit) _authDone = true; // no AuthMethod key: None by default
            if (req.Transit && !_authDone)
                return chapRequired && _authMethod is null ? Fail(0x02, 0x01, req) : new LoginAnswer(0, 0, false, 0, 0, [.. reply]);
        }
        else if (req.CurrentStage == 1)
        {
            if (chapRequired && !_authDone) return Fail(0x02, 0x01, req); // skipped the security stage
            _authDone = true;
            foreach (var (key, value) in keys)
            {
                if (key is "InitiatorName" or "InitiatorAlias" or "SessionType" or "TargetName") continue;
                if (key is "AuthMethod" or "CHAP_A" or "CHAP_N" or "CHAP_R" or "CHAP_I" or "CHAP_C") return Fail(0x02, 0x00, req);
                if (IsOperationalKey(key)) { if (!Negotiate(key, value, reply)) return Fail(0x02, 0x00, req); }
                else TextKeys.Append(reply, key, "NotUnderstood");
            }
            if (!_declaredMrdsl)
            {
                _declaredMrdsl = true;
                TextKeys.Append(reply, "MaxRecvDataSegmentLength", _options.MaxRecvDataSegmentLength.ToString(CultureInfo.InvariantCulture));
            }
        }
        else return Fail(0x02, 0x00, req);

        if (!req.Transit) return new LoginAnswer(0, 0, false, req.CurrentStage, 0, [.. reply]);
        if (req.NextStage == 3) Complete = true;
        if (Parameters.FirstBurstLength > Parameters.MaxBurstLength) Parameters.FirstBurstLength = Parameters.MaxBurstLength;
        return new LoginAnswer(0, 0, true, req.CurrentStage, req.NextStage, [.. reply]);
    }

    private static bool IsOperationalKey(string key) => key is "HeaderDigest" or "DataDigest" or "MaxConnections" or "SendTargets"
        or "InitialR2T" or "ImmediateData" or "MaxRecvDataSegmentLength" or "MaxBurstLength" or "FirstBurstLength"
        or "DefaultTime2Wait" or "DefaultTime2Retain" or "MaxOutstandingR2T" or "DataPDUInOrder" or "DataSequenceInOrder"
        or "ErrorRecoveryLevel" or "IFMarker" or "OFMarker" or "OFMarkInt" or "IFMarkInt" or "TaskReporting" or "iSCSIProtocolLevel";

    /// <summary>Negotiates one operational key (§13); false only for a value so malformed the login must fail.</summary>
    private bool Negotiate(string key, string value, List<byte> reply)
    {
        if (value is "NotUnderstood" or "Irrelevant" or "Reject") return true; // an answer to something we offered
        string Num(long v) => v.ToString(CultureInfo.InvariantCulture);
        switch (key)
        {
            case "HeaderDigest" or "DataDigest":
                {
                    string? chosen = value.Split(',').FirstOrDefault(v => v is "None" or "CRC32C");
                    if (chosen is null) { TextKeys.Append(reply, key, "Reject"); return true; }
                    if (key == "HeaderDigest") Parameters.HeaderDigest = chosen == "CRC32C"; else Parameters.DataDigest = chosen == "CRC32C";
                    TextKeys.Append(reply, key, chosen);
                    return true;
                }
            case "MaxRecvDataSegmentLength":
                if (!TryNumber(value, 512, 16777215, out long mrdsl)) return false;
                Parameters.InitiatorMaxRecvDataSegment = (int)mrdsl;
                return true; // declarative; our own value is declared once per stage answer
            case "MaxBurstLength":
                if (!TryNumber(value, 512, 16777215, out long mbl)) { TextKeys.Append(reply, key, "Reject"); return true; }
                Parameters.MaxBurstLength = (int)Math.Min(mbl, _options.MaxBurstLength);
                TextKeys.Append(reply, key, Num(Parameters.MaxBurstLength));
                return true;
            case "FirstBurstLength":
                if (!TryNumber(value, 512, 16777215, out long fbl)) { TextKeys.Append(reply, key, "Reject"); return true; }
                Parameters.FirstBurstLength = (int)Math.Min(fbl, _options.FirstBurstLength);
                TextKeys.Append(reply, key, Num(Parameters.FirstBurstLength));
                return true;
            case "MaxConnections":
                if (!TryNumber(value, 1, 65535, out long mc)) { TextKeys.Append(reply, key, "Reject"); return true; }
                Parameters.MaxConnections = (int)Math.Min(mc, _options.MaxConnectionsPerSession);
                TextKeys.Append(reply, key, Num(Parameters.MaxConnections));
                return true;
            case "MaxOutstandingR2T":
                if (!TryNumber(value, 1, 65535, out long mor)) { TextKeys.Append(reply, key, "Reject"); return true; }
                Parameters.MaxOutstandingR2T = 1; // one R2T at a time per command is all we issue
                TextKeys.Append(reply, key, "1");
                return true;
            case "DefaultTime2Wait":
                if (!TryNumber(value, 0, 3600, out long t2w)) { TextKeys.Append(reply, key, "Reject"); return true; }
                TextKeys.Append(reply, key, Num(Math.Max(t2w, 2)));
                return true;
            case "DefaultTime2Retain":
                if (!TryNumber(value, 0, 3600, out _)) { TextKeys.Append(reply, key, "Reject"); return true; }
                TextKeys.Append(reply, key, "0"); // ErrorRecoveryLevel 0: nothing to retain
                return true;
            case "ErrorRecoveryLevel":
                if (!TryNumber(value, 0, 2, out _)) { TextKeys.Append(reply, key, "Reject"); return true; }
                TextKeys.Append(reply, key, "0");
                return true;
            case "InitialR2T":
                if (!TryBool(value, out bool ir2t)) { TextKeys.Append(reply, key, "Reject"); return true; }
                Parameters.InitialR2T = ir2t; // OR with our No
                TextKeys.Append(reply, key, ir2t ? "Yes" : "No");
                return true;
            case "ImmediateData":
                if (!TryBool(value, out bool imm)) { TextKeys.Append(reply, key, "Reject"); return true; }
                Parameters.ImmediateData = imm; // AND with our Yes
                TextKeys.Append(reply, key, imm ? "Yes" : "No");
                return true;
            case "DataPDUInOrder" or "DataSequenceInOrder":
                if (!TryBool(value, out _)) { TextKeys.Append(reply, key, "Reject"); return true; }
                TextKeys.Append(reply, key, "Yes"); // OR with our Yes
                return true;
            case "IFMarker" or "OFMarker":
                if (!TryBool(value, out _)) { TextKeys.Append(reply, key, "Reject"); return true; }
                TextKeys.Append(reply, key, "No"); // AND with our No
                return true;
            case "IFMarkInt" or "OFMarkInt":
                TextKeys.Append(reply, key, "Irrelevant");
                return true;
            case "TaskReporting":
                TextKeys.Append(reply, key, "RFC3720");
                return true;
            case "iSCSIProtocolLevel":
                if (!TryNumber(value, 0, 31, out long level)) { TextKeys.Append(reply, key, "Reject"); return true; }
                TextKeys.Append(reply, key, Num(Math.Min(level, 1)));
                return true;
            case "SendTargets":
                TextKeys.Append(reply, key, "Irrelevant");
                return true;
            default:
                TextKeys.Append(reply, key, "NotUnderstood");
                return true;
        }
    }

    private bool VerifyChap(string? name, string? response)
    {
        var chap = _options.Chap!;
        if (name is null || response is null || _chapChallenge is null) return false;
        if (!TryDecodeBinary(response, out var got) || got.Length != 16) return false;
        var input = new byte[1 + chap.Secret.Length + _chapChallenge.Length];
        input[0] = _chapId;
        chap.Secret.CopyTo(input.AsSpan(1));
        _chapChallenge.CopyTo(input.AsSpan(1 + chap.Secret.Length));
        byte[] expected = MD5.HashData(input);
        Array.Clear(input);
        bool nameOk = string.Equals(name, chap.User, StringComparison.Ordinal);
        return CryptographicOperations.FixedTimeEquals(expected, got) & nameOk;
    }

    /// <summary>Hex (0x...) or base64 (0b...) binary values (§6.1).</summary>
    internal static bool TryDecodeBinary(string value, out byte[] bytes)
    {
        bytes = [];
        try
        {
            if (value.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
            {
                string hex = value[2..];
                if (hex.Length % 2 == 1) hex = "0" + hex;
                bytes = Convert.FromHexString(hex);
                return true;
            }
            if (value.StartsWith("0b", StringComparison.OrdinalIgnoreCase))
            {
                bytes = Convert.FromBase64String(value[2..]);
                return true;
            }
        }
        catch (FormatException) { }
        return false;
    }

    private static bool TryNumber(string value, long min, long max, out long result) =>
        long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out result) && result >= min && result <= max;

    private static bool TryBool(string value, out bool result)
    {
        result = value == "Yes";
        return value is "Yes" or "No";
    }

    private static LoginAnswer Fail(byte cls, byte detail, LoginRequest req) => new(cls, detail, false, req.CurrentStage, req.NextStage, []);
}
