# Ctrl+C, a killed process and -Resume (issue 5): a stopped restore stops fast, never leaves a file that looks
# complete, keeps what is done, and -Resume finishes it bit-exactly fetching only what is missing.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot ../../PbsRestore.psd1) -Force
    Import-Module (Join-Path $PSScriptRoot TestHelpers.psm1) -Force
    Import-Module (Join-Path $PSScriptRoot ServerHelpers.psm1) -Force
    $repo = [IO.Path]::GetFullPath((Join-Path $PSScriptRoot ../..))
    $script:ModulePath = Join-Path $repo 'PbsRestore.psd1'
    $fixtures = Get-ChildItem -Path (Join-Path $repo 'src/PbsRestore.Fixtures/bin') -Recurse -Filter PbsRestore.Fixtures.dll |
        Where-Object { $_.Directory.Name -eq 'net10.0' } | Sort-Object LastWriteTime | Select-Object -Last 1
    if (-not $fixtures) { throw 'PbsRestore.Fixtures.dll not built' }

    # 96 MiB in 1 MiB chunks (random, text, zero and duplicate chunks), served at 80 Mbit/s: a restore of several seconds.
    $script:Store = Join-Path $TestDrive 'store'
    $json = & (Get-DotnetPath) $fixtures.FullName image --path $script:Store --type vm --id 500 --time 2024-07-01T00:00:00Z `
        --size 96MiB --chunk-size 1MiB --pattern 'random:3,text:2,zero:1,dup:1' --seed 5
    if ($LASTEXITCODE -ne 0) { throw 'writer failed' }
    $script:Image = ($json -join "`n") | ConvertFrom-Json
    $script:TokenId = 'root@pam!resume'
    $script:Secret = 'resume-S3cret'
    $script:Server = Start-TestServer -Datastore @{ store = $script:Store } -Token "$($script:TokenId):$($script:Secret)" `
        -ExtraArgument @('--bandwidth-mbit', '80') -LogFolder (Join-Path $TestDrive 'server-log')
    $script:Repository = "$($script:TokenId)@127.0.0.1:$($script:Server.Port):store"
    $script:Credential = New-PbsCredential $script:TokenId $script:Secret
    $script:Common = @{
        Repository = $script:Repository; Fingerprint = $script:Server.Fingerprint; Credential = $script:Credential
        Snapshot = 'vm/500'; Archive = 'drive-scsi0.img'
    }

    # Get-JournalRecords and Wait-Journal: TestHelpers.psm1.

    function Start-BackgroundRestore([hashtable] $Common, [string] $Dest) {
        # Restore-PbsImage in another runspace (as a console would run it), so the test can stop it like Ctrl+C does.
        $ps = [powershell]::Create()
        [void]$ps.AddScript({ param($Module, $Common, $Dest) Import-Module $Module; Restore-PbsImage @Common -Destination $Dest }).
            AddArgument($script:ModulePath).AddArgument($Common).AddArgument($Dest)
        [pscustomobject]@{ PowerShell = $ps; Async = $ps.BeginInvoke() }
    }

    function Stop-RestoreMidway([string] $Dest, [int] $AfterRecords) {
        # Starts a restore to $Dest, stops it (StopProcessing, as Ctrl+C) once its journal holds $AfterRecords chunks.
        $run = Start-BackgroundRestore $script:Common $Dest
        try {
            Wait-Journal "$Dest.partial.journal" $AfterRecords
            $run.PowerShell.Stop()
        } finally { $run.PowerShell.Dispose() }
    }

    # Every distinct data chunk of the image: what a complete restore fetches.
    $reference = Restore-PbsImage @script:Common -Destination (Join-Path $TestDrive 'reference.img') -ErrorAction Stop
    $script:AllChunks = $reference.ChunksFetched
}

AfterAll {
    Stop-TestServer $script:Server
}

Describe 'Restore-PbsImage stopped and resumed' {
    It 'the reference restore is bit-exact and fetched every distinct data chunk once' {
        Get-Sha256 (Join-Path $TestDrive 'reference.img') | Should -Be $script:Image.sha256
        $script:AllChunks | Should -BeGreaterThan 40
    }

    It 'Ctrl+C (StopProcessing) stops within 2 s, keeps a partial file and journal, and -Resume finishes bit-exactly' {
        $dest = Join-Path $TestDrive 'stopped.img'
        $journal = "$dest.partial.journal"
        $run = Start-BackgroundRestore $script:Common $dest
        try {
            Wait-Journal $journal 5
            $clock = [Diagnostics.Stopwatch]::StartNew()
            $run.PowerShell.Stop()
            $clock.Stop()
            $run.Async.IsCompleted | Should -BeTrue
            $clock.Elapsed.TotalSeconds | Should -BeLessThan 2
        } finally {
            $run.PowerShell.Dispose()
        }
        # Nothing that looks complete; what is done is kept.
        Test-Path -LiteralPath $dest | Should -BeFalse
        Test-Path -LiteralPath "$dest.partial" | Should -BeTrue
        $done = Get-JournalRecords $journal
        $done | Should -BeLessThan $script:AllChunks

        $r = Restore-PbsImage @script:Common -Destination $dest -Resume -ErrorAction Stop
        Get-Sha256 $dest | Should -Be $script:Image.sha256
        $r.ChunksResumed | Should -BeGreaterOrEqual $done
        $r.ChunksFetched | Should -Be ($script:AllChunks - $done)
        Test-Path -LiteralPath "$dest.partial" | Should -BeFalse
        Test-Path -LiteralPath $journal | Should -BeFalse
    }

    It 'after kill -9 in the middle, -Resume fetches only the chunks the journal does not hold and is bit-exact' {
        $dest = Join-Path $TestDrive 'killed.img'
        $journal = "$dest.partial.journal"
        Invoke-KilledRestore (Join-Path $TestDrive 'kill-me.ps1') @"
Import-Module '$($script:ModulePath)'
`$env:PBS_PASSWORD = '$($script:Secret)'
Restore-PbsImage -Repository '$($script:Repository)' -Fingerprint '$($script:Server.Fingerprint)' -Snapshot vm/500 -Archive drive-scsi0.img -Destination '$dest'
"@ $journal 10
        Test-Path -LiteralPath $dest | Should -BeFalse
        $done = Get-JournalRecords $journal
        $done | Should -BeLessThan $script:AllChunks

        $r = Restore-PbsImage @script:Common -Destination $dest -Resume -ErrorAction Stop
        Get-Sha256 $dest | Should -Be $script:Image.sha256
        # Chunks in flight when the process died were never recorded: they, and only the unrecorded ones, are fetched.
        $r.ChunksFetched | Should -Be ($script:AllChunks - $done)
    }

    It 'Ctrl+C then -Resume into a <_> image: bit-exact as qemu-img reads it' -ForEach @('vhdx', 'vhd') {
        $format = $_
        $dest = Join-Path $TestDrive "stopped.$format"
        Stop-RestoreMidway $dest 8 # a VHDX/VHD writes its metadata (BAT, footer) as it stops: the chunks done so far are kept
        Test-Path -LiteralPath $dest | Should -BeFalse
        $r = Restore-PbsImage @script:Common -Destination $dest -Resume -ErrorAction Stop
        $r.Format | Should -Be ($format -eq 'vhdx' ? 'Vhdx' : 'Vhd')
        $r.ChunksResumed | Should -BeGreaterThan 0
        $raw = "$dest.raw"
        & qemu-img convert -f ($format -eq 'vhdx' ? 'vhdx' : 'vpc') -O raw $dest $raw
        $LASTEXITCODE | Should -Be 0
        $bytes = [IO.File]::ReadAllBytes($raw)
        [Convert]::ToHexStringLower([Security.Cryptography.SHA256]::Create().ComputeHash($bytes, 0, 96MB)) | Should -Be $script:Image.sha256
    }

    It '-Resume refuses a journal of another snapshot, naming both' {
        $dest = Join-Path $TestDrive 'other.img'
        $journal = "$dest.partial.journal"
        # A journal written for vm/500 under another archive name.
        Stop-RestoreMidway $dest 2
        $bytes = [IO.File]::ReadAllBytes($journal)
        $text = [Text.Encoding]::Latin1.GetString($bytes) # byte for byte
        $patched = [Text.Encoding]::Latin1.GetBytes($text.Replace('drive-scsi0.img.fidx', 'drive-scsi1.img.fidx'))
        [IO.File]::WriteAllBytes($journal, $patched)
        { Restore-PbsImage @script:Common -Destination $dest -Resume -ErrorAction Stop } |
            Should -Throw -ErrorId 'ResumeMismatch,PbsRestore.PowerShell.Commands.RestorePbsImageCommand' -ExpectedMessage '*drive-scsi1.img.fidx*drive-scsi0.img.fidx*'
        # The refused resume destroyed nothing.
        Test-Path -LiteralPath "$dest.partial" | Should -BeTrue
        Test-Path -LiteralPath $journal | Should -BeTrue
    }

    # Issue 11, item 4: a plain re-run must not silently throw the interrupted restore away.
    It 'a re-run without -Resume or -Force refuses to delete the interrupted restore; -Force starts over' {
        $dest = Join-Path $TestDrive 'rerun.img'
        Stop-RestoreMidway $dest 3
        $partialSha = Get-Sha256 "$dest.partial"
        $journalSha = Get-Sha256 "$dest.partial.journal"
        { Restore-PbsImage @script:Common -Destination $dest -ErrorAction Stop } |
            Should -Throw -ErrorId 'InterruptedRestoreExists,PbsRestore.PowerShell.Commands.RestorePbsImageCommand' `
                -ExpectedMessage "an interrupted restore of this archive exists; add -Resume to continue it or -Force to start over ('$dest.partial' and its journal)"
        # Refused before anything was touched (and before a -Confirm prompt would be shown).
        Get-Sha256 "$dest.partial" | Should -Be $partialSha
        Get-Sha256 "$dest.partial.journal" | Should -Be $journalSha
        Test-Path -LiteralPath $dest | Should -BeFalse
        $r = Restore-PbsImage @script:Common -Destination $dest -Force -ErrorAction Stop
        $r.ChunksResumed | Should -Be 0
        Get-Sha256 $dest | Should -Be $script:Image.sha256
        Test-Path -LiteralPath "$dest.partial.journal" | Should -BeFalse
    }

    It 'Ctrl+C leaves one line on the host saying how to resume (<_>)' -ForEach @('host writes', 'host refuses') {
        $refuses = $_ -eq 'host refuses'
        $dest = Join-Path $TestDrive "told-$($refuses ? 'refused' : 'written').img"
        $rec = New-RecordingRunspace
        $rec.UI.RefuseWarnings = $refuses
        try {
            $ps = [powershell]::Create(); $ps.Runspace = $rec.Runspace
            [void]$ps.AddScript({ param($Common, $Dest) Restore-PbsImage @Common -Destination $Dest }).AddArgument($script:Common).AddArgument($dest)
            $async = $ps.BeginInvoke()
            Wait-Journal "$dest.partial.journal" 3
            $ps.Stop()
            $async.IsCompleted | Should -BeTrue
            $ps.Dispose()
            $line = "Restore stopped. What was restored is kept in '$dest.partial'. Run the same command again with -Resume to continue."
            $lines = @($rec.UI.Written | Where-Object { $_ -like '*-Resume*' })
            if ($refuses) {
                # The host would not print it: the record is first in $Error, with the line and the advice.
                $lines | Should -HaveCount 0
                $first = @($rec.Runspace.SessionStateProxy.GetVariable('Error'))[0]
                $first.FullyQualifiedErrorId | Should -BeExactly 'RestoreStopped'
                $first.ErrorDetails.Message | Should -BeExactly $line
                $first.ErrorDetails.RecommendedAction | Should -BeLike "*$dest.partial*-Resume*"
            } else {
                $lines | Should -HaveCount 1
                $lines[0] | Should -BeExactly $line
            }
        } finally { $rec.Runspace.Dispose() }
        Test-Path -LiteralPath "$dest.partial" | Should -BeTrue
    }

    It '-Resume with nothing to resume starts a new restore' {
        $dest = Join-Path $TestDrive 'fresh.img'
        $r = Restore-PbsImage @script:Common -Destination $dest -Resume -ErrorAction Stop
        Get-Sha256 $dest | Should -Be $script:Image.sha256
        $r.ChunksResumed | Should -Be 0
    }

    It 'a restore cut off by a lost server keeps its partial file and says to run again with -Resume' {
        $store2 = Join-Path $TestDrive 'server2-log'
        $server2 = Start-TestServer -Datastore @{ store = $script:Store } -Token "$($script:TokenId):$($script:Secret)" `
            -ExtraArgument @('--bandwidth-mbit', '80') -LogFolder $store2
        $dest = Join-Path $TestDrive 'lost.img'
        $journal = "$dest.partial.journal"
        $common2 = $script:Common.Clone()
        $common2.Repository = "$($script:TokenId)@127.0.0.1:$($server2.Port):store"
        $common2.Fingerprint = $server2.Fingerprint
        $run = Start-BackgroundRestore $common2 $dest
        $ps = $run.PowerShell
        $async = $run.Async
        try {
            Wait-Journal $journal 5
            $server2.Process.Kill() # the server is gone for good: retries run out
            $async.AsyncWaitHandle.WaitOne(120000) | Should -BeTrue
            $ps.Streams.Error.Count | Should -Be 1
            $err = $ps.Streams.Error[0]
            $err.CategoryInfo.Category | Should -Be 'ConnectionError'
            $err.ErrorDetails.RecommendedAction | Should -BeLike "*$dest.partial*-Resume*"
        } finally {
            $ps.Dispose()
            Stop-TestServer $server2
        }
        Test-Path -LiteralPath $dest | Should -BeFalse
        Test-Path -LiteralPath "$dest.partial" | Should -BeTrue

        # The server is back (here: the first one, same datastore): -Resume completes.
        $r = Restore-PbsImage @script:Common -Destination $dest -Resume -ErrorAction Stop
        Get-Sha256 $dest | Should -Be $script:Image.sha256
        $r.ChunksResumed | Should -BeGreaterThan 0
    }
}
