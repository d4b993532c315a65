using System.Collections.ObjectModel;

namespace PbsRestore.Sources;

/// <summary>
/// A read-only list of an output object (archive names, files, bad chunks) that reads as its items joined by
/// ", ": Export-Csv, string expansion and Format-* call ToString, which for a plain list gives its type name.
/// ConvertTo-Json and the pipeline still see a list.
/// </summary>
public sealed class DisplayList<T>(IList<T> items) : ReadOnlyCollection<T>(items)
{
    public override string ToString() => string.Join(", ", this);
}
