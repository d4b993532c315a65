<#
.SYNOPSIS
    Restores a list of VMs onto several hosts over PowerShell remoting, spread by size so the hosts finish
    together, with a shared results table and a retry with -Resume for each failure.

.DESCRIPTION
    A site-wide recovery: many VMs, several target hosts (Hyper-V hosts, file servers), each restoring straight
    from the PBS server onto its own disks. This script runs on an admin machine:

    1. It lists the VMs' snapshots from the server here (the VMs come from -VmId, -CsvPath or snapshot objects
       piped from Get-PbsSnapshot) and takes each one's size (its archives that match -Archive).
    2. It assigns them to the hosts largest first, each to the host with the fewest bytes so far (greedy
       longest-processing-time), so the hosts' shares, and so their finishing times, come out close.
       -WhatIf prints this plan and stops.
    3. It opens -ThrottlePerHost sessions to each host (SSH with -HostName, the default; WinRM with -UseWinRM)
       and keeps each busy: every VM is one Restore-PbsImage -DestinationFolder on its host, as a job. The
       remote restores' progress is shown here, one bar per session under one bar per host.
    4. A VM that fails is run again on the same host with -Resume (up to -MaxAttempts runs in all), which keeps
       what the failed run finished and fetches only the rest.
    5. It prints one results table (VM, Host, Archives, Bytes, Seconds, MBps, Attempts, Status) and a summary
       per host and in total (wall-clock time and aggregate MB/s), and writes an error naming the VMs that
       failed.

    Secrets: the PBS credential (-Credential, a PSCredential) and the key password (-KeyPassword, a SecureString)
    go to the hosts as objects through $using:, never as text in a script block. The hosts need PbsRestore
    (-ModulePath) and must reach the PBS server; the key file path (-Keyfile) is a path on the hosts. This
    machine needs PbsRestore too (for the listing and the views) and must reach the server.

    How many hosts a server can feed: see 'SIZING A RECOVERY' in Get-Help about_PbsRestore.

.PARAMETER VmId
    The VMs, as ids (100, 'vm/100') or 'ct/200'; the newest snapshot of each is restored.

.PARAMETER CsvPath
    A CSV file with a VM column (an id or type/id) and an optional Namespace column.

.PARAMETER Snapshot
    Snapshot objects (from Get-PbsSnapshot, piped): exactly these snapshots are restored.

.PARAMETER HostName
    The target hosts. The same name may appear twice (two "hosts" on one machine).

.PARAMETER UserName
    The user on the hosts (SSH; WinRM uses -RemotingCredential).

.PARAMETER KeyFilePath
    The SSH private key for the hosts.

.PARAMETER Port
    The SSH (or WinRM) port of the hosts.

.PARAMETER SshOption
    Extra SSH options, as for New-PSSession -Options (for example @{ UserKnownHostsFile = '...' }).

.PARAMETER UseWinRM
    Connect with WinRM (New-PSSession -ComputerName) instead of SSH. Not exercised by the project's tests.

.PARAMETER RemotingCredential
    The credential for WinRM sessions.

.PARAMETER Repository
    The PBS repository, for example 'restore@pbs!dr@pbs.example.com:store1'.

.PARAMETER Fingerprint
    The server certificate's SHA-256 fingerprint.

.PARAMETER Credential
    The PBS user or API token and its secret.

.PARAMETER Namespace
    The namespace of the VMs (-VmId; a CSV row's Namespace wins).

.PARAMETER Destination
    The folder on every host that receives one subfolder per snapshot.

.PARAMETER Archive
    Which archives to restore, a wildcard (default: all of a snapshot's archives).

.PARAMETER Keyfile
    The encryption key file, as a path on the hosts.

.PARAMETER KeyPassword
    The key file's password.

.PARAMETER ThrottlePerHost
    Restores at the same time on each host (default 2): one session per restore.

.PARAMETER MaxAttempts
    Runs per VM, the first included (default 2: one retry with -Resume).

.PARAMETER Connections
    Reader sessions per restore (default: the module's).

.PARAMETER ModulePath
    What the hosts import: a module name or a path to PbsRestore.psd1 on the hosts (default 'PbsRestore').

.PARAMETER Force
    Replace files that exist on the hosts (first attempt only).

.PARAMETER PassThru
    Output the results rows (and the plan with -WhatIf) as objects: VM, Host, Snapshot, Archives, Bytes, Seconds,
    MBps, Attempts, Status, ErrorId, Error, Results (the hosts' RestoreResult objects, deserialized), Started and
    Finished (UTC, the last attempt).

.PARAMETER WhatIf
    Print the plan (which VM goes to which host, each host's share) and restore nothing.

.PARAMETER Confirm
    Ask before starting the restores of each host.

.EXAMPLE
    .\Invoke-RecoveryAcrossHosts.ps1 -VmId 100, 101, 102, 103, 104 -HostName hv01, hv02 -UserName admin `
        -Repository 'restore@pbs!dr@pbs01:store1' -Fingerprint '64:d3:...:f2' -Credential $cred -Destination E:\restore -WhatIf

    Prints which VM goes to which host, and each host's share in GiB, without restoring.

.EXAMPLE
    Get-PbsSnapshot -Connection $c -Namespace prod -Latest |
        .\Invoke-RecoveryAcrossHosts.ps1 -HostName hv01, hv02, hv03 -UserName admin -KeyFilePath ~/.ssh/id_ed25519 `
            -Repository 'restore@pbs!dr@pbs01:store1' -Fingerprint '64:d3:...:f2' -Credential $cred `
            -Destination E:\restore -ThrottlePerHost 3 -Keyfile C:\keys\pbs.key -KeyPassword $keyPassword -PassThru |
        Export-Csv .\recovery.csv

    Restores the newest backup of every group in namespace prod onto three hosts, three VMs at a time on each.
#>
#Requires -Version 7.4
[CmdletBinding(SupportsShouldProcess, DefaultParameterSetName = 'Names')]
param(
    [Parameter(Mandatory, ParameterSetName = 'Names', Position = 0)] [string[]] $VmId,
    [Parameter(Mandatory, ParameterSetName = 'Csv')] [string] $CsvPath,
    [Parameter(Mandatory, ParameterSetName = 'Snapshots', ValueFromPipeline)] [object[]] $Snapshot,
    [Parameter(Mandatory)] [string[]] $HostName,
    [string] $UserName,
    [string] $KeyFilePath,
    [ValidateRange(1, 65535)] [int] $Port,
    [hashtable] $SshOption,
    [switch] $UseWinRM,
    [pscredential] $RemotingCredential,
    [Parameter(Mandatory)] [string] $Repository,
    [string] $Fingerprint,
    [pscredential] $Credential,
    [string] $Namespace,
    [Parameter(Mandatory)] [string] $Destination,
    [string] $Archive,
    [string] $Keyfile,
    [securestring] $KeyPassword,
    [ValidateRange(1, 32)] [int] $ThrottlePerHost = 2,
    [ValidateRange(1, 10)] [int] $MaxAttempts = 2,
    [ValidateRange(1, 16)] [int] $Connections,
    [string] $ModulePath = 'PbsRestore',
    [switch] $Force,
    [switch] $PassThru
)
begin {
    $callerErrorAction = $ErrorActionPreference
    $ErrorActionPreference = 'Stop'
    $piped = [System.Collections.Generic.List[object]]::new()
}
process {
    foreach ($s in @($Snapshot)) { if ($null -ne $s) { $piped.Add($s) } }
}
end {
    if (-not (Get-Module PbsRestore)) { Import-Module PbsRestore }

    # --- 1. the VMs, their snapshots and sizes (listed here) -------------------------------------------------
    $connect = @{ Repository = $Repository; NotDefault = $true }
    if ($Fingerprint) { $connect.Fingerprint = $Fingerprint }
    if ($Credential) { $connect.Credential = $Credential }
    $wanted = switch ($PSCmdlet.ParameterSetName) {
        'Names' { foreach ($v in $VmId) { [pscustomobject]@{ VM = $v; Namespace = $Namespace } } }
        'Csv' {
            foreach ($row in Import-Csv -LiteralPath $CsvPath) {
                $vm = if ($row.PSObject.Properties['VM']) { $row.VM } elseif ($row.PSObject.Properties['VmId']) { $row.VmId } else { throw "$CsvPath needs a VM column" }
                $ns = if ($row.PSObject.Properties['Namespace'] -and $row.Namespace) { $row.Namespace } else { $Namespace }
                [pscustomobject]@{ VM = "$vm".Trim(); Namespace = $ns }
            }
        }
        default { @() }
    }
    $snapshots = [System.Collections.Generic.List[object]]::new()
    $unresolved = [System.Collections.Generic.List[object]]::new()
    if ($PSCmdlet.ParameterSetName -eq 'Snapshots') {
        foreach ($s in $piped) { $snapshots.Add($s) }
    } else {
        $connection = Connect-PbsServer @connect
        try {
            foreach ($w in $wanted) {
                $type, $id = if ($w.VM -match '^(vm|ct|host)/(.+)$') { $Matches[1], $Matches[2] } else { 'vm', $w.VM }
                $list = @{ Connection = $connection; BackupType = $type; BackupId = $id; Latest = $true; MaxDepth = 0 }
                if ($w.Namespace) { $list.Namespace = $w.Namespace }
                $found = @(Get-PbsSnapshot @list -ErrorAction SilentlyContinue)
                if ($found.Count -eq 0) { $unresolved.Add([pscustomobject]@{ VM = "$type/$id"; Error = "no backup of $type/$id found" }) }
                else { $snapshots.Add($found[0]) }
            }
        } finally { Disconnect-PbsServer -Connection $connection }
    }
    $vms = foreach ($s in $snapshots) {
        $files = @($s.Files | Where-Object { -not $Archive -or $_.ArchiveName -like $Archive })
        [pscustomobject]@{
            VM        = if ($s.Namespace) { "$($s.Namespace)/$($s.BackupType)/$($s.BackupId)" } else { "$($s.BackupType)/$($s.BackupId)" }
            Snapshot  = $s.Snapshot
            Namespace = $s.Namespace
            Bytes     = [long](($files | Measure-Object Size -Sum).Sum)
        }
    }
    $vms = @($vms)

    # --- 2. the plan: largest first, each onto the least-loaded host ---------------------------------------
    $hosts = for ($i = 0; $i -lt $HostName.Count; $i++) {
        $h = $HostName[$i]
        $label = if (@($HostName | Where-Object { $_ -eq $h }).Count -gt 1) { "$h#$(@($HostName[0..$i] | Where-Object { $_ -eq $h }).Count)" } else { $h }
        [pscustomobject]@{ Index = $i; Name = $h; Label = $label; Bytes = [long]0; Queue = [System.Collections.Generic.List[object]]::new() }
    }
    $hosts = @($hosts)
    foreach ($vm in ($vms | Sort-Object -Property @{ Expression = 'Bytes'; Descending = $true }, VM)) {
        $target = $hosts | Sort-Object Bytes, Index | Select-Object -First 1
        $target.Queue.Add($vm)
        $target.Bytes += $vm.Bytes
    }
    $total = [long](($vms | Measure-Object Bytes -Sum).Sum)
    $plan = foreach ($h in $hosts) {
        foreach ($vm in $h.Queue) { [pscustomobject]@{ Host = $h.Label; VM = $vm.VM; Snapshot = $vm.Snapshot; GiB = [math]::Round($vm.Bytes / 1GB, 2); Bytes = $vm.Bytes } }
    }
    $plan = @($plan)
    Write-Host "Plan: $($vms.Count) VM(s), $([math]::Round($total / 1GB, 2)) GiB onto $($hosts.Count) host(s), $ThrottlePerHost restore(s) at a time on each:"
    Write-Host ($plan | Format-Table Host, VM, Snapshot, GiB -AutoSize | Out-String -Width 200).TrimEnd()
    Write-Host ($hosts | Format-Table @{ n = 'Host'; e = { $_.Label } }, @{ n = 'VMs'; e = { $_.Queue.Count } },
            @{ n = 'GiB'; e = { [math]::Round($_.Bytes / 1GB, 2) } },
            @{ n = 'Share'; e = { if ($total) { '{0:P0}' -f ($_.Bytes / $total) } else { '-' } } } -AutoSize | Out-String).TrimEnd()
    foreach ($u in $unresolved) { Write-Warning "$($u.VM): $($u.Error)" }

    $go = @($hosts | Where-Object { $_.Queue.Count -gt 0 -and $PSCmdlet.ShouldProcess($_.Label, "Restore $($_.Queue.Count) VM(s), $([math]::Round($_.Bytes / 1GB, 2)) GiB, into $Destination") })
    if ($WhatIfPreference -or $go.Count -eq 0) {
        if ($PassThru) { $plan }
        return
    }

    # --- 3. sessions, one per restore slot, and the remote restore -----------------------------------------
    $slots = [System.Collections.Generic.List[object]]::new()
    $results = [System.Collections.Generic.List[object]]::new()
    $setup = [Diagnostics.Stopwatch]::StartNew()
    $clock = [Diagnostics.Stopwatch]::new()   # the restores, from when every session is open
    try {
        foreach ($h in $go) {
            $n = [math]::Min($ThrottlePerHost, $h.Queue.Count)
            for ($k = 1; $k -le $n; $k++) {
                $session = if ($UseWinRM) {
                    $p = @{ ComputerName = $h.Name }
                    if ($RemotingCredential) { $p.Credential = $RemotingCredential }
                    if ($Port) { $p.Port = $Port }
                    New-PSSession @p
                } else {
                    $p = @{ HostName = $h.Name }
                    if ($UserName) { $p.UserName = $UserName }
                    if ($KeyFilePath) { $p.KeyFilePath = $KeyFilePath }
                    if ($Port) { $p.Port = $Port }
                    if ($SshOption) { $p.Options = $SshOption }
                    New-PSSession @p
                }
                # The module is loaded once per session, now: a host without it fails here, before any restore starts.
                Invoke-Command -Session $session -ErrorAction Stop -ScriptBlock { Import-Module $using:ModulePath }
                $slots.Add([pscustomobject]@{ Id = 100 + $slots.Count; Host = $h; Session = $session; Job = $null; Vm = $null; Attempt = 0; Seen = 0; Started = $null; StartedAt = $null })
            }
        }
        $setup.Stop()
        Write-Host ("{0} session(s) to {1} host(s) opened in {2:N1} s." -f $slots.Count, $go.Count, $setup.Elapsed.TotalSeconds)
        $clock.Start()
        $retries = @{}
        foreach ($h in $go) { $retries[$h.Label] = [System.Collections.Generic.Queue[object]]::new() }
        $attempts = @{}
        $earlier = @{}   # results of archives a failed attempt finished (kept by -Resume, not output again)

        while ($true) {
            # Fill free slots: retries of this host first, then its queue (largest first).
            foreach ($slot in $slots) {
                if ($slot.Job) { continue }
                $h = $slot.Host
                $resume = $false
                if ($retries[$h.Label].Count) { $vm = $retries[$h.Label].Dequeue(); $resume = $true }
                elseif ($h.Queue.Count) { $vm = $h.Queue[0]; $h.Queue.RemoveAt(0) }
                else { continue }
                $attempts[$vm.VM] = 1 + [int]$attempts[$vm.VM]
                # Everything the host needs, in one object: the secrets stay PSCredential/SecureString objects.
                $task = [pscustomobject]@{
                    ModulePath = $ModulePath; Repository = $Repository; Fingerprint = $Fingerprint; Credential = $Credential
                    Snapshot = $vm.Snapshot; Namespace = $vm.Namespace; Destination = $Destination; Archive = $Archive
                    Keyfile = $Keyfile; KeyPassword = $KeyPassword; Connections = $Connections; Resume = $resume
                    Force = [bool]$Force -and -not $resume
                }
                $slot.Job = Invoke-Command -Session $slot.Session -AsJob -ScriptBlock {
                    $t = $using:task
                    $ErrorActionPreference = 'Stop'
                    $r = @{ Repository = $t.Repository; Snapshot = $t.Snapshot; DestinationFolder = $t.Destination }
                    foreach ($name in 'Fingerprint', 'Credential', 'Namespace', 'Archive', 'Keyfile', 'KeyPassword', 'Connections') {
                        if ($t.$name) { $r[$name] = $t.$name }
                    }
                    if ($t.Resume) { $r.Resume = $true }
                    if ($t.Force) { $r.Force = $true }
                    Restore-PbsImage @r
                }
                $slot.Vm = $vm; $slot.Attempt = $attempts[$vm.VM]; $slot.Seen = 0; $slot.Started = $clock.Elapsed; $slot.StartedAt = [DateTime]::UtcNow
            }
            $running = @($slots | Where-Object Job)
            if ($running.Count -eq 0) { break }
            $null = Wait-Job -Job $running.Job -Any -Timeout 1

            # Show the hosts' progress here: one bar per host, one per session below it.
            foreach ($slot in $running) {
                $records = $slot.Job.ChildJobs[0].Progress
                for (; $slot.Seen -lt $records.Count; $slot.Seen++) {
                    $rec = $records[$slot.Seen]
                    $bar = @{ Id = $slot.Id; ParentId = $slot.Host.Index + 1; Activity = "$($slot.Host.Label): $($slot.Vm.VM)"; Status = "$($rec.Activity): $($rec.StatusDescription)" }
                    if ($rec.PercentComplete -ge 0) { $bar.PercentComplete = $rec.PercentComplete }
                    Write-Progress @bar
                }
            }
            foreach ($h in $go) {
                $busy = @($slots | Where-Object { $_.Host -eq $h -and $_.Job }).Count
                $finished = @($results | Where-Object Host -EQ $h.Label).Count
                Write-Progress -Id ($h.Index + 1) -Activity "Host $($h.Label)" -Status "$finished VM(s) done, $busy running, $($h.Queue.Count + $retries[$h.Label].Count) waiting"
            }

            # Collect what finished; a failure goes back to its host with -Resume while attempts are left.
            foreach ($slot in @($running | Where-Object { $_.Job.State -in 'Completed', 'Failed', 'Stopped' })) {
                $errors = $null
                $out = @(Receive-Job -Job $slot.Job -ErrorVariable errors -ErrorAction SilentlyContinue)
                Remove-Job -Job $slot.Job -Force
                $seconds = ($clock.Elapsed - $slot.Started).TotalSeconds
                $vm = $slot.Vm
                $slot.Job = $null
                Write-Progress -Id $slot.Id -ParentId ($slot.Host.Index + 1) -Activity "$($slot.Host.Label): $($vm.VM)" -Completed
                $failure = @($errors) | Select-Object -First 1
                if ($earlier[$vm.VM]) { $out = @($earlier[$vm.VM]) + $out }
                if ($failure -and $slot.Attempt -lt $MaxAttempts) {
                    $earlier[$vm.VM] = $out
                    Write-Warning "$($vm.VM) failed on $($slot.Host.Label) (attempt $($slot.Attempt)): $($failure.Exception.Message) - retrying there with -Resume"
                    $retries[$slot.Host.Label].Enqueue($vm)
                    continue
                }
                $bytes = [long](($out | Measure-Object LogicalBytes -Sum).Sum)
                $results.Add([pscustomobject]@{
                        VM = $vm.VM; Host = $slot.Host.Label; Snapshot = $vm.Snapshot; Archives = $out.Count; Bytes = $bytes
                        Seconds = [math]::Round($seconds, 2); MBps = if ($seconds -gt 0) { [math]::Round($bytes / 1MB / $seconds, 1) } else { 0 }
                        Attempts = $slot.Attempt; Status = if ($failure) { 'Failed' } else { 'OK' }
                        ErrorId = if ($failure) { $failure.FullyQualifiedErrorId } else { $null }
                        Error = if ($failure) { $failure.Exception.Message } else { $null }
                        Results = $out; Started = $slot.StartedAt; Finished = [DateTime]::UtcNow
                    })
            }
        }
    } finally {
        foreach ($slot in $slots) {
            if ($slot.Job) { Remove-Job -Job $slot.Job -Force }
            Remove-PSSession -Session $slot.Session
        }
        foreach ($h in $hosts) { Write-Progress -Id ($h.Index + 1) -Activity "Host $($h.Label)" -Completed }
    }
    $clock.Stop()
    foreach ($u in $unresolved) {
        $results.Add([pscustomobject]@{ VM = $u.VM; Host = $null; Snapshot = $null; Archives = 0; Bytes = [long]0; Seconds = 0; MBps = 0
                Attempts = 0; Status = 'Failed'; ErrorId = 'NotFound'; Error = $u.Error; Results = @(); Started = $null; Finished = $null })
    }

    # --- 5. the results table and the summary ---------------------------------------------------------------
    $rows = @($results | Sort-Object Host, VM)
    Write-Host ($rows | Format-Table VM, Host, Archives, @{ n = 'MiB'; e = { [math]::Round($_.Bytes / 1MB, 1) } }, Seconds, MBps, Attempts, Status, Error -AutoSize | Out-String -Width 240).TrimEnd()
    $wall = $clock.Elapsed.TotalSeconds
    $summary = foreach ($h in $hosts) {
        $mine = @($rows | Where-Object Host -EQ $h.Label)
        $ok = @($mine | Where-Object Status -EQ 'OK')
        $bytes = [long](($ok | Measure-Object Bytes -Sum).Sum)
        $busy = ($mine | Measure-Object Seconds -Maximum).Maximum
        [pscustomobject]@{ Host = $h.Label; VMs = $mine.Count; OK = $ok.Count; MiB = [math]::Round($bytes / 1MB, 1); LastSeconds = $busy }
    }
    $okAll = @($rows | Where-Object Status -EQ 'OK')
    $totalBytes = [long](($okAll | Measure-Object Bytes -Sum).Sum)
    Write-Host ($summary | Format-Table -AutoSize | Out-String).TrimEnd()
    Write-Host ("Total: {0} of {1} VM(s) restored, {2:N1} MiB in {3:N1} s wall-clock (sessions open) = {4:N1} MB/s over {5} host(s)." -f
        $okAll.Count, $rows.Count, ($totalBytes / 1MB), $wall, ($(if ($wall -gt 0) { $totalBytes / 1MB / $wall } else { 0 })), $go.Count)
    Write-Host '(MB = 2^20 bytes; a VM''s Seconds: its last attempt, from its start on a session to its end.)'
    if ($PassThru) { $rows }
    $failed = @($rows | Where-Object Status -NE 'OK')
    $ErrorActionPreference = $callerErrorAction
    if ($failed.Count) { Write-Error "$($failed.Count) VM(s) failed: $(($failed | ForEach-Object { "$($_.VM) on $($_.Host): $($_.Error)" }) -join '; ')" }
}
