using System.Net;
using System.Runtime.CompilerServices;
using System.Net.Security;
using System.Net.Sockets;
using System.Text;

namespace PbsRestore.Tests.Server;

/// <summary>
/// TEST-ONLY reader-session client (the real one lives in src/PbsRestore.Core/Remote): SocketsHttpHandler whose
/// ConnectCallback opens TCP (NoDelay), TLS (pinned, ALPN http/1.1 only), sends the upgrade request, reads the
/// 101 head byte by byte and returns the TLS stream; HttpClient then speaks HTTP/2 with prior knowledge on it.
/// </summary>
public static class ReaderTestClient
{
    public const string Protocol = "proxmox-backup-reader-protocol-v1";

    public static string Query(string store, string type, string id, long time, string? ns = null) =>
        $"store={Uri.EscapeDataString(store)}&backup-type={type}&backup-id={Uri.EscapeDataString(id)}&backup-time={time}" +
        (string.IsNullOrEmpty(ns) ? "" : $"&ns={Uri.EscapeDataString(ns)}") + "&debug=false";

    public sealed record UpgradeAnswer(int Status, string Head, string Body, Stream? Stream);

    /// <summary>Opens TLS to the server and sends the upgrade request; on 101 returns the stream, else the status and body.</summary>
    public static Task<UpgradeAnswer> UpgradeAsync(TestServer server, string query, string authorization, CancellationToken ct = default) =>
        UpgradeAsync(server.Url, server.IsPinned, query, authorization, ct);

    /// <summary>The same for any PBS-like server at <paramref name="url"/> (the genuine one too), pinned by <paramref name="isPinned"/>.</summary>
    public static async Task<UpgradeAnswer> UpgradeAsync(Uri url, Func<System.Security.Cryptography.X509Certificates.X509Certificate?, bool> isPinned,
        string query, string authorization, CancellationToken ct = default)
    {
        var server = (Url: url, Port: url.Port);
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(new IPEndPoint(IPAddress.Parse(server.Url.Host), server.Port), ct);
            var ssl = new SslStream(new NetworkStream(socket, ownsSocket: true), leaveInnerStreamOpen: false);
            await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = "localhost",
                ApplicationProtocols = [SslApplicationProtocol.Http11],
                RemoteCertificateValidationCallback = (_, c, _, _) => isPinned(c),
            }, ct);
            string request =
                $"GET /api2/json/reader?{query} HTTP/1.1\r\n" +
                $"Host: {server.Url.Host}:{server.Port}\r\n" +
                $"Upgrade: {Protocol}\r\n" +
                "Connection: upgrade\r\n" +
                $"{(authorization.StartsWith("PBSAuthCookie=", StringComparison.Ordinal) ? "Cookie" : "Authorization")}: {authorization}\r\n" +
                "User-Agent: proxmox-backup-client/1.0\r\n\r\n";
            await ssl.WriteAsync(Encoding.ASCII.GetBytes(request), ct);
            await ssl.FlushAsync(ct);

            // The head, byte by byte: HTTP/2 bytes may follow the 101 directly.
            var head = new List<byte>(256);
            var one = new byte[1];
            while (head.Count < 4 || !(head[^4] == '\r' && head[^3] == '\n' && head[^2] == '\r' && head[^1] == '\n'))
            {
                if (head.Count > 16384) throw new HttpRequestException("upgrade answer head too long");
                if (await ssl.ReadAsync(one, ct) == 0) throw new HttpRequestException("connection closed during the upgrade answer");
                head.Add(one[0]);
            }
            string headText = Encoding.ASCII.GetString(head.ToArray());
            string statusLine = headText[..headText.IndexOf('\r')];
            int status = int.Parse(statusLine.Split(' ')[1]);
            if (status == 101) return new UpgradeAnswer(status, headText, "", ssl);
            int length = 0;
            foreach (var line in headText.Split("\r\n"))
                if (line.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase)) length = int.Parse(line[15..].Trim());
            var body = new byte[length];
            await ssl.ReadExactlyAsync(body, ct);
            await ssl.DisposeAsync();
            return new UpgradeAnswer(status, headText, Encoding.UTF8.GetString(body), null);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A stream window larger than any chunk of the injection datastore (1 MiB + header), for tests that fetch one chunk
    /// at a time: Kestrel can lose the response that follows one which spanned several stream windows, when that one's
    /// late WINDOW_UPDATEs arrive after its end (seen as a 60 s hang about once in 15 runs of the fault tests;
    /// dotnet/aspnetcore#53736, open). Those tests are about our server's flags, not about that; the restore client
    /// recovers from it by its stall timeout.
    /// </summary>
    public const int WholeChunkWindow = 8 << 20;

    /// <summary>An HttpClient whose every connection is a new reader session; <paramref name="connections"/> counts them.</summary>
    public static HttpClient Create(TestServer server, string query, string authorization, StrongBox<int>? connections = null, int streamWindow = 1 << 20) =>
        Create(server.Url, server.IsPinned, query, authorization, connections, streamWindow);

    /// <summary>The same for any PBS-like server at <paramref name="url"/> (the genuine one too).</summary>
    public static HttpClient Create(Uri url, Func<System.Security.Cryptography.X509Certificates.X509Certificate?, bool> isPinned, string query, string authorization,
        StrongBox<int>? connections = null, int streamWindow = 1 << 20)
    {
        var server = (Url: url, Port: url.Port);
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var answer = await UpgradeAsync(url, isPinned, query, authorization, ct);
                if (answer.Status != 101) throw new HttpRequestException($"upgrade refused: {answer.Head.Split('\r')[0]} {answer.Body}");
                if (connections is not null) Interlocked.Increment(ref connections.Value);
                return answer.Stream!;
            },
            InitialHttp2StreamWindowSize = streamWindow,
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5),
        };
        return new HttpClient(handler)
        {
            BaseAddress = new Uri($"http://{server.Url.Host}:{server.Port}/"),
            DefaultRequestVersion = HttpVersion.Version20,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Timeout = TimeSpan.FromMinutes(5),
        };
    }
}
