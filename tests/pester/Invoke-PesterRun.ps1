# Runs every tests/pester/*.Tests.ps1 with the pinned Pester. build.ps1 starts this in a CHILD
# pwsh process, so the module DLL that the tests import is never loaded (and locked) by the
# build process. Writes the results as NUnit XML and the counts as JSON for build.ps1 to sum.
param(
    [Parameter(Mandatory)] [string] $PesterManifest,
    [Parameter(Mandatory)] [string] $ResultsXml,
    [Parameter(Mandatory)] [string] $SummaryJson
)
$ErrorActionPreference = 'Stop'

Import-Module $PesterManifest -Force

$config = New-PesterConfiguration
$config.Run.Path = @(Get-ChildItem -Path $PSScriptRoot -Filter '*.Tests.ps1' -File | ForEach-Object FullName)
$config.Run.PassThru = $true
$config.Run.Exit = $false
$config.TestResult.Enabled = $true
$config.TestResult.OutputFormat = 'NUnitXml'
$config.TestResult.OutputPath = $ResultsXml
$config.Output.Verbosity = 'Detailed'

$result = Invoke-Pester -Configuration $config

# A file that fails to load or a failing BeforeAll counts as a failure too, not only failed tests.
$failed = $result.FailedCount + $result.FailedBlocksCount + $result.FailedContainersCount
# Names of what failed, so build.ps1 can repeat them at the very end of a long CI log.
$failures = @(
    $result.Failed | ForEach-Object { "$($_.ExpandedPath): $(($_.ErrorRecord | Select-Object -First 1) -replace '\s+', ' ')" }
    $result.FailedBlocks | ForEach-Object { "$($_.Path -join ' '): block failed" }
    $result.FailedContainers | ForEach-Object { "$($_.Item): file failed to run" }
)
# The genuine-server group (files named *Upstream*), counted apart so build.ps1 can say whether it ran.
$upstream = @($result.Tests | Where-Object { $_.ScriptBlock.File -like '*Upstream*' })
[ordered]@{
    upstream = [ordered]@{
        passed  = @($upstream | Where-Object Result -EQ 'Passed').Count
        failed  = @($upstream | Where-Object Result -EQ 'Failed').Count
        skipped = @($upstream | Where-Object Result -In 'Skipped', 'NotRun').Count
    }
    passed   = $result.PassedCount
    failed   = $failed
    skipped  = $result.SkippedCount
    notRun   = $result.NotRunCount
    failures = $failures
} | ConvertTo-Json | Set-Content -Path $SummaryJson -Encoding utf8
exit 0
