using System.Management.Automation;
using PbsRestore.Sources.Remote;

namespace PbsRestore.PowerShell.Commands;

/// <summary>
/// <para type="synopsis">Lists the datastores of a Proxmox Backup Server.</para>
/// </summary>
[Cmdlet(VerbsCommon.Get, "PbsDatastore", DefaultParameterSetName = "Connection", HelpUri = HelpLinks.GetPbsDatastore)]
[OutputType(typeof(DatastoreListItem))]
public sealed class GetPbsDatastoreCommand : PbsCmdlet
{
    /// <summary>A PBS repository naming the server (its datastore part is not used for the listing).</summary>
    [Parameter(Mandatory = true, ParameterSetName = "Repository")]
    [ValidateNotNullOrEmpty]
    public string Repository { get; set; } = "";

    /// <summary>SHA-256 fingerprint of the server certificate; PBS_FINGERPRINT when omitted.</summary>
    [Parameter(ParameterSetName = "Repository")]
    public string? Fingerprint { get; set; }

    /// <summary>User or API token and its password or secret; PBS_PASSWORD when omitted.</summary>
    [Parameter(ParameterSetName = "Repository")]
    [Credential]
    public PSCredential? Credential { get; set; }

    /// <summary>A connection from Connect-PbsServer; the session default when omitted.</summary>
    [Parameter(ParameterSetName = "Connection")]
    public PbsServerConnection? Connection { get; set; }

    protected override void ProcessRecord()
    {
        try
        {
            PbsClient client;
            bool owned = false;
            if (ParameterSetName == "Repository")
            {
                client = new PbsClient(PbsSourceCmdlet.SettingsFor(Repository, Fingerprint, Credential));
                owned = true;
            }
            else
            {
                var connection = Connection
                    ?? (SessionState.PSVariable.GetValue("global:" + PbsSourceCmdlet.DefaultConnectionVariable) is PbsServerConnection { IsConnected: true } c ? c : null);
                if (connection is not null)
                {
                    client = connection.ClientFor(null);
                }
                else if (!string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable(PbsConnectionSettings.RepositoryVariable)))
                {
                    // Like the other cmdlets: PBS_REPOSITORY (with PBS_PASSWORD, PBS_FINGERPRINT) names a server too.
                    client = new PbsClient(PbsSourceCmdlet.SettingsFor(null, null, null));
                    owned = true;
                }
                else
                {
                    throw new PbsException("NoSource", PbsErrorKind.InvalidArgument,
                        "not connected: use -Repository (or PBS_REPOSITORY), or Connect-PbsServer first");
                }
            }
            try
            {
                foreach (var store in Run(ct => client.ListDatastoresAsync(ct)))
                    WriteObject(store);
            }
            finally
            {
                if (owned) client.Dispose();
            }
        }
        catch (Exception e) when (e is PbsException or IOException or OperationCanceledException or HttpRequestException)
        {
            WriteFailure(e, ParameterSetName == "Repository" ? Repository : Connection?.Server ?? "default connection");
        }
    }
}
