using System.Net;
using System.Text;
using System.Text.Json;

namespace PbsRestore.Sources.Remote;

/// <summary>
/// Turns a server's non-2xx answer into a <see cref="PbsException"/> carrying the server's own message. PBS sends
/// either JSON <c>{"data":null,"message":"..."}</c> or plain text; both are handled. The message is cut to a
/// readable length and passed through the caller's redaction so a secret echoed by a server never gets out.
/// </summary>
internal static class ServerError
{
    private const int MaxMessage = 500;

    /// <summary>The server's message from an error body (JSON "message"/"errors", or the text itself).</summary>
    public static string MessageOf(ReadOnlySpan<byte> body)
    {
        string text = Encoding.UTF8.GetString(body.Length > 64 * 1024 ? body[..(64 * 1024)] : body).Trim();
        if (text.StartsWith('{'))
        {
            try
            {
                using var doc = JsonDocument.Parse(text);
                var root = doc.RootElement;
                string? message = root.TryGetProperty("message", out var m) && m.ValueKind == JsonValueKind.String ? m.GetString() : null;
                if (root.TryGetProperty("errors", out var errs) && errs.ValueKind == JsonValueKind.Object)
                    message = (message is null ? "" : message + ": ") +
                              string.Join("; ", errs.EnumerateObject().Select(p => $"{p.Name}: {p.Value}"));
                if (!string.IsNullOrWhiteSpace(message)) text = message.Trim();
            }
            catch (JsonException) { }
        }
        if (text.Length > MaxMessage) text = text[..MaxMessage] + "…";
        return text;
    }

    /// <summary>
    /// Maps a status: 401 → AuthenticationFailed, 403 → PermissionDenied, 404 or a 400 that says "not found"/"does
    /// not exist" → <paramref name="notFoundId"/> (a <see cref="PbsNotFoundException"/>), anything else → ServerError.
    /// </summary>
    public static PbsException Map(HttpStatusCode status, string message, string what, string notFoundId, Func<string, string> redact)
    {
        message = redact(message);
        int code = (int)status;
        string detail = message.Length > 0 ? message : status.ToString();
        return code switch
        {
            // Upstream's own 401 text already starts with "authentication failed": do not say it twice.
            401 => new PbsException("AuthenticationFailed", PbsErrorKind.Authentication,
                detail.StartsWith("authentication failed", StringComparison.OrdinalIgnoreCase) ? $"{what}: {detail}" : $"{what}: authentication failed: {detail}"),
            403 => new PbsException("PermissionDenied", PbsErrorKind.Authentication, $"{what}: permission denied: {detail}"),
            404 => new PbsNotFoundException(notFoundId, $"{what}: not found: {detail}"),
            400 when SaysNotFound(message) => new PbsNotFoundException(notFoundId, $"{what}: {detail}"),
            _ => new PbsException("ServerError", PbsErrorKind.Connection, $"{what}: HTTP {code}: {detail}"),
        };
    }

    public static bool SaysNotFound(string message) =>
        message.Contains("not found", StringComparison.OrdinalIgnoreCase)
        || message.Contains("does not exist", StringComparison.OrdinalIgnoreCase)
        || message.Contains("no such", StringComparison.OrdinalIgnoreCase)
        || message.Contains("not exist", StringComparison.OrdinalIgnoreCase);

    /// <summary>Which kind of thing a not-found message is about, for reader upgrades and listings.</summary>
    public static string NotFoundIdFor(string message, string fallback) =>
        message.Contains("namespace", StringComparison.OrdinalIgnoreCase) ? "NamespaceNotFound"
        : message.Contains("snapshot", StringComparison.OrdinalIgnoreCase) || message.Contains("backup", StringComparison.OrdinalIgnoreCase)
          || message.Contains("group", StringComparison.OrdinalIgnoreCase) ? fallback
        : message.Contains("datastore", StringComparison.OrdinalIgnoreCase) ? "DatastoreNotFound"
        : fallback;
}
