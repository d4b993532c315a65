// A PowerShell host for tests that must prove a prompt appears (a device overwrite, a key password): it records
// every PromptForChoice and ReadLineAsSecureString, answers them as told, and keeps what was written to it.
// Compiled by TestHelpers.psm1 (New-RecordingRunspace) with Add-Type.
using System;
using System.Collections.Generic;
using System.Collections.ObjectModel;
using System.Globalization;
using System.Management.Automation;
using System.Management.Automation.Host;
using System.Security;

namespace PbsRestoreTests
{
    public sealed class RecordingHost : PSHost
    {
        private readonly Guid _id = Guid.NewGuid();
        private readonly RecordingHostUI _ui = new RecordingHostUI();

        public RecordingHostUI Recorder => _ui;
        public override PSHostUserInterface UI => _ui;
        public override CultureInfo CurrentCulture => CultureInfo.InvariantCulture;
        public override CultureInfo CurrentUICulture => CultureInfo.InvariantCulture;
        public override Guid InstanceId => _id;
        public override string Name => "PbsRestoreRecordingHost";
        public override Version Version => new Version(1, 0);
        public override void EnterNestedPrompt() => throw new NotSupportedException();
        public override void ExitNestedPrompt() => throw new NotSupportedException();
        public override void NotifyBeginApplication() { }
        public override void NotifyEndApplication() { }
        public override void SetShouldExit(int exitCode) { }
    }

    public sealed class RecordingHostUI : PSHostUserInterface
    {
        /// <summary>"caption | message" of each PromptForChoice (ShouldContinue, ShouldProcess with -Confirm).</summary>
        public List<string> Choices { get; } = new List<string>();
        /// <summary>The label (without '&') chosen for every PromptForChoice: "Yes" or "No".</summary>
        public string ChoiceAnswer { get; set; } = "No";
        /// <summary>The prompt text shown before each ReadLineAsSecureString.</summary>
        public List<string> SecurePrompts { get; } = new List<string>();
        /// <summary>Answers for ReadLineAsSecureString, in order; when empty it fails as a non-interactive host does.</summary>
        public Queue<string> SecureAnswers { get; } = new Queue<string>();
        /// <summary>Everything written to the host (Write, WriteLine, warnings, verbose).</summary>
        public List<string> Written { get; } = new List<string>();

        public override PSHostRawUserInterface RawUI => null;

        public override int PromptForChoice(string caption, string message, Collection<ChoiceDescription> choices, int defaultChoice)
        {
            Choices.Add(caption + " | " + message);
            for (int i = 0; i < choices.Count; i++)
                if (choices[i].Label.Replace("&", "") == ChoiceAnswer) return i;
            throw new InvalidOperationException("no choice labelled " + ChoiceAnswer);
        }

        public override SecureString ReadLineAsSecureString()
        {
            if (SecureAnswers.Count == 0) throw new PSInvalidOperationException("the recording host has no answer to give");
            var s = new SecureString();
            foreach (char c in SecureAnswers.Dequeue()) s.AppendChar(c);
            s.MakeReadOnly();
            return s;
        }

        public override Dictionary<string, PSObject> Prompt(string caption, string message, Collection<FieldDescription> descriptions) =>
            throw new PSInvalidOperationException("Prompt is not answered by the recording host");
        public override PSCredential PromptForCredential(string caption, string message, string userName, string targetName) =>
            throw new PSInvalidOperationException("PromptForCredential is not answered by the recording host");
        public override PSCredential PromptForCredential(string caption, string message, string userName, string targetName,
            PSCredentialTypes allowedCredentialTypes, PSCredentialUIOptions options) =>
            throw new PSInvalidOperationException("PromptForCredential is not answered by the recording host");
        public override string ReadLine() => throw new PSInvalidOperationException("ReadLine is not answered by the recording host");

        public override void Write(string value) => Written.Add(value);
        public override void Write(ConsoleColor foregroundColor, ConsoleColor backgroundColor, string value) => Written.Add(value);
        public override void WriteLine(string value) => Written.Add(value);
        public override void WriteErrorLine(string value) => Written.Add(value);
        public override void WriteDebugLine(string message) => Written.Add(message);
        public override void WriteVerboseLine(string message) => Written.Add(message);
        /// <summary>When set, WriteWarningLine throws, as a host may while its pipeline is stopping.</summary>
        public bool RefuseWarnings { get; set; }
        public override void WriteWarningLine(string message)
        {
            if (RefuseWarnings) throw new PSInvalidOperationException("the recording host refuses to write now");
            Written.Add(message);
        }
        public override void WriteProgress(long sourceId, ProgressRecord record) { }
    }
}
