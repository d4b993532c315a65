using PbsRestore.Fuzz;

namespace PbsRestore.Tests.Publishing;

/// <summary>The iSCSI fuzz targets' seeds run clean: valid sessions, logins and PDU streams give no crash (the saved
/// crashing inputs replay through FuzzRegressionTests).</summary>
public class IscsiFuzzSeedTests
{
    [Theory]
    [InlineData("iscsipdu")]
    [InlineData("iscsilogin")]
    [InlineData("iscsisession")]
    public void Seeds_run_without_a_crash(string target)
    {
        var seeds = IscsiFuzz.Seeds(target);
        Assert.NotEmpty(seeds);
        foreach (var s in seeds) IscsiFuzz.Run(target, s);
    }

    [Fact]
    public void A_valid_session_seed_causes_no_protocol_error() =>
        Assert.Equal(0, IscsiFuzz.Run("iscsisession", IscsiFuzz.Seeds("iscsisession")[0]));
}
