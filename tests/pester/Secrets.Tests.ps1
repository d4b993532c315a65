# No secret ever shows: restores and listings over the wire with a user password (-Credential), an API token
# secret (PBS_PASSWORD and -Credential) and an encryption key password (-KeyPassword and
# PBS_ENCRYPTION_PASSWORD), succeeding and failing (wrong password, wrong token, wrong key password), run
# with -Verbose -Debug and every preference on in a separate PowerShell instance. EVERY stream it produced
# (output, error, warning, verbose, debug, information, progress, and $Error) is serialized in full and
# searched for the secrets; so is the server's stderr log. A control run that leaks on purpose proves the
# capture would catch a leak.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot '../../PbsRestore.psd1') -Force
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Join-Path $PSScriptRoot 'ServerHelpers.psm1') -Force
    $script:ModuleManifest = [System.IO.Path]::GetFullPath((Join-Path $PSScriptRoot '../../PbsRestore.psd1'))
    $script:Datastore = Get-GoldenDatastore
    $script:Vm100 = Get-GoldenSnapshot vm 100
    $script:Vm101 = Get-GoldenSnapshot vm 101
    $script:Ct200 = Get-GoldenSnapshot ct 200
    $script:Vm100Scsi0 = Get-GoldenArchive $script:Vm100 'drive-scsi0.img.fidx'
    $script:Vm101Scsi0 = Get-GoldenArchive $script:Vm101 'drive-scsi0.img.fidx'
    $script:Vm101Conf = Get-GoldenArchive $script:Vm101 'qemu-server.conf.blob'
    $script:Ct200Data = Get-GoldenArchive $script:Ct200 'data.didx'
    $script:GoldenKey = Get-GoldenPath $script:Vm101.key_file

    $script:SavedEnv = Save-PbsEnvironment
    Clear-PbsEnvironment

    # The secrets (unique strings, so any occurrence is a leak) and the wrong ones tried.
    $script:TokenId = 'leak@pbs!probe'
    $script:UserId = 'bob@pbs'
    $script:S = [ordered]@{
        TokenSecret     = 'S3cr3t-Token-Value-7f1c'
        UserPassword    = 'Us3r-Pass-Value-2e9a'
        KeyPassword     = 'K3y-Pass-Value-91d4'
        GoldenKeyPass   = $script:Vm101.key_password
        WrongToken      = 'Wr0ng-Token-Value-a41e'
        WrongUser       = 'Wr0ng-User-Pass-Value-c08f'
        WrongKey        = 'Wr0ng-Key-Pass-Value-5d3b'
    }
    $script:Secrets = @($script:S.Values)

    # The golden key (raw key from MANIFEST.json) wrapped again with KeyPassword: scrypt (n=1024) and
    # AES-256-GCM with PBS's 16-byte IV (BouncyCastle, as .NET's AesGcm takes only 12-byte nonces).
    Add-Type -Path (Join-Path $PSScriptRoot '../../module/bin/deps/BouncyCastle.Cryptography.dll')
    function script:New-WrappedKeyFile {
        param([Parameter(Mandatory)] [string] $Path, [Parameter(Mandatory)] [string] $Password)
        $keyInfo = @((Get-GoldenManifest).keys | Where-Object name -EQ 'scrypt.key.json')[0]
        $raw = [Convert]::FromHexString($keyInfo.raw_key_hex)
        $salt = [System.Security.Cryptography.RandomNumberGenerator]::GetBytes(32)
        $iv = [System.Security.Cryptography.RandomNumberGenerator]::GetBytes(16)
        $kek = [Org.BouncyCastle.Crypto.Generators.SCrypt]::Generate([System.Text.Encoding]::UTF8.GetBytes($Password), $salt, 1024, 8, 1, 32)
        $gcm = [Org.BouncyCastle.Crypto.Modes.GcmBlockCipher]::new([Org.BouncyCastle.Crypto.Engines.AesEngine]::new())
        $gcm.Init($true, [Org.BouncyCastle.Crypto.Parameters.AeadParameters]::new([Org.BouncyCastle.Crypto.Parameters.KeyParameter]::new($kek), 128, $iv))
        $out = [byte[]]::new($gcm.GetOutputSize($raw.Length))
        $n = $gcm.ProcessBytes($raw, 0, $raw.Length, $out, 0)
        $n += $gcm.DoFinal($out, $n)
        # BouncyCastle: ciphertext || tag; PBS: iv || tag || ciphertext.
        [byte[]] $data = $iv + $out[32..47] + $out[0..31]
        $json = [ordered]@{
            kdf         = @{ Scrypt = [ordered]@{ n = 1024; r = 8; p = 1; salt = [Convert]::ToBase64String($salt) } }
            created     = '2024-04-30T18:00:00+00:00'
            modified    = '2024-04-30T18:00:00+00:00'
            data        = [Convert]::ToBase64String($data)
            fingerprint = $keyInfo.fingerprint
        } | ConvertTo-Json -Depth 5 -Compress
        [System.IO.File]::WriteAllText($Path, $json)
        $Path
    }
    $script:KeyFile = New-WrappedKeyFile -Path (Join-Path $TestDrive 'probe.key.json') -Password $script:S.KeyPassword

    $script:Server = Start-TestServer -Datastore @{ golden = $script:Datastore } `
        -Token "$($script:TokenId):$($script:S.TokenSecret)" -User "$($script:UserId):$($script:S.UserPassword)" `
        -LogFolder (Join-Path $TestDrive 'server')
    $script:Fp = $script:Server.Fingerprint
    $script:TokenRepo = "$($script:TokenId)@127.0.0.1:$($script:Server.Port):golden"
    $script:HostRepo = "127.0.0.1:$($script:Server.Port):golden"

    # What every isolated script receives (secrets as values, never as text of the script).
    $script:BaseParams = @{
        Module      = $script:ModuleManifest
        TokenRepo   = $script:TokenRepo
        HostRepo    = $script:HostRepo
        Fp          = $script:Fp
        TokenId     = $script:TokenId
        UserId      = $script:UserId
        KeyFile     = $script:KeyFile
        GoldenKey   = $script:GoldenKey
    }
    foreach ($k in $script:S.Keys) { $script:BaseParams[$k] = $script:S[$k] }

    # The prologue of every isolated script: parameters, module, preferences on, helpers.
    $script:Prologue = @'
param($Module, $TokenRepo, $HostRepo, $Fp, $TokenId, $UserId, $KeyFile, $GoldenKey, $Out,
      $TokenSecret, $UserPassword, $KeyPassword, $GoldenKeyPass, $WrongToken, $WrongUser, $WrongKey)
Import-Module $Module -ErrorAction Stop
$ErrorActionPreference = 'Continue'
$ProgressPreference = 'Continue'
$InformationPreference = 'Continue'
$VerbosePreference = 'Continue'
$DebugPreference = 'Continue'
$WarningPreference = 'Continue'
function Sec([string] $s) { ConvertTo-SecureString -String $s -AsPlainText -Force }
function Cred([string] $user, [string] $s) { [pscredential]::new($user, (Sec $s)) }
function Try-Run([scriptblock] $sb) { try { & $sb } catch { $_ } }
Write-Information "isolated run started" -Tags probe
'@

    # Serializes one ErrorRecord completely (exception chain with types, messages, stacks and Data).
    function script:ConvertTo-ErrorText {
        param($ErrorRecord)
        $sb = [System.Text.StringBuilder]::new()
        $e = $ErrorRecord
        [void]$sb.AppendLine("ErrorRecord: $($e.ToString())")
        [void]$sb.AppendLine("FullyQualifiedErrorId: $($e.FullyQualifiedErrorId)")
        [void]$sb.AppendLine("CategoryInfo: $($e.CategoryInfo.ToString()) | Reason=$($e.CategoryInfo.Reason) | Target=$($e.CategoryInfo.TargetName) $($e.CategoryInfo.TargetType) | Activity=$($e.CategoryInfo.Activity)")
        [void]$sb.AppendLine("ErrorDetails: $($e.ErrorDetails) | $($e.ErrorDetails.Message) | $($e.ErrorDetails.RecommendedAction)")
        [void]$sb.AppendLine("ScriptStackTrace: $($e.ScriptStackTrace)")
        [void]$sb.AppendLine("InvocationInfo: $($e.InvocationInfo.MyCommand) | $($e.InvocationInfo.Line) | $($e.InvocationInfo.PositionMessage)")
        if ($null -ne $e.InvocationInfo) {
            foreach ($p in $e.InvocationInfo.BoundParameters.GetEnumerator()) {
                $v = $p.Value
                $text = if ($v -is [pscredential]) { "PSCredential($($v.UserName))" } elseif ($v -is [securestring]) { 'SecureString' } else { "$v" }
                [void]$sb.AppendLine("  bound -$($p.Key) = $text")
            }
        }
        $t = $e.TargetObject
        [void]$sb.AppendLine("TargetObject: $t | $($t | Out-String -Width 4096)")
        if ($null -ne $t -and $t -isnot [string]) {
            [void]$sb.AppendLine(($t | ConvertTo-Json -Depth 5 -WarningAction SilentlyContinue -ErrorAction SilentlyContinue))
        }
        $x = $e.Exception
        while ($null -ne $x) {
            [void]$sb.AppendLine("Exception [$($x.GetType().FullName)]: $($x.Message)")
            [void]$sb.AppendLine($x.ToString())
            foreach ($k in $x.Data.Keys) { [void]$sb.AppendLine("  Data[$k] = $($x.Data[$k])") }
            foreach ($prop in $x.PSObject.Properties) {
                if ($prop.Name -in 'TargetSite', 'StackTrace', 'InnerException', 'Data') { continue }
                try { [void]$sb.AppendLine("  .$($prop.Name) = $($prop.Value)") } catch { }
            }
            $x = $x.InnerException
        }
        [void]$sb.AppendLine(($e | Format-List * -Force | Out-String -Width 4096))
        $sb.ToString()
    }

    # Runs Body (after the prologue) in a new PowerShell instance; returns every stream serialized.
    function script:Invoke-Isolated {
        param([Parameter(Mandatory)] [string] $Body, [hashtable] $Extra = @{})
        $ps = [powershell]::Create()
        try {
            [void]$ps.AddScript($script:Prologue + "`n" + $Body)
            $params = $script:BaseParams.Clone()
            foreach ($k in $Extra.Keys) { $params[$k] = $Extra[$k] }
            [void]$ps.AddParameters($params)
            $output = $null
            $failure = $null
            try { $output = $ps.Invoke() } catch { $failure = $_ }
            $sb = [System.Text.StringBuilder]::new()
            $counts = [ordered]@{}
            [void]$sb.AppendLine('== output')
            $counts.Output = @($output).Count
            foreach ($o in @($output)) {
                if ($null -eq $o) { [void]$sb.AppendLine('(null)'); continue }
                if ($o -is [System.Management.Automation.ErrorRecord]) {
                    [void]$sb.AppendLine((ConvertTo-ErrorText $o))
                    continue
                }
                [void]$sb.AppendLine("[$($o.GetType().FullName)] $o")
                [void]$sb.AppendLine(($o | ConvertTo-Json -Depth 5 -WarningAction SilentlyContinue))
                [void]$sb.AppendLine(($o | Format-List * -Force | Out-String -Width 4096))
            }
            [void]$sb.AppendLine('== error')
            $counts.Error = $ps.Streams.Error.Count
            foreach ($e in $ps.Streams.Error) { [void]$sb.AppendLine((ConvertTo-ErrorText $e)) }
            [void]$sb.AppendLine('== $Error')
            $errVar = @($ps.Runspace.SessionStateProxy.GetVariable('Error'))
            $counts.ErrorVariable = $errVar.Count
            foreach ($e in $errVar) {
                if ($e -is [System.Management.Automation.ErrorRecord]) { [void]$sb.AppendLine((ConvertTo-ErrorText $e)) }
                else { [void]$sb.AppendLine(($e | Out-String -Width 4096)) }
            }
            [void]$sb.AppendLine('== warning')
            $counts.Warning = $ps.Streams.Warning.Count
            foreach ($w in $ps.Streams.Warning) { [void]$sb.AppendLine("$($w.Message) | $($w.FullyQualifiedWarningId) | $($w.InvocationInfo.PositionMessage)") }
            [void]$sb.AppendLine('== verbose')
            $counts.Verbose = $ps.Streams.Verbose.Count
            foreach ($v in $ps.Streams.Verbose) { [void]$sb.AppendLine("$($v.Message) | $($v.InvocationInfo.PositionMessage)") }
            [void]$sb.AppendLine('== debug')
            $counts.Debug = $ps.Streams.Debug.Count
            foreach ($d in $ps.Streams.Debug) { [void]$sb.AppendLine("$($d.Message) | $($d.InvocationInfo.PositionMessage)") }
            [void]$sb.AppendLine('== information')
            $counts.Information = $ps.Streams.Information.Count
            foreach ($i in $ps.Streams.Information) { [void]$sb.AppendLine("$($i.MessageData) | $($i.Source) | $($i.Tags -join ',') | $($i | Format-List * | Out-String -Width 4096)") }
            [void]$sb.AppendLine('== progress')
            $counts.Progress = $ps.Streams.Progress.Count
            foreach ($p in $ps.Streams.Progress) {
                [void]$sb.AppendLine("$($p.ActivityId) | $($p.Activity) | $($p.StatusDescription) | $($p.CurrentOperation) | $($p.PercentComplete) | $($p.RecordType) | $($p.ToString())")
            }
            [void]$sb.AppendLine('== invocation failure')
            if ($null -ne $failure) { [void]$sb.AppendLine((ConvertTo-ErrorText $failure)) }
            [pscustomobject]@{
                Text    = $sb.ToString()
                Counts  = $counts
                Output  = @($output)
                Errors  = @($ps.Streams.Error) + @($output | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] })
                Failure = $failure
            }
        } finally {
            $ps.Dispose()
            # The isolated scripts set process-wide variables: never let them reach the next test.
            Clear-PbsEnvironment
        }
    }

    # Fails (naming the secret's key, never echoing more than needed) if any secret occurs in Text.
    function script:Assert-NoSecret {
        param([Parameter(Mandatory)] [AllowEmptyString()] [string] $Text, [string] $Where = 'captured streams')
        foreach ($k in $script:S.Keys) {
            $secret = $script:S[$k]
            $i = $Text.IndexOf($secret, [System.StringComparison]::Ordinal)
            if ($i -ge 0) {
                $from = [Math]::Max(0, $i - 200)
                $context = $Text.Substring($from, [Math]::Min($Text.Length - $from, 400))
                throw "secret $k leaked into the $Where, near: ...$context..."
            }
            # Also the secret's UTF-16/Base64 forms a careless dump could show.
            foreach ($enc in [Convert]::ToBase64String([System.Text.Encoding]::UTF8.GetBytes($secret)),
                [Convert]::ToHexString([System.Text.Encoding]::UTF8.GetBytes($secret))) {
                $Text.Contains($enc, [System.StringComparison]::OrdinalIgnoreCase) | Should -BeFalse -Because "an encoding of secret $k must not appear in the $Where"
            }
        }
    }

    function script:Get-IdsOf {
        param($Run)
        @($Run.Errors | ForEach-Object { ($_.FullyQualifiedErrorId -split ',')[0] })
    }
}

AfterAll {
    Stop-TestServer $script:Server
    Restore-PbsEnvironment $script:SavedEnv
    Remove-Module PbsRestore, TestHelpers, ServerHelpers -ErrorAction SilentlyContinue
}

Describe 'The capture would catch a leak (control)' {
    It 'the wrapped key file opens with its password only' {
        $dest = Join-Path (New-OutputFolder $TestDrive) 'conf'
        $null = Restore-PbsImage -Datastore $script:Datastore -Snapshot (Get-SnapshotSpec $script:Vm101) -Archive qemu-server.conf -Destination $dest -Keyfile $script:KeyFile -KeyPassword (New-TestPassword $script:S.KeyPassword) -ErrorAction Stop
        Assert-Restored $dest $script:Vm101Conf
    }

    It 'finds secrets written on purpose to each stream' {
        $run = Invoke-Isolated -Body @'
Write-Output "out:$TokenSecret"
Write-Error "err:$UserPassword"
Write-Warning "warn:$KeyPassword"
Write-Verbose "verbose:$WrongToken"
Write-Debug "debug:$WrongUser"
Write-Information "info:$WrongKey"
Write-Progress -Activity "act:$GoldenKeyPass" -Status 'status'
'@
        foreach ($k in $script:S.Keys) {
            $run.Text | Should -BeLike "*$($script:S[$k])*" -Because "the capture must see $k"
        }
        { Assert-NoSecret $run.Text } | Should -Throw '*leaked*'
        $run.Counts.Error | Should -Be 1
        $run.Counts.Warning | Should -Be 1
        $run.Counts.Verbose | Should -Be 1
        $run.Counts.Debug | Should -Be 1
        $run.Counts.Information | Should -BeGreaterOrEqual 2
        $run.Counts.Progress | Should -BeGreaterOrEqual 1
    }

    It 'finds a secret inside an exception message, a target object and a terminating error' {
        $run = Invoke-Isolated -Body @'
Try-Run { throw [System.InvalidOperationException]::new('outer', [System.Exception]::new("inner:$TokenSecret")) }
Write-Error -Message 'plain' -TargetObject "target:$UserPassword"
'@
        $run.Text | Should -BeLike "*inner:$($script:S.TokenSecret)*"
        $run.Text | Should -BeLike "*target:$($script:S.UserPassword)*"
    }
}

Describe 'Successful runs show no secret' {
    It 'API token secret from PBS_PASSWORD: Get-PbsSnapshot, Restore-PbsImage, Get-PbsNamespace, Get-PbsDatastore' {
        $out = New-OutputFolder $TestDrive
        $run = Invoke-Isolated -Extra @{ Out = $out } -Body @'
$env:PBS_PASSWORD = $TokenSecret
Get-PbsSnapshot -Repository $TokenRepo -Fingerprint $Fp -Verbose -Debug
Restore-PbsImage -Repository $TokenRepo -Fingerprint $Fp -Snapshot vm/100/2024-05-01T10:00:00Z -Archive drive-scsi0.img -Destination (Join-Path $Out 'a.img') -Verbose -Debug
Get-PbsNamespace -Repository $TokenRepo -Fingerprint $Fp -Verbose -Debug
Get-PbsDatastore -Repository $TokenRepo -Fingerprint $Fp -Verbose -Debug
$env:PBS_REPOSITORY = $TokenRepo; $env:PBS_FINGERPRINT = $Fp
Get-PbsSnapshot -BackupId 101 -Verbose -Debug
'@
        $run.Counts.Error | Should -Be 0 -Because $run.Text
        $run.Counts.Output | Should -Be (4 + 1 + 2 + 1 + 1)
        $run.Counts.Progress | Should -BeGreaterThan 0
        $run.Text | Should -BeLike '*vm/100/2024-05-01T10:00:00Z*'
        $run.Text | Should -BeLike "*$($script:TokenRepo)*"
        $run.Text | Should -BeLike '*Restoring drive-scsi0.img*'
        Assert-Restored (Join-Path $out 'a.img') $script:Vm100Scsi0
        Assert-NoSecret $run.Text
    }

    It 'API token secret by -Credential and key password by -KeyPassword (encrypted vm/101), the pipeline too' {
        $out = New-OutputFolder $TestDrive
        $run = Invoke-Isolated -Extra @{ Out = $out } -Body @'
$c = Cred $TokenId $TokenSecret
Restore-PbsImage -Repository $HostRepo -Fingerprint $Fp -Credential $c -Snapshot vm/101/2024-05-01T10:05:00Z -Archive drive-scsi0.img -Destination (Join-Path $Out 'b.img') -Keyfile $KeyFile -KeyPassword (Sec $KeyPassword) -Verbose -Debug
Get-PbsSnapshot -Repository $HostRepo -Fingerprint $Fp -Credential $c -BackupId 101 -Verbose -Debug |
    Restore-PbsImage -Archive qemu-server.conf -Destination (Join-Path $Out 'b.conf') -Keyfile $KeyFile -KeyPassword (Sec $KeyPassword) -Verbose -Debug
Restore-PbsImage -Repository $HostRepo -Fingerprint $Fp -Credential $c -Snapshot vm/101/2024-05-01T10:05:00Z -Archive qemu-server.conf -Destination (Join-Path $Out 'golden.conf') -Keyfile $GoldenKey -KeyPassword (Sec $GoldenKeyPass) -Verbose -Debug
'@
        $run.Counts.Error | Should -Be 0 -Because $run.Text
        $run.Counts.Output | Should -Be 3
        Assert-Restored (Join-Path $out 'b.img') $script:Vm101Scsi0
        Assert-Restored (Join-Path $out 'b.conf') $script:Vm101Conf
        Assert-Restored (Join-Path $out 'golden.conf') $script:Vm101Conf
        $run.Text | Should -BeLike '*Restoring drive-scsi0.img from*vm/101/2024-05-01T10:05:00Z*'
        $run.Counts.Progress | Should -BeGreaterThan 0
        Assert-NoSecret $run.Text
    }

    It 'user password by -Credential (ticket): Connect-PbsServer, listings, restore, Disconnect-PbsServer' {
        $out = New-OutputFolder $TestDrive
        $run = Invoke-Isolated -Extra @{ Out = $out } -Body @'
$conn = Connect-PbsServer -Repository $HostRepo -Fingerprint $Fp -Credential (Cred $UserId $UserPassword) -Verbose -Debug
$conn
$conn | Format-List * -Force | Out-String
$global:DefaultPbsServer | ConvertTo-Json -Depth 5
Get-PbsSnapshot -Verbose -Debug
Get-PbsDatastore -Verbose -Debug
Restore-PbsImage -Snapshot ct/200/2024-05-01T10:10:00Z -Archive data.didx -Destination (Join-Path $Out 'c.img') -Verbose -Debug
Restore-PbsImage -Repository $HostRepo -Fingerprint $Fp -Credential (Cred $UserId $UserPassword) -Snapshot vm/100/2024-05-01T10:00:00Z -Archive drive-scsi0.img -Destination (Join-Path $Out 'c2.img') -FetchConcurrency 1 -Verbose -Debug
Disconnect-PbsServer -Verbose -Debug
'@
        $run.Counts.Error | Should -Be 0 -Because $run.Text
        $run.Text | Should -BeLike "*$($script:UserId)*"
        $run.Text | Should -BeLike '*Connected to*'
        Assert-Restored (Join-Path $out 'c.img') $script:Ct200Data
        Assert-Restored (Join-Path $out 'c2.img') $script:Vm100Scsi0
        Assert-NoSecret $run.Text
    }

    It 'key password from PBS_ENCRYPTION_PASSWORD, token secret from PBS_PASSWORD' {
        $out = New-OutputFolder $TestDrive
        $run = Invoke-Isolated -Extra @{ Out = $out } -Body @'
$env:PBS_PASSWORD = $TokenSecret
$env:PBS_ENCRYPTION_PASSWORD = $KeyPassword
Restore-PbsImage -Repository $TokenRepo -Fingerprint $Fp -Snapshot vm/101/2024-05-01T10:05:00Z -Archive drive-scsi0.img -Destination (Join-Path $Out 'd.img') -Keyfile $KeyFile -Verbose -Debug
Get-ChildItem Env:PBS_* | ForEach-Object Name
'@
        $run.Counts.Error | Should -Be 0 -Because $run.Text
        Assert-Restored (Join-Path $out 'd.img') $script:Vm101Scsi0
        Assert-NoSecret $run.Text
    }
}

Describe 'Failing runs show no secret' {
    It 'wrong token secret (PBS_PASSWORD and -Credential): AuthenticationFailed everywhere, no secret' {
        $out = New-OutputFolder $TestDrive
        $run = Invoke-Isolated -Extra @{ Out = $out } -Body @'
$env:PBS_PASSWORD = $WrongToken
Restore-PbsImage -Repository $TokenRepo -Fingerprint $Fp -Snapshot vm/100/2024-05-01T10:00:00Z -Archive drive-scsi0.img -Destination (Join-Path $Out 'x.img') -Verbose -Debug
Get-PbsSnapshot -Repository $TokenRepo -Fingerprint $Fp -Verbose -Debug
Connect-PbsServer -Repository $TokenRepo -Fingerprint $Fp -Verbose -Debug
Remove-Item Env:PBS_PASSWORD
Restore-PbsImage -Repository $HostRepo -Fingerprint $Fp -Credential (Cred $TokenId $WrongToken) -Snapshot vm/100/2024-05-01T10:00:00Z -Archive drive-scsi0.img -Destination (Join-Path $Out 'y.img') -Verbose -Debug
Get-PbsDatastore -Repository $HostRepo -Fingerprint $Fp -Credential (Cred $TokenId $WrongToken) -Verbose -Debug
'@
        @(Get-IdsOf $run) | Should -Be @('AuthenticationFailed', 'AuthenticationFailed', 'AuthenticationFailed', 'AuthenticationFailed', 'AuthenticationFailed') -Because $run.Text
        $run.Text | Should -BeLike '*authentication failed*'
        @(Get-FolderEntries $out) | Should -Be @()
        Assert-NoSecret $run.Text
    }

    It 'wrong user password (-Credential): AuthenticationFailed, no secret' {
        $out = New-OutputFolder $TestDrive
        $run = Invoke-Isolated -Extra @{ Out = $out } -Body @'
Connect-PbsServer -Repository $HostRepo -Fingerprint $Fp -Credential (Cred $UserId $WrongUser) -Verbose -Debug
Restore-PbsImage -Repository $HostRepo -Fingerprint $Fp -Credential (Cred $UserId $WrongUser) -Snapshot vm/100/2024-05-01T10:00:00Z -Archive drive-scsi0.img -Destination (Join-Path $Out 'x.img') -Verbose -Debug
$env:PBS_PASSWORD = $WrongUser
Get-PbsNamespace -Repository "$UserId@$HostRepo" -Fingerprint $Fp -Verbose -Debug
'@
        @(Get-IdsOf $run) | Should -Be @('AuthenticationFailed', 'AuthenticationFailed', 'AuthenticationFailed') -Because $run.Text
        $run.Text | Should -BeLike "*$($script:UserId)*"
        @(Get-FolderEntries $out) | Should -Be @()
        Assert-NoSecret $run.Text
    }

    It 'wrong key password (-KeyPassword and PBS_ENCRYPTION_PASSWORD): KeyPasswordWrong, no secret' {
        $out = New-OutputFolder $TestDrive
        $run = Invoke-Isolated -Extra @{ Out = $out } -Body @'
$env:PBS_PASSWORD = $TokenSecret
Try-Run { Restore-PbsImage -Repository $TokenRepo -Fingerprint $Fp -Snapshot vm/101/2024-05-01T10:05:00Z -Archive drive-scsi0.img -Destination (Join-Path $Out 'x.img') -Keyfile $KeyFile -KeyPassword (Sec $WrongKey) -Verbose -Debug }
$env:PBS_ENCRYPTION_PASSWORD = $WrongKey
Try-Run { Restore-PbsImage -Repository $TokenRepo -Fingerprint $Fp -Snapshot vm/101/2024-05-01T10:05:00Z -Archive drive-scsi0.img -Destination (Join-Path $Out 'y.img') -Keyfile $KeyFile -Verbose -Debug }
Try-Run { Restore-PbsImage -Repository $TokenRepo -Fingerprint $Fp -Snapshot vm/101/2024-05-01T10:05:00Z -Archive drive-scsi0.img -Destination (Join-Path $Out 'z.img') -Keyfile $GoldenKey -KeyPassword (Sec $KeyPassword) -Verbose -Debug }
'@
        @(Get-IdsOf $run | Select-Object -Unique) | Should -Be @('KeyPasswordWrong') -Because $run.Text
        @(Get-IdsOf $run).Count | Should -BeGreaterOrEqual 3
        $run.Text | Should -BeLike '*wrong password*'
        @(Get-FolderEntries $out) | Should -Be @()
        Assert-NoSecret $run.Text
    }

    It 'wrong fingerprint and untrusted certificate with a valid secret: no secret' {
        $out = New-OutputFolder $TestDrive
        $run = Invoke-Isolated -Extra @{ Out = $out } -Body @'
$env:PBS_PASSWORD = $TokenSecret
$bad = ($Fp.Substring(0, 2) -eq '00' ? 'ff' : '00') + $Fp.Substring(2)
Restore-PbsImage -Repository $TokenRepo -Fingerprint $bad -Snapshot vm/100/2024-05-01T10:00:00Z -Archive drive-scsi0.img -Destination (Join-Path $Out 'x.img') -Verbose -Debug
Get-PbsSnapshot -Repository $HostRepo -Credential (Cred $UserId $UserPassword) -Verbose -Debug
'@
        @(Get-IdsOf $run) | Should -Be @('CertificateFingerprintMismatch', 'CertificateUntrusted') -Because $run.Text
        $run.Text | Should -BeLike "*$($script:Fp)*"
        Assert-NoSecret $run.Text
    }
}

Describe 'The server log' {
    It 'holds the sessions and refusals of this file, but no secret' {
        Wait-TestServerLog $script:Server   # the console logger writes from a queue: wait for all of it, not 500 ms
        $log = Get-TestServerLog $script:Server
        $log | Should -BeLike '*listening on*'
        $log | Should -BeLike '*reader session*'
        $log | Should -BeLike "*$($script:UserId)*"
        Assert-NoSecret $log -Where 'server stderr log'
        $stdout = [System.IO.File]::ReadAllText($script:Server.StdoutLog)
        $stdout | Should -BeLike "*$($script:Fp)*"
        Assert-NoSecret $stdout -Where 'server stdout'
    }
}
