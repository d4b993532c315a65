<#
.SYNOPSIS
    Disaster recovery from a PBS datastore folder: lists what is there, restores the newest backup of
    every VM (and container) with its configuration into a folder tree, and writes a manifest with the
    SHA-256 of every restored file.

.DESCRIPTION
    For the day the PBS server is gone and all you have is its datastore: a removable datastore (USB
    disk), a synced copy on a NAS, or the disks of the dead server attached to another machine. No
    server, network or credentials are involved; the folder is only read.

    1. Inventory: every snapshot in every namespace (Get-PbsSnapshot), printed as a table.
    2. For the newest snapshot of every group (-Latest) of the chosen types (-BackupType, default vm and
       ct), every archive in its manifest is restored: disk images (drive-*.img) as raw images, the
       configuration (qemu-server.conf, pct.conf) as the file it was, dynamic archives (root.pxar) as
       their raw stream. The tree mirrors the datastore:

           <Destination>/[ns/<name>/...]<type>/<id>/<time>/<archive>

       where <time> is like 2024-05-01T10-00-00Z (no ':' so it works on Windows) and disk images get
       the extension .raw (drive-scsi0.img -> drive-scsi0.raw).
    3. A manifest, <Destination>/restore-manifest.csv and .json: one row per archive with namespace,
       snapshot, archive, relative file path, bytes, SHA-256, status (Restored, Skipped, Failed) and the
       error. Encrypted snapshots are restored with -Keyfile; without it (or with a key that does not
       belong to them) they are listed as Skipped or Failed and the others carry on.

    The script ends with an error if anything failed (after writing the manifest). Use -PassThru to
    also get the manifest rows as objects.

.PARAMETER Datastore
    The datastore folder (the one containing .chunks).

.PARAMETER Destination
    The root of the restored tree (created if missing). Existing files are refused unless -Force.

.PARAMETER BackupType
    The backup types to restore: vm, ct, host. Default: vm and ct.

.PARAMETER Namespace
    Only this namespace and the ones below it (default: all namespaces).

.PARAMETER Keyfile
    The encryption key file for encrypted backups.

.PARAMETER KeyPassword
    The key file's password (default: $env:PBS_ENCRYPTION_PASSWORD).

.PARAMETER Force
    Replace existing files.

.PARAMETER PassThru
    Also output the manifest rows.

.EXAMPLE
    .\Invoke-DisasterRecoveryFromFolder.ps1 -Datastore D:\ -Destination E:\dr

    Restores everything of the newest backups on a removable datastore mounted as D:.

.EXAMPLE
    .\Invoke-DisasterRecoveryFromFolder.ps1 -Datastore \\nas01\pbs-sync -Destination E:\dr -BackupType vm `
        -Namespace prod -Keyfile C:\keys\pbs.key -KeyPassword (Read-Host -AsSecureString 'Key password')

    Restores the VMs of namespace prod (and below) from a synced copy, including encrypted ones.
#>
#Requires -Version 7.4
[CmdletBinding()]
param(
    [Parameter(Mandatory, Position = 0)] [string] $Datastore,
    [Parameter(Mandatory, Position = 1)] [string] $Destination,
    [ValidateSet('vm', 'ct', 'host')] [string[]] $BackupType = @('vm', 'ct'),
    [string] $Namespace,
    [string] $Keyfile,
    [securestring] $KeyPassword,
    [switch] $Force,
    [switch] $PassThru
)
$callerErrorAction = $ErrorActionPreference
$ErrorActionPreference = 'Stop'
if (-not (Get-Module PbsRestore)) { Import-Module PbsRestore }

$Datastore = $PSCmdlet.GetUnresolvedProviderPathFromPSPath($Datastore)
$Destination = $PSCmdlet.GetUnresolvedProviderPathFromPSPath($Destination)
[void][IO.Directory]::CreateDirectory($Destination)

# 1. Inventory.
$scope = @{ Datastore = $Datastore }
if ($Namespace) { $scope.Namespace = $Namespace }
$all = @(Get-PbsSnapshot @scope)
Write-Host "Datastore $Datastore holds $($all.Count) snapshot(s):"
Write-Host ($all | Format-Table Namespace, Snapshot, Encrypted, @{ n = 'SizeMB'; e = { [math]::Round($_.Size / 1MB, 1) } },
        @{ n = 'Archives'; e = { $_.Files.ArchiveName -join ', ' } } -AutoSize | Out-String -Width 240).TrimEnd()

# 2. The newest snapshot of every group of the chosen types.
$latest = @(Get-PbsSnapshot @scope -Latest | Where-Object BackupType -In $BackupType)
Write-Host "Restoring the newest snapshot of $($latest.Count) group(s) into $Destination ..."
$restore = @{ Force = [bool]$Force }
if ($Keyfile) { $restore.Keyfile = $PSCmdlet.GetUnresolvedProviderPathFromPSPath($Keyfile) }
if ($KeyPassword) { $restore.KeyPassword = $KeyPassword }

$rows = foreach ($snap in $latest) {
    $nsPath = if ($snap.Namespace) { ($snap.Namespace -split '/' | ForEach-Object { "ns/$_" }) -join '/' } else { '' }
    $time = $snap.BackupTime.ToUniversalTime().ToString("yyyy-MM-dd'T'HH-mm-ss'Z'")
    $relFolder = (@($nsPath, $snap.BackupType, $snap.BackupId, $time) | Where-Object { $_ }) -join '/'
    $folder = Join-Path $Destination $relFolder
    [void][IO.Directory]::CreateDirectory($folder)
    foreach ($file in $snap.Files) {
        $name = $file.ArchiveName
        $fileName = if ($name -like '*.img') { $name -replace '\.img$', '.raw' } else { $name }
        $row = [ordered]@{
            Namespace = $snap.Namespace; Snapshot = $snap.Snapshot; BackupType = $snap.BackupType
            BackupId = $snap.BackupId; BackupTime = $snap.BackupTime.ToUniversalTime().ToString('o')
            Encrypted = $snap.Encrypted; Archive = $name; File = "$relFolder/$fileName"
            Bytes = $null; Sha256 = $null; Status = $null; Error = $null
        }
        if ($snap.Encrypted -and -not $Keyfile) {
            $row.Status = 'Skipped'; $row.Error = 'encrypted; no -Keyfile given'
        } else {
            try {
                $target = Join-Path $folder $fileName
                $null = $snap | Restore-PbsImage -Archive $name -Destination $target @restore
                $row.Bytes = (Get-Item -LiteralPath $target).Length
                $row.Sha256 = (Get-FileHash -LiteralPath $target -Algorithm SHA256).Hash.ToLowerInvariant()
                $row.Status = 'Restored'
            } catch {
                $row.Status = 'Failed'; $row.Error = $_.Exception.Message
            }
        }
        Write-Host ('{0,-8} {1}' -f $row.Status, $row.File)
        [pscustomobject]$row
    }
}
$rows = @($rows)

# 3. The manifest.
$csv = Join-Path $Destination 'restore-manifest.csv'
$json = Join-Path $Destination 'restore-manifest.json'
$rows | Export-Csv -LiteralPath $csv -NoTypeInformation -Encoding utf8
[ordered]@{
    datastore = $Datastore
    restored_at = [DateTime]::UtcNow.ToString('o')
    host = [Environment]::MachineName
    files = $rows
} | ConvertTo-Json -Depth 5 | Set-Content -LiteralPath $json -Encoding utf8

$restored = @($rows | Where-Object Status -EQ 'Restored')
$problems = @($rows | Where-Object Status -NE 'Restored')
Write-Host ("{0} file(s) restored ({1:N1} MB), {2} skipped or failed. Manifest: {3}, {4}" -f $restored.Count,
    (($restored | Measure-Object Bytes -Sum).Sum / 1MB), $problems.Count, $csv, $json)
if ($PassThru) { $rows }
$ErrorActionPreference = $callerErrorAction
$failed = @($rows | Where-Object Status -EQ 'Failed')
if ($failed.Count) { Write-Error "$($failed.Count) archive(s) failed: $(($failed | ForEach-Object { "$($_.File): $($_.Error)" }) -join '; ')" }
