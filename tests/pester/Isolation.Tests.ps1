# The module's third-party dependencies live in a private AssemblyLoadContext: another version of the same
# library already loaded in the session (by another module) neither breaks the module nor is used by it.
Describe 'Dependency isolation' {
    It 'restores correctly with another System.IO.Hashing version already loaded, each in its own context' {
        # A System.IO.Hashing of another version than ours (8.0.0.0), as another module might bring: the .NET SDK ships some.
        # <root>/shared/Microsoft.NETCore.App/<version>/ -> <root>
        $dotnetRoot = [IO.Path]::GetFullPath((Join-Path ([System.Runtime.InteropServices.RuntimeEnvironment]::GetRuntimeDirectory()) '../../..'))
        $other = Get-ChildItem -Path (Join-Path $dotnetRoot 'sdk') -Recurse -Filter System.IO.Hashing.dll -ErrorAction SilentlyContinue |
            Where-Object { $_.Directory.Name -notmatch 'netframework|net4' -and [Reflection.AssemblyName]::GetAssemblyName($_.FullName).Version -ne [version]'8.0.0.0' } |
            Select-Object -First 1
        $other | Should -Not -BeNullOrEmpty -Because 'the SDK ships a System.IO.Hashing of another version'
        $repo = [IO.Path]::GetFullPath((Join-Path $PSScriptRoot ../..))
        $golden = [IO.Path]::GetFullPath((Join-Path $repo ../shared/golden))
        $dest = Join-Path $TestDrive 'iso.img'
        $script = @"
`$ErrorActionPreference = 'Stop'
Add-Type -Path '$($other.FullName)'   # loaded first, into the default context
Import-Module '$repo/PbsRestore.psd1'
`$r = Restore-PbsImage -Datastore '$golden/datastore' -Snapshot vm/100 -Archive drive-scsi0.img -Destination '$dest'
(Get-FileHash -LiteralPath '$dest' -Algorithm SHA256).Hash.ToLowerInvariant()
[AppDomain]::CurrentDomain.GetAssemblies() | Where-Object { `$_.GetName().Name -eq 'System.IO.Hashing' } | ForEach-Object {
    '{0}|{1}' -f `$_.GetName().Version, [System.Runtime.Loader.AssemblyLoadContext]::GetLoadContext(`$_).Name }
"@
        $file = Join-Path $TestDrive 'iso.ps1'
        Set-Content -LiteralPath $file -Value $script
        $pwsh = [Environment]::ProcessPath
        $dll = Join-Path $PSHOME 'pwsh.dll'
        $out = if ([IO.Path]::GetFileNameWithoutExtension($pwsh) -eq 'dotnet') { & $pwsh $dll -NoProfile -NonInteractive -File $file } else { & $pwsh -NoProfile -NonInteractive -File $file }
        $LASTEXITCODE | Should -Be 0 -Because ($out -join "`n")
        $manifest = Get-Content -Raw (Join-Path $golden MANIFEST.json) | ConvertFrom-Json -DateKind String
        $expected = (($manifest.snapshots | Where-Object backup_id -eq '100').archives | Where-Object name -eq 'drive-scsi0.img.fidx').plaintext_sha256
        $out[0] | Should -Be $expected
        $copies = @($out | Select-Object -Skip 1)
        $copies.Count | Should -Be 2 -Because 'the other module''s copy and ours coexist'
        $copies | Should -Contain '8.0.0.0|PbsRestore'
        @($copies | Where-Object { $_ -like '*|Default' }).Count | Should -Be 1
    }
}
