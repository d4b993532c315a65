using PbsRestore.Restore;
using PbsRestore.Destinations;

namespace PbsRestore.Tests.Restore;

/// <summary>Choosing and guarding destinations: format from the extension, nothing but regular files replaced.</summary>
public sealed class DestinationsTests
{
    [Theory]
    [InlineData("disk.img", null, ImageFormat.Raw)]
    [InlineData("disk.raw", null, ImageFormat.Raw)]
    [InlineData("disk.VHDX", null, ImageFormat.Vhdx)]
    [InlineData("disk.vhd", null, ImageFormat.Vhd)]
    [InlineData("disk.img", ImageFormat.Vhdx, ImageFormat.Vhdx)]
    [InlineData("disk.vhdx", ImageFormat.Raw, ImageFormat.Raw)]
    public void The_format_comes_from_the_parameter_else_the_extension(string path, ImageFormat? requested, ImageFormat expected) =>
        Assert.Equal(expected, ImageDestinations.FormatFor(path, requested));

    [SkippableFact]
    public void A_device_node_or_pipe_is_never_replaced_by_a_file()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "uses /dev/null as the device node, a Linux path");
        // /dev/null is a character device: a restore "to" it with -Force must not rename a file over it.
        var e = Assert.Throws<PbsException>(() => DestinationFile.CheckWritable("/dev/null", force: true));
        Assert.Equal("DestinationNotSupported", e.ErrorId);
        Assert.Contains("/dev/null", e.Message);
        Assert.False(ImageDestinations.IsDevice("/dev/null"));
        Assert.Throws<PbsException>(() => ImageDestinations.CheckWritable("/dev/null", force: true));
    }

    [Fact]
    public void A_file_destination_keeps_its_journal_beside_the_partial_file()
    {
        string dest = Path.Combine(Path.GetTempPath(), "x", "disk.img");
        Assert.Equal(dest + ".partial.journal", ImageDestinations.JournalPathFor(dest));
    }
}
