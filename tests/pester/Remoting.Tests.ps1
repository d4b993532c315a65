# The module inside PowerShell remoting over SSH, for real: an sshd of our own on a loopback port (SshHelpers.psm1:
# Debian's openssh-server, its own config, host key and a client key made for the test, `Subsystem powershell` running
# the pinned pwsh), our PBS-compatible server, and Invoke-Command / New-PSSession -HostName 127.0.0.1 from this
# process. Secrets travel only as PSCredential/SecureString through $using:; every restored image is checked by
# SHA-256; progress, errors and result objects are checked as the caller sees them. If sshd cannot be started here,
# every test is skipped with the reason.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot '../../PbsRestore.psd1') -Force
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Join-Path $PSScriptRoot 'ServerHelpers.psm1') -Force
    Import-Module (Join-Path $PSScriptRoot 'SshHelpers.psm1') -Force
    $script:ModuleManifest = [IO.Path]::GetFullPath((Join-Path $PSScriptRoot '../../PbsRestore.psd1'))

    # The writer's demo datastore: vm/100 (256 MiB disk), vm/101 (64 MiB, encrypted), ct/200 in prod/web.
    $fixtures = [IO.Path]::GetFullPath((Join-Path $PSScriptRoot '../../src/PbsRestore.Fixtures/bin/Release/net10.0/PbsRestore.Fixtures.dll'))
    $script:DemoDs = Join-Path $TestDrive 'demo/datastore'
    $script:DemoKey = Join-Path $TestDrive 'demo/demo-key.json'
    $json = & (Get-DotnetPath) $fixtures demo --path $script:DemoDs --key-out $script:DemoKey --force
    if ($LASTEXITCODE -ne 0) { throw "the datastore writer failed ($LASTEXITCODE)" }
    $script:Demo = ($json -join "`n") | ConvertFrom-Json -DateKind String
    $script:KeySecret = $script:Demo.key.password
    $script:KeyPassword = New-TestPassword $script:KeySecret
    function script:Get-DemoSha([string] $SnapshotPath, [string] $Archive, [string] $Namespace) {
        # A result's Snapshot is type/id/time; the writer's path has the namespace folders in front.
        if ($Namespace) { $SnapshotPath = "ns/$($Namespace -replace '/', '/ns/')/$SnapshotPath" }
        $s = @($script:Demo.snapshots | Where-Object path -EQ $SnapshotPath)
        $a = @($s[0].archives | Where-Object name -EQ $Archive)
        $a.Count | Should -Be 1
        $a[0].sha256
    }

    $script:SavedEnv = Save-PbsEnvironment
    Clear-PbsEnvironment
    $script:TokenId = 'remote@pbs!fanout'
    $script:TokenSecret = 'ssh-token-7c41e09d2b'
    $script:Server = Start-TestServer -Datastore ([ordered]@{ demo = $script:DemoDs }) `
        -Token "$($script:TokenId):$($script:TokenSecret)" -LogFolder (Join-Path $TestDrive 'server')
    $script:Repo = "$($script:TokenId)@127.0.0.1:$($script:Server.Port):demo"
    $script:Fp = $script:Server.Fingerprint
    $script:Cred = New-PbsCredential $script:TokenId $script:TokenSecret

    $script:SkipReason = $null
    $script:Sshd = $null
    $script:Session = $null
    try {
        $script:Sshd = Start-TestSshd -Folder (Join-Path $TestDrive 'sshd')
        $script:Session = New-TestSshSession $script:Sshd
    } catch {
        $script:SkipReason = "sshd with the PowerShell subsystem could not be started here: $($_.Exception.Message)"
        Write-Warning $script:SkipReason
    }
    $script:Out = Join-Path $TestDrive 'out'
    [void][IO.Directory]::CreateDirectory($script:Out)

    function script:Skip-WithoutSsh {
        if ($script:SkipReason) { Set-ItResult -Skipped -Because $script:SkipReason }
        [bool]$script:SkipReason
    }
    function script:Test-NoSecret($Text) {
        foreach ($s in $script:TokenSecret, $script:KeySecret) { "$Text" | Should -Not -Match ([regex]::Escape($s)) }
    }
}

AfterAll {
    if ($script:Session) { Remove-PSSession $script:Session }
    Stop-TestSshd $script:Sshd
    Stop-TestServer $script:Server
    Restore-PbsEnvironment $script:SavedEnv
}

Describe 'Restore-PbsImage in a remote session over SSH' {
    It 'takes the token and key password as PSCredential/SecureString through $using: and restores an encrypted disk bit-exactly' {
        if (Skip-WithoutSsh) { return }
        $dest = Join-Path $Out 'vm-101.raw'
        $cred = $Cred; $keyPassword = $KeyPassword; $repo = $Repo; $fp = $Fp; $key = $DemoKey; $manifest = $ModuleManifest
        $block = {
            Import-Module $using:manifest
            $c = $using:cred
            $k = $using:keyPassword
            # What arrived: objects, not text.
            Write-Information "types: $($c.GetType().FullName) $($c.Password.GetType().FullName) $($k.GetType().FullName)"
            Restore-PbsImage -Repository $using:repo -Fingerprint $using:fp -Credential $c -Snapshot vm/101 -Archive drive-scsi0.img `
                -Destination $using:dest -Keyfile $using:key -KeyPassword $k
        }
        $block.ToString() | Should -Not -Match ([regex]::Escape($TokenSecret))
        $r = @(Invoke-Command -Session $Session -ScriptBlock $block -InformationVariable iv -ErrorVariable ev)
        @($ev).Count | Should -Be 0
        "$($iv[0].MessageData)" | Should -Be 'types: System.Management.Automation.PSCredential System.Security.SecureString System.Security.SecureString'
        $r.Count | Should -Be 1
        $r[0].PSComputerName | Should -Be '127.0.0.1'
        Get-Sha256 $dest | Should -BeExactly (Get-DemoSha 'vm/101/2024-05-01T10:05:00Z' 'drive-scsi0.img')
        Test-NoSecret (($r | Format-List * | Out-String) + ($iv | Out-String))
    }

    It 'sends progress records to the caller (a job over SSH)' {
        if (Skip-WithoutSsh) { return }
        $dest = Join-Path $Out 'vm-100-progress.raw'
        $cred = $Cred; $repo = $Repo; $fp = $Fp; $manifest = $ModuleManifest
        $job = Invoke-Command -Session $Session -AsJob -ScriptBlock {
            Import-Module $using:manifest
            Restore-PbsImage -Repository $using:repo -Fingerprint $using:fp -Credential $using:cred -Snapshot vm/100 -Archive drive-scsi0.img -Destination $using:dest
        }
        try {
            $null = Wait-Job $job -Timeout 300
            $job.State | Should -Be 'Completed'
            $r = @(Receive-Job $job)
            $progress = @($job.ChildJobs[0].Progress)
        } finally { Remove-Job $job -Force }
        $r.Count | Should -Be 1
        Get-Sha256 $dest | Should -BeExactly (Get-DemoSha 'vm/100/2024-05-02T10:00:00Z' 'drive-scsi0.img')
        $progress.Count | Should -BeGreaterOrEqual 2
        $progress[0].Activity | Should -Be 'Restoring drive-scsi0.img from vm/100/2024-05-02T10:00:00Z'
        $progress[-1].RecordType | Should -Be 'Completed'
        $percent = @($progress | Where-Object RecordType -EQ 'Processing' | ForEach-Object PercentComplete)
        $percent.Count | Should -BeGreaterThan 0
        $percent | Should -Be ($percent | Sort-Object) -Because 'the restore moves forward'
        @($progress | Where-Object StatusDescription -Match 'MiB of 256\.0 MiB').Count | Should -BeGreaterThan 0
        Test-NoSecret ($progress | ForEach-Object { "$($_.Activity) $($_.StatusDescription) $($_.CurrentOperation)" })
    }

    It 'keeps the error id, category and target of a non-terminating and a terminating error' {
        if (Skip-WithoutSsh) { return }
        $dest = Join-Path $Out 'vm-101.raw'   # exists from the first test
        if (-not (Test-Path -LiteralPath $dest)) { Copy-Item -LiteralPath $DemoKey -Destination $dest }
        $cred = $Cred; $repo = $Repo; $fp = $Fp; $manifest = $ModuleManifest
        # The same failure locally, for comparison.
        $local = $null
        try { Restore-PbsImage -Repository $Repo -Fingerprint $Fp -Credential $Cred -Snapshot vm/100 -Archive drive-scsi0.img -Destination $dest -ErrorAction Stop }
        catch { $local = $_ }
        $local.FullyQualifiedErrorId | Should -BeLike 'DestinationExists,*'

        $null = Invoke-Command -Session $Session -ErrorVariable ev -ErrorAction SilentlyContinue -ScriptBlock {
            Import-Module $using:manifest
            Restore-PbsImage -Repository $using:repo -Fingerprint $using:fp -Credential $using:cred -Snapshot vm/100 -Archive drive-scsi0.img -Destination $using:dest
        }
        @($ev).Count | Should -Be 1
        $remote = $ev[0]
        # A terminating error ends the remote command; the caller stops on it with -ErrorAction Stop on Invoke-Command.
        $terminating = $null
        try {
            Invoke-Command -Session $Session -ErrorAction Stop -ScriptBlock {
                Restore-PbsImage -Repository $using:repo -Fingerprint $using:fp -Credential $using:cred -Snapshot vm/100 -Archive drive-scsi0.img -Destination $using:dest -ErrorAction Stop
            }
        } catch { $terminating = $_ }
        foreach ($e in $remote, $terminating) {
            $e | Should -Not -BeNullOrEmpty
            $e.FullyQualifiedErrorId | Should -BeExactly $local.FullyQualifiedErrorId
            $e.CategoryInfo.Category | Should -Be $local.CategoryInfo.Category
            $e.CategoryInfo.TargetName | Should -Be $local.CategoryInfo.TargetName
            $e.CategoryInfo.Reason | Should -Be $local.CategoryInfo.Reason
            "$($e.TargetObject)" | Should -Be "$($local.TargetObject)"
            $e.Exception.Message | Should -BeExactly $local.Exception.Message
            $e.Exception.GetType().Name | Should -Be 'RemoteException'
            $e.Exception.SerializedRemoteException.PSObject.TypeNames[0] | Should -Be "Deserialized.$($local.Exception.GetType().FullName)"
        }

        # A wrong token secret: refused by the server, with its id; the secret is in no part of the error.
        $wrong = New-PbsCredential $TokenId 'not-the-secret-0000'
        $null = Invoke-Command -Session $Session -ErrorVariable ev2 -ErrorAction SilentlyContinue -ScriptBlock {
            Get-PbsSnapshot -Repository $using:repo -Fingerprint $using:fp -Credential $using:wrong
        }
        @($ev2).Count | Should -Be 1
        $localAuth = $null
        try { Get-PbsSnapshot -Repository $Repo -Fingerprint $Fp -Credential $wrong -ErrorAction Stop } catch { $localAuth = $_ }
        $ev2[0].FullyQualifiedErrorId | Should -BeExactly $localAuth.FullyQualifiedErrorId
        $ev2[0].CategoryInfo.Category | Should -Be $localAuth.CategoryInfo.Category
        ($ev2[0] | Format-List * -Force | Out-String) | Should -Not -Match 'not-the-secret-0000'
        Test-NoSecret ($remote, $terminating | Format-List * -Force | Out-String)
    }

    It 'returns deserialized results with the same numeric properties as local ones' {
        if (Skip-WithoutSsh) { return }
        $cred = $Cred; $repo = $Repo; $fp = $Fp; $manifest = $ModuleManifest; $dest = Join-Path $Out 'ct-200-remote.raw'
        $remote = @(Invoke-Command -Session $Session -ScriptBlock {
                Import-Module $using:manifest
                Get-PbsSnapshot -Repository $using:repo -Fingerprint $using:fp -Credential $using:cred
                Restore-PbsImage -Repository $using:repo -Fingerprint $using:fp -Credential $using:cred -Namespace prod/web -Snapshot ct/200 -Archive data -Destination $using:dest
                Measure-PbsRestore -Repository $using:repo -Fingerprint $using:fp -Credential $using:cred -Namespace prod/web -Snapshot ct/200 -Archive data -FetchConcurrency 4
            })
        $localSnapshots = @(Get-PbsSnapshot -Repository $Repo -Fingerprint $Fp -Credential $Cred)
        $localResult = Restore-PbsImage -Repository $Repo -Fingerprint $Fp -Credential $Cred -Namespace prod/web -Snapshot ct/200 -Archive data -Destination (Join-Path $Out 'ct-200-local.raw')
        $localMeasure = Measure-PbsRestore -Repository $Repo -Fingerprint $Fp -Credential $Cred -Namespace prod/web -Snapshot ct/200 -Archive data -FetchConcurrency 4
        $remote.Count | Should -Be ($localSnapshots.Count + 2)
        $rSnapshots = @($remote[0..($localSnapshots.Count - 1)])
        $rResult = $remote[-2]; $rMeasure = $remote[-1]
        $rSnapshots[0].PSObject.TypeNames[0] | Should -Be 'Deserialized.PbsRestore.Sources.SnapshotInfo'
        $rResult.PSObject.TypeNames[0] | Should -Be 'Deserialized.PbsRestore.Restore.RestoreResult'
        $rMeasure.PSObject.TypeNames[0] | Should -Be 'Deserialized.PbsRestore.Restore.RestoreMeasurement'
        Get-Sha256 $dest | Should -BeExactly (Get-DemoSha 'ns/prod/ns/web/ct/200/2024-05-01T10:10:00Z' 'data')

        # Every numeric property (and TimeSpan, DateTime, bool) keeps its .NET type; the ones that do not depend on timing keep their value.
        $timing = 'Duration', 'MBPerSecond', 'WireMBPerSecond', 'Elapsed', 'LogicalMBps', 'WireMBps', 'LatencyP50Ms', 'LatencyP95Ms', 'LatencyP99Ms',
        'CpuSecondsPerGiB', 'DecodeStarved', 'DecodeBusy', 'DecodeBlocked', 'WriteBusy', 'FetchBlocked', 'SpeedtestMBps', 'SuggestedFetchConcurrency', 'Bottleneck', 'Destination'
        $pairs = @(@($localResult, $rResult), @($localMeasure, $rMeasure)) + @(for ($i = 0; $i -lt $localSnapshots.Count; $i++) { , @($localSnapshots[$i], $rSnapshots[$i]) })
        $checked = 0
        foreach ($p in $pairs) {
            foreach ($prop in $p[0].PSObject.Properties) {
                $v = $prop.Value
                $rv = $p[1].PSObject.Properties[$prop.Name].Value
                if ($v -is [ValueType] -and $v -isnot [enum]) {
                    $rv.GetType() | Should -Be $v.GetType() -Because "$($prop.Name) stays a $($v.GetType().Name)"
                    $checked++
                }
                if ($prop.Name -notin $timing -and ($v -is [ValueType] -or $v -is [string])) { $rv | Should -Be $v -Because $prop.Name }
            }
        }
        $checked | Should -BeGreaterThan 30
        # An enum comes back as its name (the value behind it is kept too).
        "$($rMeasure.Bottleneck)" | Should -BeIn ([enum]::GetNames($localMeasure.Bottleneck.GetType()))
        # A snapshot's files come with their properties (PbsRestore.Types.ps1xml: SerializationDepth 2), not as bare names.
        $rSnapshots[0].Files[0].ArchiveName | Should -Be $localSnapshots[0].Files[0].ArchiveName
        $rSnapshots[0].Files.Size | Should -Be $localSnapshots[0].Files.Size
        "$($rSnapshots[2].Files[1].CryptMode)" | Should -Be "$($localSnapshots[2].Files[1].CryptMode)"
        # Sorting and summing work on the real numbers.
        ($rSnapshots | Measure-Object Size -Sum).Sum | Should -Be ($localSnapshots | Measure-Object Size -Sum).Sum
    }

    It 'shows deserialized results with the module''s default views' {
        if (Skip-WithoutSsh) { return }
        $cred = $Cred; $repo = $Repo; $fp = $Fp; $manifest = $ModuleManifest; $dest = Join-Path $Out 'views'
        $remote = @(Invoke-Command -Session $Session -HideComputerName -ScriptBlock {
                Import-Module $using:manifest
                Get-PbsSnapshot -Repository $using:repo -Fingerprint $using:fp -Credential $using:cred
            })
        $local = @(Get-PbsSnapshot -Repository $Repo -Fingerprint $Fp -Credential $Cred)
        # The same text, table and list, as the live objects give.
        ($remote | Format-Table | Out-String -Width 300) | Should -BeExactly ($local | Format-Table | Out-String -Width 300)
        ($remote | Format-List | Out-String -Width 300) | Should -BeExactly ($local | Format-List | Out-String -Width 300)
        ($remote | Format-Table | Out-String -Width 300) | Should -Match 'Namespace\s+Snapshot\s+Comment\s+Encrypted\s+Size\s+Archives'

        $r = @(Invoke-Command -Session $Session -HideComputerName -ScriptBlock {
                Restore-PbsImage -Repository $using:repo -Fingerprint $using:fp -Credential $using:cred -Snapshot vm/101 -DestinationFolder $using:dest `
                    -Keyfile $using:DemoKey -KeyPassword $using:KeyPassword
            })
        $r.Count | Should -Be 2
        $table = $r | Format-Table | Out-String -Width 300
        @($table -split "`r?`n" | Where-Object { $_.Trim() })[0] | Should -Match '^Namespace\s+Snapshot\s+Archive\s+Format\s+Size\s+Duration\s+MB/s\s+Destination\s*$'
        $table | Should -Match 'drive-scsi0\.img\s+Raw\s+64[.,]0 MiB\s+\d+[.,]\d+ s'
        $list = $r | Format-List | Out-String -Width 300
        $list | Should -Match 'Size\s+: 64[.,]0 MiB \(67[,.]108[,.]864 bytes\)'
        foreach ($x in $r) {
            $file = $x.Destination
            Get-Sha256 $file | Should -BeExactly (Get-DemoSha 'vm/101/2024-05-01T10:05:00Z' $x.Archive)
        }
    }
}

Describe 'examples/Invoke-RecoveryAcrossHosts.ps1 with two hosts over SSH' {
    BeforeAll {
        $script:Runbook = [IO.Path]::GetFullPath((Join-Path $PSScriptRoot '../../examples/Invoke-RecoveryAcrossHosts.ps1'))
        function script:Invoke-Runbook([hashtable] $Parameters, [object[]] $Pipe) {
            # In its own runspace, so the caller's streams (progress included) can be read afterwards.
            $ps = [powershell]::Create()
            try {
                [void]$ps.AddScript({
                        param($Manifest, $Path, $P, $Pipe)
                        Import-Module $Manifest
                        if ($Pipe) { $Pipe | & $Path @P } else { & $Path @P }
                    }).AddArgument($ModuleManifest).AddArgument($Runbook).AddArgument($Parameters).AddArgument($Pipe)
                $output = @($ps.Invoke())
                [pscustomobject]@{
                    Output      = $output
                    Progress    = @($ps.Streams.Progress)
                    Errors      = @($ps.Streams.Error)
                    Warnings    = @($ps.Streams.Warning | ForEach-Object Message)
                    Text        = (@($ps.Streams.Information | ForEach-Object { "$($_.MessageData)" }) -join "`n")
                }
            } finally { $ps.Dispose() }
        }
        $script:Hosts = @{
            HostName = '127.0.0.1', 'localhost'
            Repository = $Repo; Fingerprint = $Fp; Credential = $Cred; ModulePath = $ModuleManifest
        }
        if ($Sshd) { $Hosts += @{ UserName = $Sshd.UserName; KeyFilePath = $Sshd.KeyFilePath; Port = $Sshd.Port; SshOption = $Sshd.Options } }
        $script:Csv = Join-Path $TestDrive 'vms.csv'
        @([pscustomobject]@{ VM = '101'; Namespace = '' }, [pscustomobject]@{ VM = 'ct/200'; Namespace = 'prod/web' }, [pscustomobject]@{ VM = 'vm/100'; Namespace = '' }) |
            Export-Csv -LiteralPath $script:Csv -NoTypeInformation
    }

    It '-WhatIf prints the plan: largest first onto the least-loaded host, and restores nothing' {
        if (Skip-WithoutSsh) { return }
        $dest = Join-Path $TestDrive 'whatif'
        $run = Invoke-Runbook ($Hosts + @{ CsvPath = $Csv; Destination = $dest; WhatIf = $true; PassThru = $true })
        $run.Errors | Should -BeNullOrEmpty
        $plan = $run.Output
        @($plan | ForEach-Object { "$($_.Host)=$($_.VM)" }) | Should -Be @('127.0.0.1=vm/100', 'localhost=vm/101', 'localhost=prod/web/ct/200')
        # The plan weighs the bytes a restore writes: the archives, not index.json.blob (which Size counts, as PBS does).
        $plan[0].Bytes | Should -Be ((Get-PbsSnapshot -Repository $Repo -Fingerprint $Fp -Credential $Cred -BackupType vm -BackupId 100 -Latest).Files | Measure-Object Size -Sum).Sum
        $run.Text | Should -Match 'Plan: 3 VM\(s\), 0[.,]34 GiB onto 2 host\(s\)'
        $run.Text | Should -Match '127\.0\.0\.1\s+1\s+0[.,]25\s+74\s?%'
        Test-Path -LiteralPath $dest | Should -BeFalse
        $run.Progress | Should -BeNullOrEmpty

        # The same from snapshot objects piped in (Get-PbsSnapshot), with an archive filter: only the disks count.
        $piped = @(Get-PbsSnapshot -Repository $Repo -Fingerprint $Fp -Credential $Cred | Group-Object BackupType, BackupId | ForEach-Object { $_.Group | Sort-Object BackupTime | Select-Object -Last 1 })
        $run = Invoke-Runbook ($Hosts + @{ Destination = $dest; Archive = 'drive-*'; WhatIf = $true; PassThru = $true }) $piped
        $run.Errors | Should -BeNullOrEmpty
        @($run.Output | ForEach-Object { "$($_.Host)=$($_.VM)=$($_.Bytes)" }) | Should -Be @('127.0.0.1=vm/100=268435456', 'localhost=vm/101=67108864', 'localhost=prod/web/ct/200=0')
        Test-Path -LiteralPath $dest | Should -BeFalse
    }

    It 'restores three VMs on two hosts bit-exactly, shows their progress here, and gives one results table' {
        if (Skip-WithoutSsh) { return }
        $dest = Join-Path $TestDrive 'fanout'
        $run = Invoke-Runbook ($Hosts + @{ CsvPath = $Csv; Destination = $dest; Keyfile = $DemoKey; KeyPassword = $KeyPassword; ThrottlePerHost = 2; PassThru = $true })
        $run.Errors | Should -BeNullOrEmpty
        $rows = $run.Output
        $rows.Count | Should -Be 3
        @($rows | ForEach-Object { "$($_.Host)=$($_.VM)=$($_.Status)=$($_.Attempts)" }) | Should -Be @('127.0.0.1=vm/100=OK=1', 'localhost=prod/web/ct/200=OK=1', 'localhost=vm/101=OK=1')
        @($rows.Archives) | Should -Be @(2, 2, 2)
        $rows[0].Bytes | Should -Be (268435456 + 384)
        foreach ($r in $rows) {
            $r.Seconds | Should -BeGreaterThan 0
            # MBps comes from the unrounded time, Seconds is shown to 0.01 s: they agree to the rounding of both.
            $r.MBps | Should -BeGreaterOrEqual ($r.Bytes / 1MB / ($r.Seconds + 0.005) - 0.05)
            $r.MBps | Should -BeLessOrEqual ($r.Bytes / 1MB / [math]::Max($r.Seconds - 0.005, 0.001) + 0.05)
            foreach ($x in $r.Results) {
                # Deserialized results from the host, each file checked against the writer's SHA-256.
                $x.PSObject.TypeNames[0] | Should -Be 'Deserialized.PbsRestore.Restore.RestoreResult'
                $x.Destination | Should -BeLike "$dest*"
                Get-Sha256 $x.Destination | Should -BeExactly (Get-DemoSha $x.Snapshot $x.Archive $x.Namespace)
            }
        }
        @($rows.Results.Destination | Sort-Object -Unique).Count | Should -Be 6
        # The hosts' progress reached this runspace, per host and per VM.
        $activities = @($run.Progress.Activity | Sort-Object -Unique)
        $activities | Should -Contain '127.0.0.1: vm/100'
        $activities | Should -Contain 'localhost: vm/101'
        $activities | Should -Contain 'Host localhost'
        @($run.Progress | Where-Object { $_.Activity -eq '127.0.0.1: vm/100' -and $_.StatusDescription -match '^Restoring drive-scsi0\.img: .*MiB of 256\.0 MiB' }).Count | Should -BeGreaterThan 0
        # The module's view for the deserialized results.
        ($rows[0].Results | Format-Table | Out-String -Width 300) | Should -Match 'Snapshot\s+Archive\s+Format\s+Size\s+Duration\s+MB/s\s+Destination'
        foreach ($h in 'VM', 'Host', 'Archives', 'MiB', 'Seconds', 'MBps', 'Attempts', 'Status') { $run.Text | Should -Match "\b$h\b" }
        $run.Text | Should -Match 'Total: 3 of 3 VM\(s\) restored'
        Test-NoSecret ($run.Text + ($run.Progress | ForEach-Object { "$($_.Activity) $($_.StatusDescription)" }) + ($rows | Format-List * | Out-String))
    }

    It 'retries a failed VM on the same host with -Resume, then reports it with its error id, and the others still restore' {
        if (Skip-WithoutSsh) { return }
        $dest = Join-Path $TestDrive 'retry'
        # No key: the encrypted VM fails on its host, the first run and the retry.
        $run = Invoke-Runbook ($Hosts + @{ VmId = '100', '101'; Destination = $dest; ThrottlePerHost = 1; PassThru = $true })
        $rows = $run.Output
        @($rows | ForEach-Object { "$($_.Host)=$($_.VM)=$($_.Status)=$($_.Attempts)" }) | Should -Be @('127.0.0.1=vm/100=OK=1', 'localhost=vm/101=Failed=2')
        $rows[0].Results[0].Destination | Should -Not -BeNullOrEmpty
        Get-Sha256 ($rows[0].Results | Where-Object Archive -EQ 'drive-scsi0.img').Destination | Should -BeExactly (Get-DemoSha 'vm/100/2024-05-02T10:00:00Z' 'drive-scsi0.img')
        # The error as the host raised it: its id survives the trip.
        $local = $null
        try { Restore-PbsImage -Repository $Repo -Fingerprint $Fp -Credential $Cred -Snapshot vm/101 -DestinationFolder (Join-Path $TestDrive 'retry-local') -ErrorAction Stop } catch { $local = $_ }
        $rows[1].ErrorId | Should -BeExactly $local.FullyQualifiedErrorId
        $rows[1].Error | Should -BeExactly $local.Exception.Message
        @($run.Warnings | Where-Object { $_ -match '^vm/101 failed on localhost \(attempt 1\): .* - retrying there with -Resume$' }).Count | Should -Be 1
        @($run.Errors).Count | Should -Be 1
        "$($run.Errors[0])" | Should -Match '1 VM\(s\) failed: vm/101 on localhost'
        $run.Text | Should -Match 'Total: 1 of 2 VM\(s\) restored'
        Test-NoSecret ($run.Text + ($run.Warnings -join "`n") + "$($run.Errors)")
    }
}
