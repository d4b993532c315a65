using Microsoft.Win32.SafeHandles;
using PbsRestore.Platform;

namespace PbsRestore.Destinations;

/// <summary>
/// The <c>&lt;destination&gt;.partial</c> file behind every file destination (raw, VHDX, VHD): created fresh (and
/// sparse where the file system can) or reopened to resume; <see cref="Commit"/> renames it into place; disposing
/// deletes it unless it was committed or <see cref="Keep"/> is set (a restore worth resuming). One place for these
/// rules, so that no format can get them subtly different.
/// </summary>
internal sealed class PartialFile : IDisposable
{
    private bool _committed;

    private PartialFile(string destination, string path, FileStream stream, bool sparse)
    {
        Destination = destination;
        Path = path;
        Stream = stream;
        IsSparse = sparse;
        Writer = UnbufferedFileWriter.Open(stream, path);
    }

    public string Destination { get; }
    public string Path { get; }
    public FileStream Stream { get; }
    public SafeFileHandle Handle => Stream.SafeFileHandle;
    /// <summary>Where the restored bytes go: unbuffered where the file system allows (see <see cref="UnbufferedFileWriter"/>).</summary>
    public UnbufferedFileWriter Writer { get; }
    /// <summary>Whether the file system keeps unwritten ranges unallocated.</summary>
    public bool IsSparse { get; }
    /// <summary>Keep the file when disposed without a commit (the restore can be resumed).</summary>
    public bool Keep { get; set; }

    /// <summary>
    /// Creates the partial file of <paramref name="destination"/> (which must be writable, see
    /// <see cref="DestinationFile.CheckWritable"/>), marked sparse, then lets <paramref name="prepare"/> size and
    /// initialise it; on any failure the file is removed again.
    /// </summary>
    public static PartialFile Create(string destination, bool force, Action<FileStream> prepare)
    {
        destination = System.IO.Path.GetFullPath(destination);
        DestinationFile.CheckWritable(destination, force);
        string path = DestinationFile.PartialPathFor(destination);
        // FileShare.ReadWrite: the writer's unbuffered twin handle writes this file as well (Windows checks sharing).
        var stream = new FileStream(path, FileMode.Create, FileAccess.ReadWrite, FileShare.ReadWrite, bufferSize: 0);
        PartialFile? file = null;
        try
        {
            file = new PartialFile(destination, path, stream, SparseFiles.PrepareSparse(stream.SafeFileHandle));
            prepare(stream);
            return file;
        }
        catch
        {
            if (file is not null) file.Dispose();
            else
            {
                stream.Dispose();
                File.Delete(path);
            }
            throw;
        }
    }

    /// <summary>Reopens the partial file an interrupted restore left (PartialFileNotFound when there is none).</summary>
    public static PartialFile Open(string destination)
    {
        destination = System.IO.Path.GetFullPath(destination);
        string path = DestinationFile.PartialPathFor(destination);
        if (!File.Exists(path))
            throw new PbsNotFoundException("PartialFileNotFound", $"there is no partial file '{path}' to resume");
        var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite, bufferSize: 0);
        bool sparse = SparseFiles.IsSparse(path);
        return new PartialFile(destination, path, stream, sparse) { Keep = true }; // a failed reopen must not cost it
    }

    /// <summary>Closes the file and renames it to the destination (the caller has flushed it).</summary>
    public void Commit(bool overwrite)
    {
        Writer.Dispose();
        Stream.Dispose();
        File.Move(Path, Destination, overwrite);
        _committed = true;
    }

    public void Dispose()
    {
        Writer.Dispose();
        Stream.Dispose();
        if (!_committed && !Keep)
        {
            try { File.Delete(Path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }
}
