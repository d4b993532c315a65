using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using PbsRestore.Sources.Remote;
using PbsRestore.Sources;

namespace PbsRestore.Tests.Remote;

/// <summary>Client pieces that need no server: certificate decisions, tickets, the upgrade head, error bodies.</summary>
public sealed class RemoteUnitTests
{
    private static X509Certificate2 SelfSigned()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest("CN=pbs-test", key, HashAlgorithmName.SHA256);
        return req.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
    }

    private static string Fp(X509Certificate2 c) => string.Join(':', SHA256.HashData(c.RawData).Select(b => b.ToString("x2")));

    [Fact]
    public void Pinned_fingerprint_accepts_a_self_signed_certificate()
    {
        using var cert = SelfSigned();
        var tls = new TlsConnector(PbsRepository.Parse("h:s"), CertificateFingerprint.Parse(Fp(cert).ToUpperInvariant()));
        Assert.Null(tls.Check(cert, SslPolicyErrors.RemoteCertificateChainErrors));
    }

    [Fact]
    public void Wrong_pin_is_refused_showing_the_actual_fingerprint()
    {
        using var cert = SelfSigned();
        var wrong = CertificateFingerprint.Parse(string.Join(':', Enumerable.Repeat("ab", 32)));
        var tls = new TlsConnector(PbsRepository.Parse("h:s"), wrong);
        var e = tls.Check(cert, SslPolicyErrors.None);
        Assert.NotNull(e);
        Assert.Equal("CertificateFingerprintMismatch", e.ErrorId);
        Assert.Equal(PbsErrorKind.Authentication, e.Kind);
        Assert.Contains(Fp(cert), e.Message);
    }

    [Fact]
    public void Untrusted_certificate_without_pin_suggests_the_fingerprint()
    {
        using var cert = SelfSigned();
        var tls = new TlsConnector(PbsRepository.Parse("h:s"), null);
        var e = tls.Check(cert, SslPolicyErrors.RemoteCertificateChainErrors);
        Assert.NotNull(e);
        Assert.Equal("CertificateUntrusted", e.ErrorId);
        Assert.Contains(Fp(cert), e.Message);
        Assert.Contains("-Fingerprint", e.Message);
        Assert.Null(tls.Check(cert, SslPolicyErrors.None)); // trusted by the system store: fine
    }

    private static (string, string) Ticket(string value) => ($"PBS:root@pam:{DateTimeOffset.UtcNow.ToUnixTimeSeconds():X8}::{value}", "csrf-" + value);

    /// <summary>A clock the test moves by hand.</summary>
    private sealed class ManualClock : TimeProvider
    {
        public long Ticks;
        public override long TimestampFrequency => TimeSpan.TicksPerSecond;
        public override long GetTimestamp() => Ticks;
        public void Advance(TimeSpan by) => Ticks += by.Ticks;
    }

    [Fact]
    public async Task Ticket_is_renewed_with_itself_at_three_quarters_of_its_lifetime()
    {
        var calls = new List<string>();
        int n = 0;
        var clock = new ManualClock();
        var auth = new TicketAuth("root@pam", "the-password", (user, pw, _) =>
        {
            calls.Add(pw == "the-password" ? "password" : pw.StartsWith("PBS:") ? "ticket" : "?");
            return Task.FromResult(Ticket("sig" + n++));
        }, TimeSpan.FromSeconds(400), clock);
        var first = await auth.GetAsync(default);
        Assert.Contains("PBSAuthCookie=PBS%3Aroot%40pam%3A", first.Cookie);
        Assert.Equal("csrf-sig0", first.CsrfToken);
        Assert.Equal(first.Cookie, (await auth.GetAsync(default)).Cookie); // still fresh
        clock.Advance(TimeSpan.FromSeconds(290));
        Assert.Equal(first.Cookie, (await auth.GetAsync(default)).Cookie); // < 3/4 of 400 s
        clock.Advance(TimeSpan.FromSeconds(20));                            // > 3/4
        var second = await auth.GetAsync(default);
        Assert.NotEqual(first.Cookie, second.Cookie);
        Assert.Equal(["password", "ticket"], calls);
        Assert.Equal(1, auth.Renewals);
        Assert.Equal(1, auth.Logins);
    }

    [Fact]
    public async Task Expired_ticket_falls_back_to_the_password_and_401_recovers()
    {
        var calls = new List<string>();
        var clock = new ManualClock();
        var auth = new TicketAuth("root@pam", "the-password", (user, pw, _) =>
        {
            calls.Add(pw == "the-password" ? "password" : "ticket");
            return Task.FromResult(Ticket("x" + calls.Count));
        }, TimeSpan.FromSeconds(100), clock);
        await auth.GetAsync(default);
        clock.Advance(TimeSpan.FromSeconds(150));                      // past the lifetime: renewing with the ticket makes no sense
        await auth.GetAsync(default);
        Assert.Equal(["password", "password"], calls);
        var used = await auth.GetAsync(default);
        Assert.True(await auth.RecoverAsync(used, default));
        Assert.Equal(3, calls.Count);
    }

    [Fact]
    public void Auth_objects_never_show_secrets()
    {
        var token = new TokenAuth("root@pam!t", "0123-secret-4567");
        Assert.DoesNotContain("secret", token.ToString());
        Assert.Equal("x *** y", token.Redact("x 0123-secret-4567 y"));
        var ticket = new TicketAuth("root@pam", "pass-word-99", (_, _, _) => Task.FromResult(Ticket("z")), TimeSpan.FromHours(2));
        Assert.DoesNotContain("pass-word-99", ticket.ToString());
        Assert.Equal("***", ticket.Redact("pass-word-99"));
        Assert.DoesNotContain("secret", new AuthHeaders("PBSAPIToken=a:0123-secret-4567", null, null).ToString());
    }

    /// <summary>The char array a token or ticket authenticator keeps its secret in (read by reflection: it is private).</summary>
    private static char[] SecretArray(PbsAuth auth, string field) =>
        (char[])auth.GetType().GetField(field, System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!.GetValue(auth)!;

    [Fact]
    public async Task Revoke_zeroes_the_secret_and_every_later_request_fails_with_NotConnected()
    {
        var token = new TokenAuth("root@pam!t", "0123-secret-4567");
        var tokenChars = SecretArray(token, "_secret");
        Assert.Equal("0123-secret-4567", new string(tokenChars));
        var ticket = new TicketAuth("root@pam", "pass-word-99", (_, _, _) => Task.FromResult(Ticket("z")), TimeSpan.FromHours(2));
        var passwordChars = SecretArray(ticket, "_password");
        await ticket.GetAsync(default); // holds a ticket now too
        foreach (var auth in new PbsAuth[] { token, ticket })
        {
            Assert.True(auth.HoldsSecret);
            auth.Revoke("the connection to h:8007 was closed by Disconnect-PbsServer");
            Assert.False(auth.HoldsSecret);
            var e = await Assert.ThrowsAsync<PbsException>(async () => await auth.GetAsync(default));
            Assert.Equal("NotConnected", e.ErrorId);
            Assert.Equal("the connection to h:8007 was closed by Disconnect-PbsServer", e.Message);
        }
        // The very arrays that held the secrets are zeroed, not just dropped.
        Assert.All(tokenChars, c => Assert.Equal('\0', c));
        Assert.All(passwordChars, c => Assert.Equal('\0', c));
        Assert.Empty(SecretArray(token, "_secret"));
        Assert.Empty(SecretArray(ticket, "_password"));
    }

    [Fact]
    public void Missing_secret_is_an_error_naming_the_variable()
    {
        var s = PbsConnectionSettings.Resolve("root@pam!t@h:s", null, null, _ => null);
        var e = Assert.Throws<PbsException>(() => new PbsClient(s));
        Assert.Equal("SecretMissing", e.ErrorId);
        Assert.Contains("PBS_PASSWORD", e.Message);
    }

    /// <summary>A stream that plays back a fixed answer and records what is written.</summary>
    private sealed class ScriptedStream(byte[] answer) : Stream
    {
        private int _pos;
        public MemoryStream Written { get; } = new();
        public int Remaining => answer.Length - _pos;
        public override int Read(byte[] buffer, int offset, int count)
        {
            int n = Math.Min(count, answer.Length - _pos);
            Array.Copy(answer, _pos, buffer, offset, n);
            _pos += n;
            return n;
        }
        public override void Write(byte[] buffer, int offset, int count) => Written.Write(buffer, offset, count);
        public override void Flush() { }
        public override bool CanRead => true;
        public override bool CanWrite => true;
        public override bool CanSeek => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }

    private static readonly SnapshotRef Snap = new(BackupNamespace.Parse("a/b"), "vm", "100", DateTimeOffset.FromUnixTimeSeconds(1714557600));

    [Fact]
    public async Task Upgrade_reads_the_head_only_and_leaves_http2_bytes_behind()
    {
        byte[] settings = [0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100];
        var answer = Encoding.ASCII.GetBytes("HTTP/1.1 101 Switching Protocols\r\nUpgrade: proxmox-backup-reader-protocol-v1\r\nConnection: upgrade\r\n\r\n")
            .Concat(settings).ToArray();
        var stream = new ScriptedStream(answer);
        var (status, _) = await ReaderUpgrade.UpgradeAsync(stream, PbsRepository.Parse("root@pam!t@[::1]:8007:store"), "store", Snap,
            new AuthHeaders("PBSAPIToken=root@pam!t:s3cr3t", null, null), default);
        Assert.Equal(101, status);
        Assert.Equal(settings.Length, stream.Remaining);
        string request = Encoding.ASCII.GetString(stream.Written.ToArray());
        Assert.StartsWith("GET /api2/json/reader?store=store&ns=a%2Fb&backup-type=vm&backup-id=100&backup-time=1714557600&debug=false HTTP/1.1\r\n", request);
        Assert.Contains("\r\nHost: [::1]:8007\r\n", request);
        Assert.Contains("\r\nUpgrade: proxmox-backup-reader-protocol-v1\r\n", request);
        Assert.Contains("\r\nConnection: upgrade\r\n", request);
        Assert.Contains("\r\nAuthorization: PBSAPIToken=root@pam!t:s3cr3t\r\n", request);
        Assert.EndsWith("\r\n\r\n", request);
    }

    [Theory]
    [InlineData("HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 54\r\n\r\n{\"data\":null,\"message\":\"snapshot vm/100 not found xx\"}", 400, "snapshot vm/100 not found xx")]
    [InlineData("HTTP/1.1 401 Unauthorized\r\nContent-Length: 20\r\n\r\nauthentication fail.", 401, "authentication fail.")]
    [InlineData("HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", 404, "hello world")]
    [InlineData("HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n\r\n", 500, "Internal Server Error")]
    public async Task Upgrade_refusal_carries_the_servers_message(string answer, int expectedStatus, string expectedMessage)
    {
        var stream = new ScriptedStream(Encoding.ASCII.GetBytes(answer));
        var (status, message) = await ReaderUpgrade.UpgradeAsync(stream, PbsRepository.Parse("h:s"), "s", Snap, default, default);
        Assert.Equal(expectedStatus, status);
        Assert.Equal(expectedMessage, message);
    }

    [Fact]
    public void Error_mapping()
    {
        Assert.Equal("AuthenticationFailed", ServerError.Map(System.Net.HttpStatusCode.Unauthorized, "no", "x", "N", s => s).ErrorId);
        var nf = ServerError.Map(System.Net.HttpStatusCode.BadRequest, "backup dir does not exist", "x", "SnapshotNotFound", s => s);
        Assert.IsType<PbsNotFoundException>(nf);
        Assert.Equal("SnapshotNotFound", nf.ErrorId);
        Assert.Equal("ServerError", ServerError.Map(System.Net.HttpStatusCode.BadRequest, "parameter verification failed", "x", "N", s => s).ErrorId);
        Assert.Equal("m", ServerError.MessageOf("{\"data\":null,\"message\":\"m\"}"u8));
        Assert.Equal("plain text", ServerError.MessageOf("plain text\n"u8));
        Assert.Equal("DatastoreNotFound", ServerError.NotFoundIdFor("datastore 'x' does not exist", "SnapshotNotFound"));
        Assert.Equal("SnapshotNotFound", ServerError.NotFoundIdFor("snapshot not found in datastore 'x'", "SnapshotNotFound"));
    }
}
