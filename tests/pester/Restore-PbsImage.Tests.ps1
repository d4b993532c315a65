# Restore-PbsImage on the golden datastore (<repo>/../shared/golden, read-only): every archive of every
# snapshot restores bit-exactly (SHA-256 from MANIFEST.json), keys and passwords, archive and snapshot
# names, the pipeline, the result object, fetch concurrency, sparse output, and the refusals (keys,
# destination, -WhatIf, unknown archive or snapshot) that must leave no file behind.
BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $script:ArchiveCases = @(Get-GoldenArchiveCases)
    # Each archive once by the name users type and once by its stored name.
    $script:NameCases = @(foreach ($c in $script:ArchiveCases) {
            $c + @{ NameKind = 'display name'; Name = $c.Display }
            $c + @{ NameKind = 'stored name'; Name = $c.Stored }
        })
    $script:ConcurrencyCases = @(
        @{ Spec = 'vm/100/2024-05-01T10:00:00Z'; Archive = 'drive-scsi0.img' }
        @{ Spec = 'ct/200/2024-05-01T10:10:00Z'; Archive = 'data.didx' }
    )
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot '../../PbsRestore.psd1') -Force
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $script:Golden = Get-GoldenManifest
    $script:Datastore = Get-GoldenDatastore
    $script:Cmd = 'PbsRestore.PowerShell.Commands.RestorePbsImageCommand'
    $script:Vm100 = Get-GoldenSnapshot vm 100
    $script:Vm101 = Get-GoldenSnapshot vm 101
    $script:Vm100Scsi0 = Get-GoldenArchive $script:Vm100 'drive-scsi0.img.fidx'
    $script:Vm101Scsi0 = Get-GoldenArchive $script:Vm101 'drive-scsi0.img.fidx'
    $script:ScryptKey = Get-GoldenPath $script:Vm101.key_file
    $script:NoneKey = Get-GoldenPath 'keys/none.key.json'
    $script:Password = New-TestPassword $script:Vm101.key_password

    # Key arguments for a MANIFEST.json snapshot (none for unencrypted ones).
    function script:Get-KeyArgs {
        param($Snapshot)
        if ($Snapshot.encrypted) {
            @{ Keyfile = (Get-GoldenPath $Snapshot.key_file); KeyPassword = (New-TestPassword $Snapshot.key_password) }
        } else { @{} }
    }

    # Assert-NothingWritten and Assert-Restored come from TestHelpers.psm1.
    $script:SavedPasswordEnv = $env:PBS_ENCRYPTION_PASSWORD
    $env:PBS_ENCRYPTION_PASSWORD = $null
}

AfterAll {
    $env:PBS_ENCRYPTION_PASSWORD = $script:SavedPasswordEnv
    Remove-Module PbsRestore -ErrorAction SilentlyContinue
    Remove-Module TestHelpers -ErrorAction SilentlyContinue
}

Describe 'Restore-PbsImage restores every golden archive bit-exactly' {
    It '<Spec> (ns "<Namespace>") <Stored> by <NameKind> ''<Name>''' -ForEach $script:NameCases {
        $out = New-OutputFolder $TestDrive
        $dest = Join-Path $out 'restored.bin'
        $keyArgs = Get-KeyArgs $Snap
        $r = @(Restore-PbsImage -Datastore $script:Datastore -Namespace $Namespace -Snapshot $Spec -Archive $Name -Destination $dest @keyArgs -ErrorAction Stop)
        $r.Count | Should -Be 1
        Assert-Restored $dest $Arch
        @(Get-FolderEntries $out) | Should -Be @('restored.bin')
    }

    It '<Spec> <Stored>: result object fields' -ForEach $script:ArchiveCases {
        $out = New-OutputFolder $TestDrive
        $dest = Join-Path $out 'restored.bin'
        $keyArgs = Get-KeyArgs $Snap
        $r = Restore-PbsImage -Datastore $script:Datastore -Namespace $Namespace -Snapshot $Spec -Archive $Display -Destination $dest @keyArgs -ErrorAction Stop
        $r.GetType().FullName | Should -Be 'PbsRestore.Restore.RestoreResult'
        # One meaning of Snapshot: type/id/time as Get-PbsSnapshot lists it, the namespace in its own property.
        $r.Snapshot | Should -BeExactly $Spec
        $r.Namespace | Should -BeExactly $Namespace
        $r.Archive | Should -BeExactly $Display
        $r.Destination | Should -BeExactly $dest
        $r.LogicalBytes | Should -Be ([long]$Arch.plaintext_size)
        $r.BytesRead | Should -BeGreaterThan 0
        $r.Duration | Should -BeOfType ([timespan])
        $r.MBPerSecond | Should -BeGreaterOrEqual 0
        switch ($Type) {
            'fixed-index' {
                $r.LogicalBytes | Should -Be ([long]$Arch.size)
                $r.Chunks | Should -Be ([long]$Arch.chunk_count)
                $r.ZeroChunks | Should -Be ([long]$Arch.zero_chunk_count)
                # Wire bytes: every unique non-zero chunk is read once; zero chunks are not read at all.
                $r.BytesRead | Should -BeLessThan ([long]$Arch.size)
            }
            'dynamic-index' {
                $r.LogicalBytes | Should -Be ([long]$Arch.size)
                $r.Chunks | Should -Be ([long]$Arch.chunk_count)
                $r.ZeroChunks | Should -Be 0
            }
            'blob' {
                $r.BytesRead | Should -Be ([long]$Arch.encoded_size)
            }
        }
    }
}

Describe 'Restore-PbsImage keys and passwords' {
    It 'decrypts vm/101 drive-scsi0.img with -Keyfile and -KeyPassword' {
        $dest = Join-Path (New-OutputFolder $TestDrive) 'vm101.img'
        Restore-PbsImage -Datastore $script:Datastore -Snapshot 'vm/101/2024-05-01T10:05:00Z' -Archive 'drive-scsi0.img' `
            -Destination $dest -Keyfile $script:ScryptKey -KeyPassword $script:Password -ErrorAction Stop | Out-Null
        Assert-Restored $dest $script:Vm101Scsi0
    }

    It 'takes the password from $env:PBS_ENCRYPTION_PASSWORD and leaves the variable as it was' {
        $before = $env:PBS_ENCRYPTION_PASSWORD
        $dest = Join-Path (New-OutputFolder $TestDrive) 'vm101-env.img'
        try {
            $env:PBS_ENCRYPTION_PASSWORD = $script:Vm101.key_password
            Restore-PbsImage -Datastore $script:Datastore -Snapshot 'vm/101/2024-05-01T10:05:00Z' -Archive 'drive-scsi0.img' `
                -Destination $dest -Keyfile $script:ScryptKey -ErrorAction Stop | Out-Null
            $env:PBS_ENCRYPTION_PASSWORD | Should -BeExactly $script:Vm101.key_password
        } finally {
            $env:PBS_ENCRYPTION_PASSWORD = $before
        }
        Assert-Restored $dest $script:Vm101Scsi0
        $env:PBS_ENCRYPTION_PASSWORD | Should -Be $before
    }

    It 'decrypts the encrypted config blob of vm/101 with the env password' {
        $before = $env:PBS_ENCRYPTION_PASSWORD
        $dest = Join-Path (New-OutputFolder $TestDrive) 'qemu-server.conf'
        try {
            $env:PBS_ENCRYPTION_PASSWORD = $script:Vm101.key_password
            Restore-PbsImage -Datastore $script:Datastore -Snapshot 'vm/101' -Archive 'qemu-server.conf' `
                -Destination $dest -Keyfile $script:ScryptKey -ErrorAction Stop | Out-Null
        } finally {
            $env:PBS_ENCRYPTION_PASSWORD = $before
        }
        Assert-Restored $dest (Get-GoldenArchive $script:Vm101 'qemu-server.conf.blob')
    }
}

Describe 'Restore-PbsImage snapshot and archive names' {
    It "accepts 'drive-scsi0.img' and 'drive-scsi0.img.fidx' with identical bytes" {
        $out = New-OutputFolder $TestDrive
        $a = Join-Path $out 'a.img'; $b = Join-Path $out 'b.img'
        Restore-PbsImage -Datastore $script:Datastore -Snapshot 'vm/100/2024-05-01T10:00:00Z' -Archive 'drive-scsi0.img' -Destination $a -ErrorAction Stop | Out-Null
        Restore-PbsImage -Datastore $script:Datastore -Snapshot 'vm/100/2024-05-01T10:00:00Z' -Archive 'drive-scsi0.img.fidx' -Destination $b -ErrorAction Stop | Out-Null
        Assert-Restored $a $script:Vm100Scsi0
        Assert-Restored $b $script:Vm100Scsi0
    }

    It 'restores a snapshot piped from Get-PbsSnapshot -BackupId 100' {
        $dest = Join-Path (New-OutputFolder $TestDrive) 'piped.img'
        $r = @(Get-PbsSnapshot -Datastore $script:Datastore -BackupId 100 -ErrorAction Stop |
                Restore-PbsImage -Archive 'drive-scsi0.img' -Destination $dest -ErrorAction Stop)
        $r.Count | Should -Be 1
        $r[0].Snapshot | Should -BeExactly 'vm/100/2024-05-01T10:00:00Z'
        Assert-Restored $dest $script:Vm100Scsi0
    }

    It 'restores an encrypted snapshot piped from Get-PbsSnapshot -BackupId 101' {
        $dest = Join-Path (New-OutputFolder $TestDrive) 'piped101.img'
        Get-PbsSnapshot -Datastore $script:Datastore -BackupId 101 -ErrorAction Stop |
            Restore-PbsImage -Archive 'drive-scsi0.img' -Destination $dest -Keyfile $script:ScryptKey -KeyPassword $script:Password -ErrorAction Stop |
            Out-Null
        Assert-Restored $dest $script:Vm101Scsi0
    }

    It "'vm/100' resolves to the only (latest) snapshot of the golden group" {
        $dest = Join-Path (New-OutputFolder $TestDrive) 'latest.img'
        $r = Restore-PbsImage -Datastore $script:Datastore -Snapshot 'vm/100' -Archive 'drive-scsi0.img' -Destination $dest -ErrorAction Stop
        $r.Snapshot | Should -BeExactly 'vm/100/2024-05-01T10:00:00Z'
        Assert-Restored $dest $script:Vm100Scsi0
    }

    It "'vm/100' resolves to the newest when the group has an older and a newer snapshot" {
        $ds = Copy-GoldenDatastore -Parent $TestDrive -Name 'two-snapshots'
        # An older snapshot of vm/100 that holds vm/101's files: restoring it would give other bytes.
        # (vm/101 is encrypted, so restoring it without a key would fail: the older one must not be chosen.)
        $older = [System.IO.Path]::Combine($ds, 'vm', '100', '2024-04-01T00:00:00Z')
        Copy-DirectoryTree -Source (Get-CopyPath $ds $script:Vm101.datastore_path) -Destination $older
        @(Get-PbsSnapshot -Datastore $ds -BackupId 100 -ErrorAction Stop).Count | Should -Be 2
        $dest = Join-Path (New-OutputFolder $TestDrive) 'latest2.img'
        $r = Restore-PbsImage -Datastore $ds -Snapshot 'vm/100' -Archive 'drive-scsi0.img' -Destination $dest -ErrorAction Stop
        $r.Snapshot | Should -BeExactly 'vm/100/2024-05-01T10:00:00Z'
        Assert-Restored $dest $script:Vm100Scsi0
    }

    It "restores namespace dev vm/102 with -Namespace dev and with an 'ns/dev/' prefix" {
        $expected = Get-GoldenArchive (Get-GoldenSnapshot vm 102) 'drive-scsi0.img.fidx'
        $out = New-OutputFolder $TestDrive
        $a = Join-Path $out 'ns-param.img'; $b = Join-Path $out 'ns-prefix.img'
        Restore-PbsImage -Datastore $script:Datastore -Namespace dev -Snapshot 'vm/102' -Archive 'drive-scsi0.img' -Destination $a -ErrorAction Stop | Out-Null
        Restore-PbsImage -Datastore $script:Datastore -Snapshot 'ns/dev/vm/102/2024-05-01T10:15:00Z' -Archive 'drive-scsi0.img' -Destination $b -ErrorAction Stop | Out-Null
        Assert-Restored $a $expected
        Assert-Restored $b $expected
    }
}

Describe 'Restore-PbsImage -FetchConcurrency' {
    It '<Spec> <Archive>: -FetchConcurrency 1 and 32 give identical, correct bytes' -ForEach $script:ConcurrencyCases {
        $parts = $Spec -split '/'
        $snap = Get-GoldenSnapshot $parts[0] $parts[1]
        $arch = @($snap.archives | Where-Object { (Get-ArchiveDisplayName $_.name) -eq $Archive -or $_.name -eq $Archive })[0]
        $out = New-OutputFolder $TestDrive
        $one = Join-Path $out 'c1.bin'; $many = Join-Path $out 'c32.bin'
        $r1 = Restore-PbsImage -Datastore $script:Datastore -Snapshot $Spec -Archive $Archive -Destination $one -FetchConcurrency 1 -ErrorAction Stop
        $r32 = Restore-PbsImage -Datastore $script:Datastore -Snapshot $Spec -Archive $Archive -Destination $many -FetchConcurrency 32 -ErrorAction Stop
        Get-Sha256 $one | Should -BeExactly (Get-Sha256 $many)
        Assert-Restored $one $arch
        Assert-Restored $many $arch
        $r1.Chunks | Should -Be $r32.Chunks
        $r1.ZeroChunks | Should -Be $r32.ZeroChunks
    }

    It 'rejects -FetchConcurrency 0' {
        $dest = Join-Path (New-OutputFolder $TestDrive) 'c0.bin'
        { Restore-PbsImage -Datastore $script:Datastore -Snapshot 'vm/100' -Archive 'drive-scsi0.img' -Destination $dest -FetchConcurrency 0 -ErrorAction Stop } |
            Should -Throw -ErrorId 'ParameterArgumentValidationError,PbsRestore.PowerShell.Commands.RestorePbsImageCommand'
        Assert-NothingWritten $dest
    }
}

Describe 'Restore-PbsImage writes sparse images' -Skip:(-not ($IsLinux -or $IsMacOS)) {
    It 'vm/101 drive-scsi0.img (18 of 32 chunks zero) allocates less than its length' {
        $dest = Join-Path (New-OutputFolder $TestDrive) 'sparse101.img'
        Restore-PbsImage -Datastore $script:Datastore -Snapshot 'vm/101' -Archive 'drive-scsi0.img' `
            -Destination $dest -Keyfile $script:ScryptKey -KeyPassword $script:Password -ErrorAction Stop | Out-Null
        Assert-Restored $dest $script:Vm101Scsi0
        $length = (Get-Item -LiteralPath $dest).Length
        $allocated = Get-AllocatedBytes $dest
        $allocated | Should -BeLessThan $length
        # Only the non-zero chunks need blocks (plus one chunk of slack for file-system metadata).
        $dataBytes = ([long]$script:Vm101Scsi0.chunk_count - [long]$script:Vm101Scsi0.zero_chunk_count) * [long]$script:Vm101Scsi0.chunk_size
        $allocated | Should -BeLessOrEqual ($dataBytes + [long]$script:Vm101Scsi0.chunk_size)
    }

    It 'vm/100 drive-scsi0.img (24 of 49 chunks zero) allocates less than its length' {
        $dest = Join-Path (New-OutputFolder $TestDrive) 'sparse100.img'
        Restore-PbsImage -Datastore $script:Datastore -Snapshot 'vm/100' -Archive 'drive-scsi0.img' -Destination $dest -ErrorAction Stop | Out-Null
        Assert-Restored $dest $script:Vm100Scsi0
        $length = (Get-Item -LiteralPath $dest).Length
        $allocated = Get-AllocatedBytes $dest
        $allocated | Should -BeLessThan $length
        $dataBytes = ([long]$script:Vm100Scsi0.chunk_count - [long]$script:Vm100Scsi0.zero_chunk_count) * [long]$script:Vm100Scsi0.chunk_size
        $allocated | Should -BeLessOrEqual ($dataBytes + [long]$script:Vm100Scsi0.chunk_size)
    }
}

Describe 'Restore-PbsImage refusals' {
    Context 'keys' {
        It 'a wrong password fails with KeyPasswordWrong (terminating) and writes nothing' {
            $dest = Join-Path (New-OutputFolder $TestDrive) 'wrongpw.img'
            $err = { Restore-PbsImage -Datastore $script:Datastore -Snapshot 'vm/101' -Archive 'drive-scsi0.img' -Destination $dest `
                    -Keyfile $script:ScryptKey -KeyPassword (New-TestPassword 'not-the-password') } |
                Should -Throw -ErrorId "KeyPasswordWrong,$script:Cmd" -PassThru
            $err.Exception.Message | Should -BeLike "*$script:ScryptKey*"
            $err.Exception.Message | Should -Not -BeLike '*not-the-password*'
            Assert-NothingWritten $dest
        }

        It 'a wrong password from $env:PBS_ENCRYPTION_PASSWORD fails with KeyPasswordWrong and writes nothing' {
            $before = $env:PBS_ENCRYPTION_PASSWORD
            $dest = Join-Path (New-OutputFolder $TestDrive) 'wrongenv.img'
            try {
                $env:PBS_ENCRYPTION_PASSWORD = 'also-not-the-password'
                { Restore-PbsImage -Datastore $script:Datastore -Snapshot 'vm/101' -Archive 'drive-scsi0.img' -Destination $dest -Keyfile $script:ScryptKey } |
                    Should -Throw -ErrorId "KeyPasswordWrong,$script:Cmd"
            } finally {
                $env:PBS_ENCRYPTION_PASSWORD = $before
            }
            Assert-NothingWritten $dest
        }

        It 'an encrypted archive without -Keyfile fails with KeyRequired and writes nothing' {
            $dest = Join-Path (New-OutputFolder $TestDrive) 'nokey.img'
            $err = { Restore-PbsImage -Datastore $script:Datastore -Snapshot 'vm/101' -Archive 'drive-scsi0.img' -Destination $dest -ErrorAction Stop } |
                Should -Throw -ErrorId "KeyRequired,$script:Cmd" -PassThru
            $err.Exception.Message | Should -BeLike '*drive-scsi0.img*'
            $err.Exception.Message | Should -BeLike "*$($script:Golden.keys[0].fingerprint_short)*"
            Assert-NothingWritten $dest
        }

        It 'an encrypted config blob without -Keyfile fails with KeyRequired and writes nothing' {
            $dest = Join-Path (New-OutputFolder $TestDrive) 'nokey.conf'
            { Restore-PbsImage -Datastore $script:Datastore -Snapshot 'vm/101' -Archive 'qemu-server.conf' -Destination $dest -ErrorAction Stop } |
                Should -Throw -ErrorId "KeyRequired,$script:Cmd"
            Assert-NothingWritten $dest
        }

        It 'the wrong key (keys/none.key.json) fails with KeyFingerprintMismatch and writes nothing' {
            $dest = Join-Path (New-OutputFolder $TestDrive) 'wrongkey.img'
            $err = { Restore-PbsImage -Datastore $script:Datastore -Snapshot 'vm/101' -Archive 'drive-scsi0.img' -Destination $dest -Keyfile $script:NoneKey -ErrorAction Stop } |
                Should -Throw -ErrorId "KeyFingerprintMismatch,$script:Cmd" -PassThru
            $noneKey = @($script:Golden.keys | Where-Object name -EQ 'none.key.json')[0]
            $err.Exception.Message | Should -BeLike "*$($noneKey.fingerprint_short)*"
            $err.Exception.Message | Should -BeLike "*$($script:Vm101.key_fingerprint.Substring(0, 23))*"
            Assert-NothingWritten $dest
        }
    }

    Context 'destination' {
        It 'an existing destination without -Force fails with DestinationExists and keeps its content' {
            $out = New-OutputFolder $TestDrive
            $dest = Join-Path $out 'exists.img'
            [System.IO.File]::WriteAllText($dest, 'precious data')
            $hashBefore = Get-Sha256 $dest
            $err = { Restore-PbsImage -Datastore $script:Datastore -Snapshot 'vm/100' -Archive 'drive-scsi0.img' -Destination $dest -ErrorAction Stop } |
                Should -Throw -ErrorId "DestinationExists,$script:Cmd" -PassThru
            $err.Exception.Message | Should -BeLike "*$dest*"
            Get-Sha256 $dest | Should -BeExactly $hashBefore
            [System.IO.File]::ReadAllText($dest) | Should -BeExactly 'precious data'
            @(Get-FolderEntries $out) | Should -Be @('exists.img')
        }

        It 'an existing destination with -Force is overwritten with the right bytes' {
            $out = New-OutputFolder $TestDrive
            $dest = Join-Path $out 'exists.img'
            # Longer than the image, so a restore that only overwrites in place would leave a tail.
            $fs = [System.IO.File]::Create($dest); $fs.SetLength(4MB); $fs.WriteByte(0xAB); $fs.Dispose()
            Restore-PbsImage -Datastore $script:Datastore -Snapshot 'vm/100' -Archive 'drive-scsi0.img' -Destination $dest -Force -ErrorAction Stop | Out-Null
            Assert-Restored $dest $script:Vm100Scsi0
            @(Get-FolderEntries $out) | Should -Be @('exists.img')
        }

        It '-WhatIf writes nothing and returns nothing' {
            $dest = Join-Path (New-OutputFolder $TestDrive) 'whatif.img'
            $r = @(Restore-PbsImage -Datastore $script:Datastore -Snapshot 'vm/100' -Archive 'drive-scsi0.img' -Destination $dest -WhatIf -ErrorAction Stop)
            $r.Count | Should -Be 0
            Assert-NothingWritten $dest
        }

        It '-WhatIf with an existing destination and -Force leaves it unchanged' {
            $out = New-OutputFolder $TestDrive
            $dest = Join-Path $out 'keep.img'
            [System.IO.File]::WriteAllText($dest, 'keep me')
            Restore-PbsImage -Datastore $script:Datastore -Snapshot 'vm/100' -Archive 'drive-scsi0.img' -Destination $dest -Force -WhatIf -ErrorAction Stop | Out-Null
            [System.IO.File]::ReadAllText($dest) | Should -BeExactly 'keep me'
            @(Get-FolderEntries $out) | Should -Be @('keep.img')
        }
    }

    Context 'paths' {
        It 'resolves relative -Datastore and -Destination against the PowerShell location' {
            $out = New-OutputFolder $TestDrive
            $store = Copy-GoldenDatastore -Parent $out -Name 'store'
            Push-Location -LiteralPath $out
            try {
                [Environment]::CurrentDirectory | Should -Not -Be $out -Because 'the test needs the process directory to differ'
                $r = Restore-PbsImage -Datastore './store' -Snapshot 'vm/100' -Archive 'drive-scsi0.img' -Destination 'relative.img' -ErrorAction Stop
            } finally {
                Pop-Location
            }
            $r.Destination | Should -BeExactly (Join-Path $out 'relative.img')
            Assert-Restored (Join-Path $out 'relative.img') $script:Vm100Scsi0
            Test-Path -LiteralPath $store -PathType Container | Should -BeTrue
        }

        It 'a destination in a missing folder fails with DestinationFolderNotFound and creates nothing' {
            $out = New-OutputFolder $TestDrive
            $dest = Join-Path $out 'missing/x.img'
            { Restore-PbsImage -Datastore $script:Datastore -Snapshot 'vm/100' -Archive 'drive-scsi0.img' -Destination $dest -ErrorAction Stop } |
                Should -Throw -ErrorId "DestinationFolderNotFound,$script:Cmd"
            @(Get-FolderEntries $out) | Should -Be @()
        }
    }

    Context 'names' {
        It 'an unknown archive fails with ArchiveNotFound listing the available archives' {
            $dest = Join-Path (New-OutputFolder $TestDrive) 'nope.img'
            $err = { Restore-PbsImage -Datastore $script:Datastore -Snapshot 'vm/100/2024-05-01T10:00:00Z' -Archive 'drive-scsi9.img' -Destination $dest -ErrorAction Stop } |
                Should -Throw -ErrorId "ArchiveNotFound,$script:Cmd" -PassThru
            $err.Exception.Message | Should -BeLike '*drive-scsi9.img*'
            foreach ($a in $script:Vm100.archives) {
                $err.Exception.Message | Should -BeLike "*$(Get-ArchiveDisplayName $a.name)*"
            }
            Assert-NothingWritten $dest
        }

        It 'an unknown snapshot group fails with SnapshotNotFound' {
            $dest = Join-Path (New-OutputFolder $TestDrive) 'nosnap.img'
            $err = { Restore-PbsImage -Datastore $script:Datastore -Snapshot 'vm/999' -Archive 'drive-scsi0.img' -Destination $dest -ErrorAction Stop } |
                Should -Throw -ErrorId "SnapshotNotFound,$script:Cmd" -PassThru
            $err.Exception.Message | Should -BeLike '*vm/999*'
            Assert-NothingWritten $dest
        }

        It 'an unknown snapshot time fails with SnapshotNotFound' {
            $dest = Join-Path (New-OutputFolder $TestDrive) 'notime.img'
            $err = { Restore-PbsImage -Datastore $script:Datastore -Snapshot 'vm/100/2023-01-01T00:00:00Z' -Archive 'drive-scsi0.img' -Destination $dest -ErrorAction Stop } |
                Should -Throw -ErrorId "SnapshotNotFound,$script:Cmd" -PassThru
            $err.Exception.Message | Should -BeLike '*vm/100/2023-01-01T00:00:00Z*'
            Assert-NothingWritten $dest
        }

        It 'vm/102 outside its namespace fails with SnapshotNotFound' {
            $dest = Join-Path (New-OutputFolder $TestDrive) 'nons.img'
            { Restore-PbsImage -Datastore $script:Datastore -Snapshot 'vm/102' -Archive 'drive-scsi0.img' -Destination $dest -ErrorAction Stop } |
                Should -Throw -ErrorId "SnapshotNotFound,$script:Cmd"
            Assert-NothingWritten $dest
        }
    }
}

# Issue 11, item 16: the key password is asked for when it is needed and the host can ask (a recording host answers
# ReadLineAsSecureString); a host that cannot ask keeps the KeyPasswordRequired error.
Describe 'Restore-PbsImage asks for the key password' {
    BeforeAll {
        $script:SavedKeyPassword = $env:PBS_ENCRYPTION_PASSWORD
        $env:PBS_ENCRYPTION_PASSWORD = $null
        $script:Rec = New-RecordingRunspace
        $script:KeyCmd = 'Restore-PbsImage -Datastore $ds -Snapshot $snap -Archive drive-scsi0.img -Keyfile $key -Destination $dest'
        function Invoke-KeyRestore([string[]] $Answers) {
            $script:Rec.UI.Written.Clear(); $script:Rec.UI.SecureAnswers.Clear()
            foreach ($a in $Answers) { $script:Rec.UI.SecureAnswers.Enqueue($a) }
            $dest = Join-Path (New-OutputFolder $TestDrive) 'vm-101.raw'
            $r = Invoke-InRecordingRunspace $script:Rec $script:KeyCmd @{
                ds = $script:Datastore; snap = (Get-SnapshotSpec $script:Vm101); key = $script:ScryptKey; dest = $dest }
            $r | Add-Member -NotePropertyName Destination -NotePropertyValue $dest -PassThru
        }
    }
    AfterAll {
        $script:Rec.Runspace.Dispose()
        $env:PBS_ENCRYPTION_PASSWORD = $script:SavedKeyPassword
    }

    It 'asks once, naming the key file, and restores bit-exactly with the typed password' {
        $r = Invoke-KeyRestore @($script:Vm101.key_password)
        $r.Thrown | Should -BeNullOrEmpty
        $r.Errors | Should -HaveCount 0
        $script:Rec.UI.Written | Should -Contain "Password for key file '$($script:ScryptKey)': "
        $script:Rec.UI.SecureAnswers.Count | Should -Be 0
        Get-Sha256 $r.Destination | Should -Be $script:Vm101Scsi0.plaintext_sha256
    }

    It 'a wrong typed password gives KeyPasswordWrong and writes nothing' {
        $r = Invoke-KeyRestore @('not-the-password')
        @($r.Errors)[0].FullyQualifiedErrorId | Should -BeExactly 'KeyPasswordWrong,PbsRestore.PowerShell.Commands.RestorePbsImageCommand'
        Assert-NothingWritten $r.Destination
    }

    It 'a host that cannot ask keeps the KeyPasswordRequired error' {
        $r = Invoke-KeyRestore @()
        @($r.Errors)[0].FullyQualifiedErrorId | Should -BeExactly 'KeyPasswordRequired,PbsRestore.PowerShell.Commands.RestorePbsImageCommand'
        Assert-NothingWritten $r.Destination
    }
}
