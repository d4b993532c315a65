# Every example in the offline help (Get-Help <cmdlet> -Full, module/en-US/PbsRestore.PowerShell.dll-Help.xml)
# runs for real. The example code is read from Get-Help, the sample output after its first blank line is
# dropped, and the placeholders are replaced by fixtures through the explicit tables below (never by editing
# the help):
#   - paths (D:\pbs-usb, E:\restore, \\nas01\pbs-sync, C:\keys\..., ...) -> private copies under $TestDrive
#     of the golden datastore (<repo>/../shared/golden, read-only) and folders made for the destinations;
#   - servers (pbs.example.com, pbs1.example.com, pbs2.example.net, ...) -> our PBS-compatible test server
#     (src/PbsRestore.Server, two instances) with the token/users the examples name and secrets we control;
#   - the documented certificate fingerprint -> the test server's;
#   - prompts (Get-Credential, Read-Host, Get-Secret) -> prebuilt PSCredential / SecureString / string variables.
# Each example then runs in a fresh runspace with the module imported and $ErrorActionPreference = 'Stop';
# any error record, terminating error or warning fails the test, and the objects/files it should produce are
# checked (restored files bit-exact against MANIFEST.json's plaintext SHA-256).
#
# Fixture datastores (all private copies of the golden one, see New-ExampleDatastore):
#   plain  : the golden datastore as is (vm/100, vm/101 encrypted, ct/200, dev/vm/102)
#   ns     : plain + namespace prod with a copy of group vm/100 and namespace prod/web with a copy of group ct/200
#            (group folders copied byte for byte; a PBS snapshot does not record its namespace), because the
#            examples use namespaces prod and prod/web
#   noenc  : plain without the encrypted group vm/101 (only for Restore-PbsImage #12, see its entry)
BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot '../../PbsRestore.psd1') -Force
    $script:CmdletNames = @(Get-Command -Module PbsRestore -CommandType Cmdlet | Sort-Object Name | ForEach-Object Name)
    $script:CmdletCases = @($script:CmdletNames | ForEach-Object { @{ Cmdlet = $_ } })
    $script:ExampleCases = @(foreach ($name in $script:CmdletNames) {
            $n = 0
            foreach ($e in @((Get-Help $name -Full).examples.example)) {
                $n++
                @{
                    Cmdlet = $name
                    Number = $n
                    Key    = "$name#$n"
                    Title  = ([string]$e.title).Trim(' -')
                    Code   = [string]$e.code
                }
            }
        })
}

BeforeAll {
    $script:ModuleManifest = [IO.Path]::GetFullPath((Join-Path $PSScriptRoot '../../PbsRestore.psd1'))
    Import-Module $script:ModuleManifest -Force
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Join-Path $PSScriptRoot 'ServerHelpers.psm1') -Force

    $script:SavedEnv = Save-PbsEnvironment
    Clear-PbsEnvironment

    # ---- fixtures ------------------------------------------------------------------------------------------
    $script:Fx = Join-Path $TestDrive 'fx'
    [void][IO.Directory]::CreateDirectory($script:Fx)
    function script:New-ExampleDatastore([string] $Name, [switch] $Namespaces, [switch] $NoEncrypted) {
        $ds = Copy-GoldenDatastore -Parent $script:Fx -Name $Name
        if ($Namespaces) {
            Copy-DirectoryTree -Source (Join-Path $ds 'vm/100') -Destination (Join-Path $ds 'ns/prod/vm/100')
            Copy-DirectoryTree -Source (Join-Path $ds 'ct/200') -Destination (Join-Path $ds 'ns/prod/ns/web/ct/200')
        }
        if ($NoEncrypted) { [IO.Directory]::Delete((Join-Path $ds 'vm/101'), $true) }
        $ds
    }
    $script:UsbPlain = New-ExampleDatastore 'usb-plain'                 # D:\pbs-usb, E:\datastore1
    $script:UsbNs = New-ExampleDatastore 'usb-ns' -Namespaces           # D:\pbs-usb where an example names prod
    $script:UsbNoEnc = New-ExampleDatastore 'usb-noenc' -NoEncrypted    # D:\pbs-usb for Restore-PbsImage #12
    $script:Nas = New-ExampleDatastore 'nas-sync' -Namespaces           # \\nas01\pbs-sync
    $script:Store1 = New-ExampleDatastore 'srv-store1' -Namespaces      # server A: store1
    $script:Offsite = New-ExampleDatastore 'srv-offsite' -Namespaces    # server A: offsite
    $script:PlainStore = New-ExampleDatastore 'srv-plain'               # server A: plain (Restore-PbsImage #7)
    $script:Replica = New-ExampleDatastore 'srv-replica' -Namespaces    # server B: replica
    # D:\pbs-files: a container backup ct/300 with a file archive (the fixture writer's sample tree).
    $script:FilesStore = Join-Path $script:Fx 'pbs-files'
    $fixturesDll = Get-ChildItem -Path (Join-Path $PSScriptRoot '../../src/PbsRestore.Fixtures/bin') -Recurse -Filter PbsRestore.Fixtures.dll |
        Where-Object { $_.Directory.Name -eq 'net10.0' } | Sort-Object LastWriteTime | Select-Object -Last 1
    & dotnet $fixturesDll.FullName files --path $script:FilesStore --id 300 | Out-Null
    if ($LASTEXITCODE -ne 0) { throw 'the fixture writer failed to write D:\pbs-files' }

    $script:Restore = Join-Path $TestDrive 'restore'                    # E:\restore
    $script:Scratch = Join-Path $TestDrive 'scratch'                    # F:\scratch
    $script:Keys = Join-Path $TestDrive 'keys'                          # C:\keys
    $script:Secure = Join-Path $TestDrive 'secure'                      # C:\secure
    $vm101 = Get-GoldenSnapshot vm 101
    [void][IO.Directory]::CreateDirectory($script:Keys)
    $script:KeyFile = Join-Path $script:Keys 'pbs-encryption-key.json'
    Copy-Item -LiteralPath (Get-GoldenPath $vm101.key_file) -Destination $script:KeyFile
    $script:KeyPasswordPlain = $vm101.key_password

    # ---- servers and secrets -------------------------------------------------------------------------------
    $script:TokenId = 'restore@pbs!dr'
    $script:TokenSecret = 'help-ex-token-7f3a90c1'
    $script:UserPassword = 'help-ex-user-pw-41d8'
    $script:RootPassword = 'help-ex-root-pw-c02e'
    [void][IO.Directory]::CreateDirectory($script:Secure)
    $script:SecretFile = Join-Path $script:Secure 'pbs-token-secret.txt'
    Set-Content -LiteralPath $script:SecretFile -Value $script:TokenSecret -NoNewline
    $script:ServerA = Start-TestServer -Datastore ([ordered]@{ store1 = $script:Store1; offsite = $script:Offsite; plain = $script:PlainStore }) `
        -Token "$($script:TokenId):$($script:TokenSecret)" -User "restore@pbs:$($script:UserPassword)", "root@pam:$($script:RootPassword)" `
        -LogFolder (Join-Path $TestDrive 'server-a')
    $script:ServerB = Start-TestServer -Datastore ([ordered]@{ replica = $script:Replica }) `
        -Token "$($script:TokenId):$($script:TokenSecret)" -LogFolder (Join-Path $TestDrive 'server-b')
    $script:A = "127.0.0.1:$($script:ServerA.Port)"
    $script:B = "127.0.0.1:$($script:ServerB.Port)"
    $script:FpA = $script:ServerA.Fingerprint
    $script:FpB = $script:ServerB.Fingerprint
    $script:DocFingerprint = '64:d3:ff:3a:50:38:53:5a:9a:a4:e8:2e:5a:8f:0e:69:3a:2f:0c:4e:2b:06:a1:5b:3d:4c:9e:07:bc:80:11:f2'

    # ---- placeholder -> fixture, for every example (order matters: longer texts first) -----------------------
    $script:CommonMap = @(
        # prompts and secret stores -> variables set in the runspace (see $script:BaseVariables)
        ,@("Get-Credential -UserName 'restore@pbs!dr' -Message 'Secret of the API token'", '$PbsTestToken')
        ,@("Get-Credential 'restore@pbs!dr'", '$PbsTestToken')
        ,@('Get-Credential restore@pbs', '$PbsTestUser')
        ,@('-Credential root@pam ', '-Credential $PbsTestRoot ')           # a string credential prompts for the password
        ,@("Read-Host -Prompt 'Token secret' -MaskInput", '$PbsTestTokenSecret')
        ,@("Read-Host -Prompt 'Key password' -AsSecureString", '$PbsTestKeyPassword')
        ,@('Get-Secret -Name pbs-dr-token -AsPlainText', '$PbsTestTokenSecret')
        # servers (the documented host names and the default port 8007) -> test servers on loopback
        ,@('[fd00::10]:8007', $script:A)
        ,@('pbs1.example.com', $script:A)
        ,@('pbs2.example.net', $script:B)
        ,@('pbs.example.com', $script:A)
        ,@('pbs.example.net', $script:A)
        ,@($script:DocFingerprint, $script:FpA)
        # Windows paths -> $TestDrive
        ,@('D:\pbs-files', $script:FilesStore)
        ,@('D:\pbs-usb', $script:UsbPlain)
        ,@('E:\datastore1', $script:UsbPlain)
        ,@('\\nas01\pbs-sync', $script:Nas)
        ,@('E:\restore\', "$($script:Restore)/")
        ,@('E:\restore', $script:Restore)
        ,@('F:\scratch\', "$($script:Scratch)/")
        ,@('C:\keys\', "$($script:Keys)/")
        ,@('C:\secure\', "$($script:Secure)/")
    )
    # Anything still matching this after the mapping is an unmapped placeholder.
    $script:Leftover = 'example\.(com|net)|\b[A-Z]:\\|\\\\nas01|Get-Credential|Read-Host|Get-Secret|64:d3:ff|fd00::|-Credential root@pam'

    $tokenCred = New-PbsCredential $script:TokenId $script:TokenSecret
    # Variables the examples assume the reader already has ($token, $fp, ...) and the ones the mapping uses.
    $script:BaseVariables = @{
        PbsTestToken       = $tokenCred
        PbsTestUser        = New-PbsCredential 'restore@pbs' $script:UserPassword
        PbsTestRoot        = New-PbsCredential 'root@pam' $script:RootPassword
        PbsTestTokenSecret = $script:TokenSecret
        PbsTestKeyPassword = New-TestPassword $script:KeyPasswordPlain
        token              = $tokenCred
        token1             = $tokenCred
        token2             = $tokenCred
        fp                 = $script:FpA
        fp1                = $script:FpA
        fp2                = $script:FpB
    }
    # Setup code: the "connected server" several examples start from (not part of the example).
    $script:ConnectStore1 = 'Connect-PbsServer -Repository "restore@pbs!dr@$PbsTestA`:store1" -Credential $PbsTestToken -Fingerprint $PbsTestFpA | Out-Null'
    $script:BaseVariables['PbsTestA'] = $script:A
    $script:BaseVariables['PbsTestFpA'] = $script:FpA

    # ---- expected content ----------------------------------------------------------------------------------
    function script:Get-ExpectedSha([string] $Type, [string] $Id, [string] $Stored) {
        (Get-GoldenArchive (Get-GoldenSnapshot $Type $Id) $Stored).plaintext_sha256
    }
    $script:Sha = @{
        Vm100Scsi0   = Get-ExpectedSha vm 100 'drive-scsi0.img.fidx'
        Vm100Virtio1 = Get-ExpectedSha vm 100 'drive-virtio1.img.fidx'
        Vm100Conf    = Get-ExpectedSha vm 100 'qemu-server.conf.blob'
        Vm101Scsi0   = Get-ExpectedSha vm 101 'drive-scsi0.img.fidx'
        Vm101Conf    = Get-ExpectedSha vm 101 'qemu-server.conf.blob'
        Vm102Scsi0   = Get-ExpectedSha vm 102 'drive-scsi0.img.fidx'
        Vm102Conf    = Get-ExpectedSha vm 102 'qemu-server.conf.blob'
        Ct200Data    = Get-ExpectedSha ct 200 'data.didx'
    }
    $script:KeyFingerprint = ((Get-GoldenManifest).keys | Where-Object { $_.path -eq $vm101.key_file }).fingerprint

    function script:Assert-File([string] $Path, [string] $Sha256) {
        $Path | Should -Exist
        Get-Sha256 $Path | Should -Be $Sha256 -Because "$Path must hold the restored plaintext"
    }
    function script:Get-Lines($Objects) { @($Objects | ForEach-Object { "$_" }) }
    # Publish-PbsImage: a disk read back through iSCSI is the archive rounded up to whole sectors (zeros after it).
    function script:Assert-DiskFile([string] $Path, [string] $Sha256, [long] $Size) {
        $Path | Should -Exist
        $bytes = [IO.File]::ReadAllBytes($Path)
        $bytes.Length | Should -Be ([math]::Ceiling($Size / 512) * 512)
        $sha = [Security.Cryptography.SHA256]::Create()
        try { [Convert]::ToHexString($sha.ComputeHash($bytes, 0, [int]$Size)).ToLowerInvariant() | Should -Be $Sha256 } finally { $sha.Dispose() }
    }
    $script:NoIscsiInitiator = if (-not (Get-Command qemu-img -ErrorAction SilentlyContinue) -or
        -not (Get-ChildItem -Path '/usr/lib/*/qemu/block-iscsi.so', '/usr/lib/qemu/block-iscsi.so' -ErrorAction SilentlyContinue)) {
        'needs qemu-img with its iSCSI driver (Debian: qemu-utils, qemu-block-extra)'
    }
    $script:ChapPlain = 'help-chap-secret1'.Substring(0, 16)
    $script:BaseVariables['PbsTestChap'] = New-PbsCredential 'restore' $script:ChapPlain
    $script:PublishVm100 = "`$global:PbsTestPub = Publish-PbsImage -Datastore '$($script:UsbPlain)' -Snapshot vm/100"

    # ---- per-example entries: every example has one (extra replacements, setup, variables, probe, checks) ----
    # Replace: extra placeholder -> fixture pairs for this example only (each must occur in the code).
    # Setup:   code run in the runspace before the example (e.g. the default connection it assumes).
    # Probe:   code run after the example in the same runspace; its output is $r.Probe.
    # Check:   assertions on $r (Output objects, Text = output through Out-String, Verbose, Probe).
    # Allow:   reason why the example cannot run here (the allow-list; keep it empty if at all possible).
    # Example 15 restores onto a disk: a loop device over a file of garbage stands in for it, where one can be made.
    $script:CanLoop = $false
    $script:HelpLoop = $null
    if ($IsLinux -and (Get-Command losetup -ErrorAction SilentlyContinue) -and ((& id -u) -eq '0')) {
        $diskFile = Join-Path $TestDrive 'disk2.bin'
        $garbage = [byte[]]::new([long]((Get-GoldenArchive (Get-GoldenSnapshot vm 100) 'drive-scsi0.img.fidx').size + 1MB))
        [Random]::new(1).NextBytes($garbage)
        [IO.File]::WriteAllBytes($diskFile, $garbage)
        $dev = & losetup -f --show $diskFile 2>$null
        if ($LASTEXITCODE -eq 0 -and $dev) { $script:HelpLoop = "$dev".Trim(); $script:CanLoop = $true }
    }
    $script:PerExample = @{
        # ---------------- Connect-PbsServer ----------------
        'Connect-PbsServer#1'    = @{
            Check = {
                param($r)
                $c = @($r.Output)
                $c.Count | Should -Be 1
                $c[0].GetType().FullName | Should -Be 'PbsRestore.PowerShell.PbsServerConnection'
                $c[0].AuthId | Should -Be 'restore@pbs!dr'
                $c[0].Datastore | Should -Be 'store1'
                $c[0].Server | Should -Be $script:A
                $r.Probe | Should -Be @($true, $true)   # it is open and it became $DefaultPbsServer
            }
            # (probes run before the test closes what the example left open; checks run after)
            Probe = '$global:DefaultPbsServer.IsConnected; [object]::ReferenceEquals($global:DefaultPbsServer, $PbsTestExampleOutput[0])'
        }
        'Connect-PbsServer#2'    = @{
            # No fingerprint: the self-signed test certificate is refused with CertificateUntrusted, which the
            # example catches and shows; the message must show the fingerprint the server presented.
            Check = {
                param($r)
                $text = (Get-Lines $r.Output) -join "`n"
                $text | Should -Not -BeNullOrEmpty -Because 'the catch block outputs the CertificateUntrusted message'
                $text | Should -Match ([regex]::Escape($script:FpA))
            }
        }
        'Connect-PbsServer#3'    = @{
            Check = {
                param($r)
                $expected = @(Get-PbsSnapshot -Datastore $script:Store1 -Latest -ErrorAction Stop | ForEach-Object { "$($_.Namespace)|$($_.Snapshot)" } | Sort-Object)
                @($r.Output | ForEach-Object { "$($_.Namespace)|$($_.Snapshot)" } | Sort-Object) | Should -Be $expected
            }
        }
        'Connect-PbsServer#4'    = @{
            Check = {
                param($r)
                $snaps = @($r.Output)
                # pbs1/store1 (vm/100 in the root and in prod) and then pbs2/replica (the same two)
                $snaps.Count | Should -Be 4
                $snaps | ForEach-Object { $_.BackupId | Should -Be '100' }
                $r.Probe | Should -Be @($true, $false)   # main still open (default), offsite closed
            }
            Probe = '$main.IsConnected; $offsite.IsConnected'
        }
        'Connect-PbsServer#5'    = @{
            # The IPv6 address is mapped to the IPv4 loopback of server A (Start-TestServer listens on 127.0.0.1).
            Check = {
                param($r)
                @($r.Output).Count | Should -Be 1
                $r.Output[0].AuthId | Should -Be 'restore@pbs'
                ($r.Verbose -join "`n") | Should -Match ([regex]::Escape("Connected to $($script:A) as restore@pbs (datastore store1)."))
            }
        }

        # ---------------- Disconnect-PbsServer ----------------
        'Disconnect-PbsServer#1' = @{
            Setup = $script:ConnectStore1
            Probe = '[bool](Get-Variable -Name DefaultPbsServer -Scope Global -ErrorAction SilentlyContinue)'
            Check = {
                param($r)
                ($r.Verbose -join "`n") | Should -Match ([regex]::Escape("Disconnected from $($script:A)."))
                $r.Probe | Should -Be $false -Because '$DefaultPbsServer is removed'
            }
        }
        'Disconnect-PbsServer#2' = @{
            Variables = @{ fp = $script:FpB }   # $fp is the certificate of pbs2 (server B) here
            Probe     = '$offsite.IsConnected'
            Check     = {
                param($r)
                @($r.Output).Count | Should -Be 6   # the newest snapshot of each of the 6 groups of replica
                $r.Probe | Should -Be $false
            }
        }
        'Disconnect-PbsServer#3' = @{
            Probe = '[bool](Get-Variable -Name DefaultPbsServer -Scope Global -ErrorAction SilentlyContinue)'
            Check = {
                param($r)
                Assert-File (Join-Path $script:Restore 'vm-100-disk-0.raw') $script:Sha.Vm100Scsi0
                $r.Probe | Should -Be $false
            }
        }
        'Disconnect-PbsServer#4' = @{
            Setup = $script:ConnectStore1 + "`n" +
            '$global:second = Connect-PbsServer -Repository "restore@pbs!dr@$PbsTestA`:offsite" -Credential $PbsTestToken -Fingerprint $PbsTestFpA -NotDefault' + "`n" +
            '$global:PbsTestOpened = @($global:DefaultPbsServer, $global:second)'   # an array: not found by the example itself
            Probe = '$PbsTestOpened | ForEach-Object IsConnected'
            Check = {
                param($r)
                @($r.Verbose | Where-Object { "$_" -like 'Disconnected from*' }).Count | Should -Be 2
                $r.Probe | Should -Be @($false, $false)
            }
        }

        # ---------------- Get-PbsDatastore ----------------
        'Get-PbsDatastore#1'     = @{
            Setup = $script:ConnectStore1
            Check = { param($r) @($r.Output.Name | Sort-Object) | Should -Be @('offsite', 'plain', 'store1') }
        }
        'Get-PbsDatastore#2'     = @{
            Check = { param($r) @($r.Output.Name | Sort-Object) | Should -Be @('offsite', 'plain', 'store1') }
        }
        'Get-PbsDatastore#3'     = @{
            Setup = $script:ConnectStore1
            Check = {
                param($r)
                $rows = @($r.Output)
                @($rows.Datastore | Sort-Object -Unique) | Should -Be @('offsite', 'plain', 'store1')
                @($rows | Where-Object Datastore -EQ 'store1').Count | Should -Be 6
                @($rows | Where-Object Datastore -EQ 'plain').Count | Should -Be 4
            }
        }
        'Get-PbsDatastore#4'     = @{
            Probe = '$test.IsConnected; [bool](Get-Variable -Name DefaultPbsServer -Scope Global -ErrorAction SilentlyContinue)'
            Check = {
                param($r)
                @($r.Output.Name | Sort-Object) | Should -Be @('offsite', 'plain', 'store1')
                $r.Probe | Should -Be @($false, $false)
            }
        }

        # ---------------- Get-PbsNamespace ----------------
        'Get-PbsNamespace#1'     = @{
            Setup = $script:ConnectStore1
            Check = { param($r) @($r.Output.Namespace) | Should -Be @('', 'dev', 'prod', 'prod/web') }
        }
        'Get-PbsNamespace#2'     = @{
            Replace = @(, @('D:\pbs-usb', $script:UsbNs))   # the datastore with namespace prod
            Check   = { param($r) @($r.Output.Namespace) | Should -Be @('prod', 'prod/web') }
        }
        'Get-PbsNamespace#3'     = @{
            Setup = $script:ConnectStore1
            Check = {
                param($r)
                $counts = @{}
                foreach ($row in $r.Output) { $counts[$row.Namespace] = $row.Snapshots }
                $counts['(root)'] | Should -Be 3
                $counts['dev'] | Should -Be 1
                $counts['prod'] | Should -Be 1
                $counts['prod/web'] | Should -Be 1
            }
        }
        'Get-PbsNamespace#4'     = @{
            Check = { param($r) @($r.Output.Namespace) | Should -Be @('', 'dev', 'prod', 'prod/web') }
        }

        # ---------------- Get-PbsSnapshot ----------------
        'Get-PbsSnapshot#1'      = @{
            Check = {
                param($r)
                foreach ($s in 'ct/200/2024-05-01T10:10:00Z', 'vm/100/2024-05-01T10:00:00Z', 'vm/101/2024-05-01T10:05:00Z', 'vm/102/2024-05-01T10:15:00Z') {
                    $r.Text | Should -Match ([regex]::Escape($s))
                }
            }
        }
        'Get-PbsSnapshot#2'      = @{
            Check = {
                param($r)
                foreach ($s in 'ct/200/2024-05-01T10:10:00Z', 'vm/100/2024-05-01T10:00:00Z', 'vm/101/2024-05-01T10:05:00Z', 'vm/102/2024-05-01T10:15:00Z') {
                    $r.Text | Should -Match ([regex]::Escape($s))
                }
                $r.Text | Should -Match 'prod/web'
            }
        }
        'Get-PbsSnapshot#3'      = @{
            Setup = $script:ConnectStore1
            Check = {
                param($r)
                @($r.Output | Where-Object { -not $_.PSObject.Properties['BackupId'] }).Count | Should -Be 3   # the datastores
                $snaps = @($r.Output | Where-Object { $_.PSObject.Properties['BackupId'] })
                $snaps.Count | Should -Be 2
                $snaps | ForEach-Object { $_.BackupType | Should -Be 'vm'; $_.BackupId | Should -Be '100' }
            }
        }
        'Get-PbsSnapshot#4'      = @{
            Check = {
                param($r)
                @($r.Output | ForEach-Object { "$($_.Namespace)|$($_.Snapshot)" } | Sort-Object) |
                    Should -Be @('prod/web|ct/200/2024-05-01T10:10:00Z', 'prod|vm/100/2024-05-01T10:00:00Z')
            }
        }
        'Get-PbsSnapshot#5'      = @{
            Check = {
                param($r)
                @($r.Output)[0] | Should -BeOfType [datetime]
                $r.Text | Should -Match 'drive-scsi0\.img'
                $r.Text | Should -Match 'qemu-server\.conf'
            }
        }
        'Get-PbsSnapshot#6'      = @{
            Check = {
                param($r)
                @($r.Output).Count | Should -Be 1
                $r.Output[0].Namespace | Should -Be 'prod/web'
                $r.Output[0].Snapshot | Should -Be 'ct/200/2024-05-01T10:10:00Z'
            }
        }
        'Get-PbsSnapshot#7'      = @{
            Check = {
                param($r)
                @($r.Output).Count | Should -Be 1
                $r.Output[0].Snapshot | Should -Be 'vm/101/2024-05-01T10:05:00Z'
                "$($r.Output[0].KeyFingerprint)" | Should -Be $script:KeyFingerprint
            }
        }
        'Get-PbsSnapshot#8'      = @{
            # The golden snapshots are from May 2024, so nothing is newer than seven days: the example must run
            # without error and return nothing.
            Setup = $script:ConnectStore1
            Check = { param($r) @($r.Output).Count | Should -Be 0 }
        }
        'Get-PbsSnapshot#9'      = @{
            Check = { param($r) Assert-File (Join-Path $script:Restore 'vm-100-disk-0.raw') $script:Sha.Vm100Scsi0 }
        }
        'Get-PbsSnapshot#10'     = @{
            # The golden snapshots have no notes: the -Name wildcard finds nothing and says nothing.
            Check = {
                param($r)
                @($r.Output | ForEach-Object { "$($_.Namespace)|$($_.Snapshot)" }) |
                    Should -Be @('|vm/100/2024-05-01T10:00:00Z', '|vm/101/2024-05-01T10:05:00Z', 'dev|vm/102/2024-05-01T10:15:00Z')
            }
        }

        # ---------------- Measure-PbsRestore ----------------
        'Measure-PbsRestore#1'   = @{
            Setup = $script:ConnectStore1
            Check = { param($r) $r.Text | Should -Match 'Bottleneck\s*:\s*\S' ; $r.Text | Should -Match 'vm/100/2024-05-01T10:00:00Z' }
        }
        'Measure-PbsRestore#2'   = @{
            Setup = $script:ConnectStore1
            Check = {
                param($r)
                $rows = @($r.Text -split "`n" | Where-Object { $_ -match '^\s*(1|4|16|32)\s+\d' })
                $rows.Count | Should -Be 4 -Because "one row per fetch concurrency:`n$($r.Text)"
            }
        }
        'Measure-PbsRestore#3'   = @{
            Check = {
                param($r)
                @($r.Output).Count | Should -Be 1
                $r.Output[0].Bottleneck | Should -Not -BeNullOrEmpty
                Assert-File (Join-Path $script:Scratch 'measure.raw') $script:Sha.Vm100Scsi0
            }
        }
        'Measure-PbsRestore#4'   = @{
            Setup = '$env:PBS_PASSWORD = $PbsTestTokenSecret; $env:PBS_FINGERPRINT = $PbsTestFpA'   # "The secret comes from PBS_PASSWORD here."
            Check = {
                param($r)
                $rows = @($r.Text -split "`n" | Where-Object { $_ -match '^\s*(1|4|8)\s+\d' })
                $rows.Count | Should -Be 3 -Because "one row per number of connections:`n$($r.Text)"
            }
        }
        'Measure-PbsRestore#5'   = @{
            # Known to fail (a help problem, not a fixture one): the example passes -Keyfile without -KeyPassword,
            # the cmdlet never prompts, so it stops with KeyPasswordRequired unless PBS_ENCRYPTION_PASSWORD happens
            # to be set; nothing in the example or its remarks says so. It passes once the password is given.
            Setup = $script:ConnectStore1
            Check = {
                param($r)
                @($r.Output).Count | Should -Be 1
                $r.Output[0].Bottleneck | Should -Not -BeNullOrEmpty
            }
        }

        # ---------------- Test-PbsSnapshot ----------------
        'Test-PbsSnapshot#1'     = @{
            Check = {
                param($r)
                $rows = @($r.Output)
                @($rows | ForEach-Object Archive | Sort-Object) | Should -Be @('drive-scsi0.img', 'drive-virtio1.img', 'qemu-server.conf')
                $rows | ForEach-Object { $_.GetType().FullName | Should -Be 'PbsRestore.Restore.VerifyResult'; $_.Ok | Should -BeTrue; $_.BadChunks.Count | Should -Be 0 }
                $rows | ForEach-Object { $_.Snapshot | Should -Be 'vm/100/2024-05-01T10:00:00Z' }
                @(Get-ChildItem -LiteralPath $script:Restore, $script:Scratch -Recurse -Force).Count | Should -Be 0 -Because 'nothing is written'
            }
        }
        'Test-PbsSnapshot#2'     = @{
            Check = {
                param($r)
                $r.Text | Should -Match 'drive-scsi0\.img\s+\d+\s+True'
                $r.Text | Should -Match 'qemu-server\.conf\s+1\s+True'
                $r.Text | Should -Not -Match 'False'
            }
        }
        'Test-PbsSnapshot#3'     = @{
            Setup = $script:ConnectStore1
            Check = {
                param($r)
                # The newest vm snapshot of every group of store1 (vm/100, vm/101, dev/vm/102, prod/vm/100): their disks.
                $expected = @(Get-PbsSnapshot -Datastore $script:Store1 -BackupType vm -Latest -ErrorAction Stop | ForEach-Object {
                        $s = $_; $_.Files | ForEach-Object ArchiveName | Where-Object { $_ -like 'drive-*' } | ForEach-Object { "$($s.Snapshot)|$_" } })
                $expected.Count | Should -BeGreaterOrEqual 5
                $rows = @($r.Text -split "`n" | Where-Object { $_ -match '\sdrive-\S+\s+\d+\s+True\s*$' })
                $rows.Count | Should -Be $expected.Count -Because "one row per disk, all Ok:`n$($r.Text)"
                $r.Text | Should -Not -Match '\sFalse\s*$'
            }
        }
        'Test-PbsSnapshot#4'     = @{
            Check = {
                param($r)
                @($r.Output).Count | Should -Be 0 -Because "a healthy snapshot has no bad chunks:`n$($r.Text)"
            }
        }

        # ---------------- Get-PbsFile / Restore-PbsFile (D:\pbs-files: the sample tree as ct/300) ----------------
        'Get-PbsFile#1'          = @{
            Check = { param($r) @($r.Output | ForEach-Object Path) | Should -Be @(0..19 | ForEach-Object { '/etc/conf{0:D2}' -f $_ }) }
        }
        'Get-PbsFile#2'          = @{
            Check = { param($r) $r.Text | Should -Match '/sub/deeper/file\.txt' ; $r.Text | Should -Match '/hello\.txt' }
        }
        'Get-PbsFile#3'          = @{
            Check = { param($r) $r.Output[0].Sum | Should -Be (2 * 1MB) ; $r.Output[0].Count | Should -Be 2 }
        }
        'Restore-PbsFile#1'      = @{
            Check = {
                param($r)
                $r.Output[0].Files | Should -Be 20
                @(Get-ChildItem (Join-Path $script:Restore 'etc') -File).Count | Should -Be 20
            }
        }
        'Restore-PbsFile#2'      = @{
            Setup = "[IO.File]::WriteAllText('$($script:Restore)/conf01', 'old')"
            Check = {
                param($r)
                @($r.Output).Count | Should -Be 2
                [IO.File]::ReadAllText((Join-Path $script:Restore 'file.txt')) | Should -Be "deep`n"
                (Get-Item (Join-Path $script:Restore 'conf01')).Length | Should -Be (500 + 37)
            }
        }
        'Restore-PbsFile#3'      = @{
            Check = { param($r) @($r.Output).Count | Should -Be 0 ; Test-Path (Join-Path $script:Restore 'ct-300') | Should -BeFalse }
        }

        'Export-PbsFile#1'       = @{
            Check = {
                param($r)
                $r.Output[0].Files | Should -Be 20
                Add-Type -AssemblyName System.IO.Compression.FileSystem
                $zip = [IO.Compression.ZipFile]::OpenRead((Join-Path $script:Restore 'etc.zip'))
                try { @($zip.Entries | Where-Object { $_.FullName -like 'etc/conf*' }).Count | Should -Be 20 } finally { $zip.Dispose() }
            }
        }
        'Export-PbsFile#2'       = @{
            Check = { param($r) $r.Output[0].Files | Should -Be 1 ; (& tar -tf (Join-Path $script:Restore 'sub.tar')) | Should -Contain 'sub/deeper/file.txt' }
        }
        'Export-PbsFile#3'       = @{
            Check = { param($r) @($r.Output).Count | Should -Be 0 ; Test-Path (Join-Path $script:Restore 'big.tar') | Should -BeFalse }
        }

        # ---------------- Publish-PbsImage, Get-PbsPublication, Unpublish-PbsImage ----------------
        # Each example's runspace is closed after it: that ends its publications (and tests that it does).
        'Publish-PbsImage#1'     = @{
            Probe = '$p.Luns | ForEach-Object { Test-Path -LiteralPath $_.OverlayPath }'
            Check = {
                param($r)
                @($r.Output.Archive) | Should -Be @('drive-scsi0.img', 'drive-virtio1.img')
                $r.Probe | Should -Be @($true, $true) -Because 'each disk has its overlay while published'
                $r.Text | Should -Match 'drive-virtio1\.img'
                # The example's runspace is closed now: that ended the publication and deleted its overlays.
                $r.Output | ForEach-Object { $_.OverlayPath | Should -Not -Exist }
            }
        }
        'Publish-PbsImage#2'     = @{
            Allow   = $script:NoIscsiInitiator
            # qemu-img asks for GET LBA STATUS (the target reports thin provisioning); while the target answers that
            # command with ILLEGAL REQUEST, qemu-img says so on stderr and reads every block instead. The bytes are
            # what is checked: the file's SHA-256 against the archive.
            Replace = @(, @('E:\restore\scsi0.raw', 'E:\restore\scsi0.raw 2>$null'))
            Check = {
                param($r)
                $a = Get-GoldenArchive (Get-GoldenSnapshot vm 100) 'drive-scsi0.img.fidx'
                Assert-DiskFile (Join-Path $script:Restore 'scsi0.raw') $a.plaintext_sha256 $a.size
            }
        }
        'Publish-PbsImage#3'     = @{
            Replace = @(
                , @("Get-Credential -UserName restore -Message 'CHAP secret, 12 to 16 characters'", '$PbsTestChap')
                , @('-Port 3260', '-Port 0')   # 3260 may be taken on a test machine (tgtd)
                , @("'iqn.1991-05.com.microsoft:fs01.example.com'", "'iqn.1991-05.com.microsoft:fs01'")
            )
            Check   = {
                param($r)
                $r.Text | Should -Match 'ChapUser\s*:\s*restore'
                $r.Text | Should -Match 'Portal\s*:\s*0\.0\.0\.0:\d+'
                $r.Text | Should -Not -Match ([regex]::Escape($script:ChapPlain))
            }
        }
        'Publish-PbsImage#4'     = @{ Allow = "Windows' iSCSI initiator and Storage cmdlets (New-IscsiTargetPortal, Connect-IscsiTarget, Get-Disk, Set-Disk) exist only on Windows, which cannot run here" }
        'Publish-PbsImage#5'     = @{ Allow = "the Linux kernel's iSCSI initiator (iscsiadm, iscsid, the iscsi_tcp module) and mounting need a machine that has them; this one has no iscsi_tcp module (qemu-img stands in, example 2)" }
        'Get-PbsPublication#1'   = @{
            Setup = $script:PublishVm100
            Check = {
                param($r)
                @($r.Output | Where-Object { "$($_.Snapshot)" -eq 'vm/100/2024-05-01T10:00:00Z' }).Count | Should -BeGreaterOrEqual 1
                $r.Text | Should -Match 'iqn\.2024-05\.io\.github\.pbsrestore:vm-100-20240501t100000z'
            }
        }
        'Get-PbsPublication#2'   = @{
            Setup = $script:PublishVm100
            Check = { param($r) $r.Text | Should -Match 'drive-scsi0\.img' ; $r.Text | Should -Match 'drive-virtio1\.img' }
        }
        'Get-PbsPublication#3'   = @{
            Check = { param($r) $r.Text | Should -Match 'ChunksFetched\s*:\s*0' ; $r.Text | Should -Match 'MediumErrors\s*:\s*0' }
        }
        'Unpublish-PbsImage#1'   = @{
            Setup = $script:PublishVm100
            Probe = '$PbsTestPub.IsPublished; $PbsTestPub.Luns | ForEach-Object { Test-Path -LiteralPath $_.OverlayPath }'
            Check = { param($r) $r.Probe | Should -Be @($false, $false, $false) }
        }
        'Unpublish-PbsImage#2'   = @{
            Probe = '$p.Luns | ForEach-Object { $_.Device.Overlay.Created }; (Get-ChildItem -LiteralPath (Split-Path $p.Luns[0].OverlayPath) -Filter *.overlay).Count'
            Check = { param($r) $r.Probe | Should -Be @($false, $false, 2) -Because 'the second publication found the two kept overlays' }
        }
        'Unpublish-PbsImage#3'   = @{
            Probe = '$p.IsPublished'
            Check = { param($r) $r.Probe | Should -Be @($false) }
        }

        # ---------------- Restore-PbsImage ----------------
        'Restore-PbsImage#1'     = @{
            Check = {
                param($r)
                @($r.Output).Count | Should -Be 1
                $r.Output[0].Snapshot | Should -Match 'vm/100/2024-05-01T10:00:00Z'
                Assert-File (Join-Path $script:Restore 'vm-100-disk-0.raw') $script:Sha.Vm100Scsi0
            }
        }
        'Restore-PbsImage#2'     = @{
            Check = { param($r) Assert-File (Join-Path $script:Restore 'vm-100-disk-0.raw') $script:Sha.Vm100Scsi0 }
        }
        'Restore-PbsImage#3'     = @{
            Check = { param($r) Assert-File (Join-Path $script:Restore 'vm-100.conf') $script:Sha.Vm100Conf }
        }
        'Restore-PbsImage#4'     = @{
            Setup = $script:ConnectStore1
            Check = {
                param($r)
                Assert-File (Join-Path $script:Restore 'vm-100.conf') $script:Sha.Vm100Conf
                Assert-File (Join-Path $script:Restore 'vm-100-scsi0.raw') $script:Sha.Vm100Scsi0
                Assert-File (Join-Path $script:Restore 'vm-100-virtio1.raw') $script:Sha.Vm100Virtio1
            }
        }
        'Restore-PbsImage#5'     = @{
            Setup = $script:ConnectStore1
            Check = { param($r) Assert-File (Join-Path $script:Restore 'vm-100-disk-0.raw') $script:Sha.Vm100Scsi0 }
        }
        'Restore-PbsImage#6'     = @{
            Check = { param($r) Assert-File (Join-Path $script:Restore 'vm-101-disk-0.raw') $script:Sha.Vm101Scsi0 }
        }
        'Restore-PbsImage#7'     = @{
            # "The connected server" is datastore 'plain' (VM 100 only in the root): in store1 VM 100 also
            # exists in namespace prod, and two piped snapshots would both target the one destination file.
            Setup = 'Connect-PbsServer -Repository "restore@pbs!dr@$PbsTestA`:plain" -Credential $PbsTestToken -Fingerprint $PbsTestFpA | Out-Null'
            Check = { param($r) Assert-File (Join-Path $script:Restore 'vm-100-disk-0.raw') $script:Sha.Vm100Scsi0 }
        }
        'Restore-PbsImage#8'     = @{
            # The golden CT 200 has its dynamic archive as data.didx (arbitrary bytes), not root.pxar.
            Replace = @(, @('-Archive root.pxar', '-Archive data'))
            Check   = { param($r) Assert-File (Join-Path $script:Restore 'ct-200-root.pxar') $script:Sha.Ct200Data }
        }
        'Restore-PbsImage#9'     = @{
            Check = {
                param($r)
                Join-Path $script:Restore 'vm-100-disk-0.raw' | Should -Not -Exist
                @($r.Output).Count | Should -Be 0
            }
        }
        'Restore-PbsImage#10'    = @{
            Setup = $script:ConnectStore1
            Check = {
                param($r)
                ($r.Output -join "`n") | Should -Match '^Restored [\d.]+ GiB at \d+ MB/s$'
                Assert-File (Join-Path $script:Restore 'vm-100-disk-0.raw') $script:Sha.Vm100Scsi0
            }
        }
        'Restore-PbsImage#11'    = @{
            # "over a file restored earlier": an older file is there before, -Force replaces it.
            Setup = "Set-Content -LiteralPath '$($script:Restore)/vm-100-disk-0.raw' -Value 'an older restore'"
            Check = { param($r) Assert-File (Join-Path $script:Restore 'vm-100-disk-0.raw') $script:Sha.Vm100Scsi0 }
        }
        'Restore-PbsImage#13'    = @{
            # Nothing was interrupted here, so -Resume restores from the start (as the example says it then does).
            Setup = '$env:PBS_PASSWORD = $PbsTestTokenSecret; $env:PBS_FINGERPRINT = $PbsTestFpA'
            Check = {
                param($r)
                Assert-File (Join-Path $script:Restore 'vm-100-disk-0.raw') $script:Sha.Vm100Scsi0
                (Join-Path $script:Restore 'vm-100-disk-0.raw.partial.journal') | Should -Not -Exist
            }
        }
        'Restore-PbsImage#14'    = @{
            Check = {
                param($r)
                $r.Output[0].Format | Should -Be 'Vhdx'
                $vhdx = Join-Path $script:Restore 'vm-100-disk-0.vhdx'
                [Text.Encoding]::ASCII.GetString([IO.File]::ReadAllBytes($vhdx), 0, 8) | Should -Be 'vhdxfile'
                $raw = Join-Path $script:Scratch 'vhdx.raw'
                & qemu-img convert -f vhdx -O raw $vhdx $raw
                $LASTEXITCODE | Should -Be 0
                # The VHDX's size is the image's rounded up to 512 bytes: compare the image's bytes.
                $size = (Get-GoldenArchive (Get-GoldenSnapshot vm 100) 'drive-scsi0.img.fidx').size
                [Convert]::ToHexStringLower([Security.Cryptography.SHA256]::Create().ComputeHash([IO.File]::ReadAllBytes($raw), 0, $size)) | Should -Be $script:Sha.Vm100Scsi0
            }
        }
        'Restore-PbsImage#16'    = @{
            Check = {
                param($r)
                $r.Output[0].Format | Should -Be 'Vmdk'
                $vmdk = Join-Path $script:Restore 'vm-100-disk-0.vmdk'
                [Text.Encoding]::ASCII.GetString([IO.File]::ReadAllBytes($vmdk), 0, 4) | Should -Be 'KDMV'
                & qemu-img check -f vmdk $vmdk | Out-Null
                $LASTEXITCODE | Should -Be 0
                $raw = Join-Path $script:Scratch 'vmdk.raw'
                & qemu-img convert -f vmdk -O raw $vmdk $raw
                $LASTEXITCODE | Should -Be 0
                $size = (Get-GoldenArchive (Get-GoldenSnapshot vm 100) 'drive-scsi0.img.fidx').size
                [Convert]::ToHexStringLower([Security.Cryptography.SHA256]::Create().ComputeHash([IO.File]::ReadAllBytes($raw), 0, $size)) | Should -Be $script:Sha.Vm100Scsi0
            }
        }
        'Restore-PbsImage#17'    = @{
            # The fixture datastore is intact: the restore is bit-exact and there is nothing in BadRanges
            # (damaged chunks are in Restore-PbsImage.BadInput.Tests.ps1).
            Check = {
                param($r)
                Assert-File (Join-Path $script:Restore 'vm-100-disk-0.raw') $script:Sha.Vm100Scsi0
                @($r.Output) | Should -HaveCount 0 -Because 'the example formats the (empty) BadRanges'
            }
        }
        'Restore-PbsImage#15'    = @{
            # A loop device over a file of garbage stands in for the physical disk (needs root).
            Allow   = if (-not $script:CanLoop) { 'needs root and a loop device to stand in for a disk' }
            # No host answers prompts here: -Confirm:$false is the runbook's answer to the device question (the prompt
            # itself is proven in Restore-PbsImage.Device.Tests.ps1).
            Replace = @(@('\\.\PhysicalDrive2', '$PbsTestLoop'), @('-Force', '-Force -Confirm:$false'))
            Setup   = if ($script:HelpLoop) { "`$PbsTestLoop = '$($script:HelpLoop)'" }
            Check   = {
                param($r)
                $dev = $r.Output[0].Destination
                $dev | Should -Be $script:HelpLoop
                & {
                    $r.Output[0].Format | Should -Be 'Device'
                    $size = (Get-GoldenArchive (Get-GoldenSnapshot vm 100) 'drive-scsi0.img.fidx').size
                    $stream = [IO.File]::OpenRead($dev)
                    try { $buf = [byte[]]::new($size); $stream.ReadExactly($buf, 0, $size) } finally { $stream.Dispose() }
                    [Convert]::ToHexStringLower([Security.Cryptography.SHA256]::Create().ComputeHash($buf)) | Should -Be $script:Sha.Vm100Scsi0
                }
            }
        }
        'Restore-PbsImage#12'    = @{
            # A datastore without the encrypted VM 101: the example passes no key file and restores "every VM".
            Replace = @(, @('D:\pbs-usb', $script:UsbNoEnc))
            Check   = {
                param($r)
                @($r.Output).Count | Should -BeGreaterThan 0
                Assert-File (Join-Path $script:Restore 'vm-100-2024-05-01T10-00-00Z/drive-scsi0.img') $script:Sha.Vm100Scsi0
                Assert-File (Join-Path $script:Restore 'vm-100-2024-05-01T10-00-00Z/drive-virtio1.img') $script:Sha.Vm100Virtio1
                Assert-File (Join-Path $script:Restore 'vm-100-2024-05-01T10-00-00Z/qemu-server.conf') $script:Sha.Vm100Conf
            }
        }
    }

    function script:Convert-Example([string] $Code, [object[]] $Extra) {
        # The code without its sample output (everything after the first blank line), placeholders replaced.
        $code = ($Code -replace "`r`n", "`n")
        $blank = [regex]::Match($code, '\n[ \t]*\n')
        if ($blank.Success) { $code = $code.Substring(0, $blank.Index) }
        foreach ($pair in @($Extra) + $script:CommonMap) {
            if ($null -eq $pair) { continue }
            $code = $code.Replace([string]$pair[0], [string]$pair[1])
        }
        $code
    }

    function script:Format-ErrorRecord($e) {
        if ($e -is [System.Management.Automation.IContainsErrorRecord]) { $e = $e.ErrorRecord }
        if ($e -is [System.Management.Automation.ErrorRecord]) {
            $pos = if ($e.InvocationInfo) { " at line $($e.InvocationInfo.ScriptLineNumber): $($e.InvocationInfo.Line.Trim())" } else { '' }
            return "[$($e.FullyQualifiedErrorId)] $($e.Exception.Message)$pos"
        }
        "$($e.GetType().FullName): $($e.Message)"
    }

    function script:Invoke-InRunspace($Runspace, [string] $Script, [object[]] $Arguments) {
        $ps = [powershell]::Create()
        $ps.Runspace = $Runspace
        [void]$ps.AddScript($Script)
        $errors = [System.Collections.Generic.List[string]]::new()
        $out = @()
        try { $out = @($ps.Invoke()) }
        catch {
            $ex = $_.Exception
            while ($ex -is [System.Management.Automation.MethodInvocationException] -and $ex.InnerException) { $ex = $ex.InnerException }
            $errors.Add((Format-ErrorRecord $ex))
        }
        foreach ($e in $ps.Streams.Error) { $errors.Add((Format-ErrorRecord $e)) }
        $result = [pscustomobject]@{
            Output   = $out
            Errors   = @($errors)
            Warnings = @($ps.Streams.Warning | ForEach-Object Message)
            Verbose  = @($ps.Streams.Verbose | ForEach-Object Message)
        }
        $ps.Dispose()
        $result
    }

    function script:Invoke-Example([string] $Code, [hashtable] $Variables, [string] $Setup, [string] $Probe) {
        $iss = [System.Management.Automation.Runspaces.InitialSessionState]::CreateDefault2()
        $iss.ImportPSModule([string[]]@($script:ModuleManifest))
        $rs = [runspacefactory]::CreateRunspace($iss)
        $rs.Open()
        try {
            foreach ($k in $Variables.Keys) { $rs.SessionStateProxy.SetVariable($k, $Variables[$k]) }
            $rs.SessionStateProxy.SetVariable('ErrorActionPreference', [System.Management.Automation.ActionPreference]::Stop)
            $rs.SessionStateProxy.SetVariable('ProgressPreference', [System.Management.Automation.ActionPreference]::SilentlyContinue)
            $rs.SessionStateProxy.SetVariable('ConfirmPreference', [System.Management.Automation.ConfirmImpact]::None)
            if ($Setup) {
                $s = Invoke-InRunspace $rs $Setup
                if ($s.Errors.Count) { throw "the test setup failed: $($s.Errors -join '; ')" }
            }
            $r = Invoke-InRunspace $rs $Code
            # The output as the user would see it (Format-* objects rendered).
            $fmt = [powershell]::Create(); $fmt.Runspace = $rs
            [void]$fmt.AddCommand('Out-String').AddParameter('Width', 400)
            $text = try { -join @($fmt.Invoke([object[]]$r.Output)) } catch { '' }
            $fmt.Dispose()
            $rs.SessionStateProxy.SetVariable('PbsTestExampleOutput', $r.Output)
            $probeOut = if ($Probe) { $p = Invoke-InRunspace $rs $Probe; if ($p.Errors.Count) { throw "the probe failed: $($p.Errors -join '; ')" }; @($p.Output) } else { @() }
            $r | Add-Member -NotePropertyName Text -NotePropertyValue $text
            $r | Add-Member -NotePropertyName Probe -NotePropertyValue $probeOut
            $r
        }
        finally {
            # Close whatever the example left open (connections hold HTTP clients).
            [void](Invoke-InRunspace $rs '$ErrorActionPreference = "SilentlyContinue"; Get-Variable -Scope Global -ValueOnly | Where-Object { $_ -is [PbsRestore.PowerShell.PbsServerConnection] -and $_.IsConnected } | Disconnect-PbsServer')
            $rs.Dispose()
        }
    }
}

AfterAll {
    if ($script:HelpLoop) { & losetup -d $script:HelpLoop 2>$null }
    Stop-TestServer $script:ServerA
    Stop-TestServer $script:ServerB
    Restore-PbsEnvironment $script:SavedEnv
}

Describe 'Help examples of <Cmdlet>' -ForEach $script:CmdletCases {
    It 'has at least 3 examples, each with an entry in the mapping table' {
        $examples = @((Get-Help $Cmdlet -Full).examples.example)
        $examples.Count | Should -BeGreaterOrEqual 3
        foreach ($n in 1..$examples.Count) { $script:PerExample.ContainsKey("$Cmdlet#$n") | Should -BeTrue -Because "$Cmdlet example $n needs an entry" }
    }
}

Describe 'Help example' {
    BeforeEach {
        # Each example starts without PBS_* variables (process-wide) and with an empty destination folder.
        Clear-PbsEnvironment
        foreach ($d in $script:Restore, $script:Scratch) {
            if ([IO.Directory]::Exists($d)) { [IO.Directory]::Delete($d, $true) }
            [void][IO.Directory]::CreateDirectory($d)
        }
    }
    AfterEach {
        Restore-PbsEnvironment $script:SavedEnv
    }

    It '<Key>: <Title>' -ForEach $script:ExampleCases {
        $entry = $script:PerExample[$Key]
        $entry | Should -Not -BeNullOrEmpty -Because "every example needs an explicit entry in `$PerExample ($Key)"
        if ($entry['Allow']) { Set-ItResult -Skipped -Because $entry['Allow']; return }

        $extra = @($entry['Replace'])
        foreach ($pair in $extra) {
            if ($null -ne $pair) { $Code.Contains([string]$pair[0]) | Should -BeTrue -Because "the mapping for $Key expects '$($pair[0])' in the example" }
        }
        $code = Convert-Example $Code $extra
        $code | Should -Not -Match $script:Leftover -Because "every placeholder must be mapped to a fixture:`n$code"

        $vars = $script:BaseVariables.Clone()
        if ($entry['Variables']) { foreach ($k in $entry['Variables'].Keys) { $vars[$k] = $entry['Variables'][$k] } }
        $r = Invoke-Example -Code $code -Variables $vars -Setup $entry['Setup'] -Probe $entry['Probe']

        $r.Errors.Count | Should -Be 0 -Because "the example must run without errors; it wrote:`n$($r.Errors -join "`n")`nCode run:`n$code`n"
        $r.Warnings.Count | Should -Be 0 -Because "the example must run without warnings; it wrote:`n$($r.Warnings -join "`n")`nCode run:`n$code`n"
        & $entry.Check $r
    }
}
