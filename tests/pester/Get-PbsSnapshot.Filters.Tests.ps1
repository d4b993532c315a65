# Get-PbsSnapshot's filters as a PowerShell user expects them, the same on a folder and on our server:
# backup types in any case (-BackupType VM, -Snapshot VM/100), several ids and wildcards, the positional
# snapshot, errors for exact values that match nothing (with the namespace the group really is in),
# -Name (the snapshot comment PVE fills with the guest name), -After, -Before and -Newest.
BeforeDiscovery {
    $script:SourceCases = @(@{ Source = 'folder' }, @{ Source = 'server' })
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot '../../PbsRestore.psd1') -Force
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Join-Path $PSScriptRoot 'ServerHelpers.psm1') -Force
    $fixtures = Get-FixturesDll

    # A datastore written by our writer: vm/100 three times (notes 'web01' with a second line, then 'web01', then
    # 'web01-old'), vm/101 'db01', ct/105 without notes, and vm/102 only in namespace dev.
    $script:Store = Join-Path $TestDrive 'store'
    $snapshots = @(
        @{ Ns = ''; Type = 'vm'; Id = '100'; Time = '2024-05-01T10:00:00Z'; Notes = "web01`nweekly backup" }
        @{ Ns = ''; Type = 'vm'; Id = '100'; Time = '2024-05-02T10:00:00Z'; Notes = 'web01' }
        @{ Ns = ''; Type = 'vm'; Id = '100'; Time = '2024-05-03T10:00:00Z'; Notes = 'web01-old' }
        @{ Ns = ''; Type = 'vm'; Id = '101'; Time = '2024-05-01T11:00:00Z'; Notes = 'db01' }
        @{ Ns = ''; Type = 'ct'; Id = '105'; Time = '2024-05-01T12:00:00Z'; Notes = $null }
        @{ Ns = 'dev'; Type = 'vm'; Id = '102'; Time = '2024-05-01T13:00:00Z'; Notes = 'test01' }
    )
    foreach ($s in $snapshots) {
        $a = @($fixtures.FullName, 'image', '--path', $script:Store, '--type', $s.Type, '--id', $s.Id, '--time', $s.Time,
            '--size', '128KiB', '--chunk-size', '64KiB', '--pattern', 'random:1', '--parallel', '1')
        if ($s.Ns) { $a += @('--ns', $s.Ns) }
        if ($s.Notes) { $a += @('--notes', $s.Notes) }
        $null = & dotnet @a 2>&1
        if ($LASTEXITCODE -ne 0) { throw "writer failed: $a" }
    }

    $script:SavedEnv = Save-PbsEnvironment
    Clear-PbsEnvironment
    $script:TokenId = 'filters@pbs!pester'
    $script:TokenSecret = 'filters-token-5a1e'
    $script:Server = Start-TestServer -Datastore @{ store = $script:Store } -Token "$($script:TokenId):$($script:TokenSecret)" `
        -LogFolder (Join-Path $TestDrive 'server')
    $script:Repo = "$($script:TokenId)@127.0.0.1:$($script:Server.Port):store"
    $script:Cred = New-PbsCredential $script:TokenId $script:TokenSecret

    function script:Get-Listed {
        # Get-PbsSnapshot on the folder or on the server, with the same filter parameters (errors reach the
        # caller's -ErrorVariable and -ErrorAction).
        [CmdletBinding()]
        param([string] $Source, [hashtable] $Filter = @{}, [string[]] $Positional = @())
        $where = if ($Source -eq 'folder') { @{ Datastore = $script:Store } }
        else { @{ Repository = $script:Repo; Fingerprint = $script:Server.Fingerprint; Credential = $script:Cred } }
        Get-PbsSnapshot @Positional @where @Filter
    }
}

AfterAll {
    if ($script:Server) { Stop-TestServer $script:Server }
    Restore-PbsEnvironment $script:SavedEnv
}

Describe 'Get-PbsSnapshot filters on a <Source>' -ForEach $script:SourceCases {
    Context 'backup types in any case (issue 11 item 5)' {
        It '-BackupType VM lists the vm snapshots with lower-case types' {
            $r = @(Get-Listed $Source @{ BackupType = 'VM'; ErrorAction = 'Stop' })
            $r.Count | Should -Be 5
            @($r.BackupType | Sort-Object -Unique) | Should -Be @('vm')
        }

        It '-BackupType Ct lists ct/105' {
            $r = @(Get-Listed $Source @{ BackupType = 'Ct'; ErrorAction = 'Stop' })
            $r.Snapshot | Should -Be @('ct/105/2024-05-01T12:00:00Z')
        }

        It 'a positional VM/100 spec lists vm/100' {
            $r = @(Get-Listed $Source @{ ErrorAction = 'Stop' } 'VM/100')
            $r.Count | Should -Be 3
            @($r.Snapshot | ForEach-Object { $_.Substring(0, 6) } | Sort-Object -Unique) | Should -Be @('vm/100')
        }
    }

    Context 'several ids, wildcards, positional snapshots and misses (item 13)' {
        It '-BackupId 100,101 lists both groups' {
            $r = @(Get-Listed $Source @{ BackupId = @('100', '101'); ErrorAction = 'Stop' })
            @($r.BackupId | Sort-Object -Unique) | Should -Be @('100', '101')
            $r.Count | Should -Be 4
        }

        It '-BackupId 10* matches every id in every namespace' {
            $r = @(Get-Listed $Source @{ BackupId = '10*'; ErrorAction = 'Stop' })
            @($r.BackupId | Sort-Object -Unique) | Should -Be @('100', '101', '102', '105')
        }

        It 'a wildcard that matches nothing lists nothing and writes no error' {
            $r = @(Get-Listed $Source @{ BackupId = '9*' } -ErrorAction Stop -ErrorVariable errs)
            $r.Count | Should -Be 0
            $errs.Count | Should -Be 0
        }

        It 'an exact id that matches nothing writes a typed error naming the id, and the other ids still list' {
            $r = @(Get-Listed $Source @{ BackupId = @('100', '999') } -ErrorAction SilentlyContinue -ErrorVariable errs)
            $r.Count | Should -Be 3
            $errs.Count | Should -Be 1
            Get-ErrorIdOf $errs[0] | Should -BeExactly 'BackupGroupNotFound'
            $errs[0].CategoryInfo.Category | Should -Be ([System.Management.Automation.ErrorCategory]::ObjectNotFound)
            $errs[0].TargetObject | Should -BeExactly '999'
            $errs[0].Exception.Message | Should -BeLike "*'999'*"
            { Get-Listed $Source @{ BackupId = '999'; ErrorAction = 'Stop' } } | Should -Throw -ErrorId 'BackupGroupNotFound,*'
        }

        It 'a positional snapshot with a time lists exactly that snapshot' {
            $r = @(Get-Listed $Source @{ ErrorAction = 'Stop' } 'vm/100/2024-05-02T10:00:00Z')
            $r.Snapshot | Should -Be @('vm/100/2024-05-02T10:00:00Z')
        }

        It 'a positional ns/dev/vm/102 lists the snapshot of namespace dev' {
            $r = @(Get-Listed $Source @{ ErrorAction = 'Stop' } 'ns/dev/vm/102')
            $r.Count | Should -Be 1
            $r[0].Namespace | Should -BeExactly 'dev'
        }

        It 'an exact id missing from the root namespace names the namespace where its group is' {
            $r = @(Get-Listed $Source @{ BackupId = '102'; MaxDepth = 0 } -ErrorAction SilentlyContinue -ErrorVariable errs)
            $r.Count | Should -Be 0
            $errs.Count | Should -Be 1
            $errs[0].Exception.Message | Should -BeLike "*namespace 'dev'*-Namespace dev*"
        }

        It 'Restore-PbsImage -Snapshot vm/102 (root namespace) names namespace dev in its error' {
            $where = if ($Source -eq 'folder') { @{ Datastore = $script:Store } }
            else { @{ Repository = $script:Repo; Fingerprint = $script:Server.Fingerprint; Credential = $script:Cred } }
            $dest = Join-Path $TestDrive "miss-$Source.img"
            $err = $null
            Restore-PbsImage @where -Snapshot vm/102 -Archive drive-scsi0.img -Destination $dest -ErrorAction SilentlyContinue -ErrorVariable err
            $err.Count | Should -Be 1
            Get-ErrorIdOf $err[0] | Should -BeExactly 'SnapshotNotFound'
            $err[0].Exception.Message | Should -BeLike "*vm/102*root namespace*namespace 'dev'*"
            Test-Path -LiteralPath $dest | Should -BeFalse
        }

        It 'Restore-PbsImage -Snapshot VM/100 (upper case) restores the latest vm/100' {
            $where = if ($Source -eq 'folder') { @{ Datastore = $script:Store } }
            else { @{ Repository = $script:Repo; Fingerprint = $script:Server.Fingerprint; Credential = $script:Cred } }
            $dest = Join-Path $TestDrive "upper-$Source.img"
            $res = Restore-PbsImage @where -Snapshot VM/100 -Archive drive-scsi0.img -Destination $dest -ErrorAction Stop
            $res.Snapshot | Should -BeExactly 'vm/100/2024-05-03T10:00:00Z'
            (Get-Item -LiteralPath $dest).Length | Should -Be 128KB
        }
    }

    Context '-Name, -After, -Before, -Newest (item 15)' {
        It 'Comment is the first line of the notes' {
            $r = @(Get-Listed $Source @{ ErrorAction = 'Stop' } 'vm/100/2024-05-01T10:00:00Z')
            $r[0].Comment | Should -BeExactly 'web01'
            @(Get-Listed $Source @{ BackupType = 'ct'; ErrorAction = 'Stop' })[0].Comment | Should -BeNullOrEmpty
        }

        It '-Name web01 lists the snapshots whose comment is exactly web01 (any case)' {
            $r = @(Get-Listed $Source @{ Name = 'WEB01'; ErrorAction = 'Stop' })
            $r.Snapshot | Should -Be @('vm/100/2024-05-01T10:00:00Z', 'vm/100/2024-05-02T10:00:00Z')
        }

        It '-Name web* also lists web01-old, and -Name web01,db01 both guests' {
            @(Get-Listed $Source @{ Name = 'web*'; ErrorAction = 'Stop' }).Count | Should -Be 3
            @(Get-Listed $Source @{ Name = @('web01', 'db01'); ErrorAction = 'Stop' } | ForEach-Object BackupId | Sort-Object -Unique) |
                Should -Be @('100', '101')
        }

        It 'an exact -Name that matches nothing writes an error; a wildcard does not' {
            @(Get-Listed $Source @{ Name = 'nosuch*' } -ErrorAction Stop -ErrorVariable e1).Count | Should -Be 0
            $e1.Count | Should -Be 0
            $r = @(Get-Listed $Source @{ Name = 'nosuch' } -ErrorAction SilentlyContinue -ErrorVariable e2)
            $r.Count | Should -Be 0
            $e2.Count | Should -Be 1
            Get-ErrorIdOf $e2[0] | Should -BeExactly 'SnapshotNameNotFound'
            $e2[0].TargetObject | Should -BeExactly 'nosuch'
        }

        It '-After and -Before are exclusive bounds; UTC DateTimes and offsets both work' {
            $after = [datetime]::new(2024, 5, 1, 10, 0, 0, [DateTimeKind]::Utc)
            $before = [DateTimeOffset]::Parse('2024-05-03T12:00:00+02:00')   # = 10:00Z
            $r = @(Get-Listed $Source @{ BackupId = '100'; After = $after; Before = $before.UtcDateTime; ErrorAction = 'Stop' })
            $r.Snapshot | Should -Be @('vm/100/2024-05-02T10:00:00Z')
        }

        It '-After with a local time (no offset) is read as local time' {
            $local = [datetime]::SpecifyKind([DateTimeOffset]::Parse('2024-05-02T10:00:00Z').LocalDateTime, [DateTimeKind]::Unspecified)
            $r = @(Get-Listed $Source @{ BackupId = '100'; After = $local; ErrorAction = 'Stop' })
            $r.Snapshot | Should -Be @('vm/100/2024-05-03T10:00:00Z')
        }

        It '-Newest 2 gives the two newest of each group, newest last' {
            $r = @(Get-Listed $Source @{ Newest = 2; ErrorAction = 'Stop' })
            @($r | Where-Object BackupId -EQ '100').Snapshot | Should -Be @('vm/100/2024-05-02T10:00:00Z', 'vm/100/2024-05-03T10:00:00Z')
            @($r | Where-Object BackupId -EQ '101').Count | Should -Be 1
            $r.Count | Should -Be 5
        }

        It '-Latest with -Newest is refused' {
            { Get-Listed $Source @{ Newest = 2; Latest = $true; ErrorAction = 'Stop' } } | Should -Throw -ErrorId 'LatestAndNewest,*'
        }

        It 'the table view shows the Comment column' {
            $text = (Get-Listed $Source @{ BackupId = '101'; ErrorAction = 'Stop' } | Format-Table | Out-String -Width 200)
            $text | Should -Match 'Comment'
            $text | Should -Match 'db01'
        }
    }
}

Describe 'Get-PbsSnapshot filters on the genuine PBS 3.2.4' {
    BeforeAll {
        $script:UpSkip = if ($env:PBS_UPSTREAM_SKIP) { $env:PBS_UPSTREAM_SKIP } elseif (-not $env:PBS_UPSTREAM_STATE -or -not $env:PBS_UPSTREAM_DATA) { 'PBS_UPSTREAM_STATE / PBS_UPSTREAM_DATA not set' }
        if (-not $script:UpSkip) {
            $st = Get-Content -LiteralPath $env:PBS_UPSTREAM_STATE -Raw | ConvertFrom-Json
            $script:Up = @{ Repository = "$($st.tokenid)@$($st.host):$($st.port):$($st.datastore)"; Fingerprint = $st.fingerprint
                Credential = [pscredential]::new($st.tokenid, (ConvertTo-SecureString $st.secret -AsPlainText -Force)) }
            $script:UpExpected = @((Get-Content -LiteralPath (Join-Path $env:PBS_UPSTREAM_DATA 'expected.json') -Raw | ConvertFrom-Json -DateKind String).snapshots)
        }
    }

    It '-BackupType VM lists every vm snapshot of every namespace, without an error' {
        if ($script:UpSkip) { Set-ItResult -Skipped -Because $script:UpSkip; return }
        $r = @(Get-PbsSnapshot @script:Up -BackupType VM -ErrorAction Stop)
        @($r | ForEach-Object { "$($_.Namespace)|$($_.BackupType)/$($_.BackupId)/$($_.BackupTime.ToString('yyyy-MM-ddTHH:mm:ssZ'))" } | Sort-Object) |
            Should -Be @($script:UpExpected | Where-Object type -EQ 'vm' | ForEach-Object { "$($_.namespace)|vm/$($_.id)/$($_.time)" } | Sort-Object)
    }

    It '-BackupId with a wildcard and an exact miss' {
        if ($script:UpSkip) { Set-ItResult -Skipped -Because $script:UpSkip; return }
        $ids = @($script:UpExpected | ForEach-Object id | Sort-Object -Unique)
        $first = $ids[0]
        $r = @(Get-PbsSnapshot @script:Up -BackupId "$($first.Substring(0, 1))*", 'no-such-id' -ErrorAction SilentlyContinue -ErrorVariable errs)
        @($r.BackupId | Sort-Object -Unique) | Should -Be @($ids | Where-Object { $_ -like "$($first.Substring(0, 1))*" })
        $errs.Count | Should -Be 1
        ($errs[0].FullyQualifiedErrorId -split ',')[0] | Should -BeExactly 'BackupGroupNotFound'
    }
}
