<#
.SYNOPSIS
    Gets one file back from a VM backup without restoring the disk: publishes the VM's disk over iSCSI, attaches it
    with the machine's own initiator, copies the file, and cleans everything up.

.DESCRIPTION
    The time to one file is seconds, not the time to restore the whole disk: Publish-PbsImage serves the disk from the
    backup, and only the chunks the file system reads are fetched. Nothing is written to the backup; the file system
    may write (NTFS replays its log) into a temporary overlay that is deleted at the end.

    -Initiator picks how the disk is attached on this machine:
      Windows   Windows' iSCSI initiator (New-IscsiTargetPortal, Connect-IscsiTarget), Get-Disk/Set-Disk, and
                Windows' own NTFS driver; the file path is a Windows path inside the guest (C:\...), matched on the
                volume of the given -Partition. Written from the Windows documentation; not run where the module is
                tested (Linux).
      Iscsiadm  Linux open-iscsi (needs root, iscsid and the iscsi_tcp module); the partition is mounted read-only.
      Qemu      No kernel initiator: qemu-img (libiscsi) reads only the partition that holds the file, and debugfs
                copies the file out of it (ext2/3/4 file systems in an MBR or GPT partition; Debian: qemu-utils,
                qemu-block-extra, e2fsprogs).
    The default is Windows on Windows, Iscsiadm on Linux where it can work, else Qemu.

.EXAMPLE
    ./Restore-OneFileFromVmBackup.ps1 -Datastore D:\pbs-usb -VmId 100 -Path 'C:\inetpub\wwwroot\web.config' -Destination C:\restore

.EXAMPLE
    ./Restore-OneFileFromVmBackup.ps1 -Repository 'restore@pbs!dr@pbs.example.com:store1' -Fingerprint $fp -Credential $token `
        -VmId 101 -Keyfile C:\keys\pbs.json -Path /etc/fstab -Partition 1 -Destination /root/restore
#>
[CmdletBinding()]
param(
    # The VM whose newest backup holds the file (or give -Snapshot).
    [string] $VmId,
    # A snapshot path (vm/100/2024-05-01T10:00:00Z) instead of the newest of -VmId.
    [string] $Snapshot,
    [string] $Namespace,
    # Where to read the backup from: a datastore folder, or a server (-Repository, -Fingerprint, -Credential); else
    # the session's Connect-PbsServer connection.
    [string] $Datastore,
    [string] $Repository,
    [string] $Fingerprint,
    [pscredential] $Credential,
    [string] $Keyfile,
    [securestring] $KeyPassword,
    # The disk holding the file.
    [string] $Archive = 'drive-scsi0.img',
    # The partition holding the file (1 = the first); 0 when the disk has no partition table.
    [int] $Partition = 1,
    # The file's path inside the guest.
    [Parameter(Mandatory)] [string] $Path,
    # A folder to copy the file into.
    [Parameter(Mandatory)] [string] $Destination,
    [ValidateSet('Auto', 'Windows', 'Iscsiadm', 'Qemu')] [string] $Initiator = 'Auto'
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

function Get-PartitionRange([byte[]] $Head, [int] $Number) {
    # Byte offset and length of partition $Number (1-based) from an MBR, or from a GPT (entries within the first 64 KiB).
    if ($Head[510] -ne 0x55 -or $Head[511] -ne 0xAA) { throw 'the disk has no partition table (use -Partition 0 for a disk that is one file system)' }
    if ($Head[450] -eq 0xEE) {
        if ([Text.Encoding]::ASCII.GetString($Head, 512, 8) -ne 'EFI PART') { throw 'protective MBR without a GPT header' }
        $entries = [BitConverter]::ToInt64($Head, 512 + 72) * 512
        $entrySize = [BitConverter]::ToInt32($Head, 512 + 84)
        $at = $entries + ($Number - 1) * $entrySize
        if ($at + $entrySize -gt $Head.Length) { throw "GPT entry $Number is beyond the first 64 KiB" }
        $first = [BitConverter]::ToInt64($Head, $at + 32); $last = [BitConverter]::ToInt64($Head, $at + 40)
        if ($first -eq 0) { throw "the disk has no partition $Number" }
        return @(($first * 512), (($last - $first + 1) * 512))
    }
    if ($Number -gt 4) { throw 'only the 4 primary MBR partitions are supported' }
    $entry = 446 + 16 * ($Number - 1)
    $start = [BitConverter]::ToUInt32($Head, $entry + 8); $sectors = [BitConverter]::ToUInt32($Head, $entry + 12)
    if ($Head[$entry + 4] -eq 0 -or $sectors -eq 0) { throw "the disk has no partition $Number" }
    @(([long]$start * 512), ([long]$sectors * 512))
}

if (-not $VmId -and -not $Snapshot) { throw 'Give -VmId (its newest backup) or -Snapshot.' }
$source = @{}
if ($Datastore) { $source.Datastore = $Datastore }
elseif ($Repository) { $source.Repository = $Repository; if ($Fingerprint) { $source.Fingerprint = $Fingerprint }; if ($Credential) { $source.Credential = $Credential } }
$key = @{}
if ($Keyfile) { $key.Keyfile = $Keyfile; if ($KeyPassword) { $key.KeyPassword = $KeyPassword } }
if ($Namespace) { $source.Namespace = $Namespace }

if ($Initiator -eq 'Auto') {
    $Initiator = if ($IsWindows) { 'Windows' }
    elseif ((Get-Command iscsiadm -ErrorAction SilentlyContinue) -and (Test-Path /sys/module/iscsi_tcp) -and ((& id -u) -eq '0')) { 'Iscsiadm' }
    else { 'Qemu' }
}
$null = New-Item -ItemType Directory -Force -Path $Destination
$Destination = (Resolve-Path -LiteralPath $Destination).Path
$target = Join-Path $Destination (Split-Path -Leaf ($Path -replace '\\', '/'))

# 1. Publish the one disk, on loopback: the initiator is this machine. Read-only for the file systems that do not
#    need to write (the Qemu path); the others get an overlay, deleted at the end.
$snapshotName = if ($Snapshot) { $Snapshot } else { "vm/$VmId" }
$publication = Publish-PbsImage @source @key -Snapshot $snapshotName -Archive $Archive -ReadOnly:($Initiator -eq 'Qemu')
Write-Verbose "Published $($publication.Snapshot) $Archive as $($publication.TargetName) at $($publication.Portal)"
$address, $port = $publication.Portal -split ':(?=\d+$)'
try {
    switch ($Initiator) {
        'Windows' {
            # Windows: the Microsoft iSCSI initiator service must run (Start-Service MSiSCSI).
            $portal = New-IscsiTargetPortal -TargetPortalAddress $address -TargetPortalPortNumber $port
            try {
                $session = Connect-IscsiTarget -NodeAddress $publication.TargetName -TargetPortalAddress $address -TargetPortalPortNumber $port
                try {
                    $disk = Get-IscsiSession -SessionIdentifier $session.SessionIdentifier | Get-Disk
                    Set-Disk -Number $disk.Number -IsOffline $false
                    $part = Get-Partition -DiskNumber $disk.Number | Where-Object PartitionNumber -EQ ([math]::Max($Partition, 1))
                    if (-not $part.DriveLetter) { $part | Add-PartitionAccessPath -AssignDriveLetter; $part = Get-Partition -DiskNumber $disk.Number -PartitionNumber $part.PartitionNumber }
                    $inGuest = $Path -replace '^[A-Za-z]:\\', ''
                    Copy-Item -LiteralPath "$($part.DriveLetter):\$inGuest" -Destination $target
                    Set-Disk -Number $disk.Number -IsOffline $true
                }
                finally { Disconnect-IscsiTarget -NodeAddress $publication.TargetName -Confirm:$false }
            }
            finally { Remove-IscsiTargetPortal -TargetPortalAddress $address -TargetPortalPortNumber $port -Confirm:$false }
        }
        'Iscsiadm' {
            & iscsiadm -m discovery -t sendtargets -p "$($address):$port" | Out-Null
            & iscsiadm -m node -T $publication.TargetName -p "$($address):$port" --login | Out-Null
            if ($LASTEXITCODE -ne 0) { throw "iscsiadm could not log in to $($publication.TargetName)" }
            $mount = Join-Path ([IO.Path]::GetTempPath()) "pbs-file-$([guid]::NewGuid().ToString('N'))"
            try {
                $device = "/dev/disk/by-path/ip-$($address):$port-iscsi-$($publication.TargetName)-lun-0"
                for ($i = 0; $i -lt 50 -and -not (Test-Path $device); $i++) { Start-Sleep -Milliseconds 200 }
                if ($Partition -gt 0) { $device += "-part$Partition" }
                $null = New-Item -ItemType Directory -Path $mount
                & mount -o ro $device $mount
                if ($LASTEXITCODE -ne 0) { throw "cannot mount $device" }
                try { Copy-Item -LiteralPath (Join-Path $mount $Path.TrimStart('/')) -Destination $target }
                finally { & umount $mount }
            }
            finally {
                & iscsiadm -m node -T $publication.TargetName -p "$($address):$port" --logout | Out-Null
                Remove-Item -LiteralPath $mount -Force -ErrorAction SilentlyContinue
            }
        }
        'Qemu' {
            $url = "iscsi://$($publication.Portal)/$($publication.TargetName)/0"
            $offset = 0; $size = $publication.Luns[0].Size
            if ($Partition -gt 0) {
                # The partition table, from the disk's first 64 KiB (MBR, or GPT behind a protective MBR).
                $head = [IO.Path]::GetTempFileName()
                try {
                    & qemu-img dd -f raw -O raw bs=64k count=1 "if=$url" "of=$head" 2>$null
                    if ($LASTEXITCODE -ne 0) { throw "qemu-img could not read the partition table of $url" }
                    $offset, $size = Get-PartitionRange ([IO.File]::ReadAllBytes($head)) $Partition
                }
                finally { Remove-Item -LiteralPath $head -Force }
            }
            # Only the partition is read through iSCSI (a raw driver with offset and size over the iSCSI LUN).
            $image = Join-Path ([IO.Path]::GetTempPath()) "pbs-part-$([guid]::NewGuid().ToString('N')).img"
            try {
                $opts = "driver=raw,offset=$offset,size=$size,file.driver=iscsi,file.transport=tcp,file.portal=$($publication.Portal),file.target=$($publication.TargetName),file.lun=0"
                & qemu-img convert --image-opts $opts -O raw $image 2>$null
                if ($LASTEXITCODE -ne 0) { throw "qemu-img could not read partition $Partition of $url" }
                & debugfs -R "dump -p $($Path -replace '\\', '/') $target" $image 2>$null
                if (-not (Test-Path -LiteralPath $target)) { throw "'$Path' was not found on partition $Partition (debugfs reads ext2/3/4 file systems)" }
            }
            finally { Remove-Item -LiteralPath $image -Force -ErrorAction SilentlyContinue }
        }
    }
}
finally {
    # The overlay (whatever the file system wrote) goes with the publication; the backup is unchanged.
    $publication | Unpublish-PbsImage -Confirm:$false
}
Get-Item -LiteralPath $target
