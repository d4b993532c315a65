using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Runspaces;

namespace PbsRestore.PowerShell;

/// <summary>
/// Restore-PbsImage -AsJob: a PowerShell job (Get-Job, Wait-Job, Receive-Job, Stop-Job, Remove-Job) that runs
/// the same restores in a runspace of its own, in this process, so snapshot objects keep the source that listed
/// them. Its streams are the job's: results go to Output, progress records to Progress, errors to Error, as
/// Receive-Job expects. One job per command line, one restore per pipeline input, one after the other.
/// </summary>
public sealed class RestoreJob : Job
{
    private readonly Runspace _runspace;
    private readonly System.Management.Automation.PowerShell _shell;
    private int _finished;

    internal RestoreJob(string command, string modulePath, IReadOnlyList<Hashtable> restores)
        : base(command, null)
    {
        PSJobTypeName = "PbsRestoreJob";
        _runspace = RunspaceFactory.CreateRunspace(InitialSessionState.CreateDefault2());
        _shell = System.Management.Automation.PowerShell.Create();
        _shell.Runspace = _runspace;
        // The module as the user imported it (manifest, views); a failure to load it fails the job with its error.
        _shell.AddCommand("Import-Module").AddParameter("Name", modulePath).AddParameter("ErrorAction", "Stop");
        // The job's own collections are the streams: Receive-Job reads (and empties) them.
        _shell.Streams.Error = Error;
        _shell.Streams.Progress = Progress;
        _shell.Streams.Verbose = Verbose;
        _shell.Streams.Warning = Warning;
        _shell.Streams.Debug = Debug;
        _shell.Streams.Information = Information;
        foreach (var restore in restores)
            _shell.AddStatement().AddCommand("Restore-PbsImage").AddParameters(restore);
    }

    public override string StatusMessage => "";
    public override string Location => "localhost";
    public override bool HasMoreData =>
        Output.Count > 0 || Error.Count > 0 || Progress.Count > 0 || Verbose.Count > 0 || Warning.Count > 0 || Information.Count > 0 || Debug.Count > 0;

    internal void Start()
    {
        SetJobState(JobState.Running);
        _runspace.StateChanged += (_, e) =>
        {
            if (e.RunspaceStateInfo.State == RunspaceState.Opened)
                _shell.BeginInvoke<object, PSObject>(null, Output, null, InvocationDone, null);
            else if (e.RunspaceStateInfo.State == RunspaceState.Broken)
                Finish(JobState.Failed, e.RunspaceStateInfo.Reason);
        };
        _runspace.OpenAsync();
    }

    private void InvocationDone(IAsyncResult result)
    {
        try
        {
            _shell.EndInvoke(result);
            Finish(_shell.InvocationStateInfo.State == PSInvocationState.Stopped ? JobState.Stopped : JobState.Completed, null);
        }
        catch (PipelineStoppedException)
        {
            Finish(JobState.Stopped, null);
        }
        catch (Exception e)
        {
            // A terminating error (-ErrorAction Stop, a bad parameter): the job failed, and says why.
            Finish(JobState.Failed, e);
        }
    }

    private void Finish(JobState state, Exception? reason)
    {
        if (Interlocked.Exchange(ref _finished, 1) != 0) return;
        if (reason is not null)
            Error.Add(reason is IContainsErrorRecord r ? r.ErrorRecord : new ErrorRecord(reason, "RestoreJobFailed", ErrorCategory.NotSpecified, null));
        SetJobState(state);
    }

    public override void StopJob()
    {
        if (JobStateInfo.State is JobState.Running or JobState.NotStarted)
        {
            SetJobState(JobState.Stopping);
            _shell.Stop();
            Finish(JobState.Stopped, null);
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _shell.Dispose();
            _runspace.Dispose();
        }
        base.Dispose(disposing);
    }
}
