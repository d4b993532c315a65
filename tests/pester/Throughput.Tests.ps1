# One throughput figure (issue 11 item 9): on a restore over a throttled server, the MB/s of the progress bar, of
# the -DestinationFolder parent bar and the result's MBPerSecond agree (logical bytes, zero regions included,
# whole-run average); WireMBPerSecond is the encoded bytes read per second.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot '../../PbsRestore.psd1') -Force
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Join-Path $PSScriptRoot 'ServerHelpers.psm1') -Force
    $fixtures = Get-FixturesDll
    # Half zero chunks (holes, done at once) and half random ones: the case where logical and worked-on rates differ most.
    $script:Store = Join-Path $TestDrive 'store'
    $out = & dotnet $fixtures.FullName image --path $script:Store --size 16MiB --chunk-size 256KiB --pattern 'zero:1,random:1' --parallel 1 2>$null
    if ($LASTEXITCODE -ne 0) { throw 'writer failed' }
    $script:Sha = ($out -join "`n" | ConvertFrom-Json).sha256
    $script:SavedEnv = Save-PbsEnvironment
    Clear-PbsEnvironment
    $script:Server = Start-TestServer -Datastore @{ store = $script:Store } -Token 'rate@pbs!t:rate-secret-1' `
        -ExtraArgument @('--bandwidth-mbit', '24') -LogFolder (Join-Path $TestDrive 'server')
    $script:Where = @{ Repository = "rate@pbs!t@127.0.0.1:$($script:Server.Port):store"; Fingerprint = $script:Server.Fingerprint
        Credential = (New-PbsCredential 'rate@pbs!t' 'rate-secret-1') }
    $script:Manifest = (Resolve-Path (Join-Path $PSScriptRoot '../../PbsRestore.psd1')).Path

    function script:Invoke-WithProgress([hashtable] $Parameters) {
        # Runs Restore-PbsImage in its own PowerShell and returns its output and every progress record it wrote.
        $ps = [powershell]::Create()
        try {
            [void]$ps.AddCommand('Import-Module').AddArgument($script:Manifest)
            [void]$ps.AddStatement().AddCommand('Restore-PbsImage').AddParameters($Parameters).AddParameter('ErrorAction', 'Stop')
            $output = @($ps.Invoke())
            @{ Output = $output; Progress = @($ps.Streams.Progress) }
        } finally { $ps.Dispose() }
    }

    function script:Get-LastRate($Records, [int] $ActivityId) {
        # The MB/s of the last record of an activity before it completed ('x MiB of y MiB, 2.9 MB/s').
        $last = @($Records | Where-Object { $_.ActivityId -eq $ActivityId -and $_.RecordType -ne 'Completed' -and $_.StatusDescription -match ' MB/s$' }) | Select-Object -Last 1
        $last | Should -Not -BeNullOrEmpty
        [double]::Parse(([regex]::Match($last.StatusDescription, '([\d.]+) MB/s$')).Groups[1].Value, [cultureinfo]::InvariantCulture)
    }
}

AfterAll {
    if ($script:Server) { Stop-TestServer $script:Server }
    Restore-PbsEnvironment $script:SavedEnv
}

Describe 'One throughput figure on a 24 Mbit/s server' {
    It 'the progress bar ends at the result''s MBPerSecond (within 10 %)' {
        $dest = Join-Path $TestDrive 'one.raw'
        $r = Invoke-WithProgress ($script:Where + @{ Snapshot = 'vm/100'; Archive = 'drive-scsi0.img'; Destination = $dest })
        $res = $r.Output[0]
        Get-Sha256 $dest | Should -BeExactly $script:Sha
        $res.Duration.TotalSeconds | Should -BeGreaterThan 1 -Because 'the throttle makes the restore take a while'
        $bar = Get-LastRate $r.Progress 1
        $bar | Should -BeGreaterThan 0
        [math]::Abs($bar - $res.MBPerSecond) | Should -BeLessOrEqual ([math]::Max(0.1, 0.1 * $res.MBPerSecond)) -Because "bar $bar MB/s, result $($res.MBPerSecond) MB/s"
        # The wire rate is the encoded bytes: half the image is zero chunks, so it is well below the logical rate.
        $res.WireMBPerSecond | Should -BeLessThan $res.MBPerSecond
        $res.WireMBPerSecond | Should -BeLessOrEqual 3.3 -Because '24 Mbit/s is 3 MB/s'
    }

    It 'the -DestinationFolder parent bar ends at the logical bytes of all archives per second of the whole run' {
        $folder = New-OutputFolder $TestDrive
        $r = Invoke-WithProgress ($script:Where + @{ Snapshot = 'vm/100'; DestinationFolder = $folder })
        $logical = ($r.Output | Measure-Object LogicalBytes -Sum).Sum
        $seconds = ($r.Output | Measure-Object { $_.Duration.TotalSeconds } -Maximum).Maximum
        $parent = Get-LastRate $r.Progress 1
        $expected = $logical / 1e6 / $seconds
        [math]::Abs($parent - $expected) | Should -BeLessOrEqual ([math]::Max(0.15, 0.15 * $expected)) -Because "parent $parent MB/s, results $expected MB/s"
        $child = @($r.Progress | Where-Object ParentActivityId -EQ 1 | ForEach-Object ActivityId | Select-Object -Unique)
        $child.Count | Should -BeGreaterThan 0
        $img = $r.Output | Where-Object Archive -EQ 'drive-scsi0.img'
        [math]::Abs((Get-LastRate $r.Progress $child[0]) - $img.MBPerSecond) | Should -BeLessOrEqual ([math]::Max(0.15, 0.15 * $img.MBPerSecond))
    }
}
