# Placeholder demo (to be replaced): loads the module and lists its cmdlets.
Import-Module (Join-Path $PSScriptRoot ../PbsRestore.psd1)
Get-Command -Module PbsRestore
