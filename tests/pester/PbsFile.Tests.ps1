# Get-PbsFile and Restore-PbsFile: on file archives our writer made from a folder (v1 and split v2), and on the
# genuine proxmox-backup-client's backups (ct/300, ct/301 encrypted, host/files) compared with expected.json.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot ../../PbsRestore.psd1) -Force
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force

    # A source folder with known contents and times.
    $script:Source = Join-Path $TestDrive 'source'
    $rng = [Random]::new(5)
    foreach ($rel in 'etc/hosts', 'etc/app/app.conf', 'var/log/big.log', 'var/empty.txt', 'home/user/Ünïcödé.txt', 'readme.md') {
        $p = Join-Path $script:Source $rel
        [void][IO.Directory]::CreateDirectory([IO.Path]::GetDirectoryName($p))
        $bytes = [byte[]]::new($(if ($rel -like '*big*') { 3MB + 17 } elseif ($rel -like '*empty*') { 0 } else { 100 + $rel.Length }))
        $rng.NextBytes($bytes)
        [IO.File]::WriteAllBytes($p, $bytes)
        [IO.File]::SetLastWriteTimeUtc($p, [datetime]::new(2021, 3, 4, 5, 6, 7, [DateTimeKind]::Utc).AddDays($rel.Length))
    }
    if (-not $IsWindows) { [IO.File]::CreateSymbolicLink((Join-Path $script:Source 'link-to-hosts'), 'etc/hosts') | Out-Null }
    $script:SourceFiles = @(Get-ChildItem $script:Source -Recurse -File | Where-Object { -not $_.LinkTarget })
    $script:Store = Join-Path $TestDrive 'store'
    Invoke-FixtureWriter @('files', '--path', $script:Store, '--source', $script:Source, '--id', '300') | Out-Null
    Invoke-FixtureWriter @('files', '--path', $script:Store, '--source', $script:Source, '--id', '301', '--split') | Out-Null

    function Get-Expected {
        $path = $env:PBS_UPSTREAM_DATA
        if (-not $path -or -not (Test-Path (Join-Path $path 'expected.json')) -or -not $env:PBS_UPSTREAM_DATASTORE) { return $null }
        Get-Content -Raw (Join-Path $path 'expected.json') | ConvertFrom-Json -DateKind String
    }
    $script:Expected = Get-Expected
    $script:UpstreamSkip = if ($script:Expected) { $null } elseif ($env:PBS_UPSTREAM_SKIP) { "genuine upstream data not available: $env:PBS_UPSTREAM_SKIP" } else {
        'genuine upstream data not available: PBS_UPSTREAM_DATA and PBS_UPSTREAM_DATASTORE are not set (build.ps1 Test sets them)' }
}

Describe 'Get-PbsFile on our writer''s archives (<Name>)' -ForEach @(@{ Name = 'v1 root.pxar'; Id = '300' }, @{ Name = 'v2 root.mpxar + root.ppxar'; Id = '301' }) {
    It 'lists the root, a directory, one file, and the whole tree' {
        $root = @(Get-PbsFile -Datastore $script:Store -Snapshot "ct/$Id")
        @($root | ForEach-Object Name) | Should -Contain 'etc'
        ($root | Where-Object Name -EQ 'etc').Type | Should -Be 'Directory'
        ($root | Where-Object Name -EQ 'etc').Mode | Should -BeLike 'd*'
        @(Get-PbsFile -Datastore $script:Store -Snapshot "ct/$Id" -Path /etc | ForEach-Object Path) | Should -Be @('/etc/app', '/etc/hosts')
        $one = Get-PbsFile -Datastore $script:Store -Snapshot "ct/$Id" -Path /var/log/big.log
        $one.Size | Should -Be (3MB + 17)
        $one.ModifiedTime | Should -Be ([IO.File]::GetLastWriteTimeUtc((Join-Path $script:Source 'var/log/big.log')))
        $one.GetType().FullName | Should -Be 'PbsRestore.PowerShell.PbsFileInfo'
        $all = @(Get-PbsFile -Datastore $script:Store -Snapshot "ct/$Id" -Recurse)
        @($all | Where-Object Type -EQ 'File').Count | Should -Be $script:SourceFiles.Count
        @(Get-PbsFile -Datastore $script:Store -Snapshot "ct/$Id" -Recurse -Filter '*.conf' | ForEach-Object Path) | Should -Be @('/etc/app/app.conf')
        @(Get-PbsFile -Datastore $script:Store -Snapshot "ct/$Id" -Recurse -Include '*.md', 'hosts' | ForEach-Object Path) | Should -Be @('/etc/hosts', '/readme.md')
        if (-not $IsWindows) { ($root | Where-Object Name -EQ 'link-to-hosts').LinkTarget | Should -Be 'etc/hosts' }
    }

    It 'shows a table by default' {
        $text = Get-PbsFile -Datastore $script:Store -Snapshot "ct/$Id" -Path /etc | Out-String -Width 200
        $text | Should -Match 'Mode\s+Uid\s+Gid\s+ModifiedTime \(UTC\)\s+Size\s+Path'
        $text | Should -Match '-rw\S+\s+\d+\s+\d+\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+\d+\s+/etc/hosts'
    }

    It 'names a path that does not exist' {
        { Get-PbsFile -Datastore $script:Store -Snapshot "ct/$Id" -Path /nope -ErrorAction Stop } |
            Should -Throw -ErrorId 'PathNotFound,PbsRestore.PowerShell.Commands.GetPbsFileCommand'
    }
}

Describe 'Restore-PbsFile on our writer''s archives (<Name>)' -ForEach @(@{ Name = 'v1'; Id = '300' }, @{ Name = 'v2'; Id = '301' }) {
    It 'restores the whole archive bit-exact with modification times' {
        $dest = Join-Path $TestDrive "all-$Id"
        $r = Restore-PbsFile -Datastore $script:Store -Snapshot "ct/$Id" -Destination $dest
        $r.Files | Should -Be $script:SourceFiles.Count
        foreach ($f in $script:SourceFiles) {
            $rel = [IO.Path]::GetRelativePath($script:Source, $f.FullName)
            $out = Join-Path $dest $rel
            (Get-FileHash $out).Hash | Should -Be (Get-FileHash $f.FullName).Hash
            [IO.File]::GetLastWriteTimeUtc($out) | Should -Be $f.LastWriteTimeUtc
        }
        if (-not $IsWindows) { (Get-Item (Join-Path $dest 'link-to-hosts')).LinkTarget | Should -Be 'etc/hosts' }
    }

    It 'restores one directory under its name; -WhatIf writes nothing; existing files need -Force' {
        $dest = Join-Path $TestDrive "etc-$Id"
        Restore-PbsFile -Datastore $script:Store -Snapshot "ct/$Id" -Path /etc -Destination $dest -WhatIf
        Test-Path $dest | Should -BeFalse
        $r = Restore-PbsFile -Datastore $script:Store -Snapshot "ct/$Id" -Path /etc -Destination $dest
        $r.Files | Should -Be 2
        @(Get-ChildItem $dest | ForEach-Object Name) | Should -Be @('etc')
        { Restore-PbsFile -Datastore $script:Store -Snapshot "ct/$Id" -Path /etc -Destination $dest -ErrorAction Stop } |
            Should -Throw -ErrorId 'DestinationExists,PbsRestore.PowerShell.Commands.RestorePbsFileCommand'
        Set-Content (Join-Path $dest 'etc/hosts') 'changed'
        Restore-PbsFile -Datastore $script:Store -Snapshot "ct/$Id" -Path /etc -Destination $dest -Force | Out-Null
        (Get-FileHash (Join-Path $dest 'etc/hosts')).Hash | Should -Be (Get-FileHash (Join-Path $script:Source 'etc/hosts')).Hash
    }

    It 'takes snapshots from the pipeline' {
        $dest = Join-Path $TestDrive "pipe-$Id"
        $r = Get-PbsSnapshot -Datastore $script:Store -BackupType ct -BackupId $Id | Restore-PbsFile -Path /readme.md -Destination $dest
        $r.Files | Should -Be 1
        Test-Path (Join-Path $dest 'readme.md') | Should -BeTrue
    }
}

Describe 'The genuine client''s file backups' {
    It '<Type>/<Id>: every file bit-exact and the metadata as recorded' -ForEach @(
        @{ Type = 'ct'; Id = '300' }, @{ Type = 'ct'; Id = '301' }, @{ Type = 'host'; Id = 'files' }) {
        if ($script:UpstreamSkip) { Set-ItResult -Skipped -Because $script:UpstreamSkip; return }
        $snap = $script:Expected.snapshots | Where-Object { $_.type -eq $Type -and $_.id -eq $Id }
        $keyArgs = @{}
        if ($snap.encrypted) {
            $keyArgs.Keyfile = Join-Path $env:PBS_UPSTREAM_DATA $snap.keyfile
            $keyArgs.KeyPassword = ConvertTo-SecureString $snap.keypassword -AsPlainText -Force
        }
        $entries = @(($snap.archives | Where-Object name -EQ 'root.pxar.didx').entries)
        $snapshot = "$Type/$Id/$($snap.time)"

        # Listing: every entry with its type, mode, owner, mtime and link target.
        $listed = @{}
        Get-PbsFile -Datastore $env:PBS_UPSTREAM_DATASTORE -Snapshot $snapshot -Recurse @keyArgs | ForEach-Object { $listed[$_.Path.TrimStart('/')] = $_ }
        $listed.Count | Should -Be ($entries.Count - 1)
        foreach ($x in $entries | Select-Object -Skip 1) {
            $f = $listed[$x.path]
            $f | Should -Not -BeNullOrEmpty -Because $x.path
            $f.Type | Should -Be (@{ dir = 'Directory'; file = 'File'; symlink = 'Symlink'; hardlink = 'Hardlink'; fifo = 'Fifo' }[$x.type]) -Because $x.path
            $f.Permissions | Should -Be $x.mode -Because $x.path
            $f.Uid | Should -Be $x.uid
            $f.Gid | Should -Be $x.gid
            $f.ModifiedTime | Should -Be ([DateTime]::UnixEpoch.AddSeconds($x.mtime).AddTicks([math]::Floor($x.mtime_ns / 100))) -Because $x.path
            if ($x.type -in 'symlink', 'hardlink') { $f.LinkTarget | Should -Be $x.target -Because $x.path }
            if ($x.type -in 'file', 'hardlink') { $f.Size | Should -Be $x.size }
            $acl = @(if ($x.PSObject.Properties['acl']) { $x.acl }) + @(if ($x.PSObject.Properties['default_acl']) { $x.default_acl | ForEach-Object { "default:$_" } })
            @($f.Acl) | Should -Be $acl -Because "$($x.path) ACL"
        }

        # Restore: contents, modes, times, links; owners when running as root.
        $dest = Join-Path $TestDrive "upstream-$Type-$Id"
        $r = Restore-PbsFile -Datastore $env:PBS_UPSTREAM_DATASTORE -Snapshot $snapshot -Destination $dest @keyArgs -WarningAction SilentlyContinue
        $r.Hardlinks | Should -Be @($entries | Where-Object type -EQ 'hardlink').Count
        $isRoot = -not $IsWindows -and (& id -u) -eq '0'
        # One find for every entry's mode, owner and link count (a stat per entry is slow).
        $stats = @{}
        if (-not $IsWindows) {
            $parts = (& find $dest -mindepth 1 -printf '%P\0%m %U %G %n\0') -join '' -split "`0"
            for ($i = 0; $i + 1 -lt $parts.Count; $i += 2) { $stats[$parts[$i]] = $parts[$i + 1] -split ' ' }
        }
        foreach ($x in $entries | Select-Object -Skip 1) {
            $p = Join-Path $dest $x.path
            switch ($x.type) {
                { $_ -in 'file', 'hardlink' } { (Get-FileHash $p -Algorithm SHA256).Hash.ToLowerInvariant() | Should -Be $x.sha256 -Because $x.path }
                'symlink' { (Get-Item -LiteralPath $p -Force).LinkTarget | Should -Be $x.target -Because $x.path }
            }
            if ($x.type -eq 'symlink' -or $IsWindows) { continue }
            $stat = $stats[$x.path]
            $stat | Should -Not -BeNullOrEmpty -Because "$($x.path) restored"
            [Convert]::ToInt32($stat[0], 8) | Should -Be ([Convert]::ToInt32($x.mode, 8)) -Because "$($x.path) mode"
            if ($isRoot) { "$($stat[1]):$($stat[2])" | Should -Be "$($x.uid):$($x.gid)" -Because $x.path }
            if ($x.type -in 'file', 'hardlink') { $stat[3] | Should -Be "$($x.nlink)" -Because "$($x.path) links" }
            $time = if ($x.type -eq 'dir') { [IO.Directory]::GetLastWriteTimeUtc($p) } else { [IO.File]::GetLastWriteTimeUtc($p) }
            $time | Should -Be ([DateTime]::UnixEpoch.AddSeconds($x.mtime).AddTicks([math]::Floor($x.mtime_ns / 100))) -Because $x.path
        }
        # POSIX ACLs as getfacl reads them back (Linux, where getfacl is installed: build.ps1 Test installs it).
        if ($IsLinux -and (Get-Command getfacl -ErrorAction SilentlyContinue)) {
            foreach ($x in $entries | Where-Object { $_.PSObject.Properties['acl'] -or $_.PSObject.Properties['default_acl'] }) {
                $lines = @(& getfacl -n -p -P -E -- (Join-Path $dest $x.path) | Where-Object { $_ -and -not $_.StartsWith('#') })
                if ($x.PSObject.Properties['acl']) { @($lines | Where-Object { -not $_.StartsWith('default:') }) | Should -Be @($x.acl) -Because "$($x.path) ACL" }
                @($lines | Where-Object { $_.StartsWith('default:') } | ForEach-Object { $_.Substring(8) }) | Should -Be @(if ($x.PSObject.Properties['default_acl']) { $x.default_acl }) -Because "$($x.path) default ACL"
            }
        }
    }
}

Describe 'POSIX ACLs and file capabilities from our writer''s archive (<Name>)' -ForEach @(@{ Name = 'v1'; Id = '320' }, @{ Name = 'v2'; Id = '321' }) {
    BeforeAll {
        $script:AclStore = Join-Path $TestDrive "acl-store-$Id"
        $writerArgs = @('files', '--path', $script:AclStore, '--id', $Id) + @(if ($Id -eq '321') { '--split' })
        Invoke-FixtureWriter $writerArgs | Out-Null
        $script:AclSkip = if (-not $IsLinux) { 'POSIX ACLs are restored on Linux only' } elseif (-not (Get-Command getfacl -ErrorAction SilentlyContinue)) { 'getfacl (Debian package acl) is not installed' }
    }

    It 'Get-PbsFile shows them; Restore-PbsFile writes them (getfacl) and fcaps as root (getcap)' {
        @((Get-PbsFile -Datastore $script:AclStore -Snapshot "ct/$Id" | Where-Object Name -EQ 'sub').Acl) |
            Should -Be @('default:user::rwx', 'default:user:34:rwx', 'default:group::r-x', 'default:mask::rwx', 'default:other::r-x')
        @((Get-PbsFile -Datastore $script:AclStore -Snapshot "ct/$Id" -Path /sub | Where-Object Name -EQ 'deeper').Acl) | Should -Be @('user::rwx', 'user:65534:r-x', 'group::r-x', 'group:34:rwx', 'mask::r-x', 'other::---')
        if ($script:AclSkip) { Set-ItResult -Skipped -Because $script:AclSkip; return }
        $dest = Join-Path $TestDrive "acl-$Id"
        Restore-PbsFile -Datastore $script:AclStore -Snapshot "ct/$Id" -Path /sub, /hello.txt, /ping -Destination $dest -WarningVariable w -WarningAction SilentlyContinue | Out-Null
        @($w | Where-Object { "$_" -like '*ACL*' }) | Should -BeNullOrEmpty
        @(& getfacl -n -p -P -E -- (Join-Path $dest 'sub') | Where-Object { $_ -like 'default:*' }) | Should -Be @('default:user::rwx', 'default:user:34:rwx', 'default:group::r-x', 'default:mask::rwx', 'default:other::r-x')
        @(& getfacl -n -p -P -E -- (Join-Path $dest 'sub/deeper') | Where-Object { $_ -and -not $_.StartsWith('#') }) | Should -Be @('user::rwx', 'user:65534:r-x', 'group::r-x', 'group:34:rwx', 'mask::r-x', 'other::---')
        @(& getfacl -n -p -P -E -- (Join-Path $dest 'hello.txt') | Where-Object { $_ -and -not $_.StartsWith('#') }) | Should -Be @('user::rw-', 'user:34:r--', 'group::r--', 'mask::rw-', 'other::r--')
        if ((& id -u) -eq '0' -and (Get-Command getcap -ErrorAction SilentlyContinue)) { (& getcap (Join-Path $dest 'ping')) | Should -BeLike '* cap_net_raw=ep' }
    }
}
