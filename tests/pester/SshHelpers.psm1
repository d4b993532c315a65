# Helpers for the PowerShell-remoting-over-SSH tests: an sshd of our own on a free loopback port, with its own
# config file, host key and a client key made for the test, and a `Subsystem powershell` that runs the pinned pwsh
# (the local dotnet tool: dotnet + $PSHOME/pwsh.dll, through a small wrapper script). The machine's
# /etc/ssh/sshd_config is never read or changed (sshd -f <our config>); the sshd is stopped again by its process id.
# Debian's openssh-server is installed with apt-get when it is missing and we run as root (CI starts on a fresh
# machine); elsewhere Start-TestSshd throws and the tests skip with that reason.
Set-StrictMode -Version 3.0

function Get-SshdPath {
    foreach ($p in '/usr/sbin/sshd', '/usr/local/sbin/sshd') { if (Test-Path -LiteralPath $p -PathType Leaf) { return $p } }
    $cmd = @(Get-Command sshd -CommandType Application -ErrorAction SilentlyContinue)
    if ($cmd.Count) { return $cmd[0].Source }
    $null
}

function Install-OpenSshServer {
    # Idempotent: returns when sshd and ssh exist; installs Debian's openssh-server (and openssh-client) as root.
    if ((Get-SshdPath) -and (Get-Command ssh -CommandType Application -ErrorAction SilentlyContinue)) { return }
    if (-not $IsLinux) { throw 'sshd not found (the SSH remoting tests install it only on Linux)' }
    if ((& id -u) -ne '0') { throw 'sshd not found and not installable: not running as root' }
    if (-not (Get-Command apt-get -CommandType Application -ErrorAction SilentlyContinue)) { throw 'sshd not found and apt-get is not available' }
    # Another apt-get may hold the lock (DPkg::Lock::Timeout waits for it); an old package list needs an update.
    $apt = @('install', '-y', '--no-install-recommends', '-o', 'DPkg::Lock::Timeout=300', 'openssh-server', 'openssh-client')
    # Only the binaries are wanted, not a system sshd on port 22: containers usually forbid service starts
    # (policy-rc.d); elsewhere invoke-rc.d starts nothing for runlevel 1.
    $saved = $env:DEBIAN_FRONTEND, $env:RUNLEVEL
    $env:DEBIAN_FRONTEND = 'noninteractive'
    $env:RUNLEVEL = '1'
    try {
        & apt-get @apt *> $null
        if ($LASTEXITCODE -ne 0) {
            & apt-get update -o DPkg::Lock::Timeout=300 *> $null
            & apt-get @apt *> $null
        }
    } finally { $env:DEBIAN_FRONTEND, $env:RUNLEVEL = $saved }
    if (-not (Get-SshdPath)) { throw "apt-get install openssh-server failed (exit code $LASTEXITCODE)" }
}

function Get-FreeLoopbackPort {
    $listener = [System.Net.Sockets.TcpListener]::new([System.Net.IPAddress]::Loopback, 0)
    $listener.Start()
    try { $listener.LocalEndpoint.Port } finally { $listener.Stop() }
}

function Test-SshBanner {
    # True when something on 127.0.0.1:Port greets with an SSH banner.
    param([int] $Port)
    $client = [System.Net.Sockets.TcpClient]::new()
    try {
        if (-not $client.ConnectAsync('127.0.0.1', $Port).Wait(1000)) { return $false }
        $stream = $client.GetStream()
        $stream.ReadTimeout = 2000
        $buffer = [byte[]]::new(64)
        $n = $stream.Read($buffer, 0, $buffer.Length)
        [System.Text.Encoding]::ASCII.GetString($buffer, 0, $n).StartsWith('SSH-')
    } catch { $false } finally { $client.Dispose() }
}

function Start-TestSshd {
    # Starts `sshd -f <Folder>/sshd_config -D` on a free loopback port. Returns HostName, Port, UserName, KeyFilePath,
    # Options (for New-PSSession/Invoke-Command -Options: our own known_hosts file), Process and Log.
    param([Parameter(Mandatory)] [string] $Folder, [int] $TimeoutSeconds = 30)
    Install-OpenSshServer
    $sshd = Get-SshdPath
    $Folder = [System.IO.Path]::GetFullPath($Folder)
    [void][System.IO.Directory]::CreateDirectory($Folder)
    # sshd refuses to start without its privilege separation directory (the package's service makes it at start).
    if (-not (Test-Path -LiteralPath '/run/sshd')) { [void][System.IO.Directory]::CreateDirectory('/run/sshd') }

    $hostKey = Join-Path $Folder 'host_ed25519'
    $clientKey = Join-Path $Folder 'client_ed25519'
    foreach ($k in $hostKey, $clientKey) {
        if (-not (Test-Path -LiteralPath $k)) {
            & ssh-keygen -q -t ed25519 -N '' -C 'pbsrestore-test' -f $k *> $null
            if ($LASTEXITCODE -ne 0) { throw "ssh-keygen failed for $k" }
        }
    }
    $authorized = Join-Path $Folder 'authorized_keys'
    Copy-Item -LiteralPath "$clientKey.pub" -Destination $authorized -Force

    # The PowerShell subsystem: the pinned pwsh is dotnet running $PSHOME/pwsh.dll (no pwsh executable on PATH).
    $dotnet = [System.Environment]::ProcessPath
    if ([System.IO.Path]::GetFileNameWithoutExtension($dotnet) -ne 'dotnet') { $dotnet = (Get-Command dotnet -CommandType Application)[0].Source }
    $pwshDll = Join-Path $PSHOME 'pwsh.dll'
    $wrapper = Join-Path $Folder 'pwsh-sshs.sh'
    $quote = { param($s) "'" + ($s -replace "'", "'\''") + "'" }
    $script = @('#!/bin/sh', "exec $(& $quote $dotnet) $(& $quote $pwshDll) -sshs -NoLogo -NoProfile") -join "`n"
    [System.IO.File]::WriteAllText($wrapper, "$script`n")
    & chmod 755 $wrapper

    $user = [System.Environment]::UserName
    $log = Join-Path $Folder 'sshd.log'
    $config = Join-Path $Folder 'sshd_config'
    $process = $null
    foreach ($attempt in 1..3) {
        $port = Get-FreeLoopbackPort
        # StrictModes no: the key files sit under the world-writable temp folder, which StrictModes refuses.
        $lines = @(
            "Port $port", 'ListenAddress 127.0.0.1', "HostKey $hostKey", "PidFile $(Join-Path $Folder 'sshd.pid')",
            "AuthorizedKeysFile $authorized", 'PubkeyAuthentication yes', 'PasswordAuthentication no',
            'KbdInteractiveAuthentication no', 'PermitRootLogin prohibit-password', 'StrictModes no', 'UsePAM no',
            "AllowUsers $user", 'LogLevel VERBOSE', "Subsystem powershell $wrapper")
        [System.IO.File]::WriteAllText($config, (($lines -join "`n") + "`n"))
        $check = & $sshd -t -f $config 2>&1 | Out-String
        if ($LASTEXITCODE -ne 0) { throw "sshd -t -f $config refused the config: $check" }

        $psi = [System.Diagnostics.ProcessStartInfo]::new($sshd)
        foreach ($a in '-f', $config, '-D', '-E', $log) { $psi.ArgumentList.Add($a) }
        $psi.UseShellExecute = $false
        $process = [System.Diagnostics.Process]::Start($psi)
        $deadline = [DateTime]::UtcNow.AddSeconds($TimeoutSeconds)
        while (-not $process.HasExited -and [DateTime]::UtcNow -lt $deadline -and -not (Test-SshBanner $port)) { Start-Sleep -Milliseconds 100 }
        if (-not $process.HasExited -and (Test-SshBanner $port)) { break }
        if (-not $process.HasExited) { $process.Kill($true); [void]$process.WaitForExit(5000) }
        $process = $null
    }
    if ($null -eq $process) {
        $text = if (Test-Path -LiteralPath $log) { Get-Content -LiteralPath $log -Raw } else { '' }
        throw "sshd did not start on a loopback port: $text"
    }
    # Our own known_hosts with our host key: the client checks it strictly and never writes to ~/.ssh.
    $knownHosts = Join-Path $Folder 'known_hosts'
    $pub = (Get-Content -LiteralPath "$hostKey.pub" -Raw).Trim() -split ' '
    # Both names, so that two "hosts" can be 127.0.0.1 and localhost.
    [System.IO.File]::WriteAllText($knownHosts, "[127.0.0.1]:$port $($pub[0]) $($pub[1])`n[localhost]:$port $($pub[0]) $($pub[1])`n")
    [pscustomobject]@{
        HostName    = '127.0.0.1'
        Port        = $port
        UserName    = $user
        KeyFilePath = $clientKey
        Options     = @{ UserKnownHostsFile = $knownHosts; StrictHostKeyChecking = 'yes'; BatchMode = 'yes'; IdentitiesOnly = 'yes' }
        Process     = $process
        Log         = $log
        Folder      = $Folder
    }
}

function Stop-TestSshd {
    # Stops the sshd from Start-TestSshd (by its process id, with the session processes it started).
    param([AllowNull()] $Sshd)
    if ($null -eq $Sshd -or $null -eq $Sshd.Process) { return }
    $p = $Sshd.Process
    if (-not $p.HasExited) { $p.Kill($true); [void]$p.WaitForExit(10000) }
    $p.Dispose()
}

function New-TestSshSession {
    # A PSSession over SSH to the test sshd.
    param([Parameter(Mandatory)] $Sshd, [string] $Name)
    $p = @{ HostName = $Sshd.HostName; Port = $Sshd.Port; UserName = $Sshd.UserName; KeyFilePath = $Sshd.KeyFilePath; Options = $Sshd.Options }
    if ($Name) { $p.Name = $Name }
    New-PSSession @p -ErrorAction Stop
}

Export-ModuleMember -Function Install-OpenSshServer, Start-TestSshd, Stop-TestSshd, New-TestSshSession, Get-SshdPath
