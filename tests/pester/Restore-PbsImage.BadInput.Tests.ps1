# Restore-PbsImage (and Get-PbsSnapshot) on damaged or hostile datastores. Every case works on its own
# copy of the golden datastore in $TestDrive (the golden fixture is read-only and is checked unchanged
# at the end). Every failure must name what is wrong (file, chunk digest, offset) under a stable error
# id, and leave neither the destination nor a '<dest>.partial' file behind.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot '../../PbsRestore.psd1') -Force
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Join-Path $PSScriptRoot 'ServerHelpers.psm1') -Force   # Start-TestServer, for -SkipBadChunks over the wire
    $script:Cmd = 'PbsRestore.PowerShell.Commands.RestorePbsImageCommand'
    $script:GetCmd = 'PbsRestore.PowerShell.Commands.GetPbsSnapshotCommand'
    $script:GoldenFingerprint = Get-TreeFingerprint (Get-GoldenRoot)
    $script:Vm100 = Get-GoldenSnapshot vm 100
    $script:Vm100Scsi0 = Get-GoldenArchive $script:Vm100 'drive-scsi0.img.fidx'
    $script:Ct200 = Get-GoldenSnapshot ct 200
    $script:Ct200Data = Get-GoldenArchive $script:Ct200 'data.didx'
    $script:Spec100 = Get-SnapshotSpec $script:Vm100

    # A non-zero chunk of vm/100 drive-scsi0 with the given blob kind that the image references once,
    # at a non-zero offset (so the offset in a message is unambiguous).
    function script:Select-Chunk {
        param([string] $BlobKind, [int] $Skip = 0)
        $chunks = @($script:Vm100Scsi0.chunks)
        $picked = @($chunks | Where-Object {
                $d = $_.digest
                -not $_.is_zero -and $_.blob_kind -eq $BlobKind -and [long]$_.offset -gt 0 -and
                @($chunks | Where-Object digest -EQ $d).Count -eq 1
            })
        if ($picked.Count -le $Skip) { throw "MANIFEST.json: no $BlobKind chunk #$Skip in vm/100 drive-scsi0" }
        $picked[$Skip]
    }

    # A private datastore copy and an empty output folder for one test.
    function script:New-Case {
        $store = Copy-GoldenDatastore -Parent (New-OutputFolder $TestDrive 'case')
        $out = New-OutputFolder $TestDrive 'out'
        [pscustomobject]@{ Datastore = $store; Out = $out; Destination = (Join-Path $out 'restored.img') }
    }

    function script:Invoke-Restore {
        param($Case, [string] $Snapshot = $script:Spec100, [string] $Archive = 'drive-scsi0.img')
        Restore-PbsImage -Datastore $Case.Datastore -Snapshot $Snapshot -Archive $Archive -Destination $Case.Destination -ErrorAction Stop
    }

    # The expected image with the given chunk ranges zeroed: what -SkipBadChunks must hand back.
    function script:Get-ZeroedSha256 {
        param([object[]] $Chunks)
        $bytes = [IO.File]::ReadAllBytes((Get-GoldenPath $script:Vm100Scsi0.plaintext_path))
        foreach ($c in $Chunks) { [Array]::Clear($bytes, [int]$c.offset, [int]$c.length) }
        [Convert]::ToHexStringLower([Security.Cryptography.SHA256]::HashData($bytes))
    }
}

AfterAll {
    Remove-Module PbsRestore -ErrorAction SilentlyContinue
    Remove-Module TestHelpers -ErrorAction SilentlyContinue
}

Describe 'Restore-PbsImage on bad input' {
    Context 'indexes' {
        It '(a) a .fidx cut by 10 bytes fails with IndexSizeMismatch naming the .fidx path and the offset' {
            $case = New-Case
            $fidx = Get-CopyPath $case.Datastore $script:Vm100Scsi0.path
            $bytes = [System.IO.File]::ReadAllBytes($fidx)
            $bytes.Length | Should -Be ([long]$script:Vm100Scsi0.file_size)
            [System.IO.File]::WriteAllBytes($fidx, $bytes[0..($bytes.Length - 11)])
            (Get-Item -LiteralPath $fidx).Length | Should -Be ($bytes.Length - 10)

            $err = { Invoke-Restore $case } | Should -Throw -ErrorId "IndexSizeMismatch,$script:Cmd" -PassThru
            $err.Exception.Message | Should -BeLike "*$fidx*"
            $err.Exception.Message | Should -BeLike "*offset $($bytes.Length - 10)*"
            Assert-NothingWritten $case.Destination
        }

        It '(a2) a .didx cut by 10 bytes fails with IndexTruncated naming the .didx path and an offset' {
            $case = New-Case
            $didx = Get-CopyPath $case.Datastore $script:Ct200Data.path
            $bytes = [System.IO.File]::ReadAllBytes($didx)
            [System.IO.File]::WriteAllBytes($didx, $bytes[0..($bytes.Length - 11)])

            $err = { Invoke-Restore $case -Snapshot (Get-SnapshotSpec $script:Ct200) -Archive 'data.didx' } |
                Should -Throw -ErrorId "IndexTruncated,$script:Cmd" -PassThru
            $err.Exception.Message | Should -BeLike "*$didx*"
            $err.Exception.Message | Should -BeLike '*offset *'
            Assert-NothingWritten $case.Destination
        }

        It '(f) a .fidx with one digest replaced fails with ManifestChecksumMismatch naming the .fidx' {
            $case = New-Case
            $fidx = Get-CopyPath $case.Datastore $script:Vm100Scsi0.path
            $bytes = [System.IO.File]::ReadAllBytes($fidx)
            # Entry 0 (at 4096) gets the digest of the zero chunk: same size, a valid chunk, other content.
            $zero = [System.Convert]::FromHexString((Get-GoldenManifest).zero_chunks.sha256_zero_64KiB)
            [array]::Copy($zero, 0, $bytes, 4096, 32)
            [System.IO.File]::WriteAllBytes($fidx, $bytes)

            $err = { Invoke-Restore $case } | Should -Throw -ErrorId "ManifestChecksumMismatch,$script:Cmd" -PassThru
            $err.Exception.Message | Should -BeLike "*$fidx*"
            $err.Exception.Message | Should -BeLike "*$($script:Vm100Scsi0.index_csum)*"
            Assert-NothingWritten $case.Destination
        }

        It '(g) a config blob with one flipped byte fails with ManifestChecksumMismatch naming the blob' {
            $case = New-Case
            $conf = Get-GoldenArchive $script:Vm100 'qemu-server.conf.blob'
            $blob = Get-CopyPath $case.Datastore $conf.path
            $bytes = [System.IO.File]::ReadAllBytes($blob)
            $bytes[20] = $bytes[20] -bxor 0xFF
            [System.IO.File]::WriteAllBytes($blob, $bytes)

            $err = { Invoke-Restore $case -Archive 'qemu-server.conf' } | Should -Throw -ErrorId "ManifestChecksumMismatch,$script:Cmd" -PassThru
            $err.Exception.Message | Should -BeLike "*$blob*"
            Assert-NothingWritten $case.Destination
        }
    }

    Context 'chunks' {
        It '(b) a chunk with one flipped payload byte fails with BlobCrcMismatch naming digest and offset' {
            $case = New-Case
            $chunk = Select-Chunk 'compressed'
            $file = Get-CopyPath $case.Datastore $chunk.path
            $bytes = [System.IO.File]::ReadAllBytes($file)
            $bytes.Length | Should -Be ([long]$chunk.encoded_size)
            $bytes[20] = $bytes[20] -bxor 0x01
            [System.IO.File]::WriteAllBytes($file, $bytes)

            $err = { Invoke-Restore $case } | Should -Throw -ErrorId "BlobCrcMismatch,$script:Cmd" -PassThru
            $err.Exception.Message | Should -BeLike "*$($chunk.digest)*"
            $err.Exception.Message | Should -BeLike "*offset $($chunk.offset)*"
            Assert-NothingWritten $case.Destination
        }

        It '(b2) an uncompressed chunk with one flipped payload byte fails with BlobCrcMismatch too' {
            $case = New-Case
            $chunk = Select-Chunk 'uncompressed'
            $file = Get-CopyPath $case.Datastore $chunk.path
            $bytes = [System.IO.File]::ReadAllBytes($file)
            $bytes[20] = $bytes[20] -bxor 0x01
            [System.IO.File]::WriteAllBytes($file, $bytes)

            $err = { Invoke-Restore $case -Archive 'drive-scsi0.img.fidx' } | Should -Throw -ErrorId "BlobCrcMismatch,$script:Cmd" -PassThru
            $err.Exception.Message | Should -BeLike "*$($chunk.digest)*"
            $err.Exception.Message | Should -BeLike "*offset $($chunk.offset)*"
            Assert-NothingWritten $case.Destination
        }

        It '(c) an uncompressed chunk altered with a recomputed CRC fails with ChunkDigestMismatch naming digest and offset' {
            $case = New-Case
            $chunk = Select-Chunk 'uncompressed'
            $file = Get-CopyPath $case.Datastore $chunk.path
            $bytes = [System.IO.File]::ReadAllBytes($file)
            $bytes.Length | Should -Be ([long]$chunk.encoded_size)
            # The CRC in MANIFEST.json is the stored one (big-endian hex of the LE UInt32 at bytes 8..11).
            ('{0:x8}' -f [System.BitConverter]::ToUInt32($bytes, 8)) | Should -BeExactly $chunk.crc32
            $bytes[12 + 1000] = $bytes[12 + 1000] -bxor 0x5A
            Set-BlobCrc $bytes
            ('{0:x8}' -f [System.BitConverter]::ToUInt32($bytes, 8)) | Should -Not -Be $chunk.crc32
            [System.IO.File]::WriteAllBytes($file, $bytes)

            $err = { Invoke-Restore $case } | Should -Throw -ErrorId "ChunkDigestMismatch,$script:Cmd" -PassThru
            $err.Exception.Message | Should -BeLike "*$($chunk.digest)*"
            $err.Exception.Message | Should -BeLike "*offset $($chunk.offset)*"
            Assert-NothingWritten $case.Destination
        }

        It '(d) a missing chunk file fails with ChunkMissing naming the digest' {
            $case = New-Case
            $chunk = Select-Chunk 'compressed' -Skip 1
            $file = Get-CopyPath $case.Datastore $chunk.path
            Remove-Item -LiteralPath $file
            Test-Path -LiteralPath $file | Should -BeFalse

            $err = { Invoke-Restore $case } | Should -Throw -ErrorId "ChunkMissing,$script:Cmd" -PassThru
            $err.Exception.Message | Should -BeLike "*$($chunk.digest)*"
            $err.Exception.Message | Should -BeLike "*offset $($chunk.offset)*"
            Assert-NothingWritten $case.Destination
        }

        It '(d2) a missing chunk of the dynamic data.didx fails with ChunkMissing naming the digest' {
            $case = New-Case
            $chunk = @($script:Ct200Data.chunks)[2]
            Remove-Item -LiteralPath (Get-CopyPath $case.Datastore $chunk.path)

            $err = { Invoke-Restore $case -Snapshot (Get-SnapshotSpec $script:Ct200) -Archive 'data.didx' } |
                Should -Throw -ErrorId "ChunkMissing,$script:Cmd" -PassThru
            $err.Exception.Message | Should -BeLike "*$($chunk.digest)*"
            $err.Exception.Message | Should -BeLike "*offset $($chunk.offset)*"
            Assert-NothingWritten $case.Destination
        }

        It 'with -Force, a failed restore leaves the existing destination unchanged and no .partial' {
            $case = New-Case
            $chunk = Select-Chunk 'compressed'
            Remove-Item -LiteralPath (Get-CopyPath $case.Datastore $chunk.path)
            [System.IO.File]::WriteAllText($case.Destination, 'old image')

            { Restore-PbsImage -Datastore $case.Datastore -Snapshot $script:Spec100 -Archive 'drive-scsi0.img' -Destination $case.Destination -Force -ErrorAction Stop } |
                Should -Throw -ErrorId "ChunkMissing,$script:Cmd"
            [System.IO.File]::ReadAllText($case.Destination) | Should -BeExactly 'old image'
            @(Get-FolderEntries $case.Out) | Should -Be @('restored.img')
        }
    }

    Context 'manifests with path names in their file list' {
        BeforeAll {
            # Builds index.json.blob for vm/100 in a copy: the golden decoded manifest with the
            # qemu-server.conf.blob entry renamed (and its size/csum set to those of $PlantedBlob).
            function script:Write-HostileManifest {
                param([string] $Datastore, [string] $FileName, [byte[]] $PlantedBlob)
                $conf = Get-GoldenArchive $script:Vm100 'qemu-server.conf.blob'
                $json = [System.IO.File]::ReadAllText((Get-GoldenPath $script:Vm100.manifest.decoded_path), [System.Text.Encoding]::UTF8)
                $edited = $json.Replace('"filename": "qemu-server.conf.blob"', "`"filename`": `"$FileName`"")
                $json | Should -BeLike '*"filename": "qemu-server.conf.blob"*' -Because 'the golden manifest must have the qemu-server.conf.blob entry'
                if ($FileName -ne 'qemu-server.conf.blob') { $edited | Should -BeLike "*`"filename`": `"$FileName`"*" }
                if ($PlantedBlob) {
                    $sha = [System.Convert]::ToHexString([System.Security.Cryptography.SHA256]::HashData($PlantedBlob)).ToLowerInvariant()
                    $edited = $edited.Replace("`"csum`": `"$($conf.file_sha256)`"", "`"csum`": `"$sha`"").
                        Replace("`"size`": $($conf.encoded_size),", "`"size`": $($PlantedBlob.Length),")
                    $edited | Should -BeLike "*$sha*"
                }
                $payload = [System.Text.Encoding]::UTF8.GetBytes($edited)
                $blob = New-UncompressedDataBlob $payload
                $blob.Length | Should -Be ($payload.Length + 12)
                $manifestPath = Get-CopyPath $Datastore $script:Vm100.manifest.path
                [System.IO.File]::WriteAllBytes($manifestPath, $blob)
                $manifestPath
            }
        }

        It '(e) a manifest naming ''../x.blob'' makes Get-PbsSnapshot fail with ManifestBadFileName' {
            $case = New-Case
            Write-HostileManifest $case.Datastore '../x.blob' | Out-Null
            $err = { Get-PbsSnapshot -Datastore $case.Datastore -ErrorAction Stop } |
                Should -Throw -ErrorId "ManifestBadFileName,$script:GetCmd" -PassThru
            $err.Exception.Message | Should -BeLike '*../x.blob*'
        }

        It '(e) a manifest naming ''../x.blob'' makes Restore-PbsImage fail with ManifestBadFileName, reading and writing nothing outside' {
            $case = New-Case
            # Plant a valid blob where '../x.blob' would point (the group folder), matching the manifest entry,
            # so a restore that followed the path would succeed instead of failing.
            $secret = New-UncompressedDataBlob ([System.Text.Encoding]::UTF8.GetBytes("SECRET outside the snapshot`n"))
            $groupDir = [System.IO.Path]::GetDirectoryName((Get-CopyPath $case.Datastore $script:Vm100.datastore_path))
            [System.IO.File]::WriteAllBytes((Join-Path $groupDir 'x.blob'), $secret)
            Write-HostileManifest $case.Datastore '../x.blob' $secret | Out-Null
            $storeParent = [System.IO.Path]::GetDirectoryName($case.Datastore)
            $before = Get-TreeFingerprint $storeParent

            foreach ($archive in '../x', '../x.blob', 'qemu-server.conf', 'drive-scsi0.img') {
                $err = { Invoke-Restore $case -Archive $archive } | Should -Throw -ErrorId "ManifestBadFileName,$script:Cmd" -PassThru
                $err.Exception.Message | Should -BeLike '*../x.blob*'
                Assert-NothingWritten $case.Destination
            }
            Get-TreeFingerprint $storeParent | Should -Be $before
            Test-Path -LiteralPath (Join-Path $storeParent 'x.blob') | Should -BeFalse
            Test-Path -LiteralPath (Join-Path $case.Out 'x.blob') | Should -BeFalse
            Test-Path -LiteralPath (Join-Path ([System.IO.Path]::GetDirectoryName($case.Out)) 'x.blob') | Should -BeFalse
        }

        It '(e) a manifest naming ''/etc/passwd.blob'' makes both cmdlets fail with ManifestBadFileName' {
            $case = New-Case
            Write-HostileManifest $case.Datastore '/etc/passwd.blob' | Out-Null
            $storeParent = [System.IO.Path]::GetDirectoryName($case.Datastore)
            $before = Get-TreeFingerprint $storeParent

            $err = { Get-PbsSnapshot -Datastore $case.Datastore -ErrorAction Stop } |
                Should -Throw -ErrorId "ManifestBadFileName,$script:GetCmd" -PassThru
            $err.Exception.Message | Should -BeLike '*/etc/passwd.blob*'
            foreach ($archive in '/etc/passwd', '/etc/passwd.blob', 'drive-scsi0.img') {
                $err = { Invoke-Restore $case -Archive $archive } | Should -Throw -ErrorId "ManifestBadFileName,$script:Cmd" -PassThru
                $err.Exception.Message | Should -BeLike '*/etc/passwd.blob*'
                Assert-NothingWritten $case.Destination
            }
            Get-TreeFingerprint $storeParent | Should -Be $before
        }

        It 'the hand-built manifest blob is valid when its file names are not changed' {
            # Control for (e): the same construction with a legal name restores fine, so the failures
            # above come from the file name and not from a badly built blob.
            $case = New-Case
            Write-HostileManifest $case.Datastore 'qemu-server.conf.blob' | Out-Null
            @(Get-PbsSnapshot -Datastore $case.Datastore -BackupId 100 -ErrorAction Stop).Count | Should -Be 1
            Invoke-Restore $case -Archive 'qemu-server.conf' | Out-Null
            Assert-Restored $case.Destination (Get-GoldenArchive $script:Vm100 'qemu-server.conf.blob')
        }
    }

    It 'left the golden fixture unchanged' {
        Get-TreeFingerprint (Get-GoldenRoot) | Should -Be $script:GoldenFingerprint
    }
}

# Issue 11, item 17: -SkipBadChunks (DR mode) restores everything readable, zeros where a chunk is gone for good,
# and says where; the default stays all or nothing (the cases above).
Describe 'Restore-PbsImage -SkipBadChunks' {
    It 'a damaged and a missing chunk become zeros, listed in BadRanges (offset, length, digest) with one warning' {
        $case = New-Case
        $damaged = Select-Chunk 'compressed'
        $missing = Select-Chunk 'compressed' -Skip 1
        $file = Get-CopyPath $case.Datastore $damaged.path
        $bytes = [IO.File]::ReadAllBytes($file)
        $bytes[20] = $bytes[20] -bxor 0x01
        [IO.File]::WriteAllBytes($file, $bytes)
        Remove-Item -LiteralPath (Get-CopyPath $case.Datastore $missing.path)

        $r = Restore-PbsImage -Datastore $case.Datastore -Snapshot $script:Spec100 -Archive drive-scsi0.img -Destination $case.Destination `
            -SkipBadChunks -WarningVariable w -WarningAction SilentlyContinue -ErrorAction Stop
        $expected = @($damaged, $missing) | Sort-Object { [long]$_.offset }
        $r.BadRanges | Should -HaveCount 2
        for ($i = 0; $i -lt 2; $i++) {
            $r.BadRanges[$i].Offset | Should -Be ([long]$expected[$i].offset)
            $r.BadRanges[$i].Length | Should -Be ([int]$expected[$i].length)
            $r.BadRanges[$i].Digest | Should -Be $expected[$i].digest
        }
        ($r.BadRanges | Where-Object Digest -EQ $damaged.digest).Reason | Should -Be 'BlobCrcMismatch'
        ($r.BadRanges | Where-Object Digest -EQ $missing.digest).Reason | Should -Be 'ChunkMissing'
        @($w) | Should -HaveCount 1
        "$($w[0])" | Should -BeLike "drive-scsi0.img: 2 range(s)*restored as zeros*offset $($expected[0].offset)*BadRanges*"
        Get-Sha256 $case.Destination | Should -Be (Get-ZeroedSha256 $expected)
    }

    It 'without damage the result has no BadRanges and no warning' {
        $case = New-Case
        $r = Restore-PbsImage -Datastore $case.Datastore -Snapshot $script:Spec100 -Archive drive-scsi0.img -Destination $case.Destination `
            -SkipBadChunks -WarningVariable w -ErrorAction Stop
        $r.BadRanges | Should -HaveCount 0
        @($w) | Should -HaveCount 0
        Get-Sha256 $case.Destination | Should -Be $script:Vm100Scsi0.plaintext_sha256
    }

    It 'over the wire: a chunk the server corrupts on every send (--corrupt-chunk) is reread, then given up as zeros' {
        $chunk = Select-Chunk 'compressed' -Skip 2
        $server = Start-TestServer -Datastore @{ golden = (Get-GoldenDatastore) } -Token 'dr@pbs!skip:skip-S3cret-1' `
            -ExtraArgument @('--corrupt-chunk', $chunk.digest) -LogFolder (Join-Path $TestDrive 'corrupt-server')
        try {
            $out = New-OutputFolder $TestDrive 'wire'
            $dest = Join-Path $out 'restored.img'
            $r = Restore-PbsImage -Repository "dr@pbs!skip@127.0.0.1:$($server.Port):golden" -Fingerprint $server.Fingerprint `
                -Credential (New-PbsCredential 'dr@pbs!skip' 'skip-S3cret-1') -Snapshot $script:Spec100 -Archive drive-scsi0.img `
                -Destination $dest -SkipBadChunks -WarningAction SilentlyContinue -ErrorAction Stop
            $r.BadRanges | Should -HaveCount 1
            $r.BadRanges[0].Digest | Should -Be $chunk.digest
            $r.BadRanges[0].Offset | Should -Be ([long]$chunk.offset)
            $r.Rereads | Should -BeGreaterThan 0
            Get-Sha256 $dest | Should -Be (Get-ZeroedSha256 @($chunk))
            # Without -SkipBadChunks the same restore fails, naming the chunk, and leaves nothing.
            $dest2 = Join-Path (New-OutputFolder $TestDrive 'strict') 'strict.img'
            { Restore-PbsImage -Repository "dr@pbs!skip@127.0.0.1:$($server.Port):golden" -Fingerprint $server.Fingerprint `
                -Credential (New-PbsCredential 'dr@pbs!skip' 'skip-S3cret-1') -Snapshot $script:Spec100 -Archive drive-scsi0.img `
                -Destination $dest2 -ErrorAction Stop } | Should -Throw -ExpectedMessage "*$($chunk.digest)*"
            Assert-NothingWritten $dest2
        } finally {
            Stop-TestServer $server
        }
    }
}
