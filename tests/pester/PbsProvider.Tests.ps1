# The PbsRestore drive: a datastore folder or a server datastore browsed with the usual cmdlets, namespaces
# included, and files copied out of it to the file system with Copy-Item.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot ../../PbsRestore.psd1) -Force
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Join-Path $PSScriptRoot 'ServerHelpers.psm1') -Force
    $script:Store = Join-Path $TestDrive 'store'
    Invoke-FixtureWriter @('files', '--path', $script:Store, '--id', '300') | Out-Null
    Invoke-FixtureWriter @('files', '--path', $script:Store, '--id', '301', '--split') | Out-Null
    Invoke-FixtureWriter @('files', '--path', $script:Store, '--id', '302', '--ns', 'prod/web') | Out-Null

    # A source folder with known contents, backed up as v1 (310) and split v2 (311), for the bit-exact copies.
    $script:Source = Join-Path $TestDrive 'source'
    $rng = [Random]::new(7)
    foreach ($rel in 'etc/hosts', 'etc/app/app.conf', 'etc/app/empty', 'var/log/big.log', 'readme.md') {
        $p = Join-Path $script:Source $rel
        [void][IO.Directory]::CreateDirectory([IO.Path]::GetDirectoryName($p))
        $bytes = [byte[]]::new($(if ($rel -like '*big*') { 5MB + 3 } elseif ($rel -like '*empty') { 0 } else { 200 + $rel.Length }))
        $rng.NextBytes($bytes)
        [IO.File]::WriteAllBytes($p, $bytes)
        [IO.File]::SetLastWriteTimeUtc($p, [datetime]::new(2022, 1, 2, 3, 4, 5, [DateTimeKind]::Utc).AddHours($rel.Length))
    }
    Invoke-FixtureWriter @('files', '--path', $script:Store, '--source', $script:Source, '--id', '310') | Out-Null
    Invoke-FixtureWriter @('files', '--path', $script:Store, '--source', $script:Source, '--id', '311', '--split') | Out-Null

    New-PSDrive -Name pbstest -PSProvider PbsRestore -Root $script:Store | Out-Null
    $script:T = '2024-05-01T10_00_00Z'

    function script:Get-TreeHashes([string] $Folder) {
        # Relative path -> SHA-256 of every file below Folder.
        $h = @{}
        foreach ($f in Get-ChildItem -LiteralPath $Folder -Recurse -File) { $h[[IO.Path]::GetRelativePath($Folder, $f.FullName)] = (Get-FileHash -LiteralPath $f.FullName).Hash }
        $h
    }
    function script:Assert-SameTree([string] $Expected, [string] $Actual) {
        $e = Get-TreeHashes $Expected
        $a = Get-TreeHashes $Actual
        @($a.Keys | Sort-Object) | Should -Be @($e.Keys | Sort-Object)
        foreach ($k in $e.Keys) { $a[$k] | Should -Be $e[$k] -Because $k }
    }
}
AfterAll { Remove-PSDrive -Name pbstest -ErrorAction SilentlyContinue }

Describe 'PbsRestore drive over a datastore folder' {
    It 'shows types, ids, snapshot times and file archives, and namespaces under ns' {
        @(Get-ChildItem pbstest:\ -Name) | Should -Be @('ct', 'ns')
        @(Get-ChildItem pbstest:\ct -Name) | Should -Be @('300', '301', '310', '311')
        @(Get-ChildItem pbstest:\ct\300 -Name) | Should -Be @($script:T)
        @(Get-ChildItem pbstest:\ct\300\$script:T -Name) | Should -Be @('root.pxar')
        @(Get-ChildItem pbstest:\ct\301\$script:T -Name) | Should -Be @('root.pxar')
        @(Get-ChildItem pbstest:\ns -Name) | Should -Be @('prod')
        @(Get-ChildItem pbstest:\ns\prod -Name) | Should -Be @('ns')
        @(Get-ChildItem pbstest:\ns\prod\ns -Name) | Should -Be @('web')
        @(Get-ChildItem pbstest:\ns\prod\ns\web -Name) | Should -Be @('ct')
        @(Get-ChildItem pbstest:\ns\prod\ns\web\ct -Name) | Should -Be @('302')
        (Get-Item pbstest:\ns\prod\ns\web).Namespace | Should -Be 'prod/web'
        Test-Path pbstest:\ns\nope | Should -BeFalse
        Test-Path pbstest:\ns\prod\ns\web\ct\302\$script:T\root.pxar\hello.txt | Should -BeTrue
        Get-Content pbstest:\ns\prod\ns\web\ct\302\$script:T\root.pxar\sub\deeper\file.txt | Should -Be 'deep'
    }

    It 'lists, tests and reads files inside the archive (<_>)' -ForEach '300', '301' {
        $base = "pbstest:\ct\$_\$script:T\root.pxar"
        @(Get-ChildItem "$base\etc").Count | Should -Be 20
        @(Get-ChildItem "$base\sub" -Recurse | ForEach-Object ArchivePath) | Should -Be @('/sub/deeper', '/sub/deeper/file.txt', '/sub/empty')
        Test-Path "$base\hello.txt" | Should -BeTrue
        Test-Path "$base\nope" | Should -BeFalse
        Get-Content "$base\sub\deeper\file.txt" | Should -Be 'deep'
        Get-Content "$base\zz-hardlink" | Should -Be 'hello world'
        Get-Content "$base\hello.txt" -Raw | Should -BeExactly "hello world`n"
        @(Get-Content "$base\hello.txt" -AsByteStream -TotalCount 5) | Should -Be @(104, 101, 108, 108, 111)
        (Get-Item "$base\hello.txt").Size | Should -Be 12
    }

    It 'a listed item''s Path is its drive path, so piping it reads the archive, never a local file' {
        $item = Get-Item "pbstest:\ct\300\$script:T\root.pxar\sub\deeper\file.txt"
        $item.Path | Should -Be "pbstest:\ct\300\$script:T\root.pxar\sub\deeper\file.txt"
        $item.ArchivePath | Should -Be '/sub/deeper/file.txt'
        $item.Snapshot | Should -Be 'ct/300/2024-05-01T10:00:00Z'
        (Get-Item "pbstest:\ns\prod\ns\web\ct\302\$script:T\root.pxar\hello.txt").Snapshot | Should -Be 'ns/prod/ns/web/ct/302/2024-05-01T10:00:00Z'
        Get-ChildItem "pbstest:\ct\300\$script:T\root.pxar\sub\deeper" | Get-Content | Should -Be 'deep'
        # The default table shows the path in the archive, as for Get-PbsFile.
        Get-ChildItem "pbstest:\ct\300\$script:T\root.pxar\sub" | Out-String -Width 200 | Should -Match '\s/sub/deeper\r?\n'
        Get-ChildItem "pbstest:\ct\300\$script:T\root.pxar" | Out-String -Width 200 | Should -Match '/link-rel -> hello.txt'
    }

    It 'reads on after more archives were opened than the drive keeps open (the oldest are closed and reopened)' {
        $paths = @('ct\300', 'ct\301', 'ct\310', 'ct\311', 'ns\prod\ns\web\ct\302', 'ct\300', 'ct\311') | ForEach-Object { "pbstest:\$_\$script:T\root.pxar" }
        foreach ($p in $paths) {
            if ($p -like '*31?\*') { (Get-Item "$p\etc\hosts").Size | Should -Be (Get-Item (Join-Path $script:Source 'etc/hosts')).Length }
            else { Get-Content "$p\sub\deeper\file.txt" | Should -Be 'deep' }
        }
    }

    It 'the snapshot items pipe into Restore-PbsFile' {
        $dest = Join-Path $TestDrive 'from-item'
        $r = Get-Item "pbstest:\ct\310\$script:T" | Restore-PbsFile -Path /etc/hosts -Destination $dest
        $r.Files | Should -Be 1
        (Get-FileHash (Join-Path $dest 'hosts')).Hash | Should -Be (Get-FileHash (Join-Path $script:Source 'etc/hosts')).Hash
    }

    It 'refuses a root that is not a folder' {
        { New-PSDrive -Name pbsbad -PSProvider PbsRestore -Root (Join-Path $TestDrive 'nope') -ErrorAction Stop } | Should -Throw '*not a folder*'
    }
}

Describe 'Copy-Item from the drive to the file system (<Name>)' -ForEach @(@{ Name = 'v1'; Id = '310' }, @{ Name = 'split v2'; Id = '311' }) {
    BeforeAll { $script:Base = "pbstest:\ct\$Id\$script:T\root.pxar" }

    It 'a plain file-system destination is refused by PowerShell itself (not the same provider)' {
        # The engine checks providers before any provider code runs (SessionStateContainer.CopyItem); hence PbsRestore::.
        { Copy-Item "$script:Base\readme.md" -Destination (Join-Path $TestDrive "plain-$Id") -ErrorAction Stop } |
            Should -Throw -ErrorId 'CopyItemSourceAndDestinationNotSameProvider,Microsoft.PowerShell.Commands.CopyItemCommand'
    }

    It 'copies one file to a new name and into a folder, bit-exact with its time' {
        $file = Join-Path $TestDrive "one-$Id.bin"
        Copy-Item "$script:Base\var\log\big.log" -Destination "PbsRestore::$file"
        (Get-FileHash $file).Hash | Should -Be (Get-FileHash (Join-Path $script:Source 'var/log/big.log')).Hash
        [IO.File]::GetLastWriteTimeUtc($file) | Should -Be ([IO.File]::GetLastWriteTimeUtc((Join-Path $script:Source 'var/log/big.log')))
        $folder = Join-Path $TestDrive "folder-$Id"
        New-Item -ItemType Directory $folder | Out-Null
        Copy-Item "$script:Base\etc\hosts" -Destination "PbsRestore::$folder"
        (Get-FileHash (Join-Path $folder 'hosts')).Hash | Should -Be (Get-FileHash (Join-Path $script:Source 'etc/hosts')).Hash
    }

    It 'copies a directory with -Recurse: into an existing folder under its name, else as the new folder' {
        $into = Join-Path $TestDrive "into-$Id"
        New-Item -ItemType Directory $into | Out-Null
        Copy-Item "$script:Base\etc" -Destination "PbsRestore::$into" -Recurse
        Assert-SameTree (Join-Path $script:Source 'etc') (Join-Path $into 'etc')
        $new = Join-Path $TestDrive "new-$Id"
        Copy-Item "$script:Base\etc" -Destination "PbsRestore::$new" -Recurse
        Assert-SameTree (Join-Path $script:Source 'etc') $new
        $whole = Join-Path $TestDrive "whole-$Id"
        Copy-Item $script:Base -Destination "PbsRestore::$whole" -Recurse
        Assert-SameTree $script:Source $whole
    }

    It 'copies what a wildcard matches' {
        $folder = Join-Path $TestDrive "wild-$Id"
        New-Item -ItemType Directory $folder | Out-Null
        Copy-Item "$script:Base\etc\*" -Destination "PbsRestore::$folder" -Recurse
        Assert-SameTree (Join-Path $script:Source 'etc') $folder
    }

    It '-WhatIf writes nothing; an existing file needs -Force; a directory needs -Recurse; -PassThru returns the copy' {
        $dest = Join-Path $TestDrive "guard-$Id"
        Copy-Item "$script:Base\etc" -Destination "PbsRestore::$dest" -Recurse -WhatIf
        Test-Path $dest | Should -BeFalse
        { Copy-Item "$script:Base\etc" -Destination "PbsRestore::$dest" -ErrorAction Stop } | Should -Throw -ErrorId 'DirectoryNeedsRecurse,Microsoft.PowerShell.Commands.CopyItemCommand'
        $file = Join-Path $TestDrive "guard-$Id.txt"
        Set-Content $file 'mine'
        { Copy-Item "$script:Base\readme.md" -Destination "PbsRestore::$file" -ErrorAction Stop } | Should -Throw -ErrorId 'DestinationExists,Microsoft.PowerShell.Commands.CopyItemCommand'
        Get-Content $file | Should -Be 'mine'
        $out = Copy-Item "$script:Base\readme.md" -Destination "PbsRestore::$file" -Force -PassThru
        $out.FullName | Should -Be $file
        (Get-FileHash $file).Hash | Should -Be (Get-FileHash (Join-Path $script:Source 'readme.md')).Hash
    }

    It 'refuses a source above the archive and a destination on the drive' {
        { Copy-Item "pbstest:\ct\$Id" -Destination "PbsRestore::$(Join-Path $TestDrive 'x')" -Recurse -ErrorAction Stop } |
            Should -Throw -ErrorId 'CopySourceNotInArchive,Microsoft.PowerShell.Commands.CopyItemCommand'
        { Copy-Item "$script:Base\readme.md" -Destination "pbstest:\ct" -ErrorAction Stop } | Should -Throw -ErrorId 'DestinationReadOnly,Microsoft.PowerShell.Commands.CopyItemCommand'
    }
}

Describe 'PbsRestore drive over our server' {
    BeforeAll {
        $script:SavedEnv = Save-PbsEnvironment
        Clear-PbsEnvironment
        $script:TokenId = 'drive@pbs!browse'
        $script:Secret = 'drive-secret-81c2'
        $script:Server = Start-TestServer -Datastore ([ordered]@{ files = $script:Store }) -Token "$($script:TokenId):$($script:Secret)" -LogFolder (Join-Path $TestDrive 'server')
        $script:Repo = "$($script:TokenId)@127.0.0.1:$($script:Server.Port):files"
        $script:Cred = New-PbsCredential $script:TokenId $script:Secret
    }
    AfterAll {
        Remove-PSDrive -Name srv, srvc -ErrorAction SilentlyContinue
        if ($null -ne (Get-Variable -Name DefaultPbsServer -Scope Global -ValueOnly -ErrorAction SilentlyContinue)) { Disconnect-PbsServer }
        Stop-TestServer $script:Server
        Restore-PbsEnvironment $script:SavedEnv
    }

    It 'with -Root <repository> -Credential -Fingerprint: namespaces, listing, Get-Content and Copy-Item as from the folder' {
        $d = New-PSDrive -Name srv -PSProvider PbsRestore -Root $script:Repo -Credential $script:Cred -Fingerprint $script:Server.Fingerprint
        $d.Root | Should -Be $script:Repo
        @(Get-ChildItem srv:\ -Name) | Should -Be @('ct', 'ns')
        @(Get-ChildItem srv:\ns\prod\ns -Name) | Should -Be @('web')
        @(Get-ChildItem srv:\ns\prod\ns\web\ct\302 -Name) | Should -Be @($script:T)
        Get-Content "srv:\ns\prod\ns\web\ct\302\$script:T\root.pxar\sub\deeper\file.txt" | Should -Be 'deep'
        Get-Content "srv:\ct\301\$script:T\root.pxar\zz-hardlink" | Should -Be 'hello world'
        $dest = Join-Path $TestDrive 'srv-copy'
        Copy-Item "srv:\ct\311\$script:T\root.pxar" -Destination "PbsRestore::$dest" -Recurse
        Assert-SameTree $script:Source $dest
        Remove-PSDrive srv
    }

    It 'over a Connect-PbsServer connection (-Connection, and the session default with -Root <datastore>)' {
        $c = Connect-PbsServer -Repository $script:Repo -Fingerprint $script:Server.Fingerprint -Credential $script:Cred
        New-PSDrive -Name srvc -PSProvider PbsRestore -Root files -Connection $c | Out-Null
        Get-Content "srvc:\ct\302\$script:T\root.pxar\hello.txt" -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        Get-Content "srvc:\ns\prod\ns\web\ct\302\$script:T\root.pxar\hello.txt" | Should -Be 'hello world'
        $bytes = Get-Content "srvc:\ct\311\$script:T\root.pxar\var\log\big.log" -AsByteStream -Raw
        $bytes.Length | Should -Be (5MB + 3)
        [Convert]::ToHexString([Security.Cryptography.SHA256]::HashData([byte[]]$bytes)) | Should -Be (Get-FileHash (Join-Path $script:Source 'var/log/big.log')).Hash
        (Get-Item "srvc:\ct\310\$script:T\root.pxar\var\log\big.log").Size | Should -Be (5MB + 3)
        Remove-PSDrive srvc
        New-PSDrive -Name srvc -PSProvider PbsRestore -Root files | Out-Null
        @(Get-ChildItem srvc:\ct -Name) | Should -Be @('300', '301', '310', '311')
        Remove-PSDrive srvc
        Disconnect-PbsServer
    }

    It 'names what is wrong: a wrong secret, a wrong fingerprint' {
        $bad = New-PbsCredential $script:TokenId 'not-the-secret'
        { New-PSDrive -Name srvx -PSProvider PbsRestore -Root $script:Repo -Credential $bad -Fingerprint $script:Server.Fingerprint -ErrorAction Stop } |
            Should -Throw '*AuthenticationFailed*'
        $fp = $script:Server.Fingerprint
        $wrong = $fp.Substring(0, $fp.Length - 2) + ('{0:x2}' -f ([Convert]::ToInt32($fp.Substring($fp.Length - 2), 16) -bxor 0xff))
        { New-PSDrive -Name srvx -PSProvider PbsRestore -Root $script:Repo -Credential $script:Cred -Fingerprint $wrong -ErrorAction Stop } |
            Should -Throw '*CertificateFingerprintMismatch*'
        Get-PSDrive srvx -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }
}
