# Output objects that match what the views show (issue 11 item 10) and times that say their zone (item 11):
# Select-Object and Export-Csv see the same archive names as the table, ConvertTo-Json writes names instead of
# enum numbers, Test-PbsSnapshot has a table view, Snapshot means type/id/time everywhere with the namespace in
# its own property; views say UTC and -Snapshot takes a time with an offset or a local time.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot '../../PbsRestore.psd1') -Force
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $script:Datastore = Get-GoldenDatastore
    $script:All = @(Get-PbsSnapshot -Datastore $script:Datastore -ErrorAction Stop)
    $script:Vm100 = $script:All | Where-Object Snapshot -EQ 'vm/100/2024-05-01T10:00:00Z'
    $script:Vm101 = $script:All | Where-Object Snapshot -EQ 'vm/101/2024-05-01T10:05:00Z'
    $script:Vm100Conf = (Get-GoldenArchive (Get-GoldenSnapshot vm 100) 'qemu-server.conf.blob').plaintext_sha256
}

Describe 'Get-PbsSnapshot objects match their views (item 10)' {
    It 'Select-Object Archives gives the archive names the Archives column shows' {
        $selected = $script:Vm100 | Select-Object -ExpandProperty Archives
        @($selected) | Should -Be @('qemu-server.conf', 'drive-scsi0.img', 'drive-virtio1.img')
        $table = $script:Vm100 | Format-Table | Out-String -Width 300
        $table | Should -BeLike '*qemu-server.conf, drive-scsi0.img, drive-virtio1.img*'
    }

    It 'Export-Csv writes readable files and archives, no .NET type names' {
        $csv = Join-Path $TestDrive 'snaps.csv'
        $script:All | Export-Csv -LiteralPath $csv
        $text = Get-Content -LiteralPath $csv -Raw
        $text | Should -Not -BeLike '*System.Collections*'
        $text | Should -Not -BeLike '*PbsRestore.Sources*'
        $row = Import-Csv -LiteralPath $csv | Where-Object Snapshot -EQ 'vm/100/2024-05-01T10:00:00Z'
        $row.Archives | Should -BeExactly 'qemu-server.conf, drive-scsi0.img, drive-virtio1.img'
        $row.Files | Should -BeExactly 'qemu-server.conf.blob, drive-scsi0.img.fidx, drive-virtio1.img.fidx'
    }

    It 'ConvertTo-Json writes crypt modes as names' {
        $json = $script:Vm101 | ConvertTo-Json -Depth 4 | ConvertFrom-Json
        @($json.Files.CryptMode | Sort-Object -Unique) | Should -Be @('Encrypt')
        @(($script:Vm100 | ConvertTo-Json -Depth 4 | ConvertFrom-Json).Files.CryptMode | Sort-Object -Unique) | Should -Be @('None')
        $json.Archives | Should -Be @('qemu-server.conf', 'drive-scsi0.img')
    }
}

Describe 'Results use the same Snapshot and a Namespace (item 10)' {
    It 'Restore-PbsImage of ns/dev/vm/102 reports Snapshot and Namespace as Get-PbsSnapshot lists them' {
        $listed = $script:All | Where-Object Namespace -EQ 'dev'
        $dest = Join-Path $TestDrive 'vm102.conf'
        $r = $listed | Restore-PbsImage -Archive qemu-server.conf -Destination $dest -ErrorAction Stop
        $r.Snapshot | Should -BeExactly $listed.Snapshot
        $r.Namespace | Should -BeExactly 'dev'
        ($r | Format-Table | Out-String -Width 300) | Should -Match '(?m)^Namespace\s+Snapshot'
    }

    It 'Test-PbsSnapshot results have a table view with Namespace, Ok and the bad-chunk count' {
        $results = @(Test-PbsSnapshot -Datastore $script:Datastore -Snapshot ns/dev/vm/102 -ErrorAction Stop)
        $results.Count | Should -Be 2
        $results | ForEach-Object { $_.Namespace | Should -BeExactly 'dev'; $_.Snapshot | Should -BeExactly 'vm/102/2024-05-01T10:15:00Z' }
        $text = $results | Out-String -Width 300
        $text | Should -Match '(?m)^Namespace\s+Snapshot\s+Archive\s+Ok\s+Chunks\s+Bad\s+Size\s+Duration'
        $text | Should -Not -Match 'BadChunks\s*:' -Because 'a table, not the default list of every property'
        $csv = Join-Path $TestDrive 'verify.csv'
        $results | Export-Csv -LiteralPath $csv
        Get-Content -LiteralPath $csv -Raw | Should -Not -BeLike '*System.Collections*'
    }
}

Describe 'Times say their zone (item 11)' {
    It 'the list view shows the backup time with UTC' {
        ($script:Vm100 | Format-List | Out-String) | Should -Match 'BackupTime\s*:\s*2024-05-01 10:00:00 UTC'
    }

    It '-Snapshot takes a time with an offset, as PVE shows it' {
        $dest = Join-Path $TestDrive 'offset.conf'
        $r = Restore-PbsImage -Datastore $script:Datastore -Snapshot 'vm/100/2024-05-01T12:00:00+02:00' -Archive qemu-server.conf -Destination $dest -ErrorAction Stop
        $r.Snapshot | Should -BeExactly 'vm/100/2024-05-01T10:00:00Z'
        Get-Sha256 $dest | Should -BeExactly $script:Vm100Conf
    }

    It '-Snapshot takes a local time without offset (TZ=Asia/Kolkata, UTC+05:30)' -Skip:(-not $IsLinux) {
        # A child PowerShell with another local time zone: 15:30 local there is 10:00 UTC.
        $dest = Join-Path $TestDrive 'local.conf'
        $manifest = (Resolve-Path (Join-Path $PSScriptRoot '../../PbsRestore.psd1')).Path
        $saved = $env:TZ
        try {
            $env:TZ = 'Asia/Kolkata'
            $out = & ([System.Environment]::ProcessPath) ($(if ([IO.Path]::GetFileNameWithoutExtension([Environment]::ProcessPath) -eq 'dotnet') { 'pwsh' })) -NoProfile -Command "
                Import-Module '$manifest'
                `$r = Restore-PbsImage -Datastore '$($script:Datastore)' -Snapshot 'vm/100/2024-05-01 15:30:00' -Archive qemu-server.conf -Destination '$dest' -ErrorAction Stop
                `$r.Snapshot
                [TimeZoneInfo]::Local.BaseUtcOffset.ToString()"
        } finally { $env:TZ = $saved }
        $LASTEXITCODE | Should -Be 0
        $out | Should -Contain '05:30:00'
        $out | Should -Contain 'vm/100/2024-05-01T10:00:00Z'
        Get-Sha256 $dest | Should -BeExactly $script:Vm100Conf
    }
}
