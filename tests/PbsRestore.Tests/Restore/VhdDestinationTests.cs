using System.Security.Cryptography;
using PbsRestore.Formats;
using PbsRestore.DiskImages;
using PbsRestore.Restore;
using PbsRestore.Tests.Fixtures;
using PbsRestore.Tests.Formats.DiskImages;
using PbsRestore.Destinations;
using static PbsRestore.Tests.Formats.DiskImages.DiskImageTestSupport;

namespace PbsRestore.Tests.Restore;

/// <summary>Fixed VHD output, read back by qemu-img (format vpc: info, convert to raw).</summary>
public sealed class VhdDestinationTests : IDisposable
{
    private const int MiB = 1 << 20;
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    public static TheoryData<string, string> GoldenArchives() => GoldenIndexArchives();

    private static VhdFooter ReadFooter(string file)
    {
        var bytes = File.ReadAllBytes(file);
        return VhdFooter.TryParseFixed(bytes.AsSpan(bytes.Length - VhdFooter.Size)) ?? throw new Xunit.Sdk.XunitException("no valid footer");
    }

    [Theory]
    [MemberData(nameof(GoldenArchives))]
    public async Task Every_golden_archive_restores_into_a_vhd_that_qemu_reads_bit_exactly(string snapshotPath, string archiveName)
    {
        var golden = GoldenManifest.Instance.Snapshot(snapshotPath).Archives.Single(a => a.Name == archiveName);
        string dest = Path.Combine(_dir.Path, archiveName + ".vhd");
        var snapshot = GoldenManifest.Instance.Snapshot(snapshotPath);
        await using var reader = await snapshot.OpenAsync();
        await RestoreAsync(reader, snapshot.OpenKey(), ArchiveNames.DisplayName(archiveName),
            ix => VhdDestination.Create(dest, ix.Size, force: false));

        Assert.False(File.Exists(DestinationFile.PartialPathFor(dest)));
        long padded = VhdFooter.RoundSize(golden.PlaintextSize);
        Assert.Equal(0, padded % MiB);
        Assert.Equal(padded + 512, new FileInfo(dest).Length);
        var footer = ReadFooter(dest);
        Assert.Equal((ulong)padded, footer.CurrentSize);
        Assert.Equal((ulong)padded, footer.OriginalSize);
        AssertReadsBack(dest, "vpc", golden.PlaintextSize, padded, golden.PlaintextSha256);
    }

    [Fact]
    public async Task Open_partial_continues_after_a_flush_and_the_result_is_bit_exact()
    {
        const long size = 5L * MiB + 3;
        var expected = new byte[size];
        new Random(3).NextBytes(expected.AsSpan(0, 2 * MiB));
        new Random(4).NextBytes(expected.AsSpan(4 * MiB));
        string dest = Path.Combine(_dir.Path, "resume.vhd");
        Guid id;
        await using (var run1 = VhdDestination.Create(dest, size, force: false))
        {
            run1.Write(0, expected.AsSpan(0, 2 * MiB));
            run1.Flush();
            run1.KeepPartial = true;
            id = ReadFooter(run1.PartialPath).UniqueId;
        }
        await using (var run2 = VhdDestination.OpenPartial(dest, size))
        {
            Assert.Equal(6L * MiB, run2.VirtualSize);
            run2.Write(4 * MiB, expected.AsSpan(4 * MiB));
            run2.Commit(false);
        }
        Assert.Equal(id, ReadFooter(dest).UniqueId); // the same disk, resumed
        AssertReadsBack(dest, "vpc", size, 6L * MiB, Convert.ToHexStringLower(SHA256.HashData(expected)));
    }

    [Fact]
    public async Task Open_partial_refuses_a_different_disk_or_a_file_never_flushed()
    {
        string dest = Path.Combine(_dir.Path, "other.vhd");
        await using (var run1 = VhdDestination.Create(dest, 3L * MiB, force: false))
        {
            run1.Write(0, new byte[] { 1, 2, 3 });
            run1.Flush();
            run1.KeepPartial = true;
        }
        var e = Assert.Throws<PbsException>(() => VhdDestination.OpenPartial(dest, 4L * MiB));
        Assert.Equal("ResumeStateMismatch", e.ErrorId);
        Assert.Contains("3145728-byte disk", e.Message);
        // The same disk after rounding to whole MiB is accepted.
        await using (var same = VhdDestination.OpenPartial(dest, 3L * MiB - 5)) same.KeepPartial = true;

        // A run that never flushed has no footer: nothing proves what it wrote.
        string fresh = Path.Combine(_dir.Path, "fresh.vhd");
        await using (var run = VhdDestination.Create(fresh, MiB, force: false))
        {
            run.Write(0, new byte[] { 9 });
            run.KeepPartial = true;
        }
        Assert.Equal("ResumeStateMismatch", Assert.Throws<PbsException>(() => VhdDestination.OpenPartial(fresh, MiB)).ErrorId);
        Assert.Equal("PartialFileNotFound", Assert.Throws<PbsNotFoundException>(() => VhdDestination.OpenPartial(Path.Combine(_dir.Path, "none.vhd"), MiB)).ErrorId);
    }

    [Fact]
    public async Task Writes_beyond_the_disk_are_refused_and_uncommitted_partial_is_deleted()
    {
        string dest = Path.Combine(_dir.Path, "x.vhd");
        await using (var v = VhdDestination.Create(dest, 1000, force: false))
        {
            Assert.Equal(MiB, v.VirtualSize);
            v.Write(MiB - 1, new byte[1]);
            // The footer is not disk space.
            Assert.Throws<ArgumentOutOfRangeException>(() => v.Write(MiB, new byte[1]));
        }
        Assert.False(File.Exists(DestinationFile.PartialPathFor(dest)));
        File.WriteAllText(dest, "keep me");
        Assert.Equal("DestinationExists", Assert.Throws<PbsException>(() => VhdDestination.Create(dest, MiB, force: false)).ErrorId);
        Assert.Equal("keep me", File.ReadAllText(dest));
    }
}

/// <summary>The generated 2 GiB image through the real pipeline into a fixed VHD.</summary>
[Collection(nameof(GeneratedImageCollection))]
public sealed class VhdGeneratedImageTests(GeneratedImageFixture image)
{
    [Fact]
    public async Task Two_GiB_image_restores_bit_exactly()
    {
        string dest = Path.Combine(image.WorkDir, "2g.vhd");
        try
        {
            await using var reader = await image.OpenAsync();
            await RestoreAsync(reader, null, GeneratedImageFixture.Archive, ix => VhdDestination.Create(dest, ix.Size, force: false));
            Assert.Equal(GeneratedImageFixture.Size + 512, new FileInfo(dest).Length);
            AssertReadsBack(dest, "vpc", GeneratedImageFixture.Size, GeneratedImageFixture.Size, image.Sha256);
        }
        finally
        {
            File.Delete(dest);
        }
    }
}
