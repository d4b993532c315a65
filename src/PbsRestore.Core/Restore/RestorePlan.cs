using PbsRestore.Sources;
using PbsRestore.Formats;

namespace PbsRestore.Restore;


/// <summary>
/// The restore of one index, planned before any chunk is read (as restic plans before it fetches): the jobs in
/// the order the index first needs them, zero chunks set aside (they become holes or explicit zero writes),
/// duplicates folded into one job each. Built by <see cref="Plan"/>; immutable.
/// </summary>
public sealed class RestorePlan
{
    private RestorePlan(string archive, long size, int maxChunkSize, IReadOnlyList<ChunkJob> jobs, IReadOnlyList<(long Offset, int Length)> zeros, int entries)
    {
        Archive = archive;
        Size = size;
        MaxChunkSize = maxChunkSize;
        Jobs = jobs;
        ZeroRanges = zeros;
        EntryCount = entries;
    }

    public string Archive { get; }
    public long Size { get; }
    public int MaxChunkSize { get; }
    public IReadOnlyList<ChunkJob> Jobs { get; }
    /// <summary>Index entries whose chunk is all zeros: nothing to fetch.</summary>
    public IReadOnlyList<(long Offset, int Length)> ZeroRanges { get; }
    public int EntryCount { get; }
    public int DedupHits => EntryCount - ZeroRanges.Count - Jobs.Count - ResumedJobs;

    /// <summary>Jobs left out because an earlier, interrupted run finished them (see <see cref="Without"/>).</summary>
    public int ResumedJobs { get; private init; }
    /// <summary>Index entries (and logical bytes) those jobs cover.</summary>
    public int ResumedEntries { get; private init; }
    public long ResumedBytes { get; private init; }

    /// <summary>This plan without the jobs whose first index entry is in <paramref name="finished"/> (a resumed restore).</summary>
    public RestorePlan Without(IReadOnlySet<int> finished)
    {
        if (finished.Count == 0) return this;
        var left = new List<ChunkJob>(Jobs.Count);
        int jobs = 0, entries = 0;
        long bytes = 0;
        foreach (var job in Jobs)
        {
            if (finished.Contains(job.FirstIndex))
            {
                jobs++;
                entries += job.Offsets.Length;
                bytes += (long)job.Length * job.Offsets.Length;
            }
            else left.Add(job);
        }
        return new RestorePlan(Archive, Size, MaxChunkSize, left, ZeroRanges, EntryCount)
        {
            ResumedJobs = ResumedJobs + jobs,
            ResumedEntries = ResumedEntries + entries,
            ResumedBytes = ResumedBytes + bytes,
        };
    }

    /// <param name="archive">Name used in errors.</param>
    /// <param name="index">The verified index.</param>
    /// <param name="zeroDigestFor">The zero-chunk digest for a chunk length (plain or keyed as the archive's chunks are), or null to skip zero detection.</param>
    public static RestorePlan Plan(string archive, IChunkIndex index, Func<int, ChunkDigest>? zeroDigestFor)
    {
        var zeroCache = new Dictionary<int, ChunkDigest>();
        var jobsByDigest = new Dictionary<ChunkDigest, (int First, int Length, List<long> Offsets)>();
        var order = new List<ChunkDigest>();
        var zeros = new List<(long, int)>();
        for (int i = 0; i < index.Count; i++)
        {
            var digest = index.DigestAt(i);
            int length = index.LengthOf(i);
            long offset = index.OffsetOf(i);
            if (zeroDigestFor is not null)
            {
                if (!zeroCache.TryGetValue(length, out var zero))
                    zeroCache[length] = zero = zeroDigestFor(length);
                if (digest == zero)
                {
                    zeros.Add((offset, length));
                    continue;
                }
            }
            if (jobsByDigest.TryGetValue(digest, out var job))
            {
                if (job.Length != length)
                    throw new PbsFormatException($"{archive}: chunk {digest} appears with two lengths ({job.Length} at entry {job.First}, {length} at entry {i})", "IndexInconsistent");
                job.Offsets.Add(offset);
            }
            else
            {
                jobsByDigest[digest] = (i, length, [offset]);
                order.Add(digest);
            }
        }
        var jobs = order.Select(d => { var j = jobsByDigest[d]; return new ChunkJob(d, j.First, j.Length, j.Offsets.ToArray()); }).ToList();
        return new RestorePlan(archive, index.Size, Math.Max(index.MaxChunkSize, 1), jobs, zeros, index.Count);
    }
}
