# The PbsRestore drive: a datastore folder browsed with the usual cmdlets.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot ../../PbsRestore.psd1) -Force
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $script:Store = Join-Path $TestDrive 'store'
    Invoke-FixtureWriter @('files', '--path', $script:Store, '--id', '300') | Out-Null
    Invoke-FixtureWriter @('files', '--path', $script:Store, '--id', '301', '--split') | Out-Null
    New-PSDrive -Name pbstest -PSProvider PbsRestore -Root $script:Store | Out-Null
}
AfterAll { Remove-PSDrive -Name pbstest -ErrorAction SilentlyContinue }

Describe 'PbsRestore drive' {
    It 'shows types, ids, snapshot times and file archives' {
        @(Get-ChildItem pbstest:\ -Name) | Should -Be @('ct')
        @(Get-ChildItem pbstest:\ct -Name) | Should -Be @('300', '301')
        @(Get-ChildItem pbstest:\ct\300 -Name) | Should -Be @('2024-05-01T10_00_00Z')
        @(Get-ChildItem pbstest:\ct\300\2024-05-01T10_00_00Z -Name) | Should -Be @('root.pxar')
        @(Get-ChildItem pbstest:\ct\301\2024-05-01T10_00_00Z -Name) | Should -Be @('root.pxar')
    }

    It 'lists, tests and reads files inside the archive (<_>)' -ForEach '300', '301' {
        $base = "pbstest:\ct\$_\2024-05-01T10_00_00Z\root.pxar"
        @(Get-ChildItem "$base\etc").Count | Should -Be 20
        @(Get-ChildItem "$base\sub" -Recurse | ForEach-Object Path) | Should -Be @('/sub/deeper', '/sub/deeper/file.txt', '/sub/empty')
        Test-Path "$base\hello.txt" | Should -BeTrue
        Test-Path "$base\nope" | Should -BeFalse
        Get-Content "$base\sub\deeper\file.txt" | Should -Be 'deep'
        Get-Content "$base\zz-hardlink" | Should -Be 'hello world'
        (Get-Item "$base\hello.txt").Size | Should -Be 12
    }

    It 'refuses a root that is not a folder' {
        { New-PSDrive -Name pbsbad -PSProvider PbsRestore -Root (Join-Path $TestDrive 'nope') -ErrorAction Stop } | Should -Throw '*not a folder*'
    }
}
