using PbsRestore.Destinations;
using PbsRestore.Sources;
namespace PbsRestore.Restore;

/// <summary>
/// How hard each stage of the restore pipeline works. The defaults tune themselves. What may be done to the
/// destination (replace, resume, its form) is <see cref="DestinationOptions"/>.
/// </summary>
public sealed record RestoreOptions
{
    /// <summary>Upper bound of automatic fetch concurrency (<see cref="FetchBudget.AutoFetchLimit"/>).</summary>
    public const int AutoFetchLimit = FetchBudget.AutoFetchLimit;

    /// <summary>
    /// Chunk reads in flight (for a server: requests on the wire). Null: automatic — start small and grow while
    /// throughput still rises, up to <see cref="AutoFetchLimit"/>.
    /// </summary>
    public int? FetchConcurrency { get; init; }

    /// <summary>Chunks decoded at once (CRC, decrypt, decompress, digest): one per core.</summary>
    public int DecodeConcurrency { get; init; } = Environment.ProcessorCount;

    /// <summary>Positional writes in flight.</summary>
    public int WriteConcurrency { get; init; } = 2;

    /// <summary>Cap on bytes read from the source per second (encoded chunk bytes); null for none.</summary>
    public long? MaxBytesPerSecond { get; init; }

    /// <summary>A fetch limit shared with other restores running at the same time; overrides <see cref="FetchConcurrency"/>.</summary>
    public FetchBudget? Budget { get; init; }

    /// <summary>
    /// Disaster-recovery mode: a chunk that cannot be read or fails its checks after every reread (missing, damaged
    /// in the datastore) is restored as zeros and reported in <see cref="RestoreResult.BadRanges"/> instead of ending
    /// the restore. Off by default: a restore is all or nothing.
    /// </summary>
    public bool SkipBadChunks { get; init; }

    /// <summary>The chunk-access settings of this restore (gate, bandwidth cap, shared budget).</summary>
    public ChunkAccessOptions ChunkAccess => new() { FetchConcurrency = FetchConcurrency, MaxBytesPerSecond = MaxBytesPerSecond, Budget = Budget };

    public RestoreOptions Validate()
    {
        if (FetchConcurrency is < 1 or > 256) throw new ArgumentOutOfRangeException(nameof(FetchConcurrency), FetchConcurrency, "must be 1..256");
        if (DecodeConcurrency is < 1 or > 256) throw new ArgumentOutOfRangeException(nameof(DecodeConcurrency), DecodeConcurrency, "must be 1..256");
        if (WriteConcurrency is < 1 or > 64) throw new ArgumentOutOfRangeException(nameof(WriteConcurrency), WriteConcurrency, "must be 1..64");
        if (MaxBytesPerSecond is <= 0) throw new ArgumentOutOfRangeException(nameof(MaxBytesPerSecond), MaxBytesPerSecond, "must be positive");
        return this;
    }

    /// <summary>
    /// Applies upstream's variables for familiarity where the caller set nothing: PBS_RESTORE_FETCH_CONCURRENCY
    /// (fetches in flight) and PBS_RESTORE_MAX_THREADS (decode threads).
    /// </summary>
    public RestoreOptions WithEnvironmentDefaults(bool fetchGiven, bool decodeGiven)
    {
        var o = this;
        if (!fetchGiven && int.TryParse(Environment.GetEnvironmentVariable("PBS_RESTORE_FETCH_CONCURRENCY"), out int f) && f is >= 1 and <= 256)
            o = o with { FetchConcurrency = f };
        if (!decodeGiven && int.TryParse(Environment.GetEnvironmentVariable("PBS_RESTORE_MAX_THREADS"), out int t) && t is >= 1 and <= 256)
            o = o with { DecodeConcurrency = t };
        return o;
    }
}
