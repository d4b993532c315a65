namespace PbsRestore.Restore;

/// <summary>How hard each stage of the restore pipeline works. Defaults suit a local datastore.</summary>
public sealed record RestoreOptions
{
    /// <summary>Chunk reads in flight (for a server: requests on the wire).</summary>
    public int FetchConcurrency { get; init; } = 8;

    /// <summary>Chunks decoded at once (CRC, decrypt, decompress, digest): one per core.</summary>
    public int DecodeConcurrency { get; init; } = Environment.ProcessorCount;

    /// <summary>Positional writes in flight.</summary>
    public int WriteConcurrency { get; init; } = 2;

    /// <summary>Overwrite an existing destination.</summary>
    public bool Force { get; init; }

    public RestoreOptions Validate()
    {
        if (FetchConcurrency is < 1 or > 256) throw new ArgumentOutOfRangeException(nameof(FetchConcurrency), FetchConcurrency, "must be 1..256");
        if (DecodeConcurrency is < 1 or > 256) throw new ArgumentOutOfRangeException(nameof(DecodeConcurrency), DecodeConcurrency, "must be 1..256");
        if (WriteConcurrency is < 1 or > 64) throw new ArgumentOutOfRangeException(nameof(WriteConcurrency), WriteConcurrency, "must be 1..64");
        return this;
    }
}
