# Whole-snapshot restores with -DestinationFolder: every archive, predictable names, bit-exact bytes.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot ../../PbsRestore.psd1) -Force
    Import-Module (Join-Path $PSScriptRoot TestHelpers.psm1) -Force
    $script:Datastore = Get-GoldenDatastore
    $script:Manifest = Get-GoldenManifest
    $script:KeyFile = Get-GoldenPath 'keys/scrypt.key.json'
    $script:KeyPassword = ConvertTo-SecureString 'golden-shared-scrypt-pass' -AsPlainText -Force
    function Get-FolderName($s) {
        $name = '{0}-{1}-{2}' -f $s.backup_type, $s.backup_id, ($s.backup_time_rfc3339 -replace ':', '-')
        if ($s.namespace) { "$($s.namespace -replace '/', '-')_$name" } else { $name }
    }
}

Describe 'Restore-PbsImage -DestinationFolder' {
    It 'restores every archive of every golden snapshot bit-exactly into predictable folders' {
        $out = Join-Path $TestDrive 'all'
        $results = @(Get-PbsSnapshot -Datastore $script:Datastore |
            Restore-PbsImage -DestinationFolder $out -Keyfile $script:KeyFile -KeyPassword $script:KeyPassword -ErrorAction Stop)
        $expectedCount = ($script:Manifest.snapshots | ForEach-Object { @($_.archives).Count } | Measure-Object -Sum).Sum
        $results.Count | Should -Be $expectedCount
        foreach ($s in $script:Manifest.snapshots) {
            foreach ($a in $s.archives) {
                $file = Join-Path $out (Get-FolderName $s) ($a.name -replace '\.(fidx|didx|blob)$', '')
                Test-Path -LiteralPath $file | Should -BeTrue -Because $file
                (Get-FileHash -LiteralPath $file -Algorithm SHA256).Hash.ToLowerInvariant() | Should -Be $a.plaintext_sha256 -Because $file
            }
        }
        @(Get-ChildItem -LiteralPath $out -Recurse -Filter '*.partial').Count | Should -Be 0
    }

    It '-Resume keeps the archives an interrupted run finished and restores the rest' {
        $out = Join-Path $TestDrive 'resumed'
        $folder = Join-Path $out 'vm-100-2024-05-01T10-00-00Z'
        Restore-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -DestinationFolder $out -ErrorAction Stop | Out-Null
        # As if the run had stopped before drive-virtio1.img was complete: its file is not there.
        Remove-Item -LiteralPath (Join-Path $folder 'drive-virtio1.img')
        $kept = (Get-Item -LiteralPath (Join-Path $folder 'drive-scsi0.img')).LastWriteTimeUtc
        $results = @(Restore-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -DestinationFolder $out -Resume -ErrorAction Stop -Verbose 4>&1)
        $restored = @($results | Where-Object { $_ -isnot [System.Management.Automation.VerboseRecord] })
        $restored.Archive | Should -Be @('drive-virtio1.img')
        ($results | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }).Message | Should -Contain "Kept $(Join-Path $folder 'drive-scsi0.img'): restored by the interrupted run."
        (Get-Item -LiteralPath (Join-Path $folder 'drive-scsi0.img')).LastWriteTimeUtc | Should -Be $kept
        $vm100 = $script:Manifest.snapshots | Where-Object { $_.backup_id -eq '100' }
        foreach ($a in $vm100.archives) {
            Get-Sha256 (Join-Path $folder ($a.name -replace '\.(fidx|didx|blob)$', '')) | Should -Be $a.plaintext_sha256
        }
    }

    It 'filters archives with a wildcard' {
        $out = Join-Path $TestDrive 'filtered'
        $results = @(Restore-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -Archive 'drive-*' -DestinationFolder $out -ErrorAction Stop)
        ($results.Archive | Sort-Object) | Should -Be @('drive-scsi0.img', 'drive-virtio1.img')
        Test-Path (Join-Path $out 'vm-100-2024-05-01T10-00-00Z' 'qemu-server.conf') | Should -BeFalse
    }

    It 'refuses existing files without -Force and overwrites them with it' {
        $out = Join-Path $TestDrive 'again'
        Restore-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -Archive qemu-server.conf -DestinationFolder $out -ErrorAction Stop | Out-Null
        { Restore-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -DestinationFolder $out -ErrorAction Stop } |
            Should -Throw -ErrorId 'DestinationExists,PbsRestore.PowerShell.Commands.RestorePbsImageCommand'
        @(Restore-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -DestinationFolder $out -Force -ErrorAction Stop).Count | Should -Be 3
    }

    It 'checks the key of every archive before writing anything' {
        $out = Join-Path $TestDrive 'nokey'
        { Restore-PbsImage -Datastore $script:Datastore -Snapshot vm/101 -DestinationFolder $out -ErrorAction Stop } |
            Should -Throw -ErrorId 'KeyRequired,PbsRestore.PowerShell.Commands.RestorePbsImageCommand'
        Test-Path -LiteralPath $out | Should -BeFalse
    }

    It 'needs exactly one of -Destination and -DestinationFolder' {
        { Restore-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -Archive drive-scsi0.img -ErrorAction Stop } |
            Should -Throw -ErrorId 'DestinationRequired,PbsRestore.PowerShell.Commands.RestorePbsImageCommand'
        { Restore-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -Destination (Join-Path $TestDrive 'x') -ErrorAction Stop } |
            Should -Throw -ErrorId 'ArchiveRequired,PbsRestore.PowerShell.Commands.RestorePbsImageCommand'
    }

    It '-WhatIf writes nothing' {
        $out = Join-Path $TestDrive 'whatif'
        Restore-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -DestinationFolder $out -WhatIf
        Test-Path -LiteralPath $out | Should -BeFalse
    }
}
