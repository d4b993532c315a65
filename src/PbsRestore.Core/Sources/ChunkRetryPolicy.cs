namespace PbsRestore.Sources;

/// <summary>
/// The one retry policy of chunk reads and snapshot file downloads; sources make single attempts and report what
/// happened, this decides what comes next. Per read:
/// <list type="bullet">
/// <item>a transient failure (an error of kind <see cref="PbsErrorKind.Connection"/>: the connection broke or
/// stalled, the server answered 5xx) is retried, <see cref="MaxAttempts"/> attempts in all: the first broken
/// connection (<see cref="ConnectionLost"/>) is sent again at once (a GET is idempotent, and the new connection is
/// usually fine), every other retry waits an exponential <see cref="Backoff"/>;</item>
/// <item>a request that receives nothing for <see cref="StallTimeout"/> is given up as stalled
/// (<see cref="WithStallDeadlineAsync"/>: ChunkStalled, transient);</item>
/// <item>a chunk refused as "not allowed" (<see cref="ChunkRefusedException"/>) is asked for again at once after its
/// indexes are downloaded again, unless it was refused twice on a connection that had them, or
/// <see cref="MaxRefusals"/> times in all: then ChunkNotAllowed is final;</item>
/// <item>anything else (missing chunk, authentication, a damaged answer) is final.</item>
/// </list>
/// Immutable and thread-safe; a server source gives its own (<see cref="IChunkSource.RetryPolicy"/>, with the client's stall timeout).
/// </summary>
public sealed record ChunkRetryPolicy
{
    /// <summary>Attempts per read before a transient failure is final.</summary>
    public const int MaxAttempts = 6;

    /// <summary>Bound on "not allowed" answers for one read, however often the connection is replaced.</summary>
    public const int MaxRefusals = 32;

    /// <summary>The id of a transient failure where the connection broke under the request (sent again at once, once).</summary>
    public const string ConnectionLost = "ConnectionLost";

    /// <summary>Defaults: 60 s stall deadline, backoff 0.25 s doubling up to 4 s (about 8 s in all), system clock.</summary>
    public static ChunkRetryPolicy Default { get; } = new();

    /// <summary>A request that receives nothing (no headers, no body bytes) for this long is given up as stalled.</summary>
    public TimeSpan StallTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Wait before the first backed-off retry; it doubles per attempt up to <see cref="MaxBackoff"/>.</summary>
    public TimeSpan FirstBackoff { get; init; } = TimeSpan.FromMilliseconds(250);

    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(4);

    /// <summary>The clock of backoff waits and stall deadlines (tests give a fake one).</summary>
    public TimeProvider Time { get; init; } = TimeProvider.System;

    /// <summary>
    /// Wait after failed attempt <paramref name="attempt"/>: 0.25, 0.5, 1, 2, 4 s by default (about 8 s in all, enough
    /// for a server restart or a network blip), with ±25 % jitter so that many fetchers hit by one drop do not come
    /// back in lockstep.
    /// </summary>
    public TimeSpan Backoff(int attempt)
    {
        double ms = Math.Min(MaxBackoff.TotalMilliseconds, FirstBackoff.TotalMilliseconds * (1 << Math.Clamp(attempt - 1, 0, 30)));
        return TimeSpan.FromMilliseconds(ms * (0.75 + Random.Shared.NextDouble() * 0.5));
    }

    public static bool IsTransient(PbsException e) => e.Kind == PbsErrorKind.Connection;

    /// <summary>What comes after a failed attempt, given what happened so far in this read (<paramref name="state"/>, updated).</summary>
    public RetryDecision Decide(ref RetryState state, PbsException failure)
    {
        if (failure is ChunkRefusedException refused)
        {
            state.Refusals++;
            // Refused on a connection that changed under the request: it never downloaded the indexes. Only a
            // refusal on a connection that has them, twice, means the chunk is in none of them (a caller bug or a
            // server that disagrees).
            if (!refused.ConnectionChanged) state.RefusalsWithIndexes++;
            return state.RefusalsWithIndexes >= 2 || state.Refusals >= MaxRefusals
                ? RetryDecision.Fail(new PbsNotFoundException(refused.ErrorId, refused.Message))
                : new RetryDecision(RetryAction.AskAgain, TimeSpan.Zero, null);
        }
        if (!IsTransient(failure)) return RetryDecision.Fail(failure);
        state.Attempts++;
        if (state.Attempts >= MaxAttempts) return RetryDecision.Fail(failure);
        if (failure.ErrorId == ConnectionLost && !state.Resent)
        {
            state.Resent = true;
            return new RetryDecision(RetryAction.Resend, TimeSpan.Zero, null);
        }
        return new RetryDecision(RetryAction.Backoff, Backoff(state.Attempts), null);
    }

    /// <summary>
    /// Runs <paramref name="attempt"/> until it succeeds or <see cref="Decide"/> says the failure is final (then
    /// throws it). <paramref name="retried"/> is told of every retry after a transient failure (not of a refused chunk
    /// asked again). Cancellation ends it at once.
    /// </summary>
    public async ValueTask<T> RunAsync<T>(Func<CancellationToken, ValueTask<T>> attempt, Action? retried, CancellationToken ct)
    {
        var state = new RetryState();
        while (true)
        {
            try
            {
                return await attempt(ct).ConfigureAwait(false);
            }
            catch (PbsException e)
            {
                if (ct.IsCancellationRequested)
                {
                    if (e is ChunkRefusedException) ct.ThrowIfCancellationRequested();
                    throw;
                }
                var decision = Decide(ref state, e);
                switch (decision.Action)
                {
                    case RetryAction.Fail:
                        if (ReferenceEquals(decision.Error, e)) throw;
                        throw decision.Error!;
                    case RetryAction.AskAgain:
                        ((ChunkRefusedException)e).PrepareToAskAgain();
                        break;
                    case RetryAction.Resend:
                        retried?.Invoke();
                        break;
                    case RetryAction.Backoff:
                        retried?.Invoke();
                        await Task.Delay(decision.Delay, Time, ct).ConfigureAwait(false);
                        break;
                }
            }
        }
    }

    /// <summary>
    /// Runs one request under the stall deadline: <paramref name="attempt"/> passes <see cref="StallWatch.Token"/> to
    /// its I/O and calls <see cref="StallWatch.Progressed"/> on every byte received. Nothing received for
    /// <see cref="StallTimeout"/> cancels this request only and becomes ChunkStalled (transient), as does the
    /// transport's own time limit (ConnectionTimeout).
    /// </summary>
    public async Task<T> WithStallDeadlineAsync<T>(Func<StallWatch, Task<T>> attempt, string what, CancellationToken ct)
    {
        using var watch = new StallWatch(StallTimeout, Time, ct);
        try
        {
            return await attempt(watch).ConfigureAwait(false);
        }
        catch (OperationCanceledException e) when (watch.Expired)
        {
            throw Stalled(what, e);
        }
        catch (PbsException e) when (e.ErrorId == "ConnectionTimeout" && !ct.IsCancellationRequested)
        {
            throw Stalled(what, e);
        }
    }

    private PbsException Stalled(string what, Exception inner) =>
        new("ChunkStalled", PbsErrorKind.Connection, $"{what}: nothing received for {StallTimeout.TotalSeconds:0.#} s", inner);
}

/// <summary>What <see cref="ChunkRetryPolicy.Decide"/> says to do next.</summary>
public enum RetryAction
{
    /// <summary>Give up: throw <see cref="RetryDecision.Error"/>.</summary>
    Fail,
    /// <summary>Send the request again now.</summary>
    Resend,
    /// <summary>Wait <see cref="RetryDecision.Delay"/>, then send it again.</summary>
    Backoff,
    /// <summary>A refused chunk: download the indexes again (<see cref="ChunkRefusedException.PrepareToAskAgain"/>) and ask at once.</summary>
    AskAgain,
}

public readonly record struct RetryDecision(RetryAction Action, TimeSpan Delay, PbsException? Error)
{
    public static RetryDecision Fail(PbsException error) => new(RetryAction.Fail, TimeSpan.Zero, error);
}

/// <summary>What happened so far in one read (<see cref="ChunkRetryPolicy.Decide"/>).</summary>
public struct RetryState
{
    /// <summary>Attempts that failed transiently.</summary>
    public int Attempts;
    /// <summary>The one immediate resend after a broken connection was used.</summary>
    public bool Resent;
    /// <summary>"Not allowed" answers, and those on a connection that had the indexes.</summary>
    public int Refusals, RefusalsWithIndexes;
}

/// <summary>
/// A source refused a chunk that it may serve once the chunk's index is registered again (PBS: "not allowed" on a
/// connection that never downloaded the index). <see cref="ConnectionChanged"/>: the connection that carried the
/// request is not the one that downloaded the indexes. The message is the final ChunkNotAllowed error's.
/// </summary>
public sealed class ChunkRefusedException(string message, bool connectionChanged, Action? prepareToAskAgain = null)
    : PbsException("ChunkNotAllowed", PbsErrorKind.NotFound, message)
{
    public bool ConnectionChanged { get; } = connectionChanged;

    /// <summary>Makes the source download its indexes again before the next request.</summary>
    public void PrepareToAskAgain() => prepareToAskAgain?.Invoke();
}

/// <summary>The stall deadline of one request (<see cref="ChunkRetryPolicy.WithStallDeadlineAsync"/>).</summary>
public sealed class StallWatch : IDisposable
{
    private readonly CancellationTokenSource _cts;
    private readonly CancellationTokenRegistration _caller;
    private readonly CancellationToken _callerToken;
    private readonly TimeSpan _timeout;

    internal StallWatch(TimeSpan timeout, TimeProvider time, CancellationToken ct)
    {
        _timeout = timeout;
        _callerToken = ct;
        _cts = new CancellationTokenSource(timeout, time);
        _caller = ct.UnsafeRegister(static s => ((CancellationTokenSource)s!).Cancel(), _cts);
    }

    /// <summary>Cancelled when the deadline passes or the caller cancels.</summary>
    public CancellationToken Token => _cts.Token;

    /// <summary>True when the deadline passed (not the caller's cancellation).</summary>
    public bool Expired => _cts.IsCancellationRequested && !_callerToken.IsCancellationRequested;

    /// <summary>Bytes arrived: the deadline starts again.</summary>
    public void Progressed() => _cts.CancelAfter(_timeout);

    public void Dispose()
    {
        _caller.Dispose();
        _cts.Dispose();
    }
}
