# The cmdlet layer (issue 13, item 6): every client a command or a completer opens is closed when it is done
# (counted as this process's TCP connections to our server, on Linux from /proc), a whole-snapshot restore
# writes each archive's result as soon as that archive is complete, while the others are still being restored,
# and the bridge itself (a probe cmdlet built on PbsCmdlet, compiled here) streams objects, warnings, verbose and
# ShouldProcess from async work while that work waits on them, and Ctrl+C cancels the work at once.
BeforeDiscovery {
    $script:NoProcNet = if (-not $IsLinux -or -not (Test-Path -LiteralPath '/proc/net/tcp')) {
        'counts connections from /proc/<pid>/fd and /proc/net/tcp, which only Linux has'
    }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot '../../PbsRestore.psd1') -Force
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Join-Path $PSScriptRoot 'ServerHelpers.psm1') -Force
    $script:SavedEnv = Save-PbsEnvironment
    Clear-PbsEnvironment
    $script:TokenId = 'tester@pbs!bridge'
    $script:Secret = 'bridge-S3cret-7f2a'
    $script:Credential = New-PbsCredential $script:TokenId $script:Secret

    # The golden datastore twice: at full speed, and at 2 Mbit/s so that vm/100's disks (4 MiB) take seconds.
    $script:Fast = Start-TestServer -Datastore @{ golden = (Get-GoldenDatastore) } -Token "$($script:TokenId):$($script:Secret)" `
        -LogFolder (Join-Path $TestDrive 'fast')
    $script:Slow = Start-TestServer -Datastore @{ golden = (Get-GoldenDatastore) } -Token "$($script:TokenId):$($script:Secret)" `
        -ExtraArgument @('--bandwidth-mbit', '2') -LogFolder (Join-Path $TestDrive 'slow')
    function Get-Where($Server) {
        @{ Repository = "$($script:TokenId)@127.0.0.1:$($Server.Port):golden"; Fingerprint = $Server.Fingerprint; Credential = $script:Credential }
    }
    $script:Where = Get-Where $script:Fast

    function Get-OpenConnectionCount([int] $Port) {
        # TCP sockets this process holds open (a file descriptor) whose remote end is 127.0.0.1:$Port.
        $mine = [System.Collections.Generic.HashSet[string]]::new()
        foreach ($fd in [IO.Directory]::GetFiles("/proc/$PID/fd")) {
            $target = try { [IO.FileInfo]::new($fd).LinkTarget } catch { $null }
            if ($target -match '^socket:\[(\d+)\]$') { [void]$mine.Add($Matches[1]) }
        }
        $count = 0
        foreach ($table in '/proc/net/tcp', '/proc/net/tcp6') {
            if (-not (Test-Path -LiteralPath $table)) { continue }
            foreach ($line in [IO.File]::ReadAllLines($table) | Select-Object -Skip 1) {
                $f = -split $line
                if ([Convert]::ToInt32(($f[2] -split ':')[-1], 16) -eq $Port -and $mine.Contains($f[9])) { $count++ }
            }
        }
        $count
    }

    function Wait-NoConnection([int] $Port, [int] $TimeoutSeconds = 10) {
        # A completer closes its client once its listing has ended, which may be just after it returned.
        $deadline = [DateTime]::UtcNow.AddSeconds($TimeoutSeconds)
        while ((Get-OpenConnectionCount $Port) -gt 0 -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 50 }
        Get-OpenConnectionCount $Port
    }
}

AfterAll {
    Stop-TestServer $script:Fast
    Stop-TestServer $script:Slow
    if ($global:DefaultPbsServer) { Disconnect-PbsServer }
    Restore-PbsEnvironment $script:SavedEnv
}

Describe 'Every client the module opens is closed' -Skip:([bool]$script:NoProcNet) {
    It 'the count sees a connection that is open (Connect-PbsServer keeps one) and none once it is closed' {
        $c = Connect-PbsServer @script:Where -NotDefault
        try {
            @(Get-PbsSnapshot -Connection $c).Count | Should -BeGreaterThan 0
            Get-OpenConnectionCount $script:Fast.Port | Should -BeGreaterThan 0
        } finally { Disconnect-PbsServer -Connection $c }
        Get-OpenConnectionCount $script:Fast.Port | Should -Be 0
    }

    It 'a listing made with -Repository (Get-PbsSnapshot, Get-PbsNamespace, Get-PbsDatastore) closes its client' {
        @(Get-PbsSnapshot @script:Where).Count | Should -BeGreaterThan 0
        Get-OpenConnectionCount $script:Fast.Port | Should -Be 0
        @(Get-PbsSnapshot @script:Where -BackupId 100 -Latest).Count | Should -Be 1
        @(Get-PbsNamespace @script:Where).Count | Should -BeGreaterThan 0
        @(Get-PbsDatastore @script:Where).Name | Should -Contain 'golden'
        Get-OpenConnectionCount $script:Fast.Port | Should -Be 0
    }

    It 'snapshot objects listed with -Repository restore later through a client of their own, closed again' {
        $snap = Get-PbsSnapshot @script:Where -BackupId 100 -Latest
        Get-OpenConnectionCount $script:Fast.Port | Should -Be 0
        $dest = Join-Path $TestDrive 'later.conf'
        $r = $snap | Restore-PbsImage -Archive qemu-server.conf -Destination $dest -ErrorAction Stop
        $r.Archive | Should -Be 'qemu-server.conf'
        $ref = Join-Path $TestDrive 'reference.conf'
        Restore-PbsImage -Datastore (Get-GoldenDatastore) -Snapshot $snap.Snapshot -Archive qemu-server.conf -Destination $ref -ErrorAction Stop | Out-Null
        Get-Sha256 $dest | Should -Be (Get-Sha256 $ref)
        Get-OpenConnectionCount $script:Fast.Port | Should -Be 0
    }

    It 'a pipeline from a listing into restores, verification and measurement closes every client' {
        $out = New-OutputFolder $TestDrive 'piped'
        $results = @(Get-PbsSnapshot @script:Where -BackupId 100, 102 -Latest | Restore-PbsImage -DestinationFolder $out -ErrorAction Stop)
        $results.Count | Should -BeGreaterThan 2
        @(Test-PbsSnapshot @script:Where -Snapshot vm/100 -ErrorAction Stop).Count | Should -BeGreaterThan 0
        (Measure-PbsRestore @script:Where -Snapshot vm/100 -Archive drive-scsi0.img -ErrorAction Stop).Archive | Should -Not -BeNullOrEmpty
        Get-OpenConnectionCount $script:Fast.Port | Should -Be 0
    }

    It 'a failing restore and a failing listing close their client too' {
        { Restore-PbsImage @script:Where -Snapshot vm/999 -Archive drive-scsi0.img -Destination (Join-Path $TestDrive 'none.img') -ErrorAction Stop } |
            Should -Throw
        { Get-PbsSnapshot @script:Where -BackupId 999 -ErrorAction Stop } | Should -Throw
        Get-OpenConnectionCount $script:Fast.Port | Should -Be 0
    }

    It 'the argument completers close the client they open for -Repository' {
        $line = "Restore-PbsImage -Repository '$($script:Where.Repository)' -Fingerprint '$($script:Where.Fingerprint)' -Credential `$cred -Snapshot "
        $cred = $script:Credential
        $completions = TabExpansion2 -inputScript $line -cursorColumn $line.Length
        @($completions.CompletionMatches).Count | Should -BeGreaterThan 0
        $line = "Get-PbsSnapshot -Repository '$($script:Where.Repository)' -Fingerprint '$($script:Where.Fingerprint)' -Credential `$cred -BackupId "
        @((TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches).Count | Should -BeGreaterThan 0
        Wait-NoConnection $script:Fast.Port | Should -Be 0
    }
}

Describe 'Results stream as they happen' {
    It 'a whole-snapshot restore writes each archive''s result while the others are still being restored' {
        $where = Get-Where $script:Slow
        $out = New-OutputFolder $TestDrive 'streamed'
        $folder = $null
        $clock = [Diagnostics.Stopwatch]::StartNew()
        $seen = @(Restore-PbsImage @where -Snapshot vm/100 -DestinationFolder $out -ErrorAction Stop | ForEach-Object {
                $folder = Split-Path -Parent $_.Destination
                [pscustomobject]@{
                    Archive = $_.Archive
                    At      = $clock.Elapsed.TotalSeconds
                    # The disk images in place (renamed from their partial files) when this result arrived.
                    Disks   = @(Get-ChildItem -LiteralPath $folder -Filter '*.img' -File | Where-Object Name -NotLike '*.partial*').Count
                }
            })
        $clock.Stop()
        $seen.Archive | Sort-Object | Should -Be @('drive-scsi0.img', 'drive-virtio1.img', 'qemu-server.conf')
        # The config is restored before the disks start: its result came while neither disk was done (it did not
        # wait for the end), and each disk's result came once that disk was in place.
        $seen[0].Archive | Should -Be 'qemu-server.conf'
        $seen[0].Disks | Should -Be 0
        $seen[1].Disks | Should -BeGreaterOrEqual 1
        $seen[2].Disks | Should -Be 2
    }
}

Describe 'The pipeline bridge (PbsCmdlet.RunWithBridge)' {
    BeforeAll {
        $dll = [PbsRestore.PowerShell.PbsCmdlet].Assembly.Location
        # A probe cmdlet as another cmdlet of the module would be written: async work that writes through the bridge.
        # -IgnoreWarnings: CS1701 (the module is built against PowerShellStandard 5.1, run on 7.x) is no error here.
        Add-Type -ReferencedAssemblies $dll, ([System.Management.Automation.PSCmdlet].Assembly.Location) -IgnoreWarnings -TypeDefinition @'
using System;
using System.Management.Automation;
using System.Threading;
using System.Threading.Tasks;

[Cmdlet(VerbsDiagnostic.Test, "BridgeProbe", SupportsShouldProcess = true)]
public sealed class TestBridgeProbeCommand : PbsRestore.PowerShell.PbsCmdlet
{
    public static TaskCompletionSource<bool> Seen = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
    public static TaskCompletionSource<bool> Started = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
    public static volatile bool Canceled;

    [Parameter] public SwitchParameter Hang { get; set; }

    protected override void ProcessRecord()
    {
        string answer = RunWithBridge(async (bridge, ct) =>
        {
            if (Hang)
            {
                Started.TrySetResult(true);
                try { await Task.Delay(Timeout.Infinite, ct); }
                catch (OperationCanceledException) { Canceled = true; throw; }
            }
            bridge.WriteObject("first");
            bridge.WriteWarning("warned while working");
            bridge.WriteVerbose("said while working");
            // The consumer downstream has to see "first" before this work can go on: no buffering until the end.
            await Seen.Task.WaitAsync(TimeSpan.FromSeconds(60), ct);
            bool ok = await bridge.ShouldProcessAsync("the probe target", "probe the bridge");
            bridge.WriteObject("second");
            return ok ? "done" : "declined";
        });
        WriteObject(answer);
    }
}
'@
        $probe = Import-Module -Assembly ([TestBridgeProbeCommand].Assembly) -PassThru
        function Reset-Probe {
            [TestBridgeProbeCommand]::Seen = [System.Threading.Tasks.TaskCompletionSource[bool]]::new([System.Threading.Tasks.TaskCreationOptions]::RunContinuationsAsynchronously)
            [TestBridgeProbeCommand]::Started = [System.Threading.Tasks.TaskCompletionSource[bool]]::new([System.Threading.Tasks.TaskCreationOptions]::RunContinuationsAsynchronously)
            [TestBridgeProbeCommand]::Canceled = $false
        }
    }

    AfterAll {
        if ($probe) { Remove-Module $probe -Force }
    }

    It 'objects, warnings and verbose reach the pipeline while the work is still waiting for them to be seen' {
        Reset-Probe
        $out = @(Test-BridgeProbe -Confirm:$false -Verbose 3>&1 4>&1 | ForEach-Object {
                if ($_ -eq 'first') { [void][TestBridgeProbeCommand]::Seen.TrySetResult($true) }
                "$_"
            })
        # The verbose line of ShouldProcess (-Confirm:$false -Verbose) comes from the pipeline thread, in its place.
        $out | Should -Be @('first', 'warned while working', 'said while working',
            'Performing the operation "probe the bridge" on target "the probe target".', 'second', 'done')
    }

    It 'ShouldProcess asked from async work follows -WhatIf (the question is answered on the pipeline thread)' {
        Reset-Probe
        [void][TestBridgeProbeCommand]::Seen.TrySetResult($true)
        $out = @(Test-BridgeProbe -WhatIf 3>$null)
        $out | Should -Be @('first', 'second', 'declined')
    }

    It 'Ctrl+C (StopProcessing) cancels the async work at once and the command ends' {
        Reset-Probe
        # (Never enumerate $ps.Streams.Error while it runs: a PSDataCollection's enumerator waits for it to close.)
        $started = [TestBridgeProbeCommand]::Started.Task
        $probeType = [TestBridgeProbeCommand]
        $probeAssembly = $probeType.Assembly
        $ps = [powershell]::Create()
        try {
            [void]$ps.AddScript({ param($Assembly) Import-Module -Assembly $Assembly; Test-BridgeProbe -Hang }).
                AddArgument($probeAssembly)
            $async = $ps.BeginInvoke()
            $started.Wait(60000) | Should -BeTrue
            $ps.Stop()
            $async.IsCompleted | Should -BeTrue
            $probeType::Canceled | Should -BeTrue
            $ps.InvocationStateInfo.State | Should -Be 'Stopped'
        } finally { $ps.Dispose() }
    }
}
