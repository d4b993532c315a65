<#
.SYNOPSIS
    The PbsRestore demo: writes a demo PBS datastore, serves it with our PBS-compatible server, and lists and
    restores from it over the wire through the real cmdlets.
.DESCRIPTION
    Run by `dotnet pwsh ./build.ps1 Demo` after a build. Creates artifacts/demo/datastore with the project's
    datastore writer (vm/100 with two snapshots, vm/101 encrypted with a scrypt key, ct/200 in namespace
    prod/web), starts src/PbsRestore.Server on it (HTTPS on 127.0.0.1, self-signed certificate, an API token),
    then uses Connect-PbsServer, Get-PbsSnapshot and Restore-PbsImage as a user would (HTTP/2 reader sessions,
    certificate pinned by fingerprint), and checks every restored file's SHA-256 against what the writer
    recorded.
#>
[CmdletBinding()]
param(
    [string] $WorkFolder = (Join-Path $PSScriptRoot '../artifacts/demo'),
    [string] $Configuration = 'Release',
    # The module to demonstrate: the repository's manifest, a packaged module's, or a module name on PSModulePath.
    [string] $Module = (Join-Path $PSScriptRoot '../PbsRestore.psd1')
)
$ErrorActionPreference = 'Stop'
$repo = (Resolve-Path (Join-Path $PSScriptRoot '..')).Path
Import-Module $Module -Force
Write-Host "PbsRestore $((Get-Module PbsRestore).Version) from $((Get-Module PbsRestore).ModuleBase)" -ForegroundColor Cyan

function Start-DemoServer([string] $Datastore, [string] $Token, [string] $Secret) {
    # Our PBS-compatible server prints one JSON line with its URL and certificate fingerprint once listening.
    $dll = Join-Path $repo "src/PbsRestore.Server/bin/$Configuration/net10.0/PbsRestore.Server.dll"
    $psi = [Diagnostics.ProcessStartInfo]::new('dotnet')
    foreach ($a in @($dll, '--datastore', "demo=$Datastore", '--listen', '127.0.0.1:0', '--token', "${Token}:$Secret")) { $psi.ArgumentList.Add($a) }
    $psi.RedirectStandardOutput = $true
    $psi.RedirectStandardError = $true
    $psi.UseShellExecute = $false
    $process = [Diagnostics.Process]::Start($psi)
    $log = $process.StandardError.ReadToEndAsync()
    $line = $process.StandardOutput.ReadLineAsync()
    if (-not $line.Wait(60000) -or -not $line.Result) { $process.Kill(); throw "the server did not start: $($log.Result)" }
    $endpoint = $line.Result | ConvertFrom-Json
    [pscustomobject]@{ Process = $process; Log = $log; Url = $endpoint.url; Port = ([uri]$endpoint.url).Port; Fingerprint = $endpoint.fingerprint }
}

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

# 2. Serve it, with an API token whose secret is made up for this run.
$token = 'demo@pbs!restore'
$secret = [Convert]::ToHexString([Security.Cryptography.RandomNumberGenerator]::GetBytes(16)).ToLowerInvariant()
$server = Start-DemoServer $datastore $token $secret
Write-Host "Server listening at $($server.Url), certificate fingerprint $($server.Fingerprint)" -ForegroundColor Cyan
try {
    # 3. Connect with the token (its secret as the credential's password), pinning the certificate, and list.
    $credential = [pscredential]::new($token, (ConvertTo-SecureString $secret -AsPlainText -Force))
    Write-Host "`nConnect-PbsServer -Repository 127.0.0.1:$($server.Port):demo -Fingerprint <fp> -Credential $token" -ForegroundColor Cyan
    Connect-PbsServer -Repository "127.0.0.1:$($server.Port):demo" -Fingerprint $server.Fingerprint -Credential $credential |
        Format-Table Server, AuthId, Datastore -AutoSize | Out-Host

    Write-Host 'Get-PbsSnapshot' -ForegroundColor Cyan
    $snapshots = Get-PbsSnapshot
    $snapshots | Format-Table Namespace, Snapshot, Encrypted, @{ n = 'Size (MiB)'; e = { [math]::Round($_.Size / 1MB, 1) } },
        @{ n = 'Archives'; e = { $_.Archives.ToString() } } -AutoSize | Out-Host

    # 4. Restore: the latest vm/100 disk and its config, the encrypted vm/101 disk, the container archive.
    if (Test-Path -LiteralPath $restored) { Remove-Item -LiteralPath $restored -Recurse -Force }
    New-Item -ItemType Directory -Path $restored | Out-Null
    $keyPassword = ConvertTo-SecureString $written.key.password -AsPlainText -Force
    Write-Host 'Restore-PbsImage -Snapshot vm/100 -Archive drive-scsi0.img ... (and three more)' -ForegroundColor Cyan
    $results = @(
        Restore-PbsImage -Snapshot vm/100 -Archive drive-scsi0.img -Destination (Join-Path $restored 'vm-100-disk-0.raw')
        $snapshots | Where-Object BackupId -eq '100' | Select-Object -Last 1 |
            Restore-PbsImage -Archive qemu-server.conf -Destination (Join-Path $restored 'vm-100.conf')
        Restore-PbsImage -Snapshot vm/101 -Archive drive-scsi0.img -Destination (Join-Path $restored 'vm-101-disk-0.raw') `
            -Keyfile $written.key.path -KeyPassword $keyPassword
        Restore-PbsImage -Namespace prod/web -Snapshot ct/200 -Archive data -Destination (Join-Path $restored 'ct-200-data.raw')
    )
    $results | Format-Table Namespace, Snapshot, Archive, @{ n = 'MiB'; e = { [math]::Round($_.LogicalBytes / 1MB, 1) } }, Chunks, ZeroChunks, DedupHits,
        @{ n = 'Seconds'; e = { [math]::Round($_.Duration.TotalSeconds, 2) } }, @{ n = 'MB/s'; e = { [math]::Round($_.MBPerSecond) } } -AutoSize | Out-Host

    # 5. Check every restored byte against what the writer recorded.
    $bad = 0
    foreach ($r in $results) {
        # The writer records the path below the datastore: ns/<a>/ns/<b>/ + type/id/time.
        $path = $(if ($r.Namespace) { "ns/$($r.Namespace -replace '/', '/ns/')/" }) + $r.Snapshot
        $snap = $written.snapshots | Where-Object path -eq $path
        $expected = ($snap.archives | Where-Object name -eq $r.Archive).sha256
        $actual = (Get-FileHash -LiteralPath $r.Destination -Algorithm SHA256).Hash.ToLowerInvariant()
        $ok = $actual -eq $expected
        if (-not $ok) { $bad++ }
        '{0,-4} {1} {2}' -f ($ok ? 'OK' : 'BAD'), $actual, $r.Destination | Out-Host
    }
    if ($bad) { throw "$bad restored file(s) differ from the source" }
    Write-Host "`nAll $($results.Count) files restored over the wire are bit-exact (SHA-256 as written)." -ForegroundColor Green

    # 6. The same disk as a VHDX that Windows mounts (Mount-DiskImage, Hyper-V), written while restoring.
    Write-Host "`nRestore-PbsImage -Snapshot vm/100 -Archive drive-scsi0.img -Destination vm-100-disk-0.vhdx" -ForegroundColor Cyan
    $vhdx = Restore-PbsImage -Snapshot vm/100 -Archive drive-scsi0.img -Destination (Join-Path $restored 'vm-100-disk-0.vhdx')
    $vhdx | Format-Table Archive, Format, @{ n = 'MiB'; e = { [math]::Round($_.LogicalBytes / 1MB, 1) } },
        @{ n = 'File MiB'; e = { [math]::Round((Get-Item -LiteralPath $_.Destination).Length / 1MB, 1) } } -AutoSize | Out-Host
}
finally {
    Disconnect-PbsServer
    if (-not $server.Process.HasExited) { $server.Process.Kill() }
    $server.Process.WaitForExit()
    Set-Content -LiteralPath (Join-Path $WorkFolder 'server.log') -Value $server.Log.Result
}
