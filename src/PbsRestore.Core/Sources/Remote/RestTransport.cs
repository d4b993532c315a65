using System.Net;
using System.Net.Http.Headers;
using System.Runtime.ExceptionServices;
using System.Text.Json;

namespace PbsRestore.Sources.Remote;

/// <summary>
/// The REST side: HTTP/1.1 over our own TLS (<see cref="TlsConnector"/> in the handler's ConnectCallback, behind
/// an http:// base address), so certificate refusals surface as our <see cref="PbsException"/>s with the actual
/// fingerprint, exactly as for reader sessions. Unwraps PBS's <c>{"data": ...}</c> and maps errors.
/// </summary>
internal sealed class RestTransport : IDisposable
{
    public const string UserAgent = "proxmox-backup-client/1.0";
    private const long MaxJsonBytes = 64L << 20;

    private readonly HttpClient _http;
    private readonly PbsRepository _repository;

    public RestTransport(PbsRepository repository, TlsConnector tls)
    {
        _repository = repository;
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) => await tls.ConnectAsync(ct).ConfigureAwait(false),
            ConnectTimeout = TlsConnector.ConnectTimeout,
            UseCookies = false,          // the ticket cookie is set per request (it changes on renewal)
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(50),
        };
        _http = new HttpClient(handler)
        {
            BaseAddress = new Uri($"http://{repository.Authority}/"),
            Timeout = TlsConnector.AnswerTimeout,
        };
        _http.DefaultRequestHeaders.UserAgent.ParseAdd(UserAgent);
    }

    /// <summary>POST /access/ticket. Used for the first login and for renewals (password = current ticket).</summary>
    public async Task<(string Ticket, string Csrf)> LoginAsync(string userId, string password, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "api2/json/access/ticket")
        {
            Content = new FormUrlEncodedContent([new("username", userId), new("password", password)]),
        };
        string what = $"login to {_repository.Authority} as {userId}";
        using var response = await SendAsync(request, what, ct).ConfigureAwait(false);
        var body = await ReadBodyAsync(response, ct).ConfigureAwait(false);
        string Redact(string s) => password.Length >= 4 ? s.Replace(password, "***", StringComparison.Ordinal) : s;
        if (!response.IsSuccessStatusCode)
        {
            string msg = ServerError.MessageOf(body);
            // A login answers 401 (or 400 from some versions) to bad credentials.
            if (response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.BadRequest or HttpStatusCode.Forbidden)
                throw new PbsException("AuthenticationFailed", PbsErrorKind.Authentication,
                    $"{what} failed: {Redact(msg.Length > 0 ? msg : response.StatusCode.ToString())} (check the user, realm and password)");
            throw ServerError.Map(response.StatusCode, msg, what, "NotFound", Redact);
        }
        try
        {
            using var doc = JsonDocument.Parse(body);
            var data = doc.RootElement.GetProperty("data");
            string ticket = data.GetProperty("ticket").GetString() ?? "";
            string csrf = data.TryGetProperty("CSRFPreventionToken", out var c) ? c.GetString() ?? "" : "";
            if (!PbsTicket.LooksValid(ticket))
                throw new PbsException("AuthenticationFailed", PbsErrorKind.Authentication, $"{what}: the server's answer holds no valid ticket");
            return (ticket, csrf);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new PbsException("AuthenticationFailed", PbsErrorKind.Authentication, $"{what}: the server's answer is not a PBS ticket");
        }
    }

    /// <summary>GET a JSON API path (relative to /api2/json/) and return its "data" (cloned: the document is disposed).</summary>
    public async Task<JsonElement> GetDataAsync(string pathAndQuery, PbsAuth auth, string what, string notFoundId, CancellationToken ct)
    {
        for (int attempt = 0; ; attempt++)
        {
            var headers = await auth.GetAsync(ct).ConfigureAwait(false);
            using var request = new HttpRequestMessage(HttpMethod.Get, "api2/json/" + pathAndQuery);
            Apply(request.Headers, headers);
            using var response = await SendAsync(request, what, ct).ConfigureAwait(false);
            var body = await ReadBodyAsync(response, ct).ConfigureAwait(false);
            if (response.StatusCode == HttpStatusCode.Unauthorized && attempt == 0 && await auth.RecoverAsync(headers, ct).ConfigureAwait(false))
                continue;
            if (!response.IsSuccessStatusCode)
            {
                string msg = ServerError.MessageOf(body);
                throw ServerError.Map(response.StatusCode, msg, what, ServerError.NotFoundIdFor(msg, notFoundId), auth.Redact);
            }
            try
            {
                using var doc = JsonDocument.Parse(body);
                return doc.RootElement.GetProperty("data").Clone();
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
            {
                throw new PbsFormatException($"{what}: the server's answer is not PBS JSON ({e.Message})", "ServerAnswerInvalid");
            }
        }
    }

    /// <summary>Puts auth headers on a request (cookie + CSRF for tickets, Authorization for tokens).</summary>
    public static void Apply(HttpRequestHeaders target, AuthHeaders headers)
    {
        if (headers.Authorization is { } a) target.TryAddWithoutValidation("Authorization", a);
        if (headers.Cookie is { } c) target.TryAddWithoutValidation("Cookie", c);
        if (headers.CsrfToken is { Length: > 0 } t) target.TryAddWithoutValidation("CSRFPreventionToken", t);
    }

    private Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, string what, CancellationToken ct) =>
        Transport.SendAsync(_http, request, what, _repository.Authority, "ConnectionFailed", ct);

    private static async Task<byte[]> ReadBodyAsync(HttpResponseMessage response, CancellationToken ct)
    {
        if (response.Content.Headers.ContentLength > MaxJsonBytes)
            throw new PbsFormatException($"answer of {response.Content.Headers.ContentLength} bytes is larger than any PBS listing", "ServerAnswerInvalid");
        return await response.Content.ReadAsByteArrayAsync(ct).ConfigureAwait(false);
    }

    public void Dispose() => _http.Dispose();
}

/// <summary>Helpers shared by the REST and reader transports.</summary>
internal static class Transport
{
    /// <summary>The handler wraps ConnectCallback exceptions in HttpRequestException; find ours again.</summary>
    public static PbsException? Unwrap(Exception e)
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
            if (x is PbsException p) return p;
        return null;
    }

    /// <summary>
    /// Sends and maps transport failures to PbsExceptions: our own (TLS pinning, upgrade refusals) unwrapped,
    /// a broken connection as <paramref name="brokenId"/>, a timeout as ConnectionTimeout.
    /// </summary>
    /// <summary>Which limit ran out: a connect/handshake timeout surfaces as a TimeoutException inside.</summary>
    private static string TimeoutText(Exception e) =>
        e.InnerException is TimeoutException || e.GetBaseException() is TimeoutException
            ? $"{TlsConnector.ConnectTimeout.TotalSeconds:0} s"
            : "the request's time limit";

    public static async Task<HttpResponseMessage> SendAsync(HttpClient http, HttpRequestMessage request, string what, string authority,
        string brokenId, CancellationToken ct)
    {
        try
        {
            return await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct).ConfigureAwait(false);
        }
        catch (Exception e) when (Unwrap(e) is { } pbs)
        {
            ExceptionDispatchInfo.Throw(pbs);
            throw;
        }
        catch (HttpRequestException e)
        {
            throw new PbsException(brokenId, PbsErrorKind.Connection, $"{what}: {e.Message}", e);
        }
        catch (TaskCanceledException e) when (!ct.IsCancellationRequested)
        {
            throw new PbsException("ConnectionTimeout", PbsErrorKind.Connection,
                $"{what}: no answer from {authority} within {TimeoutText(e)} (set {TlsConnector.TimeoutVariable} to wait longer)", e);
        }
    }
}
