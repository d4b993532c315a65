namespace PbsRestore.Restore;

/// <summary>What a finished restore reports (Restore-PbsImage's output object).</summary>
public sealed record RestoreResult
{
    public required string Snapshot { get; init; }
    public required string Archive { get; init; }
    public required string Destination { get; init; }
    /// <summary>Logical bytes of the restored archive.</summary>
    public required long LogicalBytes { get; init; }
    /// <summary>Encoded bytes read from the source.</summary>
    public required long BytesRead { get; init; }
    public required long Chunks { get; init; }
    public required long ZeroChunks { get; init; }
    public required long DedupHits { get; init; }
    public required TimeSpan Duration { get; init; }
    /// <summary>Logical MB (10^6 bytes) per second.</summary>
    public double MBPerSecond => Duration.TotalSeconds > 0 ? LogicalBytes / 1e6 / Duration.TotalSeconds : 0;
}
