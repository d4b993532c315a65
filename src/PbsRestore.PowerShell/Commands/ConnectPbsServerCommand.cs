using System.Management.Automation;
using PbsRestore.Sources.Remote;

namespace PbsRestore.PowerShell.Commands;

/// <summary>
/// <para type="synopsis">Connects to a Proxmox Backup Server and makes the connection the session default.</para>
/// </summary>
[Cmdlet(VerbsCommunications.Connect, "PbsServer", HelpUri = HelpLinks.ConnectPbsServer)]
[OutputType(typeof(PbsServerConnection))]
public sealed class ConnectPbsServerCommand : PbsCmdlet
{
    /// <summary>A PBS repository, [[user@realm[!token]@]host[:port]:]datastore; PBS_REPOSITORY when omitted.</summary>
    [Parameter(Position = 0)]
    public string? Repository { get; set; }

    /// <summary>SHA-256 fingerprint of the server certificate (colon hex); PBS_FINGERPRINT when omitted.</summary>
    [Parameter]
    public string? Fingerprint { get; set; }

    /// <summary>User (user@realm) or API token (user@realm!token) and its password or secret; PBS_PASSWORD when omitted.</summary>
    [Parameter]
    [Credential]
    public PSCredential? Credential { get; set; }

    /// <summary>Return the connection without making it the session default.</summary>
    [Parameter]
    public SwitchParameter NotDefault { get; set; }

    protected override void ProcessRecord()
    {
        try
        {
            var settings = PbsSourceCmdlet.SettingsFor(Repository, Fingerprint, Credential);
            if (settings.Repository.Store.All(char.IsAsciiDigit))
                WriteWarning($"The datastore name '{settings.Repository.Store}' looks like a port number. A repository is " +
                             "[[user@realm[!token]@]host[:port]:]datastore: to give a port, write host:port:datastore.");
            var client = new PbsClient(settings);
            try
            {
                Run(async ct =>
                {
                    await client.ConnectAsync(ct).ConfigureAwait(false);
                    await client.CheckDatastoreAsync(ct).ConfigureAwait(false);
                    return true;
                });
            }
            catch
            {
                client.Dispose();
                throw;
            }
            var connection = new PbsServerConnection(settings, client);
            WriteVerbose($"Connected to {connection.Server} as {connection.AuthId} (datastore {connection.Datastore}).");
            if (!NotDefault)
            {
                if (SessionState.PSVariable.GetValue("global:" + PbsSourceCmdlet.DefaultConnectionVariable) is PbsServerConnection old && old != connection)
                    old.Dispose();
                SessionState.PSVariable.Set("global:" + PbsSourceCmdlet.DefaultConnectionVariable, connection);
            }
            WriteObject(connection);
        }
        catch (Exception e) when (e is PbsException or IOException or OperationCanceledException or HttpRequestException)
        {
            WriteFailure(e, Repository);
        }
    }
}

/// <summary>
/// <para type="synopsis">Closes a connection made by Connect-PbsServer (the session default when none is given).</para>
/// </summary>
[Cmdlet(VerbsCommunications.Disconnect, "PbsServer", HelpUri = HelpLinks.DisconnectPbsServer)]
public sealed class DisconnectPbsServerCommand : PbsCmdlet
{
    /// <summary>The connection to close; the session default when omitted.</summary>
    [Parameter(Position = 0, ValueFromPipeline = true)]
    public PbsServerConnection? Connection { get; set; }

    protected override void ProcessRecord()
    {
        var current = SessionState.PSVariable.GetValue("global:" + PbsSourceCmdlet.DefaultConnectionVariable) as PbsServerConnection;
        var target = Connection ?? current;
        if (target is null)
        {
            WriteVerbose("No PBS server connection to close.");
            return;
        }
        target.Dispose();
        if (ReferenceEquals(target, current))
            SessionState.PSVariable.Remove("global:" + PbsSourceCmdlet.DefaultConnectionVariable);
        WriteVerbose($"Disconnected from {target.Server}.");
    }
}
