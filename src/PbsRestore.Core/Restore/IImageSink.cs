namespace PbsRestore.Restore;

/// <summary>
/// Where restored bytes go. Writes are positional and may come from several threads at once.
/// </summary>
public interface IImageSink : IAsyncDisposable
{
    /// <summary>True when unwritten ranges read back as zeros (a fresh sparse file), so zero chunks need no I/O.</summary>
    bool ZerosAreHoles { get; }

    void Write(long offset, ReadOnlySpan<byte> data);

    /// <summary>Makes everything durable. Called once, after the last write.</summary>
    void Flush();
}

/// <summary>Discards everything (for measuring fetch and decode alone).</summary>
public sealed class NullImageSink : IImageSink
{
    public bool ZerosAreHoles => true;
    public void Write(long offset, ReadOnlySpan<byte> data) { }
    public void Flush() { }
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
