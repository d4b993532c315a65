using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http;

namespace PbsRestore.Server;

/// <summary>The outcome of checking a request's credentials.</summary>
public readonly record struct AuthResult(string? AuthId, string? Error)
{
    public bool Ok => AuthId is not null;
    public static AuthResult Success(string id) => new(id, null);
    public static AuthResult Fail(string message) => new(null, message);
}

/// <summary>
/// API tokens and users from the command line, and tickets. Our ticket is
/// <c>PBS:&lt;userid&gt;:&lt;8 upper-case hex epoch&gt;::&lt;signature&gt;</c> where the signature is the unpadded
/// base64url HMAC-SHA256, under a random key made at start, of everything before the "::". Upstream signs the
/// same text with the server's private key; ours is valid only for this process. The CSRF token is
/// <c>&lt;8 hex epoch&gt;:&lt;base64url HMAC-SHA256(key, "CSRF:" + hex epoch + ":" + userid)&gt;</c>.
/// Both are valid from 300 s before their time (clock skew, as upstream) until the ticket lifetime after it.
/// Secrets are compared in constant time and never logged.
/// </summary>
public sealed class Authenticator
{
    public const string CookieName = "PBSAuthCookie";
    public const string CsrfHeader = "CSRFPreventionToken";
    private const int AllowedSkewSeconds = 300;

    private readonly Dictionary<string, byte[]> _tokenHashes;
    private readonly Dictionary<string, byte[]> _passwordHashes;
    private readonly byte[] _key = RandomNumberGenerator.GetBytes(32);
    private readonly long _lifetime;
    private readonly TimeProvider _time;

    public Authenticator(ServerOptions options, TimeProvider? time = null)
    {
        _tokenHashes = options.Tokens.ToDictionary(kv => kv.Key, kv => Hash(kv.Value), StringComparer.Ordinal);
        _passwordHashes = options.Users.ToDictionary(kv => kv.Key, kv => Hash(kv.Value), StringComparer.Ordinal);
        _lifetime = (long)options.TicketLifetime.TotalSeconds;
        _time = time ?? TimeProvider.System;
    }

    private static byte[] Hash(string secret) => SHA256.HashData(Encoding.UTF8.GetBytes(secret));

    private static bool SecretEquals(byte[] expectedHash, string given) =>
        CryptographicOperations.FixedTimeEquals(expectedHash, Hash(given));

    private long Now => _time.GetUtcNow().ToUnixTimeSeconds();

    /// <summary>Checks the Authorization header (API token) or the ticket cookie (+ CSRF token for writes).</summary>
    public AuthResult Authenticate(HttpRequest request)
    {
        // Upstream looks only at a PBSAPIToken Authorization header; any other scheme is as if there were none.
        string? authorization = request.Headers.Authorization;
        if (!string.IsNullOrEmpty(authorization) && authorization.StartsWith("PBSAPIToken", StringComparison.Ordinal)
            && authorization.Length > 12 && authorization[11] is '=' or ' ')
            return CheckToken(authorization[12..].Trim());
        string? cookie = request.Cookies[CookieName];
        if (!string.IsNullOrEmpty(cookie))
        {
            if (cookie.Contains('%')) cookie = Uri.UnescapeDataString(cookie);
            var r = VerifyTicket(cookie);
            if (!r.Ok) return r;
            if (!HttpMethods.IsGet(request.Method) && !HttpMethods.IsHead(request.Method))
            {
                string? csrf = request.Headers[CsrfHeader];
                if (string.IsNullOrEmpty(csrf) || !VerifyCsrf(csrf, r.AuthId!))
                    return AuthResult.Fail("authentication failed - invalid CSRF token");
            }
            return r;
        }
        return AuthResult.Fail("authentication failed - no authentication credentials provided.");
    }

    private AuthResult CheckToken(string value)
    {
        // user@realm!tokenid:secret (the secret may be percent-encoded, as upstream's client sends it)
        int colon = value.IndexOf(':');
        if (colon <= 0) return AuthResult.Fail("authentication failed - invalid credentials");
        string id = value[..colon];
        string secret = value[(colon + 1)..];
        try { secret = Uri.UnescapeDataString(secret); }
        catch (UriFormatException) { return AuthResult.Fail("authentication failed - invalid credentials"); }
        if (id.IndexOf('!') <= 0) return AuthResult.Fail("authentication failed - invalid credentials");
        // Upstream's words for a token it does not know (it checks that the token is enabled before its secret).
        if (!_tokenHashes.TryGetValue(id, out var hash)) return AuthResult.Fail("authentication failed - user account or token disabled or expired.");
        if (!SecretEquals(hash, secret)) return AuthResult.Fail("authentication failed - invalid credentials");
        return AuthResult.Success(id);
    }

    /// <summary>Login with a password or renewal with a valid ticket of the same user (upstream's create_ticket).</summary>
    public AuthResult Login(string username, string password)
    {
        if (!_passwordHashes.TryGetValue(username, out var hash)) return AuthResult.Fail("permission check failed.");
        if (password.StartsWith("PBS:", StringComparison.Ordinal))
        {
            var r = VerifyTicket(password);
            return r.Ok && r.AuthId == username ? r : AuthResult.Fail("permission check failed.");
        }
        return SecretEquals(hash, password) ? AuthResult.Success(username) : AuthResult.Fail("permission check failed.");
    }

    public string CreateTicket(string userId)
    {
        string data = $"PBS:{userId}:{Now:X8}";
        return data + "::" + Sign(data);
    }

    public string CreateCsrfToken(string userId)
    {
        string stamp = Now.ToString("X8", CultureInfo.InvariantCulture);
        return stamp + ":" + Sign($"CSRF:{stamp}:{userId}");
    }

    private string Sign(string data) => Base64Url(HMACSHA256.HashData(_key, Encoding.UTF8.GetBytes(data)));

    private static string Base64Url(byte[] b) => Convert.ToBase64String(b).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    private bool SignatureMatches(string data, string signature) =>
        CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(Sign(data)), Encoding.ASCII.GetBytes(signature));

    private bool TimeValid(string hex, out string? error)
    {
        error = null;
        if (hex.Length != 8 || !long.TryParse(hex, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out long t))
        {
            error = "authentication failed - invalid ticket";
            return false;
        }
        long age = Now - t;
        if (age < -AllowedSkewSeconds) { error = "authentication failed - invalid ticket - timestamp newer than expected"; return false; }
        if (age > _lifetime) { error = "authentication failed - invalid ticket - expired"; return false; }
        return true;
    }

    public AuthResult VerifyTicket(string ticket)
    {
        // PBS:<userid>:<HEX>::<signature>
        int sep = ticket.LastIndexOf("::", StringComparison.Ordinal);
        if (!ticket.StartsWith("PBS:", StringComparison.Ordinal) || sep < 0)
            return AuthResult.Fail("authentication failed - invalid ticket");
        string data = ticket[..sep];
        string signature = ticket[(sep + 2)..];
        int lastColon = data.LastIndexOf(':');
        if (lastColon <= 4) return AuthResult.Fail("authentication failed - invalid ticket");
        string userId = data[4..lastColon];
        // Upstream's order (PBS 3.2.4): the signature decoded (base64), then the ticket's age, then the signature verified.
        if (signature.Length == 0 || !signature.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '+' or '/' or '='))
            return AuthResult.Fail("authentication failed - ticket with bad signature: invalid base64");
        if (!TimeValid(data[(lastColon + 1)..], out var error)) return AuthResult.Fail(error!);
        if (!SignatureMatches(data, signature)) return AuthResult.Fail("authentication failed - ticket with invalid signature");
        if (!_passwordHashes.ContainsKey(userId)) return AuthResult.Fail("authentication failed - invalid credentials");
        return AuthResult.Success(userId);
    }

    public bool VerifyCsrf(string token, string userId)
    {
        int colon = token.IndexOf(':');
        if (colon != 8) return false;
        string stamp = token[..8];
        return SignatureMatches($"CSRF:{stamp}:{userId}", token[9..]) && TimeValid(stamp, out _);
    }
}
