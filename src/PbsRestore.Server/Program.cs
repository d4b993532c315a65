using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using PbsRestore.Sources;
using PbsRestore.Sources.Local;

namespace PbsRestore.Server;

public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        ServerOptions options;
        try
        {
            options = ServerOptions.Parse(args);
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine("error: " + e.Message);
            return 2;
        }
        if (options.Help)
        {
            Console.Out.WriteLine(ServerOptions.Usage);
            return 0;
        }

        ServerHost host;
        try
        {
            host = await ServerHost.StartAsync(options);
        }
        catch (ServerStartException e)
        {
            Console.Error.WriteLine("error: " + e.Message);
            return e.ExitCode;
        }
        await using (host)
        {
            Console.Out.WriteLine($$"""{"url":"{{host.Url}}","fingerprint":"{{host.Fingerprint}}"}""");
            Console.Out.Flush();
            host.LogStart();
            await host.WaitForShutdownAsync();
        }
        return 0;
    }
}

/// <summary>Why the server could not start, and the exit code the program ends with (2: bad arguments, 1: cannot listen).</summary>
public sealed class ServerStartException(string message, int exitCode) : Exception(message)
{
    public int ExitCode { get; } = exitCode;
}

/// <summary>
/// The server, started: Kestrel listening, the datastores open. The program runs one and waits for SIGTERM; tests
/// can run one in their own process with a clock of their own (<paramref name="time"/> in <see cref="StartAsync"/>),
/// so that ticket lifetimes pass without waiting for them.
/// </summary>
public sealed class ServerHost : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly X509Certificate2 _certificate;
    private readonly ServerOptions _options;

    private ServerHost(WebApplication app, X509Certificate2 certificate, ServerOptions options, string url, int port, string fingerprint)
    {
        _app = app;
        _certificate = certificate;
        _options = options;
        Url = url;
        Port = port;
        Fingerprint = fingerprint;
    }

    /// <summary>https://host:port as it listens.</summary>
    public string Url { get; }
    public int Port { get; }
    /// <summary>SHA-256 of its certificate, lower-case colon hex.</summary>
    public string Fingerprint { get; }

    /// <summary>
    /// Starts the server. <paramref name="time"/>: the clock tickets are issued and checked by (the system clock when
    /// null). <paramref name="consoleLog"/>: log to stderr, as the program does (tests in-process pass false).
    /// </summary>
    public static async Task<ServerHost> StartAsync(ServerOptions options, TimeProvider? time = null, bool consoleLog = true)
    {
        var stores = new List<(string, LocalDatastore)>();
        foreach (var (name, folder) in options.Datastores)
        {
            try { stores.Add((name, new LocalDatastore(folder))); }
            catch (PbsException e)
            {
                throw new ServerStartException($"--datastore {name}: {e.Message}", 2);
            }
        }

        var certificate = CreateCertificate(options.Listen.Address);
        string fingerprint = Convert.ToHexString(SHA256.HashData(certificate.RawData)).ToLowerInvariant();
        fingerprint = string.Join(':', Enumerable.Range(0, fingerprint.Length / 2).Select(i => fingerprint.Substring(i * 2, 2)));

        // Our own arguments are not configuration: keep them away from the host's command-line provider.
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        builder.WebHost.UseKestrelHttpsConfiguration();
        builder.Logging.ClearProviders();
        if (consoleLog)
        {
            builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; });
            builder.Services.Configure<ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        }
        builder.Logging.SetMinimumLevel(LogLevel.Information);
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        builder.Logging.AddFilter("System", LogLevel.Warning);
        builder.Services.Configure<ConsoleLifetimeOptions>(o => o.SuppressStatusMessages = true);
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(5));

        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(new Datastores(stores));
        // The clock goes to the authenticator alone: Kestrel keeps the real one for its own timeouts.
        builder.Services.AddSingleton(sp => new Authenticator(sp.GetRequiredService<ServerOptions>(), time));
        builder.Services.AddSingleton<TrafficShaper>();
        builder.Services.AddSingleton<FaultInjector>();
        builder.Services.AddSingleton<ReaderSessionTransport>();
        builder.Services.AddSingleton<IConnectionListenerFactory>(sp => sp.GetRequiredService<ReaderSessionTransport>());
        builder.Services.AddSingleton<ReaderUpgrade>();
        builder.Services.AddSingleton<ReaderApi>();
        builder.Services.AddSingleton<RestApi>();

        ListenOptions? httpsListen = null;
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            // Upstream's client sends ":scheme https" on the cleartext HTTP/2 inside the TLS stream.
            k.AllowAlternateSchemes = true;
            // As upstream's reader: 32 MiB windows, 4 MiB frames (what we accept; what we send follows the client's SETTINGS).
            k.Limits.Http2.InitialConnectionWindowSize = 32 * 1024 * 1024;
            k.Limits.Http2.InitialStreamWindowSize = 32 * 1024 * 1024;
            k.Limits.Http2.MaxFrameSize = 4 * 1024 * 1024;
            k.Limits.Http2.MaxStreamsPerConnection = 256;
            // Let a handler hand a whole chunk to Kestrel without waiting for the socket (per request).
            k.Limits.MaxResponseBufferSize = 1024 * 1024;
            // An idle reader session is closed after this (GOAWAY); clients reconnect (a new session).
            k.Limits.KeepAliveTimeout = TimeSpan.FromMinutes(10);
            k.Listen(options.Listen, lo =>
            {
                httpsListen = lo;
                lo.Protocols = HttpProtocols.Http1; // ALPN offers http/1.1 only: HTTP/2 comes after the upgrade
                lo.UseHttps(certificate);
            });
            k.Listen(new ReaderSessionEndPoint(), lo => lo.Protocols = HttpProtocols.Http2);
        });

        var app = builder.Build();
        var rest = app.Services.GetRequiredService<RestApi>();
        var readerApi = app.Services.GetRequiredService<ReaderApi>();
        app.Run(context =>
        {
            if (context.Features.Get<IReaderSessionFeature>() is { } session)
                return readerApi.HandleAsync(context, session.Session);
            if (context.Request.IsHttps)
                return rest.HandleAsync(context);
            context.Response.StatusCode = 404;
            return Task.CompletedTask;
        });

        try
        {
            await app.StartAsync();
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or InvalidOperationException)
        {
            await app.DisposeAsync();
            certificate.Dispose();
            throw new ServerStartException($"cannot listen on {options.Listen}: {e.Message}", 1);
        }
        var bound = httpsListen?.IPEndPoint ?? options.Listen;
        string host = bound.Address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{bound.Address}]" : bound.Address.ToString();
        return new ServerHost(app, certificate, options, $"https://{host}:{bound.Port}", bound.Port, fingerprint);
    }

    /// <summary>Logs what the server serves and which faults it injects (after the JSON line).</summary>
    public void LogStart()
    {
        var options = _options;
        var log = _app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("PbsRestore.Server");
        log.LogInformation("listening on {Url}; datastores: {Stores}; {Tokens} token(s), {Users} user(s), ticket lifetime {Lifetime}s",
            Url, string.Join(", ", options.Datastores.Select(d => $"{d.Name}={d.Folder}")), options.Tokens.Count, options.Users.Count,
            (long)options.TicketLifetime.TotalSeconds);
        if (options.ChunkLatency > TimeSpan.Zero || options.MaxParallelReads is not null || options.BandwidthMbit is not null || options.ConnectionBandwidthMbit is not null)
            log.LogInformation("injection: chunk latency {Latency} ms, max parallel reads {Reads}, link {Link} Mbit/s, per connection {Connection} Mbit/s",
                options.ChunkLatency.TotalMilliseconds, options.MaxParallelReads?.ToString() ?? "unlimited",
                options.BandwidthMbit?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "unlimited",
                options.ConnectionBandwidthMbit?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "unlimited");
        var faults = _app.Services.GetRequiredService<FaultInjector>();
        if (faults.Enabled) log.LogInformation("fault injection: {Faults}", faults.Describe());
        if (options.Tokens.Count == 0 && options.Users.Count == 0)
            log.LogWarning("no --token and no --user given: every request will be refused");
    }

    /// <summary>Until the host is told to stop (SIGTERM, Ctrl+C).</summary>
    public Task WaitForShutdownAsync() => _app.WaitForShutdownAsync();

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
        _certificate.Dispose();
    }

    /// <summary>A self-signed certificate, made in memory at start (ECDSA P-256, CN=localhost, SAN localhost/127.0.0.1/::1).</summary>
    private static X509Certificate2 CreateCertificate(IPAddress listen)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName("localhost");
        san.AddIpAddress(IPAddress.Loopback);
        san.AddIpAddress(IPAddress.IPv6Loopback);
        if (!IPAddress.IsLoopback(listen) && !listen.Equals(IPAddress.Any) && !listen.Equals(IPAddress.IPv6Any)) san.AddIpAddress(listen);
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        var now = DateTimeOffset.UtcNow;
        using var ephemeral = request.CreateSelfSigned(now.AddDays(-1), now.AddYears(10));
        // A PKCS#12 round trip gives a certificate whose key every platform's TLS stack can use.
        return X509CertificateLoader.LoadPkcs12(ephemeral.Export(X509ContentType.Pkcs12), null);
    }
}
