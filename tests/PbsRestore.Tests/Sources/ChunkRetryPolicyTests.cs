using Microsoft.Extensions.Time.Testing;
using PbsRestore.Formats;
using PbsRestore.Sources;

namespace PbsRestore.Tests.Sources;

/// <summary>The one retry policy alone: its decision for each outcome, its bounds, its clock (a fake one: no real waits).</summary>
public sealed class ChunkRetryPolicyTests
{
    private static readonly ChunkRetryPolicy Policy = ChunkRetryPolicy.Default;

    private static PbsException ServerError() => new("ServerError", PbsErrorKind.Connection, "HTTP 503");
    private static PbsException Lost() => new(ChunkRetryPolicy.ConnectionLost, PbsErrorKind.Connection, "connection reset");
    private static ChunkRefusedException Refused(bool changed, Action? askAgain = null) =>
        new("reading chunk 00ff: the server refuses it (not allowed): it is in no index downloaded in this session", changed, askAgain);

    private static void AssertBackoff(RetryDecision d, int attempt)
    {
        Assert.Equal(RetryAction.Backoff, d.Action);
        double expected = Math.Min(4000, 250 << (attempt - 1));
        Assert.InRange(d.Delay.TotalMilliseconds, expected * 0.75, expected * 1.25);
    }

    [Fact]
    public void A_transient_failure_backs_off_exponentially_and_is_final_after_the_last_attempt()
    {
        var state = new RetryState();
        var failure = ServerError();
        for (int attempt = 1; attempt < ChunkRetryPolicy.MaxAttempts; attempt++)
            AssertBackoff(Policy.Decide(ref state, failure), attempt);
        var last = Policy.Decide(ref state, failure);
        Assert.Equal(RetryAction.Fail, last.Action);
        Assert.Same(failure, last.Error);
        Assert.Equal(ChunkRetryPolicy.MaxAttempts, state.Attempts);
    }

    [Fact]
    public void The_first_broken_connection_is_sent_again_at_once_later_ones_back_off()
    {
        var state = new RetryState();
        var first = Policy.Decide(ref state, Lost());
        Assert.Equal(RetryAction.Resend, first.Action);
        Assert.Equal(TimeSpan.Zero, first.Delay);
        // The resend is one of the attempts; after it, broken connections wait like any transient failure.
        for (int attempt = 2; attempt < ChunkRetryPolicy.MaxAttempts; attempt++)
            AssertBackoff(Policy.Decide(ref state, Lost()), attempt);
        Assert.Equal(RetryAction.Fail, Policy.Decide(ref state, Lost()).Action);

        // A broken connection after a 5xx still gets its one resend.
        var mixed = new RetryState();
        AssertBackoff(Policy.Decide(ref mixed, ServerError()), 1);
        Assert.Equal(RetryAction.Resend, Policy.Decide(ref mixed, Lost()).Action);
        AssertBackoff(Policy.Decide(ref mixed, Lost()), 3);
    }

    [Theory]
    [InlineData(PbsErrorKind.NotFound)]
    [InlineData(PbsErrorKind.Integrity)]
    [InlineData(PbsErrorKind.InvalidData)]
    [InlineData(PbsErrorKind.Authentication)]
    public void Anything_but_a_transient_failure_is_final_at_once(PbsErrorKind kind)
    {
        var state = new RetryState();
        var failure = new PbsException("X", kind, "no");
        var d = Policy.Decide(ref state, failure);
        Assert.Equal(RetryAction.Fail, d.Action);
        Assert.Same(failure, d.Error);
    }

    [Fact]
    public void A_chunk_refused_on_a_connection_that_has_the_indexes_is_asked_again_once_then_not_allowed()
    {
        var state = new RetryState();
        Assert.Equal(RetryAction.AskAgain, Policy.Decide(ref state, Refused(changed: false)).Action);
        var refused = Refused(changed: false);
        var d = Policy.Decide(ref state, refused);
        Assert.Equal(RetryAction.Fail, d.Action);
        // The final error is a plain not-found with the session's message, as before the policy existed.
        Assert.IsType<PbsNotFoundException>(d.Error);
        Assert.Equal("ChunkNotAllowed", d.Error!.ErrorId);
        Assert.Equal(refused.Message, d.Error.Message);
        Assert.Equal(0, state.Attempts); // refusals are no transient attempts
    }

    [Fact]
    public void Refusals_on_changed_connections_are_asked_again_without_waiting_up_to_the_bound()
    {
        var state = new RetryState();
        for (int i = 1; i < ChunkRetryPolicy.MaxRefusals; i++)
        {
            var d = Policy.Decide(ref state, Refused(changed: true));
            Assert.Equal(RetryAction.AskAgain, d.Action);
            Assert.Equal(TimeSpan.Zero, d.Delay);
        }
        var last = Policy.Decide(ref state, Refused(changed: true));
        Assert.Equal(RetryAction.Fail, last.Action);
        Assert.Equal("ChunkNotAllowed", last.Error!.ErrorId);

        // Refusals after reconnects do not count towards the two on a connection with the indexes.
        var mixed = new RetryState();
        Assert.Equal(RetryAction.AskAgain, Policy.Decide(ref mixed, Refused(changed: true)).Action);
        Assert.Equal(RetryAction.AskAgain, Policy.Decide(ref mixed, Refused(changed: false)).Action);
        Assert.Equal(RetryAction.AskAgain, Policy.Decide(ref mixed, Refused(changed: true)).Action);
        Assert.Equal(RetryAction.Fail, Policy.Decide(ref mixed, Refused(changed: false)).Action);
    }

    [Fact]
    public void Backoff_doubles_from_the_first_wait_up_to_the_cap_with_jitter()
    {
        for (int attempt = 1; attempt <= 8; attempt++)
            for (int i = 0; i < 20; i++)
            {
                double expected = Math.Min(4000, 250 << Math.Min(attempt - 1, 4));
                Assert.InRange(Policy.Backoff(attempt).TotalMilliseconds, expected * 0.75, expected * 1.25);
            }
        var fast = Policy with { FirstBackoff = TimeSpan.FromMilliseconds(10), MaxBackoff = TimeSpan.FromMilliseconds(20) };
        Assert.InRange(fast.Backoff(5).TotalMilliseconds, 15, 25);
    }

    /// <summary>An attempt that plays a script of outcomes (an exception, or a length) and counts its calls.</summary>
    private sealed class Script(params object[] outcomes)
    {
        public int Calls;

        public ValueTask<int> Next(CancellationToken ct)
        {
            var o = outcomes[Calls++];
            return o is Exception e ? ValueTask.FromException<int>(e) : ValueTask.FromResult((int)o);
        }
    }

    [Fact]
    public async Task Run_waits_the_backoff_on_the_policy_s_clock_and_counts_retries()
    {
        var clock = new FakeTimeProvider();
        var policy = ChunkRetryPolicy.Default with { Time = clock };
        var script = new Script(Lost(), ServerError(), 42);
        int retried = 0;
        var run = policy.RunAsync(script.Next, () => retried++, default).AsTask();
        // The broken connection was sent again at once; the 5xx waits for its backoff (attempt 2: 0.5 s ± 25 %).
        Assert.Equal(2, script.Calls);
        Assert.False(run.IsCompleted);
        clock.Advance(TimeSpan.FromMilliseconds(370));
        Assert.False(run.IsCompleted);
        clock.Advance(TimeSpan.FromMilliseconds(260));
        Assert.Equal(42, await run.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal(3, script.Calls);
        Assert.Equal(2, retried);
    }

    [Fact]
    public async Task Run_gives_up_after_the_attempts_and_throws_the_last_failure()
    {
        var policy = ChunkRetryPolicy.Default with { FirstBackoff = TimeSpan.Zero };
        var failures = Enumerable.Range(0, ChunkRetryPolicy.MaxAttempts).Select(_ => (object)ServerError()).ToArray();
        var script = new Script(failures);
        int retried = 0;
        var e = await Assert.ThrowsAsync<PbsException>(() => policy.RunAsync(script.Next, () => retried++, default).AsTask());
        Assert.Same(failures[^1], e);
        Assert.Equal(ChunkRetryPolicy.MaxAttempts, script.Calls);
        Assert.Equal(ChunkRetryPolicy.MaxAttempts - 1, retried);
    }

    [Fact]
    public async Task Run_asks_a_refused_chunk_again_after_the_index_replay_and_without_counting_a_retry()
    {
        int replays = 0;
        var script = new Script(Refused(changed: true, () => replays++), Refused(changed: false, () => replays++), 7);
        int retried = 0;
        Assert.Equal(7, await ChunkRetryPolicy.Default.RunAsync(script.Next, () => retried++, default));
        Assert.Equal(2, replays);
        Assert.Equal(0, retried);

        var never = new Script(Refused(false, () => replays++), Refused(false, () => replays++));
        var e = await Assert.ThrowsAsync<PbsNotFoundException>(() => ChunkRetryPolicy.Default.RunAsync(never.Next, null, default).AsTask());
        Assert.Equal("ChunkNotAllowed", e.ErrorId);
        Assert.Contains("it is in no index downloaded in this session", e.Message);
        Assert.Equal(3, replays); // no replay after the final refusal
    }

    [Fact]
    public async Task Run_never_retries_once_cancelled()
    {
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        var script = new Script(ServerError(), 1);
        await Assert.ThrowsAsync<PbsException>(() => ChunkRetryPolicy.Default.RunAsync(script.Next, null, cts.Token).AsTask());
        var refused = new Script(Refused(true), 1);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => ChunkRetryPolicy.Default.RunAsync(refused.Next, null, cts.Token).AsTask());
        Assert.Equal(1, script.Calls);
        Assert.Equal(1, refused.Calls);
    }

    [Fact]
    public async Task The_stall_deadline_restarts_with_every_byte_and_a_stall_is_a_transient_ChunkStalled()
    {
        var clock = new FakeTimeProvider();
        var policy = ChunkRetryPolicy.Default with { Time = clock, StallTimeout = TimeSpan.FromSeconds(1.5) };
        var progress = new TaskCompletionSource<StallWatch>(TaskCreationOptions.RunContinuationsAsynchronously);
        var run = policy.WithStallDeadlineAsync<int>(async watch =>
        {
            progress.SetResult(watch);
            await Task.Delay(Timeout.Infinite, watch.Token);
            return 0;
        }, "reading chunk 00ff of x", default);
        var watch = await progress.Task.WaitAsync(TimeSpan.FromSeconds(30));
        clock.Advance(TimeSpan.FromSeconds(1.4));
        watch.Progressed(); // a byte arrived: the deadline starts again
        clock.Advance(TimeSpan.FromSeconds(1.4));
        Assert.False(run.IsCompleted);
        clock.Advance(TimeSpan.FromSeconds(0.2));
        var e = await Assert.ThrowsAsync<PbsException>(() => run.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal("ChunkStalled", e.ErrorId);
        Assert.Equal(PbsErrorKind.Connection, e.Kind);
        Assert.True(ChunkRetryPolicy.IsTransient(e));
        Assert.Equal("reading chunk 00ff of x: nothing received for 1.5 s", e.Message);

        // The caller's own cancellation is no stall.
        using var cts = new CancellationTokenSource();
        var cancelled = policy.WithStallDeadlineAsync<int>(async w =>
        {
            await Task.Delay(Timeout.Infinite, w.Token);
            return 0;
        }, "x", cts.Token);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled);

        // The transport's own time limit counts as a stall too.
        var timeout = await Assert.ThrowsAsync<PbsException>(() => policy.WithStallDeadlineAsync<int>(
            _ => throw new PbsException("ConnectionTimeout", PbsErrorKind.Connection, "no answer"), "y", default));
        Assert.Equal("ChunkStalled", timeout.ErrorId);
    }

    /// <summary>A source that refuses every chunk a number of times (as after a reconnect) before serving it.</summary>
    private sealed class RefusingSource(int refusals, bool connectionChanged) : IChunkSource
    {
        public int Calls, Replays;

        public ValueTask<int> ReadRawChunkAsync(ChunkDigest digest, byte[] buffer, CancellationToken ct)
        {
            if (Calls++ < refusals)
                throw new ChunkRefusedException($"reading chunk {digest}: the server refuses it (not allowed)", connectionChanged, () => Replays++);
            buffer[0] = 1;
            return ValueTask.FromResult(1);
        }
    }

    [Fact]
    public async Task Chunk_access_applies_the_policy_to_refusals_too()
    {
        var digest = new ChunkDigest(new byte[32]);
        var afterReconnect = new RefusingSource(3, connectionChanged: true);
        using (var access = new ChunkAccess(afterReconnect, new ChunkAccessOptions { FetchConcurrency = 1 }))
        {
            using (var fetch = await access.FetchAsync(digest, new byte[8], default))
                Assert.Equal(1, fetch.Length);
            Assert.Equal(4, afterReconnect.Calls);
            Assert.Equal(3, afterReconnect.Replays);
            Assert.Equal(0, access.Retries);
        }
        var inNoIndex = new RefusingSource(int.MaxValue, connectionChanged: false);
        using (var access = new ChunkAccess(inNoIndex, new ChunkAccessOptions { FetchConcurrency = 1 }))
        {
            var e = await Assert.ThrowsAsync<PbsNotFoundException>(async () => (await access.FetchAsync(digest, new byte[8], default)).Dispose());
            Assert.Equal("ChunkNotAllowed", e.ErrorId);
            Assert.Equal(2, inNoIndex.Calls);
        }
    }

    [Fact]
    public void A_server_source_s_policy_carries_the_client_s_stall_timeout()
    {
        var settings = PbsRestore.Sources.Remote.PbsConnectionSettings.Resolve("root@pam!t@h:s", null, "secret", _ => null);
        using var client = new PbsRestore.Sources.Remote.PbsClient(settings,
            new PbsRestore.Sources.Remote.PbsClientOptions { StallTimeout = TimeSpan.FromSeconds(1.5) });
        Assert.Equal(TimeSpan.FromSeconds(1.5), client.RetryPolicy.StallTimeout);
        Assert.Equal(ChunkRetryPolicy.Default.FirstBackoff, client.RetryPolicy.FirstBackoff);
        Assert.Equal(TimeSpan.FromSeconds(60), ChunkRetryPolicy.Default.StallTimeout);
    }
}
