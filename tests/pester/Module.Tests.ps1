# Module surface: the manifest at the repo root loads the built binary module (module/bin/,
# made by `build.ps1 Build`) and exports both cmdlets.
# NOTE: fails until src/PbsRestore.PowerShell defines Get-PbsSnapshot and Restore-PbsImage.
BeforeAll {
    $script:ManifestPath = Join-Path $PSScriptRoot '../../PbsRestore.psd1'
    Import-Module $script:ManifestPath -Force
}

Describe 'PbsRestore module' {
    It 'has a valid manifest' {
        $manifest = Test-ModuleManifest -Path $script:ManifestPath
        $manifest.Version | Should -Be ([version] '0.1.0')
    }

    It 'exports <_>' -ForEach @('Get-PbsSnapshot', 'Restore-PbsImage') {
        (Get-Command -Module PbsRestore).Name | Should -Contain $_
    }
}

AfterAll {
    Remove-Module PbsRestore -ErrorAction SilentlyContinue
}
