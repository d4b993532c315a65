using PbsRestore.Publishing;
using PbsRestore.Tests.Fixtures;

namespace PbsRestore.Tests.Publishing;

/// <summary>The overlay's map: written and unmapped runs anywhere on a large sparse disk survive a keep and reopen.</summary>
public sealed class WriteOverlayTests : IDisposable
{
    private readonly TempDir _dir = new();
    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task A_kept_map_of_a_large_disk_holds_every_run_exactly_and_is_refused_for_another_identity()
    {
        const long length = 64L << 30; // 64 GiB, sparse: only the written blocks take space
        string path = Path.Combine(_dir.Path, "big.overlay");
        var written = new long[] { 0, 63, 64, 65, (1 << 18) - 1, 1 << 18, 5_000_000, length / 4096 - 1 };
        var zeroed = (First: 3L << 18, Count: 200L);
        using (var overlay = WriteOverlay.Open(path, length, "vm/1/disk.img index abc", keep: true))
        {
            foreach (long b in written) await overlay.WriteBlocksAsync(b, new byte[4096], default);
            overlay.MarkZero(zeroed.First, zeroed.Count);
            await overlay.WriteBlocksAsync(zeroed.First + 10, new byte[4096], default); // a written block inside the unmapped run
            overlay.Flush();
            overlay.Flush(); // unchanged: nothing to save again
        }
        using (var again = WriteOverlay.Open(path, length, "vm/1/disk.img index abc"))
        {
            Assert.False(again.Created);
            Assert.Equal(written.Length + 1, again.WrittenBlocks);
            foreach (long b in written) Assert.Equal(OverlayBlockState.Written, again.StateOf(b));
            foreach (long b in new long[] { 1, 62, 66, (1 << 18) + 1, 4_999_999, 5_000_001, length / 4096 - 2 })
                Assert.Equal(OverlayBlockState.Backing, again.StateOf(b));
            Assert.Equal(OverlayBlockState.Backing, again.StateOf(zeroed.First - 1));
            Assert.Equal(OverlayBlockState.Zero, again.StateOf(zeroed.First));
            Assert.Equal(OverlayBlockState.Written, again.StateOf(zeroed.First + 10));
            Assert.Equal(OverlayBlockState.Zero, again.StateOf(zeroed.First + zeroed.Count - 1));
            Assert.Equal(OverlayBlockState.Backing, again.StateOf(zeroed.First + zeroed.Count));
        }
        Assert.False(File.Exists(path)); // reopened without keeping: gone
    }

    [Fact]
    public void An_overlay_made_for_another_disk_is_refused_and_left_alone()
    {
        string path = Path.Combine(_dir.Path, "o.overlay");
        using (var overlay = WriteOverlay.Open(path, 1 << 20, "a", keep: true)) { }
        var e = Assert.Throws<PbsException>(() => WriteOverlay.Open(path, 1 << 20, "b"));
        Assert.Equal("OverlayMismatch", e.ErrorId);
        e = Assert.Throws<PbsException>(() => WriteOverlay.Open(path, 2 << 20, "a"));
        Assert.Equal("OverlayMismatch", e.ErrorId);
        Assert.True(File.Exists(path));
        Assert.True(File.Exists(WriteOverlay.MapPathFor(path)));
    }
}
