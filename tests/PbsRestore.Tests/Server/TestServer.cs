using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Security;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;

namespace PbsRestore.Tests.Server;

/// <summary>
/// Runs the real PbsRestore.Server as a process (<c>dotnet PbsRestore.Server.dll ARGS</c>), reads its JSON line
/// (url + certificate fingerprint) and kills it on dispose. Reusable by any test that needs a PBS-like server:
/// <code>
/// await using var server = await TestServer.StartAsync("--datastore", "golden=" + TestPaths.GoldenPath("datastore"),
///     "--token", TestServer.DefaultToken);
/// using var http = server.CreateRestClient(TestServer.DefaultTokenHeader);
/// </code>
/// The server dll is taken from src/PbsRestore.Server/bin/&lt;same configuration as the tests&gt;/net10.0 (the test
/// project references the server project so it is built), or from PBS_TEST_SERVER_DLL.
/// </summary>
public sealed class TestServer : IAsyncDisposable
{
    public const string DefaultTokenId = "root@pam!test";
    public const string DefaultTokenSecret = "s3cret/with:odd+chars";
    /// <summary>For <c>--token</c>.</summary>
    public const string DefaultToken = DefaultTokenId + ":" + DefaultTokenSecret;
    /// <summary>The Authorization header value for <see cref="DefaultToken"/> (secret percent-encoded, as upstream's client sends it).</summary>
    public static string DefaultTokenHeader => $"PBSAPIToken={DefaultTokenId}:{Uri.EscapeDataString(DefaultTokenSecret)}";

    private readonly Process _process = null!;
    private readonly PbsRestore.Server.ServerHost? _host;
    private readonly StringBuilder _stderr = new();

    private TestServer(Process process, Uri url, string fingerprint)
    {
        _process = process;
        Url = url;
        Fingerprint = fingerprint;
    }

    private TestServer(PbsRestore.Server.ServerHost host)
    {
        _host = host;
        Url = new Uri(host.Url);
        Fingerprint = host.Fingerprint;
    }

    /// <summary>
    /// The same server in this process, its tickets issued and checked by <paramref name="clock"/>: a test moves the
    /// clock past a ticket lifetime instead of sleeping through it. No process: <see cref="StandardError"/> stays
    /// empty and <see cref="StopAsync"/> is not available.
    /// </summary>
    public static async Task<TestServer> StartInProcessAsync(TimeProvider clock, params string[] args) =>
        new(await PbsRestore.Server.ServerHost.StartAsync(PbsRestore.Server.ServerOptions.Parse(args), clock, consoleLog: false));

    /// <summary>https://127.0.0.1:PORT as the server printed it.</summary>
    public Uri Url { get; }
    /// <summary>SHA-256 of the server certificate, lower-case colon hex.</summary>
    public string Fingerprint { get; }
    public int Port => Url.Port;
    public int ProcessId => _process.Id;
    public bool HasExited => _process.HasExited;

    /// <summary>What the server wrote to stderr so far (its log).</summary>
    public string StandardError
    {
        get { lock (_stderr) return _stderr.ToString(); }
    }

    public static string ServerDll
    {
        get
        {
            var env = Environment.GetEnvironmentVariable("PBS_TEST_SERVER_DLL");
            if (!string.IsNullOrEmpty(env)) return env;
            string configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}") ? "Release" : "Debug";
            return Path.Combine(TestPaths.RepoRoot, "src", "PbsRestore.Server", "bin", configuration, "net10.0", "PbsRestore.Server.dll");
        }
    }

    /// <summary>Starts the server with <paramref name="args"/> and waits (up to 60 s) for its JSON line.</summary>
    public static async Task<TestServer> StartAsync(params string[] args)
    {
        string dll = ServerDll;
        if (!File.Exists(dll)) throw new FileNotFoundException($"server not built: {dll}");
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        var process = Process.Start(psi) ?? throw new InvalidOperationException("cannot start dotnet");
        var stderr = new StringBuilder();
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (stderr) stderr.AppendLine(e.Data); };
        process.BeginErrorReadLine();
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            string? line = await process.StandardOutput.ReadLineAsync(timeout.Token);
            if (line is null)
            {
                await process.WaitForExitAsync(timeout.Token);
                lock (stderr) throw new InvalidOperationException($"server exited ({process.ExitCode}) before printing its address: {stderr}");
            }
            using var doc = JsonDocument.Parse(line);
            var server = new TestServer(process, new Uri(doc.RootElement.GetProperty("url").GetString()!),
                doc.RootElement.GetProperty("fingerprint").GetString()!);
            // keep collecting its log
            lock (stderr) server._stderr.Append(stderr);
            process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (server._stderr) server._stderr.AppendLine(e.Data); };
            server.ExtraStdout = process.StandardOutput.ReadToEndAsync();
            return server;
        }
        catch
        {
            try { process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            process.Dispose();
            throw;
        }
    }

    /// <summary>Anything the server printed on stdout after the JSON line (should be nothing).</summary>
    public Task<string> ExtraStdout { get; private set; } = Task.FromResult("");

    /// <summary>Runs the server with <paramref name="args"/> until it exits (for --help and refused arguments).</summary>
    public static async Task<(int ExitCode, string Stdout, string Stderr)> RunToExitAsync(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(ServerDll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        return (p.ExitCode, await stdout, await stderr);
    }

    public static string FingerprintOf(X509Certificate certificate) =>
        string.Join(':', SHA256.HashData(certificate.GetRawCertData()).Select(b => b.ToString("x2")));

    /// <summary>A certificate check that accepts only this server's certificate.</summary>
    public bool IsPinned(X509Certificate? certificate) => certificate is not null && FingerprintOf(certificate) == Fingerprint;

    /// <summary>An HttpClient for the REST API (base address = server url), certificate pinned, optional Authorization header.</summary>
    public HttpClient CreateRestClient(string? authorization = null, CookieContainer? cookies = null)
    {
        var handler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions { RemoteCertificateValidationCallback = (_, c, _, _) => IsPinned(c) },
            UseCookies = cookies is not null,
            CookieContainer = cookies ?? new CookieContainer(),
        };
        var client = new HttpClient(handler) { BaseAddress = Url, Timeout = TimeSpan.FromSeconds(60) };
        if (authorization is not null) client.DefaultRequestHeaders.TryAddWithoutValidation("Authorization", authorization);
        return client;
    }

    [DllImport("libc", SetLastError = true, EntryPoint = "kill")]
    private static extern int SysKill(int pid, int signal);

    /// <summary>Asks the server to stop (SIGTERM on Unix, kill elsewhere) and returns its exit code.</summary>
    public async Task<int> StopAsync(TimeSpan timeout)
    {
        if (_host is not null) throw new NotSupportedException("an in-process server has no process to stop");
        if (!_process.HasExited)
        {
            if (OperatingSystem.IsWindows()) _process.Kill(entireProcessTree: true);
            else SysKill(_process.Id, 15);
        }
        using var cts = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(cts.Token);
        return _process.ExitCode;
    }

    public async ValueTask DisposeAsync()
    {
        if (_host is not null)
        {
            await _host.DisposeAsync();
            return;
        }
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }
        }
        catch (InvalidOperationException) { }
        _process.Dispose();
    }
}
