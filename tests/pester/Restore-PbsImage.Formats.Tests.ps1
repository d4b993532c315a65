# Restore-PbsImage -Format Vhdx|Vhd|Vmdk (issue 7; Vmdk: issue 11, item 8): images Windows and VMware mount, written while restoring, read back by
# qemu-img (Debian's qemu-utils, an implementation we did not write) and compared byte for byte.
BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot TestHelpers.psm1) -Force
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot ../../PbsRestore.psd1) -Force
    Import-Module (Join-Path $PSScriptRoot TestHelpers.psm1) -Force
    Import-Module (Join-Path $PSScriptRoot ServerHelpers.psm1) -Force   # Get-DotnetPath, for the fixture writer
    $script:QemuImg = (Get-Command qemu-img -ErrorAction SilentlyContinue).Source
    $script:Datastore = Get-GoldenDatastore
    $snapshot = Get-GoldenSnapshot vm 100
    $script:Scsi0 = Get-GoldenArchive $snapshot 'drive-scsi0.img.fidx'

    # ConvertFrom-DiskImage and Assert-Image: TestHelpers.psm1.
}

Describe 'Restore-PbsImage -Format' {
    It 'writes a VHDX when the destination ends in .vhdx, and qemu-img reads it back bit-exactly' {
        $dest = Join-Path $TestDrive 'vm-100-scsi0.vhdx'
        $r = Restore-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -Archive drive-scsi0.img -Destination $dest -ErrorAction Stop
        $r.Format | Should -Be 'Vhdx'
        [Text.Encoding]::ASCII.GetString([IO.File]::ReadAllBytes($dest), 0, 8) | Should -Be 'vhdxfile'
        Assert-Image (ConvertFrom-DiskImage $dest 'vhdx') $script:Scsi0.size $script:Scsi0.plaintext_sha256
        Test-Path -LiteralPath "$dest.partial" | Should -BeFalse
    }

    It 'writes a fixed VHD with -Format Vhd whatever the extension, and qemu-img reads it back bit-exactly' {
        $dest = Join-Path $TestDrive 'vm-100-scsi0.disk'
        $r = Restore-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -Archive drive-scsi0.img -Destination $dest -Format Vhd -ErrorAction Stop
        $r.Format | Should -Be 'Vhd'
        $length = (Get-Item -LiteralPath $dest).Length
        ($length - 512) % 1MB | Should -Be 0 -Because 'Azure wants a whole number of MiB plus the footer'
        $bytes = [IO.File]::ReadAllBytes($dest)
        [Text.Encoding]::ASCII.GetString($bytes, $length - 512, 8) | Should -Be 'conectix'
        Assert-Image (ConvertFrom-DiskImage $dest 'vpc') $script:Scsi0.size $script:Scsi0.plaintext_sha256
    }

    It 'writes raw bytes with -Format Raw even for a .vhdx name' {
        $dest = Join-Path $TestDrive 'not-really.vhdx'
        $r = Restore-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -Archive drive-scsi0.img -Destination $dest -Format Raw -ErrorAction Stop
        $r.Format | Should -Be 'Raw'
        Get-Sha256 $dest | Should -Be $script:Scsi0.plaintext_sha256
    }

    It 'names the disks of a whole-snapshot restore .vhdx with -Format Vhdx and keeps the config as text' {
        $out = Join-Path $TestDrive 'folder'
        $r = @(Restore-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -DestinationFolder $out -Format Vhdx -ErrorAction Stop)
        $folder = Join-Path $out 'vm-100-2024-05-01T10-00-00Z'
        ($r | Sort-Object Archive | ForEach-Object { "$($_.Archive)=$($_.Format)" }) | Should -Be @('drive-scsi0.img=Vhdx', 'drive-virtio1.img=Vhdx', 'qemu-server.conf=Raw')
        Test-Path -LiteralPath (Join-Path $folder 'drive-scsi0.vhdx') | Should -BeTrue
        Test-Path -LiteralPath (Join-Path $folder 'drive-scsi0.img') | Should -BeFalse
        Assert-Image (ConvertFrom-DiskImage (Join-Path $folder 'drive-scsi0.vhdx') 'vhdx') $script:Scsi0.size $script:Scsi0.plaintext_sha256
    }

    It 'warns when -Format and the extension disagree (Windows goes by the extension)' {
        $dest = Join-Path $TestDrive 'named.vhdx'
        $r = Restore-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -Archive drive-scsi0.img -Destination $dest -Format Vhd -WarningVariable w -WarningAction SilentlyContinue -ErrorAction Stop
        $r.Format | Should -Be 'Vhd'
        "$w" | Should -BeLike "*'named.vhdx' is named like a Vhdx file but is written as Vhd*"
    }

    It 'refuses to wrap a config blob in a VHDX' {
        { Restore-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -Archive qemu-server.conf -Destination (Join-Path $TestDrive 'conf.vhdx') -ErrorAction Stop } |
            Should -Throw -ErrorId 'FormatNotSupported,PbsRestore.PowerShell.Commands.RestorePbsImageCommand' -ExpectedMessage '*not a disk image*'
    }

    It 'restores every golden disk archive to VHDX bit-exactly (<Stored> of <Spec>)' -ForEach @(Get-GoldenArchiveCases | Where-Object { $_.Stored -like '*.fidx' }) {
        $dest = Join-Path $TestDrive "$($Spec -replace '[/:]', '-')-$Display.vhdx"
        $params = @{ Datastore = $script:Datastore; Snapshot = $Spec; Archive = $Display; Destination = $dest; ErrorAction = 'Stop' }
        if ($Namespace) { $params.Namespace = $Namespace }
        if ($Snap.key_file) { $params.Keyfile = Get-GoldenPath $Snap.key_file; $params.KeyPassword = New-TestPassword $Snap.key_password }
        Restore-PbsImage @params | Out-Null
        Assert-Image (ConvertFrom-DiskImage $dest 'vhdx') $Arch.size $Arch.plaintext_sha256
    }

    # Issue 11, item 8: VMware users' .vmdk names get a VMDK, not raw bytes under a VMDK name.
    It 'writes a monolithic sparse VMDK for a .vmdk name; qemu-img checks it and reads it back bit-exactly; zero grains take no space' {
        $dest = Join-Path $TestDrive 'vm-100-scsi0.vmdk'
        $r = Restore-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -Archive drive-scsi0.img -Destination $dest -ErrorAction Stop
        $r.Format | Should -Be 'Vmdk'
        $bytes = [IO.File]::ReadAllBytes($dest)
        [Text.Encoding]::ASCII.GetString($bytes, 0, 4) | Should -Be 'KDMV'
        [Text.Encoding]::ASCII.GetString($bytes, 512, 400) | Should -BeLike '*createType="monolithicSparse"*RW 6169 SPARSE "vm-100-scsi0.vmdk"*'
        $info = (& $script:QemuImg info --output=json $dest) -join "`n" | ConvertFrom-Json
        $info.format | Should -Be 'vmdk'
        $info.'format-specific'.data.'create-type' | Should -Be 'monolithicSparse'
        $bytes.LongLength | Should -BeLessThan $script:Scsi0.size -Because 'grains of zeros are not allocated'
        Assert-Image (ConvertFrom-DiskImage $dest 'vmdk') $script:Scsi0.size $script:Scsi0.plaintext_sha256
        Test-Path -LiteralPath "$dest.partial" | Should -BeFalse
    }

    It 'writes a VMDK of several grain tables (a 40 MiB disk, 1 MiB chunks) bit-exactly with -Format Vmdk' {
        $repo = [IO.Path]::GetFullPath((Join-Path $PSScriptRoot ../..))
        $fixtures = Get-ChildItem -Path (Join-Path $repo 'src/PbsRestore.Fixtures/bin') -Recurse -Filter PbsRestore.Fixtures.dll |
            Where-Object { $_.Directory.Name -eq 'net10.0' } | Sort-Object LastWriteTime | Select-Object -Last 1
        $store = Join-Path $TestDrive 'vmdk-store'
        $json = & (Get-DotnetPath) $fixtures.FullName image --path $store --type vm --id 700 --time 2024-08-01T00:00:00Z `
            --size 40MiB --chunk-size 1MiB --pattern 'zero:2,random:1,text:1,dup:1' --seed 17
        $LASTEXITCODE | Should -Be 0
        $image = ($json -join "`n") | ConvertFrom-Json
        $dest = Join-Path $TestDrive 'big.disk'
        $r = Restore-PbsImage -Datastore $store -Snapshot vm/700 -Archive drive-scsi0.img -Destination $dest -Format Vmdk -ErrorAction Stop
        $r.Format | Should -Be 'Vmdk'
        Assert-Image (ConvertFrom-DiskImage $dest 'vmdk') 40MB $image.sha256
        (Get-Item -LiteralPath $dest).Length | Should -BeLessThan 40MB -Because 'the zero chunks are never allocated'
    }

    It 'warns when a .vmdk name is written as Raw, naming VMware' {
        $dest = Join-Path $TestDrive 'raw-named.vmdk'
        $r = Restore-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -Archive drive-scsi0.img -Destination $dest -Format Raw -WarningVariable w -WarningAction SilentlyContinue -ErrorAction Stop
        $r.Format | Should -Be 'Raw'
        "$w" | Should -BeLike "*'raw-named.vmdk' is named like a Vmdk file but is written as Raw*VMware*"
        Get-Sha256 $dest | Should -Be $script:Scsi0.plaintext_sha256
    }

    It 'refuses -Resume for a VMDK clearly, before writing anything' {
        $dest = Join-Path $TestDrive 'resume.vmdk'
        { Restore-PbsImage -Datastore $script:Datastore -Snapshot vm/100 -Archive drive-scsi0.img -Destination $dest -Resume -ErrorAction Stop } |
            Should -Throw -ErrorId 'ResumeNotSupported,PbsRestore.PowerShell.Commands.RestorePbsImageCommand' -ExpectedMessage "-Resume is not supported for a Vmdk destination ('resume.vmdk')*"
        Test-Path -LiteralPath $dest | Should -BeFalse
        Test-Path -LiteralPath "$dest.partial" | Should -BeFalse
    }

    It 'restores every golden disk archive to VMDK bit-exactly (<Stored> of <Spec>)' -ForEach @(Get-GoldenArchiveCases | Where-Object { $_.Stored -like '*.fidx' }) {
        $dest = Join-Path $TestDrive "$($Spec -replace '[/:]', '-')-$Display.vmdk"
        $params = @{ Datastore = $script:Datastore; Snapshot = $Spec; Archive = $Display; Destination = $dest; ErrorAction = 'Stop' }
        if ($Namespace) { $params.Namespace = $Namespace }
        if ($Snap.key_file) { $params.Keyfile = Get-GoldenPath $Snap.key_file; $params.KeyPassword = New-TestPassword $Snap.key_password }
        Restore-PbsImage @params | Out-Null
        Assert-Image (ConvertFrom-DiskImage $dest 'vmdk') $Arch.size $Arch.plaintext_sha256
    }
}
