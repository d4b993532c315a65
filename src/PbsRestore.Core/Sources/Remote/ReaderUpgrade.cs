using System.Globalization;
using System.Net;
using System.Net.Security;
using System.Text;
using PbsRestore.Sources;

namespace PbsRestore.Sources.Remote;

/// <summary>
/// Opens one reader connection: TLS, then the HTTP/1.1 upgrade to <c>proxmox-backup-reader-protocol-v1</c>
/// (upstream src/api2/reader/mod.rs), then hands the TLS stream back for HTTP/2. The response head is read byte by
/// byte up to CRLFCRLF: the server may send its HTTP/2 SETTINGS right behind the 101, and a buffered reader would
/// swallow them. A refusal becomes a <see cref="PbsException"/> with the server's message.
/// </summary>
internal static class ReaderUpgrade
{
    public const string Protocol = "proxmox-backup-reader-protocol-v1";
    private const int MaxHeadBytes = 16 * 1024;
    private const int MaxErrorBodyBytes = 64 * 1024;

    public static string PathAndQuery(string store, SnapshotRef snapshot)
    {
        var q = new PbsClient.Query().Add("store", store);
        if (!snapshot.Namespace.IsRoot) q.Add("ns", snapshot.Namespace.ToString());
        q.Add("backup-type", snapshot.BackupType).Add("backup-id", snapshot.BackupId)
            .Add("backup-time", snapshot.BackupTimeEpoch.ToString(CultureInfo.InvariantCulture)).Add("debug", "false");
        return "/api2/json/reader" + q;
    }

    /// <summary>Connects and upgrades; retries once with fresh credentials after a 401 (an expired ticket).</summary>
    public static async Task<SslStream> ConnectAsync(PbsClient client, string store, SnapshotRef snapshot, CancellationToken ct)
    {
        for (int attempt = 0; ; attempt++)
        {
            var headers = await client.Auth.GetAsync(ct).ConfigureAwait(false);
            var stream = await client.Tls.ConnectAsync(ct).ConfigureAwait(false);
            try
            {
                var (status, message) = await UpgradeAsync(stream, client.Repository, store, snapshot, headers, ct).ConfigureAwait(false);
                if (status == 101) return stream;
                await stream.DisposeAsync().ConfigureAwait(false);
                if (status == 401 && attempt == 0 && await client.Auth.RecoverAsync(headers, ct).ConfigureAwait(false))
                    continue;
                string what = $"opening snapshot '{snapshot}' of datastore '{store}' on {client.Repository.Authority}";
                throw ServerError.Map((HttpStatusCode)status, message, what, ServerError.NotFoundIdFor(message, "SnapshotNotFound"), client.Auth.Redact);
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException)
            {
                await stream.DisposeAsync().ConfigureAwait(false);
                throw new PbsException("ConnectionFailed", PbsErrorKind.Connection,
                    $"reader upgrade with {client.Repository.Authority} failed: {e.Message}", e);
            }
            catch
            {
                await stream.DisposeAsync().ConfigureAwait(false);
                throw;
            }
        }
    }

    /// <summary>Sends the upgrade request and reads the answer's head; for a refusal also its (short) body.</summary>
    internal static async Task<(int Status, string Message)> UpgradeAsync(Stream stream, PbsRepository repo, string store,
        SnapshotRef snapshot, AuthHeaders auth, CancellationToken ct)
    {
        var sb = new StringBuilder();
        sb.Append("GET ").Append(PathAndQuery(store, snapshot)).Append(" HTTP/1.1\r\n");
        sb.Append("Host: ").Append(repo.Authority).Append("\r\n");
        sb.Append("Upgrade: ").Append(Protocol).Append("\r\n");
        sb.Append("Connection: upgrade\r\n");
        sb.Append("User-Agent: ").Append(RestTransport.UserAgent).Append("\r\n");
        if (auth.Authorization is { } a) sb.Append("Authorization: ").Append(a).Append("\r\n");
        if (auth.Cookie is { } c) sb.Append("Cookie: ").Append(c).Append("\r\n");
        if (auth.CsrfToken is { Length: > 0 } t) sb.Append("CSRFPreventionToken: ").Append(t).Append("\r\n");
        sb.Append("\r\n");
        await stream.WriteAsync(Encoding.ASCII.GetBytes(sb.ToString()), ct).ConfigureAwait(false);
        await stream.FlushAsync(ct).ConfigureAwait(false);

        var head = await ReadHeadAsync(stream, ct).ConfigureAwait(false);
        var lines = head.Split("\r\n");
        var statusParts = lines[0].Split(' ', 3);
        if (statusParts.Length < 2 || !statusParts[0].StartsWith("HTTP/1.", StringComparison.Ordinal)
            || !int.TryParse(statusParts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int status))
            throw new PbsException("ServerAnswerInvalid", PbsErrorKind.Connection, $"{repo.Authority} answered the reader upgrade with '{Cut(lines[0])}'");
        if (status == 101)
        {
            bool upgraded = lines.Any(l => l.StartsWith("Upgrade:", StringComparison.OrdinalIgnoreCase)
                                           && l.Contains(Protocol, StringComparison.OrdinalIgnoreCase));
            if (!upgraded)
                throw new PbsException("ServerAnswerInvalid", PbsErrorKind.Connection, $"{repo.Authority} switched to another protocol than {Protocol}");
            return (101, "");
        }
        var body = await ReadErrorBodyAsync(stream, lines, ct).ConfigureAwait(false);
        string message = ServerError.MessageOf(body);
        if (message.Length == 0 && statusParts.Length > 2) message = statusParts[2];
        return (status, message);
    }

    /// <summary>Byte by byte up to the blank line, so nothing after it is consumed.</summary>
    private static async Task<string> ReadHeadAsync(Stream stream, CancellationToken ct)
    {
        var head = new byte[MaxHeadBytes];
        var one = new byte[1];
        int n = 0;
        while (true)
        {
            int r = await stream.ReadAsync(one, ct).ConfigureAwait(false);
            if (r == 0)
                throw new IOException(n == 0 ? "the server closed the connection without answering" : "the server closed the connection in the middle of its answer");
            if (n == head.Length) throw new PbsException("ServerAnswerInvalid", PbsErrorKind.Connection, "the server's answer head is too large");
            head[n++] = one[0];
            if (n >= 4 && head[n - 4] == '\r' && head[n - 3] == '\n' && head[n - 2] == '\r' && head[n - 1] == '\n')
                return Encoding.ASCII.GetString(head, 0, n - 4);
        }
    }

    /// <summary>The refusal's body, for its message: by Content-Length, chunked, or until close (bounded in size and time).</summary>
    private static async Task<byte[]> ReadErrorBodyAsync(Stream stream, string[] headLines, CancellationToken ct)
    {
        string? Header(string name) => headLines.Skip(1).Where(l => l.StartsWith(name + ":", StringComparison.OrdinalIgnoreCase))
            .Select(l => l[(name.Length + 1)..].Trim()).FirstOrDefault();
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(TimeSpan.FromSeconds(3));
        var ms = new MemoryStream();
        var buf = new byte[4096];
        try
        {
            if (long.TryParse(Header("Content-Length"), NumberStyles.None, CultureInfo.InvariantCulture, out long length))
            {
                length = Math.Min(length, MaxErrorBodyBytes);
                while (ms.Length < length)
                {
                    int r = await stream.ReadAsync(buf.AsMemory(0, (int)Math.Min(buf.Length, length - ms.Length)), cts.Token).ConfigureAwait(false);
                    if (r == 0) break;
                    ms.Write(buf, 0, r);
                }
                return ms.ToArray();
            }
            while (ms.Length < MaxErrorBodyBytes)
            {
                int r = await stream.ReadAsync(buf, cts.Token).ConfigureAwait(false);
                if (r == 0) break;
                ms.Write(buf, 0, r);
                if (buf.AsSpan(0, r).EndsWith("0\r\n\r\n"u8)) break; // end of a chunked body
            }
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested) { } // keep what arrived
        catch (IOException) { }
        var bytes = ms.ToArray();
        return string.Equals(Header("Transfer-Encoding"), "chunked", StringComparison.OrdinalIgnoreCase) ? Dechunk(bytes) : bytes;
    }

    private static byte[] Dechunk(byte[] data)
    {
        var outp = new MemoryStream();
        int i = 0;
        while (i < data.Length)
        {
            int eol = data.AsSpan(i).IndexOf("\r\n"u8);
            if (eol < 0) break;
            string sizeText = Encoding.ASCII.GetString(data, i, eol).Split(';')[0].Trim();
            if (!int.TryParse(sizeText, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int size) || size == 0) break;
            i += eol + 2;
            size = Math.Min(size, data.Length - i);
            outp.Write(data, i, size);
            i += size + 2;
        }
        return outp.ToArray();
    }

    private static string Cut(string s) => s.Length > 100 ? s[..100] + "…" : s;
}
