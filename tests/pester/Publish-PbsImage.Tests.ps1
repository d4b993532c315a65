# Publish-PbsImage, Get-PbsPublication, Unpublish-PbsImage (issue 15): a snapshot's disks as the LUNs of our iSCSI
# target, read by an independent initiator — qemu-img / qemu-io through libiscsi (Debian's qemu-utils +
# qemu-block-extra). Every golden disk archive (plain, encrypted, namespaced) comes back bit-exact from a folder
# datastore and from our server over loopback; writes land in the overlay, never in the backup; read-only disks
# refuse writes; the overlay goes at unpublish unless kept; listening beyond loopback needs CHAP or an initiator
# list; CHAP secrets never show; four initiators at once read bit-exact. A device is the archive rounded up to
# whole 512-byte sectors: the bytes past the archive's size must be zeros.
BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $script:DiskCases = @(foreach ($s in (Get-GoldenManifest).snapshots) {
            foreach ($a in $s.archives | Where-Object type -EQ 'fixed-index') {
                foreach ($via in 'folder', 'server') {
                    @{ Via = $via; Type = $s.backup_type; Id = $s.backup_id; Stored = $a.name; Namespace = $s.namespace; Encrypted = [bool]$s.encrypted }
                }
            }
        })
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot '../../PbsRestore.psd1') -Force
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Join-Path $PSScriptRoot 'ServerHelpers.psm1') -Force
    $script:Datastore = Get-GoldenDatastore
    $script:Key = Get-GoldenPath (Get-GoldenSnapshot vm 101).key_file
    $script:KeyPassword = New-TestPassword (Get-GoldenSnapshot vm 101).key_password
    $script:SavedEnv = Save-PbsEnvironment
    Clear-PbsEnvironment

    $script:TokenId = 'tester@pbs!publish'
    $script:TokenSecret = 'pub-token-5c1e7d09'
    $script:Server = Start-TestServer -Datastore ([ordered]@{ golden = $script:Datastore }) -Token "$($script:TokenId):$($script:TokenSecret)" `
        -LogFolder (Join-Path $TestDrive 'server')
    $script:Repo = "$($script:TokenId)@127.0.0.1:$($script:Server.Port):golden"
    $script:Cred = New-PbsCredential $script:TokenId $script:TokenSecret
    $script:ChapSecretPlain = 'chap-0123456789'
    $script:Chap = New-PbsCredential 'restore' $script:ChapSecretPlain

    # The initiator: qemu-img / qemu-io with libiscsi (block-iscsi.so from qemu-block-extra).
    $script:NoQemu = if (-not (Get-Command qemu-img -ErrorAction SilentlyContinue) -or -not (Get-Command qemu-io -ErrorAction SilentlyContinue)) {
        'qemu-img/qemu-io not installed (Debian: qemu-utils)'
    }
    elseif (-not (Get-ChildItem -Path '/usr/lib/*/qemu/block-iscsi.so', '/usr/lib/qemu/block-iscsi.so', '/usr/lib64/qemu/block-iscsi.so' -ErrorAction SilentlyContinue)) {
        "qemu's iSCSI driver is not installed (Debian: qemu-block-extra)"
    }
    $script:Skip = $script:NoQemu

    function script:Publish([hashtable] $Case, [hashtable] $More = @{}) {
        $p = @{ Snapshot = "$($Case.Type)/$($Case.Id)"; Archive = (Get-ArchiveDisplayName $Case.Stored); ErrorAction = 'Stop' }
        if ($Case.Via -eq 'server') { $p.Repository = $script:Repo; $p.Fingerprint = $script:Server.Fingerprint; $p.Credential = $script:Cred }
        else { $p.Datastore = $script:Datastore }
        if ($Case.Namespace) { $p.Namespace = $Case.Namespace }
        if ($Case.Encrypted) { $p.Keyfile = $script:Key; $p.KeyPassword = $script:KeyPassword }
        Publish-PbsImage @p @More
    }
    function script:Get-PrefixSha([byte[]] $Bytes, [long] $Length) {
        $sha = [Security.Cryptography.SHA256]::Create()
        try { [Convert]::ToHexString($sha.ComputeHash($Bytes, 0, [int]$Length)).ToLowerInvariant() } finally { $sha.Dispose() }
    }
    function script:Get-Url($Publication, [int] $Lun = 0) { "iscsi://$($Publication.Portal)/$($Publication.TargetName)/$Lun" }
    function script:Invoke-Qemu([string] $Tool, [string[]] $Arguments) {
        $out = & $Tool @Arguments 2>&1
        [pscustomobject]@{ Code = $LASTEXITCODE; Text = (@($out | ForEach-Object { "$_" }) -join "`n") }
    }
    # Reads LUN $Lun whole with qemu-img convert; checks the archive's bytes and the zero tail; returns the file.
    function script:Assert-ReadBack($Publication, [int] $Lun, [string] $Sha256, [long] $Size, [string] $Out) {
        $r = Invoke-Qemu qemu-img @('convert', '-f', 'raw', '-O', 'raw', (Get-Url $Publication $Lun), $Out)
        $r.Code | Should -Be 0 -Because $r.Text
        $device = [math]::Ceiling($Size / 512) * 512
        (Get-Item -LiteralPath $Out).Length | Should -Be $device
        $bytes = [IO.File]::ReadAllBytes($Out)
        Get-PrefixSha $bytes $Size | Should -Be $Sha256
        for ($i = $Size; $i -lt $device; $i++) { $bytes[$i] | Should -Be 0 }
        $Out
    }
    # qemu-io "read -v" dumps hex; the bytes it shows.
    function script:Read-QemuIo($Publication, [long] $Offset, [int] $Length) {
        $r = Invoke-Qemu qemu-io @('-r', '-f', 'raw', '-c', "read -v $Offset $Length", (Get-Url $Publication 0))
        $r.Code | Should -Be 0 -Because $r.Text
        $hex = foreach ($line in $r.Text -split "`n") {
            if ($line -match '^[0-9a-f]{8}:\s+((?:[0-9a-f]{2}\s){1,16})') { $Matches[1] -split '\s+' | Where-Object { $_ } }
        }
        [byte[]]@($hex | ForEach-Object { [Convert]::ToByte($_, 16) })
    }
}

AfterAll {
    Get-PbsPublication | Unpublish-PbsImage -Confirm:$false -ErrorAction SilentlyContinue
    Stop-TestServer $script:Server
    Restore-PbsEnvironment $script:SavedEnv
}

Describe 'Publish-PbsImage: what is published' {
    It 'publishes every disk of a snapshot as the LUNs of one target on loopback, and Unpublish-PbsImage ends it' {
        $p = Publish-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -ErrorAction Stop
        try {
            $vm100 = Get-GoldenSnapshot vm 100
            @($p.Luns.Archive) | Should -Be @('drive-scsi0.img', 'drive-virtio1.img')
            @($p.Luns.Lun) | Should -Be @(0, 1)
            $p.Luns[0].Size | Should -Be ([math]::Ceiling((Get-GoldenArchive $vm100 'drive-scsi0.img.fidx').size / 512) * 512)
            $p.Portal | Should -Match '^127\.0\.0\.1:\d+$'
            $p.TargetName | Should -Be 'iqn.2024-05.io.github.pbsrestore:vm-100-20240501t100000z'
            $p.Luns | ForEach-Object { $_.OverlayPath | Should -Exist }
            @(Get-PbsPublication | Where-Object Id -EQ $p.Id).Count | Should -Be 1
            ($p | Out-String -Width 300) | Should -Match ([regex]::Escape($p.TargetName))
        }
        finally {
            $p | Unpublish-PbsImage -Confirm:$false
        }
        @(Get-PbsPublication | Where-Object Id -EQ $p.Id).Count | Should -Be 0
        $p.Luns | ForEach-Object { $_.OverlayPath | Should -Not -Exist }
        { Unpublish-PbsImage -Id $p.Id -ErrorAction Stop } | Should -Throw -ErrorId 'PublicationNotFound*'
    }

    It 'refuses to listen beyond loopback without CHAP or allowed initiators, before anything is opened' {
        $err = $null
        Publish-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -Listen 0.0.0.0 -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        Get-ErrorIdOf $err[0] | Should -Be 'PublishNotSecured'
        "$($err[0])" | Should -Match '-ChapCredential'
        "$($err[0])" | Should -Match '-AllowedInitiator'
        @(Get-PbsPublication | Where-Object Portal -Like '0.0.0.0*').Count | Should -Be 0
    }

    It 'refuses a CHAP secret Windows would not take' {
        $err = $null
        Publish-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -ChapCredential (New-PbsCredential 'restore' 'short') -ErrorVariable err -ErrorAction SilentlyContinue
        Get-ErrorIdOf $err[0] | Should -Be 'ChapSecretLength'
        "$($err[0])" | Should -Not -Match 'short'
    }

    It 'never shows the CHAP secret (object, views, verbose)' {
        $p = Publish-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -Listen 127.0.0.1 -ChapCredential $script:Chap -ReadOnly -Verbose 4>&1 -ErrorAction Stop
        $pub = @($p | Where-Object { $_ -isnot [System.Management.Automation.VerboseRecord] })[0]
        try {
            $text = ($p | Out-String) + ($pub | Format-List * | Out-String) + (Get-PbsPublication | Format-List * | Out-String) + ($pub.Options | Format-List * | Out-String)
            $text | Should -Not -Match ([regex]::Escape($script:ChapSecretPlain))
            $pub.ChapUser | Should -Be 'restore'
        }
        finally { $pub | Unpublish-PbsImage -Confirm:$false }
    }

    It 'has default views: a row per publication, a row per disk' {
        $p = Publish-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -ReadOnly -ErrorAction Stop
        try {
            $table = ($p | Out-String -Width 400) -split "`r?`n" | Where-Object { $_.Trim() }
            $table[0] | Should -Match '^Id\s+Snapshot\s+TargetName\s+Portal\s+Disks\s+ReadOnly\s+Read\s*$'
            $table[2] | Should -Match '0:drive-scsi0\.img, 1:drive-virtio1\.img\s+True\s+0 B'
            $luns = ($p.Luns | Out-String -Width 400) -split "`r?`n" | Where-Object { $_.Trim() }
            $luns[0] | Should -Match '^Lun\s+Archive\s+Size\s+ReadOnly\s+Read\s+Written\s+OverlayPath\s*$'
            $luns[2] | Should -Match '^\s*0\s+drive-scsi0\.img\s+3[.,]0 MiB\s+True'
            $p.Luns[0].Size | Should -BeOfType [long]
        }
        finally { $p | Unpublish-PbsImage -Confirm:$false }
    }

    It '-WhatIf publishes nothing' {
        $before = @(Get-PbsPublication).Count
        Publish-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -WhatIf | Should -BeNullOrEmpty
        @(Get-PbsPublication).Count | Should -Be $before
    }
}

Describe 'qemu-img reads <Via>: <Type>/<Id> <Stored> back bit-exact' -ForEach $script:DiskCases {
    It 'through iSCSI (libiscsi)' {
        if ($script:Skip) { Set-ItResult -Skipped -Because $script:Skip; return }
        $p = Publish $_ @{ ReadOnly = $true }
        try {
            $a = Get-GoldenArchive (Get-GoldenSnapshot $Type $Id) $Stored
            Assert-ReadBack $p 0 $a.plaintext_sha256 $a.size (Join-Path $TestDrive "$Via-$Type-$Id-$Stored.raw") | Out-Null
            # Every data chunk came through the target; the zero chunks, which GET LBA STATUS reports deallocated,
            # qemu-img skips (as a restore does).
            $data = ($a.chunks | Where-Object { -not $_.is_zero } | Measure-Object -Property length -Sum).Sum
            $p.Luns[0].BytesRead | Should -BeGreaterOrEqual $data
            if (@($a.chunks | Where-Object is_zero).Count -gt 0) { $p.Luns[0].BytesRead | Should -BeLessThan $a.size }
        }
        finally { $p | Unpublish-PbsImage -Confirm:$false }
    }
}

Describe 'Initiators reading and writing' {
    BeforeAll {
        $script:Vm100 = Get-GoldenSnapshot vm 100
        $script:Scsi0 = Get-GoldenArchive $script:Vm100 'drive-scsi0.img.fidx'
        $script:Plain = [IO.File]::ReadAllBytes((Get-GoldenPath $script:Scsi0.plaintext_path))
    }

    It 'qemu-io random reads match the backup' {
        if ($script:Skip) { Set-ItResult -Skipped -Because $script:Skip; return }
        $p = Publish-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -Archive drive-scsi0.img -ReadOnly -CacheSize 1MB -ErrorAction Stop
        try {
            $rng = [Random]::new(15)
            foreach ($i in 1..12) {
                $offset = [long]$rng.Next(0, [int]($script:Scsi0.size / 512) - 8) * 512
                $length = 512 * $rng.Next(1, 8)
                $got = Read-QemuIo $p $offset $length
                $got.Length | Should -Be $length
                [Convert]::ToHexString($got) | Should -Be ([Convert]::ToHexString($script:Plain, [int]$offset, $length)) -Because "bytes at $offset+$length"
            }
        }
        finally { $p | Unpublish-PbsImage -Confirm:$false }
    }

    It '-ReadOnly reports a write-protected disk: qemu cannot write, reads work' {
        if ($script:Skip) { Set-ItResult -Skipped -Because $script:Skip; return }
        $p = Publish-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -Archive drive-scsi0.img -ReadOnly -ErrorAction Stop
        try {
            $p.Luns[0].OverlayPath | Should -BeNullOrEmpty
            $w = Invoke-Qemu qemu-io @('-f', 'raw', '-c', 'write -P 0x5a 0 4096', (Get-Url $p 0))
            ($w.Code -ne 0 -or $w.Text -match 'error|denied|protect|not permitted|read-only') | Should -BeTrue -Because "the write must fail: $($w.Text)"
            $w.Text | Should -Not -Match 'wrote 4096'
            Assert-ReadBack $p 0 $script:Scsi0.plaintext_sha256 $script:Scsi0.size (Join-Path $TestDrive 'ro.raw') | Out-Null
            $p.Luns[0].BytesWritten | Should -Be 0
        }
        finally { $p | Unpublish-PbsImage -Confirm:$false }
    }

    It 'writes go to the overlay and read back; the backup is unchanged; Unpublish removes the overlay, -KeepOverlay keeps it' {
        if ($script:Skip) { Set-ItResult -Skipped -Because $script:Skip; return }
        $chunks = Join-Path $script:Datastore '.chunks'
        $before = Get-TreeFingerprint $chunks
        $folder = Join-Path $TestDrive 'overlays'
        $p = Publish-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -Archive drive-scsi0.img -OverlayPath $folder -ErrorAction Stop
        $overlay = $p.Luns[0].OverlayPath
        try {
            $overlay | Should -Exist
            (Split-Path $overlay) | Should -Be (Resolve-Path $folder).Path
            $w = Invoke-Qemu qemu-io @('-f', 'raw', '-c', 'write -P 0x5a 1024 8192', '-c', 'read -P 0x5a 1024 8192', '-c', 'write -z 65536 65536', '-c', 'flush', (Get-Url $p 0))
            $w.Code | Should -Be 0 -Because $w.Text
            $w.Text | Should -Not -Match 'Pattern verification failed'
            $expected = [byte[]]$script:Plain.Clone()
            [Array]::Resize([ref]$expected, [int]$p.Luns[0].Size)
            [Array]::Fill($expected, [byte]0x5a, 1024, 8192)
            [Array]::Clear($expected, 65536, 65536)
            $out = Join-Path $TestDrive 'written.raw'
            $r = Invoke-Qemu qemu-img @('convert', '-f', 'raw', '-O', 'raw', (Get-Url $p 0), $out)
            $r.Code | Should -Be 0 -Because $r.Text
            Get-Sha256 $out | Should -Be ([Convert]::ToHexString([Security.Cryptography.SHA256]::HashData($expected)).ToLowerInvariant())
            $p.Luns[0].BytesWritten | Should -BeGreaterOrEqual 8192
        }
        finally { $p | Unpublish-PbsImage -Confirm:$false }
        $overlay | Should -Not -Exist
        Get-TreeFingerprint $chunks | Should -Be $before -Because 'the backup is never written'

        # Published again: the backup as it was. Kept this time: the overlay stays, and comes back next time.
        $p = Publish-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -Archive drive-scsi0.img -OverlayPath $folder -ErrorAction Stop
        try {
            Assert-ReadBack $p 0 $script:Scsi0.plaintext_sha256 $script:Scsi0.size (Join-Path $TestDrive 'again.raw') | Out-Null
            (Invoke-Qemu qemu-io @('-f', 'raw', '-c', 'write -P 0x33 0 4096', (Get-Url $p 0))).Code | Should -Be 0
        }
        finally { $p | Unpublish-PbsImage -KeepOverlay -Confirm:$false }
        $overlay | Should -Exist
        $p = Publish-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -Archive drive-scsi0.img -OverlayPath $folder -ErrorAction Stop
        try {
            $got = Read-QemuIo $p 0 4096
            @($got | Select-Object -Unique) | Should -Be @(0x33)
        }
        finally { $p | Unpublish-PbsImage -Confirm:$false }
        $overlay | Should -Not -Exist
    }

    It 'CHAP: an initiator without the secret is refused, one with it reads' {
        if ($script:Skip) { Set-ItResult -Skipped -Because $script:Skip; return }
        $p = Publish-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -Archive drive-scsi0.img -ReadOnly -ChapCredential $script:Chap -ErrorAction Stop
        try {
            $none = Invoke-Qemu qemu-img @('info', '-f', 'raw', (Get-Url $p 0))
            $none.Code | Should -Not -Be 0
            $wrong = Invoke-Qemu qemu-img @('info', '-f', 'raw', "iscsi://restore%wrong-secret-000@$($p.Portal)/$($p.TargetName)/0")
            $wrong.Code | Should -Not -Be 0
            $ok = Invoke-Qemu qemu-img @('convert', '-f', 'raw', '-O', 'raw', "iscsi://restore%$($script:ChapSecretPlain)@$($p.Portal)/$($p.TargetName)/0", (Join-Path $TestDrive 'chap.raw'))
            $ok.Code | Should -Be 0 -Because $ok.Text
            [IO.File]::ReadAllBytes((Join-Path $TestDrive 'chap.raw'))[0..511] | Should -Be $script:Plain[0..511]
        }
        finally { $p | Unpublish-PbsImage -Confirm:$false }
    }

    It 'four initiators at once, on different disks and on one disk, all bit-exact' {
        if ($script:Skip) { Set-ItResult -Skipped -Because $script:Skip; return }
        $vm100 = Publish-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -ReadOnly -ErrorAction Stop
        $vm101 = Publish-PbsImage -Repository $script:Repo -Fingerprint $script:Server.Fingerprint -Credential $script:Cred -Snapshot vm/101 -Keyfile $script:Key -KeyPassword $script:KeyPassword -ReadOnly -ErrorAction Stop
        $vm102 = Publish-PbsImage -Datastore $script:Datastore -Namespace dev -Snapshot vm/102 -ReadOnly -ErrorAction Stop
        try {
            $virtio = Get-GoldenArchive $script:Vm100 'drive-virtio1.img.fidx'
            $enc = Get-GoldenArchive (Get-GoldenSnapshot vm 101) 'drive-scsi0.img.fidx'
            $ns = Get-GoldenArchive (Get-GoldenSnapshot vm 102) 'drive-scsi0.img.fidx'
            $jobs = @(
                @{ Url = (Get-Url $vm100 0); Sha = $script:Scsi0.plaintext_sha256; Size = $script:Scsi0.size }
                @{ Url = (Get-Url $vm100 1); Sha = $virtio.plaintext_sha256; Size = $virtio.size }
                @{ Url = (Get-Url $vm101 0); Sha = $enc.plaintext_sha256; Size = $enc.size }
                @{ Url = (Get-Url $vm102 0); Sha = $ns.plaintext_sha256; Size = $ns.size }
            )
            foreach ($round in 'different', 'same') {
                $procs = for ($i = 0; $i -lt 4; $i++) {
                    $j = if ($round -eq 'same') { $jobs[0] } else { $jobs[$i] }
                    $out = Join-Path $TestDrive "$round-$i.raw"
                    @{ Job = $j; Out = $out; Process = Start-Process qemu-img -ArgumentList 'convert', '-f', 'raw', '-O', 'raw', $j.Url, $out -PassThru -NoNewWindow }
                }
                foreach ($x in $procs) {
                    $x.Process.WaitForExit(120000) | Should -BeTrue
                    $x.Process.ExitCode | Should -Be 0
                    $bytes = [IO.File]::ReadAllBytes($x.Out)
                    Get-PrefixSha $bytes $x.Job.Size | Should -Be $x.Job.Sha -Because "$round disks, $($x.Job.Url)"
                }
            }
        }
        finally { $vm100, $vm101, $vm102 | Unpublish-PbsImage -Confirm:$false }
    }
}

Describe 'The publication outlives the command, not the session' {
    It '-Wait holds it in the foreground and unpublishes on Ctrl+C (Stop)' {
        $ps = [powershell]::Create()
        [void]$ps.AddScript("Import-Module '$((Resolve-Path (Join-Path $PSScriptRoot '../../PbsRestore.psd1')).Path)'; Publish-PbsImage -Datastore '$($script:Datastore)' -Snapshot vm/100 -Archive drive-scsi0.img -Wait")
        $async = $ps.BeginInvoke()
        try {
            $p = $null
            for ($i = 0; $i -lt 200 -and -not $p; $i++) {
                Start-Sleep -Milliseconds 100
                $p = Get-PbsPublication | Where-Object { $_.Luns[0].Archive -eq 'drive-scsi0.img' -and $_.IsPublished } | Select-Object -Last 1
            }
            $p | Should -Not -BeNullOrEmpty -Because 'the waiting command registered its publication'
            $async.IsCompleted | Should -BeFalse
            $overlay = $p.Luns[0].OverlayPath
            $overlay | Should -Exist
            $ps.Stop()
            $p.IsPublished | Should -BeFalse
            @(Get-PbsPublication | Where-Object Id -EQ $p.Id).Count | Should -Be 0
            $overlay | Should -Not -Exist
        }
        finally { $ps.Dispose() }
    }

    It 'ends when the runspace that published it closes' {
        $rs = [runspacefactory]::CreateRunspace()
        $rs.Open()
        $ps = [powershell]::Create()
        $ps.Runspace = $rs
        [void]$ps.AddScript("Import-Module '$((Resolve-Path (Join-Path $PSScriptRoot '../../PbsRestore.psd1')).Path)'; Publish-PbsImage -Datastore '$($script:Datastore)' -Snapshot vm/100 -Archive drive-virtio1.img")
        $p = @($ps.Invoke())[0]
        $ps.Dispose()
        $p.IsPublished | Should -BeTrue
        @(Get-PbsPublication | Where-Object Id -EQ $p.Id).Count | Should -Be 1
        $rs.Dispose()
        for ($i = 0; $i -lt 50 -and $p.IsPublished; $i++) { Start-Sleep -Milliseconds 100 }
        $p.IsPublished | Should -BeFalse
        @(Get-PbsPublication | Where-Object Id -EQ $p.Id).Count | Should -Be 0
        $p.Luns[0].OverlayPath | Should -Not -Exist
    }
}

Describe 'Runbook examples/Restore-OneFileFromVmBackup.ps1' {
    It 'gets one file out of an ext4 partition of a VM disk backup through iSCSI (Qemu initiator), without restoring the disk' {
        if ($script:Skip) { Set-ItResult -Skipped -Because $script:Skip; return }
        foreach ($tool in 'mkfs.ext4', 'debugfs') {
            if (-not (Get-Command $tool -ErrorAction SilentlyContinue)) { Set-ItResult -Skipped -Because "$tool is not installed (Debian: e2fsprogs)"; return }
        }
        # A guest disk: an MBR with one Linux partition at 1 MiB holding an ext4 file system with /etc/hostname.
        $tree = Join-Path $TestDrive 'guest'
        $null = New-Item -ItemType Directory -Force -Path (Join-Path $tree 'etc')
        $content = "web01.example.internal`n" + ('x' * 5000)
        Set-Content -LiteralPath (Join-Path $tree 'etc/hostname') -Value $content -NoNewline
        $fs = Join-Path $TestDrive 'fs.img'
        & mkfs.ext4 -q -F -d $tree $fs 16M
        $LASTEXITCODE | Should -Be 0
        $disk = Join-Path $TestDrive 'disk.img'
        $fsBytes = [IO.File]::ReadAllBytes($fs)
        $f = [IO.File]::Create($disk)
        # The MBR: one primary partition, type 0x83, from sector 2048 over the file system.
        $mbr = [byte[]]::new(512)
        $mbr[446 + 4] = 0x83
        [BitConverter]::GetBytes([uint32]2048).CopyTo($mbr, 446 + 8)
        [BitConverter]::GetBytes([uint32]($fsBytes.Length / 512)).CopyTo($mbr, 446 + 12)
        $mbr[510] = 0x55; $mbr[511] = 0xAA
        try { $f.Write($mbr, 0, 512); $f.Position = 1MB; $f.Write($fsBytes, 0, $fsBytes.Length) } finally { $f.Dispose() }
        $ds = Join-Path $TestDrive 'guest-ds'
        $null = Invoke-FixtureWriter @('image', '--path', $ds, '--id', '900', '--source', $disk, '--chunk-size', '1MiB')

        $out = Join-Path $TestDrive 'file-out'
        $runbook = Join-Path $PSScriptRoot '../../examples/Restore-OneFileFromVmBackup.ps1'
        $before = @(Get-PbsPublication).Count
        $file = & $runbook -Datastore $ds -VmId 900 -Path /etc/hostname -Partition 1 -Destination $out -Initiator Qemu
        $file.FullName | Should -Be (Join-Path (Resolve-Path $out).Path 'hostname')
        Get-Content -LiteralPath $file.FullName -Raw | Should -BeExactly $content
        @(Get-PbsPublication).Count | Should -Be $before -Because 'the runbook unpublishes what it published'
    }
}
