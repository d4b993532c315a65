# The runbooks in examples/ run for real: against our PBS-compatible server (src/PbsRestore.Server) serving
# a datastore written by the project's writer ('demo': vm/100 with two snapshots of a 256 MiB disk, vm/101
# encrypted) and the golden datastore ('golden'), and against the golden folder for the DR runbook. Every
# restored byte is checked (SHA-256 against the writer's JSON or MANIFEST.json plaintext_sha256), and so is
# what the scripts report (objects with -PassThru, the host output) and that no secret shows up in it.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot '../../PbsRestore.psd1') -Force
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Join-Path $PSScriptRoot 'ServerHelpers.psm1') -Force
    $script:Examples = [IO.Path]::GetFullPath((Join-Path $PSScriptRoot '../../examples'))
    $script:GoldenDs = Get-GoldenDatastore
    $script:GoldenKey = Get-GoldenPath (Get-GoldenSnapshot vm 101).key_file
    $script:GoldenKeyPassword = (Get-GoldenSnapshot vm 101).key_password
    $script:GoldenKeySecure = New-TestPassword $script:GoldenKeyPassword

    # A bigger datastore from the writer (prints every archive's SHA-256).
    $fixtures = [IO.Path]::GetFullPath((Join-Path $PSScriptRoot '../../src/PbsRestore.Fixtures/bin/Release/net10.0/PbsRestore.Fixtures.dll'))
    $script:DemoDs = Join-Path $TestDrive 'demo/datastore'
    $script:DemoKey = Join-Path $TestDrive 'demo/demo-key.json'
    $json = & (Get-DotnetPath) $fixtures demo --path $script:DemoDs --key-out $script:DemoKey --force
    if ($LASTEXITCODE -ne 0) { throw "the datastore writer failed ($LASTEXITCODE)" }
    $script:Demo = ($json -join "`n") | ConvertFrom-Json -DateKind String
    $script:DemoKeySecure = New-TestPassword $script:Demo.key.password

    function script:Get-DemoSha([string] $SnapshotPath, [string] $Archive) {
        $s = @($script:Demo.snapshots | Where-Object path -EQ $SnapshotPath)
        $s.Count | Should -Be 1
        $a = @($s[0].archives | Where-Object name -EQ $Archive)
        $a.Count | Should -Be 1
        $a[0].sha256
    }
    function script:Get-GoldenSha([string] $Type, [string] $Id, [string] $Stored) {
        (Get-GoldenArchive (Get-GoldenSnapshot $Type $Id) $Stored).plaintext_sha256
    }
    function script:Get-HostText($InformationRecords) {
        (@($InformationRecords | ForEach-Object { "$($_.MessageData)" }) -join "`n")
    }

    $script:SavedEnv = Save-PbsEnvironment
    Clear-PbsEnvironment
    $script:TokenId = 'runbook@pbs!examples'
    $script:TokenSecret = 'ex-token-5d2c9a71e0'
    $script:Server = Start-TestServer -Datastore ([ordered]@{ demo = $script:DemoDs; golden = $script:GoldenDs }) `
        -Token "$($script:TokenId):$($script:TokenSecret)" -LogFolder (Join-Path $TestDrive 'server')
    $script:DemoRepo = "$($script:TokenId)@127.0.0.1:$($script:Server.Port):demo"
    $script:GoldenRepo = "$($script:TokenId)@127.0.0.1:$($script:Server.Port):golden"
    $script:Fp = $script:Server.Fingerprint
    $script:Cred = New-PbsCredential $script:TokenId $script:TokenSecret
}

AfterAll {
    Stop-TestServer $script:Server
    Restore-PbsEnvironment $script:SavedEnv
}

Describe 'examples/Restore-LatestVmDisk.ps1' {
    It 'restores the newest of two snapshots of VM 100 from a server, verified, with a report' {
        $out = New-OutputFolder $TestDrive
        $rows = @(& (Join-Path $Examples 'Restore-LatestVmDisk.ps1') -VmId 100 -Destination $out -Repository $DemoRepo `
                -Fingerprint $Fp -Credential $Cred -PassThru -InformationVariable iv 6>$null)
        $rows.Count | Should -Be 2
        $rows.Snapshot | Should -Be @('vm/100/2024-05-02T10:00:00Z', 'vm/100/2024-05-02T10:00:00Z')
        $rows.Verified | Should -Be @($true, $true)
        $disk = Join-Path $out 'vm-100-scsi0.raw'
        $conf = Join-Path $out 'vm-100.conf'
        $rows[0].Destination | Should -Be $disk
        Get-Sha256 $disk | Should -BeExactly (Get-DemoSha 'vm/100/2024-05-02T10:00:00Z' 'drive-scsi0.img')
        Get-Sha256 $conf | Should -BeExactly (Get-DemoSha 'vm/100/2024-05-02T10:00:00Z' 'qemu-server.conf')
        $rows[0].Sha256 | Should -BeExactly (Get-Sha256 $disk)
        $rows[0].Bytes | Should -Be 268435456
        $text = Get-HostText $iv
        $text | Should -Match 'Newest backup of VM 100: vm/100/2024-05-02T10:00:00Z'
        $text | Should -Match '2 file\(s\) restored .* and verified'
        $text | Should -Match ([regex]::Escape($rows[0].Sha256))
        $text | Should -Not -Match $TokenSecret
        @(Get-FolderEntries $out) | Should -Be @('vm-100-scsi0.raw', 'vm-100.conf')
        # Not the session default: the script's connection is its own and closed again.
        Get-Variable DefaultPbsServer -Scope Global -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }

    It 'restores an encrypted VM from a server with the secret from PBS_PASSWORD and the pin from PBS_FINGERPRINT' {
        $out = New-OutputFolder $TestDrive
        try {
            $env:PBS_PASSWORD = $TokenSecret
            $env:PBS_FINGERPRINT = $Fp
            $rows = @(& (Join-Path $Examples 'Restore-LatestVmDisk.ps1') 101 $out -Repository $GoldenRepo `
                    -Keyfile $GoldenKey -KeyPassword $GoldenKeySecure -PassThru -InformationVariable iv 6>$null)
        } finally { Clear-PbsEnvironment }
        $rows.Archive | Should -Be @('drive-scsi0.img', 'qemu-server.conf')
        Get-Sha256 (Join-Path $out 'vm-101-scsi0.raw') | Should -BeExactly (Get-GoldenSha vm 101 'drive-scsi0.img.fidx')
        Get-Sha256 (Join-Path $out 'vm-101.conf') | Should -BeExactly (Get-GoldenSha vm 101 'qemu-server.conf.blob')
        $text = Get-HostText $iv
        $text | Should -Not -Match $TokenSecret
        $text | Should -Not -Match $GoldenKeyPassword
    }

    It 'restores every disk of a VM from the golden folder, in a namespace, and -SkipConfig leaves the config' {
        $out = New-OutputFolder $TestDrive
        $rows = @(& (Join-Path $Examples 'Restore-LatestVmDisk.ps1') -VmId 100 -Destination $out -Datastore $GoldenDs -PassThru 6>$null)
        $rows.Archive | Should -Be @('drive-scsi0.img', 'drive-virtio1.img', 'qemu-server.conf')
        Get-Sha256 (Join-Path $out 'vm-100-scsi0.raw') | Should -BeExactly (Get-GoldenSha vm 100 'drive-scsi0.img.fidx')
        Get-Sha256 (Join-Path $out 'vm-100-virtio1.raw') | Should -BeExactly (Get-GoldenSha vm 100 'drive-virtio1.img.fidx')
        Get-Sha256 (Join-Path $out 'vm-100.conf') | Should -BeExactly (Get-GoldenSha vm 100 'qemu-server.conf.blob')

        $out2 = New-OutputFolder $TestDrive
        $rows = @(& (Join-Path $Examples 'Restore-LatestVmDisk.ps1') -VmId 102 -Namespace dev -Destination $out2 -Datastore $GoldenDs -SkipConfig -PassThru 6>$null)
        $rows.Archive | Should -Be @('drive-scsi0.img')
        @(Get-FolderEntries $out2) | Should -Be @('vm-102-scsi0.raw')
        Get-Sha256 (Join-Path $out2 'vm-102-scsi0.raw') | Should -BeExactly (Get-GoldenSha vm 102 'drive-scsi0.img.fidx')
    }

    It 'fails for a VM without backups, and refuses to overwrite without -Force' {
        $out = New-OutputFolder $TestDrive
        { & (Join-Path $Examples 'Restore-LatestVmDisk.ps1') -VmId 999 -Destination $out -Datastore $GoldenDs 6>$null } |
            Should -Throw '*No backup of VM 999*'
        & (Join-Path $Examples 'Restore-LatestVmDisk.ps1') -VmId 102 -Namespace dev -Destination $out -Datastore $GoldenDs 6>$null
        { & (Join-Path $Examples 'Restore-LatestVmDisk.ps1') -VmId 102 -Namespace dev -Destination $out -Datastore $GoldenDs 6>$null } |
            Should -Throw -ErrorId 'DestinationExists*'
        $rows = @(& (Join-Path $Examples 'Restore-LatestVmDisk.ps1') -VmId 102 -Namespace dev -Destination $out -Datastore $GoldenDs -Force -PassThru 6>$null)
        $rows.Verified | Should -Be @($true, $true)
    }
}

Describe 'examples/Restore-VmListInParallel.ps1' {
    It 'restores two VMs (one encrypted) in parallel from a server and reports each archive and the total' {
        $out = New-OutputFolder $TestDrive
        $rows = @(& (Join-Path $Examples 'Restore-VmListInParallel.ps1') -VmId 100, 101 -Destination $out -Repository $DemoRepo `
                -Fingerprint $Fp -Credential $Cred -Keyfile $DemoKey -KeyPassword $DemoKeySecure -ThrottleLimit 2 -Connections 2 `
                -PassThru -InformationVariable iv 6>$null)
        $rows.VM | Should -Be @('100', '101', 'Total')
        $rows.Status | Should -Be @('OK', 'OK', 'OK')
        Get-Sha256 (Join-Path $out 'vm-100-scsi0.raw') | Should -BeExactly (Get-DemoSha 'vm/100/2024-05-02T10:00:00Z' 'drive-scsi0.img')
        Get-Sha256 (Join-Path $out 'vm-101-scsi0.raw') | Should -BeExactly (Get-DemoSha 'vm/101/2024-05-01T10:05:00Z' 'drive-scsi0.img')
        $rows[0].Sha256 | Should -BeExactly (Get-DemoSha 'vm/100/2024-05-02T10:00:00Z' 'drive-scsi0.img')
        $rows[0].Bytes | Should -Be 268435456
        $rows[0].SizeMB | Should -Be 256
        $rows[0].Seconds | Should -BeGreaterThan 0
        $rows[0].MBps | Should -BeGreaterThan 0
        $rows[2].Archive | Should -Be '2 archive(s)'
        $rows[2].Bytes | Should -Be ($rows[0].Bytes + $rows[1].Bytes)
        # MB/s over the wall-clock time; Seconds is rounded in the report, so allow for that rounding.
        $expected = $rows[2].Bytes / 1MB / $rows[2].Seconds
        [math]::Abs($rows[2].MBps - $expected) / $expected | Should -BeLessThan 0.02 -Because 'MB/s over the wall-clock time'
        $text = Get-HostText $iv
        foreach ($h in 'VM', 'Archive', 'SizeMB', 'Seconds', 'MBps', 'Total') { $text | Should -Match "\b$h\b" }
        $text | Should -Not -Match $TokenSecret
        $text | Should -Not -Match $Demo.key.password
    }

    It 'restores three VMs from the golden folder with ThrottleLimit 3, and one missing VM is a Failed row and an error' {
        $out = New-OutputFolder $TestDrive
        $rows = @(& (Join-Path $Examples 'Restore-VmListInParallel.ps1') -VmId 100, 101, 999 -Destination $out -Datastore $GoldenDs `
                -Keyfile $GoldenKey -KeyPassword $GoldenKeySecure -ThrottleLimit 3 -PassThru -ErrorVariable ev -ErrorAction SilentlyContinue 6>$null)
        $rows.VM | Should -Be @('100', '100', '101', '999', 'Total')
        $rows.Archive[0..2] | Should -Be @('drive-scsi0.img', 'drive-virtio1.img', 'drive-scsi0.img')
        $rows.Status | Should -Be @('OK', 'OK', 'OK', 'Failed', 'Failed')
        $rows[3].Error | Should -Match 'no backup of VM 999'
        $rows[0].Sha256 | Should -BeExactly (Get-GoldenSha vm 100 'drive-scsi0.img.fidx')
        $rows[1].Sha256 | Should -BeExactly (Get-GoldenSha vm 100 'drive-virtio1.img.fidx')
        $rows[2].Sha256 | Should -BeExactly (Get-GoldenSha vm 101 'drive-scsi0.img.fidx')
        Get-Sha256 (Join-Path $out 'vm-100-virtio1.raw') | Should -BeExactly (Get-GoldenSha vm 100 'drive-virtio1.img.fidx')
        @($ev).Count | Should -Be 1
        "$($ev[0])" | Should -Match '1 VM\(s\) failed: 999'
    }
}

Describe 'examples/Invoke-DisasterRecoveryFromFolder.ps1' {
    It 'restores the newest snapshot of every group of the golden folder into a tree with CSV and JSON manifests' {
        $out = New-OutputFolder $TestDrive
        $rows = @(& (Join-Path $Examples 'Invoke-DisasterRecoveryFromFolder.ps1') -Datastore $GoldenDs -Destination $out `
                -Keyfile $GoldenKey -KeyPassword $GoldenKeySecure -PassThru -InformationVariable iv 6>$null)
        # Every archive in every manifest of MANIFEST.json (vm and ct; client.log is not in a manifest).
        $expected = foreach ($s in (Get-GoldenManifest).snapshots) {
            $ns = if ($s.namespace) { "ns/$($s.namespace)/" } else { '' }
            $time = $s.backup_time_rfc3339 -replace ':', '-'
            foreach ($a in $s.archives) {
                $name = Get-ArchiveDisplayName $a.name
                $file = if ($name -like '*.img') { $name -replace '\.img$', '.raw' } else { $name }
                [pscustomobject]@{ File = "$ns$($s.backup_type)/$($s.backup_id)/$time/$file"; Sha = $a.plaintext_sha256; Size = [long]$a.plaintext_size }
            }
        }
        $expected = @($expected)
        $expected.Count | Should -Be 9
        $rows.Count | Should -Be 9
        @($rows | Where-Object Status -NE 'Restored') | Should -BeNullOrEmpty
        foreach ($e in $expected) {
            $row = @($rows | Where-Object File -EQ $e.File)
            $row.Count | Should -Be 1 -Because "$($e.File) must be in the manifest once"
            $row[0].Sha256 | Should -BeExactly $e.Sha
            $row[0].Bytes | Should -Be $e.Size
            Get-Sha256 (Join-Path $out $e.File) | Should -BeExactly $e.Sha -Because $e.File
        }
        # The manifests on disk say the same.
        $csv = @(Import-Csv -LiteralPath (Join-Path $out 'restore-manifest.csv'))
        $csv.Count | Should -Be 9
        foreach ($c in $csv) { $c.Sha256 | Should -BeExactly ($expected | Where-Object File -EQ $c.File).Sha }
        $json = Get-Content -LiteralPath (Join-Path $out 'restore-manifest.json') -Raw | ConvertFrom-Json
        $json.datastore | Should -Be $GoldenDs
        @($json.files).Count | Should -Be 9
        foreach ($f in $json.files) { $f.Sha256 | Should -BeExactly ($expected | Where-Object File -EQ $f.File).Sha }
        # The tree holds exactly these files and the two manifests.
        $onDisk = @([IO.Directory]::EnumerateFiles($out, '*', 'AllDirectories') | ForEach-Object { [IO.Path]::GetRelativePath($out, $_) -replace '\\', '/' } | Sort-Object)
        $onDisk | Should -Be @(@($expected.File) + 'restore-manifest.csv', 'restore-manifest.json' | Sort-Object)
        $text = Get-HostText $iv
        $text | Should -Match 'holds 4 snapshot\(s\)'
        $text | Should -Match 'dev\s+vm/102/2024-05-01T10:15:00Z'
        $text | Should -Match '9 file\(s\) restored'
        $text | Should -Not -Match $GoldenKeyPassword
    }

    It 'skips the encrypted VM without a key, restores the rest, and -BackupType vm leaves the container out' {
        $out = New-OutputFolder $TestDrive
        $rows = @(& (Join-Path $Examples 'Invoke-DisasterRecoveryFromFolder.ps1') $GoldenDs $out -BackupType vm -PassThru 6>$null)
        $rows.Count | Should -Be 7
        @($rows | Where-Object BackupType -EQ 'ct') | Should -BeNullOrEmpty
        $skipped = @($rows | Where-Object Status -EQ 'Skipped')
        $skipped.Snapshot | Sort-Object -Unique | Should -Be 'vm/101/2024-05-01T10:05:00Z'
        $skipped.Count | Should -Be 2
        @($rows | Where-Object Status -EQ 'Restored').Count | Should -Be 5
        Test-Path (Join-Path $out 'vm/101/2024-05-01T10-05-00Z/drive-scsi0.raw') | Should -BeFalse
        Get-Sha256 (Join-Path $out 'ns/dev/vm/102/2024-05-01T10-15-00Z/drive-scsi0.raw') | Should -BeExactly (Get-GoldenSha vm 102 'drive-scsi0.img.fidx')
        (Import-Csv (Join-Path $out 'restore-manifest.csv') | Where-Object Status -EQ 'Skipped').Count | Should -Be 2
    }
}

Describe 'examples/Measure-AndTune.ps1' {
    It 'sweeps FetchConcurrency and Connections against a server, picks the best and prints a command that restores bit-exactly' {
        $result = & (Join-Path $Examples 'Measure-AndTune.ps1') -Snapshot vm/100 -Archive drive-scsi0.img -Repository $DemoRepo `
            -Fingerprint $Fp -Credential $Cred -FetchConcurrency 1, 8 -Connections 1, 2 -RestoreDestination '/tmp/x.raw' -PassThru -InformationVariable iv 6>$null
        @($result).Count | Should -Be 1
        $m = @($result.Measurements)
        $m.Count | Should -Be 4
        @($m | ForEach-Object { "$($_.Connections)/$($_.FetchConcurrency)" }) | Should -Be @('1/1', '1/8', '2/1', '2/8')
        $m.LogicalBytes | Sort-Object -Unique | Should -Be 268435456
        $top = ($m | Measure-Object LogicalMBps -Maximum).Maximum
        $result.LogicalMBps | Should -BeGreaterOrEqual ($top * 0.95)
        $result.Command | Should -BeLike "Restore-PbsImage -Repository '$DemoRepo' -Fingerprint '$Fp' -Snapshot 'vm/100' -Archive 'drive-scsi0.img' -Destination '/tmp/x.raw' -FetchConcurrency $($result.FetchConcurrency) -Connections $($result.Connections)"
        $text = Get-HostText $iv
        foreach ($h in 'Connections', 'FetchConcurrency', 'LogicalMBps', 'Bottleneck') { $text | Should -Match $h }
        $text | Should -Match ([regex]::Escape($result.Command))
        $text | Should -Not -Match $TokenSecret

        # The printed command works (the secret comes from -Credential, as the script says).
        $dest = Join-Path (New-OutputFolder $TestDrive) 'tuned.raw'
        $command = $result.Command.Replace("'/tmp/x.raw'", "'$dest'") + ' -Credential $Cred'
        $r = Invoke-Expression $command
        $r.LogicalBytes | Should -Be 268435456
        Get-Sha256 $dest | Should -BeExactly (Get-DemoSha 'vm/100/2024-05-02T10:00:00Z' 'drive-scsi0.img')
    }

    It 'tunes a folder source (one connection), with an encrypted archive' {
        $result = & (Join-Path $Examples 'Measure-AndTune.ps1') vm/101 drive-scsi0.img -Datastore $GoldenDs -Keyfile $GoldenKey `
            -KeyPassword $GoldenKeySecure -FetchConcurrency 1, 2, 4 -PassThru 6>$null
        @($result.Measurements).Count | Should -Be 3
        @($result.Measurements.Connections | Sort-Object -Unique) | Should -Be @(1)
        $result.Command | Should -Match "^Restore-PbsImage -Datastore '$([regex]::Escape($GoldenDs))' -Snapshot 'vm/101' -Archive 'drive-scsi0.img' -Destination '<destination>' -Keyfile '$([regex]::Escape($GoldenKey))' -FetchConcurrency [124]$"
        $dest = Join-Path (New-OutputFolder $TestDrive) 'tuned.raw'
        $r = Invoke-Expression ($result.Command.Replace("'<destination>'", "'$dest'") + ' -KeyPassword $GoldenKeySecure')
        $r.LogicalBytes | Should -Be 2097152
        Get-Sha256 $dest | Should -BeExactly (Get-GoldenSha vm 101 'drive-scsi0.img.fidx')
    }
}

Describe 'examples: comment-based help' {
    It '<Name> has a synopsis, a description, every parameter documented and examples' -TestCases @(
        @{ Name = 'Restore-LatestVmDisk.ps1' }, @{ Name = 'Restore-VmListInParallel.ps1' },
        @{ Name = 'Invoke-DisasterRecoveryFromFolder.ps1' }, @{ Name = 'Measure-AndTune.ps1' }, @{ Name = 'Invoke-RecoveryAcrossHosts.ps1' }) {
        param($Name)
        $path = Join-Path $Examples $Name
        $help = Get-Help $path -Full
        $help.Synopsis | Should -Not -BeLike "$Name*" -Because 'the comment-based help must be found (a synopsis, not the syntax line)'
        ($help.description.Text -join '') | Should -Not -BeNullOrEmpty
        $params = @((Get-Command $path).Parameters.Keys | Where-Object { $_ -notin [System.Management.Automation.PSCmdlet]::CommonParameters })
        foreach ($p in $params) {
            $doc = @($help.parameters.parameter | Where-Object name -EQ $p)
            ($doc.description.Text -join '') | Should -Not -BeNullOrEmpty -Because "-$p must be documented"
        }
        @($help.examples.example).Count | Should -BeGreaterOrEqual 2
        # No hard-coded secret or fixed local path in the script body.
        $text = Get-Content -LiteralPath $path -Raw
        $text | Should -Not -Match 'ConvertTo-SecureString\s.*-AsPlainText'
        $text | Should -Not -Match '/work/|/tmp/'
    }
}
