# Get-PbsSnapshot on the golden datastore (<repo>/../shared/golden, read-only): every field checked
# against MANIFEST.json, the filters, a folder that is no datastore, and datastores copied to Windows
# (snapshot folder names with ':' mapped to U+F03A or '_').
BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $script:SnapshotCases = @((Get-GoldenManifest).snapshots | ForEach-Object {
            @{ Spec = (Get-SnapshotSpec $_); Namespace = $_.namespace; Expected = $_ }
        })
    $script:MappingCases = @(
        @{ Mapping = 'U+F03A'; Colon = [string][char]0xF03A }
        @{ Mapping = 'underscore'; Colon = '_' }
    )
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot '../../PbsRestore.psd1') -Force
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $script:Golden = Get-GoldenManifest
    $script:Datastore = Get-GoldenDatastore
    $script:CryptModeOf = @{ 'none' = 'None'; 'encrypt' = 'Encrypt'; 'sign-only' = 'SignOnly' }

    function script:Find-Listed {
        param($Listing, $Namespace, $Spec)
        @($Listing | Where-Object { $_.Namespace -eq $Namespace -and $_.Snapshot -eq $Spec })
    }
}

Describe 'Get-PbsSnapshot on the golden datastore' {
    BeforeAll {
        $script:All = @(Get-PbsSnapshot -Datastore $script:Datastore -ErrorAction Stop)
    }

    It 'lists every snapshot of every namespace (4)' {
        $script:All.Count | Should -Be $script:Golden.snapshots.Count
        $script:All.Count | Should -Be 4
        @($script:All | ForEach-Object { "$($_.Namespace)|$($_.Snapshot)" } | Sort-Object) |
            Should -Be @($script:Golden.snapshots | ForEach-Object { "$($_.namespace)|$(Get-SnapshotSpec $_)" } | Sort-Object)
    }

    It 'returns PbsRestore.Sources.SnapshotInfo objects' {
        foreach ($s in $script:All) { $s.GetType().FullName | Should -Be 'PbsRestore.Sources.SnapshotInfo' }
    }

    Context 'snapshot <Spec> (namespace "<Namespace>")' -ForEach $script:SnapshotCases {
        BeforeAll {
            $found = @(Find-Listed $script:All $Namespace $Spec)
            $found.Count | Should -Be 1 -Because "$Spec in namespace '$Namespace' must be listed exactly once"
            $script:S = $found[0]
        }

        It 'has type, id, namespace and Snapshot string from MANIFEST.json' {
            $script:S.BackupType | Should -BeExactly $Expected.backup_type
            $script:S.BackupId | Should -BeExactly $Expected.backup_id
            $script:S.Namespace | Should -BeExactly $Expected.namespace
            $script:S.Snapshot | Should -BeExactly "$($Expected.backup_type)/$($Expected.backup_id)/$($Expected.backup_time_rfc3339)"
        }

        It 'has BackupTime as a UTC DateTime equal to backup_time' {
            $script:S.BackupTime | Should -BeOfType ([datetime])
            $script:S.BackupTime.Kind | Should -Be ([System.DateTimeKind]::Utc)
            $script:S.BackupTime | Should -Be ([DateTimeOffset]::FromUnixTimeSeconds([long]$Expected.backup_time).UtcDateTime)
            $script:S.BackupTime.ToString('yyyy-MM-ddTHH:mm:ssZ', [cultureinfo]::InvariantCulture) | Should -BeExactly $Expected.backup_time_rfc3339
        }

        It 'has the encrypted flag and key fingerprint from MANIFEST.json' {
            $script:S.Encrypted | Should -Be ([bool]$Expected.encrypted)
            if ($Expected.encrypted) {
                $script:S.KeyFingerprint | Should -BeExactly $Expected.key_fingerprint
            } else {
                $script:S.KeyFingerprint | Should -BeNullOrEmpty
            }
        }

        It 'lists exactly the manifest files with names, sizes and crypt modes' {
            $files = @($script:S.Files)
            @($files.Name | Sort-Object) | Should -Be @($Expected.archives.name | Sort-Object)
            foreach ($a in $Expected.archives) {
                $f = @($files | Where-Object Name -EQ $a.name)
                $f.Count | Should -Be 1
                $f[0].CryptMode.ToString() | Should -BeExactly $script:CryptModeOf[$a.manifest_crypt_mode] -Because "crypt mode of $($a.name)"
                $f[0].ArchiveName | Should -BeExactly (Get-ArchiveDisplayName $a.name)
                # Manifest size: logical size for indexes, file size for blobs.
                $expectedSize = if ($a.type -eq 'blob') { [long]$a.encoded_size } else { [long]$a.size }
                $f[0].Size | Should -Be $expectedSize -Because "size of $($a.name)"
            }
        }

        It 'has Size = sum of the file sizes and the manifest file (as PBS lists it), Owner and Location' {
            $sum = [long]$Expected.manifest.encoded_size
            foreach ($a in $Expected.archives) { $sum += if ($a.type -eq 'blob') { [long]$a.encoded_size } else { [long]$a.size } }
            $script:S.Size | Should -Be $sum
            $script:S.Owner | Should -BeExactly $Expected.group_owner_file.content.Trim()
            $script:S.Location | Should -BeExactly $script:Datastore
        }
    }
}

Describe 'Get-PbsSnapshot filters' {
    It '-Namespace dev lists only vm/102' {
        $r = @(Get-PbsSnapshot -Datastore $script:Datastore -Namespace dev -ErrorAction Stop)
        $r.Count | Should -Be 1
        $r[0].Snapshot | Should -BeExactly 'vm/102/2024-05-01T10:15:00Z'
        $r[0].Namespace | Should -BeExactly 'dev'
    }

    It '-MaxDepth 0 lists only the root namespace (3 snapshots)' {
        $r = @(Get-PbsSnapshot -Datastore $script:Datastore -MaxDepth 0 -ErrorAction Stop)
        $expected = @($script:Golden.snapshots | Where-Object namespace -EQ '' | ForEach-Object { Get-SnapshotSpec $_ } | Sort-Object)
        $expected.Count | Should -Be 3
        @($r.Snapshot | Sort-Object) | Should -Be $expected
        @($r | Where-Object Namespace -NE '').Count | Should -Be 0
    }

    It '-BackupType ct lists only ct/200' {
        $r = @(Get-PbsSnapshot -Datastore $script:Datastore -BackupType ct -ErrorAction Stop)
        $r.Count | Should -Be 1
        $r[0].Snapshot | Should -BeExactly 'ct/200/2024-05-01T10:10:00Z'
        $r[0].BackupType | Should -BeExactly 'ct'
    }

    It '-BackupType vm lists vm/100, vm/101 and (namespace dev) vm/102' {
        $r = @(Get-PbsSnapshot -Datastore $script:Datastore -BackupType vm -ErrorAction Stop)
        @($r.BackupId | Sort-Object) | Should -Be @('100', '101', '102')
    }

    It '-BackupType host lists nothing and writes no error' {
        $r = @(Get-PbsSnapshot -Datastore $script:Datastore -BackupType host -ErrorAction Stop -ErrorVariable errs)
        $r.Count | Should -Be 0
        $errs.Count | Should -Be 0
    }

    It '-BackupId 100 lists only vm/100' {
        $r = @(Get-PbsSnapshot -Datastore $script:Datastore -BackupId 100 -ErrorAction Stop)
        $r.Count | Should -Be 1
        $r[0].Snapshot | Should -BeExactly 'vm/100/2024-05-01T10:00:00Z'
    }

    It '-Latest gives one snapshot per group, the newest' {
        $r = @(Get-PbsSnapshot -Datastore $script:Datastore -Latest -ErrorAction Stop)
        # The golden has one snapshot per group, so -Latest must return all 4 groups once.
        $r.Count | Should -Be 4
        @($r | Group-Object Namespace, BackupType, BackupId | Where-Object Count -GT 1).Count | Should -Be 0
        $newest = @(Get-PbsSnapshot -Datastore $script:Datastore -BackupId 101 -Latest -ErrorAction Stop)
        $newest.Count | Should -Be 1
        $newest[0].BackupTime | Should -Be ([datetime]::new(2024, 5, 1, 10, 5, 0, [System.DateTimeKind]::Utc))
    }

    It '-Latest picks the newest of a group that has two snapshots' {
        $ds = Copy-GoldenDatastore -Parent $TestDrive -Name 'latest'
        $old = [System.IO.Path]::Combine($ds, 'vm', '100', '2024-05-01T10:00:00Z')
        $new = [System.IO.Path]::Combine($ds, 'vm', '100', '2024-06-01T08:30:00Z')
        Copy-DirectoryTree -Source $old -Destination $new
        $all = @(Get-PbsSnapshot -Datastore $ds -BackupId 100 -ErrorAction Stop)
        $all.Count | Should -Be 2
        $r = @(Get-PbsSnapshot -Datastore $ds -BackupId 100 -Latest -ErrorAction Stop)
        $r.Count | Should -Be 1
        $r[0].Snapshot | Should -BeExactly 'vm/100/2024-06-01T08:30:00Z'
    }
}

Describe 'Get-PbsSnapshot errors' {
    It 'a folder that is not a datastore fails with DatastoreNotFound' {
        $notStore = Join-Path $TestDrive 'not-a-datastore'
        New-Item -ItemType Directory -Path $notStore | Out-Null
        Set-Content -LiteralPath (Join-Path $notStore 'readme.txt') -Value 'nothing here'
        { Get-PbsSnapshot -Datastore $notStore -ErrorAction Stop } |
            Should -Throw -ErrorId 'DatastoreNotFound,PbsRestore.PowerShell.Commands.GetPbsSnapshotCommand'
        $err = $null
        $r = @(Get-PbsSnapshot -Datastore $notStore -ErrorAction SilentlyContinue -ErrorVariable err)
        $r.Count | Should -Be 0
        $err.Count | Should -Be 1
        $err[0].Exception.Message | Should -BeLike "*$notStore*"
    }

    It 'a folder that does not exist fails with DatastoreNotFound' {
        $missing = Join-Path $TestDrive 'does-not-exist'
        { Get-PbsSnapshot -Datastore $missing -ErrorAction Stop } |
            Should -Throw -ErrorId 'DatastoreNotFound,PbsRestore.PowerShell.Commands.GetPbsSnapshotCommand'
    }
}

Describe 'Windows-mapped snapshot folder names (<Mapping>)' -ForEach $script:MappingCases {
    BeforeAll {
        $script:Mapped = Copy-GoldenDatastore -Parent $TestDrive -Name "mapped-$Mapping"
        # Rename every snapshot folder: '2024-05-01T10:00:00Z' -> '2024-05-01T10<c>00<c>00Z'.
        foreach ($s in $script:Golden.snapshots) {
            $dir = Get-CopyPath $script:Mapped $s.datastore_path
            $mappedDir = [System.IO.Path]::Combine([System.IO.Path]::GetDirectoryName($dir),
                $s.backup_time_rfc3339.Replace(':', $Colon))
            [System.IO.Directory]::Move($dir, $mappedDir)
        }
        $script:OutDir = Join-Path $TestDrive "out-$Mapping"
        New-Item -ItemType Directory -Path $script:OutDir | Out-Null
    }

    It 'the copy really has mapped folder names' {
        $names = [System.IO.Directory]::GetDirectories([System.IO.Path]::Combine($script:Mapped, 'vm', '100')) |
            ForEach-Object { [System.IO.Path]::GetFileName($_) }
        $names | Should -Be @("2024-05-01T10${Colon}00${Colon}00Z")
    }

    It 'lists the same Snapshot strings as the golden datastore' {
        $r = @(Get-PbsSnapshot -Datastore $script:Mapped -ErrorAction Stop)
        $r.Count | Should -Be 4
        @($r | ForEach-Object { "$($_.Namespace)|$($_.Snapshot)" } | Sort-Object) |
            Should -Be @($script:Golden.snapshots | ForEach-Object { "$($_.namespace)|$(Get-SnapshotSpec $_)" } | Sort-Object)
        foreach ($s in $r) { $s.BackupTime.Kind | Should -Be ([System.DateTimeKind]::Utc) }
    }

    It "restores 'vm/100/2024-05-01T10:00:00Z' drive-scsi0.img bit-exactly" {
        $expected = Get-GoldenArchive (Get-GoldenSnapshot vm 100) 'drive-scsi0.img.fidx'
        $dest = Join-Path $script:OutDir 'scsi0.img'
        $res = Restore-PbsImage -Datastore $script:Mapped -Snapshot 'vm/100/2024-05-01T10:00:00Z' -Archive 'drive-scsi0.img' -Destination $dest -ErrorAction Stop
        $res.LogicalBytes | Should -Be ([long]$expected.size)
        (Get-Item -LiteralPath $dest).Length | Should -Be ([long]$expected.size)
        Get-Sha256 $dest | Should -BeExactly $expected.plaintext_sha256
    }

    It 'restores the piped, listed snapshot of namespace dev bit-exactly' {
        $expected = Get-GoldenArchive (Get-GoldenSnapshot vm 102) 'drive-scsi0.img.fidx'
        $dest = Join-Path $script:OutDir 'vm102.img'
        Get-PbsSnapshot -Datastore $script:Mapped -Namespace dev -ErrorAction Stop |
            Restore-PbsImage -Archive 'drive-scsi0.img' -Destination $dest -ErrorAction Stop | Out-Null
        Get-Sha256 $dest | Should -BeExactly $expected.plaintext_sha256
    }
}

AfterAll {
    Remove-Module PbsRestore -ErrorAction SilentlyContinue
    Remove-Module TestHelpers -ErrorAction SilentlyContinue
}
