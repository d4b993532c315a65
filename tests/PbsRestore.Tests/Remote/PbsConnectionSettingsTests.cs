using PbsRestore.Sources.Remote;

namespace PbsRestore.Tests.Remote;

public sealed class PbsConnectionSettingsTests
{
    private const string Fp1 = "AA:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99";
    private const string Fp2 = "11:11:11:11:11:11:11:11:11:11:11:11:11:11:11:11:11:11:11:11:11:11:11:11:11:11:11:11:11:11:11:11";

    private static Func<string, string?> Env(string? repo, string? fp, string? pw) => name => name switch
    {
        "PBS_REPOSITORY" => repo,
        "PBS_FINGERPRINT" => fp,
        "PBS_PASSWORD" => pw,
        _ => null,
    };

    [Fact]
    public void Parameters_win_over_the_environment()
    {
        var s = PbsConnectionSettings.Resolve("root@pam!a@h1:s1", Fp2, "param-secret", Env("root@pam!b@h2:s2", Fp1, "env-secret"));
        Assert.Equal("root@pam!a@h1:8007:s1", s.Repository.ToString());
        Assert.Equal(CertificateFingerprint.Parse(Fp2), s.Fingerprint);
        Assert.Equal("param-secret", s.Secret);
    }

    [Fact]
    public void Environment_fills_what_parameters_leave_out()
    {
        var s = PbsConnectionSettings.Resolve(null, "", null, Env("root@pam!b@h2:s2", Fp1, "env-secret"));
        Assert.Equal("h2", s.Repository.Host);
        Assert.Equal(Fp1.ToLowerInvariant(), s.Fingerprint.ToString());
        Assert.Equal("env-secret", s.Secret);
    }

    [Fact]
    public void Each_setting_resolves_on_its_own()
    {
        var s = PbsConnectionSettings.Resolve("h:s", null, null, Env("x:y", null, "pw"));
        Assert.Equal("s", s.Repository.Store);
        Assert.Null(s.Fingerprint);
        Assert.Equal("pw", s.Secret);
    }

    [Fact]
    public void No_repository_anywhere_is_an_error()
    {
        var e = Assert.Throws<PbsException>(() => PbsConnectionSettings.Resolve(null, null, null, Env(null, null, null)));
        Assert.Equal("RepositoryMissing", e.ErrorId);
        Assert.Contains("PBS_REPOSITORY", e.Message);
    }

    [Fact]
    public void Bad_fingerprint_is_an_error()
    {
        var e = Assert.Throws<PbsException>(() => PbsConnectionSettings.Resolve("s1", "aa:bb", null, Env(null, null, null)));
        Assert.Equal("FingerprintInvalid", e.ErrorId);
    }

    [Fact]
    public void Fingerprint_parses_case_insensitively_and_without_colons()
    {
        var a = CertificateFingerprint.Parse(Fp1);
        var b = CertificateFingerprint.Parse(Fp1.Replace(":", "").ToUpperInvariant());
        Assert.Equal(a, b);
        Assert.Equal(Fp1.ToLowerInvariant(), b.ToString());
    }

    [Fact]
    public void ToString_never_shows_the_secret()
    {
        var s = PbsConnectionSettings.Resolve("root@pam!t@h:s", Fp1, "SuperSecret-1234", Env(null, null, null));
        Assert.DoesNotContain("SuperSecret-1234", s.ToString());
        Assert.Contains("root@pam!t@h:8007:s", s.ToString());
    }
}
