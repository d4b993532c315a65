<#
.SYNOPSIS
    Finds the best -FetchConcurrency (and -Connections, for a server) for Restore-PbsImage on this site
    with a Measure-PbsRestore sweep, and prints the restore command to use.

.DESCRIPTION
    Measure-PbsRestore reads and checks a whole archive like a restore, discarding the data (or writing
    it to -ScratchFile, so the destination disk counts). This script runs it once for every combination
    of -FetchConcurrency and -Connections (reader sessions; a datastore folder always uses 1), prints a
    table (Connections, FetchConcurrency, LogicalMBps, WireMBps, LatencyP95Ms, Bottleneck, Suggested),
    and picks the setting: the one with the highest LogicalMBps, except that the cheapest setting (fewest
    connections, then lowest concurrency) within -Tolerance percent of the best wins, since it loads the
    server and the network less for the same result. Then it prints the Restore-PbsImage command with
    that setting. No secret is part of the printed command: the credential comes from -Credential or
    $env:PBS_PASSWORD when you run it.

    Each run reads the whole archive from the source, with the load of a real restore: pick an archive
    of a few GiB and run this outside business hours. A later run can be faster because of caches; the
    sweep runs the concurrencies in the given order for every connection count.

.PARAMETER Snapshot
    The snapshot to measure, for example 'vm/100' (the newest of VM 100) or 'vm/100/2024-05-01T10:00:00Z'.

.PARAMETER Archive
    A disk image or dynamic archive of it, for example 'drive-scsi0.img'.

.PARAMETER Datastore
    A datastore folder to measure from.

.PARAMETER Repository
    A PBS server repository, for example 'restore@pbs!dr@pbs.example.com:store1'.

.PARAMETER Fingerprint
    The server certificate's SHA-256 fingerprint (default: $env:PBS_FINGERPRINT).

.PARAMETER Credential
    The user or API token and its secret (default: the repository's user with $env:PBS_PASSWORD).

.PARAMETER Namespace
    The snapshot's namespace (default: the root namespace).

.PARAMETER Keyfile
    The encryption key file, for an encrypted archive.

.PARAMETER KeyPassword
    The key file's password (default: $env:PBS_ENCRYPTION_PASSWORD).

.PARAMETER FetchConcurrency
    The chunk reads in flight to try (default 1, 2, 4, 8, 16, 32).

.PARAMETER Connections
    The reader session counts to try against a server (default 1, 2, 4). Ignored for a folder.

.PARAMETER Tolerance
    Percent below the best LogicalMBps that still counts as as good (default 5).

.PARAMETER ScratchFile
    Write the data to this file during each run so the destination disk is measured too. It is
    OVERWRITTEN and left behind; use a scratch path on the disk you will restore to.

.PARAMETER RestoreDestination
    The destination to show in the suggested command (default '<destination>').

.PARAMETER PassThru
    Output an object with the chosen setting (FetchConcurrency, Connections, LogicalMBps, Command) and
    all measurements.

.EXAMPLE
    .\Measure-AndTune.ps1 -Snapshot vm/100 -Archive drive-scsi0.img -Repository 'restore@pbs!dr@pbs.example.com:store1' `
        -Fingerprint '64:d3:...:f2' -Credential (Get-Credential 'restore@pbs!dr')

    Sweeps concurrency 1..32 over 1, 2 and 4 reader sessions against a server and prints the command.

.EXAMPLE
    .\Measure-AndTune.ps1 vm/100 drive-scsi0.img -Datastore \\nas01\pbs-sync -FetchConcurrency 4, 16, 64 -ScratchFile E:\scratch\measure.raw

    Tunes a restore from a file share to local disk E:.
#>
#Requires -Version 7.4
[CmdletBinding(DefaultParameterSetName = 'Server')]
param(
    [Parameter(Mandatory, Position = 0)] [string] $Snapshot,
    [Parameter(Mandatory, Position = 1)] [string] $Archive,
    [Parameter(Mandatory, ParameterSetName = 'Folder')] [string] $Datastore,
    [Parameter(ParameterSetName = 'Server')] [string] $Repository,
    [Parameter(ParameterSetName = 'Server')] [string] $Fingerprint,
    [Parameter(ParameterSetName = 'Server')] [pscredential] $Credential,
    [string] $Namespace,
    [string] $Keyfile,
    [securestring] $KeyPassword,
    [ValidateRange(1, 256)] [int[]] $FetchConcurrency = @(1, 2, 4, 8, 16, 32),
    [ValidateRange(1, 16)] [int[]] $Connections = @(1, 2, 4),
    [ValidateRange(0, 100)] [double] $Tolerance = 5,
    [string] $ScratchFile,
    [string] $RestoreDestination = '<destination>',
    [switch] $PassThru
)
$ErrorActionPreference = 'Stop'
if (-not (Get-Module PbsRestore)) { Import-Module PbsRestore }

$connection = $null
if ($PSCmdlet.ParameterSetName -eq 'Folder') {
    $Datastore = $PSCmdlet.GetUnresolvedProviderPathFromPSPath($Datastore)
    $source = @{ Datastore = $Datastore }
    $Connections = @(1)
} else {
    $connect = @{ NotDefault = $true }
    if ($Repository) { $connect.Repository = $Repository }
    if ($Fingerprint) { $connect.Fingerprint = $Fingerprint }
    if ($Credential) { $connect.Credential = $Credential }
    $connection = Connect-PbsServer @connect
    $source = @{ Connection = $connection }
}
$common = @{ Snapshot = $Snapshot; Archive = $Archive }
if ($Namespace) { $common.Namespace = $Namespace }
if ($Keyfile) { $common.Keyfile = $PSCmdlet.GetUnresolvedProviderPathFromPSPath($Keyfile) }
if ($KeyPassword) { $common.KeyPassword = $KeyPassword }
if ($ScratchFile) { $common.Destination = $PSCmdlet.GetUnresolvedProviderPathFromPSPath($ScratchFile) }

try {
    $runs = foreach ($c in $Connections) {
        Write-Host "Measuring $Archive of $Snapshot with $c connection(s), FetchConcurrency $($FetchConcurrency -join ', ') ..."
        $extra = if ($connection) { @{ Connections = $c } } else { @{} }
        Measure-PbsRestore @source @common @extra -FetchConcurrency $FetchConcurrency
    }
    $runs = @($runs)
} finally {
    if ($connection) { Disconnect-PbsServer -Connection $connection }
}

Write-Host ($runs | Format-Table Connections, FetchConcurrency,
        @{ n = 'LogicalMBps'; e = { [math]::Round($_.LogicalMBps, 1) } },
        @{ n = 'WireMBps'; e = { [math]::Round($_.WireMBps, 1) } },
        @{ n = 'P95ms'; e = { [math]::Round($_.LatencyP95Ms, 2) } },
        Bottleneck, @{ n = 'Suggested'; e = { $_.SuggestedFetchConcurrency } } -AutoSize | Out-String -Width 200).TrimEnd()

$top = ($runs | Measure-Object LogicalMBps -Maximum).Maximum
$best = $runs | Where-Object { $_.LogicalMBps -ge $top * (1 - $Tolerance / 100) } |
    Sort-Object Connections, FetchConcurrency | Select-Object -First 1

# The command to use, with the source as the admin would type it (no secret in it).
$quote = { param($s) "'" + ($s -replace "'", "''") + "'" }
$parts = [System.Collections.Generic.List[string]]::new()
$parts.Add('Restore-PbsImage')
if ($Datastore) {
    $parts.Add("-Datastore $(& $quote $Datastore)")
} elseif ($connection) {
    $parts.Add("-Repository $(& $quote $connection.Repository)")
    if ($connection.Fingerprint) { $parts.Add("-Fingerprint $(& $quote $connection.Fingerprint)") }
}
$parts.Add("-Snapshot $(& $quote $Snapshot)")
if ($Namespace) { $parts.Add("-Namespace $(& $quote $Namespace)") }
$parts.Add("-Archive $(& $quote $Archive)")
$parts.Add("-Destination $(& $quote $RestoreDestination)")
if ($Keyfile) { $parts.Add("-Keyfile $(& $quote $common.Keyfile)") }
$parts.Add("-FetchConcurrency $($best.FetchConcurrency)")
if ($connection) { $parts.Add("-Connections $($best.Connections)") }
$command = $parts -join ' '

Write-Host ("Best: FetchConcurrency {0}, Connections {1}: {2:N1} MB/s (top {3:N1} MB/s, tolerance {4}%), bottleneck {5}." -f
    $best.FetchConcurrency, $best.Connections, $best.LogicalMBps, $top, $Tolerance, $best.Bottleneck)
Write-Host 'Restore with:'
Write-Host "  $command"
if (-not $Datastore) { Write-Host '  (add -Credential, or set PBS_PASSWORD, for the secret)' }
if ($PassThru) {
    [pscustomobject]@{
        FetchConcurrency = $best.FetchConcurrency
        Connections      = $best.Connections
        LogicalMBps      = $best.LogicalMBps
        Bottleneck       = $best.Bottleneck
        Command          = $command
        Measurements     = $runs
    }
}
