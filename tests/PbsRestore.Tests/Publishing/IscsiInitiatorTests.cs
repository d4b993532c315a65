using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using PbsRestore.Publishing;
using PbsRestore.Publishing.Iscsi;

namespace PbsRestore.Tests.Publishing;

/// <summary>A fact that needs native tools on PATH; skipped, with the Debian package to install, when one is missing.</summary>
public sealed class ToolFactAttribute : FactAttribute
{
    public ToolFactAttribute(string package, params string[] tools)
    {
        var missing = tools.Where(t => Tools.Find(t) is null).ToArray();
        if (missing.Length > 0) Skip = $"{string.Join(", ", missing)} not found on PATH (Debian package {package})";
    }
}

internal static class Tools
{
    public static string? Find(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator)
            .Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);

    /// <summary>Runs a tool to completion (bounded); returns exit code and stdout+stderr.</summary>
    public static async Task<(int Code, string Output)> RunAsync(string tool, IEnumerable<string> args, TimeSpan? timeout = null)
    {
        var psi = new ProcessStartInfo(Find(tool) ?? tool) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromMinutes(3));
        try { await p.WaitForExitAsync(cts.Token); }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{tool} {string.Join(' ', args)} did not finish in time");
        }
        return (p.ExitCode, await stdout + await stderr);
    }
}

/// <summary>
/// Independent initiators from Debian against the target in this process: libiscsi's tools (iscsi-inq,
/// iscsi-readcapacity16, iscsi-ls, and its conformance suite iscsi-test-cu) and qemu through libiscsi (qemu-img,
/// qemu-io). The Linux kernel initiator cannot run in this container (no iscsi_tcp module, no NETLINK_ISCSI), so it
/// has no test here.
/// </summary>
public sealed class IscsiInitiatorTests : IDisposable
{
    private const string Iqn = "iqn.2024-01.org.pbsrestore:initiators";
    private readonly string _dir = Directory.CreateTempSubdirectory("pbs-iscsi-").FullName;
    private readonly List<string> _log = [];

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string RandomDisk(int mib, string name = "disk.img")
    {
        string path = Path.Combine(_dir, name);
        var data = new byte[mib << 20];
        new Random(mib).NextBytes(data);
        data.AsSpan(0, 1 << 20).Clear(); // some zeros too
        File.WriteAllBytes(path, data);
        return path;
    }

    private Task<IscsiTarget> Start(IBlockDevice device, IscsiChapSecret? chap = null) => IscsiTarget.StartAsync(new IscsiTargetOptions
    {
        TargetName = Iqn,
        Luns = [new IscsiLun(0, "disk", device)],
        Chap = chap,
        Log = d => { lock (_log) _log.Add(d.Message); },
    });

    private static string Url(IscsiTarget t, string? auth = null) => $"iscsi://{auth}127.0.0.1:{t.LocalEndPoint.Port}/{t.TargetName}/0";

    [ToolFact("libiscsi-bin", "iscsi-inq", "iscsi-readcapacity16")]
    public async Task Iscsi_inq_and_readcapacity16_show_sane_values()
    {
        using var device = new FileBlockDevice(RandomDisk(8));
        await using var target = await Start(device);
        var inq = await Tools.RunAsync("iscsi-inq", [Url(target)]);
        Assert.True(inq.Code == 0, inq.Output);
        Assert.Contains("Peripheral Device Type:DIRECT_ACCESS", inq.Output);
        Assert.Contains("Vendor:PBSRSTOR", inq.Output);
        Assert.Contains("Version Descriptor:04c0 SBC-3", inq.Output);
        var vpd = await Tools.RunAsync("iscsi-inq", ["-e", "1", Url(target)]);
        Assert.Contains("Page:0xb0 BLOCK_LIMITS", vpd.Output);
        var cap = await Tools.RunAsync("iscsi-readcapacity16", [Url(target)]);
        Assert.True(cap.Code == 0, cap.Output);
        Assert.Contains($"RETURNED LOGICAL BLOCK ADDRESS:{(8 << 20) / 512 - 1}", cap.Output);
        Assert.Contains("LOGICAL BLOCK LENGTH IN BYTES:512", cap.Output);
        Assert.Contains($"Total size:{8 << 20}", cap.Output);
    }

    [ToolFact("libiscsi-bin", "iscsi-ls")]
    public async Task Iscsi_ls_discovers_the_target_and_its_lun()
    {
        await using var target = await Start(new MemoryBlockDevice(4 << 20));
        var ls = await Tools.RunAsync("iscsi-ls", ["-s", $"iscsi://127.0.0.1:{target.LocalEndPoint.Port}"]);
        Assert.True(ls.Code == 0, ls.Output);
        Assert.Contains($"Target:{Iqn} Portal:127.0.0.1:{target.LocalEndPoint.Port},1", ls.Output);
        Assert.Contains("Lun:0", ls.Output);
        Assert.Contains("DIRECT_ACCESS", ls.Output);
    }

    [ToolFact("libiscsi-bin", "iscsi-ls", "iscsi-inq")]
    public async Task With_chap_the_right_secret_logs_in_and_a_wrong_one_is_refused_without_the_secret_in_any_log()
    {
        const string secret = "s3cret-for-chap-test";
        using var chap = new IscsiChapSecret("alice", secret);
        await using var target = await Start(new MemoryBlockDevice(4 << 20), chap);
        string portal = $"127.0.0.1:{target.LocalEndPoint.Port}";

        var good = await Tools.RunAsync("iscsi-ls", ["-s", $"iscsi://alice%{secret}@{portal}"]);
        Assert.True(good.Code == 0, good.Output);
        Assert.Contains($"Target:{Iqn}", good.Output);
        Assert.Contains("Lun:0", good.Output);

        var inq = await Tools.RunAsync("iscsi-inq", [Url(target, $"alice%{secret}@")]);
        Assert.Contains("Vendor:PBSRSTOR", inq.Output);

        long failuresBefore = target.Counters.LoginFailures;
        var bad = await Tools.RunAsync("iscsi-inq", [Url(target, "alice%wrong-secret-123@")]);
        Assert.DoesNotContain("Vendor:PBSRSTOR", bad.Output);
        var none = await Tools.RunAsync("iscsi-ls", [$"iscsi://{portal}"]);
        Assert.DoesNotContain($"Target:{Iqn}", none.Output);
        Assert.True(target.Counters.LoginFailures >= failuresBefore + 2);
        lock (_log)
        {
            Assert.Contains(_log, m => m.Contains("authentication failure"));
            Assert.DoesNotContain(_log, m => m.Contains(secret) || m.Contains("wrong-secret"));
        }
    }

    [ToolFact("libiscsi-bin", "iscsi-test-cu")]
    public async Task Libiscsi_conformance_suite_has_no_failures()
    {
        string path = Path.Combine(_dir, "conformance.img");
        using (var f = File.Create(path)) f.SetLength(64 << 20);
        using var device = new FileBlockDevice(path);
        await using var target = await Start(device);
        var run = await Tools.RunAsync("iscsi-test-cu", ["--dataloss", "--test=ALL", Url(target)], TimeSpan.FromMinutes(5));
        var summary = Regex.Match(run.Output, @"tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)");
        Assert.True(summary.Success, run.Output[^Math.Min(4000, run.Output.Length)..]);
        int ran = int.Parse(summary.Groups[2].Value), failed = int.Parse(summary.Groups[4].Value);
        var failing = Regex.Matches(run.Output, @"Test: (\S+) \.\.\.(?:(?!Test: ).)*?(?<![\[\w])FAILED(?![\]\w])", RegexOptions.Singleline)
            .Select(m => m.Groups[1].Value);
        Assert.True(failed == 0, $"iscsi-test-cu: {failed} of {ran} failed: {string.Join(", ", failing)}");
        Assert.True(ran >= 200, $"only {ran} tests ran");
    }

    [ToolFact("qemu-utils + qemu-block-extra", "qemu-img")]
    public async Task Qemu_img_reads_the_disk_back_bit_exactly_with_and_without_header_digests()
    {
        string source = RandomDisk(24);
        using var device = new FileBlockDevice(source, readOnly: true);
        await using var target = await Start(device);
        string expected = Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(source)));

        string plain = Path.Combine(_dir, "plain.raw");
        var r = await Tools.RunAsync("qemu-img", ["convert", "-f", "raw", "-O", "raw", Url(target), plain]);
        Assert.True(r.Code == 0, r.Output);
        Assert.DoesNotContain("failed", r.Output); // e.g. GET LBA STATUS refused while LBPME is advertised
        Assert.Equal(expected, Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(plain))));

        string digest = Path.Combine(_dir, "digest.raw");
        r = await Tools.RunAsync("qemu-img", ["convert", "-O", "raw", "--image-opts",
            $"driver=iscsi,transport=tcp,portal=127.0.0.1:{target.LocalEndPoint.Port},target={Iqn},lun=0,header-digest=crc32c", digest]);
        Assert.True(r.Code == 0, r.Output);
        Assert.Equal(expected, Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(digest))));
        Assert.True(target.Counters.BytesRead >= 2L * (24 << 20) - 2 * (1 << 20)); // qemu may skip zero ranges it learns of; most bytes came over iSCSI
    }

    [ToolFact("qemu-utils + qemu-block-extra", "qemu-img")]
    public async Task Four_initiators_at_once_all_read_bit_exactly()
    {
        string source = RandomDisk(16);
        using var device = new FileBlockDevice(source, readOnly: true);
        await using var target = await Start(device);
        string expected = Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(source)));
        var runs = Enumerable.Range(0, 4).Select(i =>
            Tools.RunAsync("qemu-img", ["convert", "-f", "raw", "-O", "raw", Url(target), Path.Combine(_dir, $"copy{i}.raw")])).ToArray();
        foreach (var r in await Task.WhenAll(runs)) Assert.True(r.Code == 0, r.Output);
        for (int i = 0; i < 4; i++)
            Assert.Equal(expected, Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(Path.Combine(_dir, $"copy{i}.raw")))));
        Assert.True(target.Counters.TotalSessions >= 4);
    }

    [ToolFact("qemu-utils + qemu-block-extra", "qemu-io")]
    public async Task Qemu_io_random_reads_match_and_its_writes_land_on_the_device()
    {
        // Block b holds the byte (b * 13) % 251, so qemu-io can check any read with -P.
        const int blocks = 8192;
        var contents = new byte[blocks * 512];
        for (int b = 0; b < blocks; b++) contents.AsSpan(b * 512, 512).Fill((byte)(b * 13 % 251));
        var device = new MemoryBlockDevice(contents.Length, contents: contents);
        await using var target = await Start(device);
        var rng = new Random(42);
        var commands = new List<string>();
        for (int i = 0; i < 40; i++)
        {
            int b = rng.Next(blocks);
            commands.AddRange(["-c", $"read -P {b * 13 % 251} {b * 512} 512"]);
        }
        commands.AddRange(["-c", "write -P 90 1048576 65536", "-c", "read -P 90 1048576 65536", "-c", "flush"]);
        var r = await Tools.RunAsync("qemu-io", ["-f", "raw", .. commands, Url(target)]);
        Assert.True(r.Code == 0, r.Output);
        Assert.DoesNotContain("failed", r.Output, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(41, Regex.Matches(r.Output, @"^read \d+/\d+ bytes", RegexOptions.Multiline).Count);
        Assert.True(device.Contents.Slice(1 << 20, 65536).ToArray().All(x => x == 90));
        Assert.Equal(contents[(1 << 20) - 1], device.Contents[(1 << 20) - 1]); // neighbours untouched
        Assert.Equal(contents[(1 << 20) + 65536], device.Contents[(1 << 20) + 65536]);
    }
}
