# The cmdlets over the wire, against our PBS-compatible server (src/PbsRestore.Server) serving the golden
# datastore (<repo>/../shared/golden, read-only): listings equal to the folder's, every archive restored
# bit-exactly (token, user ticket, Connect-PbsServer, the pipeline, fetch concurrency), the acceptance
# command, and the refusals (credentials, certificate pin, repository syntax, no source, unknown snapshot).
# One server per file (two datastore names over the same golden folder: 'golden' and 'other'); the
# acceptance test starts its own, exactly as the acceptance command describes.
BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $script:ArchiveCases = @(Get-GoldenArchiveCases)
    $script:ConcurrencyCases = @(foreach ($n in 1, 16) {
            @{ Concurrency = $n; Type = 'vm'; Id = '100'; Archive = 'drive-scsi0.img.fidx' }
            @{ Concurrency = $n; Type = 'vm'; Id = '101'; Archive = 'drive-scsi0.img.fidx' }
            @{ Concurrency = $n; Type = 'ct'; Id = '200'; Archive = 'data.didx' }
        })
    $script:FilterCases = @(
        @{ What = '-Namespace dev'; Filter = @{ Namespace = 'dev' }; Count = 1 }
        @{ What = '-BackupId 100'; Filter = @{ BackupId = '100' }; Count = 1 }
        @{ What = '-BackupId 102'; Filter = @{ BackupId = '102' }; Count = 1 }
        @{ What = '-Latest'; Filter = @{ Latest = $true }; Count = 4 }
        @{ What = '-BackupType ct'; Filter = @{ BackupType = 'ct' }; Count = 1 }
        @{ What = '-MaxDepth 0'; Filter = @{ MaxDepth = 0 }; Count = 3 }
        @{ What = '-Namespace dev -BackupType vm -Latest'; Filter = @{ Namespace = 'dev'; BackupType = 'vm'; Latest = $true }; Count = 1 }
    )
    $script:BadRepositoryCases = @(
        @{ Repository = 'not a repository' }
        @{ Repository = 'user@pbs!tok@127.0.0.1:99999:golden' }
        @{ Repository = 'user@pbs@[zz::1]:golden' }
        @{ Repository = '127.0.0.1:8007:bad/store' }
    )
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot '../../PbsRestore.psd1') -Force
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Join-Path $PSScriptRoot 'ServerHelpers.psm1') -Force
    $script:Golden = Get-GoldenManifest
    $script:Datastore = Get-GoldenDatastore
    $script:Vm100 = Get-GoldenSnapshot vm 100
    $script:Vm101 = Get-GoldenSnapshot vm 101
    $script:Vm100Scsi0 = Get-GoldenArchive $script:Vm100 'drive-scsi0.img.fidx'
    $script:Vm101Scsi0 = Get-GoldenArchive $script:Vm101 'drive-scsi0.img.fidx'
    $script:ScryptKey = Get-GoldenPath $script:Vm101.key_file

    $script:SavedEnv = Save-PbsEnvironment
    Clear-PbsEnvironment

    $script:TokenId = 'tester@pbs!pester'
    $script:TokenSecret = 'srv-token-0b6e41d2'
    $script:UserId = 'alice@pbs'
    $script:UserPassword = 'srv-alice-pw-93c7'
    $script:Server = Start-TestServer -Datastore ([ordered]@{ golden = $script:Datastore; other = $script:Datastore }) `
        -Token "$($script:TokenId):$($script:TokenSecret)" -User "$($script:UserId):$($script:UserPassword)" `
        -LogFolder (Join-Path $TestDrive 'server')
    $script:Port = $script:Server.Port
    $script:Fp = $script:Server.Fingerprint
    $script:TokenRepo = "$($script:TokenId)@127.0.0.1:$($script:Port):golden"
    $script:UserRepo = "$($script:UserId)@127.0.0.1:$($script:Port):golden"
    $script:HostRepo = "127.0.0.1:$($script:Port):golden"
    $script:TokenCred = New-PbsCredential $script:TokenId $script:TokenSecret
    $script:UserCred = New-PbsCredential $script:UserId $script:UserPassword
    # A well-formed fingerprint that is not the server's (its first byte changed).
    $first = [Convert]::ToInt32($script:Fp.Substring(0, 2), 16)
    $script:WrongFp = ('{0:x2}' -f ($first -bxor 0xff)) + $script:Fp.Substring(2)

    $script:LocalAll = @(Get-PbsSnapshot -Datastore $script:Datastore -ErrorAction Stop)

    # One line per snapshot with every listed field (all but Location), files in listed order.
    function script:ConvertTo-SnapshotLine {
        param($Snapshot)
        $files = @($Snapshot.Files | ForEach-Object { '{0}:{1}:{2}' -f $_.Name, $_.Size, $_.CryptMode }) -join ','
        '{0}|{1}|{2}|{3}|{4}|{5}|{6}|{7}|{8}|{9}|{10}|{11}' -f $Snapshot.Namespace, $Snapshot.Snapshot, $Snapshot.BackupType,
            $Snapshot.BackupId, $Snapshot.BackupTime.ToString('o', [cultureinfo]::InvariantCulture), $Snapshot.BackupTime.Kind,
            $Snapshot.Encrypted, $Snapshot.Size, $Snapshot.KeyFingerprint, $Snapshot.Owner, $Snapshot.Comment, $files
    }

    function script:Assert-SameListing {
        param([object[]] $Remote, [object[]] $Local)
        $Remote.Count | Should -Be $Local.Count
        $r = @($Remote | ForEach-Object { ConvertTo-SnapshotLine $_ })
        $l = @($Local | ForEach-Object { ConvertTo-SnapshotLine $_ })
        # Same snapshots with the same fields, and in the same order.
        $r | Should -Be $l
        foreach ($s in $Remote) { $s.GetType().FullName | Should -Be 'PbsRestore.Sources.SnapshotInfo' }
    }

    function script:Get-KeyArgs {
        param($Snapshot)
        if ($Snapshot.encrypted) {
            @{ Keyfile = (Get-GoldenPath $Snapshot.key_file); KeyPassword = (New-TestPassword $Snapshot.key_password) }
        } else { @{} }
    }

    # How often the server logged a reader session on a snapshot (waits briefly for at least Minimum).
    function script:Get-ReaderSessionCount {
        param([Parameter(Mandatory)] [string] $Where, [int] $Minimum = 0)
        $deadline = [DateTime]::UtcNow.AddSeconds(5)
        do {
            $n = ([regex]::Matches((Get-TestServerLog $script:Server), "opened golden:$([regex]::Escape($Where)) ")).Count
            if ($n -ge $Minimum) { return $n }
            Start-Sleep -Milliseconds 100
        } while ([DateTime]::UtcNow -lt $deadline)
        $n
    }

    # Get-Errors (ServerHelpers.psm1) runs a command and returns its errors instead of failing.
}

AfterAll {
    if ($null -ne (Get-Variable -Name DefaultPbsServer -Scope Global -ValueOnly -ErrorAction SilentlyContinue)) { Disconnect-PbsServer }
    Stop-TestServer $script:Server
    Restore-PbsEnvironment $script:SavedEnv
    Remove-Module PbsRestore, TestHelpers, ServerHelpers -ErrorAction SilentlyContinue
}

Describe 'PbsRestore cmdlets over the wire' {
    AfterEach {
        # Every test starts without PBS_* variables and without a session default connection.
        if ($null -ne (Get-Variable -Name DefaultPbsServer -Scope Global -ValueOnly -ErrorAction SilentlyContinue)) { Disconnect-PbsServer }
        Clear-PbsEnvironment
    }

    Describe 'Test server' {
        It 'listens on loopback and reports a SHA-256 fingerprint' {
            $script:Server.Url | Should -BeExactly "https://127.0.0.1:$($script:Port)"
            $script:Fp | Should -Match '^[0-9a-f]{2}(:[0-9a-f]{2}){31}$'
            $script:Server.Process.HasExited | Should -BeFalse
        }
    }

    Describe 'Get-PbsSnapshot over the wire returns what the folder listing returns' {
        It 'the folder listing has the 4 golden snapshots' {
            $script:LocalAll.Count | Should -Be $script:Golden.snapshots.Count
            $script:LocalAll.Count | Should -Be 4
        }

        It '-Repository with an API token (secret from PBS_PASSWORD)' {
            $env:PBS_PASSWORD = $script:TokenSecret
            $r = @(Get-PbsSnapshot -Repository $script:TokenRepo -Fingerprint $script:Fp -ErrorAction Stop)
            Assert-SameListing $r $script:LocalAll
            foreach ($s in $r) { $s.Location | Should -BeExactly $script:TokenRepo }
        }

        It '-Repository without user and -Credential of a user (password login, ticket)' {
            $r = @(Get-PbsSnapshot -Repository $script:HostRepo -Fingerprint $script:Fp -Credential $script:UserCred -ErrorAction Stop)
            Assert-SameListing $r $script:LocalAll
            foreach ($s in $r) { $s.Location | Should -BeExactly $script:UserRepo }
        }

        It '-Repository naming the user and -Credential of the same user' {
            $r = @(Get-PbsSnapshot -Repository $script:UserRepo -Fingerprint $script:Fp -Credential $script:UserCred -ErrorAction Stop)
            Assert-SameListing $r $script:LocalAll
        }

        It '-Credential of an API token (user@realm!token and its secret)' {
            $r = @(Get-PbsSnapshot -Repository $script:HostRepo -Fingerprint $script:Fp -Credential $script:TokenCred -ErrorAction Stop)
            Assert-SameListing $r $script:LocalAll
            foreach ($s in $r) { $s.Location | Should -BeExactly $script:TokenRepo }
        }

        It 'the session default from Connect-PbsServer (no source parameter)' {
            $c = Connect-PbsServer -Repository $script:TokenRepo -Fingerprint $script:Fp -Credential $script:TokenCred -ErrorAction Stop
            $c | Should -BeOfType ([PbsRestore.PowerShell.PbsServerConnection])
            $c.Server | Should -BeExactly "127.0.0.1:$($script:Port)"
            $c.AuthId | Should -BeExactly $script:TokenId
            $c.Datastore | Should -BeExactly 'golden'
            $c.Repository | Should -BeExactly $script:TokenRepo
            $c.Fingerprint | Should -BeExactly $script:Fp
            $c.IsConnected | Should -BeTrue
            [object]::ReferenceEquals($global:DefaultPbsServer, $c) | Should -BeTrue
            $r = @(Get-PbsSnapshot -ErrorAction Stop)
            Assert-SameListing $r $script:LocalAll
        }

        It 'Connect-PbsServer as a user with PBS_PASSWORD and PBS_FINGERPRINT' {
            $env:PBS_PASSWORD = $script:UserPassword
            $env:PBS_FINGERPRINT = $script:Fp
            $c = Connect-PbsServer $script:UserRepo -ErrorAction Stop
            $c.AuthId | Should -BeExactly $script:UserId
            $r = @(Get-PbsSnapshot -ErrorAction Stop)
            Assert-SameListing $r $script:LocalAll
        }

        It 'an explicit -Connection (-NotDefault) and -Store of another datastore' {
            $c = Connect-PbsServer -Repository $script:TokenRepo -Fingerprint $script:Fp -Credential $script:TokenCred -NotDefault -ErrorAction Stop
            try {
                Get-Variable -Name DefaultPbsServer -Scope Global -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
                Assert-SameListing @(Get-PbsSnapshot -Connection $c -ErrorAction Stop) $script:LocalAll
                $other = @(Get-PbsSnapshot -Connection $c -Store other -ErrorAction Stop)
                Assert-SameListing $other $script:LocalAll
                foreach ($s in $other) { $s.Location | Should -BeExactly "$($script:TokenId)@127.0.0.1:$($script:Port):other" }
            } finally { Disconnect-PbsServer -Connection $c }
        }

        It 'PBS_REPOSITORY with PBS_PASSWORD and PBS_FINGERPRINT (no parameters)' {
            $env:PBS_REPOSITORY = $script:TokenRepo
            $env:PBS_PASSWORD = $script:TokenSecret
            $env:PBS_FINGERPRINT = $script:Fp
            Assert-SameListing @(Get-PbsSnapshot -ErrorAction Stop) $script:LocalAll
        }

        It '<What> lists what it lists on the folder' -ForEach $script:FilterCases {
            $env:PBS_PASSWORD = $script:TokenSecret
            $local = @(Get-PbsSnapshot -Datastore $script:Datastore @Filter -ErrorAction Stop)
            $local.Count | Should -Be $Count
            $remote = @(Get-PbsSnapshot -Repository $script:TokenRepo -Fingerprint $script:Fp @Filter -ErrorAction Stop)
            Assert-SameListing $remote $local
            $c = Connect-PbsServer -Repository $script:HostRepo -Fingerprint $script:Fp -Credential $script:UserCred -ErrorAction Stop
            Assert-SameListing @(Get-PbsSnapshot @Filter -ErrorAction Stop) $local
        }

        It '-Namespace dev lists vm/102 in namespace dev' {
            $env:PBS_PASSWORD = $script:TokenSecret
            $r = @(Get-PbsSnapshot -Repository $script:TokenRepo -Fingerprint $script:Fp -Namespace dev -ErrorAction Stop)
            $r.Count | Should -Be 1
            $r[0].Snapshot | Should -BeExactly 'vm/102/2024-05-01T10:15:00Z'
            $r[0].Namespace | Should -BeExactly 'dev'
        }

        It 'fields match MANIFEST.json for every snapshot (over the wire)' {
            $env:PBS_PASSWORD = $script:TokenSecret
            $r = @(Get-PbsSnapshot -Repository $script:TokenRepo -Fingerprint $script:Fp -ErrorAction Stop)
            foreach ($e in $script:Golden.snapshots) {
                $s = @($r | Where-Object { $_.Namespace -eq $e.namespace -and $_.Snapshot -eq (Get-SnapshotSpec $e) })
                $s.Count | Should -Be 1
                $s[0].BackupTime | Should -Be ([DateTimeOffset]::FromUnixTimeSeconds([long]$e.backup_time).UtcDateTime)
                $s[0].BackupTime.Kind | Should -Be ([System.DateTimeKind]::Utc)
                $s[0].Encrypted | Should -Be ([bool]$e.encrypted)
                if ($e.encrypted) { $s[0].KeyFingerprint | Should -BeExactly $e.key_fingerprint } else { $s[0].KeyFingerprint | Should -BeNullOrEmpty }
                $s[0].Owner | Should -BeExactly $e.group_owner_file.content.Trim()
                @($s[0].Files.Name | Sort-Object) | Should -Be @($e.archives.name | Sort-Object)
            }
        }
    }

    Describe 'Restore-PbsImage over the wire restores every golden archive bit-exactly' {
        It '-Repository (token, PBS_PASSWORD): <Spec> (ns "<Namespace>") <Stored>' -ForEach $script:ArchiveCases {
            $env:PBS_PASSWORD = $script:TokenSecret
            $out = New-OutputFolder $TestDrive
            $dest = Join-Path $out 'restored.bin'
            $keyArgs = Get-KeyArgs $Snap
            $r = @(Restore-PbsImage -Repository $script:TokenRepo -Fingerprint $script:Fp -Namespace $Namespace -Snapshot $Spec -Archive $Display -Destination $dest @keyArgs -ErrorAction Stop)
            $r.Count | Should -Be 1
            $r[0].GetType().FullName | Should -Be 'PbsRestore.Restore.RestoreResult'
            $r[0].LogicalBytes | Should -Be ([long]$Arch.plaintext_size)
            Assert-Restored $dest $Arch
            @(Get-FolderEntries $out) | Should -Be @('restored.bin')
        }

        It '-Credential (user ticket): <Spec> (ns "<Namespace>") <Stored>' -ForEach $script:ArchiveCases {
            $out = New-OutputFolder $TestDrive
            $dest = Join-Path $out 'restored.bin'
            $keyArgs = Get-KeyArgs $Snap
            $null = Restore-PbsImage -Repository $script:HostRepo -Fingerprint $script:Fp -Credential $script:UserCred -Namespace $Namespace -Snapshot $Spec -Archive $Stored -Destination $dest @keyArgs -ErrorAction Stop
            Assert-Restored $dest $Arch
        }

        It 'Connect-PbsServer default: <Spec> (ns "<Namespace>") <Stored>' -ForEach $script:ArchiveCases {
            $null = Connect-PbsServer -Repository $script:TokenRepo -Fingerprint $script:Fp -Credential $script:TokenCred -ErrorAction Stop
            $out = New-OutputFolder $TestDrive
            $dest = Join-Path $out 'restored.bin'
            $keyArgs = Get-KeyArgs $Snap
            $null = Restore-PbsImage -Namespace $Namespace -Snapshot $Spec -Archive $Display -Destination $dest @keyArgs -ErrorAction Stop
            Assert-Restored $dest $Arch
        }

        It 'the encrypted vm/101 with the key password from PBS_ENCRYPTION_PASSWORD' {
            $env:PBS_PASSWORD = $script:TokenSecret
            $env:PBS_ENCRYPTION_PASSWORD = $script:Vm101.key_password
            $dest = Join-Path (New-OutputFolder $TestDrive) 'vm101.img'
            $null = Restore-PbsImage -Repository $script:TokenRepo -Fingerprint $script:Fp -Snapshot (Get-SnapshotSpec $script:Vm101) -Archive drive-scsi0.img -Destination $dest -Keyfile $script:ScryptKey -ErrorAction Stop
            Assert-Restored $dest $script:Vm101Scsi0
        }

        It "'vm/100' (latest of the group) restores the latest snapshot" {
            $env:PBS_PASSWORD = $script:TokenSecret
            $dest = Join-Path (New-OutputFolder $TestDrive) 'latest.img'
            $r = Restore-PbsImage -Repository $script:TokenRepo -Fingerprint $script:Fp -Snapshot vm/100 -Archive drive-scsi0.img -Destination $dest -ErrorAction Stop
            $r.Snapshot | Should -Match 'vm/100/2024-05-01T10:00:00Z'
            Assert-Restored $dest $script:Vm100Scsi0
        }

        It '-FetchConcurrency <Concurrency>: <Type>/<Id> <Archive>' -ForEach $script:ConcurrencyCases {
            $env:PBS_PASSWORD = $script:TokenSecret
            $snap = Get-GoldenSnapshot $Type $Id
            $arch = Get-GoldenArchive $snap $Archive
            $dest = Join-Path (New-OutputFolder $TestDrive) 'restored.bin'
            $keyArgs = Get-KeyArgs $snap
            $r = Restore-PbsImage -Repository $script:TokenRepo -Fingerprint $script:Fp -Snapshot (Get-SnapshotSpec $snap) -Archive $Archive -Destination $dest -FetchConcurrency $Concurrency @keyArgs -ErrorAction Stop
            $r.LogicalBytes | Should -Be ([long]$arch.plaintext_size)
            Assert-Restored $dest $arch
        }
    }

    Describe 'Get-PbsSnapshot -Repository | Restore-PbsImage restores from the server' {
        It 'restores vm/100 drive-scsi0.img from the listed server, with no -Datastore, no variables, no connection' {
            $env:PBS_PASSWORD = $script:TokenSecret
            $snap = @(Get-PbsSnapshot -Repository $script:TokenRepo -Fingerprint $script:Fp -BackupType vm -BackupId 100 -ErrorAction Stop)
            $snap.Count | Should -Be 1
            $snap[0].Location | Should -BeExactly $script:TokenRepo
            Test-Path -LiteralPath $snap[0].Location | Should -BeFalse -Because 'the location is a repository, no folder'
            # Nothing but the snapshot object says where to restore from.
            Clear-PbsEnvironment
            $before = Get-ReaderSessionCount 'vm/100/2024-05-01T10:00:00Z'
            $dest = Join-Path (New-OutputFolder $TestDrive) 'piped.img'
            $r = @($snap | Restore-PbsImage -Archive drive-scsi0.img -Destination $dest -ErrorAction Stop)
            $r.Count | Should -Be 1
            $r[0].Snapshot | Should -Match ([regex]::Escape('vm/100/2024-05-01T10:00:00Z'))
            $r[0].Destination | Should -BeExactly $dest
            Assert-Restored $dest $script:Vm100Scsi0
            # The server saw the reader session of this restore.
            Get-ReaderSessionCount 'vm/100/2024-05-01T10:00:00Z' -Minimum ($before + 1) | Should -BeGreaterThan $before
        }

        It 'restores the encrypted vm/101 listed with a user -Credential (the listing keeps the credentials)' {
            $before = Get-ReaderSessionCount 'vm/101/2024-05-01T10:05:00Z'
            $dest = Join-Path (New-OutputFolder $TestDrive) 'piped101.img'
            $r = Get-PbsSnapshot -Repository $script:HostRepo -Fingerprint $script:Fp -Credential $script:UserCred -BackupId 101 -ErrorAction Stop |
                Restore-PbsImage -Archive drive-scsi0.img -Destination $dest -Keyfile $script:ScryptKey -KeyPassword (New-TestPassword $script:Vm101.key_password) -ErrorAction Stop
            $r.Snapshot | Should -Match ([regex]::Escape('vm/101/2024-05-01T10:05:00Z'))
            Assert-Restored $dest $script:Vm101Scsi0
            Get-ReaderSessionCount 'vm/101/2024-05-01T10:05:00Z' -Minimum ($before + 1) | Should -BeGreaterThan $before
        }

        It 'restores ns dev vm/102 from a Connect-PbsServer listing after the connection stays the default' {
            $null = Connect-PbsServer -Repository $script:TokenRepo -Fingerprint $script:Fp -Credential $script:TokenCred -ErrorAction Stop
            $arch = Get-GoldenArchive (Get-GoldenSnapshot vm 102) 'drive-scsi0.img.fidx'
            $dest = Join-Path (New-OutputFolder $TestDrive) 'piped102.img'
            $r = Get-PbsSnapshot -Namespace dev -ErrorAction Stop | Restore-PbsImage -Archive drive-scsi0.img -Destination $dest -ErrorAction Stop
            $r.Snapshot | Should -Match ([regex]::Escape('vm/102/2024-05-01T10:15:00Z'))
            Assert-Restored $dest $arch
        }

        It 'pipes one snapshot per archive name: every root snapshot''s config blob' {
            $env:PBS_PASSWORD = $script:TokenSecret
            foreach ($s in @(Get-PbsSnapshot -Repository $script:TokenRepo -Fingerprint $script:Fp -BackupType vm -MaxDepth 0 -ErrorAction Stop)) {
                $g = Get-GoldenSnapshot $s.BackupType $s.BackupId
                $dest = Join-Path (New-OutputFolder $TestDrive) 'conf'
                $keyArgs = Get-KeyArgs $g
                $null = $s | Restore-PbsImage -Archive qemu-server.conf -Destination $dest @keyArgs -ErrorAction Stop
                Assert-Restored $dest (Get-GoldenArchive $g 'qemu-server.conf.blob')
            }
        }
    }

    Describe 'Acceptance: token repository from PBS_PASSWORD, restore drive-scsi0.img of vm/100' {
        BeforeAll {
            $script:StoreCopy = Copy-GoldenDatastore -Parent (Join-Path $TestDrive 'acceptance') -Name 'store'
            $script:Acceptance = Start-TestServer -Datastore @{ store = $script:StoreCopy } -Token 'user@pbs!tok:SECRET' -LogFolder (Join-Path $TestDrive 'acceptance-log')
        }
        AfterAll {
            Stop-TestServer $script:Acceptance
        }

        It 'restores bit-exactly' {
            $PORT = $script:Acceptance.Port
            $fp = $script:Acceptance.Fingerprint
            $file = Join-Path (New-OutputFolder $TestDrive) 'drive-scsi0.img'

            $env:PBS_PASSWORD = 'SECRET'; Restore-PbsImage -Repository "user@pbs!tok@127.0.0.1:${PORT}:store" -Fingerprint $fp -Snapshot vm/100/2024-05-01T10:00:00Z -Archive drive-scsi0.img -Destination $file -ErrorAction Stop

            Assert-Restored $file $script:Vm100Scsi0
            Get-Sha256 $file | Should -BeExactly $script:Vm100Scsi0.plaintext_sha256
        }
    }

    Describe 'Refusals over the wire' {
        Context 'credentials' {
            It 'a wrong token secret (PBS_PASSWORD): AuthenticationFailed, clear message, no file' {
                $env:PBS_PASSWORD = 'wrong-token-secret-1234'
                $dest = Join-Path (New-OutputFolder $TestDrive) 'x.img'
                $errs = Get-Errors { Restore-PbsImage -Repository $script:TokenRepo -Fingerprint $script:Fp -Snapshot vm/100/2024-05-01T10:00:00Z -Archive drive-scsi0.img -Destination $dest }
                $errs.Count | Should -Be 1
                $errs[0].FullyQualifiedErrorId | Should -BeExactly 'AuthenticationFailed,PbsRestore.PowerShell.Commands.RestorePbsImageCommand'
                $errs[0].CategoryInfo.Category | Should -Be 'AuthenticationError'
                $errs[0].Exception.Message | Should -Match 'authenticat'
                $errs[0].Exception.Message | Should -Not -Match 'wrong-token-secret-1234'
                Assert-NothingWritten $dest
            }

            It 'a wrong token secret (-Credential): AuthenticationFailed from Get-PbsSnapshot' {
                $errs = Get-Errors { Get-PbsSnapshot -Repository $script:HostRepo -Fingerprint $script:Fp -Credential (New-PbsCredential $script:TokenId 'wrong-token-secret-5678') }
                $errs.Count | Should -Be 1
                $errs[0].FullyQualifiedErrorId | Should -BeExactly 'AuthenticationFailed,PbsRestore.PowerShell.Commands.GetPbsSnapshotCommand'
            }

            It 'a wrong user password (-Credential): AuthenticationFailed naming the user, no file' {
                $dest = Join-Path (New-OutputFolder $TestDrive) 'x.img'
                $errs = Get-Errors { Restore-PbsImage -Repository $script:HostRepo -Fingerprint $script:Fp -Credential (New-PbsCredential $script:UserId 'wrong-user-password-1') -Snapshot vm/100/2024-05-01T10:00:00Z -Archive drive-scsi0.img -Destination $dest }
                $errs.Count | Should -Be 1
                $errs[0].FullyQualifiedErrorId | Should -BeExactly 'AuthenticationFailed,PbsRestore.PowerShell.Commands.RestorePbsImageCommand'
                $errs[0].Exception.Message | Should -Match 'authenticat|password'
                $errs[0].Exception.Message | Should -Not -Match 'wrong-user-password-1'
                Assert-NothingWritten $dest
            }

            It 'an unknown token id: AuthenticationFailed' {
                $errs = Get-Errors { Get-PbsSnapshot -Repository $script:HostRepo -Fingerprint $script:Fp -Credential (New-PbsCredential 'tester@pbs!nosuch' $script:TokenSecret) }
                $errs.Count | Should -Be 1
                Get-ErrorIdOf $errs[0] | Should -BeExactly 'AuthenticationFailed'
            }

            It 'Connect-PbsServer with a wrong secret: AuthenticationFailed and no session default' {
                $errs = Get-Errors { Connect-PbsServer -Repository $script:TokenRepo -Fingerprint $script:Fp -Credential (New-PbsCredential $script:TokenId 'wrong-token-secret-9') }
                $errs.Count | Should -Be 1
                $errs[0].FullyQualifiedErrorId | Should -BeExactly 'AuthenticationFailed,PbsRestore.PowerShell.Commands.ConnectPbsServerCommand'
                Get-Variable -Name DefaultPbsServer -Scope Global -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
                # Issue 11, item 12: the server's own "authentication failed - ..." is not prefixed with the same words.
                $errs[0].Exception.Message | Should -BeLike '*authentication failed*'
                $errs[0].Exception.Message | Should -Not -BeLike '*authentication failed*authentication failed*'
                $errs[0].TargetObject | Should -Be $script:TokenRepo
                $errs[0].ErrorDetails.RecommendedAction | Should -BeLike '*user or API token id*secret*'
            }

            # Issue 11, item 12: a server that accepts the connection and never answers. A loopback listener that
            # never reads: the kernel completes the TCP handshake, the TLS ClientHello gets no answer.
            It 'a server that never answers fails with ConnectionTimeout after PBS_RESTORE_TIMEOUT seconds' {
                $listener = [Net.Sockets.TcpListener]::new([Net.IPAddress]::Loopback, 0)
                $listener.Start()
                $saved = $env:PBS_RESTORE_TIMEOUT
                try {
                    $env:PBS_RESTORE_TIMEOUT = '2'
                    $port = $listener.LocalEndpoint.Port
                    $clock = [Diagnostics.Stopwatch]::StartNew()
                    $errs = Get-Errors { Connect-PbsServer -Repository "$($script:TokenId)@127.0.0.1:$($port):golden" -Fingerprint $script:Fp -Credential $script:TokenCred }
                    $clock.Stop()
                    $errs.Count | Should -Be 1
                    $errs[0].FullyQualifiedErrorId | Should -BeExactly 'ConnectionTimeout,PbsRestore.PowerShell.Commands.ConnectPbsServerCommand'
                    $errs[0].Exception.Message | Should -BeLike "*127.0.0.1:$port*2 s*PBS_RESTORE_TIMEOUT*"
                    $errs[0].ErrorDetails.RecommendedAction | Should -BeLike '*PBS_RESTORE_TIMEOUT*'
                    $clock.Elapsed.TotalSeconds | Should -BeGreaterOrEqual 1.5
                    $clock.Elapsed.TotalSeconds | Should -BeLessThan 15
                } finally {
                    $env:PBS_RESTORE_TIMEOUT = $saved
                    $listener.Stop()
                }
            }

            # Issue 11, items 6 and 7.
            It 'a user without a realm (<Where>) is named as such, not as a repository syntax error' -ForEach @(
                @{ Where = '-Credential root'; Run = { Connect-PbsServer -Repository $script:HostRepo -Fingerprint $script:Fp -Credential (New-PbsCredential 'root' 'pw-1234') } }
                @{ Where = 'root@host:store'; Run = { Connect-PbsServer -Repository "root@127.0.0.1:$($script:Port):golden" -Fingerprint $script:Fp -Credential (New-PbsCredential 'root' 'pw-1234') } }
                @{ Where = 'Get-PbsSnapshot -Credential root'; Run = { Get-PbsSnapshot -Repository $script:HostRepo -Fingerprint $script:Fp -Credential (New-PbsCredential 'root' 'pw-1234') } }
            ) {
                $errs = Get-Errors $Run
                $errs.Count | Should -Be 1
                Get-ErrorIdOf $errs[0] | Should -BeExactly 'UserWithoutRealm'
                $errs[0].Exception.Message | Should -BeExactly "user 'root' has no realm: use root@pam or root@pbs"
            }

            It 'a token id without a realm keeps its token name in the advice' {
                $errs = Get-Errors { Connect-PbsServer -Repository $script:HostRepo -Fingerprint $script:Fp -Credential (New-PbsCredential 'tester!pester' 'pw-1234') }
                $errs[0].Exception.Message | Should -BeExactly "user 'tester!pester' has no realm: use tester@pam!pester or tester@pbs!pester"
            }

            It 'Connect-PbsServer to a datastore that does not exist: DatastoreNotFound naming those that do, no session default' {
                $errs = Get-Errors { Connect-PbsServer -Repository "$($script:TokenId)@127.0.0.1:$($script:Port):gloden" -Fingerprint $script:Fp -Credential $script:TokenCred }
                $errs.Count | Should -Be 1
                $errs[0].FullyQualifiedErrorId | Should -BeExactly 'DatastoreNotFound,PbsRestore.PowerShell.Commands.ConnectPbsServerCommand'
                $errs[0].Exception.Message | Should -BeExactly "datastore 'gloden' does not exist on 127.0.0.1:$($script:Port); datastores there: golden, other"
                Get-Variable -Name DefaultPbsServer -Scope Global -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            }

            It 'Connect-PbsServer warns when the datastore name looks like a port' {
                $all = @(Connect-PbsServer -Repository "$($script:TokenId)@127.0.0.1:$($script:Port):8007" -Fingerprint $script:Fp -Credential $script:TokenCred -ErrorAction Continue 3>&1 2>&1)
                $warnings = @($all | Where-Object { $_ -is [System.Management.Automation.WarningRecord] })
                $warnings | Should -HaveCount 1
                $warnings[0].Message | Should -BeLike "The datastore name '8007' looks like a port number*host:port:datastore*"
                $errs = @($all | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] })
                Get-ErrorIdOf $errs[0] | Should -BeExactly 'DatastoreNotFound'
            }

            It '-Credential wins over a wrong PBS_PASSWORD' {
                $env:PBS_PASSWORD = 'wrong-token-secret-1234'
                $dest = Join-Path (New-OutputFolder $TestDrive) 'x.img'
                $null = Restore-PbsImage -Repository $script:HostRepo -Fingerprint $script:Fp -Credential $script:TokenCred -Snapshot vm/100/2024-05-01T10:00:00Z -Archive drive-scsi0.img -Destination $dest -ErrorAction Stop
                Assert-Restored $dest $script:Vm100Scsi0
            }
        }

        Context 'certificate' {
            It 'a wrong fingerprint: CertificateFingerprintMismatch showing the real one, no file' {
                $env:PBS_PASSWORD = $script:TokenSecret
                $dest = Join-Path (New-OutputFolder $TestDrive) 'x.img'
                $errs = Get-Errors { Restore-PbsImage -Repository $script:TokenRepo -Fingerprint $script:WrongFp -Snapshot vm/100/2024-05-01T10:00:00Z -Archive drive-scsi0.img -Destination $dest }
                $errs.Count | Should -Be 1
                $errs[0].FullyQualifiedErrorId | Should -BeExactly 'CertificateFingerprintMismatch,PbsRestore.PowerShell.Commands.RestorePbsImageCommand'
                $errs[0].Exception.Message | Should -BeLike "*$($script:Fp)*"
                $errs[0].Exception.Message | Should -BeLike "*$($script:WrongFp)*"
                Assert-NothingWritten $dest
            }

            It 'a wrong PBS_FINGERPRINT: CertificateFingerprintMismatch from Get-PbsSnapshot' {
                $env:PBS_PASSWORD = $script:TokenSecret
                $env:PBS_FINGERPRINT = $script:WrongFp
                $errs = Get-Errors { Get-PbsSnapshot -Repository $script:TokenRepo }
                $errs.Count | Should -Be 1
                $errs[0].FullyQualifiedErrorId | Should -BeExactly 'CertificateFingerprintMismatch,PbsRestore.PowerShell.Commands.GetPbsSnapshotCommand'
                $errs[0].Exception.Message | Should -BeLike "*$($script:Fp)*"
            }

            It '-Fingerprint wins over a wrong PBS_FINGERPRINT' {
                $env:PBS_PASSWORD = $script:TokenSecret
                $env:PBS_FINGERPRINT = $script:WrongFp
                Assert-SameListing @(Get-PbsSnapshot -Repository $script:TokenRepo -Fingerprint $script:Fp -ErrorAction Stop) $script:LocalAll
            }

            It 'no fingerprint on the self-signed server: CertificateUntrusted showing the fingerprint, no file' {
                $env:PBS_PASSWORD = $script:TokenSecret
                $dest = Join-Path (New-OutputFolder $TestDrive) 'x.img'
                $errs = Get-Errors { Restore-PbsImage -Repository $script:TokenRepo -Snapshot vm/100/2024-05-01T10:00:00Z -Archive drive-scsi0.img -Destination $dest }
                $errs.Count | Should -Be 1
                $errs[0].FullyQualifiedErrorId | Should -BeExactly 'CertificateUntrusted,PbsRestore.PowerShell.Commands.RestorePbsImageCommand'
                $errs[0].Exception.Message | Should -BeLike "*$($script:Fp)*"
                Assert-NothingWritten $dest
            }

            It 'no fingerprint: CertificateUntrusted from Connect-PbsServer, Get-PbsDatastore and Get-PbsNamespace' {
                $env:PBS_PASSWORD = $script:TokenSecret
                foreach ($cmd in 'Connect-PbsServer', 'Get-PbsDatastore', 'Get-PbsNamespace') {
                    $errs = Get-Errors { & $cmd -Repository $script:TokenRepo }
                    $errs.Count | Should -Be 1 -Because $cmd
                    Get-ErrorIdOf $errs[0] | Should -BeExactly 'CertificateUntrusted' -Because $cmd
                    $errs[0].Exception.Message | Should -BeLike "*$($script:Fp)*" -Because $cmd
                }
            }
        }

        Context 'repository syntax and missing source' {
            It 'a bad repository ''<Repository>'': RepositoryInvalid from every command' -ForEach $script:BadRepositoryCases {
                $env:PBS_PASSWORD = $script:TokenSecret
                $dest = Join-Path (New-OutputFolder $TestDrive) 'x.img'
                $checks = @(
                    @{ Cmd = 'RestorePbsImageCommand'; Run = { Restore-PbsImage -Repository $Repository -Fingerprint $script:Fp -Snapshot vm/100/2024-05-01T10:00:00Z -Archive drive-scsi0.img -Destination $dest } }
                    @{ Cmd = 'GetPbsSnapshotCommand'; Run = { Get-PbsSnapshot -Repository $Repository -Fingerprint $script:Fp } }
                    @{ Cmd = 'ConnectPbsServerCommand'; Run = { Connect-PbsServer -Repository $Repository -Fingerprint $script:Fp } }
                    @{ Cmd = 'GetPbsDatastoreCommand'; Run = { Get-PbsDatastore -Repository $Repository -Fingerprint $script:Fp } }
                    @{ Cmd = 'GetPbsNamespaceCommand'; Run = { Get-PbsNamespace -Repository $Repository -Fingerprint $script:Fp } }
                )
                foreach ($c in $checks) {
                    $errs = Get-Errors $c.Run
                    $errs.Count | Should -Be 1 -Because $c.Cmd
                    $errs[0].FullyQualifiedErrorId | Should -BeExactly "RepositoryInvalid,PbsRestore.PowerShell.Commands.$($c.Cmd)"
                    $errs[0].Exception.Message | Should -BeLike "*$([WildcardPattern]::Escape($Repository))*"
                }
                Assert-NothingWritten $dest
            }

            It 'a bad PBS_REPOSITORY: RepositoryInvalid' {
                $env:PBS_REPOSITORY = 'not a repository'
                $errs = Get-Errors { Get-PbsSnapshot }
                $errs.Count | Should -Be 1
                $errs[0].FullyQualifiedErrorId | Should -BeExactly 'RepositoryInvalid,PbsRestore.PowerShell.Commands.GetPbsSnapshotCommand'
            }

            It 'no source at all (no connection, no PBS_REPOSITORY): NoSource from every command, no file' {
                $dest = Join-Path (New-OutputFolder $TestDrive) 'x.img'
                $checks = @(
                    @{ Cmd = 'RestorePbsImageCommand'; Run = { Restore-PbsImage -Snapshot vm/100/2024-05-01T10:00:00Z -Archive drive-scsi0.img -Destination $dest } }
                    @{ Cmd = 'GetPbsSnapshotCommand'; Run = { Get-PbsSnapshot } }
                    @{ Cmd = 'GetPbsNamespaceCommand'; Run = { Get-PbsNamespace } }
                    @{ Cmd = 'GetPbsDatastoreCommand'; Run = { Get-PbsDatastore } }
                )
                foreach ($c in $checks) {
                    $errs = Get-Errors $c.Run
                    $errs.Count | Should -Be 1 -Because $c.Cmd
                    $errs[0].FullyQualifiedErrorId | Should -BeExactly "NoSource,PbsRestore.PowerShell.Commands.$($c.Cmd)"
                    $errs[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
                }
                Assert-NothingWritten $dest
            }
        }

        Context 'snapshots and archives' {
            It 'an unknown snapshot ''<Snapshot>'': SnapshotNotFound, no file' -ForEach @(
                @{ Snapshot = 'vm/999/2024-05-01T10:00:00Z' }
                @{ Snapshot = 'vm/100/2024-05-01T10:00:01Z' }
                @{ Snapshot = 'vm/999' }
            ) {
                $env:PBS_PASSWORD = $script:TokenSecret
                $dest = Join-Path (New-OutputFolder $TestDrive) 'x.img'
                $errs = Get-Errors { Restore-PbsImage -Repository $script:TokenRepo -Fingerprint $script:Fp -Snapshot $Snapshot -Archive drive-scsi0.img -Destination $dest }
                $errs.Count | Should -Be 1
                $errs[0].FullyQualifiedErrorId | Should -BeExactly 'SnapshotNotFound,PbsRestore.PowerShell.Commands.RestorePbsImageCommand'
                $errs[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
                Assert-NothingWritten $dest
            }

            It 'vm/102 without -Namespace dev: SnapshotNotFound (it lives in namespace dev)' {
                $env:PBS_PASSWORD = $script:TokenSecret
                $dest = Join-Path (New-OutputFolder $TestDrive) 'x.img'
                $errs = Get-Errors { Restore-PbsImage -Repository $script:TokenRepo -Fingerprint $script:Fp -Snapshot vm/102/2024-05-01T10:15:00Z -Archive drive-scsi0.img -Destination $dest }
                $errs.Count | Should -Be 1
                Get-ErrorIdOf $errs[0] | Should -BeExactly 'SnapshotNotFound'
                Assert-NothingWritten $dest
            }

            It 'the encrypted vm/101 without a key: KeyRequired, no file' {
                $env:PBS_PASSWORD = $script:TokenSecret
                $dest = Join-Path (New-OutputFolder $TestDrive) 'x.img'
                $errs = Get-Errors { Restore-PbsImage -Repository $script:TokenRepo -Fingerprint $script:Fp -Snapshot vm/101/2024-05-01T10:05:00Z -Archive drive-scsi0.img -Destination $dest }
                $errs.Count | Should -Be 1
                Get-ErrorIdOf $errs[0] | Should -BeExactly 'KeyRequired'
                Assert-NothingWritten $dest
            }
        }
    }

    Describe 'Get-PbsDatastore and Get-PbsNamespace over the wire' {
        It 'Get-PbsDatastore -Repository lists golden (and other)' {
            $env:PBS_PASSWORD = $script:TokenSecret
            $r = @(Get-PbsDatastore -Repository $script:TokenRepo -Fingerprint $script:Fp -ErrorAction Stop)
            @($r.Name) | Should -Contain 'golden'
            @($r.Name | Sort-Object) | Should -Be @('golden', 'other')
        }

        It 'Get-PbsDatastore on the session default (user ticket) lists golden' {
            $null = Connect-PbsServer -Repository $script:HostRepo -Fingerprint $script:Fp -Credential $script:UserCred -ErrorAction Stop
            @((Get-PbsDatastore -ErrorAction Stop).Name) | Should -Contain 'golden'
        }

        It 'Get-PbsNamespace lists the root ('''') and dev, as on the folder' {
            $env:PBS_PASSWORD = $script:TokenSecret
            $r = @(Get-PbsNamespace -Repository $script:TokenRepo -Fingerprint $script:Fp -ErrorAction Stop)
            @($r.Namespace | Sort-Object) | Should -Be @('', 'dev')
            ($r | Where-Object Namespace -EQ 'dev').Depth | Should -Be 1
            ($r | Where-Object Namespace -EQ '').Depth | Should -Be 0
            $local = @(Get-PbsNamespace -Datastore $script:Datastore -ErrorAction Stop)
            @($r | ForEach-Object { "$($_.Namespace)|$($_.Depth)" }) | Should -Be @($local | ForEach-Object { "$($_.Namespace)|$($_.Depth)" })
        }

        It 'Get-PbsNamespace dev and -MaxDepth 0 over a connection' {
            $c = Connect-PbsServer -Repository $script:TokenRepo -Fingerprint $script:Fp -Credential $script:TokenCred -ErrorAction Stop
            @((Get-PbsNamespace -Connection $c -MaxDepth 0 -ErrorAction Stop).Namespace) | Should -Be @('')
            @((Get-PbsNamespace dev -ErrorAction Stop).Namespace) | Should -Be @('dev')
        }
    }

    Describe 'Disconnect-PbsServer' {
        It 'clears $DefaultPbsServer; later calls fail with NoSource' {
            $c = Connect-PbsServer -Repository $script:TokenRepo -Fingerprint $script:Fp -Credential $script:TokenCred -ErrorAction Stop
            @(Get-PbsSnapshot -ErrorAction Stop).Count | Should -Be 4
            Disconnect-PbsServer -ErrorAction Stop
            Get-Variable -Name DefaultPbsServer -Scope Global -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            $c.IsConnected | Should -BeFalse
            $dest = Join-Path (New-OutputFolder $TestDrive) 'x.img'
            foreach ($run in @(
                    @{ Cmd = 'GetPbsSnapshotCommand'; Run = { Get-PbsSnapshot } }
                    @{ Cmd = 'RestorePbsImageCommand'; Run = { Restore-PbsImage -Snapshot vm/100/2024-05-01T10:00:00Z -Archive drive-scsi0.img -Destination $dest } }
                    @{ Cmd = 'GetPbsNamespaceCommand'; Run = { Get-PbsNamespace } }
                    @{ Cmd = 'GetPbsDatastoreCommand'; Run = { Get-PbsDatastore } })) {
                $errs = Get-Errors $run.Run
                $errs.Count | Should -Be 1 -Because $run.Cmd
                $errs[0].FullyQualifiedErrorId | Should -BeExactly "NoSource,PbsRestore.PowerShell.Commands.$($run.Cmd)"
            }
            Assert-NothingWritten $dest
        }

        It 'Disconnect-PbsServer -Connection closes that connection; using it again fails with NotConnected' {
            $c = Connect-PbsServer -Repository $script:TokenRepo -Fingerprint $script:Fp -Credential $script:TokenCred -NotDefault -ErrorAction Stop
            Disconnect-PbsServer -Connection $c -ErrorAction Stop
            $c.IsConnected | Should -BeFalse
            $errs = Get-Errors { Get-PbsSnapshot -Connection $c }
            $errs.Count | Should -Be 1
            Get-ErrorIdOf $errs[0] | Should -BeExactly 'NotConnected'
        }

        # Issue 11, item 3: what was listed through a connection dies with it. The objects from Get-PbsSnapshot keep
        # the source that listed them (to restore from the same place); after Disconnect that source refuses
        # everything with NotConnected, and the connection no longer holds the secret (HoldsSecret, internal, reads
        # the connection's settings and every client's authenticator, whose secret char array is zeroed: see
        # PbsAuthTests.Revoke_zeroes_the_secret).
        It 'objects listed through a connection (<Kind>) fail with NotConnected after Disconnect-PbsServer; the secret is gone' -ForEach @(
            @{ Kind = 'API token'; Repo = 'TokenRepo'; Cred = 'TokenCred' }
            @{ Kind = 'user password'; Repo = 'UserRepo'; Cred = 'UserCred' }
        ) {
            $c = Connect-PbsServer -Repository (Get-Variable -Scope Script -Name $Repo -ValueOnly) -Fingerprint $script:Fp `
                -Credential (Get-Variable -Scope Script -Name $Cred -ValueOnly) -ErrorAction Stop
            $s = @(Get-PbsSnapshot -ErrorAction Stop | Where-Object { $_.BackupId -eq '100' })[0]
            $other = @(Get-PbsSnapshot -Store other -ErrorAction Stop | Where-Object { $_.BackupId -eq '100' })[0]
            $holds = [PbsRestore.PowerShell.PbsServerConnection].GetProperty('HoldsSecret', [Reflection.BindingFlags]'NonPublic,Instance')
            $holds.GetValue($c) | Should -BeTrue
            Disconnect-PbsServer -ErrorAction Stop
            $holds.GetValue($c) | Should -BeFalse
            $dest = Join-Path (New-OutputFolder $TestDrive) 'stale.img'
            foreach ($run in @(
                    @{ Cmd = 'RestorePbsImageCommand'; Run = { $s | Restore-PbsImage -Archive drive-scsi0.img -Destination $dest } }
                    @{ Cmd = 'RestorePbsImageCommand'; Run = { $other | Restore-PbsImage -Archive drive-scsi0.img -Destination $dest } }
                    @{ Cmd = 'MeasurePbsRestoreCommand'; Run = { $s | Measure-PbsRestore -Archive drive-scsi0.img } }
                    @{ Cmd = 'TestPbsSnapshotCommand'; Run = { $s | Test-PbsSnapshot } })) {
                $errs = Get-Errors $run.Run
                $errs.Count | Should -Be 1 -Because $run.Cmd
                $errs[0].FullyQualifiedErrorId | Should -BeExactly "NotConnected,PbsRestore.PowerShell.Commands.$($run.Cmd)"
                $errs[0].Exception.Message | Should -BeLike "*connection to 127.0.0.1:$($script:Port) was closed by Disconnect-PbsServer*"
            }
            Assert-NothingWritten $dest
        }

        It 'a second Connect-PbsServer replaces (and closes) the previous default' {
            $a = Connect-PbsServer -Repository $script:TokenRepo -Fingerprint $script:Fp -Credential $script:TokenCred -ErrorAction Stop
            $b = Connect-PbsServer -Repository $script:HostRepo -Fingerprint $script:Fp -Credential $script:UserCred -ErrorAction Stop
            $a.IsConnected | Should -BeFalse
            [object]::ReferenceEquals($global:DefaultPbsServer, $b) | Should -BeTrue
            $global:DefaultPbsServer.AuthId | Should -BeExactly $script:UserId
        }
    }
}
