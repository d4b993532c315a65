# Helpers for the Pester tests over the wire: start our PBS-compatible server (src/PbsRestore.Server, built
# by build.ps1) as a child process on a free loopback port, read the one JSON line it prints (url and
# certificate fingerprint), stop it again; and save/restore the PBS_* variables and $global:DefaultPbsServer
# that the tests change.
Set-StrictMode -Version 3.0

$script:ServerDll = [System.IO.Path]::GetFullPath((Join-Path $PSScriptRoot '../../src/PbsRestore.Server/bin/Release/net10.0/PbsRestore.Server.dll'))
$script:PbsVariables = @('PBS_REPOSITORY', 'PBS_PASSWORD', 'PBS_FINGERPRINT', 'PBS_ENCRYPTION_PASSWORD')

function Get-DotnetPath {
    # The dotnet host: the one running this PowerShell when started as 'dotnet pwsh', else dotnet on PATH.
    $self = [System.Environment]::ProcessPath
    if ($self -and [System.IO.Path]::GetFileNameWithoutExtension($self) -eq 'dotnet') { return $self }
    $cmd = @(Get-Command dotnet -CommandType Application -ErrorAction SilentlyContinue)
    if ($cmd.Count -eq 0) { throw 'dotnet not found (needed to run PbsRestore.Server)' }
    $cmd[0].Source
}

function Start-TestServer {
    # Starts PbsRestore.Server serving Datastore (hashtable name -> folder) with the given tokens
    # ('user@realm!id:secret') and users ('user@realm:password'); stdout and stderr go to files in LogFolder.
    # Returns url, host, port, fingerprint, process and the log file paths once the server listens.
    param(
        [Parameter(Mandatory)] [System.Collections.IDictionary] $Datastore,
        [string[]] $Token = @(),
        [string[]] $User = @(),
        [int] $TicketLifetime = 0,
        # More server flags, e.g. @('--bandwidth-mbit', '40') or fault injection.
        [string[]] $ExtraArgument = @(),
        [Parameter(Mandatory)] [string] $LogFolder,
        [int] $TimeoutSeconds = 60
    )
    if (-not (Test-Path -LiteralPath $script:ServerDll -PathType Leaf)) {
        throw "PbsRestore.Server is not built ($script:ServerDll): run 'dotnet pwsh ./build.ps1 Build'"
    }
    [void][System.IO.Directory]::CreateDirectory($LogFolder)
    $tag = [guid]::NewGuid().ToString('N').Substring(0, 8)
    $stdout = Join-Path $LogFolder "server-$tag.stdout.txt"
    $stderr = Join-Path $LogFolder "server-$tag.stderr.txt"

    $psi = [System.Diagnostics.ProcessStartInfo]::new((Get-DotnetPath))
    $psi.ArgumentList.Add($script:ServerDll)
    foreach ($name in $Datastore.Keys) { $psi.ArgumentList.Add('--datastore'); $psi.ArgumentList.Add("$name=$($Datastore[$name])") }
    $psi.ArgumentList.Add('--listen'); $psi.ArgumentList.Add('127.0.0.1:0')
    foreach ($t in $Token) { $psi.ArgumentList.Add('--token'); $psi.ArgumentList.Add($t) }
    foreach ($u in $User) { $psi.ArgumentList.Add('--user'); $psi.ArgumentList.Add($u) }
    if ($TicketLifetime -gt 0) { $psi.ArgumentList.Add('--ticket-lifetime'); $psi.ArgumentList.Add([string]$TicketLifetime) }
    foreach ($a in $ExtraArgument) { $psi.ArgumentList.Add($a) }
    $psi.UseShellExecute = $false
    $psi.RedirectStandardOutput = $true
    $psi.RedirectStandardError = $true
    $psi.RedirectStandardInput = $true

    $process = [System.Diagnostics.Process]::new()
    $process.StartInfo = $psi
    [void]$process.Start()
    # Copy both streams to files in the background (no PowerShell code runs on other threads).
    $outFile = [System.IO.File]::Open($stdout, 'Create', 'Write', 'ReadWrite')
    $errFile = [System.IO.File]::Open($stderr, 'Create', 'Write', 'ReadWrite')
    $outCopy = $process.StandardOutput.BaseStream.CopyToAsync($outFile)
    $errCopy = $process.StandardError.BaseStream.CopyToAsync($errFile)

    $deadline = [DateTime]::UtcNow.AddSeconds($TimeoutSeconds)
    $line = $null
    while ($null -eq $line) {
        $outFile.Flush()
        $text = [System.IO.File]::ReadAllText($stdout)
        $nl = $text.IndexOf("`n")
        if ($nl -ge 0) { $line = $text.Substring(0, $nl).Trim(); break }
        if ($process.HasExited) {
            Start-Sleep -Milliseconds 200
            throw "PbsRestore.Server exited with code $($process.ExitCode) before listening: $([System.IO.File]::ReadAllText($stderr))"
        }
        if ([DateTime]::UtcNow -gt $deadline) {
            try { $process.Kill($true) } catch { }
            throw "PbsRestore.Server did not print its address within $TimeoutSeconds s: $([System.IO.File]::ReadAllText($stderr))"
        }
        Start-Sleep -Milliseconds 50
    }
    $info = $line | ConvertFrom-Json
    $uri = [uri]$info.url
    [pscustomobject]@{
        Url         = $info.url
        Host        = $uri.Host
        Port        = $uri.Port
        Fingerprint = $info.fingerprint
        Process     = $process
        StdoutLog   = $stdout
        StderrLog   = $stderr
        Files       = @($outFile, $errFile)
        Copies      = @($outCopy, $errCopy)
    }
}

function Stop-TestServer {
    # Stops a server from Start-TestServer (by its process id) and closes its log files.
    param([Parameter(Mandatory)] [AllowNull()] $Server)
    if ($null -eq $Server) { return }
    $p = $Server.Process
    if (-not $p.HasExited) {
        Stop-Process -Id $p.Id -ErrorAction SilentlyContinue
        if (-not $p.WaitForExit(15000)) { $p.Kill($true); [void]$p.WaitForExit(5000) }
    }
    foreach ($c in $Server.Copies) { try { [void]$c.Wait(5000) } catch { } }
    foreach ($f in $Server.Files) { try { $f.Flush(); $f.Dispose() } catch { } }
    $p.Dispose()
}

function Get-TestServerLog {
    # Everything the server wrote to stderr so far.
    param([Parameter(Mandatory)] $Server)
    $Server.Files[1].Flush()
    $fs = [System.IO.File]::Open($Server.StderrLog, 'Open', 'Read', 'ReadWrite')
    try { [System.IO.StreamReader]::new($fs).ReadToEnd() } finally { $fs.Dispose() }
}

function Wait-TestServerLog {
    # Returns once Get-TestServerLog holds every line the server wrote before this call: sends a request the server
    # logs (unauthenticated, for a path never asked before) and waits for that line. The log is one ordered stream,
    # so what came before is in too; no guess at how long the logger's queue and the copy to the file take.
    param([Parameter(Mandatory)] $Server, [int] $TimeoutSeconds = 60)
    $marker = 'log-barrier-' + [guid]::NewGuid().ToString('N')
    $answer = Invoke-WebRequest -Uri "$($Server.Url)/api2/json/$marker" -SkipCertificateCheck -SkipHttpErrorCheck -UseBasicParsing
    if ($answer.StatusCode -ne 401) { throw "log barrier: expected 401 from the server, got $($answer.StatusCode)" }
    $deadline = [DateTime]::UtcNow.AddSeconds($TimeoutSeconds)
    while (-not (Get-TestServerLog $Server).Contains($marker)) {
        if ([DateTime]::UtcNow -gt $deadline) { throw "the server never logged $marker" }
        Start-Sleep -Milliseconds 20
    }
}

function Save-PbsEnvironment {
    # The PBS_* variables and $global:DefaultPbsServer as they are now (for Restore-PbsEnvironment).
    $saved = @{}
    foreach ($n in $script:PbsVariables) { $saved[$n] = [System.Environment]::GetEnvironmentVariable($n) }
    $saved['DefaultPbsServer'] = Get-Variable -Name DefaultPbsServer -Scope Global -ValueOnly -ErrorAction SilentlyContinue
    $saved['HadDefaultPbsServer'] = [bool](Get-Variable -Name DefaultPbsServer -Scope Global -ErrorAction SilentlyContinue)
    $saved
}

function Clear-PbsEnvironment {
    # Removes the PBS_* variables and $global:DefaultPbsServer (without disconnecting it).
    foreach ($n in $script:PbsVariables) { [System.Environment]::SetEnvironmentVariable($n, $null) }
    Remove-Variable -Name DefaultPbsServer -Scope Global -ErrorAction SilentlyContinue
}

function Restore-PbsEnvironment {
    param([Parameter(Mandatory)] [hashtable] $Saved)
    foreach ($n in $script:PbsVariables) { [System.Environment]::SetEnvironmentVariable($n, $Saved[$n]) }
    if ($Saved['HadDefaultPbsServer']) {
        Set-Variable -Name DefaultPbsServer -Scope Global -Value $Saved['DefaultPbsServer']
    } else {
        Remove-Variable -Name DefaultPbsServer -Scope Global -ErrorAction SilentlyContinue
    }
}

function New-PbsCredential {
    # A PSCredential for user@realm or user@realm!token with a plain-text secret.
    param([Parameter(Mandatory)] [string] $AuthId, [Parameter(Mandatory)] [string] $Secret)
    [System.Management.Automation.PSCredential]::new($AuthId, (ConvertTo-SecureString -String $Secret -AsPlainText -Force))
}

function Get-Errors {
    # Runs a command, returning its errors (non-terminating and terminating) instead of failing. The command runs in
    # the caller's scope, where preferences are looked up: Continue is set globally for the call, so every
    # non-terminating error is collected.
    param([Parameter(Mandatory)] [scriptblock] $Command)
    $saved = $global:ErrorActionPreference
    $global:ErrorActionPreference = 'Continue'
    try {
        $all = @(& $Command 2>&1)
    } catch {
        return @($_)
    } finally {
        $global:ErrorActionPreference = $saved
    }
    @($all | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] })
}

Export-ModuleMember -Function Start-TestServer, Stop-TestServer, Get-TestServerLog, Wait-TestServerLog, Save-PbsEnvironment, Clear-PbsEnvironment,
    Restore-PbsEnvironment, New-PbsCredential, Get-DotnetPath, Get-Errors
