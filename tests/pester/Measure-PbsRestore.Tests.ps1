# Measure-PbsRestore -Destination follows Restore-PbsImage's destination rules (issue 11, item 1): an existing file
# is refused without -Force and left as it was, -WhatIf writes nothing, and -Force replaces it with the image.
# (The block-device cases, -Force and the confirmation prompt, are in Restore-PbsImage.Device.Tests.ps1.)
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot '../../PbsRestore.psd1') -Force
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $script:Vm100 = Get-GoldenSnapshot vm 100
    $script:Scsi0 = Get-GoldenArchive $script:Vm100 'drive-scsi0.img.fidx'
    $script:Common = @{ Datastore = (Get-GoldenDatastore); Snapshot = (Get-SnapshotSpec $script:Vm100); Archive = 'drive-scsi0.img' }
}

Describe 'Measure-PbsRestore -Destination' {
    It 'refuses an existing file without -Force and leaves it as it was' {
        $precious = Join-Path $TestDrive 'precious.raw'
        Set-Content -LiteralPath $precious -Value 'precious data'
        $before = Get-Sha256 $precious
        { Measure-PbsRestore @script:Common -Destination $precious -ErrorAction Stop } |
            Should -Throw -ErrorId 'DestinationExists,PbsRestore.PowerShell.Commands.MeasurePbsRestoreCommand' -ExpectedMessage "*precious.raw*-Force*"
        Get-Sha256 $precious | Should -Be $before
        Get-PartialPath $precious | Should -Not -Exist
    }

    It '-WhatIf writes nothing and measures nothing' {
        $precious = Join-Path $TestDrive 'whatif.raw'
        Set-Content -LiteralPath $precious -Value 'precious data'
        $before = Get-Sha256 $precious
        @(Measure-PbsRestore @script:Common -Destination $precious -Force -WhatIf -ErrorAction Stop) | Should -HaveCount 0
        Get-Sha256 $precious | Should -Be $before
        @(Measure-PbsRestore @script:Common -Destination (Join-Path $TestDrive 'new-whatif.raw') -WhatIf -ErrorAction Stop) | Should -HaveCount 0
        Join-Path $TestDrive 'new-whatif.raw' | Should -Not -Exist
    }

    It 'writes a new file without -Force, every run (the later ones replace the first), bit-exactly' {
        $out = Join-Path $TestDrive 'new.raw'
        $rows = @(Measure-PbsRestore @script:Common -Destination $out -FetchConcurrency 2, 4 -ErrorAction Stop)
        $rows | Should -HaveCount 2
        Get-Sha256 $out | Should -Be $script:Scsi0.plaintext_sha256
    }

    It 'replaces an existing file with -Force' {
        $out = Join-Path $TestDrive 'forced.raw'
        Set-Content -LiteralPath $out -Value 'old'
        @(Measure-PbsRestore @script:Common -Destination $out -Force -ErrorAction Stop) | Should -HaveCount 1
        Get-Sha256 $out | Should -Be $script:Scsi0.plaintext_sha256
    }
}
