using System.Diagnostics;
using System.Net;
using System.Runtime.CompilerServices;
using System.Text.Json;
using PbsRestore.Formats;

namespace PbsRestore.Tests.Server;

/// <summary>
/// The fault injection flags (--drop-after-chunks, --corrupt-*, --chunk-status, --chunk-error-rate, --stall-*,
/// --ticket-expire-after) through the real process and the reader session client. Time assertions are lower bounds.
/// </summary>
// Not alongside other test classes: these start several servers and count responses on a busy 2-core machine.
[Collection(nameof(ServerFaultInjectionCollection))]
public sealed class ServerFaultInjectionTests(InjectionDatastoreFixture store) : IClassFixture<InjectionDatastoreFixture>
{
    private Task<TestServer> StartAsync(params string[] flags) =>
        TestServer.StartAsync(["--datastore", "bench=" + store.Store, "--token", TestServer.DefaultToken, .. flags]);

    private async Task<HttpClient> SessionAsync(TestServer server, StrongBox<int>? connections = null)
    {
        var http = ReaderTestClient.Create(server, store.Query, TestServer.DefaultTokenHeader, connections, ReaderTestClient.WholeChunkWindow);
        http.Timeout = TimeSpan.FromSeconds(60); // a hung response fails in a minute, not five
        await http.GetByteArrayAsync("download?file-name=drive-scsi0.img.fidx");
        return http;
    }

    private byte[] OnDisk(ChunkDigest d) =>
        File.ReadAllBytes(Path.Combine(store.Store, ".chunks", d.ToString()[..4], d.ToString()));

    private static async Task<byte[]> FetchAsync(HttpClient http, ChunkDigest digest)
    {
        using var response = await http.GetAsync($"chunk?digest={digest}");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return await response.Content.ReadAsByteArrayAsync();
    }

    private static bool CrcFails(byte[] blob)
    {
        try
        {
            DataBlob.VerifyCrc(blob, DataBlob.GetKind(blob));
            return false;
        }
        catch (PbsIntegrityException)
        {
            return true;
        }
    }

    private static void AtLeast(TimeSpan expected, TimeSpan actual, string what) =>
        Assert.True(actual >= expected - TimeSpan.FromMilliseconds(1), $"{what}: took {actual.TotalMilliseconds:F1} ms, expected at least {expected.TotalMilliseconds:F1} ms");

    [Fact]
    public async Task Drop_after_chunks_aborts_each_connection_after_its_nth_response()
    {
        await using var server = await StartAsync("--drop-after-chunks", "3");
        var connections = new StrongBox<int>();
        using var http = await SessionAsync(server, connections);
        for (int i = 0; i < 3; i++) Assert.Equal(OnDisk(store.Digests[i]), await FetchAsync(http, store.Digests[i]));
        // The 4th request on that connection is held, then dies with the connection; on a loaded machine it may be
        // sent only after the abort, on a new connection that refuses it (no index there yet). Either way it fails.
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => http.GetByteArrayAsync($"chunk?digest={store.Digests[3]}"));
        Assert.InRange(connections.Value, 1, 2);

        // The next request opens a new session (its own count, nothing registered yet).
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync($"chunk?digest={store.Digests[3]}")).StatusCode);
        Assert.Equal(2, connections.Value);
        await http.GetByteArrayAsync("download?file-name=drive-scsi0.img.fidx");
        for (int i = 3; i < 6; i++) Assert.Equal(OnDisk(store.Digests[i]), await FetchAsync(http, store.Digests[i]));
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => http.GetByteArrayAsync($"chunk?digest={store.Digests[6]}"));
        Assert.InRange(connections.Value, 2, 3);
        Assert.Contains("aborting the connection after 3 chunk responses", server.StandardError);
        Assert.DoesNotContain(TestServer.DefaultTokenSecret, server.StandardError);
    }

    [Fact]
    public async Task Corrupt_chunk_flips_one_payload_byte_in_transit_only()
    {
        var bad = store.Digests[0];
        await using var server = await StartAsync("--corrupt-chunk", bad.ToString());
        using var http = await SessionAsync(server);
        for (int round = 0; round < 2; round++)
        {
            byte[] disk = OnDisk(bad), got = await FetchAsync(http, bad);
            Assert.Equal(disk.Length, got.Length);
            var diffs = Enumerable.Range(0, disk.Length).Where(i => disk[i] != got[i]).ToList();
            Assert.Single(diffs);
            Assert.True(diffs[0] >= 12, $"flipped byte {diffs[0]} is in the header");
            Assert.True(CrcFails(got));
            Assert.False(CrcFails(disk)); // the file is untouched
        }
        Assert.Equal(OnDisk(store.Digests[1]), await FetchAsync(http, store.Digests[1]));
        Assert.Contains($"chunk {bad} (response 1): flipped byte", server.StandardError);
    }

    private async Task<List<bool>> CorruptedPatternAsync(params string[] flags)
    {
        await using var server = await StartAsync(flags);
        using var http = await SessionAsync(server);
        var pattern = new List<bool>();
        foreach (var d in store.Digests)
        {
            byte[] got = await FetchAsync(http, d);
            pattern.Add(!OnDisk(d).SequenceEqual(got));
        }
        return pattern;
    }

    [Fact]
    public async Task Corrupt_rate_is_deterministic_with_the_seed()
    {
        var all = await CorruptedPatternAsync("--corrupt-rate", "1");
        Assert.All(all, Assert.True);
        var a = await CorruptedPatternAsync("--corrupt-rate", "0.5", "--corrupt-seed", "42");
        var b = await CorruptedPatternAsync("--corrupt-rate=0.5", "--corrupt-seed=42");
        Assert.Equal(a, b);
        Assert.Contains(true, a);
        Assert.Contains(false, a);
    }

    [Fact]
    public async Task Chunk_status_answers_a_pbs_like_json_error()
    {
        await using var server = await StartAsync("--chunk-status", $"{store.Digests[0]}=404", $"--chunk-status={store.Digests[1]}=500");
        using var http = await SessionAsync(server);
        foreach (var (d, status) in new[] { (store.Digests[0], HttpStatusCode.NotFound), (store.Digests[1], HttpStatusCode.InternalServerError) })
        {
            using var response = await http.GetAsync($"chunk?digest={d}");
            Assert.Equal(status, response.StatusCode);
            Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
            Assert.Contains(d.ToString(), await response.Content.ReadAsStringAsync()); // the plain message, as PBS sends errors
        }
        Assert.Equal(OnDisk(store.Digests[2]), await FetchAsync(http, store.Digests[2]));
        Assert.Contains($"chunk {store.Digests[0]}: answering 404", server.StandardError);
        Assert.Contains($"chunk {store.Digests[1]}: answering 500", server.StandardError);
    }

    private async Task<List<int>> StatusPatternAsync(params string[] flags)
    {
        await using var server = await StartAsync(flags);
        using var http = await SessionAsync(server);
        var pattern = new List<int>();
        foreach (var d in store.Digests)
        {
            using var response = await http.GetAsync($"chunk?digest={d}");
            pattern.Add((int)response.StatusCode);
            if (response.StatusCode == HttpStatusCode.OK) Assert.Equal(OnDisk(d), await response.Content.ReadAsByteArrayAsync());
            else Assert.Contains(d.ToString(), await response.Content.ReadAsStringAsync());
        }
        return pattern;
    }

    [Fact]
    public async Task Chunk_error_rate_is_deterministic_with_the_seed()
    {
        Assert.All(await StatusPatternAsync("--chunk-error-rate", "1"), s => Assert.Equal(500, s));
        var a = await StatusPatternAsync("--chunk-error-rate", "0.5", "--fault-seed", "7");
        var b = await StatusPatternAsync("--chunk-error-rate", "0.5", "--fault-seed", "7");
        Assert.Equal(a, b);
        Assert.Contains(500, a);
        Assert.Contains(200, a);
        // Without --fault-seed, --corrupt-seed seeds the errors too.
        var c = await StatusPatternAsync("--chunk-error-rate", "0.5", "--corrupt-seed", "7");
        Assert.Equal(a, c);
    }

    [Fact]
    public async Task Stall_sends_headers_and_first_bytes_then_waits()
    {
        const int ms = 400;
        await using var server = await StartAsync("--stall-chunk-ms", $"{ms}", "--stall-every", "2");
        using var http = await SessionAsync(server);
        for (int i = 0; i < 4; i++)
        {
            var d = store.Digests[i];
            var sw = Stopwatch.StartNew();
            using var response = await http.GetAsync($"chunk?digest={d}", HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var afterHeaders = sw.Elapsed;
            await using var body = await response.Content.ReadAsStreamAsync();
            var first = new byte[1];
            await body.ReadExactlyAsync(first);
            var rest = new MemoryStream();
            rest.Write(first);
            await body.CopyToAsync(rest);
            Assert.Equal(OnDisk(d), rest.ToArray());
            if (i % 2 == 1) AtLeast(TimeSpan.FromMilliseconds(ms), sw.Elapsed - afterHeaders, $"stalled response {i + 1} after its headers");
        }
        Assert.Contains($"(response 2): stalling {ms} ms after 4096 bytes", server.StandardError);
        Assert.Contains($"(response 4): stalling {ms} ms", server.StandardError);
        Assert.DoesNotContain("(response 1): stalling", server.StandardError);
        Assert.DoesNotContain("(response 3): stalling", server.StandardError);
    }

    [Fact]
    public async Task Ticket_expire_after_refuses_an_old_ticket_for_the_reader()
    {
        var clock = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.FromUnixTimeSeconds(1_800_000_000));
        await using var server = await TestServer.StartInProcessAsync(clock,
            "--datastore", "bench=" + store.Store, "--token", TestServer.DefaultToken, "--user", "carol@pbs:pw", "--ticket-expire-after", "2");
        using var rest = server.CreateRestClient();
        var login = await rest.PostAsync("/api2/json/access/ticket", new FormUrlEncodedContent(
            new Dictionary<string, string> { ["username"] = "carol@pbs", ["password"] = "pw" }));
        login.EnsureSuccessStatusCode();
        using var doc = JsonDocument.Parse(await login.Content.ReadAsStringAsync());
        string cookie = "PBSAuthCookie=" + Uri.EscapeDataString(doc.RootElement.GetProperty("data").GetProperty("ticket").GetString()!);

        var fresh = await ReaderTestClient.UpgradeAsync(server, store.Query, cookie);
        Assert.Equal(101, fresh.Status);
        fresh.Stream!.Dispose();
        clock.Advance(TimeSpan.FromSeconds(3.5)); // the server's clock (in-process): no sleeping through the 2 s
        var old = await ReaderTestClient.UpgradeAsync(server, store.Query, cookie);
        Assert.Equal(401, old.Status);
        Assert.Contains("expired", old.Body);
    }

    [Fact]
    public async Task Fault_flags_in_help_and_checked()
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(TestServer.ServerDll);
        psi.ArgumentList.Add("--help");
        using (var p = Process.Start(psi)!)
        {
            string text = await p.StandardOutput.ReadToEndAsync();
            await p.WaitForExitAsync();
            Assert.Equal(0, p.ExitCode);
            foreach (var flag in new[] { "--drop-after-chunks", "--corrupt-chunk", "--corrupt-rate", "--corrupt-seed", "--chunk-status",
                         "--chunk-error-rate", "--fault-seed", "--stall-chunk-ms", "--stall-every", "--ticket-expire-after" })
                Assert.Contains(flag, text);
        }
        foreach (var bad in new[]
                 {
                     new[] { "--drop-after-chunks", "0" }, new[] { "--corrupt-chunk", "abc" }, new[] { "--corrupt-rate", "1.5" },
                     new[] { "--corrupt-seed", "x" }, new[] { "--chunk-status", $"{store.Digests[0]}=403" }, new[] { "--chunk-error-rate", "-1" },
                     new[] { "--fault-seed", "1.5" }, new[] { "--stall-chunk-ms", "-1" }, new[] { "--stall-every", "2" },
                     new[] { "--ticket-expire-after", "0" },
                 })
        {
            psi.ArgumentList.Clear();
            foreach (var a in (string[])[TestServer.ServerDll, "--datastore", "bench=" + store.Store, .. bad]) psi.ArgumentList.Add(a);
            using var p = Process.Start(psi)!;
            string err = await p.StandardError.ReadToEndAsync();
            await p.WaitForExitAsync();
            Assert.Equal(2, p.ExitCode);
            Assert.Contains(bad[0], err);
        }
        // Off by default: no fault is logged and the bytes are the disk's.
        await using var server = await StartAsync();
        using var http = await SessionAsync(server);
        foreach (var d in store.Digests.Take(4)) Assert.Equal(OnDisk(d), await FetchAsync(http, d));
        Assert.DoesNotContain("fault", server.StandardError);
    }
}

[CollectionDefinition(nameof(ServerFaultInjectionCollection), DisableParallelization = true)]
public sealed class ServerFaultInjectionCollection;
