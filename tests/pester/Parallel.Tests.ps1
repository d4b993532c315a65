# Runspace safety: the module used from several runspaces of one process at once. Restores in
# ForEach-Object -Parallel (each runspace imports the module), in thread jobs (Start-ThreadJob), and two
# pipelines with their own Connect-PbsServer -NotDefault connections, from the golden folder and from our
# PBS-compatible server serving it; every restored byte is checked against MANIFEST.json. Last, in a fresh
# pwsh child process: after Import-Module and restores, the dependency assemblies (ZstdSharp,
# BouncyCastle.Cryptography, System.IO.Hashing) are loaded exactly once, and which AssemblyLoadContext
# holds each is reported (not asserted: the invariant is one copy of each and working restores).
BeforeDiscovery {
    $script:Sources = @(@{ Source = 'folder' }, @{ Source = 'server' })
}

BeforeAll {
    $script:ModuleManifest = [IO.Path]::GetFullPath((Join-Path $PSScriptRoot '../../PbsRestore.psd1'))
    Import-Module $script:ModuleManifest -Force
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Join-Path $PSScriptRoot 'ServerHelpers.psm1') -Force
    $script:GoldenDs = Get-GoldenDatastore
    $v101 = Get-GoldenSnapshot vm 101
    $script:KeyFile = Get-GoldenPath $v101.key_file
    $script:KeyPassword = New-TestPassword $v101.key_password

    $script:SavedEnv = Save-PbsEnvironment
    Clear-PbsEnvironment
    $script:TokenId = 'par@pbs!runspaces'
    $script:TokenSecret = 'par-token-7e41b0c2'
    $script:UserId = 'bob@pbs'
    $script:UserPassword = 'par-bob-pw-31fa'
    $script:Server = Start-TestServer -Datastore ([ordered]@{ golden = $script:GoldenDs }) -Token "$($script:TokenId):$($script:TokenSecret)" `
        -User "$($script:UserId):$($script:UserPassword)" -LogFolder (Join-Path $TestDrive 'server')
    $script:Repo = "127.0.0.1:$($script:Server.Port):golden"
    $script:Fp = $script:Server.Fingerprint
    $script:TokenCred = New-PbsCredential $script:TokenId $script:TokenSecret
    $script:UserCred = New-PbsCredential $script:UserId $script:UserPassword

    # One restore job: snapshot, archive (display name), namespace, MANIFEST.json archive, encrypted?
    function script:New-Job([string] $Type, [string] $Id, [string] $Stored, [string] $Name) {
        $s = Get-GoldenSnapshot $Type $Id
        $a = Get-GoldenArchive $s $Stored
        [pscustomobject]@{
            Snapshot = "$Type/$Id"; Namespace = $s.namespace; Archive = (Get-ArchiveDisplayName $Stored)
            Encrypted = [bool]$s.encrypted; Sha256 = $a.plaintext_sha256; Size = [long]$a.plaintext_size; Name = $Name
        }
    }
    # The same archive three times, and three different ones (an encrypted one, a dynamic one, one in a namespace).
    $script:Jobs = @(
        New-Job vm 100 'drive-scsi0.img.fidx' 'same-1.raw'
        New-Job vm 100 'drive-scsi0.img.fidx' 'same-2.raw'
        New-Job vm 100 'drive-scsi0.img.fidx' 'same-3.raw'
        New-Job vm 101 'drive-scsi0.img.fidx' 'vm101-scsi0.raw'
        New-Job ct 200 'data.didx' 'ct200-data.raw'
        New-Job vm 102 'drive-scsi0.img.fidx' 'vm102-scsi0.raw'
    )
    # Everything a runspace needs to restore one job: the module path, the source and the key.
    $script:Ctx = [pscustomobject]@{
        Module = $script:ModuleManifest; Datastore = $script:GoldenDs; Repository = $script:Repo; Fingerprint = $script:Fp
        Credential = $script:TokenCred; KeyFile = $script:KeyFile; KeyPassword = $script:KeyPassword
    }
    # Runs in another runspace: imports the module and restores one job from the folder or the server.
    $script:RestoreOne = {
        param($Ctx, $Job, [string] $Source, [string] $Folder)
        $ErrorActionPreference = 'Stop'
        $ProgressPreference = 'SilentlyContinue'
        Import-Module $Ctx.Module
        $p = @{ Snapshot = $Job.Snapshot; Archive = $Job.Archive; Destination = (Join-Path $Folder $Job.Name) }
        if ($Job.Namespace) { $p.Namespace = $Job.Namespace }
        if ($Job.Encrypted) { $p.Keyfile = $Ctx.KeyFile; $p.KeyPassword = $Ctx.KeyPassword }
        if ($Source -eq 'folder') { $p.Datastore = $Ctx.Datastore }
        else { $p.Repository = $Ctx.Repository; $p.Fingerprint = $Ctx.Fingerprint; $p.Credential = $Ctx.Credential }
        $r = Restore-PbsImage @p
        [pscustomobject]@{
            Name = $Job.Name; LogicalBytes = $r.LogicalBytes; Runspace = [runspace]::DefaultRunspace.InstanceId
            Thread = [Environment]::CurrentManagedThreadId
        }
    }
    function script:Assert-JobsRestored([string] $Folder, $Results) {
        @($Results).Count | Should -Be $script:Jobs.Count
        foreach ($j in $script:Jobs) {
            Assert-Restored -Destination (Join-Path $Folder $j.Name) -Archive ([pscustomobject]@{ plaintext_size = $j.Size; plaintext_sha256 = $j.Sha256 })
            (@($Results | Where-Object Name -EQ $j.Name)).LogicalBytes | Should -Be $j.Size
        }
        @(Get-FolderEntries $Folder) | Should -Be @($script:Jobs.Name | Sort-Object)
    }
}

AfterAll {
    Stop-TestServer $script:Server
    Restore-PbsEnvironment $script:SavedEnv
}

Describe 'ForEach-Object -Parallel' {
    It 'restores the same archive into three files and three different archives at once from the <Source>, bit-exactly' -TestCases $Sources {
        param($Source)
        $out = New-OutputFolder $TestDrive
        $ctx = $Ctx; $restoreOne = $RestoreOne.ToString()
        $results = @($Jobs | ForEach-Object -ThrottleLimit 6 -Parallel {
                & ([scriptblock]::Create($using:restoreOne)) $using:ctx $_ $using:Source $using:out
            })
        Assert-JobsRestored $out $results
        @($results.Runspace | Sort-Object -Unique).Count | Should -BeGreaterThan 1 -Because 'the restores ran in several runspaces'
    }

    It 'runs the same restores twice over in the same runspaces (module imported again) from the <Source>' -TestCases $Sources {
        param($Source)
        $ctx = $Ctx; $restoreOne = $RestoreOne.ToString()
        $folders = @((New-OutputFolder $TestDrive), (New-OutputFolder $TestDrive))
        # -UseNewRunspace:$false (the default) reuses runspaces: the second round imports into a runspace that has the module.
        foreach ($f in $folders) {
            $results = @($Jobs | ForEach-Object -ThrottleLimit 3 -Parallel {
                    & ([scriptblock]::Create($using:restoreOne)) $using:ctx $_ $using:Source $using:f
                })
            Assert-JobsRestored $f $results
        }
    }
}

Describe 'Start-ThreadJob' {
    BeforeAll {
        if (-not (Get-Command Start-ThreadJob -ErrorAction SilentlyContinue)) { Import-Module ThreadJob -ErrorAction SilentlyContinue }
    }

    It 'ThreadJob ships with this PowerShell' {
        Get-Command Start-ThreadJob -ErrorAction SilentlyContinue | Should -Not -BeNullOrEmpty
        @(Get-Module -ListAvailable Microsoft.PowerShell.ThreadJob, ThreadJob).Count | Should -BeGreaterThan 0
    }

    It 'thread jobs restore correct bytes from the <Source>' -TestCases $Sources {
        param($Source)
        $out = New-OutputFolder $TestDrive
        $jobs = foreach ($j in $Jobs) {
            Start-ThreadJob -ThrottleLimit 6 -ScriptBlock $RestoreOne -ArgumentList $Ctx, $j, $Source, $out
        }
        try {
            $null = $jobs | Wait-Job -Timeout 300
            $jobs.State | Sort-Object -Unique | Should -Be 'Completed'
            $results = @($jobs | Receive-Job -ErrorAction Stop)
        } finally { $jobs | Remove-Job -Force }
        Assert-JobsRestored $out $results
    }

    It 'a [powershell] with its own runspace on another thread restores correct bytes from the <Source>' -TestCases $Sources {
        param($Source)
        $out = New-OutputFolder $TestDrive
        $shells = foreach ($j in $Jobs) {
            $ps = [powershell]::Create([runspacefactory]::CreateRunspace())
            $ps.Runspace.Open()
            $null = $ps.AddScript($RestoreOne.ToString()).AddArgument($Ctx).AddArgument($j).AddArgument($Source).AddArgument($out)
            [pscustomobject]@{ Shell = $ps; Async = $ps.BeginInvoke() }
        }
        try {
            $results = foreach ($s in $shells) {
                $s.Shell.EndInvoke($s.Async)
                $s.Shell.Streams.Error | Should -BeNullOrEmpty
            }
        } finally { foreach ($s in $shells) { $s.Shell.Runspace.Dispose(); $s.Shell.Dispose() } }
        Assert-JobsRestored $out @($results)
    }
}

Describe 'two pipelines in parallel with their own connections' {
    It 'each connects with -NotDefault (token and user ticket), lists and restores through its own connection' {
        $out = New-OutputFolder $TestDrive
        $ctx = $Ctx
        $userCred = $UserCred
        $lanes = @(
            [pscustomobject]@{ Lane = 'token'; Credential = $TokenCred; BackupId = '100' }
            [pscustomobject]@{ Lane = 'user'; Credential = $userCred; BackupId = '102' }
        )
        $results = @($lanes | ForEach-Object -ThrottleLimit 2 -Parallel {
                $ErrorActionPreference = 'Stop'
                $ProgressPreference = 'SilentlyContinue'
                $c = $using:ctx
                $lane = $_
                Import-Module $c.Module
                $conn = Connect-PbsServer -Repository $c.Repository -Fingerprint $c.Fingerprint -Credential $lane.Credential -NotDefault
                try {
                    $hasDefault = [bool](Get-Variable DefaultPbsServer -Scope Global -ErrorAction SilentlyContinue)
                    # Three rounds, so both pipelines overlap on the server.
                    foreach ($round in 1..3) {
                        Get-PbsSnapshot -Connection $conn -BackupId $lane.BackupId -Latest | ForEach-Object {
                            $snap = $_
                            $snap.Files | Where-Object { $_.ArchiveName -like 'drive-*.img' } | ForEach-Object {
                                $name = "$($lane.Lane)-$round-$($snap.BackupId)-$($_.ArchiveName).raw"
                                $r = $snap | Restore-PbsImage -Archive $_.ArchiveName -Destination (Join-Path $using:out $name) -Connection $conn
                                [pscustomobject]@{
                                    Lane = $lane.Lane; AuthId = $conn.AuthId; Name = $name; BackupId = $snap.BackupId
                                    Archive = $_.Name; Bytes = $r.LogicalBytes; HasDefault = $hasDefault
                                }
                            }
                        }
                    }
                } finally { Disconnect-PbsServer -Connection $conn }
                [pscustomobject]@{ Lane = $lane.Lane; Closed = (-not $conn.IsConnected) }
            })
        $restores = @($results | Where-Object Name)
        $restores.Count | Should -Be 9 -Because 'vm/100 has two disks and vm/102 one, three rounds each'
        ($restores | Where-Object Lane -EQ 'token').AuthId | Sort-Object -Unique | Should -Be $TokenId
        ($restores | Where-Object Lane -EQ 'user').AuthId | Sort-Object -Unique | Should -Be $UserId
        $restores.HasDefault | Sort-Object -Unique | Should -Be $false -Because '-NotDefault sets no $DefaultPbsServer'
        foreach ($r in $restores) {
            $a = Get-GoldenArchive (Get-GoldenSnapshot vm $r.BackupId) $r.Archive
            Assert-Restored -Destination (Join-Path $out $r.Name) -Archive $a
        }
        @($results | Where-Object Closed).Count | Should -Be 2
        Get-Variable DefaultPbsServer -Scope Global -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }

    It 'a default connection in this session is not touched by parallel -NotDefault connections' {
        $default = Connect-PbsServer -Repository $Repo -Fingerprint $Fp -Credential $TokenCred
        try {
            $ctx = $Ctx
            $null = 1..3 | ForEach-Object -ThrottleLimit 3 -Parallel {
                Import-Module ($using:ctx).Module
                $c = Connect-PbsServer -Repository ($using:ctx).Repository -Fingerprint ($using:ctx).Fingerprint -Credential ($using:ctx).Credential -NotDefault
                Disconnect-PbsServer -Connection $c
            }
            $global:DefaultPbsServer | Should -Be $default
            $default.IsConnected | Should -BeTrue
            $dest = Join-Path (New-OutputFolder $TestDrive) 'after.raw'
            $null = Restore-PbsImage -Snapshot vm/102 -Namespace dev -Archive drive-scsi0.img -Destination $dest
            Assert-Restored -Destination $dest -Archive (Get-GoldenArchive (Get-GoldenSnapshot vm 102) 'drive-scsi0.img.fidx')
        } finally {
            Disconnect-PbsServer -Connection $default
            Remove-Variable DefaultPbsServer -Scope Global -ErrorAction SilentlyContinue
        }
    }
}

Describe 'dependency assemblies in a fresh process' {
    It 'after Import-Module and restores there is exactly one ZstdSharp, BouncyCastle.Cryptography and System.IO.Hashing' {
        $out = New-OutputFolder $TestDrive
        $probe = Join-Path $TestDrive 'probe.ps1'
        Set-Content -LiteralPath $probe -Encoding utf8 -Value @'
param([string] $Module, [string] $Datastore, [string] $KeyFile, [string] $Out)
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
Import-Module $Module
# An encrypted, compressed archive (BouncyCastle for scrypt, AES-GCM; ZstdSharp; System.IO.Hashing for CRC32)
# and a plain one; the password comes from the environment.
$r1 = Restore-PbsImage -Datastore $Datastore -Snapshot vm/101 -Archive drive-scsi0.img -Destination (Join-Path $Out 'vm101.raw') -Keyfile $KeyFile
$r2 = Restore-PbsImage -Datastore $Datastore -Snapshot ct/200 -Archive data -Destination (Join-Path $Out 'ct200.raw')
$assemblies = foreach ($a in [AppDomain]::CurrentDomain.GetAssemblies()) {
    $n = $a.GetName()
    if ($n.Name -notin 'ZstdSharp', 'BouncyCastle.Cryptography', 'System.IO.Hashing', 'PbsRestore.Core', 'PbsRestore.PowerShell') { continue }
    $alc = [System.Runtime.Loader.AssemblyLoadContext]::GetLoadContext($a)
    [ordered]@{ Name = $n.Name; Version = "$($n.Version)"; Location = $a.Location; Alc = $alc.Name; AlcType = $alc.GetType().FullName
        IsDefaultAlc = [object]::ReferenceEquals($alc, [System.Runtime.Loader.AssemblyLoadContext]::Default) }
}
[ordered]@{
    Restored = @($r1.LogicalBytes, $r2.LogicalBytes)
    PSVersion = "$($PSVersionTable.PSVersion)"
    Assemblies = @($assemblies)
    Contexts = @([System.Runtime.Loader.AssemblyLoadContext]::All | ForEach-Object { "$($_.Name) ($($_.GetType().FullName))" })
} | ConvertTo-Json -Depth 4 -Compress
'@
        # A fresh pwsh: the host this test runs in (dotnet + pwsh.dll when started as 'dotnet pwsh').
        $exe = [Environment]::ProcessPath
        $pre = @()
        if ([IO.Path]::GetFileNameWithoutExtension($exe) -eq 'dotnet') { $pre = @([Reflection.Assembly]::GetEntryAssembly().Location) }
        $saved = $env:PBS_ENCRYPTION_PASSWORD
        try {
            $env:PBS_ENCRYPTION_PASSWORD = (Get-GoldenSnapshot vm 101).key_password
            $json = & $exe @pre -NoProfile -NonInteractive -File $probe -Module $ModuleManifest -Datastore $GoldenDs -KeyFile $KeyFile -Out $out 2>&1
        } finally { $env:PBS_ENCRYPTION_PASSWORD = $saved }
        $LASTEXITCODE | Should -Be 0 -Because "the child failed: $json"
        $report = ($json | Select-Object -Last 1) | ConvertFrom-Json
        $report.Restored | Should -Be @(2097152, 345211)
        Get-Sha256 (Join-Path $out 'vm101.raw') | Should -BeExactly (Get-GoldenArchive (Get-GoldenSnapshot vm 101) 'drive-scsi0.img.fidx').plaintext_sha256
        Get-Sha256 (Join-Path $out 'ct200.raw') | Should -BeExactly (Get-GoldenArchive (Get-GoldenSnapshot ct 200) 'data.didx').plaintext_sha256
        foreach ($name in 'ZstdSharp', 'BouncyCastle.Cryptography', 'System.IO.Hashing') {
            $copies = @($report.Assemblies | Where-Object Name -EQ $name)
            $copies.Count | Should -Be 1 -Because "exactly one $name may be loaded ($(($copies | ForEach-Object { "$($_.Version) $($_.Location)" }) -join '; '))"
        }
        # Facts for the record (not asserted): which load context holds each assembly.
        $lines = foreach ($a in $report.Assemblies) { '{0} {1} in ALC "{2}" ({3}) from {4}' -f $a.Name, $a.Version, $a.Alc, $a.AlcType, $a.Location }
        $info = "PowerShell $($report.PSVersion); contexts: $($report.Contexts -join ', ')`n" + ($lines -join "`n")
        Write-Host $info
    }
}
