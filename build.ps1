#!/usr/bin/env pwsh
# PbsRestore build script. Needs only the .NET SDK:
#   dotnet tool restore
#   dotnet pwsh ./build.ps1 [Build|Test|Demo|Bench|Clean] [-Configuration Release|Debug]
#
# Build: builds PbsRestore.slnx and copies the module's DLLs into module/bin/, so that
#        `Import-Module ./PbsRestore.psd1` works from the repo root.
# Test:  Build, then xunit (dotnet test) and Pester (tests/pester/*.Tests.ps1, in a child pwsh);
#        results in artifacts/test/; ends with the line `N passed, N failed` (also in
#        artifacts/test/summary.txt) and exits 1 if anything failed or no test ran.
#        As root with ../shared/upstream-pbs present, the genuine PBS server is started empty (start.sh --fresh),
#        filled (make-data.sh artifacts/upstream/data) and stopped after the tests; the tests get
#        PBS_UPSTREAM_STATE/_DATA/_DATASTORE, or PBS_UPSTREAM_SKIP with the reason (the genuine-server group then
#        skips visibly). With PBS_UPSTREAM_STATE already set, that running peer is used and left alone.
# Demo:  Build, then runs examples/demo.ps1 in a child pwsh.
# Bench: Build (Release), then the restore benchmark (bench/PbsRestore.Bench): datastores under artifacts/bench,
#        strategies x scenarios, ceilings, memory, sparse; writes bench/RESULTS.md (~10 min; CI never runs it).
#        Extra arguments go to the benchmark: -BenchArgs '--repeats','3'.
# Fuzz:  fuzzes the format parsers for PBS_FUZZ_SECONDS (default 60) per target; crashes become regression tests.
# Soak:  the fault matrix (xunit FaultMatrix, RemoteRetry, ServerFaultInjection) and the Ctrl+C / kill -9 / -Resume
#        Pester tests, PBS_SOAK_ROUNDS times (default 10), with other seeds each round; prints a table.
# Clean: removes bin/, obj/, module/bin/, en-US/ (a build copy of module/en-US) and artifacts/ (keeps the .tools/ download cache).
param(
    [ValidateSet('Build', 'Test', 'Demo', 'Bench', 'Package', 'Fuzz', 'Soak', 'Clean')]
    [string] $Task = 'Build',
    [string] $Configuration = 'Release',
    [string[]] $BenchArgs = @()
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
if ($env:CI -or [Console]::IsOutputRedirected) { $PSStyle.OutputRendering = 'PlainText' }   # no ANSI codes in logs

$Root = $PSScriptRoot
Set-Location -LiteralPath $Root

$PesterVersion = '5.7.1'          # pinned; must match tests/pester/Pester.Download.csproj
$ToolsPackages = Join-Path $Root '.tools/nuget'
$ModuleBin = Join-Path $Root 'module/bin'
$TestResults = Join-Path $Root 'artifacts/test'
$PowerShellProject = Join-Path $Root 'src/PbsRestore.PowerShell'
# Assemblies PowerShell itself provides; shipping them in module/bin would shadow or clash.
$NotShipped = @('System.Management.Automation', 'Microsoft.Management.Infrastructure')   # base names

function Invoke-Native {
    # Runs a native command and throws if it exits non-zero.
    param([Parameter(Mandatory)] [string] $Command, [string[]] $Arguments = @())
    Write-Host "> $Command $($Arguments -join ' ')"
    & $Command @Arguments | Out-Host
    if ($LASTEXITCODE -ne 0) { throw "'$Command $($Arguments -join ' ')' failed with exit code $LASTEXITCODE." }
}

function Get-ChildPwsh {
    # The pwsh that runs this script, as a command + leading arguments for a child process.
    # As a local dotnet tool (`dotnet pwsh`) the process is dotnet running $PSHOME/pwsh.dll.
    $self = [Environment]::ProcessPath
    $dll = Join-Path $PSHOME 'pwsh.dll'
    if ([IO.Path]::GetFileNameWithoutExtension($self) -eq 'dotnet' -and (Test-Path -LiteralPath $dll -PathType Leaf)) {
        return , @($self, $dll)
    }
    return , @($self)
}

function Invoke-ChildPwsh {
    # Runs a script file in a fresh pwsh process (its output straight to this console, so it
    # formats for the real window width); the caller reads $LASTEXITCODE. Does not throw.
    param([Parameter(Mandatory)] [string] $File, [string[]] $Arguments = @())
    $pwsh = Get-ChildPwsh
    $cmd = $pwsh[0]
    $cmdArgs = @($pwsh | Select-Object -Skip 1) + @('-NoProfile', '-NonInteractive', '-File', $File) + $Arguments
    Write-Host "> $cmd $($cmdArgs -join ' ')"
    & $cmd @cmdArgs
}

function Invoke-Build {
    Invoke-Native dotnet @('build', (Join-Path $Root 'PbsRestore.slnx'), '-c', $Configuration, '-nologo')

    $out = Join-Path $PowerShellProject "bin/$Configuration/net8.0"
    if (-not (Test-Path -LiteralPath (Join-Path $out 'PbsRestore.PowerShell.dll'))) {
        throw "Build output not found: $out/PbsRestore.PowerShell.dll"
    }
    if (Test-Path -LiteralPath $ModuleBin) { Remove-Item -LiteralPath $ModuleBin -Recurse -Force }
    New-Item -ItemType Directory -Path $ModuleBin -Force | Out-Null
    $files = Get-ChildItem -LiteralPath $out -File |
        Where-Object { $_.Extension -in '.dll', '.pdb' -and $_.BaseName -notin $NotShipped }
    # Only the cmdlet assembly sits in module/bin (PowerShell's default load context); the core and its
    # third-party dependencies go to module/bin/deps, from where the module loads them into a private
    # AssemblyLoadContext: another module's version of the same libraries can neither break us nor be used by us.
    $deps = Join-Path $ModuleBin 'deps'
    New-Item -ItemType Directory -Path $deps -Force | Out-Null
    $ours = { $_.BaseName -eq 'PbsRestore.PowerShell' }
    $files | Where-Object $ours | Copy-Item -Destination $ModuleBin -Force
    $files | Where-Object { -not (& $ours) } | Copy-Item -Destination $deps -Force
    Write-Host "Module files: module/bin: PbsRestore.PowerShell.dll; module/bin/deps: $(($files | Where-Object { $_.Extension -eq '.dll' -and -not (& $ours) } | ForEach-Object Name) -join ', ')"

    # Offline help (source: module/en-US). Get-Help looks in <ModuleBase>/<culture>: for a module imported
    # through PbsRestore.psd1 that is en-US/ next to the manifest (not next to the DLL); for the DLL imported
    # directly it is module/bin/en-US/. Copy to both.
    $helpSource = Join-Path $Root 'module/en-US'
    foreach ($helpTarget in (Join-Path $ModuleBin 'en-US'), (Join-Path $Root 'en-US')) {
        if (Test-Path -LiteralPath $helpTarget) { Remove-Item -LiteralPath $helpTarget -Recurse -Force }
        Copy-Item -LiteralPath $helpSource -Destination $helpTarget -Recurse -Force
    }
    Write-Host "Help files in en-US and module/bin/en-US: $((Get-ChildItem -LiteralPath $helpSource -File).Name -join ', ')"
}

function Get-PesterManifest {
    # Pester comes from NuGet (not the PowerShell Gallery) through a download-only project,
    # into .tools/nuget. Once there, no network is needed again.
    $manifest = Join-Path $ToolsPackages "pester/$PesterVersion/tools/Pester.psd1"
    if (-not (Test-Path -LiteralPath $manifest)) {
        Invoke-Native dotnet @('restore', (Join-Path $Root 'tests/pester/Pester.Download.csproj'),
            '--packages', $ToolsPackages, '-nologo')
        if (-not (Test-Path -LiteralPath $manifest)) { throw "Pester $PesterVersion not found at $manifest after restore." }
    }
    return $manifest
}

function Install-DebianPackages([string[]] $Packages, [string] $Why) {
    # The one way the test run installs Debian packages it needs (as root, where apt-get exists): one try, and after a
    # failure one more after `apt-get update` (a fresh machine's package lists may be missing or stale).
    # Returns $false where nothing could be tried; callers check for their tools afterwards either way.
    if (-not ((Get-Command apt-get -ErrorAction SilentlyContinue) -and $IsLinux -and ((& id -u) -eq '0'))) { return $false }
    Write-Host "> apt-get install $($Packages -join ' ') ($Why)"
    & apt-get install -y --no-install-recommends @Packages *> $null
    if ($LASTEXITCODE -ne 0) {
        & apt-get update *> $null
        & apt-get install -y --no-install-recommends @Packages *> $null
    }
    return $true
}

function Install-QemuImg {
    # The VHDX/VHD tests read our images back with qemu-img (Debian's qemu-utils), an independent implementation.
    if (Get-Command qemu-img -ErrorAction SilentlyContinue) { return }
    Install-DebianPackages @('qemu-utils') 'for the VHDX/VHD tests' | Out-Null
    if (-not (Get-Command qemu-img -ErrorAction SilentlyContinue)) {
        Write-Warning 'qemu-img not found and not installable here: the VHDX/VHD read-back tests will fail. Install qemu-utils (Debian/Ubuntu) or QEMU.'
    }
}

function Install-IscsiTools {
    # The iSCSI target tests use independent initiators: libiscsi's tools and conformance suite (libiscsi-bin),
    # qemu-img/qemu-io over iscsi:// (qemu-block-extra), and tgt as the reference target for the conformance bench.
    $need = @(@{ Tool = 'iscsi-test-cu'; Package = 'libiscsi-bin' }, @{ Tool = 'tgtd'; Package = 'tgt' }) |
        Where-Object { -not (Get-Command $_.Tool -ErrorAction SilentlyContinue) } | ForEach-Object { $_.Package }
    $blockExtra = @(Get-ChildItem -Path '/usr/lib/*/qemu/block-iscsi.so', '/usr/lib/qemu/block-iscsi.so' -ErrorAction SilentlyContinue).Count -gt 0
    if (-not $blockExtra) { $need += 'qemu-block-extra' }
    if (-not $need) { return }
    if (-not (Install-DebianPackages $need 'for the iSCSI initiator tests')) {
        Write-Warning "$($need -join ', ') not installed and not installable here: the iSCSI initiator tests will be skipped."
    }
}

function Install-AclTools {
    # The ACL and file-capability restore tests read restored metadata back with getfacl (acl) and getcap (libcap2-bin).
    if ((Get-Command getfacl -ErrorAction SilentlyContinue) -and (Get-Command getcap -ErrorAction SilentlyContinue)) { return }
    Install-DebianPackages @('acl', 'libcap2-bin') 'for the ACL and fcaps restore tests' | Out-Null
    if (-not (Get-Command getfacl -ErrorAction SilentlyContinue)) { Write-Warning 'getfacl not found: the ACL read-back tests are skipped.' }
}

function Start-UpstreamPeer {
    # The genuine-server test group (issue 12): the genuine PBS 3.2.4 from ../shared/upstream-pbs, started empty once
    # per run, filled by its make-data.sh; the tests read PBS_UPSTREAM_STATE / _DATA / _DATASTORE, or skip visibly
    # with PBS_UPSTREAM_SKIP. PBS_UPSTREAM_STATE already set means "use that running peer": nothing is started or
    # stopped (a developer's shared peer stays as it is). Returns $true when this run started the peer (stop it after).
    if ($env:PBS_UPSTREAM_STATE -or $env:PBS_UPSTREAM_SKIP) {
        if ($env:PBS_UPSTREAM_SKIP) { Write-Host "Genuine PBS server: PBS_UPSTREAM_SKIP is set: $env:PBS_UPSTREAM_SKIP" }
        else { Write-Host "Genuine PBS server: using the running peer of PBS_UPSTREAM_STATE=$env:PBS_UPSTREAM_STATE (data $env:PBS_UPSTREAM_DATA); not started or stopped here" }
        return $false
    }
    $scripts = [IO.Path]::GetFullPath((Join-Path $Root '../shared/upstream-pbs'))
    $start = Join-Path $scripts 'start.sh'
    $reason = if (-not $IsLinux) { 'not Linux (the genuine server runs on Debian x86_64 only)' }
        elseif (-not (Test-Path -LiteralPath $start -PathType Leaf)) { "$start not found" }
        elseif ((& id -u) -ne '0') { 'not root (start.sh needs root for its network namespace and tmpfs)' }
    $started = $false
    if (-not $reason) {
        $clock = [Diagnostics.Stopwatch]::StartNew()
        Write-Host "> $start --fresh"
        $stderr = Join-Path ([IO.Path]::GetTempPath()) "pbs-upstream-start-$PID.txt"
        $out = @(& $start --fresh 2> $stderr)
        $exit = $LASTEXITCODE
        $started = $true   # even a failed start may have left something for stop.sh
        if ($exit -ne 0) {
            $failed = @($out | Where-Object { "$_" -like 'FAILED:*' } | Select-Object -First 1)
            $reason = if ($failed.Count) { "$($failed[0])".Substring(7).Trim() } else { "start.sh exited with $exit" }
            Get-Content -LiteralPath $stderr -ErrorAction SilentlyContinue | ForEach-Object { Write-Host "  start.sh: $_" }
        } else {
            $startSeconds = $clock.Elapsed.TotalSeconds
            $state = '/run/pbs-upstream/state.json'
            $info = Get-Content -LiteralPath $state -Raw | ConvertFrom-Json
            $data = Join-Path $Root 'artifacts/upstream/data'
            Write-Host "> $(Join-Path $scripts 'make-data.sh') $data"
            $made = @(& (Join-Path $scripts 'make-data.sh') $data 2>&1)
            if ($LASTEXITCODE -ne 0 -or -not (Test-Path -LiteralPath (Join-Path $data 'expected.json'))) {
                $failed = @($made | Where-Object { "$_" -like 'FAILED:*' } | Select-Object -First 1)
                $reason = if ($failed.Count) { "make-data.sh: $("$($failed[0])".Substring(7).Trim())" } else { "make-data.sh exited with $LASTEXITCODE" }
                $made | Select-Object -Last 15 | ForEach-Object { Write-Host "  make-data.sh: $_" }
            } else {
                $env:PBS_UPSTREAM_STATE = $state
                $env:PBS_UPSTREAM_DATA = $data
                $env:PBS_UPSTREAM_DATASTORE = $info.datastore_path
                Write-Host ("Genuine PBS server {0} at {1} (started in {2:N1} s, data made in {3:N1} s): the genuine-server tests run" -f
                    $info.version, $info.url, $startSeconds, ($clock.Elapsed.TotalSeconds - $startSeconds))
            }
        }
        Remove-Item -LiteralPath $stderr -ErrorAction SilentlyContinue
    }
    if ($reason) {
        $env:PBS_UPSTREAM_SKIP = $reason
        foreach ($n in 'PBS_UPSTREAM_STATE', 'PBS_UPSTREAM_DATA', 'PBS_UPSTREAM_DATASTORE') { [Environment]::SetEnvironmentVariable($n, $null) }
        Write-Host "Genuine PBS server: not available, the genuine-server tests are SKIPPED: $reason"
    }
    $started
}

function Stop-UpstreamPeer {
    $stop = [IO.Path]::GetFullPath((Join-Path $Root '../shared/upstream-pbs/stop.sh'))
    Write-Host "> $stop"
    & $stop | Out-Host
}

function Get-UpstreamSummary {
    # One line for the end of the log: did the genuine-server group run, and how did it do (xunit class names and
    # Pester files with 'Upstream' in them).
    param($Trx, $PesterSummary)
    if ($env:PBS_UPSTREAM_SKIP) { return "Genuine-server group: SKIPPED ($env:PBS_UPSTREAM_SKIP)" }
    $p = 0; $f = 0; $s = 0
    if ($Trx) {
        foreach ($r in $Trx.TestRun.Results.UnitTestResult) {
            if ($r.testName -notlike '*.Upstream.*') { continue }
            switch ($r.outcome) { 'Passed' { $p++ } 'NotExecuted' { $s++ } default { $f++ } }
        }
    }
    if ($PesterSummary -and $PesterSummary.PSObject.Properties['upstream']) {
        $p += [int]$PesterSummary.upstream.passed; $f += [int]$PesterSummary.upstream.failed; $s += [int]$PesterSummary.upstream.skipped
    }
    "Genuine-server group: ran against the genuine PBS of $($env:PBS_UPSTREAM_STATE): $p passed, $f failed, $s skipped"
}

function Invoke-Test {
    Invoke-Package | Out-Null   # builds, and gives tests/pester/Package.Tests.ps1 the packaged module
    Install-QemuImg
    Install-IscsiTools
    Install-AclTools

    if (Test-Path -LiteralPath $TestResults) { Remove-Item -LiteralPath $TestResults -Recurse -Force }
    New-Item -ItemType Directory -Path $TestResults -Force | Out-Null
    $upstreamStarted = Start-UpstreamPeer
    try {   # (body not re-indented, to keep the diff small) the peer is stopped whatever the tests do

    # --- xunit ---------------------------------------------------------------------------
    $trx = Join-Path $TestResults 'xunit.trx'
    Write-Host "> dotnet test tests/PbsRestore.Tests -c $Configuration --no-build"
    & dotnet test (Join-Path $Root 'tests/PbsRestore.Tests') -c $Configuration --no-build `
        --logger 'trx;LogFileName=xunit.trx' --logger 'console;verbosity=normal' --results-directory $TestResults
    $xunitExit = $LASTEXITCODE
    $xunitPassed = 0; $xunitFailed = 0
    if (Test-Path -LiteralPath $trx) {
        [xml] $doc = Get-Content -LiteralPath $trx -Raw
        $counters = $doc.TestRun.ResultSummary.Counters
        $count = { param($name) [int] $counters.GetAttribute($name) }   # a missing attribute reads as 0
        $xunitPassed = & $count 'passed'
        $xunitFailed = (& $count 'failed') + (& $count 'error') + (& $count 'timeout') + (& $count 'aborted')
    }
    if ($xunitExit -ne 0 -and $xunitFailed -eq 0) {
        Write-Host "dotnet test exited with $xunitExit without a failed test in the trx: counting 1 failure."
        $xunitFailed = 1
    }
    Write-Host "xunit: $xunitPassed passed, $xunitFailed failed"
    $failures = [Collections.Generic.List[string]]::new()
    if ($xunitFailed -gt 0 -and (Test-Path -LiteralPath $trx)) {
        foreach ($r in $doc.TestRun.Results.UnitTestResult) {
            if ($r.outcome -eq 'Passed' -or $r.outcome -eq 'NotExecuted') { continue }
            $message = "$($r.Output.ErrorInfo.Message)" -replace '\s+', ' '
            if ($message.Length -gt 400) { $message = $message.Substring(0, 400) + '...' }
            $failures.Add("xunit $($r.outcome): $($r.testName) ($($r.duration)): $message")
        }
    }

    # --- Pester (child process) ----------------------------------------------------------
    $pesterPassed = 0; $pesterFailed = 0
    $pesterFiles = @(Get-ChildItem -Path (Join-Path $Root 'tests/pester') -Filter '*.Tests.ps1' -File -ErrorAction SilentlyContinue)
    if ($pesterFiles.Count -eq 0) {
        Write-Host 'Pester: no tests/pester/*.Tests.ps1 files, nothing to run.'
    } else {
        $summaryJson = Join-Path $TestResults 'pester-summary.json'
        $pesterExit = 1
        try {
            $manifest = Get-PesterManifest
            Invoke-ChildPwsh (Join-Path $Root 'tests/pester/Invoke-PesterRun.ps1') @(
                '-PesterManifest', $manifest, '-ResultsXml', (Join-Path $TestResults 'pester.xml'), '-SummaryJson', $summaryJson)
            $pesterExit = $LASTEXITCODE
        } catch {
            Write-Host "Pester could not run: $_"
        }
        if (Test-Path -LiteralPath $summaryJson) {
            $s = Get-Content -LiteralPath $summaryJson -Raw | ConvertFrom-Json
            $pesterPassed = [int] $s.passed
            $pesterFailed = [int] $s.failed
            foreach ($f in @($s.failures)) { if ($f) { $failures.Add("Pester: $f") } }
        }
        if ($pesterExit -ne 0 -and $pesterFailed -eq 0) {
            Write-Host "Pester run exited with $pesterExit without a failed test: counting 1 failure."
            $pesterFailed = 1
        }
        Write-Host "Pester: $pesterPassed passed, $pesterFailed failed"
    }

    } finally {
        if ($upstreamStarted) { Stop-UpstreamPeer }
    }
    $upstreamLine = Get-UpstreamSummary -Trx $(if (Test-Path -LiteralPath $trx) { $doc }) -PesterSummary $(if ($pesterFiles.Count -and (Test-Path -LiteralPath $summaryJson)) { $s })

    # --- summary -------------------------------------------------------------------------
    $passed = $xunitPassed + $pesterPassed
    $failed = $xunitFailed + $pesterFailed
    $line = "$passed passed, $failed failed"
    Set-Content -LiteralPath (Join-Path $TestResults 'summary.txt') -Value $line -Encoding utf8
    if ($passed + $failed -eq 0) { Write-Host 'No test ran.' }
    # Repeated here because CI logs are read from the tail.
    if ($failures.Count -gt 0) {
        Write-Host 'Failed:'
        foreach ($f in $failures) { Write-Host "  $f" }
    }
    Write-Host $upstreamLine
    Write-Host $line
    if ($failed -gt 0 -or $passed -eq 0) { exit 1 }
}

function Invoke-Demo {
    Invoke-Build
    $demo = Join-Path $Root 'examples/demo.ps1'
    if (-not (Test-Path -LiteralPath $demo)) {
        New-Item -ItemType Directory -Path (Split-Path $demo) -Force | Out-Null
        Set-Content -LiteralPath $demo -Encoding utf8 -Value @(
            '# Placeholder demo (to be replaced): loads the module and lists its cmdlets.'
            'Import-Module (Join-Path $PSScriptRoot ../PbsRestore.psd1)'
            'Get-Command -Module PbsRestore')
    }
    Invoke-ChildPwsh $demo
    if ($LASTEXITCODE -ne 0) { throw "examples/demo.ps1 failed with exit code $LASTEXITCODE." }
}

function Invoke-Bench {
    # The benchmark runs the Release build of the server (src/PbsRestore.Server/bin/Release/net10.0).
    if ($Configuration -ne 'Release') { Write-Host "Bench always uses the Release build (-Configuration $Configuration ignored)."; $script:Configuration = 'Release' }
    Invoke-Build
    $dll = Join-Path $Root 'bench/PbsRestore.Bench/bin/Release/net10.0/PbsRestore.Bench.dll'
    if (-not (Test-Path -LiteralPath $dll)) { throw "Build output not found: $dll" }
    # From a shell (`pwsh -File`), -BenchArgs '--repeats','3' arrives as one string: split it at the commas.
    $benchArgs = @($BenchArgs | ForEach-Object { $_ -split ',' } | Where-Object { $_ })
    Invoke-Native dotnet (@($dll) + $benchArgs)
}

function Invoke-Package {
    # A clean module folder, ready for Publish-Module: artifacts/package/PbsRestore/<files>. Its manifest is the
    # repository's, with paths relative to the module folder instead of the repository root.
    Invoke-Build
    $target = Join-Path $Root 'artifacts/package/PbsRestore'
    if (Test-Path -LiteralPath $target) { Remove-Item -LiteralPath $target -Recurse -Force }
    New-Item -ItemType Directory -Path $target | Out-Null
    Copy-Item -LiteralPath $ModuleBin -Destination (Join-Path $target 'bin') -Recurse
    Get-ChildItem -LiteralPath (Join-Path $target 'bin') -Recurse -Filter '*.pdb' | Remove-Item
    Remove-Item -LiteralPath (Join-Path $target 'bin/en-US') -Recurse -Force -ErrorAction SilentlyContinue
    Copy-Item -LiteralPath (Join-Path $Root 'module/en-US') -Destination (Join-Path $target 'en-US') -Recurse
    Copy-Item -LiteralPath (Join-Path $Root 'module/PbsRestore.Format.ps1xml') -Destination $target
    Copy-Item -LiteralPath (Join-Path $Root 'module/PbsRestore.Types.ps1xml') -Destination $target
    $manifest = Get-Content -LiteralPath (Join-Path $Root 'PbsRestore.psd1') -Raw
    $manifest = $manifest.Replace("'module/bin/PbsRestore.PowerShell.dll'", "'bin/PbsRestore.PowerShell.dll'").Replace("'module/PbsRestore.Format.ps1xml'", "'PbsRestore.Format.ps1xml'").Replace("'module/PbsRestore.Types.ps1xml'", "'PbsRestore.Types.ps1xml'")
    Set-Content -LiteralPath (Join-Path $target 'PbsRestore.psd1') -Value $manifest -Encoding utf8
    $info = Test-ModuleManifest -Path (Join-Path $target 'PbsRestore.psd1')
    Write-Host "Packaged PbsRestore $($info.Version) (PowerShell $($info.PowerShellVersion)+, $($info.CompatiblePSEditions -join ', ')) with $($info.ExportedCmdlets.Count) cmdlets in $target"
    $target
}

function Invoke-Fuzz {
    # Mutation-fuzzes the parsers (blob, fixed and dynamic index, manifest, key file) for a fixed time per target;
    # a crashing input is saved under tests/PbsRestore.Tests/Formats/FuzzRegressions (replayed by xunit) and fails the task.
    Invoke-Native dotnet @('build', (Join-Path $Root 'tests/PbsRestore.Fuzz'), '-c', 'Release', '-nologo')
    $seconds = if ($env:PBS_FUZZ_SECONDS) { $env:PBS_FUZZ_SECONDS } else { '60' }
    Invoke-Native dotnet @((Join-Path $Root 'tests/PbsRestore.Fuzz/bin/Release/net10.0/PbsRestore.Fuzz.dll'), '--seconds', $seconds, '--target', 'all')
}

function Invoke-Soak {
    # The fault matrix again and again with other seeds (PBS_FAULT_SEED): what CI runs once, for longer.
    Invoke-Build
    $rounds = if ($env:PBS_SOAK_ROUNDS) { [int]$env:PBS_SOAK_ROUNDS } else { 10 }
    $filter = 'FullyQualifiedName~FaultMatrix|FullyQualifiedName~RemoteRetry|FullyQualifiedName~ServerFaultInjection'
    Import-Module (Join-Path $ToolsPackages "pester/$PesterVersion/tools/Pester.psd1") -Force
    $resumeTests = Join-Path $Root 'tests/pester/Restore-PbsImage.Resume.Tests.ps1'
    $rows = foreach ($round in 1..$rounds) {
        $env:PBS_FAULT_SEED = "$round"
        $clock = [Diagnostics.Stopwatch]::StartNew()
        $out = & dotnet test (Join-Path $Root 'tests/PbsRestore.Tests') -c $Configuration --no-build --filter $filter 2>&1
        $line = @($out | Select-String -Pattern 'Passed!|Failed!' | Select-Object -Last 1)
        $xunit = if ($line.Count -and "$($line[0])" -match 'Failed:\s+(\d+), Passed:\s+(\d+)') { "$($Matches[2]) passed, $($Matches[1]) failed" } else { 'no result' }
        $p = Invoke-Pester -Path $resumeTests -PassThru -Output None
        $out | Select-String -Pattern '^\s+Failed ' | ForEach-Object { Write-Host "  round ${round}: $_" }
        [pscustomobject]@{ Round = $round; Xunit = $xunit; Pester = "$($p.PassedCount) passed, $($p.FailedCount) failed"; Seconds = [int]$clock.Elapsed.TotalSeconds }
    }
    Remove-Item Env:PBS_FAULT_SEED -ErrorAction SilentlyContinue
    $rows | Format-Table -AutoSize | Out-String | Write-Host
    Write-Host "Command: PBS_SOAK_ROUNDS=$rounds dotnet pwsh ./build.ps1 Soak"
    if ($rows | Where-Object { $_.Xunit -notmatch ' 0 failed' -or $_.Pester -notmatch ' 0 failed' }) { throw 'the soak found failures' }
}

function Invoke-Clean {
    $dirs = @(Get-ChildItem -Path (Join-Path $Root 'src'), (Join-Path $Root 'tests'), (Join-Path $Root 'bench') -Directory -Recurse -ErrorAction SilentlyContinue |
        Where-Object { $_.Name -in 'bin', 'obj', 'TestResults' })
    $dirs += @((Join-Path $Root 'module/bin'), (Join-Path $Root 'artifacts'), (Join-Path $Root 'en-US') | Where-Object { Test-Path -LiteralPath $_ } | Get-Item)
    foreach ($d in $dirs) {
        if (Test-Path -LiteralPath $d.FullName) {
            Write-Host "Removing $($d.FullName)"
            Remove-Item -LiteralPath $d.FullName -Recurse -Force
        }
    }
}

switch ($Task) {
    'Build' { Invoke-Build }
    'Test' { Invoke-Test }
    'Demo' { Invoke-Demo }
    'Bench' { Invoke-Bench }
    'Package' { Invoke-Package | Out-Null }
    'Fuzz' { Invoke-Fuzz }
    'Soak' { Invoke-Soak }
    'Clean' { Invoke-Clean }
}
