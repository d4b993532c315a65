namespace PbsRestore.Restore;

/// <summary>What a finished restore reports (Restore-PbsImage's output object).</summary>
public sealed record RestoreResult
{
    /// <summary>type/id/time, as Get-PbsSnapshot's Snapshot (the namespace is separate).</summary>
    public required string Snapshot { get; init; }
    /// <summary>Namespace of the snapshot, '' for the root (as Get-PbsSnapshot's Namespace).</summary>
    public string Namespace { get; init; } = "";
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
    /// <summary>Distinct chunks fetched by this run.</summary>
    public long ChunksFetched { get; init; }
    /// <summary>Index entries restored by an earlier, interrupted run and kept (-Resume).</summary>
    public long ChunksResumed { get; init; }
    /// <summary>Chunks read again because a copy failed its checks (damaged in transit).</summary>
    public long Rereads { get; init; }
    /// <summary>Raw, Vhdx, Vhd, or Device.</summary>
    public string Format { get; init; } = "Raw";
    /// <summary>
    /// How the bytes reached the disk: "unbuffered (O_DIRECT, ...)" / "unbuffered (FILE_FLAG_NO_BUFFERING ...)", or
    /// "buffered: why" where the file system refused unbuffered writes (the restore then bounds its dirty pages).
    /// </summary>
    public string WriteMode { get; init; } = "";
    /// <summary>Logical MB (10^6 bytes) per second restored by this run (bytes kept from an interrupted run left out).</summary>
    /// <summary>The one MB/s figure (the progress bars show the same): a whole-run average of logical bytes, zero regions included.</summary>
    public double MBPerSecond => Duration.TotalSeconds > 0 ? (LogicalBytes - ResumedBytes) / 1e6 / Duration.TotalSeconds : 0;
    /// <summary>Encoded MB (10^6 bytes) read from the source per second: the wire rate, compressed chunks only.</summary>
    public double WireMBPerSecond => Duration.TotalSeconds > 0 ? BytesRead / 1e6 / Duration.TotalSeconds : 0;
    /// <summary>Logical bytes kept from an interrupted run (-Resume).</summary>
    public long ResumedBytes { get; init; }
    /// <summary>Ranges restored as zeros because their chunk could not be read (-SkipBadChunks), by offset; empty otherwise.</summary>
    public IReadOnlyList<BadRange> BadRanges { get; init; } = [];
}

/// <summary>A range of the image that -SkipBadChunks restored as zeros: where, how long, which chunk, and why.</summary>
public sealed record BadRange(long Offset, int Length, string Digest, string Reason)
{
    public override string ToString() => $"{Length} bytes at offset {Offset} (chunk {Digest}: {Reason})";
}
