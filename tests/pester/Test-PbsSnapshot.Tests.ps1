# Test-PbsSnapshot: verify-only. On the golden datastore every snapshot verifies Ok (vm/101 with its key); on a
# private copy with one flipped chunk byte and one deleted chunk, exactly those chunks are reported, in every
# archive that uses them, with index, offset and digest from MANIFEST.json, and nothing is written anywhere.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot '../../PbsRestore.psd1') -Force
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $script:GoldenFingerprint = Get-TreeFingerprint (Get-GoldenRoot)
    $script:Manifest = Get-GoldenManifest
    $vm101 = Get-GoldenSnapshot vm 101
    $script:KeyFile = Get-GoldenPath $vm101.key_file
    $script:KeyPassword = New-TestPassword $vm101.key_password

    # What every snapshot of MANIFEST.json should give: one row per manifest archive, distinct chunks per index.
    $script:ExpectedRows = @(foreach ($s in $script:Manifest.snapshots) {
            foreach ($a in @($s.archives | Where-Object { $_.in_manifest -ne $false })) {
                [pscustomobject]@{
                    Key    = "$($s.path)|$(Get-ArchiveDisplayName $a.name)"
                    Chunks = if ($a.type -eq 'blob') { 1 } else { @($a.chunks.digest | Select-Object -Unique).Count }
                    Bytes  = [long]$a.plaintext_size
                }
            }
        })

    # The bad chunks MANIFEST.json predicts when the chunks in $Damage (digest -> error id) are damaged: one per archive
    # that uses the chunk, at the first index entry that uses it.
    function script:Get-ExpectedBadChunks([hashtable] $Damage) {
        foreach ($s in $script:Manifest.snapshots) {
            foreach ($a in @($s.archives | Where-Object { $_.type -ne 'blob' })) {
                foreach ($d in $Damage.Keys) {
                    $first = @($a.chunks | Where-Object digest -EQ $d | Sort-Object { [int]$_.index }) | Select-Object -First 1
                    if ($first) { "$($s.path)|$(Get-ArchiveDisplayName $a.name)|$($first.index)|$($first.offset)|$d|$($Damage[$d])" }
                }
            }
        }
    }

    function script:Get-ResultPath($Result) {
        # A result's snapshot as MANIFEST.json's path: 'ns/dev/' + Snapshot (type/id/time, as Get-PbsSnapshot's) in a namespace.
        $(if ($Result.Namespace) { "ns/$($Result.Namespace -replace '/', '/ns/')/" }) + $Result.Snapshot
    }

    function script:Get-ActualBadChunks($Results) {
        foreach ($r in $Results) { foreach ($b in $r.BadChunks) { "$(Get-ResultPath $r)|$($r.Archive)|$($b.Index)|$($b.Offset)|$($b.Digest)|$($b.ErrorId)" } }
    }

    function script:Test-All([string] $Datastore, [hashtable] $Extra = @{}) {
        Get-PbsSnapshot -Datastore $Datastore -ErrorAction Stop |
            Test-PbsSnapshot -Keyfile $script:KeyFile -KeyPassword $script:KeyPassword -ErrorAction Stop @Extra
    }
}

Describe 'Test-PbsSnapshot on the golden datastore' {
    BeforeAll {
        $script:Results = @(Test-All (Get-GoldenDatastore))
    }

    It 'verifies every archive of every snapshot Ok' {
        @($script:Results | ForEach-Object { "$(Get-ResultPath $_)|$($_.Archive)" } | Sort-Object) |
            Should -Be @($script:ExpectedRows.Key | Sort-Object)
        foreach ($r in $script:Results) {
            $r.GetType().FullName | Should -Be 'PbsRestore.Restore.VerifyResult'
            $r.Ok | Should -BeTrue -Because "$($r.Snapshot) $($r.Archive): $($r.BadChunks -join '; ')"
            $r.BadChunks.Count | Should -Be 0
        }
    }

    It 'checks every distinct chunk once and reports the logical size (<Key>)' -ForEach @(
        @{ Key = 'vm/100/2024-05-01T10:00:00Z|drive-scsi0.img' }, @{ Key = 'vm/101/2024-05-01T10:05:00Z|drive-scsi0.img' },
        @{ Key = 'ct/200/2024-05-01T10:10:00Z|data' }, @{ Key = 'vm/101/2024-05-01T10:05:00Z|qemu-server.conf' }) {
        $expected = $script:ExpectedRows | Where-Object Key -EQ $Key
        $actual = $script:Results | Where-Object { "$(Get-ResultPath $_)|$($_.Archive)" -eq $Key }
        $actual.Chunks | Should -Be $expected.Chunks
        $actual.Bytes | Should -Be $expected.Bytes
        $actual.BytesRead | Should -BeGreaterThan 0
    }

    It 'selects archives with a wildcard and takes snapshot text' {
        $r = @('vm/100' | Test-PbsSnapshot -Datastore (Get-GoldenDatastore) -Archive 'DRIVE-*' -FetchConcurrency 1 -ErrorAction Stop)
        @($r.Archive | Sort-Object) | Should -Be @('drive-scsi0.img', 'drive-virtio1.img')
        $r | ForEach-Object { $_.Ok | Should -BeTrue }
    }

    It 'refuses an encrypted snapshot without its key (KeyRequired) and returns nothing' {
        $err = $null
        $r = @(Test-PbsSnapshot -Datastore (Get-GoldenDatastore) -Snapshot vm/101 -ErrorAction SilentlyContinue -ErrorVariable err)
        $r.Count | Should -Be 0
        $err.Count | Should -Be 1
        Get-ErrorIdOf $err[0] | Should -Be 'KeyRequired'
    }

    It 'reports ArchiveNotFound for a pattern that matches nothing' {
        { Test-PbsSnapshot -Datastore (Get-GoldenDatastore) -Snapshot vm/100 -Archive 'nothing*' -ErrorAction Stop } |
            Should -Throw -ErrorId 'ArchiveNotFound,PbsRestore.PowerShell.Commands.TestPbsSnapshotCommand'
    }
}

Describe 'Test-PbsSnapshot on a damaged copy' {
    BeforeAll {
        $script:Store = Copy-GoldenDatastore -Parent (New-OutputFolder $TestDrive 'damaged')
        $vm100 = Get-GoldenSnapshot vm 100
        $vm101 = Get-GoldenSnapshot vm 101
        # A non-zero chunk used once by vm/100 drive-scsi0, at a non-zero offset: one payload byte flipped.
        $scsi0 = @((Get-GoldenArchive $vm100 'drive-scsi0.img.fidx').chunks)
        $script:Flipped = @($scsi0 | Where-Object {
                $d = $_.digest; -not $_.is_zero -and [long]$_.offset -gt 0 -and @($scsi0 | Where-Object digest -EQ $d).Count -eq 1 }) | Select-Object -First 1
        # An encrypted chunk of vm/101 drive-scsi0 (not a zero chunk): deleted.
        $script:Deleted = @((Get-GoldenArchive $vm101 'drive-scsi0.img.fidx').chunks | Where-Object { -not $_.is_zero }) | Select-Object -Last 1
        $script:Flipped | Should -Not -BeNullOrEmpty
        $script:Deleted | Should -Not -BeNullOrEmpty

        $path = Get-CopyPath $script:Store $script:Flipped.path
        $bytes = [IO.File]::ReadAllBytes($path)
        $bytes[-1] = $bytes[-1] -bxor 0x5a
        [IO.File]::WriteAllBytes($path, $bytes)
        [IO.File]::Delete((Get-CopyPath $script:Store $script:Deleted.path))

        $script:Damage = @{ $script:Flipped.digest = 'BlobCrcMismatch'; $script:Deleted.digest = 'ChunkMissing' }
        $script:Expected = @(Get-ExpectedBadChunks $script:Damage | Sort-Object)
        $script:StoreFingerprint = Get-TreeFingerprint $script:Store
    }

    It 'reports exactly the damaged chunks, in every archive that uses them (fetch <Fetch>)' -ForEach @(@{ Fetch = 1 }, @{ Fetch = 16 }) {
        $work = New-OutputFolder $TestDrive 'cwd'
        Push-Location -LiteralPath $work
        try {
            $results = @(Test-All $script:Store @{ FetchConcurrency = $Fetch })
        }
        finally {
            Pop-Location
        }
        $script:Expected.Count | Should -BeGreaterOrEqual 2
        @(Get-ActualBadChunks $results | Sort-Object) | Should -Be $script:Expected

        # Every archive still gets its row; only those using a damaged chunk are not Ok.
        @($results | ForEach-Object { "$(Get-ResultPath $_)|$($_.Archive)" } | Sort-Object) | Should -Be @($script:ExpectedRows.Key | Sort-Object)
        $badArchives = @($script:Expected | ForEach-Object { ($_ -split '\|')[0..1] -join '|' } | Select-Object -Unique | Sort-Object)
        @($results | Where-Object { -not $_.Ok } | ForEach-Object { "$(Get-ResultPath $_)|$($_.Archive)" } | Sort-Object) | Should -Be $badArchives
        foreach ($r in $results | Where-Object { -not $_.Ok }) {
            foreach ($b in $r.BadChunks) { $b.Message | Should -BeLike "*$($b.Digest)*" }
        }

        # Nothing written: not in the working folder, not in the datastore.
        @(Get-FolderEntries $work).Count | Should -Be 0
        Get-TreeFingerprint $script:Store | Should -Be $script:StoreFingerprint
    }

    It 'reports a damaged blob archive against the manifest' {
        $store = Copy-GoldenDatastore -Parent (New-OutputFolder $TestDrive 'blob')
        $conf = Get-GoldenArchive (Get-GoldenSnapshot vm 100) 'qemu-server.conf.blob'
        $path = Get-CopyPath $store $conf.path
        $bytes = [IO.File]::ReadAllBytes($path)
        $bytes[-1] = $bytes[-1] -bxor 0x01
        [IO.File]::WriteAllBytes($path, $bytes)
        $r = @(Test-PbsSnapshot -Datastore $store -Snapshot vm/100 -ErrorAction Stop)
        $bad = @($r | Where-Object { -not $_.Ok })
        $bad.Count | Should -Be 1
        $bad[0].Archive | Should -Be 'qemu-server.conf'
        $bad[0].BadChunks.Count | Should -Be 1
        $bad[0].BadChunks[0].ErrorId | Should -Be 'ManifestChecksumMismatch'
        $bad[0].BadChunks[0].Digest | Should -BeNullOrEmpty
    }
}

AfterAll {
    Get-TreeFingerprint (Get-GoldenRoot) | Should -Be $script:GoldenFingerprint -Because 'the golden fixture is read-only'
}
