# Runbook-friendly binding and discoverable help (issue 11 item 14): Import-Csv rows bind Snapshot, Namespace,
# Archive and Destination by property name; about_PbsRestore lists every cmdlet; every cmdlet has a HelpUri
# that points at its section of docs/cmdlets.md.
BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot '../../PbsRestore.psd1') -Force
    $script:CmdletCases = @(Get-Command -Module PbsRestore -CommandType Cmdlet | ForEach-Object { @{ Name = $_.Name } })
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot '../../PbsRestore.psd1') -Force
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $script:Repo = (Resolve-Path (Join-Path $PSScriptRoot '../..')).Path
    $script:Datastore = Get-GoldenDatastore
}

Describe 'Import-Csv | Restore-PbsImage' {
    It 'binds Snapshot, Namespace, Archive and Destination by property name and restores every row bit-exactly' {
        $out = New-OutputFolder $TestDrive
        $csv = Join-Path $TestDrive 'restore.csv'
        @(
            [pscustomobject]@{ Snapshot = 'vm/100/2024-05-01T10:00:00Z'; Namespace = ''; Archive = 'drive-scsi0.img'; Destination = (Join-Path $out 'vm100.raw') }
            [pscustomobject]@{ Snapshot = 'vm/102'; Namespace = 'dev'; Archive = 'drive-scsi0.img'; Destination = (Join-Path $out 'vm102.raw') }
            [pscustomobject]@{ Snapshot = 'ct/200'; Namespace = ''; Archive = 'pct.conf'; Destination = (Join-Path $out 'ct200.conf') }
        ) | Export-Csv -LiteralPath $csv
        $results = @(Import-Csv -LiteralPath $csv | Restore-PbsImage -Datastore $script:Datastore -ErrorAction Stop)
        $results.Count | Should -Be 3
        ($results | ForEach-Object { "$($_.Namespace)|$($_.Snapshot)|$($_.Archive)" }) | Should -Be @(
            '|vm/100/2024-05-01T10:00:00Z|drive-scsi0.img', 'dev|vm/102/2024-05-01T10:15:00Z|drive-scsi0.img', '|ct/200/2024-05-01T10:10:00Z|pct.conf')
        Get-Sha256 (Join-Path $out 'vm100.raw') | Should -BeExactly (Get-GoldenArchive (Get-GoldenSnapshot vm 100) 'drive-scsi0.img.fidx').plaintext_sha256
        Get-Sha256 (Join-Path $out 'vm102.raw') | Should -BeExactly (Get-GoldenArchive (Get-GoldenSnapshot vm 102) 'drive-scsi0.img.fidx').plaintext_sha256
        Get-Sha256 (Join-Path $out 'ct200.conf') | Should -BeExactly (Get-GoldenArchive (Get-GoldenSnapshot ct 200) 'pct.conf.blob').plaintext_sha256
    }

    It 'declares the by-property-name binding' {
        $p = (Get-Command Restore-PbsImage).Parameters
        foreach ($name in 'Snapshot', 'Namespace', 'Archive', 'Destination') {
            @($p[$name].Attributes | Where-Object { $_ -is [System.Management.Automation.ParameterAttribute] -and $_.ValueFromPipelineByPropertyName }).Count |
                Should -BeGreaterThan 0 -Because "-$name binds by property name"
        }
    }

    It 'Test-PbsSnapshot takes restore results from the pipeline (Snapshot, Namespace, Archive)' {
        $out = New-OutputFolder $TestDrive
        $r = Restore-PbsImage -Datastore $script:Datastore -Namespace dev -Snapshot vm/102 -Archive qemu-server.conf -Destination (Join-Path $out 'c') -ErrorAction Stop
        $v = @($r | Test-PbsSnapshot -Datastore $script:Datastore -ErrorAction Stop)
        $v.Count | Should -Be 1
        $v[0].Archive | Should -BeExactly 'qemu-server.conf'
        $v[0].Namespace | Should -BeExactly 'dev'
        $v[0].Ok | Should -BeTrue
    }
}

Describe 'Help links of <Name>' -ForEach $script:CmdletCases {
    It 'has a HelpUri pointing at its section of docs/cmdlets.md' {
        $uri = (Get-Command $Name).HelpUri
        $uri | Should -Not -BeNullOrEmpty
        $uri | Should -BeLike "*docs/cmdlets.md#$($Name.ToLowerInvariant())"
        $doc = Get-Content -LiteralPath (Join-Path $script:Repo 'docs/cmdlets.md') -Raw
        $doc | Should -Match "(?m)^## $([regex]::Escape($Name))\s*$"
    }

    It 'is listed in about_PbsRestore (the cmdlet table and SEE ALSO)' {
        $about = Get-Content -LiteralPath (Join-Path $script:Repo 'module/en-US/about_PbsRestore.help.txt') -Raw
        $about | Should -Match "(?m)^\s{8}$([regex]::Escape($Name))\s{2,}\S"
        $about | Should -Match "(?m)^\s{4}$([regex]::Escape($Name))\s*$"
    }
}
