using System.Net;
using PbsRestore.Publishing;
using PbsRestore.Sources;

namespace PbsRestore.Tests.Publishing;

/// <summary>What a publication decides before any socket opens: safe defaults, names, overlay file names.</summary>
public sealed class PublicationTests
{
    [Fact]
    public void Listening_beyond_loopback_needs_chap_or_allowed_initiators()
    {
        Publication.CheckSafe(new PublicationOptions());
        Publication.CheckSafe(new PublicationOptions { Listen = new IPEndPoint(IPAddress.IPv6Loopback, 3260) });
        var e = Assert.Throws<PbsException>(() => Publication.CheckSafe(new PublicationOptions { Listen = new IPEndPoint(IPAddress.Any, 3260) }));
        Assert.Equal("PublishNotSecured", e.ErrorId);
        Assert.Contains("-ChapCredential", e.Message);
        Assert.Contains("-AllowedInitiator", e.Message);
        Publication.CheckSafe(new PublicationOptions { Listen = new IPEndPoint(IPAddress.Any, 3260), AllowedInitiators = ["iqn.1991-05.com.microsoft:fs01"] });
        Publication.CheckSafe(new PublicationOptions { Listen = new IPEndPoint(IPAddress.Any, 3260), Chap = new ChapLogin("restore", "0123456789ab") });
    }

    [Theory]
    [InlineData("short")]
    [InlineData("0123456789abcdefg")]
    public void A_chap_secret_windows_would_refuse_is_refused_without_showing_it(string secret)
    {
        var chap = new ChapLogin("restore", secret);
        var e = Assert.Throws<PbsException>(() => Publication.CheckSafe(new PublicationOptions { Chap = chap }));
        Assert.Equal("ChapSecretLength", e.ErrorId);
        Assert.DoesNotContain(secret, e.Message);
        Assert.Equal("restore", chap.ToString());
    }

    [Fact]
    public void Default_target_names_are_valid_iqns_and_overlay_names_are_plain_file_names()
    {
        var s = new SnapshotRef(BackupNamespace.Parse("prod/web"), "vm", "100", DateTimeOffset.FromUnixTimeSeconds(1_714_557_600));
        string iqn = Publication.DefaultTargetName(s);
        Assert.Equal("iqn.2024-05.io.github.pbsrestore:prod.web.vm-100-20240501t100000z", iqn);
        Assert.Matches("^iqn\\.\\d{4}-\\d{2}\\.[a-z0-9.-]+:[a-z0-9.:-]+$", iqn);
        string overlay = Publication.OverlayFileName(s, "drive-scsi0.img");
        Assert.Equal("prod_web_vm-100-20240501T100000Z-drive-scsi0.img.overlay", overlay);
        Assert.Equal(overlay, Path.GetFileName(overlay));
    }
}
