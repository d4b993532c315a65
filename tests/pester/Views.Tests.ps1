# Default views (module/PbsRestore.Format.ps1xml, loaded through FormatsToProcess in PbsRestore.psd1): every
# output type has a table view (and a list view where it has more to tell) that shows sizes, rates and
# durations readable ('4.0 MiB', MB/s, seconds), while the objects' properties stay numeric. Real objects:
# snapshots of the golden datastore, a real restore and a real measurement, namespaces, and connections and
# datastores from our test server.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot '../../PbsRestore.psd1') -Force
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Join-Path $PSScriptRoot 'ServerHelpers.psm1') -Force
    $script:Datastore = Get-GoldenDatastore
    $script:Snapshots = @(Get-PbsSnapshot -Datastore $script:Datastore -ErrorAction Stop)
    $script:Vm100 = $script:Snapshots | Where-Object Snapshot -like 'vm/100/*'

    function script:Show($InputObject, [string] $As = 'Table') {
        # What the console would print, wide enough not to cut columns.
        if ($As -eq 'Table') { $InputObject | Format-Table | Out-String -Width 400 }
        else { $InputObject | Format-List | Out-String -Width 400 }
    }
    function script:Header([string] $Text) {
        # The header line of a table (the first non-empty line).
        @($Text -split "`r?`n" | Where-Object { $_.Trim() })[0]
    }
}

Describe 'The module manifest' {
    It 'loads module/PbsRestore.Format.ps1xml' {
        $m = Get-Module PbsRestore
        $m.ExportedFormatFiles | ForEach-Object { Split-Path $_ -Leaf } | Should -Contain 'PbsRestore.Format.ps1xml'
        Join-Path $m.ModuleBase 'module/PbsRestore.Format.ps1xml' | Should -Exist
    }
}

Describe 'Get-FormatData for <Type>' -ForEach @(
    @{ Type = 'PbsRestore.Sources.SnapshotInfo'; List = $true }
    @{ Type = 'PbsRestore.Restore.RestoreResult'; List = $true }
    @{ Type = 'PbsRestore.Restore.RestoreMeasurement'; List = $true }
    @{ Type = 'PbsRestore.PowerShell.PbsServerConnection'; List = $true }
    @{ Type = 'PbsRestore.Sources.Remote.DatastoreListItem'; List = $false }
    @{ Type = 'PbsRestore.PowerShell.Commands.PbsNamespaceInfo'; List = $false }
) {
    It 'has a table view (list view too: <List>)' {
        $data = @(Get-FormatData -TypeName $Type)
        $data.Count | Should -Be 1
        $controls = @($data[0].FormatViewDefinition | ForEach-Object { $_.Control.GetType().Name })
        $controls | Should -Contain 'TableControl'
        if ($List) { $controls | Should -Contain 'ListControl' }
    }
}

Describe 'Snapshot view' {
    It 'shows Namespace, Snapshot, Comment, Encrypted, a readable Size and the archive names' {
        $text = Show $script:Snapshots
        Header $text | Should -Match '^Namespace\s+Snapshot\s+Comment\s+Encrypted\s+Size\s+Archives\s*$'
        $row = @($text -split "`r?`n" | Where-Object { $_ -match 'vm/100/2024-05-01T10:00:00Z' })
        $row.Count | Should -Be 1
        $row[0] | Should -Match '\b4[.,]0 MiB\b'
        $row[0] | Should -Match 'drive-scsi0\.img'
        $row[0] | Should -Match 'drive-virtio1\.img'
        $row[0] | Should -Match 'qemu-server\.conf'
        $row[0] | Should -Not -Match '\.fidx|\.blob'
        $text | Should -Match 'dev\s+vm/102/2024-05-01T10:15:00Z'
        $text | Should -Match 'vm/101/2024-05-01T10:05:00Z\s+True'
        $text | Should -Match '\bKiB\b'
    }

    It 'keeps Size numeric' {
        $script:Vm100.Size | Should -BeOfType [long]
        $script:Vm100.Size | Should -BeGreaterThan (4MB - 1)
        ($script:Snapshots | Measure-Object Size -Sum).Sum | Should -BeGreaterThan $script:Vm100.Size
    }

    It 'has a list view with sizes and bytes' {
        $text = Show $script:Vm100 -As List
        $text | Should -Match 'Size\s+:\s+4[.,]0 MiB \('
        $text | Should -Match 'drive-scsi0\.img \(3[.,]0 MiB\)'
        $text | Should -Match 'BackupTime\s+:'
    }
}

Describe 'Restore result view' {
    BeforeAll {
        $script:Out = New-Item -ItemType Directory -Path (Join-Path $TestDrive 'restore') -Force
        $script:Result = Restore-PbsImage -Datastore $script:Datastore -Snapshot 'vm/100' -Archive 'drive-scsi0.img' `
            -Destination (Join-Path $script:Out 'scsi0.img') -ErrorAction Stop
    }

    It 'shows Namespace, Snapshot, Archive, Format, a readable size, seconds, MB/s and Destination' {
        $text = Show $script:Result
        Header $text | Should -Match '^Namespace\s+Snapshot\s+Archive\s+Format\s+Size\s+Duration\s+MB/s\s+Destination\s*$'
        $text | Should -Match 'vm/100/2024-05-01T10:00:00Z\s+drive-scsi0\.img\s+Raw\s+3[.,]0 MiB\s+\d+[.,]\d\d s\s+[\d.,]+\s+.*scsi0\.img'
    }

    It 'keeps LogicalBytes, Duration and MBPerSecond as numbers' {
        $script:Result.LogicalBytes | Should -BeOfType [long]
        $script:Result.LogicalBytes | Should -Be (3MB + 12345)
        $script:Result.Duration | Should -BeOfType [timespan]
        $script:Result.MBPerSecond | Should -BeOfType [double]
        $script:Result.ZeroChunks | Should -BeOfType [long]
    }

    It 'has a list view with bytes read and the rate' {
        $text = Show $script:Result -As List
        $text | Should -Match 'Size\s+:\s+3[.,]0 MiB \('
        $text | Should -Match 'Read\s+:\s+[\d.,]+ (B|KiB|MiB)'
        $text | Should -Match 'MB/s\s+:\s+[\d.,]+'
        $text | Should -Match 'Format\s+:\s+Raw'
        $text | Should -Match 'ChunksFetched\s+:\s+\d+'
    }
}

Describe 'Measurement view' {
    BeforeAll {
        $script:Auto = Measure-PbsRestore -Datastore $script:Datastore -Snapshot 'vm/100' -Archive 'drive-scsi0.img' -ErrorAction Stop
        $script:Fixed = Measure-PbsRestore -Datastore $script:Datastore -Snapshot 'vm/100' -Archive 'drive-scsi0.img' -FetchConcurrency 3 -ErrorAction Stop
    }

    It 'shows fetch concurrency (auto marked), connections, rates, latencies, CPU, bottleneck and suggestion' {
        $text = Show @($script:Auto, $script:Fixed)
        Header $text | Should -Match '^\s*Fetch\s+Connections\s+Logical MB/s\s+Wire MB/s\s+P50 ms\s+P99 ms\s+CPU s/GiB\s+Bottleneck\s+Suggested\s*$'
        $text | Should -Match "\b$($script:Auto.FetchConcurrency) \(auto\)"
        $rows = @($text -split "`r?`n" | Where-Object { $_ -match '^\s*3\s+1\s' })
        $rows.Count | Should -Be 1 -Because 'the fixed run shows 3 without (auto)'
        $rows[0] | Should -Match "\b$($script:Fixed.Bottleneck)\b"
    }

    It 'keeps the numbers numeric' {
        $script:Auto.LogicalBytes | Should -BeOfType [long]
        $script:Auto.LogicalMBps | Should -BeOfType [double]
        $script:Auto.LatencyP99Ms | Should -BeOfType [double]
        $script:Auto.FetchConcurrency | Should -BeOfType [int]
    }

    It 'has a list view with shares as percentages' {
        $text = Show $script:Auto -As List
        $text | Should -Match 'FetchConcurrency\s+:\s+\d+ \(auto\)'
        $text | Should -Match 'Size\s+:\s+3[.,]0 MiB'
        $text | Should -Match 'Write busy\s+:\s+\d+ %'
        $text | Should -Match 'SuggestedFetchConcurrency\s+:\s+\d+'
    }
}

Describe 'Namespace view' {
    It 'shows (root) for the root namespace, the depth and the location' {
        $text = Show @(Get-PbsNamespace -Datastore $script:Datastore -ErrorAction Stop)
        Header $text | Should -Match '^Namespace\s+Depth\s+Location\s*$'
        $text | Should -Match '\(root\)\s+0\s'
        $text | Should -Match 'dev\s+1\s'
    }
}

Describe 'Connection and datastore views (test server)' {
    BeforeAll {
        $script:SavedEnv = Save-PbsEnvironment
        Clear-PbsEnvironment
        $script:Server = Start-TestServer -Datastore ([ordered]@{ golden = $script:Datastore; other = $script:Datastore }) `
            -Token 'viewer@pbs!views:views-secret-1' -LogFolder (Join-Path $TestDrive 'server')
        $cred = New-PbsCredential 'viewer@pbs!views' 'views-secret-1'
        $script:Connection = Connect-PbsServer -Repository "viewer@pbs!views@127.0.0.1:$($script:Server.Port):golden" `
            -Fingerprint $script:Server.Fingerprint -Credential $cred -NotDefault -ErrorAction Stop
    }
    AfterAll {
        if ($script:Connection) { Disconnect-PbsServer -Connection $script:Connection }
        Stop-TestServer $script:Server
        Restore-PbsEnvironment $script:SavedEnv
    }

    It 'shows the connection' {
        $text = Show $script:Connection
        Header $text | Should -Match '^Server\s+AuthId\s+Datastore\s+Pinned\s+Connected\s+ConnectedAt\s*$'
        $text | Should -Match "127\.0\.0\.1:$($script:Server.Port)\s+viewer@pbs!views\s+golden\s+True\s+True"
        $text | Should -Not -Match 'views-secret-1'
        $list = Show $script:Connection -As List
        $list | Should -Match 'Fingerprint\s+:\s+[0-9a-f]{2}(:[0-9a-f]{2}){31}'
        $list | Should -Not -Match 'views-secret-1'
    }

    It 'shows the datastores' {
        $text = Show @(Get-PbsDatastore -Connection $script:Connection -ErrorAction Stop)
        Header $text | Should -Match '^Name\s+Comment\s*$'
        $text | Should -Match '(?m)^golden\b'
        $text | Should -Match '(?m)^other\b'
    }
}
