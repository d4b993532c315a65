# Restore onto a block device (issue 7): a loop device over a file full of garbage stands in for a disk or LUN.
# Needs root and loop devices (skipped otherwise; the regular-file fallback of the same code runs in xunit,
# DeviceDestinationTests).
BeforeDiscovery {
    $script:CanLoop = $false
    if ($IsLinux -and (Get-Command losetup -ErrorAction SilentlyContinue) -and ((& id -u) -eq '0')) {
        $probe = [IO.Path]::GetTempFileName()
        try {
            [IO.File]::WriteAllBytes($probe, [byte[]]::new(1MB))
            $dev = & losetup -f --show $probe 2>$null
            if ($LASTEXITCODE -eq 0 -and $dev) { & losetup -d $dev; $script:CanLoop = $true }
        } finally { Remove-Item -LiteralPath $probe -Force }
    }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot ../../PbsRestore.psd1) -Force
    Import-Module (Join-Path $PSScriptRoot TestHelpers.psm1) -Force
    Import-Module (Join-Path $PSScriptRoot ServerHelpers.psm1) -Force
    $repo = [IO.Path]::GetFullPath((Join-Path $PSScriptRoot ../..))
    $fixtures = Get-ChildItem -Path (Join-Path $repo 'src/PbsRestore.Fixtures/bin') -Recurse -Filter PbsRestore.Fixtures.dll |
        Where-Object { $_.Directory.Name -eq 'net10.0' } | Sort-Object LastWriteTime | Select-Object -Last 1
    $script:Store = Join-Path $TestDrive 'store'
    $json = & (Get-DotnetPath) $fixtures.FullName image --path $script:Store --type vm --id 600 --time 2024-08-01T00:00:00Z `
        --size 24MiB --chunk-size 1MiB --pattern 'zero:2,random:1,text:1,dup:1' --seed 11
    if ($LASTEXITCODE -ne 0) { throw 'writer failed' }
    $script:Image = ($json -join "`n") | ConvertFrom-Json
    $script:Common = @{ Datastore = $script:Store; Snapshot = 'vm/600'; Archive = 'drive-scsi0.img' }
    $script:Loops = [Collections.Generic.List[string]]::new()

    function New-GarbageLoop([long] $Size) {
        $file = Join-Path $TestDrive "loop-$([guid]::NewGuid().ToString('N').Substring(0, 6)).bin"
        $bytes = [byte[]]::new($Size)
        [Random]::new(5).NextBytes($bytes) # old content that the zero regions must overwrite
        [IO.File]::WriteAllBytes($file, $bytes)
        $dev = (& losetup -f --show $file).Trim()
        if ($LASTEXITCODE -ne 0) { throw "losetup failed for $file" }
        $script:Loops.Add($dev)
        [pscustomobject]@{ Device = $dev; File = $file }
    }

    function Get-PrefixSha256([string] $Path, [long] $Length) {
        $stream = [IO.File]::OpenRead($Path)
        try {
            $buffer = [byte[]]::new($Length)
            $stream.ReadExactly($buffer, 0, $Length)
            [Convert]::ToHexStringLower([Security.Cryptography.SHA256]::HashData($buffer))
        } finally { $stream.Dispose() }
    }
}

AfterAll {
    foreach ($d in $script:Loops) { & losetup -d $d 2>$null }
}

Describe 'Restore-PbsImage onto a block device' -Skip:(-not $script:CanLoop) {
    It 'refuses without -Force and writes nothing' {
        $loop = New-GarbageLoop 32MB
        $before = Get-Sha256 $loop.File
        { Restore-PbsImage @script:Common -Destination $loop.Device -ErrorAction Stop } |
            Should -Throw -ErrorId 'DeviceRequiresForce,PbsRestore.PowerShell.Commands.RestorePbsImageCommand' -ExpectedMessage "*$($loop.Device)*block device*-Force*"
        Get-Sha256 $loop.File | Should -Be $before
    }

    It '-WhatIf names the device, its size and what backs it, and writes nothing' {
        $loop = New-GarbageLoop 32MB
        $before = Get-Sha256 $loop.File
        # "What if:" goes to the host, so run it in a child pwsh and read what it prints.
        $pwsh = [Environment]::ProcessPath
        [string[]] $dll = if ([IO.Path]::GetFileNameWithoutExtension($pwsh) -eq 'dotnet') { Join-Path $PSHOME 'pwsh.dll' } else { @() }
        $module = Join-Path $PSScriptRoot ../../PbsRestore.psd1
        $out = & $pwsh @dll -NoProfile -NonInteractive -Command "Import-Module '$module'; Restore-PbsImage -Datastore '$($script:Store)' -Snapshot vm/600 -Archive drive-scsi0.img -Destination '$($loop.Device)' -Force -WhatIf" 2>&1 | Out-String
        $out = $out -replace '\s+', ' '
        $out | Should -BeLike "*overwrite everything on block device $($loop.Device)*backing file $($loop.File)*32*MiB*drive-scsi0.img*"
        Get-Sha256 $loop.File | Should -Be $before
    }

    It 'restores bit-exactly with -Force, zero regions written over the old garbage' {
        $loop = New-GarbageLoop 32MB
        $r = Restore-PbsImage @script:Common -Destination $loop.Device -Force -Confirm:$false -ErrorAction Stop
        $r.Format | Should -Be 'Device'
        $r.ZeroChunks | Should -BeGreaterThan 0
        Get-PrefixSha256 $loop.Device 24MB | Should -Be $script:Image.sha256
        Test-Path -LiteralPath "$($loop.Device).partial" | Should -BeFalse
    }

    It 'refuses a device smaller than the image, naming both sizes' {
        $loop = New-GarbageLoop 8MB
        { Restore-PbsImage @script:Common -Destination $loop.Device -Force -ErrorAction Stop } |
            Should -Throw -ErrorId 'DeviceTooSmall,PbsRestore.PowerShell.Commands.RestorePbsImageCommand' -ExpectedMessage '*8*MiB*24*MiB*'
    }

    It '-SkipBadChunks writes zeros over the old garbage where a chunk is missing (issue 11, item 17)' {
        # A device keeps its old bytes where nothing is written: the range given up on must be zeroed explicitly.
        $store = Copy-GoldenDatastore -Parent (Join-Path $TestDrive "skip-$([guid]::NewGuid().ToString('N').Substring(0, 6))")
        $scsi0 = Get-GoldenArchive (Get-GoldenSnapshot vm 100) 'drive-scsi0.img.fidx'
        $chunk = @($scsi0.chunks | Where-Object { -not $_.is_zero -and [long]$_.offset -gt 0 })[0]
        Remove-Item -LiteralPath (Get-CopyPath $store $chunk.path)
        $loop = New-GarbageLoop 4MB
        $r = Restore-PbsImage -Datastore $store -Snapshot vm/100/2024-05-01T10:00:00Z -Archive drive-scsi0.img -Destination $loop.Device `
            -Force -Confirm:$false -SkipBadChunks -WarningAction SilentlyContinue -ErrorAction Stop
        # The chunk is used at several offsets (deduplicated): each of them is a bad range, and each is zeroed.
        $uses = @($scsi0.chunks | Where-Object digest -EQ $chunk.digest)
        $uses.Count | Should -BeGreaterThan 1
        @($r.BadRanges.Offset) | Should -Be @($uses | ForEach-Object { [long]$_.offset })
        $expected = [IO.File]::ReadAllBytes((Get-GoldenPath $scsi0.plaintext_path))
        foreach ($u in $uses) { [Array]::Clear($expected, [int]$u.offset, [int]$u.length) }
        Get-PrefixSha256 $loop.Device $expected.Length | Should -Be ([Convert]::ToHexStringLower([Security.Cryptography.SHA256]::HashData($expected)))
    }

    It 'refuses -Format Vhdx for a device' {
        $loop = New-GarbageLoop 32MB
        { Restore-PbsImage @script:Common -Destination $loop.Device -Force -Format Vhdx -Confirm:$false -ErrorAction Stop } |
            Should -Throw -ErrorId 'FormatNotSupported,PbsRestore.PowerShell.Commands.RestorePbsImageCommand'
    }
}

# The question before a device is overwritten (issue 11, item 2). A runspace whose host records every
# PromptForChoice and answers it (RecordingHost.cs) proves that the prompt appears under default preferences
# ($ConfirmPreference = High), what it names, and that No leaves the device as it was.
Describe 'Overwriting a block device asks first' -Skip:(-not $script:CanLoop) {
    BeforeAll {
        $script:Rec = New-RecordingRunspace
        $script:RestoreCmd = 'Restore-PbsImage -Datastore $ds -Snapshot vm/600 -Archive drive-scsi0.img -Destination $dev -Force'
        function Invoke-Recorded([string] $Script, $Loop, [string] $Answer) {
            $script:Rec.UI.Choices.Clear()
            $script:Rec.UI.ChoiceAnswer = $Answer
            Invoke-InRecordingRunspace $script:Rec $Script @{ ds = $script:Store; dev = $Loop.Device }
        }
    }
    AfterAll { $script:Rec.Runspace.Dispose() }

    It 'asks under default preferences, naming the device, its size and what backs it; No writes nothing' {
        $loop = New-GarbageLoop 32MB
        $before = Get-Sha256 $loop.File
        $r = Invoke-Recorded $script:RestoreCmd $loop 'No'
        $r.Thrown | Should -BeNullOrEmpty
        $r.Errors | Should -HaveCount 0
        $r.Output | Should -HaveCount 0
        $script:Rec.UI.Choices | Should -HaveCount 1
        $script:Rec.UI.Choices[0] | Should -BeLike "Overwrite block device $($loop.Device) | *overwrite everything on block device $($loop.Device)*backing file $($loop.File)*32.0 MiB*drive-scsi0.img*"
        Get-Sha256 $loop.File | Should -Be $before
    }

    It 'restores bit-exactly when the answer is Yes' {
        $loop = New-GarbageLoop 32MB
        $r = Invoke-Recorded $script:RestoreCmd $loop 'Yes'
        $r.Errors | Should -HaveCount 0
        $script:Rec.UI.Choices | Should -HaveCount 1
        $r.Output[0].Format | Should -Be 'Device'
        Get-PrefixSha256 $loop.Device 24MB | Should -Be $script:Image.sha256
    }

    It '-Confirm:$false and $ConfirmPreference = None skip the question' {
        foreach ($cmd in "$($script:RestoreCmd) -Confirm:`$false", "& { `$ConfirmPreference = 'None'; $($script:RestoreCmd) }") {
            $loop = New-GarbageLoop 32MB
            $r = Invoke-Recorded $cmd $loop 'No'
            $r.Errors | Should -HaveCount 0
            $script:Rec.UI.Choices | Should -HaveCount 0
            Get-PrefixSha256 $loop.Device 24MB | Should -Be $script:Image.sha256
        }
    }

    It '-Confirm asks once (ShouldProcess), not twice' {
        $loop = New-GarbageLoop 32MB
        $before = Get-Sha256 $loop.File
        $r = Invoke-Recorded "$($script:RestoreCmd) -Confirm" $loop 'No'
        $script:Rec.UI.Choices | Should -HaveCount 1
        $script:Rec.UI.Choices[0] | Should -BeLike "*overwrite everything on block device $($loop.Device)*"
        Get-Sha256 $loop.File | Should -Be $before
    }

    It 'Measure-PbsRestore -Destination asks the same question and needs -Force' {
        $loop = New-GarbageLoop 32MB
        $before = Get-Sha256 $loop.File
        $r = Invoke-Recorded 'Measure-PbsRestore -Datastore $ds -Snapshot vm/600 -Archive drive-scsi0.img -Destination $dev' $loop 'No'
        (Get-ErrorIdOf $r.Errors[0]) | Should -Be 'DeviceRequiresForce'
        $script:Rec.UI.Choices | Should -HaveCount 0
        $r = Invoke-Recorded 'Measure-PbsRestore -Datastore $ds -Snapshot vm/600 -Archive drive-scsi0.img -Destination $dev -Force' $loop 'No'
        $r.Errors | Should -HaveCount 0
        $r.Output | Should -HaveCount 0
        $script:Rec.UI.Choices | Should -HaveCount 1
        $script:Rec.UI.Choices[0] | Should -BeLike "*overwrite everything on block device $($loop.Device)*measured restore*"
        Get-Sha256 $loop.File | Should -Be $before
    }
}
