using System.Management.Automation;
using PbsRestore.Publishing;

namespace PbsRestore.PowerShell.Commands;

/// <summary>
/// <para type="synopsis">Lists the snapshots published by Publish-PbsImage in this PowerShell process, with their targets, disks and counters.</para>
/// </summary>
[Cmdlet(VerbsCommon.Get, "PbsPublication", HelpUri = HelpLinks.GetPbsPublication)]
[OutputType(typeof(Publication))]
public sealed class GetPbsPublicationCommand : PbsCmdlet
{
    /// <summary>Only these publications (by Id); all when omitted.</summary>
    [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
    public int[]? Id { get; set; }

    protected override void ProcessRecord()
    {
        if (Id is null)
        {
            foreach (var p in PublicationRegistry.All) WriteObject(p);
            return;
        }
        foreach (int id in Id)
        {
            if (PublicationRegistry.Get(id) is { } p) WriteObject(p);
            else WriteError(ToErrorRecord(new PbsNotFoundException("PublicationNotFound", $"there is no publication {id} (Get-PbsPublication lists them)"), id));
        }
    }
}
