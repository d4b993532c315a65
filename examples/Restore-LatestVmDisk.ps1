<#
.SYNOPSIS
    Restores the newest backup of a VM's disks (and its configuration) from a PBS server or a datastore
    folder, verifies every restored file and prints a report.

.DESCRIPTION
    A runbook for the common "give me VM <id> back" request. It finds the newest snapshot of the VM
    (Get-PbsSnapshot -Latest), restores every disk image of it (drive-*.img) as a raw image file and,
    unless -SkipConfig, the VM configuration (qemu-server.conf), into the destination folder:

        <Destination>/vm-<id>-<disk>.raw        for example vm-100-scsi0.raw
        <Destination>/vm-<id>.conf

    Then it verifies each file: the length of a disk image must equal its size in the backup manifest, and its
    SHA-256 is computed and reported (Restore-PbsImage already checked every chunk's CRC, tag and digest
    while writing; the hash is for your records and for comparing copies). The report table is written to
    the host; use -PassThru to also get one object per restored file.

    Source: either -Datastore (a datastore folder: a removable datastore, a synced copy, the disks of a
    dead PBS), or -Repository (a PBS server, [[user@realm[!token]@]host[:port]:]datastore) with
    -Fingerprint and -Credential. Without -Credential the secret comes from $env:PBS_PASSWORD, without
    -Fingerprint the pin comes from $env:PBS_FINGERPRINT (both as for proxmox-backup-client). Secrets are
    never printed.

    Encrypted backups need -Keyfile; its password comes from -KeyPassword (a SecureString) or from
    $env:PBS_ENCRYPTION_PASSWORD.

.PARAMETER VmId
    The VM id, for example 100.

.PARAMETER Destination
    The folder to restore into. It is created if missing. Existing files are refused unless -Force.

.PARAMETER Datastore
    A PBS datastore folder (the folder with .chunks) to restore from.

.PARAMETER Repository
    A PBS server repository, for example 'restore@pbs!dr@pbs.example.com:store1'.

.PARAMETER Fingerprint
    The SHA-256 fingerprint of the server certificate (default: $env:PBS_FINGERPRINT).

.PARAMETER Credential
    The user (with password) or API token (with its secret). Default: the repository's user with
    $env:PBS_PASSWORD.

.PARAMETER Namespace
    The namespace of the VM's backups, for example 'prod/web'. Default: the root namespace.

.PARAMETER Keyfile
    The encryption key file for encrypted backups.

.PARAMETER KeyPassword
    The key file's password (default: $env:PBS_ENCRYPTION_PASSWORD).

.PARAMETER SkipConfig
    Do not restore qemu-server.conf.

.PARAMETER Force
    Replace existing files (each is replaced only once the new one is complete).

.PARAMETER FetchConcurrency
    Chunk reads in flight (default: automatic). See Measure-AndTune.ps1.

.PARAMETER Connections
    HTTP/2 reader sessions per restore from a server (default: the module's default).

.PARAMETER PassThru
    Also output one object per restored file (VmId, Snapshot, Archive, Destination, Bytes, Seconds,
    MBps, Sha256, Verified).

.EXAMPLE
    .\Restore-LatestVmDisk.ps1 -VmId 100 -Destination E:\restore -Datastore D:\pbs-usb

    Restores the newest backup of VM 100 from a removable datastore.

.EXAMPLE
    $cred = Get-Credential 'restore@pbs!dr'
    .\Restore-LatestVmDisk.ps1 -VmId 100 -Destination E:\restore -Repository 'pbs.example.com:store1' `
        -Fingerprint '64:d3:...:f2' -Credential $cred -Namespace prod

    Restores from a server with an API token (the token secret is the credential's password).

.EXAMPLE
    $env:PBS_PASSWORD = Get-Secret pbs-dr-token -AsPlainText
    .\Restore-LatestVmDisk.ps1 101 E:\restore -Repository 'restore@pbs!dr@pbs.example.com:store1' `
        -Keyfile C:\keys\pbs.key -KeyPassword (Read-Host -AsSecureString 'Key password') -PassThru |
        Export-Csv E:\restore\vm-101-report.csv

    Unattended restore of an encrypted VM, keeping the report as CSV.
#>
#Requires -Version 7.4
[CmdletBinding(DefaultParameterSetName = 'Server')]
param(
    [Parameter(Mandatory, Position = 0)] [ValidatePattern('^\d+$')] [string] $VmId,
    [Parameter(Mandatory, Position = 1)] [string] $Destination,
    [Parameter(Mandatory, ParameterSetName = 'Folder')] [string] $Datastore,
    [Parameter(ParameterSetName = 'Server')] [string] $Repository,
    [Parameter(ParameterSetName = 'Server')] [string] $Fingerprint,
    [Parameter(ParameterSetName = 'Server')] [pscredential] $Credential,
    [string] $Namespace,
    [string] $Keyfile,
    [securestring] $KeyPassword,
    [switch] $SkipConfig,
    [switch] $Force,
    [ValidateRange(1, 256)] [int] $FetchConcurrency,
    [ValidateRange(1, 16)] [int] $Connections,
    [switch] $PassThru
)
$ErrorActionPreference = 'Stop'
if (-not (Get-Module PbsRestore)) { Import-Module PbsRestore }

$Destination = $PSCmdlet.GetUnresolvedProviderPathFromPSPath($Destination)
[void][IO.Directory]::CreateDirectory($Destination)

# Where to read from: the folder, or a connection of our own (not the session default).
$connection = $null
if ($PSCmdlet.ParameterSetName -eq 'Folder') {
    $source = @{ Datastore = $Datastore }
} else {
    $connect = @{ NotDefault = $true }
    if ($Repository) { $connect.Repository = $Repository }
    if ($Fingerprint) { $connect.Fingerprint = $Fingerprint }
    if ($Credential) { $connect.Credential = $Credential }
    $connection = Connect-PbsServer @connect
    $source = @{ Connection = $connection }
}

try {
    $list = @{ BackupType = 'vm'; BackupId = $VmId; Latest = $true; MaxDepth = 0 }
    if ($Namespace) { $list.Namespace = $Namespace }
    # An id without backups is an error of Get-PbsSnapshot (BackupGroupNotFound); say it in this script's words.
    $snapshot = Get-PbsSnapshot @source @list -ErrorAction SilentlyContinue -ErrorVariable listErrors
    if (-not $snapshot) { throw "No backup of VM $VmId found$(if ($Namespace) { " in namespace '$Namespace'" }).$(if ($listErrors) { " ($($listErrors[0]))" })" }
    Write-Host "Newest backup of VM ${VmId}: $($snapshot.Snapshot)$(if ($snapshot.Namespace) { " (namespace $($snapshot.Namespace))" }), encrypted: $($snapshot.Encrypted)"

    $restore = @{ Force = $Force }
    if ($Keyfile) { $restore.Keyfile = $Keyfile }
    if ($KeyPassword) { $restore.KeyPassword = $KeyPassword }
    if ($FetchConcurrency) { $restore.FetchConcurrency = $FetchConcurrency }
    if ($Connections -and $connection) { $restore.Connections = $Connections }

    $archives = @($snapshot.Files | Where-Object { $_.ArchiveName -like 'drive-*.img' })
    if (-not $SkipConfig) { $archives += @($snapshot.Files | Where-Object ArchiveName -EQ 'qemu-server.conf') }
    if ($archives.Count -eq 0) { throw "The snapshot $($snapshot.Snapshot) has no disk images." }

    $report = foreach ($file in $archives) {
        $name = $file.ArchiveName
        $target = if ($name -eq 'qemu-server.conf') { "vm-$VmId.conf" } else { "vm-$VmId-$($name -replace '^drive-|\.img$').raw" }
        $target = Join-Path $Destination $target
        Write-Host "Restoring $name to $target ..."
        # The snapshot object restores from the place that listed it (same folder or connection).
        $r = $snapshot | Restore-PbsImage -Archive $name -Destination $target @source @restore
        $length = (Get-Item -LiteralPath $target).Length
        $sha256 = (Get-FileHash -LiteralPath $target -Algorithm SHA256).Hash.ToLowerInvariant()
        [pscustomobject]@{
            VmId        = $VmId
            Snapshot    = $snapshot.Snapshot
            Archive     = $name
            Destination = $target
            Bytes       = $length
            Seconds     = [math]::Round($r.Duration.TotalSeconds, 3)
            MBps        = [math]::Round($r.MBPerSecond, 1)
            Sha256      = $sha256
            # A disk image must be as large as the manifest says (a blob's listed size is its stored,
            # encoded size, so for the config only the restored length is compared).
            Verified    = ($length -eq $r.LogicalBytes -and ($file.Name -notlike '*.fidx' -or $length -eq $file.Size))
        }
    }

    Write-Host ($report | Format-Table Archive, Bytes, Seconds, MBps, Verified, Sha256 -AutoSize | Out-String -Width 240).TrimEnd()
    $bad = @($report | Where-Object { -not $_.Verified })
    if ($bad.Count) { throw "$($bad.Count) restored file(s) failed verification: $($bad.Destination -join ', ')" }
    Write-Host "VM ${VmId}: $($report.Count) file(s) restored from $($snapshot.Snapshot) and verified."
    if ($PassThru) { $report }
}
finally {
    if ($connection) { Disconnect-PbsServer -Connection $connection }
}
