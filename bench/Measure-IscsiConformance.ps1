#requires -Version 7.4
<#
.SYNOPSIS
    libiscsi's conformance suite (iscsi-test-cu --dataloss --test=ALL) against PbsRestore's iSCSI target and against
    Debian's reference target tgt (tgtd), side by side in one run, each with a file-backed 64 MiB LUN.
.DESCRIPTION
    Needs: libiscsi-bin (iscsi-test-cu), tgt (tgtd, tgtadm; root), and a build (dotnet pwsh ./build.ps1 Build: it puts
    PbsRestore.Core.dll under module/bin/deps). Prints one row per target: tests, passed, failed, skipped (a test
    CUnit counts as passed that only logged [SKIPPED]: the target does not implement that command), the failing
    tests, seconds; then the command. -KeepLogs leaves the two full logs in the temp folder.
.EXAMPLE
    dotnet pwsh -NoProfile ./bench/Measure-IscsiConformance.ps1
#>
param([int] $SizeMiB = 64, [switch] $KeepLogs)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
$root = Split-Path -Parent $PSScriptRoot
$core = Join-Path $root 'module/bin/deps/PbsRestore.Core.dll'
if (-not (Test-Path -LiteralPath $core)) { throw "$core not found: run 'dotnet pwsh ./build.ps1 Build' first." }
foreach ($tool in 'iscsi-test-cu') { if (-not (Get-Command $tool -ErrorAction Ignore)) { throw "$tool not found (Debian package libiscsi-bin)." } }
$haveTgt = [bool](Get-Command tgtd -ErrorAction Ignore)

function Get-FreePort {
    $l = [Net.Sockets.TcpListener]::new([Net.IPAddress]::Loopback, 0); $l.Start()
    try { $l.LocalEndpoint.Port } finally { $l.Stop() }
}

function Invoke-TestCu([string] $Name, [string] $Url, [string] $Log) {
    $clock = [Diagnostics.Stopwatch]::StartNew()
    & iscsi-test-cu --dataloss --test=ALL $Url *> $Log
    $seconds = $clock.Elapsed.TotalSeconds
    $text = Get-Content -Raw -LiteralPath $Log
    # A test's result is the first bare 'passed' or 'FAILED' after its name ('[FAILED] ...' lines are log text).
    $tests = [regex]::Matches($text, '(?s)Test: (\S+) \.\.\.(.*?)(?<![\[\w])(passed|FAILED)(?![\]\w])')
    $failed = @($tests | Where-Object { $_.Groups[3].Value -eq 'FAILED' })
    $skipped = @($tests | Where-Object { $_.Groups[3].Value -eq 'passed' -and $_.Groups[2].Value -match '\[SKIPPED\]' })
    $summary = [regex]::Match($text, 'tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)')
    [pscustomobject]@{
        Target  = $Name
        Tests   = if ($summary.Success) { [int]$summary.Groups[2].Value } else { $tests.Count }
        Passed  = if ($summary.Success) { [int]$summary.Groups[3].Value } else { $tests.Count - $failed.Count }
        Failed  = if ($summary.Success) { [int]$summary.Groups[4].Value } else { $failed.Count }
        Skipped = $skipped.Count
        Seconds = [math]::Round($seconds, 1)
        Failing = ($failed | ForEach-Object { $_.Groups[1].Value }) -join ', '
    }
}

$work = Join-Path ([IO.Path]::GetTempPath()) "pbs-iscsi-conformance-$PID"
New-Item -ItemType Directory -Path $work | Out-Null
$rows = @()
try {
    # --- ours: the target in this process, a file-backed LUN 0
    Add-Type -LiteralPath $core
    $ourFile = Join-Path $work 'ours.img'
    [IO.File]::WriteAllBytes($ourFile, @()); $fs = [IO.File]::Open($ourFile, 'Open'); $fs.SetLength($SizeMiB * 1MB); $fs.Dispose()
    $device = [PbsRestore.Publishing.FileBlockDevice]::new($ourFile, 512, $false)
    $luns = [Collections.Generic.List[PbsRestore.Publishing.Iscsi.IscsiLun]]::new()
    $luns.Add([PbsRestore.Publishing.Iscsi.IscsiLun]::new(0, 'conformance', $device))
    $options = [PbsRestore.Publishing.Iscsi.IscsiTargetOptions]@{ TargetName = 'iqn.2024-01.org.pbsrestore:conformance'; Luns = $luns }
    $target = [PbsRestore.Publishing.Iscsi.IscsiTarget]::StartAsync($options, [Threading.CancellationToken]::None).GetAwaiter().GetResult()
    try {
        $url = "iscsi://127.0.0.1:$($target.LocalEndPoint.Port)/$($target.TargetName)/0"
        $rows += Invoke-TestCu 'PbsRestore' $url (Join-Path $work 'ours.log')
    }
    finally {
        $null = $target.DisposeAsync().AsTask().GetAwaiter().GetResult()
        $device.Dispose()
    }

    # --- tgt: tgtd in the foreground on its own portal and control port, a file-backed LUN 1 (LUN 0 is its controller)
    if (-not $haveTgt) { Write-Warning 'tgtd not found (Debian package tgt): the reference row is skipped.' }
    else {
        $tgtFile = Join-Path $work 'tgt.img'
        $fs = [IO.File]::Create($tgtFile); $fs.SetLength($SizeMiB * 1MB); $fs.Dispose()
        $port = Get-FreePort
        $control = Get-Random -Minimum 100 -Maximum 60000
        $tgtd = Start-Process -FilePath tgtd -ArgumentList '-f', '-C', $control, '--iscsi', "portal=127.0.0.1:$port" -PassThru `
            -RedirectStandardOutput (Join-Path $work 'tgtd.out') -RedirectStandardError (Join-Path $work 'tgtd.err')
        try {
            $iqn = 'iqn.2024-01.org.pbsrestore:tgt-reference'
            $ready = $false
            foreach ($i in 1..150) {   # up to 30 s: tgtd starts slowly on a loaded machine
                if ($tgtd.HasExited) { break }
                & tgtadm -C $control --lld iscsi --op new --mode target --tid 1 -T $iqn 2>$null
                if ($LASTEXITCODE -eq 0) { $ready = $true; break }
                Start-Sleep -Milliseconds 200
            }
            if (-not $ready) { throw "tgtd did not start (tgtadm could not reach it on control port $control; tgtd needs root): $(Get-Content -Raw -LiteralPath (Join-Path $work 'tgtd.err'))" }
            & tgtadm -C $control --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b $tgtFile
            & tgtadm -C $control --lld iscsi --op bind --mode target --tid 1 -I ALL
            $version = (& tgtd -V 2>&1 | Select-Object -First 1)
            $rows += Invoke-TestCu "tgt $version" "iscsi://127.0.0.1:$port/$iqn/1" (Join-Path $work 'tgt.log')
        }
        finally {
            if (-not $tgtd.HasExited) { $tgtd.Kill(); $tgtd.WaitForExit() }
        }
    }
}
finally {
    if ($KeepLogs) { Write-Host "logs kept in $work" } else { Remove-Item -Recurse -Force -LiteralPath $work -ErrorAction SilentlyContinue }
}
$rows | Format-Table -AutoSize -Wrap | Out-String -Width 200 | Write-Host
Write-Host "Command: dotnet pwsh -NoProfile ./bench/Measure-IscsiConformance.ps1   (iscsi-test-cu --dataloss --test=ALL iscsi://127.0.0.1:PORT/IQN/LUN, $SizeMiB MiB file-backed LUN each)"
