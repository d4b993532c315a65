using System.Management.Automation;
using System.Runtime.ExceptionServices;
using System.Threading.Channels;

namespace PbsRestore.PowerShell;

/// <summary>
/// Carries what async work running on the thread pool wants written to the pipeline (objects, progress, warnings,
/// verbose, errors) or asked of the user (ShouldProcess) to the pipeline thread, in order, as it happens: PowerShell
/// allows Write* and ShouldProcess only on the thread that called ProcessRecord. The pipeline thread blocks in
/// <see cref="Pump{T}"/> on a queue (no polling) until the work ends, running each item as it arrives.
/// </summary>
/// <remarks>
/// Stopping: Ctrl+C (StopProcessing) cancels the work's token; what is still queued is then dropped (the pipeline
/// takes nothing more) and questions are answered "no", while the pump waits for the work's own outcome (a stopped
/// restore knows what it kept, for the resume hint). A downstream command that wants no more (Select-Object -First)
/// stops the work the same way, and its stop signal is passed on once the work has ended.
/// </remarks>
public sealed class PipelineBridge
{
    private readonly Cmdlet _cmdlet;
    private readonly CancellationTokenSource _stop;
    private readonly Func<bool> _stoppedByUser;
    private readonly Channel<Item> _queue = Channel.CreateUnbounded<Item>(new UnboundedChannelOptions { SingleReader = true });

    /// <summary>One thing for the pipeline thread: what to run there, and what to do instead when the pipeline is stopping.</summary>
    private readonly record struct Item(Action Run, Action? Abandon);

    /// <param name="stoppedByUser">Whether StopProcessing ran (Ctrl+C, Stop-Job, PowerShell.Stop()).</param>
    internal PipelineBridge(Cmdlet cmdlet, CancellationTokenSource stop, Func<bool> stoppedByUser)
    {
        _cmdlet = cmdlet;
        _stop = stop;
        _stoppedByUser = stoppedByUser;
    }

    /// <summary>The token the work runs under: Ctrl+C, or a downstream command that wants no more, cancels it.</summary>
    public CancellationToken Token => _stop.Token;

    /// <summary>Writes an object to the pipeline now (it is passed on while the work goes on).</summary>
    public void WriteObject(object? value) => Post(() => _cmdlet.WriteObject(value));

    public void WriteWarning(string text) => Post(() => _cmdlet.WriteWarning(text));

    public void WriteVerbose(string text) => Post(() => _cmdlet.WriteVerbose(text));

    public void WriteDebug(string text) => Post(() => _cmdlet.WriteDebug(text));

    public void WriteProgress(ProgressRecord record) => Post(() => _cmdlet.WriteProgress(record));

    /// <summary>A non-terminating error for one item; the work goes on.</summary>
    public void WriteError(ErrorRecord record) => Post(() => _cmdlet.WriteError(record));

    /// <summary>Runs <paramref name="action"/> on the pipeline thread (dropped when the pipeline is stopping).</summary>
    public void Post(Action action) => _queue.Writer.TryWrite(new Item(action, null));

    /// <summary>
    /// Runs <paramref name="question"/> on the pipeline thread and gives its answer; canceled when the pipeline is
    /// stopping. For ShouldProcess, ShouldContinue, prompts and anything else that reads session state.
    /// </summary>
    public Task<T> InvokeAsync<T>(Func<T> question)
    {
        var answer = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        var item = new Item(() =>
        {
            try
            {
                answer.TrySetResult(question());
            }
            catch (PipelineStoppedException)
            {
                answer.TrySetCanceled(_stop.Token.IsCancellationRequested ? _stop.Token : new CancellationToken(true));
                throw;
            }
            catch (Exception e)
            {
                answer.TrySetException(e);
            }
        }, () => answer.TrySetCanceled(_stop.Token));
        if (!_queue.Writer.TryWrite(item)) answer.TrySetCanceled();
        return answer.Task;
    }

    /// <summary>ShouldProcess(target, action), asked on the pipeline thread.</summary>
    public Task<bool> ShouldProcessAsync(string target, string action) => InvokeAsync(() => _cmdlet.ShouldProcess(target, action));

    /// <summary>
    /// Calls <paramref name="draw"/> on the pipeline thread every <paramref name="interval"/> until disposed (for
    /// progress drawn from counters the work updates). A draw not yet run is not queued again, so a busy pipeline
    /// thread never falls behind.
    /// </summary>
    public IDisposable DrawEvery(TimeSpan interval, Action draw)
    {
        int pending = 0;
        return new Timer(_ =>
        {
            if (Interlocked.Exchange(ref pending, 1) == 0)
                Post(() =>
                {
                    Volatile.Write(ref pending, 0);
                    draw();
                });
        }, null, interval, interval);
    }

    /// <summary>
    /// Starts <paramref name="work"/> on the thread pool and runs what it posts on this (the pipeline) thread until it
    /// ends; then returns its result or throws its failure.
    /// </summary>
    internal T Pump<T>(Func<PipelineBridge, CancellationToken, Task<T>> work)
    {
        var task = Task.Run(() => work(this, _stop.Token));
        _ = task.ContinueWith(_ => _queue.Writer.TryComplete(), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        ExceptionDispatchInfo? failed = null;
        var reader = _queue.Reader;
        while (reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
        {
            while (reader.TryRead(out var item))
            {
                if (_stop.IsCancellationRequested)
                {
                    item.Abandon?.Invoke();
                    continue;
                }
                try
                {
                    item.Run();
                }
                catch (Exception e)
                {
                    // PipelineStoppedException: Ctrl+C between the check above and the write, or a downstream command
                    // that wants no more. Anything else thrown here ends the command too. Either way the work is
                    // stopped and awaited, never left running behind the command.
                    failed ??= ExceptionDispatchInfo.Capture(e);
                    _stop.Cancel();
                }
            }
        }
        if (failed is not null && !(failed.SourceException is PipelineStoppedException && _stoppedByUser()))
        {
            // The work was stopped on the pipeline's behalf: its cancellation is no failure to report.
            try { task.GetAwaiter().GetResult(); }
            catch (Exception) { /* what failed on the pipeline thread is what the command reports */ }
            failed.Throw();
        }
        // Ctrl+C or the work's own end: its result, or its failure (a stopped restore carries its resume hint).
        return task.GetAwaiter().GetResult();
    }
}
