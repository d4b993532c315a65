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
            var connection = Connection
                ?? (SessionState.PSVariable.GetValue("global:" + PbsSourceCmdlet.DefaultConnectionVariable) is PbsServerConnection { IsConnected: true } c ? c : null);
            var request = ParameterSetName == "Repository"
                ? SourceFactory.Describe(null, Repository, Fingerprint, Credential, null, null, null)
                : SourceFactory.Describe(null, null, null, null, connection, null, null)
                  ?? throw new PbsException("NoSource", PbsErrorKind.InvalidArgument,
                      "not connected: use -Repository (or PBS_REPOSITORY), or Connect-PbsServer first");
            var client = SourceFactory.OpenClient(request!, useStore: false, out bool owned);
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
