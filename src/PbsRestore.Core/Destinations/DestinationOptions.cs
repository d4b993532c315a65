namespace PbsRestore.Destinations;

/// <summary>
/// What a restore may do to its destination: replace it, continue an interrupted restore into it, and in which form
/// to write it. How hard the pipeline works is <c>RestoreOptions</c>'s concern, not this.
/// </summary>
public sealed record DestinationOptions
{
    /// <summary>Overwrite an existing destination.</summary>
    public bool Force { get; init; }

    /// <summary>
    /// Continue an interrupted restore of the same archive to the same destination from its journal, when there is
    /// one (otherwise start a new restore); refused when the snapshot, index or format differ.
    /// </summary>
    public bool Resume { get; init; }

    /// <summary>The destination's form; null: from its extension (.vhdx, .vhd, .vmdk), else raw.</summary>
    public ImageFormat? Format { get; init; }
}
