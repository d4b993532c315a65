using System.Management.Automation;

namespace PbsRestore.PowerShell.Commands;

/// <summary>
/// <para type="synopsis">Stops publishing a snapshot's disks (from Publish-PbsImage): the target closes, and the overlays are deleted unless kept.</para>
/// </summary>
[Cmdlet(VerbsData.Unpublish, "PbsImage", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium, HelpUri = HelpLinks.UnpublishPbsImage)]
public sealed class UnpublishPbsImageCommand : PbsCmdlet
{
    /// <summary>The publication(s) to end, by Id; a publication object from Publish-PbsImage or Get-PbsPublication binds by its Id.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    public int[] Id { get; set; } = [];

    /// <summary>Keep the overlays (the writes made to the disks), even when published without -KeepOverlay.</summary>
    [Parameter]
    public SwitchParameter KeepOverlay { get; set; }

    protected override void ProcessRecord()
    {
        foreach (int id in Id)
        {
            var publication = PublicationRegistry.Get(id);
            if (publication is null)
            {
                WriteError(ToErrorRecord(new PbsNotFoundException("PublicationNotFound", $"there is no publication {id} (Get-PbsPublication lists them)"), id));
                continue;
            }
            bool keep = KeepOverlay || publication.Options.KeepOverlay;
            string overlays = publication.ReadOnly ? "" : keep ? "; its overlays are kept" : "; its overlays (the writes made to the disks) are deleted";
            if (!ShouldProcess($"{publication.TargetName} at {publication.Portal}", $"unpublish {publication.Snapshot}{overlays}"))
                continue;
            PublicationRegistry.Remove(id);
            try
            {
                publication.UnpublishAsync(KeepOverlay ? true : null).AsTask().GetAwaiter().GetResult();
                foreach (var lun in publication.Luns)
                    if (keep && lun.OverlayPath is { } path) WriteVerbose($"Kept the overlay of {lun.Archive}: {path}");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or PbsException)
            {
                WriteError(ToErrorRecord(e, publication.Id));
            }
        }
    }
}
