# Offline help: every exported cmdlet has real MAML help (module/en-US/PbsRestore.PowerShell.dll-Help.xml,
# copied by `build.ps1 Build` next to the manifest and into module/bin/en-US), not the syntax-only help
# PowerShell makes up; every parameter is documented and matches the cmdlet; the examples use only
# parameters that exist; about_PbsRestore is found.
BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot '../../PbsRestore.psd1') -Force
    $script:CmdletCases = @(Get-Command -Module PbsRestore -CommandType Cmdlet | ForEach-Object { @{ Name = $_.Name } })
    $script:ParameterCases = @(foreach ($c in Get-Command -Module PbsRestore -CommandType Cmdlet) {
            foreach ($p in $c.Parameters.Values) {
                # Common parameters (Verbose, ErrorAction, ...) are documented by PowerShell itself;
                # WhatIf and Confirm are not excluded: they are documented like the cmdlet's own.
                if ($p.Name -notin [System.Management.Automation.PSCmdlet]::CommonParameters) {
                    @{ Cmdlet = $c.Name; Parameter = $p.Name }
                }
            }
        })
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot '../../PbsRestore.psd1') -Force
    $script:Repo = (Resolve-Path (Join-Path $PSScriptRoot '../..')).Path
    $script:HelpSource = Join-Path $script:Repo 'module/en-US/PbsRestore.PowerShell.dll-Help.xml'
    $script:AboutSource = Join-Path $script:Repo 'module/en-US/about_PbsRestore.help.txt'
    $script:CommonParameters = [System.Management.Automation.PSCmdlet]::CommonParameters

    function script:Get-ParameterHelp([string] $Cmdlet, [string] $Parameter) {
        @((Get-Help $Cmdlet -Full).parameters.parameter | Where-Object { $_.name -eq $Parameter })
    }

    function script:Get-Text($Paragraphs) {
        # Help text comes as objects with a Text property (one per maml:para); joined and trimmed.
        (@($Paragraphs | ForEach-Object { if ($_ -is [string]) { $_ } else { $_.Text } }) -join "`n").Trim()
    }
}

Describe 'The help file' {
    It 'is well-formed MAML that names every exported cmdlet' {
        [xml] $doc = Get-Content -LiteralPath $script:HelpSource -Raw
        $doc.helpItems.schema | Should -Be 'maml'
        $names = @($doc.helpItems.command | ForEach-Object { $_.details.name.Trim() })
        foreach ($c in Get-Command -Module PbsRestore -CommandType Cmdlet) { $names | Should -Contain $c.Name }
    }

    It 'is installed where Get-Help finds it, identical to module/en-US (<_>)' -ForEach @(
        'en-US/PbsRestore.PowerShell.dll-Help.xml', 'en-US/about_PbsRestore.help.txt',
        'module/bin/en-US/PbsRestore.PowerShell.dll-Help.xml', 'module/bin/en-US/about_PbsRestore.help.txt') {
        $copy = Join-Path $script:Repo $_
        $copy | Should -Exist -Because 'build.ps1 Build copies module/en-US there; rebuild after editing the help'
        $source = Join-Path $script:Repo ('module/en-US/' + (Split-Path $_ -Leaf))
        (Get-FileHash -LiteralPath $copy).Hash | Should -Be (Get-FileHash -LiteralPath $source).Hash -Because 'the copy must not be stale; run build.ps1 Build'
    }
}

Describe 'Help of <Name>' -ForEach $script:CmdletCases {
    BeforeAll {
        $script:Help = Get-Help $Name -Full
        $script:Command = Get-Command $Name
    }

    It 'has a synopsis, not the generated syntax' {
        $synopsis = "$($script:Help.Synopsis)".Trim()
        $synopsis | Should -Not -BeNullOrEmpty
        $synopsis | Should -Not -Match "^$([regex]::Escape($Name))(\s|$)" -Because 'without MAML help PowerShell shows the syntax as the synopsis'
        $synopsis | Should -Not -BeLike '*<CommonParameters>*'
        $synopsis.Length | Should -BeGreaterThan 20
    }

    It 'has a description' {
        Get-Text $script:Help.description | Should -Not -BeNullOrEmpty
    }

    It 'has at least 3 examples, each with code and remarks' {
        $examples = @($script:Help.examples.example)
        $examples.Count | Should -BeGreaterOrEqual 3
        foreach ($e in $examples) {
            "$($e.code)".Trim() | Should -Not -BeNullOrEmpty
            Get-Text $e.remarks | Should -Not -BeNullOrEmpty
        }
    }

    It 'has inputs, outputs and notes' {
        @($script:Help.inputTypes.inputType).Count | Should -BeGreaterOrEqual 1
        @($script:Help.returnValues.returnValue).Count | Should -BeGreaterOrEqual 1
        Get-Text $script:Help.alertSet.alert | Should -Not -BeNullOrEmpty
    }

    It 'names the output type the cmdlet declares' {
        $declared = @($script:Command.OutputType | ForEach-Object Name)   # empty when the cmdlet declares none
        $documented = @($script:Help.returnValues.returnValue | ForEach-Object { "$($_.type.name)".Trim() })
        foreach ($t in $declared) { $documented | Should -Contain $t }
    }

    It 'documents no parameter the cmdlet does not have' {
        foreach ($p in @($script:Help.parameters.parameter)) {
            $script:Command.Parameters.Keys | Should -Contain $p.name -Because "the help documents -$($p.name)"
        }
    }

    It 'uses only existing parameters in its examples' {
        $cmdlets = @(Get-Command -Module PbsRestore -CommandType Cmdlet)
        foreach ($e in @($script:Help.examples.example)) {
            # Example code may contain sample output lines; parse errors there do not matter.
            $tokens = $null; $errors = $null
            $ast = [System.Management.Automation.Language.Parser]::ParseInput("$($e.code)", [ref] $tokens, [ref] $errors)
            $calls = $ast.FindAll({ param($n) $n -is [System.Management.Automation.Language.CommandAst] }, $true)
            foreach ($call in $calls) {
                $target = $cmdlets | Where-Object Name -eq $call.GetCommandName()
                if (-not $target) { continue }
                $known = @($target.Parameters.Values | ForEach-Object { $_.Name; $_.Aliases })
                foreach ($p in $call.CommandElements | Where-Object { $_ -is [System.Management.Automation.Language.CommandParameterAst] }) {
                    $known | Should -Contain $p.ParameterName -Because "$($e.title.Trim(' -')) uses -$($p.ParameterName) of $($target.Name)"
                }
            }
        }
    }
}

Describe 'Parameter -<Parameter> of <Cmdlet>' -ForEach $script:ParameterCases {
    BeforeAll {
        $script:Meta = (Get-Command $Cmdlet).Parameters[$Parameter]
        $script:Doc = Get-ParameterHelp $Cmdlet $Parameter
    }

    It 'is documented once, with a description' {
        $script:Doc.Count | Should -Be 1
        Get-Text $script:Doc[0].description | Should -Not -BeNullOrEmpty
    }

    It 'has the right Required, Position and pipeline input' {
        $attrs = @($script:Meta.Attributes | Where-Object { $_ -is [System.Management.Automation.ParameterAttribute] })
        $mandatory = [bool]($attrs | Where-Object Mandatory)
        $script:Doc[0].required | Should -Be $mandatory.ToString().ToLowerInvariant()

        $positions = @($attrs | Where-Object { $_.Position -ge 0 } | ForEach-Object Position | Select-Object -Unique)
        $expectedPosition = if ($positions.Count -eq 1) { "$($positions[0])" } else { 'named' }
        "$($script:Doc[0].position)".ToLowerInvariant() | Should -Be $expectedPosition.ToLowerInvariant()

        $byValue = [bool]($attrs | Where-Object ValueFromPipeline)
        $byName = [bool]($attrs | Where-Object ValueFromPipelineByPropertyName)
        $pipeline = "$($script:Doc[0].pipelineInput)"
        if ($byValue) { $pipeline | Should -BeLike '*ByValue*' }
        if ($byName) { $pipeline | Should -BeLike '*ByPropertyName*' }
        if (-not ($byValue -or $byName)) { $pipeline | Should -Be 'False' }
    }

    It 'has the right type' {
        $documented = "$($script:Doc[0].type.name)".Trim()
        $documented | Should -Be $script:Meta.ParameterType.FullName
    }

    It 'lists its aliases' {
        foreach ($alias in $script:Meta.Aliases) {
            "$($script:Doc[0].aliases)" | Should -BeLike "*$alias*"
        }
    }
}

Describe 'about_PbsRestore' {
    It 'is found by Get-Help' {
        $text = Get-Help about_PbsRestore -ErrorAction Stop | Out-String
        $text | Should -Match 'about_PbsRestore'
        $text | Should -Match 'PBS_ENCRYPTION_PASSWORD'
        $text | Should -Match 'FullyQualifiedErrorId'
    }

    It 'is the file from module/en-US' {
        $text = Get-Help about_PbsRestore -ErrorAction Stop | Out-String
        $firstLine = (Get-Content -LiteralPath $script:AboutSource | Where-Object { $_ -match 'Restores VM disk images' } | Select-Object -First 1).Trim()
        $text | Should -BeLike "*$firstLine*"
    }
}

AfterAll {
    Remove-Module PbsRestore -ErrorAction SilentlyContinue
}
