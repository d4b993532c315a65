using System.Globalization;

namespace PbsRestore.Sources.Remote;

/// <summary>The authentication headers of one request. <see cref="ToString"/> hides them: they are secrets.</summary>
internal readonly struct AuthHeaders(string? authorization, string? cookie, string? csrf)
{
    public string? Authorization { get; } = authorization;
    public string? Cookie { get; } = cookie;
    public string? CsrfToken { get; } = csrf;

    public override string ToString() => Authorization is not null ? "API token" : Cookie is not null ? "ticket" : "none";
}

/// <summary>A login answer: the ticket, its CSRF token, and when we asked for it (the issue time we track).</summary>
internal sealed class PbsTicket(string ticket, string csrf, long issuedTicks)
{
    public string Value { get; } = ticket;
    public string Csrf { get; } = csrf;
    /// <summary>A <see cref="TimeProvider"/> timestamp taken before the login request was sent: never later than the
    /// server's issue time, and immune to wall-clock jumps and to clock skew with the server.</summary>
    public long IssuedTicks { get; } = issuedTicks;

    /// <summary>
    /// Checks the ticket's shape, <c>PBS:user@realm:XXXXXXXX::signature</c> (8 hex digits = issue epoch), so a
    /// server that answers something else fails here instead of at the next request.
    /// </summary>
    public static bool LooksValid(string ticket)
    {
        var parts = ticket.Split(':');
        return parts.Length >= 4 && parts[0] == "PBS" && parts[2].Length == 8
               && uint.TryParse(parts[2], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out _);
    }

    public override string ToString() => "PBS ticket";
}

/// <summary>
/// How requests prove who they are: an API token (a fixed header) or a ticket obtained with a password and
/// renewed before it expires. Secrets stay inside; <see cref="Redact"/> scrubs them from any text that might
/// have picked them up (a server echoing a header) before that text goes into an exception.
/// </summary>
internal abstract class PbsAuth
{
    public abstract string AuthId { get; }

    /// <summary>Headers for the next request (renewing a ticket first when it is due).</summary>
    public abstract ValueTask<AuthHeaders> GetAsync(CancellationToken ct);

    /// <summary>After a 401 with <paramref name="used"/>: get fresh credentials if possible; true = worth retrying once.</summary>
    public virtual ValueTask<bool> RecoverAsync(AuthHeaders used, CancellationToken ct) => ValueTask.FromResult(false);

    public abstract string Redact(string text);

    private volatile string? _closedReason;

    /// <summary>
    /// Ends this authenticator for good: the secret (and a ticket) is zeroed and dropped, and every later request
    /// of the client, REST or reader, fails with NotConnected and <paramref name="reason"/>.
    /// </summary>
    public void Revoke(string reason)
    {
        _closedReason = reason;
        Forget();
    }

    /// <summary>Whether the secret is still held (false after <see cref="Revoke"/>).</summary>
    public abstract bool HoldsSecret { get; }

    /// <summary>Zeroes and drops the secret material.</summary>
    protected abstract void Forget();

    /// <summary>Throws NotConnected once revoked; call before using the secret.</summary>
    protected void ThrowIfRevoked()
    {
        if (_closedReason is { } reason) throw new PbsException("NotConnected", PbsErrorKind.InvalidArgument, reason);
    }

    public override string ToString() => AuthId;

    /// <summary>Logs in (password or current ticket) and returns the ticket and CSRF token.</summary>
    public delegate Task<(string Ticket, string Csrf)> LoginFunc(string userId, string password, CancellationToken ct);

    public static PbsAuth Create(PbsConnectionSettings settings, LoginFunc login, TimeSpan ticketLifetime, TimeProvider? clock = null)
    {
        var repo = settings.Repository;
        if (!settings.HasSecret)
            throw new PbsException("SecretMissing", PbsErrorKind.InvalidArgument, repo.IsToken
                ? $"no secret for API token {repo.AuthId}: give it with -Credential or set {PbsConnectionSettings.PasswordVariable}"
                : $"no password for {repo.AuthId}: give it with -Credential or set {PbsConnectionSettings.PasswordVariable}");
        return repo.IsToken
            ? new TokenAuth(repo.AuthId, settings.Secret!)
            : new TicketAuth(repo.AuthId, settings.Secret!, login, ticketLifetime, clock);
    }

    protected static string RedactAll(string text, params string?[] secrets)
    {
        foreach (var s in secrets)
            if (!string.IsNullOrEmpty(s) && s.Length >= 4)
            {
                text = text.Replace(s, "***", StringComparison.Ordinal);
                text = text.Replace(Uri.EscapeDataString(s), "***", StringComparison.Ordinal);
            }
        return text;
    }
}

/// <summary>
/// API token: <c>Authorization: PBSAPIToken=user@realm!token:secret</c> on every request, REST and upgrade. The
/// secret is percent-encoded as upstream's client does (the server decodes it), so any character is safe in it.
/// </summary>
internal sealed class TokenAuth : PbsAuth
{
    private readonly string _authId;
    // A char array, not a string, so that Revoke can zero it (a string cannot be cleared).
    private char[] _secret;

    public TokenAuth(string authId, string secret)
    {
        // The secret goes into a header line: control characters would break (or inject into) the request.
        if (secret.Any(char.IsControl))
            throw new PbsException("SecretInvalid", PbsErrorKind.InvalidArgument, $"the secret of API token {authId} contains control characters");
        _authId = authId;
        _secret = secret.Trim().ToCharArray();
    }

    public override string AuthId => _authId;

    public override ValueTask<AuthHeaders> GetAsync(CancellationToken ct)
    {
        ThrowIfRevoked();
        return ValueTask.FromResult(new AuthHeaders($"PBSAPIToken={_authId}:{Uri.EscapeDataString(new string(_secret))}", null, null));
    }

    public override string Redact(string text) => RedactAll(text, new string(_secret));

    public override bool HoldsSecret => _secret.Length > 0;

    protected override void Forget()
    {
        var secret = _secret;
        _secret = [];
        Array.Clear(secret);
    }
}

/// <summary>
/// Password login: <c>POST /access/ticket</c> gives a ticket (cookie PBSAuthCookie) and a CSRF token. PBS tickets
/// expire (2 h upstream); a restore can take longer, and every new reader connection authenticates again, so the
/// ticket is renewed — the same POST with the current ticket as password — once it is 3/4 through its lifetime.
/// If renewal fails or a request gets a 401 anyway (expired during a pause, server restarted with a new key), we
/// log in with the password again once.
/// </summary>
internal sealed class TicketAuth(string userId, string password, PbsAuth.LoginFunc login, TimeSpan lifetime, TimeProvider? clock = null) : PbsAuth
{
    // A char array, not the string, so that Revoke can zero it (a string cannot be cleared).
    private char[] _password = password.ToCharArray();
    private readonly TimeProvider _clock = clock ?? TimeProvider.System;
    private readonly SemaphoreSlim _lock = new(1, 1);
    private PbsTicket? _ticket;
    private int _renewals, _logins;

    public override string AuthId => userId;
    /// <summary>Renewals with the ticket (test hook).</summary>
    public int Renewals => Volatile.Read(ref _renewals);
    /// <summary>Logins with the password (test hook).</summary>
    public int Logins => Volatile.Read(ref _logins);

    private TimeSpan Age(PbsTicket t) => _clock.GetElapsedTime(t.IssuedTicks);
    private bool IsDue(PbsTicket t) => Age(t) >= lifetime * 0.75;

    public override async ValueTask<AuthHeaders> GetAsync(CancellationToken ct)
    {
        ThrowIfRevoked();
        var t = Volatile.Read(ref _ticket);
        if (t is null || IsDue(t)) t = await RefreshAsync(t, forcePassword: false, ct).ConfigureAwait(false);
        return Headers(t);
    }

    public override async ValueTask<bool> RecoverAsync(AuthHeaders used, CancellationToken ct)
    {
        ThrowIfRevoked();
        var t = Volatile.Read(ref _ticket);
        if (t is not null && Headers(t).Cookie != used.Cookie) return true; // someone already got a new one
        await RefreshAsync(t, forcePassword: true, ct).ConfigureAwait(false);
        return true;
    }

    private static AuthHeaders Headers(PbsTicket t) => new(null, "PBSAuthCookie=" + Uri.EscapeDataString(t.Value), t.Csrf);

    private async Task<PbsTicket> RefreshAsync(PbsTicket? seen, bool forcePassword, CancellationToken ct)
    {
        await _lock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            var current = _ticket;
            if (current is not null && !ReferenceEquals(current, seen) && !IsDue(current)) return current; // refreshed meanwhile
            PbsTicket? fresh = null;
            if (!forcePassword && current is not null && Age(current) < lifetime)
            {
                try
                {
                    fresh = await LoginAsync(current.Value, ct).ConfigureAwait(false);
                    Interlocked.Increment(ref _renewals);
                }
                catch (PbsException e) when (e.Kind == PbsErrorKind.Authentication)
                {
                    // Renewal refused (expired just now, or the server restarted): fall back to the password.
                }
            }
            if (fresh is null)
            {
                ThrowIfRevoked();
                fresh = await LoginAsync(new string(_password), ct).ConfigureAwait(false);
                Interlocked.Increment(ref _logins);
            }
            Volatile.Write(ref _ticket, fresh);
            return fresh;
        }
        finally
        {
            _lock.Release();
        }
    }

    private async Task<PbsTicket> LoginAsync(string secret, CancellationToken ct)
    {
        long started = _clock.GetTimestamp(); // before sending: never later than the server's issue time
        var (ticket, csrf) = await login(userId, secret, ct).ConfigureAwait(false);
        return new PbsTicket(ticket, csrf, started);
    }

    public override string Redact(string text) => RedactAll(text, new string(_password), _ticket?.Value, _ticket?.Csrf);

    public override bool HoldsSecret => _password.Length > 0 || Volatile.Read(ref _ticket) is not null;

    protected override void Forget()
    {
        var p = _password;
        _password = [];
        Array.Clear(p);
        Volatile.Write(ref _ticket, null);
    }
}
