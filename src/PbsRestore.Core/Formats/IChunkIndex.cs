namespace PbsRestore.Formats;

/// <summary>
/// What restore needs of an index, fixed or dynamic (upstream: pbs-datastore/src/index.rs, IndexFile):
/// the chunks in order, each a digest and a byte range of the archive. The planner sees only this.
/// </summary>
public interface IChunkIndex
{
    /// <summary>Number of chunk entries.</summary>
    int Count { get; }

    /// <summary>Logical size of the archive in bytes.</summary>
    long Size { get; }

    /// <summary>The largest chunk any entry describes (buffer size for decoding).</summary>
    int MaxChunkSize { get; }

    ChunkDigest DigestAt(int index);

    long OffsetOf(int index);

    int LengthOf(int index);

    /// <summary>SHA-256 over the entries, as upstream's compute_csum; compared with the manifest's csum.</summary>
    byte[] ComputeCsum();
}
