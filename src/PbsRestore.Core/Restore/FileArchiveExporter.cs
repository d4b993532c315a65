using System.Formats.Tar;
using System.IO.Compression;
using System.Text;
using PbsRestore.Formats.Pxar;

namespace PbsRestore.Restore;

public enum FileExportFormat { Zip, Tar }

/// <summary>What an export wrote.</summary>
public sealed record FileExportResult
{
    public required string Archive { get; init; }
    public required string Path { get; init; }
    public required string Destination { get; init; }
    public required FileExportFormat Format { get; init; }
    public long Entries { get; init; }
    public long Files { get; init; }
    public long Bytes { get; init; }
    public long Skipped { get; init; }
    public TimeSpan Duration { get; init; }
}

/// <summary>
/// Writes entries of a pxar archive into a .zip (System.IO.Compression) or a .tar (System.Formats.Tar, PAX), as
/// the PBS web interface offers downloads. Tar keeps everything tar can hold: modes, owners, nanosecond-free
/// mtimes, symlinks, hardlinks, FIFOs and devices, and xattrs with text values (as SCHILY.xattr records). Zip keeps
/// contents, times and Unix modes (in the external attributes, as Info-ZIP does) and symlinks; hardlinks become
/// copies; FIFOs, devices and sockets are skipped with a warning. The file is written as <c>.partial</c> and
/// renamed when complete.
/// </summary>
public sealed class FileArchiveExporter(PxarArchive archive, FileRestoreCounters counters, Action<string> warning)
{
    public async Task<FileExportResult> ExportAsync(string archiveName, PxarEntry start, string destination, FileExportFormat format, bool force, CancellationToken ct)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        destination = System.IO.Path.GetFullPath(destination);
        if (File.Exists(destination) && !force)
            throw new PbsException("DestinationExists", PbsErrorKind.ResourceExists, $"'{destination}' already exists; use -Force to replace it");
        string partial = destination + ".partial";
        long entries = 0, files = 0, bytes = 0, skipped = 0;
        var stream = new FileStream(partial, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true);
        try
        {
            var hardlinks = new Dictionary<long, string>();
            ZipArchive? zip = format == FileExportFormat.Zip ? new ZipArchive(stream, ZipArchiveMode.Create, leaveOpen: true, Encoding.UTF8) : null;
            TarWriter? tar = format == FileExportFormat.Tar ? new TarWriter(stream, TarEntryFormat.Pax, leaveOpen: true) : null;
            try
            {
                string prefix = start.Path;
                async Task Add(PxarEntry e)
                {
                    ct.ThrowIfCancellationRequested();
                    // Names inside the file: relative to the exported directory, starting with its own name (the root has none).
                    string name = prefix.Length == 0 ? e.Path : start.Name + e.Path[prefix.Length..];
                    counters.Current = "/" + e.Path;
                    counters.AddEntry();
                    entries++;
                    var meta = e;
                    if (e.Type == PxarEntryType.Hardlink)
                    {
                        meta = await archive.ResolveHardlinkAsync(e, ct).ConfigureAwait(false);
                        if (tar is not null && hardlinks.TryGetValue(meta.ItemOffset, out var first))
                        {
                            await tar.WriteEntryAsync(Tar(new PaxTarEntry(TarEntryType.HardLink, name) { LinkName = first }, meta), ct).ConfigureAwait(false);
                            return;
                        }
                    }
                    if (zip is not null)
                    {
                        switch (meta.Type)
                        {
                            case PxarEntryType.Directory:
                                Zip(zip.CreateEntry(name + "/"), meta, 0x4000);
                                return;
                            case PxarEntryType.Symlink:
                            {
                                var z = Zip(zip.CreateEntry(name, CompressionLevel.NoCompression), meta, 0xA000);
                                await using var w = z.Open();
                                await w.WriteAsync(meta.LinkTargetBytes, ct).ConfigureAwait(false);
                                return;
                            }
                            case PxarEntryType.File:
                            {
                                var z = Zip(zip.CreateEntry(name, CompressionLevel.Fastest), meta, 0x8000);
                                await using var w = z.Open();
                                bytes += await CopyAsync(meta, w, ct).ConfigureAwait(false);
                                files++;
                                return;
                            }
                            default:
                                skipped++;
                                warning($"'/{e.Path}': {meta.Type} skipped: a zip file cannot hold it (use .tar)");
                                return;
                        }
                    }
                    TarEntry entry;
                    switch (meta.Type)
                    {
                        case PxarEntryType.Directory: entry = new PaxTarEntry(TarEntryType.Directory, name); break;
                        case PxarEntryType.Symlink: entry = new PaxTarEntry(TarEntryType.SymbolicLink, name) { LinkName = meta.LinkTarget! }; break;
                        case PxarEntryType.Fifo: entry = new PaxTarEntry(TarEntryType.Fifo, name); break;
                        case PxarEntryType.BlockDevice or PxarEntryType.CharDevice:
                            entry = new PaxTarEntry(meta.Type == PxarEntryType.BlockDevice ? TarEntryType.BlockDevice : TarEntryType.CharacterDevice, name)
                            { DeviceMajor = (int)meta.DeviceMajor, DeviceMinor = (int)meta.DeviceMinor };
                            break;
                        case PxarEntryType.File:
                        {
                            var xattrs = meta.Xattrs.Where(x => IsText(x.Value))
                                .ToDictionary(x => "SCHILY.xattr." + x.NameText, x => Encoding.UTF8.GetString(x.Value));
                            var file = new PaxTarEntry(TarEntryType.RegularFile, name, xattrs);
                            await using var content = await archive.OpenContentAsync(meta, ct).ConfigureAwait(false);
                            file.DataStream = content;
                            await tar!.WriteEntryAsync(Tar(file, meta), ct).ConfigureAwait(false);
                            counters.AddBytes(meta.Size);
                            counters.AddFile();
                            bytes += meta.Size;
                            files++;
                            hardlinks[meta.ItemOffset] = name;
                            return;
                        }
                        default:
                            skipped++;
                            warning($"'/{e.Path}': socket skipped: tar cannot hold it");
                            return;
                    }
                    await tar!.WriteEntryAsync(Tar(entry, meta), ct).ConfigureAwait(false);
                }

                if (start.Type == PxarEntryType.Directory)
                {
                    if (start.Path.Length > 0) await Add(start).ConfigureAwait(false);
                    await foreach (var e in archive.WalkAsync(start, ct).ConfigureAwait(false)) await Add(e).ConfigureAwait(false);
                }
                else await Add(start).ConfigureAwait(false);
            }
            finally
            {
                zip?.Dispose();
                if (tar is not null) await tar.DisposeAsync().ConfigureAwait(false);
            }
            await stream.FlushAsync(ct).ConfigureAwait(false);
            await stream.DisposeAsync().ConfigureAwait(false);
            File.Move(partial, destination, force);
        }
        catch
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            File.Delete(partial);
            throw;
        }
        return new FileExportResult
        {
            Archive = archiveName, Path = "/" + start.Path, Destination = destination, Format = format, Entries = entries,
            Files = files, Bytes = bytes, Skipped = skipped, Duration = clock.Elapsed,
        };
    }

    private async Task<long> CopyAsync(PxarEntry file, Stream output, CancellationToken ct)
    {
        await using var content = await archive.OpenContentAsync(file, ct).ConfigureAwait(false);
        var buffer = new byte[(int)Math.Clamp(file.Size, 4096, 1 << 20)];
        long total = 0;
        int n;
        while ((n = await content.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0)
        {
            await output.WriteAsync(buffer.AsMemory(0, n), ct).ConfigureAwait(false);
            counters.AddBytes(n);
            total += n;
        }
        counters.AddFile();
        return total;
    }

    private static bool IsText(byte[] value)
    {
        try
        {
            _ = new UTF8Encoding(false, true).GetString(value);
            return Array.IndexOf(value, (byte)0) < 0;
        }
        catch (DecoderFallbackException)
        {
            return false;
        }
    }

    /// <summary>Zip keeps DOS times from 1980 to 2107 and Unix modes in the high half of the external attributes.</summary>
    private static ZipArchiveEntry Zip(ZipArchiveEntry z, PxarEntry e, int typeBits)
    {
        var time = e.ModifiedTime;
        var min = new DateTimeOffset(1980, 1, 1, 0, 0, 0, TimeSpan.Zero);
        var max = new DateTimeOffset(2107, 12, 31, 23, 59, 58, TimeSpan.Zero);
        z.LastWriteTime = time < min ? min : time > max ? max : time;
        z.ExternalAttributes = (typeBits | (e.Permissions & 0xFFF)) << 16;
        return z;
    }

    private static TarEntry Tar(TarEntry t, PxarEntry e)
    {
        t.Mode = (UnixFileMode)(e.Permissions & 0xFFF);
        t.Uid = (int)e.Uid;
        t.Gid = (int)e.Gid;
        t.ModificationTime = e.ModifiedTime;
        return t;
    }
}
