<#
.SYNOPSIS
    Restores the newest backup of several VMs in parallel (ForEach-Object -Parallel) and prints a
    throughput report.

.DESCRIPTION
    For each VM id, in its own runspace (at most -ThrottleLimit at a time), the script imports the
    PbsRestore module, finds the VM's newest snapshot and restores its disk images (drive-*.img, or the
    archives named by -Archive) to <Destination>/vm-<id>-<disk>.raw. Each runspace opens its own server
    connection (Connect-PbsServer -NotDefault): $DefaultPbsServer and connection objects belong to one
    runspace.

    At the end it prints a table with one row per restored archive (VM, archive, size, seconds, MB/s)
    and a Total row: the bytes of all archives, the wall-clock time of the whole run and the resulting
    aggregate MB/s. A VM that fails gets a row with Status 'Failed' and the error message; the others
    carry on. The script exits with an error if any VM failed (after the report).

    Source: -Datastore (a datastore folder) or -Repository with -Fingerprint and -Credential (default:
    $env:PBS_PASSWORD and $env:PBS_FINGERPRINT). Encrypted backups need -Keyfile with -KeyPassword (or
    $env:PBS_ENCRYPTION_PASSWORD). Secrets are handed to the runspaces as PSCredential/SecureString
    objects and never printed.

    Each restore already reads chunks in parallel; a ThrottleLimit of 2 to 4 is usually enough to fill a
    link or the destination disk. Each restore from a server opens -Connections reader sessions.

.PARAMETER VmId
    The VM ids to restore, for example 100, 101, 102.

.PARAMETER Destination
    The folder to restore into (created if missing).

.PARAMETER Datastore
    A PBS datastore folder to restore from.

.PARAMETER Repository
    A PBS server repository, for example 'restore@pbs!dr@pbs.example.com:store1'.

.PARAMETER Fingerprint
    The server certificate's SHA-256 fingerprint (default: $env:PBS_FINGERPRINT).

.PARAMETER Credential
    The user or API token and its secret (default: the repository's user with $env:PBS_PASSWORD).

.PARAMETER Namespace
    The namespace of the VMs' backups (default: the root namespace).

.PARAMETER Archive
    Which archives to restore, as wildcard patterns on the archive name (default: 'drive-*.img').

.PARAMETER Keyfile
    The encryption key file, for encrypted backups.

.PARAMETER KeyPassword
    The key file's password (default: $env:PBS_ENCRYPTION_PASSWORD).

.PARAMETER ThrottleLimit
    How many VMs are restored at the same time (default 3).

.PARAMETER Connections
    HTTP/2 reader sessions per restore from a server (default: the module's default).

.PARAMETER ModulePath
    What each runspace imports: a module name or a path to PbsRestore.psd1. Default: the PbsRestore
    module loaded in this session, else 'PbsRestore' from $env:PSModulePath.

.PARAMETER Force
    Replace existing files.

.PARAMETER PassThru
    Also output the report rows as objects (VM, Archive, Snapshot, Destination, Bytes, SizeMB, Seconds,
    MBps, Sha256, Status, Error); the last row is the Total.

.EXAMPLE
    .\Restore-VmListInParallel.ps1 -VmId 100, 101, 102, 103 -Destination E:\restore -Datastore D:\pbs-usb -ThrottleLimit 2

    Restores four VMs from a removable datastore, two at a time.

.EXAMPLE
    $env:PBS_PASSWORD = Get-Secret pbs-dr-token -AsPlainText
    Get-Content .\vms.txt | .\Restore-VmListInParallel.ps1 -Destination E:\restore `
        -Repository 'restore@pbs!dr@pbs.example.com:store1' -Fingerprint '64:d3:...:f2' -Namespace prod -PassThru |
        Export-Csv E:\restore\throughput.csv

    Restores the VMs listed in vms.txt from a server and keeps the throughput report as CSV.
#>
#Requires -Version 7.4
[CmdletBinding(DefaultParameterSetName = 'Server')]
param(
    [Parameter(Mandatory, Position = 0, ValueFromPipeline)] [ValidatePattern('^\d+$')] [string[]] $VmId,
    [Parameter(Mandatory, Position = 1)] [string] $Destination,
    [Parameter(Mandatory, ParameterSetName = 'Folder')] [string] $Datastore,
    [Parameter(ParameterSetName = 'Server')] [string] $Repository,
    [Parameter(ParameterSetName = 'Server')] [string] $Fingerprint,
    [Parameter(ParameterSetName = 'Server')] [pscredential] $Credential,
    [string] $Namespace,
    [string[]] $Archive = @('drive-*.img'),
    [string] $Keyfile,
    [securestring] $KeyPassword,
    [ValidateRange(1, 64)] [int] $ThrottleLimit = 3,
    [ValidateRange(1, 16)] [int] $Connections,
    [string] $ModulePath,
    [switch] $Force,
    [switch] $PassThru
)
begin {
    $callerErrorAction = $ErrorActionPreference   # -ErrorAction of the caller, for the final error
    $ErrorActionPreference = 'Stop'
    $ids = [System.Collections.Generic.List[string]]::new()
}
process {
    foreach ($id in $VmId) { if (-not $ids.Contains($id)) { $ids.Add($id) } }
}
end {
    if (-not $ModulePath) {
        $loaded = Get-Module PbsRestore | Select-Object -First 1
        $ModulePath = if ($loaded) {
            $manifest = Join-Path $loaded.ModuleBase 'PbsRestore.psd1'
            if (Test-Path -LiteralPath $manifest) { $manifest } else { $loaded.Path }
        } else { 'PbsRestore' }
    }
    $Destination = $PSCmdlet.GetUnresolvedProviderPathFromPSPath($Destination)
    [void][IO.Directory]::CreateDirectory($Destination)
    if ($Datastore) { $Datastore = $PSCmdlet.GetUnresolvedProviderPathFromPSPath($Datastore) }
    if ($Keyfile) { $Keyfile = $PSCmdlet.GetUnresolvedProviderPathFromPSPath($Keyfile) }

    # Everything a runspace needs, in one object ($using: copies the reference; PSCredential and
    # SecureString are passed as objects, so no secret is turned into text here).
    $job = [pscustomobject]@{
        ModulePath = $ModulePath; Destination = $Destination; Datastore = $Datastore
        Repository = $Repository; Fingerprint = $Fingerprint; Credential = $Credential
        Namespace = $Namespace; Archive = $Archive; Keyfile = $Keyfile; KeyPassword = $KeyPassword
        Connections = $Connections; Force = [bool]$Force
    }

    Write-Host "Restoring $($ids.Count) VM(s) with ThrottleLimit $ThrottleLimit into $Destination ..."
    $clock = [Diagnostics.Stopwatch]::StartNew()
    $rows = @($ids | ForEach-Object -ThrottleLimit $ThrottleLimit -Parallel {
            $ErrorActionPreference = 'Stop'
            $ProgressPreference = 'SilentlyContinue'
            $j = $using:job
            $vm = $_
            $connection = $null
            try {
                Import-Module $j.ModulePath
                if ($j.Datastore) {
                    $source = @{ Datastore = $j.Datastore }
                } else {
                    $connect = @{ NotDefault = $true }
                    if ($j.Repository) { $connect.Repository = $j.Repository }
                    if ($j.Fingerprint) { $connect.Fingerprint = $j.Fingerprint }
                    if ($j.Credential) { $connect.Credential = $j.Credential }
                    $connection = Connect-PbsServer @connect
                    $source = @{ Connection = $connection }
                }
                $list = @{ BackupType = 'vm'; BackupId = $vm; Latest = $true; MaxDepth = 0 }
                if ($j.Namespace) { $list.Namespace = $j.Namespace }
                $snapshot = Get-PbsSnapshot @source @list -ErrorAction SilentlyContinue -ErrorVariable listErrors
                if (-not $snapshot) { throw "no backup of VM $vm found$(if ($listErrors) { " ($($listErrors[0]))" })" }
                $restore = @{ Force = $j.Force }
                if ($j.Keyfile) { $restore.Keyfile = $j.Keyfile }
                if ($j.KeyPassword) { $restore.KeyPassword = $j.KeyPassword }
                if ($j.Connections -and $connection) { $restore.Connections = $j.Connections }
                $names = @($snapshot.Files.ArchiveName | Where-Object { $n = $_; @($j.Archive | Where-Object { $n -like $_ }).Count -gt 0 })
                if ($names.Count -eq 0) { throw "snapshot $($snapshot.Snapshot) has no archive matching $($j.Archive -join ', ')" }
                foreach ($name in $names) {
                    $target = Join-Path $j.Destination "vm-$vm-$($name -replace '^drive-|\.img$').raw"
                    $r = $snapshot | Restore-PbsImage -Archive $name -Destination $target @source @restore
                    [pscustomobject]@{
                        VM = $vm; Archive = $name; Snapshot = $snapshot.Snapshot; Destination = $target
                        Bytes = [long]$r.LogicalBytes; Seconds = $r.Duration.TotalSeconds; Status = 'OK'; Error = $null
                    }
                }
            } catch {
                [pscustomobject]@{
                    VM = $vm; Archive = $null; Snapshot = $null; Destination = $null
                    Bytes = [long]0; Seconds = 0.0; Status = 'Failed'; Error = $_.Exception.Message
                }
            } finally {
                if ($connection) { Disconnect-PbsServer -Connection $connection }
            }
        })
    $clock.Stop()

    $report = [System.Collections.Generic.List[object]]::new()
    foreach ($r in ($rows | Sort-Object { [long]$_.VM }, Archive)) {
        $report.Add([pscustomobject]@{
                VM = $r.VM; Archive = $r.Archive; Snapshot = $r.Snapshot; Destination = $r.Destination
                Bytes = $r.Bytes; SizeMB = [math]::Round($r.Bytes / 1MB, 1)
                Seconds = [math]::Round($r.Seconds, 2)
                MBps = if ($r.Seconds -gt 0) { [math]::Round($r.Bytes / 1MB / $r.Seconds, 1) } else { 0 }
                Sha256 = if ($r.Status -eq 'OK') { (Get-FileHash -LiteralPath $r.Destination -Algorithm SHA256).Hash.ToLowerInvariant() } else { $null }
                Status = $r.Status; Error = $r.Error
            })
    }
    $ok = @($report | Where-Object Status -EQ 'OK')
    $totalBytes = [long](($ok | Measure-Object Bytes -Sum).Sum)
    $wall = $clock.Elapsed.TotalSeconds
    $report.Add([pscustomobject]@{
            VM = 'Total'; Archive = "$($ok.Count) archive(s)"; Snapshot = $null; Destination = $null
            Bytes = $totalBytes; SizeMB = [math]::Round($totalBytes / 1MB, 1); Seconds = [math]::Round($wall, 2)
            MBps = if ($wall -gt 0) { [math]::Round($totalBytes / 1MB / $wall, 1) } else { 0 }
            Sha256 = $null; Status = if ($ok.Count -eq $report.Count) { 'OK' } else { 'Failed' }; Error = $null
        })

    Write-Host ($report | Format-Table VM, Archive, SizeMB, Seconds, MBps, Status, Error -AutoSize | Out-String -Width 240).TrimEnd()
    Write-Host '(MB = 2^20 bytes; the Total row uses the wall-clock time of the whole run.)'
    if ($PassThru) { $report }
    $failed = @($report | Where-Object Status -EQ 'Failed' | Where-Object VM -NE 'Total')
    $ErrorActionPreference = $callerErrorAction
    if ($failed.Count) { Write-Error "$($failed.Count) VM(s) failed: $(($failed | ForEach-Object { "$($_.VM): $($_.Error)" }) -join '; ')" }
}
