# Restores a datastore shaped like a stock PBS one (4 MiB chunks, a PBKDF2 key, nested namespaces,
# two snapshots sharing chunks) written by the project's datastore writer, through exactly the cmdlet
# contract a user types.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot ../../PbsRestore.psd1) -Force
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force

    $script:Store = Join-Path $TestDrive 'store'
    $script:Key = Join-Path $TestDrive 'pbkdf2.key'
    $script:Password = 'unseen-Pbkdf2-pass'
    $common = @('image', '--path', $script:Store, '--ns', 'site-a/cluster1', '--type', 'vm', '--id', '300',
        '--size', '48MiB', '--chunk-size', '4MiB', '--pattern', 'zero:2,random:1,text:2,dup:1', '--conf',
        '--keyfile', $script:Key, '--password', $script:Password, '--kdf', 'pbkdf2')
    $script:First = Invoke-FixtureWriter ($common + @('--time', '2024-06-01T08:00:00Z', '--seed', '7'))
    # Same seed: the second snapshot's chunks are already in the store (shared), as an incremental backup's are.
    $script:Second = Invoke-FixtureWriter ($common + @('--time', '2024-06-02T08:00:00Z', '--seed', '7'))
    $script:SecurePassword = ConvertTo-SecureString $script:Password -AsPlainText -Force
}

Describe 'A stock-shaped datastore (4 MiB chunks, PBKDF2 key, nested namespaces)' {
    It 'lists both snapshots in the nested namespace' {
        $s = @(Get-PbsSnapshot -Datastore $script:Store -Namespace site-a/cluster1)
        $s.Count | Should -Be 2
        $s.Snapshot | Should -Be @('vm/300/2024-06-01T08:00:00Z', 'vm/300/2024-06-02T08:00:00Z')
        $s | ForEach-Object { $_.Namespace | Should -Be 'site-a/cluster1'; $_.Encrypted | Should -BeTrue }
        $s[0].Files.Name | Should -Contain 'drive-scsi0.img.fidx'
        ($s[0].Files | Where-Object Name -eq 'drive-scsi0.img.fidx').Size | Should -Be 48MB
        @(Get-PbsSnapshot -Datastore $script:Store -Namespace site-a -MaxDepth 0).Count | Should -Be 0
        @(Get-PbsSnapshot -Datastore $script:Store -Namespace site-a).Count | Should -Be 2
    }

    It 'the two snapshots share their chunks' {
        @(Get-ChildItem -Path (Join-Path $script:Store '.chunks') -Recurse -File).Count | Should -BeLessOrEqual ([int]$script:First.chunksWritten + 1)
        $script:Second.chunksWritten | Should -Be 0
    }

    It 'restores <_> bit-exactly with -Keyfile and -KeyPassword' -ForEach @('2024-06-01T08:00:00Z', '2024-06-02T08:00:00Z') {
        $dest = Join-Path $TestDrive "vm300-$($_ -replace ':', '').raw"
        $r = Restore-PbsImage -Datastore $script:Store -Namespace site-a/cluster1 -Snapshot "vm/300/$_" -Archive drive-scsi0.img `
            -Destination $dest -Keyfile $script:Key -KeyPassword $script:SecurePassword -ErrorAction Stop
        (Get-FileHash -LiteralPath $dest -Algorithm SHA256).Hash.ToLowerInvariant() | Should -Be $script:First.sha256
        $r.LogicalBytes | Should -Be 48MB
        $r.ZeroChunks | Should -BeGreaterThan 0
    }

    It 'refuses a wrong PBKDF2 password before creating the destination' {
        $dest = Join-Path $TestDrive 'wrong.raw'
        { Restore-PbsImage -Datastore $script:Store -Namespace site-a/cluster1 -Snapshot vm/300 -Archive drive-scsi0.img `
            -Destination $dest -Keyfile $script:Key -KeyPassword (ConvertTo-SecureString 'nope' -AsPlainText -Force) -ErrorAction Stop } |
            Should -Throw -ErrorId 'KeyPasswordWrong,PbsRestore.PowerShell.Commands.RestorePbsImageCommand'
        Test-Path -LiteralPath $dest | Should -BeFalse
    }
}
