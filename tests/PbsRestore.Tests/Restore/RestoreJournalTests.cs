using System.Security.Cryptography;
using PbsRestore.Formats;
using PbsRestore.Fixtures;
using PbsRestore.Restore;
using PbsRestore.Sources;
using PbsRestore.Tests.Fixtures;
using PbsRestore.Destinations;
using PbsRestore.Sources.Local;

namespace PbsRestore.Tests.Restore;

/// <summary>The resume journal's format, and -Resume through the core on a folder datastore.</summary>
public sealed class RestoreJournalTests : IDisposable
{
    private const int ChunkSize = 64 * 1024;
    private static readonly DateTimeOffset Time = DateTimeOffset.FromUnixTimeSeconds(1714557600);
    private static readonly JournalIdentity Identity = new("vm/1/2024-05-01T10:00:00Z", "drive-scsi0.img.fidx", "ab12", 1 << 20, "Raw");
    private readonly TempDir _dir = new();
    public void Dispose() => _dir.Dispose();

    private string P(string name) => Path.Combine(_dir.Path, name);

    [Fact]
    public void Records_before_a_checkpoint_are_confirmed_and_later_ones_are_not()
    {
        using (var j = RestoreJournal.Create(P("a.journal"), Identity))
        {
            j.MarkDone(0);
            j.MarkDone(7);
            j.Checkpoint(new NullImageSink());
            j.MarkDone(3);
        }
        var c = RestoreJournal.Load(P("a.journal"));
        Assert.Equal(Identity, c.Identity);
        Assert.Equal([0, 7], c.Confirmed.Order());
        Assert.Equal([3], c.Unconfirmed);
    }

    [Fact]
    public void A_torn_last_record_is_ignored_and_continue_confirms_what_was_verified()
    {
        using (var j = RestoreJournal.Create(P("b.journal"), Identity))
        {
            j.MarkDone(1);
            j.MarkDone(2);
        }
        using (var f = new FileStream(P("b.journal"), FileMode.Append)) f.Write([0x05, 0x00]); // died mid-append
        var c = RestoreJournal.Load(P("b.journal"));
        Assert.Empty(c.Confirmed);
        Assert.Equal([1, 2], c.Unconfirmed);
        using (var j = RestoreJournal.Continue(P("b.journal"), c, [2]))
            j.MarkDone(9);
        var after = RestoreJournal.Load(P("b.journal"));
        Assert.Equal([2], after.Confirmed.Order());
        Assert.Equal([9], after.Unconfirmed);
    }

    [Fact]
    public void A_file_that_is_not_a_journal_is_refused()
    {
        File.WriteAllText(P("c.journal"), "hello, not a journal");
        var e = Assert.Throws<PbsException>(() => RestoreJournal.Load(P("c.journal")));
        Assert.Equal("ResumeJournalInvalid", e.ErrorId);
        Assert.Contains("c.journal", e.Message);
    }

    private (LocalDatastore Store, SnapshotRef Snapshot, string Sha256) Generated()
    {
        var writer = new DatastoreWriter(P("store"));
        var snapshot = writer.BeginSnapshot("", "vm", "1", Time);
        var image = snapshot.AddImage("drive-scsi0.img", ImagePattern.Parse("random:2,zero:1,text:1,dup:1", 40L * ChunkSize, seed: 3), ChunkSize);
        snapshot.AddBlob("qemu-server.conf", "scsi0: local:vm-1-disk-0\n"u8.ToArray());
        snapshot.Finish();
        return (new LocalDatastore(writer.RootPath), new SnapshotRef(BackupNamespace.Root, "vm", "1", Time), image.Sha256);
    }

    private static async Task<RestoreResult> RestoreAsync(LocalDatastore store, SnapshotRef snapshot, string dest, bool resume)
    {
        await using var reader = await store.OpenSnapshotAsync(snapshot, default);
        return await new ArchiveRestorer(reader, null).RestoreAsync("drive-scsi0.img", dest, new DestinationOptions { Resume = resume }, new RestoreOptions(),
            new RestoreCounters(), default);
    }

    [Fact]
    public async Task Resume_checks_unconfirmed_records_against_the_bytes_and_fetches_what_is_wrong()
    {
        var (store, snapshot, sha) = Generated();
        var full = await RestoreAsync(store, snapshot, P("full.img"), resume: false);
        Assert.Equal(sha, Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(P("full.img")))));

        // As after a power loss: every chunk recorded but no checkpoint, and one chunk's bytes never reached the disk.
        string dest = P("resumed.img");
        var bytes = File.ReadAllBytes(P("full.img"));
        await using (var reader = await store.OpenSnapshotAsync(snapshot, default))
        {
            var opened = await OpenedSnapshot.OpenArchiveAsync(reader, null, "drive-scsi0.img", default);
            var plan = RestorePlan.Plan(opened.FileName, await opened.ReadIndexAsync(default), l => ChunkVerifier.ZeroChunkDigest(l, null));
            var lost = plan.Jobs[5];
            Array.Clear(bytes, (int)lost.Offsets[0], lost.Length);
            File.WriteAllBytes(DestinationFile.PartialPathFor(dest), bytes);
            using var j = RestoreJournal.Create(ImageDestinations.JournalPathFor(dest),
                new JournalIdentity(snapshot.ToString(), opened.FileName, opened.Entry.CsumHex, plan.Size, "Raw"));
            foreach (var job in plan.Jobs) j.MarkDone(job.FirstIndex);
        }

        var r = await RestoreAsync(store, snapshot, dest, resume: true);
        Assert.Equal(sha, Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(dest))));
        Assert.Equal(1, r.ChunksFetched);
        Assert.Equal(full.ChunksFetched, r.ChunksFetched + (full.ChunksFetched - 1));
        Assert.False(File.Exists(ImageDestinations.JournalPathFor(dest)));
        Assert.False(File.Exists(DestinationFile.PartialPathFor(dest)));
    }

    [Fact]
    public async Task Resume_refuses_a_journal_for_another_index_and_keeps_the_partial()
    {
        var (store, snapshot, _) = Generated();
        string dest = P("other.img");
        File.WriteAllBytes(DestinationFile.PartialPathFor(dest), new byte[40 * ChunkSize]);
        using (RestoreJournal.Create(ImageDestinations.JournalPathFor(dest), Identity with { Snapshot = snapshot.ToString() })) { }
        var e = await Assert.ThrowsAsync<PbsException>(() => RestoreAsync(store, snapshot, dest, resume: true));
        Assert.Equal("ResumeMismatch", e.ErrorId);
        Assert.Contains("index ab12", e.Message);
        Assert.True(File.Exists(DestinationFile.PartialPathFor(dest)));
        Assert.True(File.Exists(ImageDestinations.JournalPathFor(dest)));
    }

    [Fact]
    public async Task Resume_never_replaces_an_interrupted_image_with_another_archive()
    {
        const string archive = "qemu-server.conf";
        var (store, snapshot, _) = Generated();
        string dest = P("x.raw");
        File.WriteAllBytes(DestinationFile.PartialPathFor(dest), new byte[40 * ChunkSize]);
        using (RestoreJournal.Create(ImageDestinations.JournalPathFor(dest), Identity with { Snapshot = snapshot.ToString() })) { }
        await using var reader = await store.OpenSnapshotAsync(snapshot, default);
        var e = await Assert.ThrowsAnyAsync<PbsException>(() => new ArchiveRestorer(reader, null).RestoreAsync(archive, dest,
            new DestinationOptions { Resume = true }, new RestoreOptions(), new RestoreCounters(), default));
        Assert.Equal("ResumeMismatch", e.ErrorId);
        Assert.Contains("drive-scsi0.img.fidx", e.Message);
        Assert.Equal(40 * ChunkSize, new FileInfo(DestinationFile.PartialPathFor(dest)).Length);
        Assert.True(File.Exists(ImageDestinations.JournalPathFor(dest)));
    }

    [Fact]
    public async Task A_new_restore_refuses_to_delete_an_interrupted_one_unless_forced()
    {
        var (store, snapshot, sha) = Generated();
        string dest = P("interrupted.img");
        var partial = new byte[40 * ChunkSize];
        partial[12345] = 0x5a; // "restored so far"
        File.WriteAllBytes(DestinationFile.PartialPathFor(dest), partial);
        using (RestoreJournal.Create(ImageDestinations.JournalPathFor(dest), Identity with { Snapshot = snapshot.ToString() })) { }
        foreach (string archive in new[] { "drive-scsi0.img", "qemu-server.conf" })
        {
            await using var reader = await store.OpenSnapshotAsync(snapshot, default);
            var e = await Assert.ThrowsAsync<PbsException>(() => new ArchiveRestorer(reader, null).RestoreAsync(archive, dest,
                new DestinationOptions(), new RestoreOptions(), new RestoreCounters(), default));
            Assert.Equal("InterruptedRestoreExists", e.ErrorId);
            Assert.StartsWith("an interrupted restore of this archive exists; add -Resume to continue it or -Force to start over", e.Message);
            Assert.Contains(DestinationFile.PartialPathFor(dest), e.Message);
            Assert.Equal(partial, File.ReadAllBytes(DestinationFile.PartialPathFor(dest)));
            Assert.True(File.Exists(ImageDestinations.JournalPathFor(dest)));
        }
        await using (var reader = await store.OpenSnapshotAsync(snapshot, default))
        {
            var r = await new ArchiveRestorer(reader, null).RestoreAsync("drive-scsi0.img", dest, new DestinationOptions { Force = true }, new RestoreOptions(),
                new RestoreCounters(), default);
            Assert.Equal(0, r.ChunksResumed);
        }
        Assert.Equal(sha, Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(dest))));
        Assert.False(File.Exists(ImageDestinations.JournalPathFor(dest)));
    }

    [Theory]
    [InlineData("conf.vhdx", null)]
    [InlineData("conf.txt", ImageFormat.Vhd)]
    public async Task Only_disk_images_become_vhdx_or_vhd(string name, ImageFormat? format)
    {
        var (store, snapshot, _) = Generated();
        await using var reader = await store.OpenSnapshotAsync(snapshot, default);
        var e = await Assert.ThrowsAsync<PbsException>(() => new ArchiveRestorer(reader, null).RestoreAsync("qemu-server.conf", P(name),
            new DestinationOptions { Format = format }, new RestoreOptions(), new RestoreCounters(), default));
        Assert.Equal("FormatNotSupported", e.ErrorId);
        Assert.Contains("not a disk image", e.Message);
        Assert.False(File.Exists(P(name)));
    }

    [Fact]
    public async Task Cancelled_before_anything_was_written_leaves_nothing()
    {
        // (Ctrl+C in the middle of a restore, which keeps the partial file and journal, is tested through the
        // cmdlet in tests/pester/Restore-PbsImage.Resume.Tests.ps1.)
        var (store, snapshot, _) = Generated();
        string dest = P("cancelled.img");
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        await using (var reader = await store.OpenSnapshotAsync(snapshot, default))
        {
            var restorer = new ArchiveRestorer(reader, null);
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
                restorer.RestoreAsync("drive-scsi0.img", dest, new DestinationOptions(), new RestoreOptions(), new RestoreCounters(), cts.Token));
        }
        Assert.False(File.Exists(dest));
        Assert.False(File.Exists(DestinationFile.PartialPathFor(dest)));
        Assert.False(File.Exists(ImageDestinations.JournalPathFor(dest)));
    }
}
