namespace PbsRestore.Publishing;

// Compiled only while Publishing/Iscsi is not part of the build (see PbsRestore.Core.csproj): everything but the
// network side of publishing works, and Publish-PbsImage says plainly what is missing.
internal static partial class TargetHost
{
    public static partial Task<ITargetHost> StartAsync(TargetSpec spec, CancellationToken ct) =>
        throw new PbsException("IscsiTargetMissing", PbsErrorKind.InvalidArgument,
            "this build of PbsRestore has no iSCSI target (src/PbsRestore.Core/Publishing/Iscsi); publishing needs it");
}
