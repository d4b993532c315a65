namespace PbsRestore.PowerShell;

/// <summary>
/// What the user can do about an error, by its stable id: the ErrorRecord's RecommendedAction. Only ids whose remedy
/// is known are here; the message itself says what failed and where.
/// </summary>
internal static class ErrorAdvice
{
    private static readonly Dictionary<string, string> Actions = new(StringComparer.Ordinal)
    {
        ["NoSource"] = "Give -Datastore <folder> or -Repository <repository>, or run Connect-PbsServer first.",
        ["NotConnected"] = "Connect again with Connect-PbsServer, then list the snapshots again.",
        ["UserWithoutRealm"] = "Write the user with its realm, for example root@pam, or restore@pbs!token for an API token.",
        ["SecretMissing"] = "Give the password or token secret with -Credential, or set PBS_PASSWORD.",
        ["AuthenticationFailed"] = "Check the user or API token id (user@realm or user@realm!token) and its password or secret.",
        ["PermissionDenied"] = "Give the user or token a role that can read the datastore, for example DatastoreReader on /datastore/<name>.",
        ["CertificateUntrusted"] = "Compare the fingerprint in the message with the server's (PBS dashboard, 'proxmox-backup-manager cert info'), then pass it with -Fingerprint.",
        ["CertificateFingerprintMismatch"] = "Compare the fingerprint in the message with the server's (PBS dashboard, 'proxmox-backup-manager cert info'); if the certificate was renewed, pass the new one with -Fingerprint.",
        ["ConnectionFailed"] = "Check the host name, the port (PBS listens on 8007) and any firewall in between.",
        ["ConnectionTimeout"] = "Check that the server answers on this host and port; set PBS_RESTORE_TIMEOUT (seconds) to wait longer.",
        ["DatastoreNotFound"] = "List the datastores with Get-PbsDatastore (or check the -Datastore folder).",
        ["NamespaceNotFound"] = "List the namespaces with Get-PbsNamespace.",
        ["SnapshotNotFound"] = "List the snapshots with Get-PbsSnapshot.",
        ["ArchiveNotFound"] = "List the snapshot's archives with Get-PbsSnapshot (the Archives property).",
        ["KeyRequired"] = "Give the backup's key file with -Keyfile.",
        ["KeyFileNotFound"] = "Check the -Keyfile path.",
        ["KeyFileInvalid"] = "Give the key file that 'proxmox-backup-client key create' (or Proxmox VE) wrote for this backup.",
        ["KeyPasswordRequired"] = "Give -KeyPassword (for example Read-Host -AsSecureString) or set PBS_ENCRYPTION_PASSWORD.",
        ["KeyPasswordWrong"] = "Check the key file's password.",
        ["KeyFingerprintMismatch"] = "Give the key file this backup was encrypted with (its fingerprint is in the message).",
        ["DestinationExists"] = "Add -Force to replace it, or give another -Destination.",
        ["DestinationFolderNotFound"] = "Create the folder first, or give another -Destination.",
        ["DeviceRequiresForce"] = "Check that this is the disk to overwrite (Get-Disk, lsblk), then add -Force.",
        ["DeviceInUse"] = "Unmount the device (or take the disk offline) first.",
        ["InterruptedRestoreExists"] = "Add -Resume to continue the interrupted restore, or -Force to start over.",
        ["ResumeNotSupported"] = "Restore without -Resume.",
        ["ResumeMismatch"] = "Name the snapshot and archive the interrupted run restored, or use -Force without -Resume to start over.",
    };

    public static string? For(string errorId) => Actions.TryGetValue(errorId, out var a) ? a : null;
}
