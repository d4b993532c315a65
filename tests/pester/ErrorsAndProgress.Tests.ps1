# Error records and progress as a PowerShell user sees them: one non-terminating error per failed pipeline item,
# -ErrorAction honoured, progress with percent, MB/s and ETA, and child records per archive.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot ../../PbsRestore.psd1) -Force
    $script:Datastore = [IO.Path]::GetFullPath((Join-Path $PSScriptRoot ../../../shared/golden/datastore))
}

Describe 'Errors in a pipeline of many snapshots' {
    It 'writes one non-terminating error for the failed item and restores the others' {
        $out = Join-Path $TestDrive 'many'
        $results = @(Get-PbsSnapshot -Datastore $script:Datastore | Restore-PbsImage -DestinationFolder $out -ErrorVariable errs -ErrorAction SilentlyContinue)
        # vm/101 is encrypted and no key is given: that item fails, the three others restore.
        $errs.Count | Should -Be 1
        $errs[0].FullyQualifiedErrorId | Should -Be 'KeyRequired,PbsRestore.PowerShell.Commands.RestorePbsImageCommand'
        $errs[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        "$($errs[0].TargetObject)" | Should -Be 'vm/101/2024-05-01T10:05:00Z'
        ($results | ForEach-Object { "$($_.Namespace)|$($_.Snapshot)" } | Sort-Object -Unique) |
            Should -Be @('|ct/200/2024-05-01T10:10:00Z', '|vm/100/2024-05-01T10:00:00Z', 'dev|vm/102/2024-05-01T10:15:00Z')
    }

    It '-ErrorAction Stop ends the pipeline at the first failure' {
        $out = Join-Path $TestDrive 'stop'
        { Get-PbsSnapshot -Datastore $script:Datastore -BackupType vm | Restore-PbsImage -DestinationFolder $out -ErrorAction Stop } |
            Should -Throw -ErrorId 'KeyRequired,PbsRestore.PowerShell.Commands.RestorePbsImageCommand'
        Test-Path (Join-Path $out 'vm-101-2024-05-01T10-05-00Z') | Should -BeFalse
    }

    It 'error records carry category and target for missing snapshots' {
        Restore-PbsImage -Datastore $script:Datastore -Snapshot vm/999 -Archive drive-scsi0.img -Destination (Join-Path $TestDrive 'x') -ErrorVariable e -ErrorAction SilentlyContinue
        $e[0].FullyQualifiedErrorId | Should -Be 'SnapshotNotFound,PbsRestore.PowerShell.Commands.RestorePbsImageCommand'
        $e[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $e[0].TargetObject | Should -Be 'vm/999'
    }
}

# Issue 11, item 12: the error record names the thing that failed and, where we know it, what to do.
Describe 'Error records name what failed' {
    It 'a destination error targets the destination path and recommends -Force' {
        $dest = Join-Path $TestDrive 'exists.raw'
        Set-Content -LiteralPath $dest -Value 'keep me'
        Restore-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -Archive drive-scsi0.img -Destination $dest -ErrorVariable e -ErrorAction SilentlyContinue
        $e[0].FullyQualifiedErrorId | Should -Be 'DestinationExists,PbsRestore.PowerShell.Commands.RestorePbsImageCommand'
        $e[0].TargetObject | Should -Be $dest
        $e[0].ErrorDetails.RecommendedAction | Should -Be 'Add -Force to replace it, or give another -Destination.'
    }

    It 'an unknown archive targets the archive name and says how to list them' {
        Restore-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -Archive drive-nosuch.img -Destination (Join-Path $TestDrive 'y.raw') -ErrorVariable e -ErrorAction SilentlyContinue
        $e[0].FullyQualifiedErrorId | Should -Be 'ArchiveNotFound,PbsRestore.PowerShell.Commands.RestorePbsImageCommand'
        $e[0].TargetObject | Should -Be 'drive-nosuch.img'
        $e[0].ErrorDetails.RecommendedAction | Should -BeLike '*Get-PbsSnapshot*Archives*'
    }

    It 'a key file that is not JSON says so, without the JSON parser''s words, and targets the key file' {
        $key = Join-Path $TestDrive 'not-a-key.txt'
        Set-Content -LiteralPath $key -Value "# my notes`nnot json"
        $err = $null
        try { Restore-PbsImage -Datastore $script:Datastore -Snapshot vm/101 -Archive drive-scsi0.img -Destination (Join-Path $TestDrive 'z.raw') -Keyfile $key -ErrorAction Stop }
        catch { $err = $_ }
        $err.FullyQualifiedErrorId | Should -Be 'KeyFileInvalid,PbsRestore.PowerShell.Commands.RestorePbsImageCommand'
        $err.Exception.Message | Should -BeExactly "key file '$key' is not a PBS key file: it is not JSON (line 1, byte 1); give the key file that 'proxmox-backup-client key create' writes (a JSON file with kdf, data and fingerprint)"
        $err.Exception.Message | Should -Not -BeLike '*invalid start of a value*'
        $err.TargetObject | Should -Be $key
        $err.ErrorDetails.RecommendedAction | Should -Not -BeNullOrEmpty
    }
}

Describe 'Progress' {
    It 'reports percent, MB/s and ETA, and a child record per archive of a whole-snapshot restore' {
        $ps = [powershell]::Create()
        try {
            $null = $ps.AddScript({
                param($Module, $Datastore, $Out)
                $ProgressPreference = 'Continue'
                Import-Module $Module
                Restore-PbsImage -Datastore $Datastore -Snapshot vm/100 -DestinationFolder $Out
            }).AddArgument((Join-Path $PSScriptRoot ../../PbsRestore.psd1)).AddArgument($script:Datastore).AddArgument((Join-Path $TestDrive 'progress'))
            $results = $ps.Invoke()
            $ps.Streams.Error.Count | Should -Be 0
            $results.Count | Should -Be 3
            $records = @($ps.Streams.Progress)
            $parent = @($records | Where-Object { $_.Activity -like 'Restoring snapshot vm/100*' })
            $parent.Count | Should -BeGreaterThan 0
            $children = @($records | Where-Object { $_.ParentActivityId -eq $parent[0].ActivityId })
            ($children.Activity | Sort-Object -Unique) | Should -Be @('Restoring drive-scsi0.img', 'Restoring drive-virtio1.img', 'Restoring qemu-server.conf')
            @($records | Where-Object { $_.StatusDescription -match 'MB/s' -and $_.PercentComplete -ge 0 }).Count | Should -BeGreaterThan 0
            @($records | Where-Object RecordType -eq 'Completed').Count | Should -BeGreaterOrEqual 4
        }
        finally { $ps.Dispose() }
    }
}
