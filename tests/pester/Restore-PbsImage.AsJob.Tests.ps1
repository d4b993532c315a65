# Restore-PbsImage -AsJob (issue 11 item 18): a real PowerShell job in the session's job repository, that Get-Job
# lists, Wait-Job waits for and Receive-Job reads (results, progress), here for two restores started at once.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot '../../PbsRestore.psd1') -Force
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $script:Datastore = Get-GoldenDatastore
    $script:Vm100 = Get-GoldenSnapshot vm 100
    $script:Vm101 = Get-GoldenSnapshot vm 101
}

Describe 'Restore-PbsImage -AsJob' {
    It 'starts two restores as jobs; Wait-Job and Receive-Job give bit-exact results and progress' {
        $out = New-OutputFolder $TestDrive
        $a = Join-Path $out 'vm100.raw'
        $b = Join-Path $out 'vm101.raw'
        $job1 = Get-PbsSnapshot -Datastore $script:Datastore -BackupId 100 | Restore-PbsImage -Archive drive-scsi0.img -Destination $a -AsJob
        $job2 = Restore-PbsImage -Datastore $script:Datastore -Snapshot vm/101 -Archive drive-scsi0.img -Destination $b -AsJob `
            -Keyfile (Get-GoldenPath $script:Vm101.key_file) -KeyPassword (New-TestPassword $script:Vm101.key_password)
        try {
            foreach ($j in $job1, $job2) {
                $j | Should -BeOfType ([System.Management.Automation.Job])
                $j.PSJobTypeName | Should -BeExactly 'PbsRestoreJob'
                @(Get-Job -Id $j.Id).Count | Should -Be 1 -Because 'the job is in the session''s job repository'
            }
            $done = @(Wait-Job -Job $job1, $job2 -Timeout 120)
            $done.Count | Should -Be 2
            $job1.State | Should -Be 'Completed'
            $job2.State | Should -Be 'Completed'
            $job1.Progress.Count | Should -BeGreaterThan 0 -Because 'the restore''s progress records are the job''s'
            $job1.HasMoreData | Should -BeTrue
            $r1 = @(Receive-Job -Job $job1 -ErrorAction Stop)
            $r2 = @(Receive-Job -Job $job2 -ErrorAction Stop)
            $r1.Count | Should -Be 1
            $r2.Count | Should -Be 1
            $r1[0].Snapshot | Should -BeExactly 'vm/100/2024-05-01T10:00:00Z'
            $r2[0].Destination | Should -BeExactly $b
            Get-Sha256 $a | Should -BeExactly (Get-GoldenArchive $script:Vm100 'drive-scsi0.img.fidx').plaintext_sha256
            Get-Sha256 $b | Should -BeExactly (Get-GoldenArchive $script:Vm101 'drive-scsi0.img.fidx').plaintext_sha256
            $job1.HasMoreData | Should -BeFalse -Because 'Receive-Job took the results'
        } finally {
            Remove-Job -Job $job1, $job2 -Force
        }
    }

    It 'a restore that fails inside the job reports its error through Receive-Job' {
        $dest = Join-Path $TestDrive 'nokey.raw'
        $job = Restore-PbsImage -Datastore $script:Datastore -Snapshot vm/101 -Archive drive-scsi0.img -Destination $dest -AsJob
        try {
            $null = Wait-Job -Job $job -Timeout 60
            $job.State | Should -BeIn @('Completed', 'Failed')
            $errs = $null
            $r = @(Receive-Job -Job $job -ErrorAction SilentlyContinue -ErrorVariable errs)
            $r.Count | Should -Be 0
            @($errs | ForEach-Object { ($_.FullyQualifiedErrorId -split ',')[0] }) | Should -Contain 'KeyRequired'
            Test-Path -LiteralPath $dest | Should -BeFalse
        } finally { Remove-Job -Job $job -Force }
    }

    It 'resolves relative destinations against the caller''s location' {
        $out = New-OutputFolder $TestDrive
        Push-Location -LiteralPath $out
        try {
            $job = Restore-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -Archive qemu-server.conf -Destination rel.conf -AsJob
        } finally { Pop-Location }
        try {
            $null = Wait-Job -Job $job -Timeout 60
            $r = @(Receive-Job -Job $job -ErrorAction Stop)
            $r[0].Destination | Should -BeExactly (Join-Path $out 'rel.conf')
            Get-Sha256 (Join-Path $out 'rel.conf') | Should -BeExactly (Get-GoldenArchive $script:Vm100 'qemu-server.conf.blob').plaintext_sha256
        } finally { Remove-Job -Job $job -Force }
    }
}

Describe 'Restore-PbsImage -AsJob and secrets' {
    It 'the job''s Command names the restore, not the typed line with its key password' {
        $vm101 = Get-GoldenSnapshot vm 101
        $dest = Join-Path $TestDrive 'secret.raw'
        $job = Restore-PbsImage -Datastore (Get-GoldenDatastore) -Snapshot vm/101 -Archive qemu-server.conf -Destination $dest -AsJob `
            -Keyfile (Get-GoldenPath $vm101.key_file) -KeyPassword (ConvertTo-SecureString $vm101.key_password -AsPlainText -Force)
        try {
            $job.Command | Should -Not -BeLike "*$($vm101.key_password)*"
            $job.Command | Should -BeLike '*vm/101*qemu-server.conf*'
            $null = Wait-Job -Job $job -Timeout 60
            (Get-Job -Id $job.Id | Out-String -Width 500) | Should -Not -BeLike "*$($vm101.key_password)*"
            (Get-Job -Id $job.Id).Command | Should -BeExactly $job.Command
            @(Receive-Job -Job $job -ErrorAction Stop).Count | Should -Be 1
        } finally { Remove-Job -Job $job -Force }
    }
}
