# The packaged module (build.ps1 Package, run by build.ps1 Test before the tests): a clean module folder that a
# fresh pwsh imports by name from PSModulePath and runs the demo with.
BeforeAll {
    $script:Repo = [IO.Path]::GetFullPath((Join-Path $PSScriptRoot ../..))
    $script:Package = Join-Path $script:Repo 'artifacts/package/PbsRestore'
}

Describe 'build.ps1 Package' {
    It 'has a manifest ready for Publish-Module' {
        $info = Test-ModuleManifest -Path (Join-Path $script:Package 'PbsRestore.psd1')
        $info.Version | Should -Be ([version]'0.1.0')
        $info.PowerShellVersion | Should -Be ([version]'7.4')
        $info.CompatiblePSEditions | Should -Be @('Core')
        ($info.ExportedCmdlets.Keys | Sort-Object) | Should -Be (@('Connect-PbsServer', 'Disconnect-PbsServer', 'Get-PbsDatastore',
            'Get-PbsNamespace', 'Get-PbsSnapshot', 'Measure-PbsRestore', 'Restore-PbsImage', 'Test-PbsSnapshot',
            'Export-PbsFile', 'Get-PbsFile', 'Restore-PbsFile', 'Publish-PbsImage', 'Get-PbsPublication', 'Unpublish-PbsImage') | Sort-Object)
        $info.ExportedFunctions.Count | Should -Be 0
        $info.ExportedAliases.Count | Should -Be 0
    }

    It 'holds the binaries, help and formats and nothing from the build tree' {
        foreach ($f in 'bin/PbsRestore.PowerShell.dll', 'bin/deps/PbsRestore.Core.dll', 'bin/deps/ZstdSharp.dll', 'bin/deps/BouncyCastle.Cryptography.dll',
            'bin/deps/System.IO.Hashing.dll', 'en-US/PbsRestore.PowerShell.dll-Help.xml', 'en-US/about_PbsRestore.help.txt', 'PbsRestore.Format.ps1xml',
            'PbsRestore.Types.ps1xml') {
            Test-Path -LiteralPath (Join-Path $script:Package $f) | Should -BeTrue -Because $f
        }
        @(Get-ChildItem -LiteralPath $script:Package -Recurse -Include '*.pdb', '*.cs', 'obj').Count | Should -Be 0
        Test-Path -LiteralPath (Join-Path $script:Package 'bin/System.Management.Automation.dll') | Should -BeFalse
    }

    It 'imports by name in a fresh pwsh, shows its help, and runs the demo from it' {
        $modules = Join-Path $TestDrive 'Modules'
        Copy-Item -LiteralPath $script:Package -Destination (Join-Path $modules 'PbsRestore') -Recurse
        $script = @"
`$ErrorActionPreference = 'Stop'
`$env:PSModulePath = '$modules' + [IO.Path]::PathSeparator + `$env:PSModulePath
Import-Module PbsRestore
'BASE=' + (Get-Module PbsRestore).ModuleBase
'EXAMPLES=' + @((Get-Help Restore-PbsImage -Full).examples.example).Count
& '$script:Repo/examples/demo.ps1' -Module PbsRestore -WorkFolder '$(Join-Path $TestDrive demo)'
"@
        $file = Join-Path $TestDrive 'package-demo.ps1'
        Set-Content -LiteralPath $file -Value $script
        $pwsh = [Environment]::ProcessPath
        $dll = Join-Path $PSHOME 'pwsh.dll'
        $out = if ([IO.Path]::GetFileNameWithoutExtension($pwsh) -eq 'dotnet') { & $pwsh $dll -NoProfile -NonInteractive -File $file 2>&1 } else { & $pwsh -NoProfile -NonInteractive -File $file 2>&1 }
        $text = ($out | Out-String)
        $LASTEXITCODE | Should -Be 0 -Because $text
        $text | Should -Match ([regex]::Escape("BASE=$(Join-Path $modules 'PbsRestore')"))
        [int](($out | Where-Object { "$_" -like 'EXAMPLES=*' }) -replace 'EXAMPLES=', '') | Should -BeGreaterOrEqual 3
        $text | Should -Match 'All 4 files restored over the wire are bit-exact'
    }
}
