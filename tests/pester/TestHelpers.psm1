# Shared helpers for the PbsRestore Pester tests: where the golden fixture is, its MANIFEST.json,
# private copies of the golden datastore, hand-built DataBlobs and file checks.
# The golden fixture (<repo>/../shared/golden) is READ-ONLY: everything that corrupts data works on
# a copy made by Copy-GoldenDatastore.
Set-StrictMode -Version 3.0

$script:GoldenRoot = [System.IO.Path]::GetFullPath((Join-Path $PSScriptRoot '../../../shared/golden'))
$script:Manifest = $null

function Get-GoldenRoot {
    # The golden fixture folder (holds MANIFEST.json, datastore/, expected/, keys/).
    $script:GoldenRoot
}

function Get-GoldenPath {
    # A path inside the golden fixture, from a MANIFEST.json-relative path such as 'keys/scrypt.key.json'.
    param([Parameter(Mandatory)] [string] $Relative)
    [System.IO.Path]::GetFullPath((Join-Path $script:GoldenRoot $Relative))
}

function Get-GoldenDatastore {
    Get-GoldenPath 'datastore'
}

function Get-GoldenManifest {
    # MANIFEST.json as objects (parsed once per session).
    if ($null -eq $script:Manifest) {
        $path = Join-Path $script:GoldenRoot 'MANIFEST.json'
        if (-not (Test-Path -LiteralPath $path -PathType Leaf)) {
            throw "Golden fixture not found: $path"
        }
        $script:Manifest = Get-Content -LiteralPath $path -Raw | ConvertFrom-Json -DateKind String   # keep RFC 3339 strings as text
    }
    $script:Manifest
}

function Get-GoldenSnapshot {
    # One snapshot of MANIFEST.json by type and id.
    param([Parameter(Mandatory)] [string] $BackupType, [Parameter(Mandatory)] [string] $BackupId)
    $s = @((Get-GoldenManifest).snapshots | Where-Object { $_.backup_type -eq $BackupType -and $_.backup_id -eq $BackupId })
    if ($s.Count -ne 1) { throw "MANIFEST.json has $($s.Count) snapshots $BackupType/$BackupId" }
    $s[0]
}

function Get-GoldenArchive {
    # One archive of a MANIFEST.json snapshot by its stored name (e.g. 'drive-scsi0.img.fidx').
    param([Parameter(Mandatory)] $Snapshot, [Parameter(Mandatory)] [string] $Name)
    $a = @($Snapshot.archives | Where-Object name -EQ $Name)
    if ($a.Count -ne 1) { throw "MANIFEST.json snapshot $($Snapshot.path) has $($a.Count) archives named $Name" }
    $a[0]
}

function Get-SnapshotSpec {
    # 'vm/100/2024-05-01T10:00:00Z' for a MANIFEST.json snapshot.
    param([Parameter(Mandatory)] $Snapshot)
    "$($Snapshot.backup_type)/$($Snapshot.backup_id)/$($Snapshot.backup_time_rfc3339)"
}

function Get-ArchiveDisplayName {
    # The name users type: the stored name without .fidx/.didx/.blob.
    param([Parameter(Mandatory)] [string] $StoredName)
    $StoredName -replace '\.(fidx|didx|blob)$', ''
}

function Get-GoldenArchiveCases {
    # One Pester test case per archive of every golden snapshot (Spec, Namespace, Stored, Display, Type, Snap, Arch).
    foreach ($s in (Get-GoldenManifest).snapshots) {
        foreach ($a in $s.archives) {
            @{
                Spec      = Get-SnapshotSpec $s
                Namespace = $s.namespace
                Stored    = $a.name
                Display   = Get-ArchiveDisplayName $a.name
                Type      = $a.type
                Snap      = $s
                Arch      = $a
            }
        }
    }
}

function Copy-DirectoryTree {
    # Recursive copy with .NET only (names with ':' or U+F03A stay untouched by any provider logic).
    param([Parameter(Mandatory)] [string] $Source, [Parameter(Mandatory)] [string] $Destination)
    [void][System.IO.Directory]::CreateDirectory($Destination)
    foreach ($f in [System.IO.Directory]::EnumerateFiles($Source)) {
        $target = [System.IO.Path]::Combine($Destination, [System.IO.Path]::GetFileName($f))
        [System.IO.File]::Copy($f, $target, $false)
        # The golden files are read-only; the copy must be writable (tests corrupt or delete files in it).
        [System.IO.File]::SetAttributes($target, [System.IO.FileAttributes]::Normal)
    }
    foreach ($d in [System.IO.Directory]::EnumerateDirectories($Source)) {
        Copy-DirectoryTree -Source $d -Destination ([System.IO.Path]::Combine($Destination, [System.IO.Path]::GetFileName($d)))
    }
}

function Copy-GoldenDatastore {
    # Copies the golden datastore into <Parent>/<Name> (a fresh folder) and returns its full path.
    param([Parameter(Mandatory)] [string] $Parent, [string] $Name = 'datastore')
    $dest = [System.IO.Path]::Combine([System.IO.Path]::GetFullPath($Parent), $Name)
    if ([System.IO.Directory]::Exists($dest)) { throw "Copy target already exists: $dest" }
    Copy-DirectoryTree -Source (Get-GoldenDatastore) -Destination $dest
    $dest
}

function Get-CopyPath {
    # Maps a MANIFEST.json path 'datastore/...' into a copied datastore.
    param([Parameter(Mandatory)] [string] $DatastoreCopy, [Parameter(Mandatory)] [string] $ManifestPath)
    if (-not $ManifestPath.StartsWith('datastore/')) { throw "not a datastore path: $ManifestPath" }
    [System.IO.Path]::Combine($DatastoreCopy, $ManifestPath.Substring('datastore/'.Length))
}

function New-TestPassword {
    param([Parameter(Mandatory)] [string] $Plain)
    ConvertTo-SecureString -String $Plain -AsPlainText -Force
}

function Get-Sha256 {
    # Lower-case hex SHA-256 of a file (Get-FileHash returns upper case).
    param([Parameter(Mandatory)] [string] $Path)
    (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash.ToLowerInvariant()
}

function Get-AllocatedBytes {
    # Bytes actually allocated on disk for a file (Linux/macOS: stat blocks * 512).
    param([Parameter(Mandatory)] [string] $Path)
    if ($IsLinux) { return [long](& stat -c '%b' -- $Path) * 512 }
    if ($IsMacOS) { return [long](& stat -f '%b' -- $Path) * 512 }
    throw 'Get-AllocatedBytes: only Linux and macOS are supported'
}

# The module keeps System.IO.Hashing in a private load context; the tests load their own copy to hand-build blobs.
Add-Type -Path ([System.IO.Path]::GetFullPath((Join-Path $PSScriptRoot '../../module/bin/deps/System.IO.Hashing.dll')))

function Get-Crc32 {
    # CRC-32 (IEEE, as PBS DataBlob uses it) of a byte array, as UInt32.
    param([Parameter(Mandatory)] [byte[]] $Bytes)
    # (HashToUInt32 takes a ReadOnlySpan, which PowerShell cannot pass; the instance API takes byte[].)
    $crc = [System.IO.Hashing.Crc32]::new()
    $crc.Append($Bytes)
    $crc.GetCurrentHashAsUInt32()
}

function New-UncompressedDataBlob {
    # An unencrypted, uncompressed PBS DataBlob: magic (8) + CRC32 LE of the payload (4) + payload.
    param([Parameter(Mandatory)] [byte[]] $Payload)
    [byte[]] $magic = 66, 171, 56, 7, 190, 131, 112, 161
    $crc = [System.BitConverter]::GetBytes([uint32](Get-Crc32 -Bytes $Payload))
    if (-not [System.BitConverter]::IsLittleEndian) { [array]::Reverse($crc) }
    [byte[]] ($magic + $crc + $Payload)
}

function Set-BlobCrc {
    # Recomputes the CRC32 of bytes[12..] of an unencrypted DataBlob and writes it LE at bytes 8..11.
    param([Parameter(Mandatory)] [byte[]] $Blob)
    $payload = [byte[]]::new($Blob.Length - 12)
    [array]::Copy($Blob, 12, $payload, 0, $payload.Length)
    $crc = [System.BitConverter]::GetBytes([uint32](Get-Crc32 -Bytes $payload))
    if (-not [System.BitConverter]::IsLittleEndian) { [array]::Reverse($crc) }
    [array]::Copy($crc, 0, $Blob, 8, 4)
}

function Get-PartialPath {
    # Where a restore writes before the final rename.
    param([Parameter(Mandatory)] [string] $Destination)
    "$Destination.partial"
}

function Get-ErrorIdOf {
    # The error id (before the comma) of an ErrorRecord's FullyQualifiedErrorId.
    param([Parameter(Mandatory)] [System.Management.Automation.ErrorRecord] $ErrorRecord)
    ($ErrorRecord.FullyQualifiedErrorId -split ',')[0]
}



function New-OutputFolder {
    # A fresh, empty folder under Parent (pass $TestDrive) for one test's restore output.
    param([Parameter(Mandatory)] [string] $Parent, [string] $Prefix = 'out')
    $dir = [System.IO.Path]::Combine($Parent, "$Prefix-$([guid]::NewGuid().ToString('N').Substring(0, 8))")
    [void][System.IO.Directory]::CreateDirectory($dir)
    $dir
}

function Get-FolderEntries {
    # Names of everything in a folder (files and folders, hidden ones too), sorted.
    param([Parameter(Mandatory)] [string] $Path)
    @([System.IO.Directory]::GetFileSystemEntries($Path) | ForEach-Object { [System.IO.Path]::GetFileName($_) } | Sort-Object)
}
function Get-TreeFingerprint {
    # One line per file under Root: relative path, length and SHA-256, sorted (to prove a tree unchanged).
    param([Parameter(Mandatory)] [string] $Root)
    $root = [System.IO.Path]::GetFullPath($Root)
    @([System.IO.Directory]::EnumerateFiles($root, '*', [System.IO.SearchOption]::AllDirectories) | ForEach-Object {
            $bytes = [System.IO.File]::ReadAllBytes($_)
            '{0} {1} {2}' -f [System.IO.Path]::GetRelativePath($root, $_), $bytes.Length,
                [System.Convert]::ToHexString([System.Security.Cryptography.SHA256]::HashData($bytes))
        } | Sort-Object)
}

function Assert-NothingWritten {
    # A failed restore left nothing: no destination, no '<dest>.partial', nothing else in its folder.
    param([Parameter(Mandatory)] [string] $Destination)
    Test-Path -LiteralPath $Destination | Should -BeFalse -Because "the destination $Destination must not exist"
    Test-Path -LiteralPath (Get-PartialPath $Destination) | Should -BeFalse -Because 'no .partial file may be left'
    @(Get-FolderEntries ([System.IO.Path]::GetDirectoryName($Destination))) | Should -Be @() -Because 'the output folder must stay empty'
}

function Assert-Restored {
    # A restored file is complete and bit-exact (MANIFEST.json archive), with no .partial beside it.
    param([Parameter(Mandatory)] [string] $Destination, [Parameter(Mandatory)] $Archive)
    Test-Path -LiteralPath $Destination -PathType Leaf | Should -BeTrue -Because "$Destination must exist"
    (Get-Item -LiteralPath $Destination).Length | Should -Be ([long]$Archive.plaintext_size)
    Get-Sha256 $Destination | Should -BeExactly $Archive.plaintext_sha256
    Test-Path -LiteralPath (Get-PartialPath $Destination) | Should -BeFalse -Because 'the .partial file must be renamed into place'
}

# Resume journals (<dest>.partial.journal) of a restore in progress, for the Ctrl+C / kill -9 / -Resume tests.
function Get-JournalRecords([string] $Path) {
    # Finished-chunk records in a resume journal (checkpoint markers not counted).
    $bytes = [IO.File]::ReadAllBytes($Path)
    if ($bytes.Length -lt 12) { return 0 } # read while the journal was being created
    $start = 12 + [BitConverter]::ToInt32($bytes, 8)
    $count = 0
    for ($at = $start; $at + 4 -le $bytes.Length; $at += 4) {
        if ([BitConverter]::ToUInt32($bytes, $at) -ne [uint32]::MaxValue) { $count++ }
    }
    $count
}

function Wait-Journal([string] $Path, [int] $AtLeast, [int] $TimeoutSeconds = 60) {
    $deadline = [DateTime]::UtcNow.AddSeconds($TimeoutSeconds)
    while ([DateTime]::UtcNow -lt $deadline) {
        if ((Test-Path -LiteralPath $Path) -and (Get-JournalRecords $Path) -ge $AtLeast) { return }
        Start-Sleep -Milliseconds 50
    }
    throw "the journal $Path did not reach $AtLeast records in $TimeoutSeconds s"
}

function Invoke-KilledRestore([string] $ScriptPath, [string] $ScriptText, [string] $Journal, [int] $AtLeast, [int] $TimeoutSeconds = 60) {
    # Runs a restore script in a child pwsh and kills it (SIGKILL: no cleanup code runs) once its resume journal
    # holds $AtLeast records: the kill -9 half of the kill -9 then -Resume tests.
    Set-Content -LiteralPath $ScriptPath -Value $ScriptText
    $pwsh = [Environment]::ProcessPath
    $psi = [Diagnostics.ProcessStartInfo]::new($pwsh)
    if ([IO.Path]::GetFileNameWithoutExtension($pwsh) -eq 'dotnet') { $psi.ArgumentList.Add((Join-Path $PSHOME 'pwsh.dll')) }
    foreach ($a in '-NoProfile', '-NonInteractive', '-File', $ScriptPath) { $psi.ArgumentList.Add($a) }
    $psi.UseShellExecute = $false
    $p = [Diagnostics.Process]::Start($psi)
    try {
        Wait-Journal $Journal $AtLeast -TimeoutSeconds $TimeoutSeconds
        $p.Kill()
        $p.WaitForExit(10000) | Should -BeTrue
    } finally {
        if (-not $p.HasExited) { $p.Kill($true) }
        $p.Dispose()
    }
}

# Disk images read back by qemu-img (Debian qemu-utils), an implementation we did not write.
function ConvertFrom-DiskImage([string] $Path, [string] $Format) {
    # qemu-img check (VHDX and VMDK: qemu has no checker for VHD), then qemu's own raw conversion. Format: vhdx, vmdk or vpc (VHD).
    $qemuImg = (Get-Command qemu-img -ErrorAction SilentlyContinue).Source
    if (-not $qemuImg) { throw 'qemu-img not found: install qemu-utils (build.ps1 Test does when it runs as root)' }
    if ($Format -in 'vhdx', 'vmdk') {
        $check = & $qemuImg check -f $Format $Path 2>&1
        if ($LASTEXITCODE -ne 0) { throw "qemu-img check failed: $check" }
    }
    $raw = "$Path.qemu.raw"
    & $qemuImg convert -f $Format -O raw $Path $raw 2>&1 | Out-Null
    if ($LASTEXITCODE -ne 0) { throw "qemu-img convert -f $Format failed" }
    $raw
}

function Assert-Image([string] $Raw, [long] $Size, [string] $Sha256) {
    # The image's bytes first, then only zeros (VHDX rounds the size to 512 bytes, VHD to 1 MiB).
    $bytes = [IO.File]::ReadAllBytes($Raw)
    $bytes.LongLength | Should -BeGreaterOrEqual $Size
    $sha = [Security.Cryptography.SHA256]::Create()
    [Convert]::ToHexStringLower($sha.ComputeHash($bytes, 0, $Size)) | Should -Be $Sha256
    $pad = $bytes.LongLength - $Size
    [Convert]::ToHexStringLower($sha.ComputeHash($bytes, $Size, $pad)) | Should -Be ([Convert]::ToHexStringLower($sha.ComputeHash([byte[]]::new($pad)))) -Because 'the padding reads as zeros'
}

function New-RecordingRunspace {
    # A runspace whose host records and answers prompts (RecordingHost.cs): proves that a cmdlet asks (ShouldContinue,
    # a password read with ReadLineAsSecureString) instead of trusting $ConfirmPreference arithmetic. The module is
    # imported; run commands with Invoke-InRecordingRunspace. Returns the runspace and the host's recorder (.UI).
    if (-not ('PbsRestoreTests.RecordingHost' -as [type])) {
        Add-Type -Path (Join-Path $PSScriptRoot 'RecordingHost.cs')
    }
    $hostObject = [PbsRestoreTests.RecordingHost]::new()
    $rs = [runspacefactory]::CreateRunspace($hostObject)
    $rs.Open()
    $ps = [powershell]::Create(); $ps.Runspace = $rs
    [void]$ps.AddCommand('Import-Module').AddArgument([IO.Path]::GetFullPath((Join-Path $PSScriptRoot '../../PbsRestore.psd1'))).Invoke()
    $ps.Dispose()
    [pscustomobject]@{ Runspace = $rs; UI = $hostObject.Recorder }
}

function Invoke-InRecordingRunspace {
    # Runs a script block's text in a recording runspace; returns Output, Errors (error records) and Thrown (a
    # terminating error's exception, or $null).
    param([Parameter(Mandatory)] $Recording, [Parameter(Mandatory)] [string] $Script, [hashtable] $Variables = @{})
    $ps = [powershell]::Create(); $ps.Runspace = $Recording.Runspace
    foreach ($k in $Variables.Keys) { $Recording.Runspace.SessionStateProxy.SetVariable($k, $Variables[$k]) }
    [void]$ps.AddScript($Script)
    $thrown = $null; $out = @()
    try { $out = @($ps.Invoke()) } catch { $thrown = $_.Exception }
    $result = [pscustomobject]@{ Output = $out; Errors = @($ps.Streams.Error); Thrown = $thrown }
    $ps.Dispose()
    $result
}

# Our datastore writer (src/PbsRestore.Fixtures), for tests that need data of a shape the golden set lacks.
function Get-FixturesDll {
    # The newest built PbsRestore.Fixtures.dll (net10.0), as a FileInfo; throws if it was not built.
    $repo = [IO.Path]::GetFullPath((Join-Path $PSScriptRoot ../..))
    $dll = Get-ChildItem -Path (Join-Path $repo 'src/PbsRestore.Fixtures/bin') -Recurse -Filter PbsRestore.Fixtures.dll |
        Where-Object { $_.Directory.Name -eq 'net10.0' } | Sort-Object LastWriteTime | Select-Object -Last 1
    if (-not $dll) { throw 'PbsRestore.Fixtures.dll not built' }
    $dll
}

function Invoke-FixtureWriter([string[]] $Arguments) {
    # Runs the writer with these arguments and returns its JSON answer as an object; its messages go to the host.
    $out = & dotnet (Get-FixturesDll).FullName @Arguments 2>&1 | ForEach-Object { if ($_ -is [System.Management.Automation.ErrorRecord]) { Write-Host $_ } else { $_ } }
    if ($LASTEXITCODE -ne 0) { throw "writer failed: $Arguments" }
    ($out -join "`n") | ConvertFrom-Json
}

Export-ModuleMember -Function *
