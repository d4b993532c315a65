<#
.SYNOPSIS
    The PbsRestore demo: writes a demo PBS datastore, lists it and restores from it through the real cmdlets.
.DESCRIPTION
    Run by `dotnet pwsh ./build.ps1 Demo` after a build. Creates artifacts/demo/datastore with the project's
    datastore writer (vm/100 with two snapshots, vm/101 encrypted with a scrypt key, ct/200 in namespace
    prod/web), then uses Get-PbsSnapshot and Restore-PbsImage as a user would, and checks every restored
    file's SHA-256 against what the writer recorded.
#>
[CmdletBinding()]
param(
    [string] $WorkFolder = (Join-Path $PSScriptRoot '../artifacts/demo'),
    [string] $Configuration = 'Release'
)
$ErrorActionPreference = 'Stop'
$repo = (Resolve-Path (Join-Path $PSScriptRoot '..')).Path
Import-Module (Join-Path $repo 'PbsRestore.psd1') -Force

# 1. A demo datastore, written by the project's PBS-format writer (not part of the module).
$WorkFolder = [IO.Path]::GetFullPath($WorkFolder)
$datastore = Join-Path $WorkFolder 'datastore'
$restored = Join-Path $WorkFolder 'restored'
$fixtures = Join-Path $repo "src/PbsRestore.Fixtures/bin/$Configuration/net10.0/PbsRestore.Fixtures.dll"
if (-not (Test-Path -LiteralPath $fixtures)) { throw "Build first: $fixtures not found (dotnet pwsh ./build.ps1)" }
Write-Host "Writing a demo datastore to $datastore ..." -ForegroundColor Cyan
$json = & dotnet $fixtures demo --path $datastore --key-out (Join-Path $WorkFolder 'demo-key.json') --force
if ($LASTEXITCODE -ne 0) { throw "the demo datastore writer failed ($LASTEXITCODE)" }
$written = ($json -join "`n") | ConvertFrom-Json

# 2. List it.
Write-Host "`nGet-PbsSnapshot -Datastore $datastore" -ForegroundColor Cyan
$snapshots = Get-PbsSnapshot -Datastore $datastore
$snapshots | Format-Table Namespace, Snapshot, Encrypted, @{ n = 'Size (MiB)'; e = { [math]::Round($_.Size / 1MB, 1) } },
    @{ n = 'Archives'; e = { ($_.Files.ArchiveName) -join ', ' } } -AutoSize | Out-Host

# 3. Restore: the latest vm/100 disk and its config, the encrypted vm/101 disk, the container archive.
if (Test-Path -LiteralPath $restored) { Remove-Item -LiteralPath $restored -Recurse -Force }
New-Item -ItemType Directory -Path $restored | Out-Null
$keyPassword = ConvertTo-SecureString $written.key.password -AsPlainText -Force

Write-Host "Restore-PbsImage -Snapshot vm/100 -Archive drive-scsi0.img ..." -ForegroundColor Cyan
$results = @(
    Restore-PbsImage -Datastore $datastore -Snapshot vm/100 -Archive drive-scsi0.img -Destination (Join-Path $restored 'vm-100-disk-0.raw')
    $snapshots | Where-Object { $_.BackupId -eq '100' } | Select-Object -Last 1 |
        Restore-PbsImage -Archive qemu-server.conf -Destination (Join-Path $restored 'vm-100.conf')
    Restore-PbsImage -Datastore $datastore -Snapshot vm/101 -Archive drive-scsi0.img -Destination (Join-Path $restored 'vm-101-disk-0.raw') `
        -Keyfile $written.key.path -KeyPassword $keyPassword
    Restore-PbsImage -Datastore $datastore -Namespace prod/web -Snapshot ct/200 -Archive data -Destination (Join-Path $restored 'ct-200-data.raw')
)
$results | Format-Table Snapshot, Archive, @{ n = 'MiB'; e = { [math]::Round($_.LogicalBytes / 1MB, 1) } }, Chunks, ZeroChunks, DedupHits,
    @{ n = 'Seconds'; e = { [math]::Round($_.Duration.TotalSeconds, 2) } }, @{ n = 'MB/s'; e = { [math]::Round($_.MBPerSecond) } } -AutoSize | Out-Host

# 4. Check every restored byte against what the writer recorded.
$bad = 0
foreach ($r in $results) {
    $snap = $written.snapshots | Where-Object path -eq $r.Snapshot
    $expected = ($snap.archives | Where-Object name -eq $r.Archive).sha256
    $actual = (Get-FileHash -LiteralPath $r.Destination -Algorithm SHA256).Hash.ToLowerInvariant()
    $ok = $actual -eq $expected
    if (-not $ok) { $bad++ }
    '{0,-4} {1} {2}' -f ($ok ? 'OK' : 'BAD'), $actual, $r.Destination | Out-Host
}
if ($bad) { throw "$bad restored file(s) differ from the source" }
Write-Host "`nAll $($results.Count) restored files are bit-exact (SHA-256 as written)." -ForegroundColor Green
