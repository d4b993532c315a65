using System.Management.Automation;
using PbsRestore.Restore;

namespace PbsRestore.PowerShell;

/// <summary>
/// Base of the module's cmdlets: one cancellation source that Ctrl+C (StopProcessing) cancels, a bridge that runs
/// core work on the thread pool while the pipeline thread writes what it produces as it happens (Write* and
/// ShouldProcess only ever run on the pipeline thread), and one mapping from core errors to ErrorRecords.
/// </summary>
/// <remarks>
/// A cmdlet runs async work with <see cref="RunWithBridge{T}"/>: the work gets a <see cref="PipelineBridge"/> and
/// writes objects, warnings, verbose lines and progress through it, and asks ShouldProcess with
/// <see cref="PipelineBridge.ShouldProcessAsync"/>; each reaches the pipeline as soon as the pipeline thread is free.
/// <see cref="Run{T}(Func{CancellationToken, Task{T}}, Action?)"/> is the short form for work that only returns a
/// value (with an optional progress draw).
/// </remarks>
public abstract class PbsCmdlet : PSCmdlet, IDisposable
{
    private readonly CancellationTokenSource _cts = new();
    private volatile bool _stoppedByUser;

    /// <summary>How often progress drawn from counters is redrawn while work runs.</summary>
    internal static readonly TimeSpan ProgressInterval = TimeSpan.FromMilliseconds(200);

    protected CancellationToken StopToken => _cts.Token;

    protected override void StopProcessing()
    {
        _stoppedByUser = true;
        _cts.Cancel();
    }

    /// <summary>
    /// Runs <paramref name="work"/> off the pipeline thread and returns its result; <paramref name="tick"/> (a
    /// progress draw) runs on the pipeline thread every <see cref="ProgressInterval"/> and once when the work ends.
    /// </summary>
    protected T Run<T>(Func<CancellationToken, Task<T>> work, Action? tick = null) =>
        RunWithBridge(async (bridge, ct) =>
        {
            var timer = tick is null ? null : bridge.DrawEvery(ProgressInterval, tick);
            try
            {
                return await work(ct).ConfigureAwait(false);
            }
            finally
            {
                timer?.Dispose();
                if (tick is not null) bridge.Post(tick);
            }
        });

    /// <summary>
    /// Runs <paramref name="work"/> off the pipeline thread; what it writes or asks through the bridge reaches the
    /// pipeline as it happens. Returns the work's result or throws its failure once it has ended.
    /// </summary>
    protected T RunWithBridge<T>(Func<PipelineBridge, CancellationToken, Task<T>> work) =>
        new PipelineBridge(this, _cts, () => _stoppedByUser).Pump(work);

    /// <summary><see cref="RunWithBridge{T}"/> for work without a result.</summary>
    protected void RunWithBridge(Func<PipelineBridge, CancellationToken, Task> work) =>
        RunWithBridge<bool>(async (bridge, ct) =>
        {
            await work(bridge, ct).ConfigureAwait(false);
            return true;
        });

    /// <summary>Resolves a user path (relative to the current PowerShell location, ~ expanded) to a file-system path.</summary>
    protected string ResolvePath(string path) => GetUnresolvedProviderPathFromPSPath(path);

    /// <summary>The ErrorRecord for a failure, with the core's stable id and a fitting category.</summary>
    protected static ErrorRecord ToErrorRecord(Exception e, object? target)
    {
        if (e is PbsException p)
        {
            var category = p.Kind switch
            {
                PbsErrorKind.InvalidData => ErrorCategory.InvalidData,
                PbsErrorKind.Integrity => ErrorCategory.InvalidData,
                PbsErrorKind.NotFound => ErrorCategory.ObjectNotFound,
                PbsErrorKind.InvalidArgument => ErrorCategory.InvalidArgument,
                PbsErrorKind.Authentication => ErrorCategory.AuthenticationError,
                PbsErrorKind.ResourceExists => ErrorCategory.ResourceExists,
                PbsErrorKind.Connection => ErrorCategory.ConnectionError,
                _ => ErrorCategory.WriteError,
            };
            var record = new ErrorRecord(e, p.ErrorId, category, target);
            if (ErrorAdvice.For(p.ErrorId) is { } action)
                record.ErrorDetails = new ErrorDetails(e.Message) { RecommendedAction = action };
            AddResumeAdvice(record, e);
            return record;
        }
        var other = e switch
        {
            UnauthorizedAccessException => new ErrorRecord(e, "AccessDenied", ErrorCategory.PermissionDenied, target),
            IOException => new ErrorRecord(e, "IOError", ErrorCategory.WriteError, target),
            ArgumentException => new ErrorRecord(e, "InvalidArgument", ErrorCategory.InvalidArgument, target),
            _ => new ErrorRecord(e, "UnexpectedError", ErrorCategory.NotSpecified, target),
        };
        AddResumeAdvice(other, e);
        return other;
    }

    /// <summary>A restore that stopped with something worth keeping says so, and how to go on.</summary>
    private static void AddResumeAdvice(ErrorRecord record, Exception e)
    {
        if (ResumeAdvice(e) is { } advice)
            record.ErrorDetails = new ErrorDetails(e.Message) { RecommendedAction = advice };
    }

    private static string? ResumeAdvice(Exception e) => e.Data[ArchiveRestorer.ResumableKey] is string partial
        ? $"What was restored is kept in '{partial}'. Run the same command again with -Resume to continue."
        : null;

    /// <summary>
    /// Writes a non-terminating error for one failed item. When the user stopped the pipeline (Ctrl+C) nothing more
    /// may be written to the pipeline, but a stopped restore still leaves one line on how to resume it: straight to
    /// the host, or, where the host refuses that while stopping, as an error record put first in $Error (a record
    /// thrown while the pipeline stops is dropped by the engine, so $Error is where it can still be found).
    /// </summary>
    protected void WriteFailure(Exception e, object? target)
    {
        if (e is OperationCanceledException && StopToken.IsCancellationRequested)
        {
            if (ResumeAdvice(e) is { } advice)
            {
                string line = "Restore stopped. " + advice;
                bool told;
                try
                {
                    Host.UI.WriteWarningLine(line);
                    told = true;
                }
                catch (Exception hostRefused) when (hostRefused is not OutOfMemoryException)
                {
                    told = false;
                }
                if (!told && SessionState.PSVariable.GetValue("global:Error") is System.Collections.ArrayList errors)
                {
                    var record = new ErrorRecord(e, "RestoreStopped", ErrorCategory.OperationStopped, target)
                    {
                        ErrorDetails = new ErrorDetails(line) { RecommendedAction = advice },
                    };
                    lock (errors.SyncRoot) errors.Insert(0, record);
                }
            }
            throw new PipelineStoppedException();
        }
        WriteError(ToErrorRecord(e, target));
    }

    /// <summary>Releases what the command holds (sources, clients); PowerShell disposes a command when its pipeline ends, however it ends.</summary>
    protected virtual void DisposeResources()
    {
    }

    public void Dispose()
    {
        DisposeResources();
        _cts.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>
/// Draws a restore's counters as a progress bar with MB/s and ETA. MB/s has one meaning everywhere, the result's
/// MBPerSecond: logical MB (10^6 bytes, zero regions included, bytes kept by -Resume left out) restored by this
/// run, divided by the seconds since it began (a whole-run average, no window). The time left comes from the
/// bytes that cost work (not zero holes, not resumed chunks), which are what the remaining time is spent on.
/// </summary>
internal sealed class ProgressView(PSCmdlet cmdlet, int activityId, string activity, int parentId = -1)
{
    private readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();

    public void Update(RestoreCounters c)
    {
        long total = c.TotalBytes, done = c.DoneBytes;
        double seconds = _clock.Elapsed.TotalSeconds;
        // The figure shown: as the result's MBPerSecond (RestoreResult), so the bar and the result agree.
        double shown = seconds > 0 ? Math.Max(0, done - c.ResumedBytes) / seconds : 0;
        // Zero holes and chunks kept from an interrupted run are done at once: the time left is estimated from the
        // rest only, or it would start low and drift for the whole restore.
        double working = seconds > 0 ? Math.Max(0, done - c.InstantBytes) / seconds : 0;
        // Short: PowerShell's minimal progress view cuts the line at 120 characters, activity included.
        var record = new ProgressRecord(activityId, activity,
            total == 0 ? "Reading manifest and index" : $"{Size(done)} of {Size(total)}, {Rate(shown)} MB/s")
        {
            PercentComplete = total > 0 ? (int)Math.Min(100, done * 100 / total) : 0,
            SecondsRemaining = working > 0 && total > done ? (int)Math.Ceiling((total - done) / working) : -1,
            ParentActivityId = parentId,
        };
        cmdlet.WriteProgress(record);
    }

    /// <summary>MB/s (10^6 bytes) with one decimal, invariant culture, so that scripts reading the bar can parse it.</summary>
    internal static string Rate(double bytesPerSecond) => (bytesPerSecond / 1e6).ToString("F1", System.Globalization.CultureInfo.InvariantCulture);

    public void Complete()
    {
        try
        {
            cmdlet.WriteProgress(new ProgressRecord(activityId, activity, "Done") { RecordType = ProgressRecordType.Completed, ParentActivityId = parentId });
        }
        catch (PipelineStoppedException)
        {
            // Stopping (Ctrl+C): the bar goes with the pipeline, and the failure being unwound must not be replaced.
        }
    }

    public static string Size(long bytes) => bytes switch
    {
        >= 1L << 40 => $"{bytes / (double)(1L << 40):F2} TiB",
        >= 1L << 30 => $"{bytes / (double)(1L << 30):F2} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):F1} MiB",
        >= 1L << 10 => $"{bytes / (double)(1L << 10):F1} KiB",
        _ => $"{bytes} B",
    };
}
