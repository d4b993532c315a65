# Argument completers (src/PbsRestore.PowerShell/Completers), through TabExpansion2 as the console calls them:
# -Namespace, -BackupId, -Snapshot, -Archive and -Store complete from the source the command line names (the
# golden folder, our test server through the session default connection, an explicit -Connection, or
# -Repository with PBS_PASSWORD and -Fingerprint), match the word case-insensitively by prefix, quote when
# the word is quoted, and return nothing (never an error) when the source is bogus or unreachable.
BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $script:GoldenDatastore = Get-GoldenDatastore
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot '../../PbsRestore.psd1') -Force
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Join-Path $PSScriptRoot 'ServerHelpers.psm1') -Force
    $script:Datastore = Get-GoldenDatastore
    $script:Vm100 = 'vm/100/2024-05-01T10:00:00Z'
    $script:Vm101 = 'vm/101/2024-05-01T10:05:00Z'
    $script:Vm102 = 'vm/102/2024-05-01T10:15:00Z'

    function script:Complete([string] $Line) {
        # The completion texts TabExpansion2 offers at the end of the line (nothing when none); errors fail the test.
        $Error.Clear()
        $result = TabExpansion2 -inputScript $Line -cursorColumn $Line.Length
        $Error.Count | Should -Be 0 -Because "completing '$Line' must not record errors: $($Error | Select-Object -First 1)"
        $result.CompletionMatches | ForEach-Object CompletionText
    }
}

Describe 'The completers are attached' {
    It '<Cmdlet> -<Parameter> has <Completer>' -ForEach @(
        @{ Cmdlet = 'Get-PbsSnapshot'; Parameter = 'Namespace'; Completer = 'NamespaceCompleter' }
        @{ Cmdlet = 'Get-PbsSnapshot'; Parameter = 'BackupId'; Completer = 'BackupIdCompleter' }
        @{ Cmdlet = 'Get-PbsSnapshot'; Parameter = 'Store'; Completer = 'StoreCompleter' }
        @{ Cmdlet = 'Get-PbsNamespace'; Parameter = 'Namespace'; Completer = 'NamespaceCompleter' }
        @{ Cmdlet = 'Get-PbsNamespace'; Parameter = 'Store'; Completer = 'StoreCompleter' }
        @{ Cmdlet = 'Restore-PbsImage'; Parameter = 'Namespace'; Completer = 'NamespaceCompleter' }
        @{ Cmdlet = 'Restore-PbsImage'; Parameter = 'Snapshot'; Completer = 'SnapshotCompleter' }
        @{ Cmdlet = 'Restore-PbsImage'; Parameter = 'Archive'; Completer = 'ArchiveCompleter' }
        @{ Cmdlet = 'Restore-PbsImage'; Parameter = 'Store'; Completer = 'StoreCompleter' }
        @{ Cmdlet = 'Measure-PbsRestore'; Parameter = 'Namespace'; Completer = 'NamespaceCompleter' }
        @{ Cmdlet = 'Measure-PbsRestore'; Parameter = 'Snapshot'; Completer = 'SnapshotCompleter' }
        @{ Cmdlet = 'Measure-PbsRestore'; Parameter = 'Archive'; Completer = 'ArchiveCompleter' }
        @{ Cmdlet = 'Measure-PbsRestore'; Parameter = 'Store'; Completer = 'StoreCompleter' }
    ) {
        $attr = @((Get-Command $Cmdlet).Parameters[$Parameter].Attributes |
                Where-Object { $_ -is [System.Management.Automation.ArgumentCompleterAttribute] })
        $attr.Count | Should -Be 1
        $attr[0].Type.FullName | Should -Be "PbsRestore.PowerShell.Completers.$Completer"
    }
}

Describe 'Completion against the golden folder (-Datastore)' {
    BeforeAll { $script:Ds = "-Datastore '$($script:Datastore)'" }

    It 'completes namespaces (<Cmdlet>)' -ForEach @(
        @{ Cmdlet = 'Get-PbsSnapshot' }, @{ Cmdlet = 'Get-PbsNamespace' }, @{ Cmdlet = 'Restore-PbsImage' }, @{ Cmdlet = 'Measure-PbsRestore' }
    ) {
        Complete "$Cmdlet $script:Ds -Namespace " | Should -Be @('dev')
        Complete "$Cmdlet $script:Ds -Namespace D" | Should -Be @('dev') -Because 'the prefix matches case-insensitively'
        Complete "$Cmdlet $script:Ds -Namespace x" | Should -BeNullOrEmpty
    }

    It 'resolves a relative -Datastore from the current location' {
        Push-Location (Split-Path $script:Datastore -Parent)
        try { Complete 'Get-PbsNamespace -Datastore ./datastore -Namespace ' | Should -Be @('dev') }
        finally { Pop-Location }
    }

    It 'completes backup ids as Get-PbsSnapshot finds them' {
        Complete "Get-PbsSnapshot $script:Ds -MaxDepth 0 -BackupId 1" | Should -Be @('100', '101')
        Complete "Get-PbsSnapshot $script:Ds -BackupId 1" | Should -Be @('100', '101', '102') -Because 'without -MaxDepth every namespace is listed'
        Complete "Get-PbsSnapshot $script:Ds -Namespace dev -BackupId " | Should -Be @('102')
        Complete "Get-PbsSnapshot $script:Ds -BackupType ct -BackupId " | Should -Be @('200')
        Complete "Get-PbsSnapshot $script:Ds -BackupId 9" | Should -BeNullOrEmpty
    }

    It 'completes snapshots by prefix (<Cmdlet>)' -ForEach @(@{ Cmdlet = 'Restore-PbsImage' }, @{ Cmdlet = 'Measure-PbsRestore' }) {
        Complete "$Cmdlet $script:Ds -Snapshot vm/1" | Should -Be @($script:Vm100, $script:Vm101)
        Complete "$Cmdlet $script:Ds -Snapshot VM/100" | Should -Be @($script:Vm100)
        Complete "$Cmdlet $script:Ds -Snapshot " | Should -Be @('ct/200/2024-05-01T10:10:00Z', $script:Vm100, $script:Vm101)
        Complete "$Cmdlet $script:Ds -Namespace dev -Snapshot vm/" | Should -Be @($script:Vm102)
        Complete "$Cmdlet $script:Ds -Snapshot ns/" | Should -Be @("ns/dev/$script:Vm102")
        Complete "$Cmdlet $script:Ds vm/10" | Should -Be @($script:Vm100, $script:Vm101) -Because '-Snapshot is positional'
    }

    It 'quotes a snapshot when the word is quoted' {
        Complete "Restore-PbsImage $script:Ds -Snapshot 'vm/100" | Should -Be @("'$script:Vm100'")
        Complete "Restore-PbsImage $script:Ds -Snapshot `"vm/100" | Should -Be @("`"$script:Vm100`"")
    }

    It 'completes archive names of the bound snapshot (<Cmdlet>)' -ForEach @(@{ Cmdlet = 'Restore-PbsImage' }, @{ Cmdlet = 'Measure-PbsRestore' }) {
        $names = Complete "$Cmdlet $script:Ds -Snapshot $script:Vm100 -Archive "
        $names | Sort-Object | Should -Be @('drive-scsi0.img', 'drive-virtio1.img', 'qemu-server.conf')
        Complete "$Cmdlet $script:Ds -Snapshot vm/100 -Archive DRIVE-s" | Should -Be @('drive-scsi0.img') -Because "'vm/100' means the latest snapshot"
        Complete "$Cmdlet $script:Ds vm/101 -Archive " | Sort-Object | Should -Be @('drive-scsi0.img', 'qemu-server.conf')
        Complete "$Cmdlet $script:Ds -Namespace dev vm/102 -Archive d" | Should -Be @('drive-scsi0.img')
        Complete "$Cmdlet $script:Ds ns/dev/vm/102 -Archive d" | Should -Be @('drive-scsi0.img')
        Complete "$Cmdlet $script:Ds -Snapshot vm/999 -Archive " | Should -BeNullOrEmpty
        Complete "$Cmdlet $script:Ds -Snapshot 'not a snapshot' -Archive " | Should -BeNullOrEmpty
    }

    It 'completes archive names of a snapshot object in a variable' {
        $global:PbsCompleterTestSnapshot = Get-PbsSnapshot -Datastore $script:Datastore -BackupId 101
        try {
            Complete 'Restore-PbsImage -Snapshot $global:PbsCompleterTestSnapshot -Archive ' | Sort-Object |
                Should -Be @('drive-scsi0.img', 'qemu-server.conf')
        } finally { Remove-Variable -Name PbsCompleterTestSnapshot -Scope Global }
    }

    It 'offers nothing, without error, for a bogus source: <Line>' -ForEach @(
        @{ Line = "Get-PbsSnapshot -Datastore '/no/such/datastore' -Namespace " }
        @{ Line = "Get-PbsSnapshot -Datastore '/no/such/datastore' -BackupId " }
        @{ Line = "Restore-PbsImage -Datastore '/no/such/datastore' -Snapshot vm/1" }
        @{ Line = "Restore-PbsImage -Datastore '/no/such/datastore' -Snapshot vm/100 -Archive " }
        @{ Line = "Get-PbsNamespace -Datastore '$(Split-Path $script:GoldenDatastore -Parent)' -Namespace " }
        @{ Line = "Get-PbsSnapshot -Datastore '$script:GoldenDatastore' -Namespace nosuch -BackupId " }
        @{ Line = "Get-PbsSnapshot -Datastore '$script:GoldenDatastore' -Namespace 'bad//ns' -BackupId " }
    ) {
        Complete $Line | Should -BeNullOrEmpty
    }
}

Describe 'Completion against the test server' {
    BeforeAll {
        $script:SavedEnv = Save-PbsEnvironment
        Clear-PbsEnvironment
        $script:TokenId = 'completer@pbs!tab'
        $script:TokenSecret = 'tab-secret-5e1f'
        $script:Server = Start-TestServer -Datastore ([ordered]@{ golden = $script:Datastore; other = $script:Datastore }) `
            -Token "$($script:TokenId):$($script:TokenSecret)" -LogFolder (Join-Path $TestDrive 'server')
        $script:Fp = $script:Server.Fingerprint
        $script:Repo = "$($script:TokenId)@127.0.0.1:$($script:Server.Port):golden"
    }
    AfterAll {
        if ($null -ne (Get-Variable -Name DefaultPbsServer -Scope Global -ValueOnly -ErrorAction SilentlyContinue)) { Disconnect-PbsServer }
        Stop-TestServer $script:Server
        Restore-PbsEnvironment $script:SavedEnv
    }

    Context 'through the session default connection (Connect-PbsServer)' {
        BeforeAll {
            $cred = New-PbsCredential $script:TokenId $script:TokenSecret
            $null = Connect-PbsServer -Repository $script:Repo -Fingerprint $script:Fp -Credential $cred -ErrorAction Stop
        }
        AfterAll { Disconnect-PbsServer }

        It 'completes namespaces' {
            Complete 'Get-PbsSnapshot -Namespace ' | Should -Be @('dev')
            Complete 'Get-PbsNamespace -Store other -Namespace d' | Should -Be @('dev')
        }

        It 'completes backup ids' {
            Complete 'Get-PbsSnapshot -MaxDepth 0 -BackupId 1' | Should -Be @('100', '101')
            Complete 'Get-PbsSnapshot -Namespace dev -BackupId ' | Should -Be @('102')
        }

        It 'completes snapshots' {
            Complete 'Restore-PbsImage -Snapshot vm/1' | Should -Be @($script:Vm100, $script:Vm101)
            Complete 'Measure-PbsRestore -Store other -Snapshot vm/1' | Should -Be @($script:Vm100, $script:Vm101)
        }

        It 'completes archives' {
            Complete "Restore-PbsImage -Snapshot $script:Vm100 -Archive " | Sort-Object |
                Should -Be @('drive-scsi0.img', 'drive-virtio1.img', 'qemu-server.conf')
        }

        It 'completes datastores for -Store (<Cmdlet>)' -ForEach @(
            @{ Cmdlet = 'Get-PbsSnapshot' }, @{ Cmdlet = 'Get-PbsNamespace' }, @{ Cmdlet = 'Restore-PbsImage' }, @{ Cmdlet = 'Measure-PbsRestore' }
        ) {
            Complete "$Cmdlet -Store " | Should -Be @('golden', 'other')
            Complete "$Cmdlet -Store G" | Should -Be @('golden')
            Complete "$Cmdlet -Store x" | Should -BeNullOrEmpty
        }

        It 'offers nothing for a datastore the server does not have' {
            Complete 'Get-PbsSnapshot -Store nosuch -Namespace ' | Should -BeNullOrEmpty
        }
    }

    Context 'through -Connection' {
        It 'completes from the given connection' {
            $cred = New-PbsCredential $script:TokenId $script:TokenSecret
            $global:PbsCompleterTestConnection = Connect-PbsServer -Repository $script:Repo -Fingerprint $script:Fp -Credential $cred -NotDefault -ErrorAction Stop
            try {
                Complete 'Restore-PbsImage -Connection $global:PbsCompleterTestConnection -Snapshot vm/1' | Should -Be @($script:Vm100, $script:Vm101)
                Complete 'Get-PbsSnapshot -Connection $global:PbsCompleterTestConnection -Store ' | Should -Be @('golden', 'other')
            } finally {
                Disconnect-PbsServer -Connection $global:PbsCompleterTestConnection
                Remove-Variable -Name PbsCompleterTestConnection -Scope Global
            }
        }
    }

    Context 'through -Repository with PBS_PASSWORD and -Fingerprint' {
        BeforeAll { $env:PBS_PASSWORD = $script:TokenSecret }
        AfterAll { $env:PBS_PASSWORD = $null }

        It 'completes namespaces, backup ids, snapshots and archives' {
            $src = "-Repository '$($script:Repo)' -Fingerprint $($script:Fp)"
            Complete "Get-PbsSnapshot $src -Namespace " | Should -Be @('dev')
            Complete "Get-PbsSnapshot $src -MaxDepth 0 -BackupId 1" | Should -Be @('100', '101')
            Complete "Restore-PbsImage $src -Snapshot vm/1" | Should -Be @($script:Vm100, $script:Vm101)
            Complete "Restore-PbsImage $src -Snapshot $script:Vm100 -Archive " | Sort-Object |
                Should -Be @('drive-scsi0.img', 'drive-virtio1.img', 'qemu-server.conf')
            Complete "Measure-PbsRestore $src -Namespace dev -Snapshot " | Should -Be @($script:Vm102)
        }

        It 'offers nothing, without error, with a wrong fingerprint or secret' {
            $first = [Convert]::ToInt32($script:Fp.Substring(0, 2), 16)
            $wrongFp = ('{0:x2}' -f ($first -bxor 0xff)) + $script:Fp.Substring(2)
            Complete "Get-PbsSnapshot -Repository '$($script:Repo)' -Fingerprint $wrongFp -Namespace " | Should -BeNullOrEmpty
            $env:PBS_PASSWORD = 'wrong-secret'
            try { Complete "Get-PbsSnapshot -Repository '$($script:Repo)' -Fingerprint $($script:Fp) -Namespace " | Should -BeNullOrEmpty }
            finally { $env:PBS_PASSWORD = $script:TokenSecret }
        }
    }

    Context 'without any source' {
        It 'offers nothing when not connected and no repository is given' {
            Complete 'Get-PbsSnapshot -Namespace ' | Should -BeNullOrEmpty
            Complete 'Restore-PbsImage -Store ' | Should -BeNullOrEmpty
        }

        It 'offers nothing, quickly, for a server that does not answer' {
            $listener = [System.Net.Sockets.TcpListener]::new([System.Net.IPAddress]::Loopback, 0)
            $listener.Start()   # accepts TCP but never speaks TLS
            try {
                $port = $listener.LocalEndpoint.Port
                $sw = [System.Diagnostics.Stopwatch]::StartNew()
                $env:PBS_PASSWORD = 'x'
                Complete "Get-PbsSnapshot -Repository 'a@pbs@127.0.0.1:$($port):golden' -Fingerprint $($script:Fp) -Namespace " | Should -BeNullOrEmpty
                $sw.Elapsed.TotalSeconds | Should -BeLessThan 10
            } finally {
                $env:PBS_PASSWORD = $null
                $listener.Stop()
            }
        }
    }
}
