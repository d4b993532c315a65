<#
.SYNOPSIS
    One host vs two: what spreading a recovery over PowerShell remoting sessions gains on this machine, for
    several bottlenecks, in one run.

.DESCRIPTION
    Writes a datastore of a few VMs (different sizes, incompressible and text data), serves it with our server,
    starts an sshd of our own on loopback (tests/pester/SshHelpers.psm1) and runs examples/Invoke-RecoveryAcrossHosts.ps1
    three ways per scenario:
        1 host x 1     one session restores the VMs one after the other
        1 host x 2     one host, two restores at a time
        2 hosts x 1    two "hosts" (127.0.0.1 and localhost: two SSH sessions to this machine), one restore each
    Scenarios (server flags):
        unlimited      nothing added: client and server share this machine's cores (client CPU and server CPU
                       are the same CPU here)
        server link    --bandwidth-mbit: one limit for all connections together (the server's link is full)
        host link      --connection-bandwidth-mbit with one reader session per restore (each restore's own link
                       is full, as when each host's NIC is the limit)
        slow server    --chunk-latency-ms with --max-parallel-reads (the server's disks answer slowly and serve
                       only so many reads at once)
    Every restored disk is checked by SHA-256. MB/s (the median of -Repeat runs) = all bytes / the restore phase (first VM started to last VM
    finished, from the runbook's rows); Setup is the rest of the runbook's wall-clock time (listing, opening the
    sessions and importing the module there). Prints a table and the command that made it.

.PARAMETER SizeMiB
    The VMs' disk sizes (default 48, 32, 24, 16: small, because this machine is shared and slow; the restore
    phase is timed apart from opening the sessions).

.PARAMETER Mbit
    The link limit for the server-link and host-link scenarios (default 40).

.PARAMETER LatencyMs
    The chunk latency of the slow-server scenario (default 500), with -ParallelReads reads at once (default 2).

.PARAMETER ParallelReads
    The server's parallel reads in the slow-server scenario.

.PARAMETER Scenario
    Which scenarios to run (default all).

.PARAMETER Repeat
    Runs of each config per scenario (default 1); the table shows the median and the range (MB/s).

.PARAMETER Work
    The working folder (default artifacts/fanout); the datastore is kept there for the next run.

.PARAMETER PassThru
    Also output the rows as objects.
#>
#Requires -Version 7.4
param(
    # Strings split at commas: `pwsh -File` hands '160,128' over as one string (which [int[]] would read as 160128).
    [string[]] $SizeMiB = @('48', '32', '24', '16'),
    [int] $Mbit = 40,
    [int] $LatencyMs = 500,
    [int] $ParallelReads = 2,
    [string[]] $Scenario = @('unlimited', 'server link', 'host link', 'slow server'),
    [ValidateRange(1, 20)] [int] $Repeat = 1,
    [string] $Work,
    [switch] $PassThru
)
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
[int[]] $SizeMiB = @($SizeMiB | ForEach-Object { $_ -split ',' } | Where-Object { $_ } | ForEach-Object { [int]$_ })
$Scenario = @($Scenario | ForEach-Object { $_ -split ',' } | ForEach-Object { $_.Trim() } | Where-Object { $_ })
foreach ($s in $Scenario) { if ($s -notin 'unlimited', 'server link', 'host link', 'slow server') { throw "unknown scenario '$s'" } }
$root = [IO.Path]::GetFullPath((Join-Path $PSScriptRoot '..'))
if (-not $Work) { $Work = Join-Path $root 'artifacts/fanout' }
$Work = [IO.Path]::GetFullPath($Work)
Import-Module (Join-Path $root 'PbsRestore.psd1')
Import-Module (Join-Path $root 'tests/pester/ServerHelpers.psm1')
Import-Module (Join-Path $root 'tests/pester/SshHelpers.psm1')
$runbook = Join-Path $root 'examples/Invoke-RecoveryAcrossHosts.ps1'

# --- the datastore: one VM per size, ids 301.. ------------------------------------------------------------------
$ds = Join-Path $Work 'datastore'
$fixtures = Join-Path $root 'src/PbsRestore.Fixtures/bin/Release/net10.0/PbsRestore.Fixtures.dll'
$expected = @{}
for ($i = 0; $i -lt $SizeMiB.Count; $i++) {
    $id = 301 + $i
    $info = Join-Path $Work "vm-$id-$($SizeMiB[$i])MiB.json"
    if (-not (Test-Path -LiteralPath $info)) {
        $json = & (Get-DotnetPath) $fixtures image --path $ds --id $id --size "$($SizeMiB[$i])MiB" --pattern 'random:3,text:1' --conf --fast-zstd --seed $id
        if ($LASTEXITCODE -ne 0) { throw "writing vm/$id failed" }
        Set-Content -LiteralPath $info -Value ($json -join "`n")
    }
    $snap = (Get-Content -LiteralPath $info -Raw | ConvertFrom-Json -DateKind String).snapshot
    foreach ($a in $snap.archives) { $expected["$($snap.path)|$($a.name)"] = $a.sha256 }
}
$vmIds = @(0..($SizeMiB.Count - 1) | ForEach-Object { "$(301 + $_)" })

$tokenId = 'bench@pbs!fanout'
$secret = [guid]::NewGuid().ToString('N')
$cred = [pscredential]::new($tokenId, (ConvertTo-SecureString -String $secret -AsPlainText -Force))
$sshd = Start-TestSshd -Folder (Join-Path $Work 'sshd')
$scenarios = [ordered]@{
    'unlimited'   = @{ Args = @(); Note = 'no limit: client and server share 2 cores' }
    'server link' = @{ Args = @('--bandwidth-mbit', "$Mbit"); Note = "$Mbit Mbit/s for all connections together" }
    'host link'   = @{ Args = @('--connection-bandwidth-mbit', "$Mbit"); Connections = 1; Note = "$Mbit Mbit/s per connection, 1 per restore" }
    'slow server' = @{ Args = @('--chunk-latency-ms', "$LatencyMs", '--max-parallel-reads', "$ParallelReads"); Note = "$LatencyMs ms per chunk, $ParallelReads reads at once" }
}
$configs = @(
    @{ Name = '1 host x 1'; Hosts = @('127.0.0.1'); Per = 1 }
    @{ Name = '1 host x 2'; Hosts = @('127.0.0.1'); Per = 2 }
    @{ Name = '2 hosts x 1'; Hosts = @('127.0.0.1', 'localhost'); Per = 1 }
)
$rows = [Collections.Generic.List[object]]::new()
try {
    foreach ($name in $Scenario) {
        $s = $scenarios[$name]
        $server = Start-TestServer -Datastore @{ fan = $ds } -Token "${tokenId}:$secret" -ExtraArgument $s.Args -LogFolder (Join-Path $Work 'server')
        try {
            $runs = @{}
            # Rounds go through the three configs in turn, so a busy spell of the machine hits them alike.
            foreach ($round in 1..$Repeat) { foreach ($c in $configs) {
                $dest = Join-Path $Work 'restored'
                if (Test-Path -LiteralPath $dest) { Remove-Item -LiteralPath $dest -Recurse -Force }
                $p = @{
                    VmId = $vmIds; HostName = $c.Hosts; ThrottlePerHost = $c.Per; Destination = $dest
                    Repository = "$tokenId@127.0.0.1:$($server.Port):fan"; Fingerprint = $server.Fingerprint; Credential = $cred
                    ModulePath = (Join-Path $root 'PbsRestore.psd1'); UserName = $sshd.UserName; KeyFilePath = $sshd.KeyFilePath
                    Port = $sshd.Port; SshOption = $sshd.Options; PassThru = $true
                }
                if ($s.Connections) { $p.Connections = $s.Connections }
                $clock = [Diagnostics.Stopwatch]::StartNew()
                $result = @(& $runbook @p 6>$null)
                $clock.Stop()
                $bad = @($result | Where-Object Status -NE 'OK')
                if ($bad.Count) { throw "$name / $($c.Name): $($bad.Count) VM(s) failed: $($bad.Error -join '; ')" }
                foreach ($r in $result.Results) {
                    $sha = (Get-FileHash -LiteralPath $r.Destination -Algorithm SHA256).Hash.ToLowerInvariant()
                    if ($sha -ne $expected["$($r.Snapshot)|$($r.Archive)"]) { throw "$($r.Destination) is not bit-exact" }
                }
                $bytes = [long](($result | Measure-Object Bytes -Sum).Sum)
                $phase = (($result | Measure-Object Finished -Maximum).Maximum - ($result | Measure-Object Started -Minimum).Minimum).TotalSeconds
                $mbps = $bytes / 1MB / $phase
                if (-not $runs[$c.Name]) { $runs[$c.Name] = [Collections.Generic.List[object]]::new() }
                $runs[$c.Name].Add([pscustomobject]@{ Bytes = $bytes; Phase = $phase; Setup = $clock.Elapsed.TotalSeconds - $phase; MBps = $mbps })
                Write-Host ("{0,-12} {1,-12} round {5}: {2,6:N1} s {3,7:N1} MB/s (runbook {4:N1} s)" -f $name, $c.Name, $phase, $mbps, $clock.Elapsed.TotalSeconds, $round)
            } }
            $median = { param($values) $v = @($values | Sort-Object); $v[[int][math]::Floor(($v.Count - 1) / 2)] }
            $base = & $median $runs[$configs[0].Name].MBps
            foreach ($c in $configs) {
                $r = $runs[$c.Name]
                $m = & $median $r.MBps
                $rows.Add([pscustomobject]@{
                        Scenario = $name; Limit = $s.Note; Config = $c.Name; MiB = [math]::Round($r[0].Bytes / 1MB)
                        Seconds = [math]::Round((& $median $r.Phase), 1); Setup = [math]::Round((& $median $r.Setup), 1); MBps = [math]::Round($m, 1)
                        Range = if ($r.Count -gt 1) { '{0:N1}-{1:N1}' -f @(($r.MBps | Measure-Object -Minimum).Minimum, ($r.MBps | Measure-Object -Maximum).Maximum) } else { '-' }
                        VsOneHost = '{0:N2}x' -f ($m / $base); Verified = 'SHA-256 OK'
                    })
            }
        } finally { Stop-TestServer $server }
    }
} finally {
    Stop-TestSshd $sshd
}
$rows | Format-Table Scenario, Config, MiB, Seconds, MBps, Range, VsOneHost, Setup, Verified, Limit -AutoSize | Out-String -Width 220 | Write-Host
$cores = [Environment]::ProcessorCount
$load = if (Test-Path /proc/loadavg) { (Get-Content /proc/loadavg).Split(' ')[0..2] -join ' ' } else { '?' }
Write-Host "Machine: $cores cores, load average $load at the end; MB = 2^20 bytes; all sessions on this machine."
Write-Host "Command: dotnet pwsh ./bench/Measure-FanOut.ps1 -SizeMiB $($SizeMiB -join ',') -Mbit $Mbit -LatencyMs $LatencyMs -ParallelReads $ParallelReads -Repeat $Repeat -Scenario '$($Scenario -join ',')'"
if ($PassThru) { $rows }
