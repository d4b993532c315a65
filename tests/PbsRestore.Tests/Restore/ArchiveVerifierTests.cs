using System.Collections.Concurrent;
using PbsRestore.Formats;
using PbsRestore.Restore;
using PbsRestore.Sources;

namespace PbsRestore.Tests.Restore;

/// <summary>Verify mode: the pipeline's chunk-error policy, and <see cref="ArchiveVerifier"/> on the golden datastore.</summary>
public sealed class ArchiveVerifierTests
{
    private const int ChunkSize = 4096;

    /// <summary>
    /// 20 chunks (entry 7 a duplicate of entry 6): entry 3 is served with a flipped payload byte, entry 9 with another
    /// chunk's blob, entry 14 is missing; every other chunk is fine.
    /// </summary>
    private static (FixedIndex Index, FakeChunkSource Source, Dictionary<int, (ChunkDigest Digest, string ErrorId)> Bad) MakeDamagedImage()
    {
        var rng = new Random(7);
        var source = new FakeChunkSource();
        var digests = new List<ChunkDigest>();
        var chunks = new List<byte[]>();
        for (int i = 0; i < 20; i++)
        {
            var plain = new byte[ChunkSize];
            if (i == 7) chunks[6].CopyTo(plain, 0);
            else rng.NextBytes(plain);
            chunks.Add(plain);
            digests.Add(i == 14 ? ChunkVerifier.ComputeDigest(plain, null) : source.Add(plain));
        }
        using var enc = new BlobEncoder();
        var flipped = enc.Encode(chunks[3], null, compress: false);
        flipped[^1] ^= 0x01;
        source.Replace(digests[3], flipped);
        source.Replace(digests[9], enc.Encode(chunks[10], null, compress: true));
        var index = FixedIndex.Parse(FixedIndex.Build(Guid.NewGuid(), DateTimeOffset.UnixEpoch, 20L * ChunkSize, ChunkSize, digests));
        var bad = new Dictionary<int, (ChunkDigest, string)>
        {
            [3] = (digests[3], "BlobCrcMismatch"),
            [9] = (digests[9], "ChunkDigestMismatch"),
            [14] = (digests[14], "ChunkMissing"),
        };
        return (index, source, bad);
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(8, 2)]
    [InlineData(32, 4)]
    public async Task Policy_records_every_bad_chunk_and_checks_all_others(int fetch, int decode)
    {
        var (index, source, bad) = MakeDamagedImage();
        var plan = RestorePlan.Plan("test.img.fidx", index, null);
        var sink = new RecordingSink(index.Size);
        var counters = new RestoreCounters();
        var reported = new ConcurrentBag<ChunkException>();

        await RestorePipeline.RunAsync(plan, source, null, false, sink,
            new RestoreOptions { FetchConcurrency = fetch, DecodeConcurrency = decode }, counters, default,
            onChunkError: e => { reported.Add(e); return true; });

        var got = reported.OrderBy(e => e.ChunkIndex).ToList();
        Assert.Equal(bad.Keys.Order(), got.Select(e => e.ChunkIndex));
        foreach (var e in got)
        {
            Assert.Equal(bad[e.ChunkIndex].Digest.ToString(), e.Digest);
            Assert.Equal(bad[e.ChunkIndex].ErrorId, e.ErrorId);
            Assert.Equal((long)e.ChunkIndex * ChunkSize, e.Offset);
            Assert.Equal("test.img.fidx", e.Archive);
        }
        // Every good chunk was fetched once (the duplicate too, once) and written; no bad one was written. A chunk
        // that failed a check was read again up to IntegrityReads times in all (it might have been damaged in transit).
        int damaged = bad.Values.Count(b => b.ErrorId != "ChunkMissing");
        Assert.Equal(damaged * (RestorePipeline.IntegrityReads - 1), counters.Rereads);
        Assert.Equal(plan.Jobs.Count + counters.Rereads, source.Requested.Count);
        Assert.Equal(19, plan.Jobs.Count);
        var written = sink.Offsets.ToHashSet();
        foreach (int i in Enumerable.Range(0, 20))
            Assert.Equal(!bad.ContainsKey(i), written.Contains((long)i * ChunkSize));
        Assert.Equal(index.Size, counters.DoneBytes);
        Assert.True(sink.Flushed);
    }

    [Fact]
    public async Task Without_a_policy_the_first_bad_chunk_still_aborts()
    {
        var (index, source, bad) = MakeDamagedImage();
        var plan = RestorePlan.Plan("test.img.fidx", index, null);
        var e = await Assert.ThrowsAsync<ChunkException>(() => RestorePipeline.RunAsync(plan, source, null, false, new RecordingSink(index.Size),
            new RestoreOptions { FetchConcurrency = 1, DecodeConcurrency = 1 }, new RestoreCounters(), default));
        Assert.Contains(e.ChunkIndex, bad.Keys);
    }

    [Fact]
    public async Task A_policy_that_declines_aborts_with_that_chunk()
    {
        var (index, source, _) = MakeDamagedImage();
        var plan = RestorePlan.Plan("test.img.fidx", index, null);
        var e = await Assert.ThrowsAsync<ChunkException>(() => RestorePipeline.RunAsync(plan, source, null, false, new RecordingSink(index.Size),
            new RestoreOptions { FetchConcurrency = 1, DecodeConcurrency = 1 }, new RestoreCounters(), default,
            onChunkError: x => x.ErrorId != "ChunkMissing"));
        Assert.Equal("ChunkMissing", e.ErrorId);
        Assert.Equal(14, e.ChunkIndex);
    }

    [Fact]
    public async Task Cancellation_is_never_reported_as_a_chunk_error()
    {
        var (index, source, _) = MakeDamagedImage();
        source.BlockForever = true;
        var plan = RestorePlan.Plan("test.img.fidx", index, null);
        var reported = new ConcurrentBag<ChunkException>();
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => RestorePipeline.RunAsync(plan, source, null, false,
            new RecordingSink(index.Size), new RestoreOptions { FetchConcurrency = 4 }, new RestoreCounters(), cts.Token,
            onChunkError: e => { reported.Add(e); return true; }));
        Assert.Empty(reported);
    }

    public static TheoryData<string> GoldenSnapshots()
    {
        var data = new TheoryData<string>();
        foreach (var s in GoldenManifest.Instance.Snapshots) data.Add(s.Path);
        return data;
    }

    [Theory]
    [MemberData(nameof(GoldenSnapshots))]
    public async Task Every_golden_archive_verifies_ok(string snapshotPath)
    {
        var snap = GoldenManifest.Instance.Snapshot(snapshotPath);
        var crypt = snap.OpenKey();
        await using var reader = await snap.OpenAsync();
        var restorer = new SnapshotRestorer(reader, crypt);
        var (manifest, entries) = await restorer.SelectAsync(_ => true, default);
        var opened = await restorer.OpenAsync(default);
        Assert.Equal(manifest.Files.Count, entries.Count);
        foreach (var entry in entries)
        {
            var result = await ArchiveVerifier.VerifyAsync(opened.Open(entry), new RestoreOptions(), new RestoreCounters(), default);
            var golden = snap.Archives.Single(a => a.Name == entry.FileName);
            Assert.True(result.Ok, string.Join("; ", result.BadChunks));
            Assert.Equal(golden.IsBlob ? golden.PlaintextSize : golden.Size, result.Bytes);
            Assert.Equal(golden.IsBlob ? 1 : golden.Chunks.Select(c => c.Digest).Distinct().Count(), result.Chunks);
        }
    }
}
