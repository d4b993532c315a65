using System.Net;

namespace PbsRestore.Publishing.Iscsi;

/// <summary>One logical unit of a target: its number (0..255), a display name (the archive), and the disk it serves.</summary>
public sealed record IscsiLun(int Number, string Name, IBlockDevice Device)
{
    /// <summary>Unit serial number reported in VPD page 80 (defaults to a stable hash of target name + LUN).</summary>
    public string? SerialNumber { get; init; }
}

/// <summary>
/// CHAP credentials the initiator must prove (target authenticates the initiator, RFC 7143 §12.1.3 / RFC 1994, MD5).
/// The secret is held as bytes, never printed (<see cref="ToString"/> masks it); <see cref="Dispose"/> clears it.
/// </summary>
public sealed class IscsiChapSecret : IDisposable
{
    private readonly byte[] _secret;

    public IscsiChapSecret(string user, ReadOnlySpan<char> secret)
    {
        ArgumentException.ThrowIfNullOrEmpty(user);
        // RFC 7143 §12.1.3: secrets shorter than 12 bytes are weak; RFC 3720 implementations (Windows) require 12..16.
        if (secret.Length is < 12 or > 255)
            throw new ArgumentException("The CHAP secret must be 12 to 255 characters long (Windows' initiator requires 12 to 16).", nameof(secret));
        User = user;
        _secret = new byte[System.Text.Encoding.UTF8.GetByteCount(secret)];
        System.Text.Encoding.UTF8.GetBytes(secret, _secret);
    }

    /// <summary>From a SecureString (a PSCredential's password); the plain copy is cleared right after use.</summary>
    public IscsiChapSecret(string user, System.Security.SecureString secret) : this(user, Unprotect(secret, out var chars))
        => Array.Clear(chars);

    private static ReadOnlySpan<char> Unprotect(System.Security.SecureString secret, out char[] chars)
    {
        ArgumentNullException.ThrowIfNull(secret);
        chars = new char[secret.Length];
        IntPtr p = System.Runtime.InteropServices.Marshal.SecureStringToGlobalAllocUnicode(secret);
        try { System.Runtime.InteropServices.Marshal.Copy(p, chars, 0, chars.Length); }
        finally { System.Runtime.InteropServices.Marshal.ZeroFreeGlobalAllocUnicode(p); }
        return chars;
    }

    /// <summary>The CHAP name the initiator must send (CHAP_N).</summary>
    public string User { get; }

    internal ReadOnlySpan<byte> Secret => _secret;

    public void Dispose() => Array.Clear(_secret);

    public override string ToString() => $"CHAP user '{User}' (secret hidden)";
}

/// <summary>What an <see cref="IscsiTarget"/> serves and the limits it enforces.</summary>
public sealed record IscsiTargetOptions
{
    /// <summary>Where to listen; loopback and a free port by default. Any non-loopback address requires
    /// <see cref="Chap"/> or <see cref="AllowedInitiators"/>.</summary>
    public IPEndPoint Listen { get; init; } = new(IPAddress.Loopback, 0);

    /// <summary>The target's iSCSI qualified name (iqn.yyyy-mm.reverse.domain:name).</summary>
    public required string TargetName { get; init; }

    /// <summary>Optional alias shown by initiators (TargetAlias).</summary>
    public string? TargetAlias { get; init; }

    /// <summary>The LUNs (at least one; numbers unique, 0..255).</summary>
    public required IReadOnlyList<IscsiLun> Luns { get; init; }

    /// <summary>When set, normal sessions must authenticate with CHAP as this user (discovery too).</summary>
    public IscsiChapSecret? Chap { get; init; }

    /// <summary>When set, only these initiator names (InitiatorName, case-insensitive) may log in to the target.</summary>
    public IReadOnlyList<string>? AllowedInitiators { get; init; }

    /// <summary>Most sessions at once (discovery sessions included); more logins are refused (too many connections).</summary>
    public int MaxSessions { get; init; } = 16;

    /// <summary>Most connections per session (MaxConnections offered).</summary>
    public int MaxConnectionsPerSession { get; init; } = 4;

    /// <summary>Largest data segment the target accepts in one PDU (its declared MaxRecvDataSegmentLength).</summary>
    public int MaxRecvDataSegmentLength { get; init; } = 256 * 1024;

    /// <summary>Largest burst (solicited or Data-In sequence) offered.</summary>
    public int MaxBurstLength { get; init; } = 1024 * 1024;

    /// <summary>Largest unsolicited burst (immediate + unsolicited Data-Out) offered.</summary>
    public int FirstBurstLength { get; init; } = 256 * 1024;

    /// <summary>Commands one session may have outstanding (the CmdSN window).</summary>
    public int CommandWindow { get; init; } = 32;

    /// <summary>A connection that has not completed login in this time is dropped.</summary>
    public TimeSpan LoginTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>A full-feature connection silent for this long gets a NOP-In ping; no answer in the same time drops it.</summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Diagnostics (logins, refusals, protocol errors). Never receives secrets. Called on target threads; must not block.</summary>
    public Action<IscsiDiagnostic>? Log { get; init; }
}

/// <summary>Severity of a diagnostic line.</summary>
public enum IscsiDiagnosticLevel { Debug, Info, Warning, Error }

/// <summary>One diagnostic line from the target.</summary>
public sealed record IscsiDiagnostic(DateTimeOffset Time, IscsiDiagnosticLevel Level, string Message, EndPoint? Remote);

/// <summary>A snapshot of the target's counters.</summary>
public sealed record IscsiTargetCounters(
    int ActiveSessions,
    long TotalSessions,
    int ActiveConnections,
    long LoginFailures,
    long Commands,
    long BytesRead,
    long BytesWritten,
    long CheckConditions,
    long ProtocolErrors);

/// <summary>A snapshot of one LUN's counters: SCSI commands addressed to it, bytes read and written through it, and
/// the block device failures reported as sense data (medium error, not ready, ...).</summary>
public sealed record IscsiLunCounters(int Lun, long Commands, long BytesRead, long BytesWritten, long DeviceErrors);
