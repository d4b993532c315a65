using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace PbsRestore.Sources.Remote;

/// <summary>
/// Opens TCP + TLS to the server and decides whether to trust it: the pinned fingerprint when one is given
/// (whatever the chain says, as upstream's client does), else the system store. Every refusal names the
/// certificate's actual fingerprint so the user can compare it with the server's. Used by both the REST client
/// and the reader sessions, so certificate errors look the same everywhere and are never accepted silently.
/// </summary>
internal sealed class TlsConnector(PbsRepository repository, CertificateFingerprint? pin)
{
    /// <summary>Seconds to wait for a server (connect + TLS handshake; REST answers get ten times as long), 1..3600.</summary>
    public const string TimeoutVariable = "PBS_RESTORE_TIMEOUT";

    /// <summary>
    /// Connect + TLS handshake (+ upgrade) must finish within this: 30 s, or PBS_RESTORE_TIMEOUT seconds, so that a
    /// server that accepts the connection and never answers fails with ConnectionTimeout instead of hanging.
    /// </summary>
    public static TimeSpan ConnectTimeout =>
        double.TryParse(Environment.GetEnvironmentVariable(TimeoutVariable), System.Globalization.NumberStyles.Float,
            System.Globalization.CultureInfo.InvariantCulture, out double s) && s is >= 1 and <= 3600
            ? TimeSpan.FromSeconds(s)
            : TimeSpan.FromSeconds(30);

    /// <summary>How long a REST request may wait for its answer: ten times <see cref="ConnectTimeout"/> (5 minutes by default).</summary>
    public static TimeSpan AnswerTimeout => ConnectTimeout * 10;

    public async Task<SslStream> ConnectAsync(CancellationToken ct)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(repository.Host, repository.Port, ct).ConfigureAwait(false);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new PbsException("ConnectionFailed", PbsErrorKind.Connection,
                $"cannot connect to {repository.Authority}: {e.Message}", e);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        PbsException? refusal = null;
        var ssl = new SslStream(new NetworkStream(socket, ownsSocket: true), leaveInnerStreamOpen: false);
        try
        {
            await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = repository.Host,
                // http/1.1 only: offering h2 makes the server speak plain HTTP/2 and the reader upgrade fails.
                ApplicationProtocols = [SslApplicationProtocol.Http11],
                RemoteCertificateValidationCallback = (_, cert, _, errors) =>
                {
                    refusal = Check(cert, errors);
                    return refusal is null;
                },
            }, ct).ConfigureAwait(false);
            return ssl;
        }
        catch (AuthenticationException e)
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            if (refusal is not null) throw refusal;
            throw new PbsException("TlsFailed", PbsErrorKind.Connection, $"TLS handshake with {repository.Authority} failed: {e.Message}", e);
        }
        catch (IOException e)
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw new PbsException("TlsFailed", PbsErrorKind.Connection, $"TLS handshake with {repository.Authority} failed: {e.Message}", e);
        }
        catch
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Null to accept; otherwise the error to report.</summary>
    internal PbsException? Check(X509Certificate? certificate, SslPolicyErrors errors)
    {
        if (certificate is null)
            return new PbsException("CertificateMissing", PbsErrorKind.Authentication, $"{repository.Authority} sent no TLS certificate");
        var actual = CertificateFingerprint.Of(certificate);
        if (pin is { } expected)
        {
            if (actual == expected) return null;
            return new PbsException("CertificateFingerprintMismatch", PbsErrorKind.Authentication,
                $"the TLS certificate of {repository.Authority} has fingerprint {actual}, not the expected {expected}. " +
                "If the server's certificate was renewed, check the new fingerprint on the server " +
                "(dashboard or 'proxmox-backup-manager cert info') and pass it with -Fingerprint or PBS_FINGERPRINT; " +
                "otherwise someone may be intercepting the connection.");
        }
        if (errors == SslPolicyErrors.None) return null;
        return new PbsException("CertificateUntrusted", PbsErrorKind.Authentication,
            $"the TLS certificate of {repository.Authority} is not trusted ({errors}); PBS servers usually have a self-signed one. " +
            $"Its SHA-256 fingerprint is {actual}: if that is what the server shows (dashboard or " +
            "'proxmox-backup-manager cert info'), pass it with -Fingerprint or PBS_FINGERPRINT.");
    }
}
