using System.Security.Cryptography;
using System.Text;
using PbsRestore.Publishing;
using PbsRestore.Publishing.Iscsi;

namespace PbsRestore.Tests.Publishing;

public class IscsiLoginTests
{
    private const string Target = "iqn.2024-01.org.pbsrestore:test";
    private const string Initiator = "iqn.1994-05.com.example:host1";

    private static IscsiTargetOptions Options(IscsiChapSecret? chap = null, string[]? allowed = null) => new()
    {
        TargetName = Target,
        Luns = [new IscsiLun(0, "disk", new MemoryBlockDevice(1 << 20))],
        Chap = chap,
        AllowedInitiators = allowed,
    };

    private static byte[] Text(params string[] pairs) => Encoding.UTF8.GetBytes(string.Concat(pairs.Select(p => p + "\0")));

    private static Dictionary<string, string> Keys(LoginAnswer a) =>
        TextKeys.Parse(a.Text, out _)!.ToDictionary(k => k.Key, k => k.Value);

    private static LoginRequest Req(int csg, int nsg, bool transit = true) => new(transit, false, csg, nsg, 0, 0, 0x400001370000, 0);

    [Fact]
    public void Without_auth_security_then_operational_reaches_full_feature_phase()
    {
        var n = new LoginNegotiator(Options());
        var a = n.Step(Req(0, 1), Text($"InitiatorName={Initiator}", $"TargetName={Target}", "SessionType=Normal", "AuthMethod=CHAP,None"));
        Assert.False(a.Failed);
        Assert.True(a.Transit);
        Assert.Equal(1, a.NextStage);
        var k = Keys(a);
        Assert.Equal("None", k["AuthMethod"]);
        Assert.Equal("1", k["TargetPortalGroupTag"]);

        a = n.Step(Req(1, 3), Text("HeaderDigest=CRC32C,None", "DataDigest=None", "MaxRecvDataSegmentLength=65536", "MaxBurstLength=16776192",
            "FirstBurstLength=262144", "InitialR2T=No", "ImmediateData=Yes", "MaxOutstandingR2T=8", "ErrorRecoveryLevel=2",
            "DefaultTime2Wait=0", "DefaultTime2Retain=20", "IFMarker=No", "X-com.example.thing=1"));
        Assert.False(a.Failed);
        Assert.True(n.Complete);
        k = Keys(a);
        Assert.Equal("CRC32C", k["HeaderDigest"]);
        Assert.Equal("None", k["DataDigest"]);
        Assert.Equal("1048576", k["MaxBurstLength"]);      // min with ours
        Assert.Equal("262144", k["FirstBurstLength"]);
        Assert.Equal("No", k["InitialR2T"]);
        Assert.Equal("1", k["MaxOutstandingR2T"]);
        Assert.Equal("0", k["ErrorRecoveryLevel"]);
        Assert.Equal("2", k["DefaultTime2Wait"]);
        Assert.Equal("0", k["DefaultTime2Retain"]);
        Assert.Equal("NotUnderstood", k["X-com.example.thing"]);
        Assert.Equal("262144", k["MaxRecvDataSegmentLength"]); // our declaration
        Assert.True(n.Parameters.HeaderDigest);
        Assert.False(n.Parameters.DataDigest);
        Assert.Equal(65536, n.Parameters.InitiatorMaxRecvDataSegment);
        Assert.False(n.Parameters.InitialR2T);
    }

    [Fact]
    public void A_wrong_target_name_a_missing_initiator_name_and_a_refused_initiator_fail_with_their_status()
    {
        var a = new LoginNegotiator(Options()).Step(Req(0, 1), Text($"InitiatorName={Initiator}", "TargetName=iqn.2024-01.org.other:x"));
        Assert.Equal((2, 3), (a.StatusClass, a.StatusDetail));
        a = new LoginNegotiator(Options()).Step(Req(0, 1), Text($"TargetName={Target}"));
        Assert.Equal((2, 7), (a.StatusClass, a.StatusDetail));
        a = new LoginNegotiator(Options(allowed: ["iqn.1994-05.com.example:other"])).Step(Req(0, 1), Text($"InitiatorName={Initiator}", $"TargetName={Target}"));
        Assert.Equal((2, 2), (a.StatusClass, a.StatusDetail));
        a = new LoginNegotiator(Options(allowed: [Initiator.ToUpperInvariant()])).Step(Req(0, 1), Text($"InitiatorName={Initiator}", $"TargetName={Target}"));
        Assert.False(a.Failed);
        a = new LoginNegotiator(Options()).Step(Req(0, 1) with { VersionMin = 2 }, Text($"InitiatorName={Initiator}", $"TargetName={Target}"));
        Assert.Equal((2, 5), (a.StatusClass, a.StatusDetail));
    }

    [Fact]
    public void Discovery_sessions_need_no_target_name()
    {
        var n = new LoginNegotiator(Options());
        var a = n.Step(Req(1, 3), Text($"InitiatorName={Initiator}", "SessionType=Discovery"));
        Assert.False(a.Failed);
        Assert.True(n.IsDiscovery);
        Assert.True(n.Complete);
    }

    private static string ChapResponse(byte id, string secret, string challengeHex)
    {
        var c = Convert.FromHexString(challengeHex[2..]);
        var s = Encoding.UTF8.GetBytes(secret);
        return "0x" + Convert.ToHexString(MD5.HashData([id, .. s, .. c])).ToLowerInvariant();
    }

    [Theory]
    [InlineData("correct-secret-16", "alice", false)]
    [InlineData("wrong-secret-1234", "alice", true)]
    [InlineData("correct-secret-16", "mallory", true)]
    public void Chap_md5_proves_the_initiator(string secret, string user, bool fails)
    {
        using var chap = new IscsiChapSecret("alice", "correct-secret-16");
        var n = new LoginNegotiator(Options(chap));
        var a = n.Step(Req(0, 1, transit: false), Text($"InitiatorName={Initiator}", $"TargetName={Target}", "AuthMethod=None,CHAP"));
        Assert.Equal("CHAP", Keys(a)["AuthMethod"]);
        a = n.Step(Req(0, 1, transit: false), Text("CHAP_A=7,5"));
        var k = Keys(a);
        Assert.Equal("5", k["CHAP_A"]);
        Assert.StartsWith("0x", k["CHAP_C"]);
        a = n.Step(Req(0, 1), Text($"CHAP_N={user}", $"CHAP_R={ChapResponse(byte.Parse(k["CHAP_I"]), secret, k["CHAP_C"])}"));
        if (fails) Assert.Equal((2, 1), (a.StatusClass, a.StatusDetail));
        else
        {
            Assert.False(a.Failed);
            Assert.True(a.Transit);
            Assert.DoesNotContain("correct-secret", Encoding.UTF8.GetString(a.Text));
        }
    }

    [Fact]
    public void Chap_cannot_be_skipped_or_made_mutual()
    {
        using var chap = new IscsiChapSecret("alice", "correct-secret-16");
        // AuthMethod=None only → authentication failure.
        var a = new LoginNegotiator(Options(chap)).Step(Req(0, 1), Text($"InitiatorName={Initiator}", $"TargetName={Target}", "AuthMethod=None"));
        Assert.Equal((2, 1), (a.StatusClass, a.StatusDetail));
        // Starting in the operational stage skips security → authentication failure.
        a = new LoginNegotiator(Options(chap)).Step(Req(1, 3), Text($"InitiatorName={Initiator}", $"TargetName={Target}"));
        Assert.Equal((2, 1), (a.StatusClass, a.StatusDetail));
        // A response before any challenge → failure.
        var n = new LoginNegotiator(Options(chap));
        n.Step(Req(0, 1, transit: false), Text($"InitiatorName={Initiator}", $"TargetName={Target}", "AuthMethod=CHAP"));
        a = n.Step(Req(0, 1), Text("CHAP_N=alice", "CHAP_R=0x00112233445566778899aabbccddeeff"));
        Assert.Equal((2, 1), (a.StatusClass, a.StatusDetail));
        // Mutual CHAP (the initiator challenges the target) is refused: the target has no secret of its own.
        n = new LoginNegotiator(Options(chap));
        n.Step(Req(0, 1, transit: false), Text($"InitiatorName={Initiator}", $"TargetName={Target}", "AuthMethod=CHAP"));
        var k = Keys(n.Step(Req(0, 1, transit: false), Text("CHAP_A=5")));
        a = n.Step(Req(0, 1), Text("CHAP_N=alice", $"CHAP_R={ChapResponse(byte.Parse(k["CHAP_I"]), "correct-secret-16", k["CHAP_C"])}", "CHAP_I=1", "CHAP_C=0x0102030405060708"));
        Assert.Equal((2, 1), (a.StatusClass, a.StatusDetail));
    }

    [Fact]
    public void The_chap_secret_never_appears_in_its_text_and_short_secrets_are_refused()
    {
        using var chap = new IscsiChapSecret("alice", "correct-secret-16");
        Assert.DoesNotContain("correct-secret", chap.ToString());
        Assert.DoesNotContain("correct-secret", Options(chap).ToString());
        Assert.Throws<ArgumentException>(() => new IscsiChapSecret("alice", "short"));
        // From a SecureString (what a PSCredential holds): the same secret proves the same response.
        var secure = new System.Security.SecureString();
        foreach (char ch in "correct-secret-16") secure.AppendChar(ch);
        using var fromSecure = new IscsiChapSecret("alice", secure);
        Assert.Equal(chap.Secret.ToArray(), fromSecure.Secret.ToArray());
    }

    [Fact]
    public void Text_split_over_continue_pdus_is_joined_and_bounded()
    {
        var n = new LoginNegotiator(Options());
        var first = Text($"InitiatorName={Initiator}", $"TargetName={Target}");
        var a = n.Step(new LoginRequest(false, true, 0, 0, 0, 0, 1, 0), first[..10]);
        Assert.False(a.Failed);
        Assert.Empty(a.Text);
        a = n.Step(Req(0, 1), first[10..]);
        Assert.False(a.Failed);
        Assert.True(a.Transit);

        var flood = new LoginNegotiator(Options());
        var chunk = new byte[8192];
        LoginAnswer last = default;
        for (int i = 0; i < 10 && !last.Failed; i++) last = flood.Step(new LoginRequest(false, true, 0, 0, 0, 0, 1, 0), chunk);
        Assert.True(last.Failed); // more than 64 KiB of pending text
    }

    [Fact]
    public void Malformed_stage_transitions_fail()
    {
        var a = new LoginNegotiator(Options()).Step(Req(1, 0), Text($"InitiatorName={Initiator}", $"TargetName={Target}"));
        Assert.True(a.Failed); // backwards
        a = new LoginNegotiator(Options()).Step(Req(2, 3), Text($"InitiatorName={Initiator}", $"TargetName={Target}"));
        Assert.True(a.Failed); // stage 2 is reserved
    }

    [Fact]
    public void Options_refuse_open_listeners_without_auth_and_bad_luns()
    {
        var dev = new MemoryBlockDevice(1 << 20);
        Assert.Contains("requires CHAP", Assert.Throws<ArgumentException>(() => IscsiTarget.Validate(new IscsiTargetOptions
        { TargetName = Target, Luns = [new IscsiLun(0, "d", dev)], Listen = new System.Net.IPEndPoint(System.Net.IPAddress.Any, 0) })).Message);
        IscsiTarget.Validate(new IscsiTargetOptions
        { TargetName = Target, Luns = [new IscsiLun(0, "d", dev)], Listen = new System.Net.IPEndPoint(System.Net.IPAddress.Any, 0), AllowedInitiators = [Initiator] });
        Assert.Contains("used twice", Assert.Throws<ArgumentException>(() => IscsiTarget.Validate(new IscsiTargetOptions
        { TargetName = Target, Luns = [new IscsiLun(0, "a", dev), new IscsiLun(0, "b", dev)] })).Message);
        Assert.Contains("not a valid iSCSI name", Assert.Throws<ArgumentException>(() => IscsiTarget.Validate(new IscsiTargetOptions
        { TargetName = "target", Luns = [new IscsiLun(0, "a", dev)] })).Message);
    }
}
