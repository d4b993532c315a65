using PbsRestore.Sources.Remote;

namespace PbsRestore.Tests.Remote;

public sealed class PbsRepositoryTests
{
    public static TheoryData<string, string, bool, string, int, string, string> Valid() => new()
    {
        // text, authid, isToken, host, port, store, ToString
        { "store1", "root@pam", false, "localhost", 8007, "store1", "store1" },
        { "pbs.example.com:store1", "root@pam", false, "pbs.example.com", 8007, "store1", "pbs.example.com:store1" },
        { "pbs:8008:store1", "root@pam", false, "pbs", 8008, "store1", "pbs:8008:store1" },
        { "backup@pbs@pbs.example.com:store1", "backup@pbs", false, "pbs.example.com", 8007, "store1", "backup@pbs@pbs.example.com:8007:store1" },
        { "root@pam!restore@10.0.0.5:8007:ds-1", "root@pam!restore", true, "10.0.0.5", 8007, "ds-1", "root@pam!restore@10.0.0.5:8007:ds-1" },
        { "root@pam@[::1]:8007:store", "root@pam", false, "::1", 8007, "store", "root@pam@[::1]:8007:store" },
        { "root@pam!tok@[fd00::1:2]:store", "root@pam!tok", true, "fd00::1:2", 8007, "store", "root@pam!tok@[fd00::1:2]:8007:store" },
        { "[::1]:store", "root@pam", false, "::1", 8007, "store", "[::1]:store" },
        { "[2001:db8::7]:9000:s_1", "root@pam", false, "2001:db8::7", 9000, "s_1", "[2001:db8::7]:9000:s_1" },
        { "user.name@ldap-1!my_token.2@host-a.lan:a.b-c", "user.name@ldap-1!my_token.2", true, "host-a.lan", 8007, "a.b-c", "user.name@ldap-1!my_token.2@host-a.lan:8007:a.b-c" },
        { "127.0.0.1:1:x", "root@pam", false, "127.0.0.1", 1, "x", "127.0.0.1:1:x" },
    };

    [Theory]
    [MemberData(nameof(Valid))]
    public void Parses_and_round_trips(string text, string authId, bool isToken, string host, int port, string store, string printed)
    {
        var r = PbsRepository.Parse(text);
        Assert.Equal(authId, r.AuthId);
        Assert.Equal(isToken, r.IsToken);
        Assert.Equal(host, r.Host);
        Assert.Equal(port, r.Port);
        Assert.Equal(store, r.Store);
        Assert.Equal(printed, r.ToString());
        Assert.Equal(r, PbsRepository.Parse(r.ToString()));
        Assert.Equal(r.ToString(), PbsRepository.Parse(r.ToString()).ToString());
    }

    [Fact]
    public void Token_user_and_authority()
    {
        var r = PbsRepository.Parse("root@pam!tok@[::1]:8007:store");
        Assert.Equal("root@pam", r.UserId);
        Assert.Equal("[::1]:8007", r.Authority);
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData(":store")]
    [InlineData("host:")]
    [InlineData("host:99999:store")]
    [InlineData("host:0:store")]
    [InlineData("root@pam!@host:store")]       // empty token name
    [InlineData("root@pam!a!b@host:store")]
    [InlineData("::1:8007:store")]             // IPv6 needs brackets
    [InlineData("[::1:store")]
    [InlineData("[not-ipv6]:store")]
    [InlineData("[1.2.3.4]:store")]            // brackets are for IPv6
    [InlineData("host:port:store")]
    [InlineData("host/x:store")]
    [InlineData("host:st/ore")]
    [InlineData("host:.store")]
    [InlineData("ro ot@pam@host:store")]
    [InlineData("host:store:extra")]
    [InlineData("host:0123456789012345678901234567890123456789")] // datastore names are at most 32
    public void Refuses_bad_input(string text)
    {
        var e = Assert.Throws<PbsException>(() => PbsRepository.Parse(text));
        Assert.Equal("RepositoryInvalid", e.ErrorId);
        Assert.Equal(PbsErrorKind.InvalidArgument, e.Kind);
        Assert.False(PbsRepository.TryParse(text, out _));
    }

    [Theory]
    [InlineData("root@host:store", "user 'root' has no realm: use root@pam or root@pbs")]
    [InlineData("backup!tok@pbs.example.com:8007:store1", "user 'backup!tok' has no realm: use backup@pam!tok or backup@pbs!tok")]
    public void A_user_without_a_realm_is_named_as_such(string text, string message)
    {
        var e = Assert.Throws<PbsException>(() => PbsRepository.Parse(text));
        Assert.Equal("UserWithoutRealm", e.ErrorId);
        Assert.Equal(PbsErrorKind.InvalidArgument, e.Kind);
        Assert.Equal(message, e.Message);
        Assert.False(PbsRepository.TryParse(text, out _));
    }
}
