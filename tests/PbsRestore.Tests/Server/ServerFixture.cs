namespace PbsRestore.Tests.Server;

/// <summary>One server over the golden datastore for a test class, with the default token and a user.</summary>
public sealed class GoldenServerFixture : IAsyncLifetime
{
    public const string User = "alice@pbs";
    public const string Password = "alice's password";

    public TestServer Server { get; private set; } = null!;

    public async Task InitializeAsync() =>
        Server = await TestServer.StartAsync("--datastore", "golden=" + TestPaths.GoldenPath("datastore"),
            "--token", TestServer.DefaultToken, "--token", "bob@pbs!other:second-secret", "--user", $"{User}:{Password}");

    public async Task DisposeAsync() => await Server.DisposeAsync();
}
