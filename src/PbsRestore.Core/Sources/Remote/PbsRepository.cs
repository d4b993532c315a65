using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;

namespace PbsRestore.Sources.Remote;

/// <summary>
/// Where a PBS datastore is, in proxmox-backup-client's repository syntax
/// <c>[[user@realm[!token]@]host[:port]:]datastore</c> (upstream pbs-client/src/backup_repo.rs), e.g.
/// <c>root@pam!restore@pbs.example.com:8007:store1</c> or <c>root@pam@[::1]:store1</c>. Immutable; holds no secret,
/// so it can go into messages and listings as it is.
/// </summary>
public sealed partial class PbsRepository : IEquatable<PbsRepository>
{
    public const int DefaultPort = 8007;
    public const string DefaultHost = "localhost";
    /// <summary>proxmox-backup-client logs in as root@pam when the repository names no user.</summary>
    public const string DefaultAuthId = "root@pam";

    private readonly string? _authId, _host;
    private readonly int? _port;

    private PbsRepository(string? authId, string? host, int? port, string store)
    {
        _authId = authId;
        _host = host;
        _port = port;
        Store = store;
    }

    /// <summary>user@realm or user@realm!token: who logs in (root@pam when the repository names nobody).</summary>
    public string AuthId => _authId ?? DefaultAuthId;
    /// <summary>user@realm: the owning user, also of a token.</summary>
    public string UserId => IsToken ? AuthId[..AuthId.IndexOf('!')] : AuthId;
    /// <summary>An API token id (user@realm!name) logs in with its secret; a user with a password and a ticket.</summary>
    public bool IsToken => AuthId.Contains('!');
    /// <summary>The host as typed, without brackets for IPv6 (what TLS and DNS want).</summary>
    public string Host => _host ?? DefaultHost;
    public int Port => _port ?? DefaultPort;
    public string Store { get; }

    /// <summary>host:port for URLs and the Host header; IPv6 in brackets.</summary>
    public string Authority => $"{HostForUri}:{Port.ToString(CultureInfo.InvariantCulture)}";

    private string HostForUri => Host.Contains(':') ? $"[{Host}]" : Host;

    // Upstream's pieces: user names exclude whitespace, ':' and '/'; realms, token names and datastores are
    // "safe ids"; hosts are DNS names, IPv4, or IPv6 in brackets. Backtracking splits user@realm@host correctly
    // because a host never contains '@'.
    [GeneratedRegex(
        @"^(?:(?:(?<auth>[^\s:/@!\p{Cc}]+@[A-Za-z0-9_][A-Za-z0-9._\-]*(?:![A-Za-z0-9_][A-Za-z0-9._\-]*)?)@)?" +
        @"(?<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_](?:[A-Za-z0-9_.\-]*[A-Za-z0-9_])?)(?::(?<port>[0-9]{1,5}))?:)?" +
        @"(?<store>[A-Za-z0-9_][A-Za-z0-9._\-]{0,31})$", RegexOptions.CultureInvariant)]
    private static partial Regex Syntax();

    public static PbsRepository Parse(string text)
    {
        if (TryParse(text, out var repo, out string? why)) return repo;
        // user@host:store (a user without its realm) is the likeliest slip; say that rather than "syntax".
        string trimmed = text?.Trim() ?? "";
        int at = trimmed.LastIndexOf('@');
        if (at > 0 && !trimmed[..at].Contains('@') && !trimmed[..at].Any(c => char.IsWhiteSpace(c) || c is ':' or '/'))
            throw NoRealm(trimmed[..at]);
        throw new PbsException("RepositoryInvalid", PbsErrorKind.InvalidArgument,
            $"'{text}' is not a PBS repository ({why}); expected [[user@realm[!token]@]host[:port]:]datastore, " +
            "e.g. 'root@pam@pbs.example.com:store1' or 'root@pam!restore@[fd00::1]:8007:store1'");
    }

    /// <summary>UserWithoutRealm for a user name (or token id) given without its realm, e.g. 'root'.</summary>
    public static PbsException NoRealm(string user)
    {
        int bang = user.IndexOf('!');
        string name = bang < 0 ? user : user[..bang], token = bang < 0 ? "" : user[bang..];
        return new PbsException("UserWithoutRealm", PbsErrorKind.InvalidArgument,
            $"user '{user}' has no realm: use {name}@pam{token} or {name}@pbs{token}");
    }

    public static bool TryParse(string? text, out PbsRepository repository) => TryParse(text, out repository, out _);

    private static bool TryParse(string? text, out PbsRepository repository, out string why)
    {
        repository = null!;
        why = "";
        if (string.IsNullOrWhiteSpace(text)) { why = "empty"; return false; }
        var m = Syntax().Match(text.Trim());
        if (!m.Success) { why = "syntax"; return false; }
        string? host = m.Groups["host"].Success ? m.Groups["host"].Value : null;
        if (host is not null && host.StartsWith('['))
        {
            host = host[1..^1];
            if (!IPAddress.TryParse(host, out var ip) || ip.AddressFamily != AddressFamily.InterNetworkV6)
            {
                why = $"'{host}' is not an IPv6 address";
                return false;
            }
        }
        int? port = null;
        if (m.Groups["port"].Success)
        {
            int p = int.Parse(m.Groups["port"].Value, CultureInfo.InvariantCulture);
            if (p is < 1 or > 65535) { why = $"port {p} is out of range"; return false; }
            port = p;
        }
        repository = new PbsRepository(m.Groups["auth"].Success ? m.Groups["auth"].Value : null, host, port, m.Groups["store"].Value);
        return true;
    }

    /// <summary>
    /// As upstream prints a repository: with a user, everything is spelled out (user@host:port:store); without,
    /// only what was given. Parse(ToString()) gives an equal repository.
    /// </summary>
    public override string ToString() => (_authId, _host, _port) switch
    {
        ({ } auth, _, _) => $"{auth}@{Authority}:{Store}",
        (null, _, { }) => $"{Authority}:{Store}",
        (null, { }, null) => $"{HostForUri}:{Store}",
        _ => Store,
    };

    public bool Equals(PbsRepository? other) =>
        other is not null && AuthId == other.AuthId && string.Equals(Host, other.Host, StringComparison.OrdinalIgnoreCase)
        && Port == other.Port && Store == other.Store;

    public override bool Equals(object? obj) => Equals(obj as PbsRepository);
    public override int GetHashCode() => HashCode.Combine(AuthId, Host.ToLowerInvariant(), Port, Store);
}
