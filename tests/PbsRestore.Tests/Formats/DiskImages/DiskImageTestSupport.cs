using System.Buffers.Binary;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;
using PbsRestore.Fixtures;
using PbsRestore.Formats;
using PbsRestore.DiskImages;
using PbsRestore.Restore;
using PbsRestore.Sources;
using PbsRestore.Tests.Fixtures;
using PbsRestore.Destinations;
using PbsRestore.Sources.Local;

namespace PbsRestore.Tests.Formats.DiskImages;

/// <summary>
/// Runs qemu-img (Debian: qemu-utils), the independent reader the VHD and VHDX tests check our files with. A missing
/// qemu-img fails the test, never skips it: these tests are the only proof that other programs read our images.
/// </summary>
internal static class QemuImg
{
    private static readonly Lazy<string?> Found = new(Find);

    public static string Executable => Found.Value ?? throw new Xunit.Sdk.XunitException(
        "qemu-img was not found: install qemu-utils (Debian/Ubuntu: apt-get install qemu-utils) to run the VHD/VHDX tests");

    private static string? Find()
    {
        string name = OperatingSystem.IsWindows() ? "qemu-img.exe" : "qemu-img";
        var dirs = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries);
        return dirs.Append("/usr/bin").Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);
    }

    public static (int Exit, string Out, string Err) Run(params string[] args)
    {
        var psi = new ProcessStartInfo(Executable) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, stdout, stderr.Result);
    }

    private static void Ok((int Exit, string Out, string Err) r, string what)
    {
        if (r.Exit != 0) Assert.Fail($"qemu-img {what} failed ({r.Exit}): {r.Err}{r.Out}");
    }

    /// <summary>qemu-img check: exit 0 and no errors or leaks.</summary>
    public static void Check(string file, string format)
    {
        var r = Run("check", "-f", format, file);
        Ok(r, "check " + file);
        Assert.Contains("No errors were found on the image.", r.Out);
    }

    /// <summary>The virtual size qemu-img sees.</summary>
    public static long VirtualSize(string file, string format)
    {
        var r = Run("info", "--output=json", "-f", format, file);
        Ok(r, "info " + file);
        using var doc = JsonDocument.Parse(r.Out);
        return doc.RootElement.GetProperty("virtual-size").GetInt64();
    }

    public static void ConvertToRaw(string file, string format, string raw)
    {
        Ok(Run("convert", "-f", format, "-O", "raw", file, raw), "convert " + file);
    }
}

/// <summary>Shared checks and restore helpers of the VHD/VHDX tests.</summary>
internal static class DiskImageTestSupport
{
    /// <summary>
    /// Converts <paramref name="image"/> to raw with qemu-img (after qemu-img check for VHDX) and asserts: length
    /// <paramref name="paddedSize"/>, the first <paramref name="logicalSize"/> bytes hash to <paramref name="sha256"/>,
    /// the rest are zeros. The raw copy is deleted afterwards.
    /// </summary>
    public static void AssertReadsBack(string image, string format, long logicalSize, long paddedSize, string sha256)
    {
        if (format == "vhdx") QemuImg.Check(image, format);
        Assert.Equal(paddedSize, QemuImg.VirtualSize(image, format));
        string raw = image + ".raw";
        try
        {
            QemuImg.ConvertToRaw(image, format, raw);
            AssertRaw(raw, logicalSize, paddedSize, sha256);
        }
        finally
        {
            File.Delete(raw);
        }
    }

    public static void AssertRaw(string raw, long logicalSize, long paddedSize, string sha256)
    {
        Assert.Equal(paddedSize, new FileInfo(raw).Length);
        using var stream = new FileStream(raw, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[4 << 20];
        long done = 0;
        while (done < logicalSize)
        {
            int n = stream.Read(buffer, 0, (int)Math.Min(buffer.Length, logicalSize - done));
            Assert.True(n > 0, "raw image shorter than the disk");
            hash.AppendData(buffer, 0, n);
            done += n;
        }
        Assert.Equal(sha256, Convert.ToHexStringLower(hash.GetHashAndReset()));
        int m;
        while ((m = stream.Read(buffer, 0, buffer.Length)) > 0)
            Assert.True(!buffer.AsSpan(0, m).ContainsAnyExcept((byte)0), $"padding after byte {logicalSize} is not all zeros");
    }

    /// <summary>Reads a VHDX's structures and BAT back with <see cref="VhdxLayout"/>: metadata, layout, payload and sector bitmap entries.</summary>
    public static (VhdxMetadata Metadata, VhdxLayout Layout, ulong[] Payload, ulong[] SectorBitmaps) ReadVhdx(string file)
    {
        using var handle = File.OpenHandle(file);
        byte[] Read(long offset, long length)
        {
            var buffer = new byte[length];
            int done = 0;
            while (done < length)
            {
                int n = RandomAccess.Read(handle, buffer.AsSpan(done), offset + done);
                Assert.True(n > 0, $"{file} ends inside a VHDX structure");
                done += n;
            }
            return buffer;
        }
        var (_, _, regions) = VhdxLayout.ParseHeaderSection(Read(0, VhdxLayout.HeaderSectionSize));
        var md = regions.Single(r => r.Id == VhdxLayout.MetadataRegionId);
        var meta = VhdxLayout.ParseMetadataRegion(Read(md.FileOffset, md.Length));
        var layout = VhdxLayout.ForDisk(meta.VirtualSize, meta.BlockSize);
        var bat = regions.Single(r => r.Id == VhdxLayout.BatRegionId);
        Assert.True(bat.Length >= layout.BatEntryCount * 8);
        var entries = Read(bat.FileOffset, layout.BatEntryCount * 8);
        var payload = new List<ulong>();
        var bitmaps = new List<ulong>();
        for (long i = 0; i < layout.BatEntryCount; i++)
            (layout.IsSectorBitmapEntry(i) ? bitmaps : payload).Add(BinaryPrimitives.ReadUInt64LittleEndian(entries.AsSpan((int)(i * 8))));
        Assert.Equal(layout.DataBlockCount, payload.Count);
        return (meta, layout, payload.ToArray(), bitmaps.ToArray());
    }

    /// <summary>Index archives (fixed and dynamic) of the golden datastore: (snapshot path, stored name).</summary>
    public static TheoryData<string, string> GoldenIndexArchives()
    {
        var data = new TheoryData<string, string>();
        foreach (var (snapshot, archive) in GoldenManifest.Instance.AllArchives())
            if (archive.IsFixedIndex || archive.IsDynamicIndex)
                data.Add(snapshot.Path, archive.Name);
        return data;
    }

    /// <summary>
    /// Restores <paramref name="archive"/> through the real pipeline into the destination <paramref name="create"/>
    /// makes from the index (size, largest chunk), then commits it. Returns the index.
    /// </summary>
    public static async Task<IChunkIndex> RestoreAsync(ISnapshotReader reader, CryptConfig? key, string archive,
        Func<IChunkIndex, IDestination> create, RestoreOptions? options = null)
    {
        var opened = await OpenedSnapshot.OpenArchiveAsync(reader, key, archive, default);
        var index = await opened.ReadIndexAsync(default);
        await using var sink = create(index);
        await ArchiveRestorer.RestoreToSinkAsync(opened, sink, options ?? new RestoreOptions(), new RestoreCounters(), metrics: null, default);
        sink.Commit(false);
        return index;
    }
}

/// <summary>
/// A generated datastore holding one 2 GiB image (4 MiB chunks): zero chunks, duplicate chunks, random and
/// compressible data. Written once per test run for the VHD and VHDX tests (one collection), deleted afterwards.
/// </summary>
public sealed class GeneratedImageFixture : IDisposable
{
    public const long Size = 2L << 30;
    public const int ChunkSize = 4 << 20;
    public const string Archive = "drive-scsi0.img";
    public static readonly DateTimeOffset Time = new(2024, 5, 1, 10, 0, 0, TimeSpan.Zero);
    private readonly TempDir _dir = new();

    public GeneratedImageFixture()
    {
        var writer = new DatastoreWriter(Path.Combine(_dir.Path, "store"));
        var snapshot = writer.BeginSnapshot("", "vm", "500", Time);
        // 3 of every 8 chunks zero, 1 a duplicate of an earlier one; the data chunks both random and compressible.
        var info = snapshot.AddImage(Archive, ImagePattern.Parse("zero:2,random:2,text:1,dup:1,zero:1,random:1", Size, seed: 11), ChunkSize);
        snapshot.Finish();
        Store = writer.RootPath;
        Sha256 = info.Sha256;
        WorkDir = Path.Combine(_dir.Path, "out");
        Directory.CreateDirectory(WorkDir);
    }

    public string Store { get; }
    /// <summary>SHA-256 of the whole 2 GiB image.</summary>
    public string Sha256 { get; }
    /// <summary>A folder for the tests' output files (deleted with the fixture; tests delete their own files too).</summary>
    public string WorkDir { get; }

    public Task<ISnapshotReader> OpenAsync() =>
        new LocalDatastore(Store).OpenSnapshotAsync(new SnapshotRef(BackupNamespace.Root, "vm", "500", Time), default);

    public void Dispose() => _dir.Dispose();
}

/// <summary>The 2 GiB tests share one generated datastore and run one at a time (disk space, I/O).</summary>
[CollectionDefinition(nameof(GeneratedImageCollection))]
public sealed class GeneratedImageCollection : ICollectionFixture<GeneratedImageFixture>;
