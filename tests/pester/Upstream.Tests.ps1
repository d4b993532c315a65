# The cmdlets against the GENUINE Proxmox Backup Server 3.2.4 (../shared/upstream-pbs, issue 12): build.ps1 Test
# starts it empty, fills it with make-data.sh and exports PBS_UPSTREAM_STATE (state.json), PBS_UPSTREAM_DATA (the
# make-data.sh folder: expected.json, sources/, enc.key) and PBS_UPSTREAM_DATASTORE (its datastore folder); without
# them (not root, no network namespaces, PBS_UPSTREAM_SKIP) the whole group is skipped with the reason.
# Every restored byte is compared with expected.json (SHA-256 of the source); pxar archives restored raw are compared
# with what the genuine proxmox-backup-client writes for them.
BeforeDiscovery {
    $script:UpstreamSkip = if ($env:PBS_UPSTREAM_SKIP) { $env:PBS_UPSTREAM_SKIP }
    elseif (-not $env:PBS_UPSTREAM_STATE -or -not $env:PBS_UPSTREAM_DATA -or -not $env:PBS_UPSTREAM_DATASTORE) {
        'PBS_UPSTREAM_STATE/_DATA/_DATASTORE are not set (build.ps1 Test starts the genuine server as root)'
    } elseif (-not (Test-Path -LiteralPath (Join-Path $env:PBS_UPSTREAM_DATA 'expected.json'))) { "no expected.json in $env:PBS_UPSTREAM_DATA" }
    $script:ImageCases = @(); $script:PxarCases = @(); $script:FilterCases = @()
    if (-not $script:UpstreamSkip) {
        $expected = Get-Content -LiteralPath (Join-Path $env:PBS_UPSTREAM_DATA 'expected.json') -Raw | ConvertFrom-Json -DateKind String
        foreach ($s in $expected.snapshots) {
            $spec = '{0}/{1}/{2}' -f $s.type, $s.id, $s.time
            foreach ($a in $s.archives) {
                $case = @{ Spec = $spec; Namespace = $s.namespace; Stored = $a.name; Archive = ($a.name -replace '\.(fidx|didx|blob)$', ''); Snap = $s; Arch = $a }
                if ($a.PSObject.Properties['sha256'] -and $a.sha256) { $script:ImageCases += $case }
                elseif ($a.name -like '*.pxar.didx') { $script:PxarCases += $case }
            }
        }
        # Each filter with what it must list, from expected.json ('ns|type/id/time' keys).
        $all = @($expected.snapshots | ForEach-Object { [pscustomobject]@{ Ns = $_.namespace; Type = $_.type; Id = $_.id; Key = '{0}|{1}/{2}/{3}' -f $_.namespace, $_.type, $_.id, $_.time; Epoch = $_.epoch } })
        $latest = { param($list) @($list | Group-Object Ns, Type, Id | ForEach-Object { $_.Group | Sort-Object Epoch | Select-Object -Last 1 }) }
        $script:FilterCases = @(
            @{ What = '(none)'; Filter = @{}; Keys = @($all.Key) }
            @{ What = '-MaxDepth 0'; Filter = @{ MaxDepth = 0 }; Keys = @($all | Where-Object Ns -EQ '' | ForEach-Object Key) }
            @{ What = '-Namespace prod'; Filter = @{ Namespace = 'prod' }; Keys = @($all | Where-Object Ns -Like 'prod*' | ForEach-Object Key) }
            @{ What = '-Namespace prod/web'; Filter = @{ Namespace = 'prod/web' }; Keys = @() }
            @{ What = '-BackupType vm'; Filter = @{ BackupType = 'vm' }; Keys = @($all | Where-Object Type -EQ vm | ForEach-Object Key) }
            @{ What = '-BackupType ct'; Filter = @{ BackupType = 'ct' }; Keys = @($all | Where-Object Type -EQ ct | ForEach-Object Key) }
            @{ What = '-BackupType host'; Filter = @{ BackupType = 'host' }; Keys = @($all | Where-Object Type -EQ host | ForEach-Object Key) }
            @{ What = '-Namespace prod -BackupType ct'; Filter = @{ Namespace = 'prod'; BackupType = 'ct' }; Keys = @() }
            @{ What = '-Namespace prod -BackupType vm'; Filter = @{ Namespace = 'prod'; BackupType = 'vm' }; Keys = @($all | Where-Object { $_.Ns -like 'prod*' -and $_.Type -eq 'vm' } | ForEach-Object Key) }
            @{ What = '-BackupId 100'; Filter = @{ BackupId = '100' }; Keys = @($all | Where-Object Id -EQ '100' | ForEach-Object Key) }
            @{ What = '-BackupType ct -BackupId 301'; Filter = @{ BackupType = 'ct'; BackupId = '301' }; Keys = @($all | Where-Object Id -EQ '301' | ForEach-Object Key) }
            @{ What = '-Latest'; Filter = @{ Latest = $true }; Keys = @((& $latest $all).Key) }
            @{ What = '-BackupId 100 -Latest'; Filter = @{ BackupId = '100'; Latest = $true }; Keys = @((& $latest @($all | Where-Object Id -EQ '100')).Key) }
            @{ What = '-MaxDepth 0 -BackupType ct -Latest'; Filter = @{ MaxDepth = 0; BackupType = 'ct'; Latest = $true }; Keys = @((& $latest @($all | Where-Object { $_.Ns -eq '' -and $_.Type -eq 'ct' })).Key) }
        )
    } else {
        Write-Host "Upstream.Tests.ps1: the genuine-server group is SKIPPED: $script:UpstreamSkip"
    }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot '../../PbsRestore.psd1') -Force
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Join-Path $PSScriptRoot 'ServerHelpers.psm1') -Force
    $script:SavedEnv = Save-PbsEnvironment
    Clear-PbsEnvironment
    if ($env:PBS_UPSTREAM_STATE -and (Test-Path -LiteralPath $env:PBS_UPSTREAM_STATE)) {
        $script:Peer = Get-Content -LiteralPath $env:PBS_UPSTREAM_STATE -Raw | ConvertFrom-Json
        $script:Data = $env:PBS_UPSTREAM_DATA
        $script:Expected = Get-Content -LiteralPath (Join-Path $script:Data 'expected.json') -Raw | ConvertFrom-Json -DateKind String
        $script:Store = $script:Peer.datastore
        $script:Fp = $script:Peer.fingerprint
        $script:TokenRepo = "$($script:Peer.tokenid)@$($script:Peer.host):$($script:Peer.port):$($script:Store)"
        $script:HostRepo = "$($script:Peer.host):$($script:Peer.port):$($script:Store)"
        $script:TokenCred = New-PbsCredential $script:Peer.tokenid $script:Peer.secret
        $script:UserCred = New-PbsCredential $script:Peer.user $script:Peer.password
        $script:Key = Join-Path $script:Data $script:Expected.key.file
        $script:KeyPassword = New-TestPassword $script:Expected.key.password
        $script:Token = @{ Repository = $script:TokenRepo; Fingerprint = $script:Fp; Credential = $script:TokenCred }
        # A certificate fingerprint that is not the server's (last byte changed).
        $last = [Convert]::ToInt32($script:Fp.Substring($script:Fp.Length - 2), 16)
        $script:WrongFp = $script:Fp.Substring(0, $script:Fp.Length - 2) + ('{0:x2}' -f ($last -bxor 0xff))

        function script:Get-SourceSha([string] $Relative) { Get-Sha256 (Join-Path $script:Data $Relative) }
        function script:KeyArgs($Snap) { if ($Snap.encrypted) { @{ Keyfile = $script:Key; KeyPassword = $script:KeyPassword } } else { @{} } }
        function script:Keys($Snapshots) { @($Snapshots | Where-Object { $null -ne $_ } | ForEach-Object { '{0}|{1}' -f $_.Namespace, $_.Snapshot } | Sort-Object) }
        # What the genuine client writes for an archive restored to stdout (the reference for pxar streams).
        function script:Get-GenuineSha([string] $Spec, [string] $Archive, $Snap) {
            $out = Join-Path $TestDrive ("genuine-{0}.bin" -f [guid]::NewGuid().ToString('N').Substring(0, 8))
            $clientArgs = @('restore', $Spec, $Archive, '-')
            if ($Snap.namespace) { $clientArgs += @('--ns', $Snap.namespace) }
            if ($Snap.encrypted) { $clientArgs += @('--keyfile', $script:Key); $env:PBS_ENCRYPTION_PASSWORD = $script:Expected.key.password }
            try {
                $psi = [Diagnostics.ProcessStartInfo]::new($script:Peer.client)
                foreach ($a in $clientArgs) { $psi.ArgumentList.Add($a) }
                $psi.RedirectStandardOutput = $true; $psi.RedirectStandardError = $true; $psi.UseShellExecute = $false
                $psi.Environment['PBS_UPSTREAM_STATE'] = $env:PBS_UPSTREAM_STATE
                $p = [Diagnostics.Process]::Start($psi)
                $errTask = $p.StandardError.ReadToEndAsync()
                $file = [IO.File]::Create($out)
                try { $p.StandardOutput.BaseStream.CopyTo($file) } finally { $file.Dispose() }
                $p.WaitForExit()
                if ($p.ExitCode -ne 0) { throw "genuine client restore $Spec $Archive failed ($($p.ExitCode)): $($errTask.Result)" }
            } finally { Remove-Item Env:PBS_ENCRYPTION_PASSWORD -ErrorAction SilentlyContinue }
            Get-Sha256 $out
        }
    }
}

AfterAll {
    if ($null -ne (Get-Variable -Name DefaultPbsServer -Scope Global -ValueOnly -ErrorAction SilentlyContinue)) { Disconnect-PbsServer }
    if ($script:SavedEnv) { Restore-PbsEnvironment $script:SavedEnv }
}

Describe 'Genuine PBS 3.2.4 server' {
    It 'is available (or this group is skipped with the reason)' {
        if ($script:UpstreamSkip) { Set-ItResult -Skipped -Because "genuine PBS server not available: $script:UpstreamSkip"; return }
        $script:Peer.version | Should -Be '3.2.4'
        @($script:Expected.snapshots).Count | Should -Be 7
    }
}

Describe 'Genuine PBS server: connect' -Skip:([bool]$script:UpstreamSkip) {
    AfterEach {
        if ($null -ne (Get-Variable -Name DefaultPbsServer -Scope Global -ValueOnly -ErrorAction SilentlyContinue)) { Disconnect-PbsServer }
        Clear-PbsEnvironment
    }

    It 'with the API token (-Credential), then Get-PbsDatastore and Get-PbsNamespace' {
        $c = Connect-PbsServer @script:Token -ErrorAction Stop
        $c.AuthId | Should -BeExactly $script:Peer.tokenid
        $c.Fingerprint | Should -BeExactly $script:Fp
        @(Get-PbsDatastore -ErrorAction Stop).Name | Should -Be @($script:Store)
        $ns = @(Get-PbsNamespace -ErrorAction Stop)
        @($ns | ForEach-Object { "$($_.Namespace)|$($_.Depth)" }) | Should -Be @('|0', 'prod|1', 'prod/web|2')
        @((Get-PbsNamespace -Namespace prod -MaxDepth 0 -ErrorAction Stop).Namespace) | Should -Be @('prod')
        $local = @(Get-PbsNamespace -Datastore $env:PBS_UPSTREAM_DATASTORE -ErrorAction Stop)
        @($local | ForEach-Object { "$($_.Namespace)|$($_.Depth)" }) | Should -Be @($ns | ForEach-Object { "$($_.Namespace)|$($_.Depth)" })
    }

    It 'with user and password (a ticket)' {
        $c = Connect-PbsServer -Repository $script:HostRepo -Fingerprint $script:Fp -Credential $script:UserCred -ErrorAction Stop
        $c.AuthId | Should -BeExactly $script:Peer.user
        (Keys (Get-PbsSnapshot -ErrorAction Stop)).Count | Should -Be 7
    }

    It 'with PBS_REPOSITORY, PBS_PASSWORD and PBS_FINGERPRINT only' {
        $env:PBS_REPOSITORY = $script:TokenRepo; $env:PBS_PASSWORD = $script:Peer.secret; $env:PBS_FINGERPRINT = $script:Fp
        (Keys (Get-PbsSnapshot -ErrorAction Stop)).Count | Should -Be 7
        $env:PBS_PASSWORD = $script:Peer.password
        $user = Connect-PbsServer -Repository "$($script:Peer.user)@$($script:HostRepo)" -ErrorAction Stop
        $user.AuthId | Should -BeExactly $script:Peer.user
    }
}

Describe 'Genuine PBS server: Get-PbsSnapshot' -Skip:([bool]$script:UpstreamSkip) {
    It '<What> lists what expected.json has (-Repository)' -ForEach $script:FilterCases {
        $got = @(Get-PbsSnapshot @script:Token @Filter -ErrorAction Stop)
        Keys $got | Should -Be @($Keys | Sort-Object)
    }

    It '<What> lists the same through a connection and from the datastore folder' -ForEach $script:FilterCases {
        $c = Connect-PbsServer @script:Token -NotDefault -ErrorAction Stop
        try {
            Keys (Get-PbsSnapshot -Connection $c @Filter -ErrorAction Stop) | Should -Be @($Keys | Sort-Object)
        } finally { Disconnect-PbsServer -Connection $c }
        Keys (Get-PbsSnapshot -Datastore $env:PBS_UPSTREAM_DATASTORE @Filter -ErrorAction Stop) | Should -Be @($Keys | Sort-Object)
    }

    It 'reports Size as the server does (every file, index.json.blob included), for the server and the folder' {
        $remote = @(Get-PbsSnapshot @script:Token -MaxDepth 0 -ErrorAction Stop)
        $folder = @(Get-PbsSnapshot -Datastore $env:PBS_UPSTREAM_DATASTORE -MaxDepth 0 -ErrorAction Stop)
        $wire = (Invoke-RestMethod -Uri "$($script:Peer.url)/api2/json/admin/datastore/$($script:Store)/snapshots" -SkipCertificateCheck `
                -SkipHeaderValidation -Headers @{ Authorization = "PBSAPIToken=$($script:Peer.tokenid):$($script:Peer.secret)" }).data
        $remote.Count | Should -Be @($wire).Count
        foreach ($w in $wire) {
            $r = @($remote | Where-Object { $_.BackupType -eq $w.'backup-type' -and $_.BackupId -eq $w.'backup-id' -and $_.Ref.BackupTimeEpoch -eq $w.'backup-time' })
            $f = @($folder | Where-Object { $_.Snapshot -eq $r[0].Snapshot })
            $r[0].Size | Should -Be ([long]$w.size) -Because "$($r[0].Snapshot) over the wire"
            $f[0].Size | Should -Be ([long]$w.size) -Because "$($r[0].Snapshot) from the folder"
        }
    }

    It 'shows the encrypted snapshots as Encrypted with the key fingerprint, the others not' {
        foreach ($s in Get-PbsSnapshot @script:Token -ErrorAction Stop) {
            $e = @($script:Expected.snapshots | Where-Object { $_.namespace -eq $s.Namespace -and ('{0}/{1}/{2}' -f $_.type, $_.id, $_.time) -eq $s.Snapshot })
            $e.Count | Should -Be 1
            $s.Encrypted | Should -Be ([bool]$e[0].encrypted)
            [bool]$s.KeyFingerprint | Should -Be ([bool]$e[0].encrypted)
            @($s.Files.Name | Sort-Object) | Should -Be @($e[0].archives.name | Sort-Object)
        }
    }
}

Describe 'Genuine PBS server: Restore-PbsImage' -Skip:([bool]$script:UpstreamSkip) {
    It 'raw: <Spec> (ns "<Namespace>") <Archive> matches the source' -ForEach $script:ImageCases {
        $dest = Join-Path (New-OutputFolder $TestDrive) 'out.raw'
        $k = KeyArgs $Snap
        $r = @(Restore-PbsImage @script:Token -Namespace $Namespace -Snapshot $Spec -Archive $Archive -Destination $dest @k -ErrorAction Stop)
        $r.Count | Should -Be 1
        (Get-Item -LiteralPath $dest).Length | Should -Be ([long]$Arch.size)
        Get-Sha256 $dest | Should -BeExactly $Arch.sha256
    }

    It 'dynamic archive as raw: <Spec> <Archive> equals what the genuine client writes' -ForEach $script:PxarCases {
        $dest = Join-Path (New-OutputFolder $TestDrive) 'out.pxar'
        $k = KeyArgs $Snap
        $null = Restore-PbsImage @script:Token -Snapshot $Spec -Archive $Archive -Destination $dest @k -ErrorAction Stop
        Get-Sha256 $dest | Should -BeExactly (Get-GenuineSha $Spec $Archive $Snap)
    }

    It '<Format>: the latest vm/100 disk reads back (qemu-img) as the source' -ForEach @(@{ Format = 'Vhdx' }, @{ Format = 'Vhd' }) {
        if (-not (Get-Command qemu-img -ErrorAction SilentlyContinue)) { Set-ItResult -Skipped -Because 'qemu-img is not installed (Debian: qemu-utils)'; return }
        $snap = @($script:Expected.snapshots | Where-Object { $_.type -eq 'vm' -and $_.id -eq '100' })[-1]
        $arch = @($snap.archives | Where-Object name -EQ 'drive-scsi0.img.fidx')[0]
        $dir = New-OutputFolder $TestDrive
        $dest = Join-Path $dir "disk.$($Format.ToLowerInvariant())"
        $r = Restore-PbsImage @script:Token -Snapshot "vm/100/$($snap.time)" -Archive drive-scsi0.img -Destination $dest -Format $Format -ErrorAction Stop
        "$($r.Format)" | Should -Be $Format
        Assert-Image (ConvertFrom-DiskImage $dest $(if ($Format -eq 'Vhd') { 'vpc' } else { 'vhdx' })) ([long]$arch.size) $arch.sha256
    }

    It '-DestinationFolder: every archive of the encrypted vm/101, named by archive' {
        $snap = @($script:Expected.snapshots | Where-Object { $_.type -eq 'vm' -and $_.id -eq '101' })[0]
        $dir = New-OutputFolder $TestDrive
        $r = @(Restore-PbsImage @script:Token -Snapshot "vm/101/$($snap.time)" -DestinationFolder $dir -Keyfile $script:Key -KeyPassword $script:KeyPassword -ErrorAction Stop)
        $r.Count | Should -Be @($snap.archives).Count
        foreach ($a in $snap.archives) {
            $file = @(Get-ChildItem -LiteralPath $dir -Recurse -File | Where-Object Name -EQ ($a.name -replace '\.(fidx|blob)$', ''))
            $file.Count | Should -Be 1 -Because "$($a.name) is restored once"
            Get-Sha256 $file[0].FullName | Should -BeExactly $a.sha256
        }
    }

    It 'namespace prod: the listed vm/200 piped into Restore-PbsImage' {
        $snap = @($script:Expected.snapshots | Where-Object { $_.namespace -eq 'prod' })[0]
        $dest = Join-Path (New-OutputFolder $TestDrive) 'vm200.raw'
        $r = Get-PbsSnapshot @script:Token -Namespace prod -BackupType vm -Latest -ErrorAction Stop | Restore-PbsImage -Archive drive-scsi0.img -Destination $dest -ErrorAction Stop
        $r.Snapshot | Should -Be "vm/200/$($snap.time)"   # type/id/time, as Get-PbsSnapshot shows it
        $r.Namespace | Should -Be 'prod'
        Get-Sha256 $dest | Should -BeExactly (@($snap.archives | Where-Object name -EQ 'drive-scsi0.img.fidx')[0].sha256)
    }

    It 'resume after kill -9: -Resume fetches only what the journal lacks and is bit-exact' {
        $snap = @($script:Expected.snapshots | Where-Object { $_.type -eq 'vm' -and $_.id -eq '100' })[0]
        $arch = @($snap.archives | Where-Object name -EQ 'drive-scsi0.img.fidx')[0]
        $spec = "vm/100/$($snap.time)"
        $dest = Join-Path (New-OutputFolder $TestDrive) 'killed.raw'
        $all = (Restore-PbsImage @script:Token -Snapshot $spec -Archive drive-scsi0.img -Destination (Join-Path $TestDrive 'ref.raw') -ErrorAction Stop).ChunksFetched
        # 2 MB/s: the 64 MiB image (about 25 MB on the wire) takes several seconds, time enough to be killed midway.
        Invoke-KilledRestore (Join-Path $TestDrive 'kill-me.ps1') @"
Import-Module '$([IO.Path]::GetFullPath((Join-Path $PSScriptRoot '../../PbsRestore.psd1')))'
`$env:PBS_PASSWORD = '$($script:Peer.secret)'
Restore-PbsImage -Repository '$($script:TokenRepo)' -Fingerprint '$($script:Fp)' -Snapshot '$spec' -Archive drive-scsi0.img -Destination '$dest' -MaxBandwidth 2 -FetchConcurrency 1
"@ "$dest.partial.journal" 3 -TimeoutSeconds 120
        Test-Path -LiteralPath $dest | Should -BeFalse
        $done = Get-JournalRecords "$dest.partial.journal"
        $done | Should -BeLessThan $all
        $r = Restore-PbsImage @script:Token -Snapshot $spec -Archive drive-scsi0.img -Destination $dest -Resume -ErrorAction Stop
        Get-Sha256 $dest | Should -BeExactly $arch.sha256
        $r.ChunksFetched | Should -Be ($all - $done)
        Test-Path -LiteralPath "$dest.partial.journal" | Should -BeFalse
    }
}

Describe 'Genuine PBS server: Test-PbsSnapshot and Measure-PbsRestore' -Skip:([bool]$script:UpstreamSkip) {
    It 'Test-PbsSnapshot finds every archive of every snapshot intact' {
        foreach ($s in $script:Expected.snapshots) {
            $k = KeyArgs $s
            $r = @(Test-PbsSnapshot @script:Token -Namespace $s.namespace -Snapshot "$($s.type)/$($s.id)/$($s.time)" @k -ErrorAction Stop)
            $r.Count | Should -Be @($s.archives).Count -Because "$($s.type)/$($s.id) has $(@($s.archives).Count) archives"
            foreach ($x in $r) { $x.Ok | Should -BeTrue -Because "$($x.Snapshot) $($x.Archive)"; @($x.BadChunks).Count | Should -Be 0 }
        }
    }

    It 'Measure-PbsRestore measures each fetch concurrency over the same bytes' {
        $rows = @(Measure-PbsRestore @script:Token -Snapshot vm/100 -Archive drive-scsi0.img -FetchConcurrency 1, 8 -ErrorAction Stop)
        $rows.Count | Should -Be 2
        $rows.FetchConcurrency | Should -Be @(1, 8)
        foreach ($r in $rows) {
            $r.LogicalBytes | Should -Be 64MB
            $r.WireBytes | Should -BeGreaterThan 0
            $r.LogicalMBps | Should -BeGreaterThan 0
            "$($r.Bottleneck)" | Should -Not -BeNullOrEmpty
        }
    }
}

Describe 'Genuine PBS server: completers' -Skip:([bool]$script:UpstreamSkip) {
    BeforeAll {
        function script:Complete([string] $Line) {
            $result = TabExpansion2 -inputScript $Line -cursorColumn $Line.Length
            @($result.CompletionMatches | ForEach-Object CompletionText)
        }
        $env:PBS_PASSWORD = $script:Peer.secret
        $script:Src = "-Repository '$($script:TokenRepo)' -Fingerprint $($script:Fp)"
    }
    AfterAll { Clear-PbsEnvironment }

    It 'completes namespaces, backup ids, snapshots and archives from the server' {
        Complete "Get-PbsSnapshot $script:Src -Namespace " | Should -Be @('prod', 'prod/web')
        Complete "Get-PbsSnapshot $script:Src -BackupId " | Sort-Object | Should -Be @($script:Expected.snapshots.id | Sort-Object -Unique)
        $vm100 = @($script:Expected.snapshots | Where-Object { $_.type -eq 'vm' -and $_.id -eq '100' } | ForEach-Object { "vm/100/$($_.time)" })
        Complete "Restore-PbsImage $script:Src -Snapshot vm/100" | Should -Be $vm100
        Complete "Restore-PbsImage $script:Src -Snapshot $($vm100[0]) -Archive " | Sort-Object | Should -Be @('drive-scsi0.img', 'qemu-server.conf')
        Complete "Restore-PbsImage $script:Src -Snapshot ct/300 -Archive " | Sort-Object | Should -Be @('catalog.pcat1', 'root.pxar')
        Complete "Restore-PbsImage $script:Src -Namespace prod -Snapshot " | Should -Be @(@($script:Expected.snapshots | Where-Object namespace -EQ 'prod' | ForEach-Object { "vm/200/$($_.time)" }))
        $null = Connect-PbsServer @script:Token -ErrorAction Stop
        try {
            Complete 'Get-PbsSnapshot -Store ' | Should -Be @($script:Store)
            Complete 'Restore-PbsImage -Namespace prod -Snapshot vm/2' | Should -Be @(@($script:Expected.snapshots | Where-Object namespace -EQ 'prod' | ForEach-Object { "vm/200/$($_.time)" }))
        } finally { Disconnect-PbsServer }
    }

    It 'offers nothing (and no error) with a wrong fingerprint' {
        Complete "Get-PbsSnapshot -Repository '$($script:TokenRepo)' -Fingerprint $($script:WrongFp) -Namespace " | Should -BeNullOrEmpty
    }
}

Describe 'Genuine PBS server: refusals' -Skip:([bool]$script:UpstreamSkip) {
    BeforeAll {
        $script:Vm101 = @($script:Expected.snapshots | Where-Object { $_.type -eq 'vm' -and $_.id -eq '101' })[0]
        $script:Vm101Spec = "vm/101/$($script:Vm101.time)"
        $script:Cmd = 'PbsRestore.PowerShell.Commands.RestorePbsImageCommand'
    }
    AfterEach { Clear-PbsEnvironment }

    It 'a wrong token secret: AuthenticationFailed, nothing written' {
        $dest = Join-Path (New-OutputFolder $TestDrive) 'x.raw'
        $errs = Get-Errors { Restore-PbsImage -Repository $script:TokenRepo -Fingerprint $script:Fp -Credential (New-PbsCredential $script:Peer.tokenid 'not-the-secret-1234') -Snapshot vm/100 -Archive drive-scsi0.img -Destination $dest }
        $errs.Count | Should -Be 1
        $errs[0].FullyQualifiedErrorId | Should -BeExactly "AuthenticationFailed,$script:Cmd"
        "$($errs[0])" | Should -Not -BeLike '*not-the-secret-1234*'
        Assert-NothingWritten $dest
    }

    It 'a wrong user password: AuthenticationFailed naming the user' {
        $errs = Get-Errors { Get-PbsSnapshot -Repository $script:HostRepo -Fingerprint $script:Fp -Credential (New-PbsCredential $script:Peer.user 'wrong-password-5678') }
        $errs.Count | Should -Be 1
        $errs[0].FullyQualifiedErrorId | Should -BeExactly 'AuthenticationFailed,PbsRestore.PowerShell.Commands.GetPbsSnapshotCommand'
        "$($errs[0])" | Should -BeLike "*$($script:Peer.user)*"
        "$($errs[0])" | Should -Not -BeLike '*wrong-password-5678*'
    }

    It 'a wrong certificate fingerprint: CertificateFingerprintMismatch showing the real one' {
        $dest = Join-Path (New-OutputFolder $TestDrive) 'x.raw'
        $errs = Get-Errors { Restore-PbsImage -Repository $script:TokenRepo -Fingerprint $script:WrongFp -Credential $script:TokenCred -Snapshot vm/100 -Archive drive-scsi0.img -Destination $dest }
        $errs.Count | Should -Be 1
        $errs[0].FullyQualifiedErrorId | Should -BeExactly "CertificateFingerprintMismatch,$script:Cmd"
        "$($errs[0])" | Should -BeLike "*$($script:Fp)*"
        Assert-NothingWritten $dest
    }

    It 'a wrong key password: KeyPasswordWrong, nothing written' {
        $dest = Join-Path (New-OutputFolder $TestDrive) 'x.raw'
        { Restore-PbsImage @script:Token -Snapshot $script:Vm101Spec -Archive drive-scsi0.img -Destination $dest -Keyfile $script:Key -KeyPassword (New-TestPassword 'not-the-key-password') -ErrorAction Stop } |
            Should -Throw -ErrorId "KeyPasswordWrong,$script:Cmd"
        Assert-NothingWritten $dest
    }

    It 'another key (the golden scrypt key): KeyFingerprintMismatch, nothing written' {
        $dest = Join-Path (New-OutputFolder $TestDrive) 'x.raw'
        $golden = Get-GoldenSnapshot vm 101
        { Restore-PbsImage @script:Token -Snapshot $script:Vm101Spec -Archive drive-scsi0.img -Destination $dest -Keyfile (Get-GoldenPath $golden.key_file) -KeyPassword (New-TestPassword $golden.key_password) -ErrorAction Stop } |
            Should -Throw -ErrorId "KeyFingerprintMismatch,$script:Cmd"
        Assert-NothingWritten $dest
    }

    It 'no key for the encrypted snapshot: KeyRequired, nothing written' {
        $dest = Join-Path (New-OutputFolder $TestDrive) 'x.raw'
        { Restore-PbsImage @script:Token -Snapshot $script:Vm101Spec -Archive drive-scsi0.img -Destination $dest -ErrorAction Stop } |
            Should -Throw -ErrorId "KeyRequired,$script:Cmd"
        Assert-NothingWritten $dest
    }

    It 'a snapshot the server does not have: SnapshotNotFound' {
        $dest = Join-Path (New-OutputFolder $TestDrive) 'x.raw'
        $errs = Get-Errors { Restore-PbsImage @script:Token -Snapshot vm/100/2001-01-01T00:00:00Z -Archive drive-scsi0.img -Destination $dest }
        $errs.Count | Should -Be 1
        $errs[0].FullyQualifiedErrorId | Should -BeExactly "SnapshotNotFound,$script:Cmd"
        Assert-NothingWritten $dest
    }

    It 'a namespace the server does not have: NamespaceNotFound, with or without a type filter' {
        foreach ($f in @{}, @{ BackupType = 'ct' }) {
            $errs = Get-Errors { Get-PbsSnapshot @script:Token -Namespace nope @f }
            $errs.Count | Should -Be 1
            $errs[0].FullyQualifiedErrorId | Should -BeExactly 'NamespaceNotFound,PbsRestore.PowerShell.Commands.GetPbsSnapshotCommand'
        }
    }
}

Describe 'Genuine PBS server: the PbsRestore drive' -Skip:([bool]$script:UpstreamSkip) {
    BeforeAll {
        $script:DriveKey = @{ Keyfile = $script:Key; KeyPassword = $script:KeyPassword }
        New-PSDrive -Name upsrv -PSProvider PbsRestore -Root $script:TokenRepo -Credential $script:TokenCred -Fingerprint $script:Fp @script:DriveKey | Out-Null
        New-PSDrive -Name updir -PSProvider PbsRestore -Root $env:PBS_UPSTREAM_DATASTORE @script:DriveKey | Out-Null
        function script:DriveTime($Snap) { $Snap.time -replace ':', '_' }
    }
    AfterAll { Remove-PSDrive -Name upsrv, updir -ErrorAction SilentlyContinue }

    It '<_>: namespaces (prod, prod/web), groups and snapshots as expected.json has them' -ForEach 'upsrv', 'updir' {
        $root = @($script:Expected.snapshots | Where-Object namespace -EQ '')
        @(Get-ChildItem "${_}:\" -Name) | Should -Be @(@($root.type | Sort-Object -Unique) + 'ns')
        @(Get-ChildItem "${_}:\ns" -Name) | Should -Be @('prod')
        $prod = @($script:Expected.snapshots | Where-Object namespace -EQ 'prod')
        @(Get-ChildItem "${_}:\ns\prod" -Name) | Should -Be @(@($prod.type | Sort-Object -Unique) + 'ns')
        @(Get-ChildItem "${_}:\ns\prod\ns" -Name) | Should -Be @('web')
        @(Get-ChildItem "${_}:\ns\prod\ns\web" -Name) | Should -Be @()
        @(Get-ChildItem "${_}:\ns\prod\vm\200" -Name) | Should -Be @($prod | ForEach-Object { DriveTime $_ })
        @(Get-ChildItem "${_}:\ct\300" -Name) | Should -Be @($script:Expected.snapshots | Where-Object { $_.type -eq 'ct' -and $_.id -eq '300' } | ForEach-Object { DriveTime $_ })
        Test-Path "${_}:\ns\prod\ns\nope" | Should -BeFalse
    }

    It '<Drive> <Type>/<Id>: Copy-Item -Recurse of the whole archive is bit-exact; Get-Content reads a file' -ForEach @(
        @{ Drive = 'upsrv'; Type = 'ct'; Id = '300' }, @{ Drive = 'upsrv'; Type = 'ct'; Id = '301' }, @{ Drive = 'upsrv'; Type = 'host'; Id = 'files' }
        @{ Drive = 'updir'; Type = 'ct'; Id = '301' }) {
        $snap = $script:Expected.snapshots | Where-Object { $_.type -eq $Type -and $_.id -eq $Id }
        $entries = @(($snap.archives | Where-Object name -EQ 'root.pxar.didx').entries)
        $base = "${Drive}:\$Type\$Id\$(DriveTime $snap)\root.pxar"
        $dest = Join-Path $TestDrive "drive-$Drive-$Type-$Id"
        Copy-Item $base -Destination "PbsRestore::$dest" -Recurse -WarningAction SilentlyContinue
        $files = @($entries | Where-Object type -In 'file', 'hardlink')
        $files.Count | Should -BeGreaterThan 0
        foreach ($x in $files) { Get-Sha256 (Join-Path $dest $x.path) | Should -Be $x.sha256 -Because $x.path }
        $small = $files | Where-Object { $_.size -gt 0 -and $_.size -lt 4096 -and $_.path -notmatch '[\[\]*?]' } | Select-Object -First 1
        $inner = $small.path -replace '/', '\'
        (Get-Content -LiteralPath "$base\$inner") | Should -Be (Get-Content -LiteralPath (Join-Path $dest $small.path))
    }
}
