namespace PbsRestore.PowerShell;

/// <summary>
/// The cmdlets' HelpUri (Get-Help -Online): one section per cmdlet of docs/cmdlets.md, the same text as the
/// module's help. The project has no published web address yet: <see cref="Base"/> is the one place to change
/// when it has one (PbsRestore.psd1's ProjectUri too); tests check every cmdlet points below it.
/// </summary>
internal static class HelpLinks
{
    public const string Base = "https://github.com/pbsrestore/pbsrestore/blob/main/docs/cmdlets.md";
    public const string GetPbsSnapshot = Base + "#get-pbssnapshot";
    public const string RestorePbsImage = Base + "#restore-pbsimage";
    public const string TestPbsSnapshot = Base + "#test-pbssnapshot";
    public const string MeasurePbsRestore = Base + "#measure-pbsrestore";
    public const string ConnectPbsServer = Base + "#connect-pbsserver";
    public const string DisconnectPbsServer = Base + "#disconnect-pbsserver";
    public const string GetPbsDatastore = Base + "#get-pbsdatastore";
    public const string GetPbsNamespace = Base + "#get-pbsnamespace";
    public const string GetPbsFile = Base + "#get-pbsfile";
    public const string RestorePbsFile = Base + "#restore-pbsfile";
    public const string ExportPbsFile = Base + "#export-pbsfile";
    public const string PublishPbsImage = Base + "#publish-pbsimage";
    public const string GetPbsPublication = Base + "#get-pbspublication";
    public const string UnpublishPbsImage = Base + "#unpublish-pbsimage";
}
