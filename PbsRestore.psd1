@{
    # The binary module is built by `dotnet pwsh ./build.ps1 Build` into module/bin/.
    RootModule           = 'module/bin/PbsRestore.PowerShell.dll'
    ModuleVersion        = '0.1.0'
    GUID                 = 'ef8a60d9-db6a-4615-b4fa-63a0b560ac21'
    Author               = 'PbsRestore contributors'
    Copyright            = '(c) PbsRestore contributors'
    Description          = 'Restores disk images from Proxmox Backup Server datastores and snapshots (fixed and dynamic indexes, zstd, encrypted chunks) without the Proxmox client.'
    PowerShellVersion    = '7.4'
    CompatiblePSEditions = @('Core')
    FormatsToProcess     = @('module/PbsRestore.Format.ps1xml')
    TypesToProcess       = @('module/PbsRestore.Types.ps1xml')
    CmdletsToExport      = @('Get-PbsSnapshot', 'Restore-PbsImage', 'Connect-PbsServer', 'Disconnect-PbsServer', 'Get-PbsDatastore', 'Get-PbsNamespace', 'Measure-PbsRestore', 'Test-PbsSnapshot', 'Get-PbsFile', 'Restore-PbsFile', 'Export-PbsFile', 'Publish-PbsImage', 'Get-PbsPublication', 'Unpublish-PbsImage')
    FunctionsToExport    = @()
    AliasesToExport      = @()
    VariablesToExport    = @()
    PrivateData          = @{
        PSData = @{
            Tags = @('Proxmox', 'PBS', 'Backup', 'Restore')
        }
    }
}
