using System.Text.RegularExpressions;

namespace PbsRestore.Sources;

/// <summary>
/// A datastore namespace such as <c>prod/web</c> (the root is empty). On disk each level is
/// <c>ns/&lt;name&gt;</c>: <c>&lt;store&gt;/ns/prod/ns/web/</c>. PBS allows at most 7 levels.
/// </summary>
public sealed partial record BackupNamespace
{
    public const int MaxDepth = 7;
    public static readonly BackupNamespace Root = new(Array.Empty<string>());

    private BackupNamespace(string[] components) => Components = components;

    public IReadOnlyList<string> Components { get; }
    public int Depth => Components.Count;
    public bool IsRoot => Components.Count == 0;

    [GeneratedRegex("^[A-Za-z0-9_][A-Za-z0-9._\\-]*$")]
    private static partial Regex ComponentPattern();

    public static bool IsValidComponent(string name) => name.Length <= 128 && ComponentPattern().IsMatch(name);

    /// <summary>Parses "a/b"; null, empty and "/" are the root.</summary>
    public static BackupNamespace Parse(string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) return Root;
        var parts = text.Trim().Trim('/').Split('/', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length > MaxDepth)
            throw new PbsException("NamespaceInvalid", PbsErrorKind.InvalidArgument, $"namespace '{text}' is deeper than {MaxDepth} levels");
        foreach (var p in parts)
            if (!IsValidComponent(p))
                throw new PbsException("NamespaceInvalid", PbsErrorKind.InvalidArgument, $"namespace '{text}': '{p}' is not a valid namespace name");
        return new BackupNamespace(parts);
    }

    public BackupNamespace Child(string name)
    {
        if (!IsValidComponent(name)) throw new ArgumentException($"'{name}' is not a valid namespace name", nameof(name));
        return new BackupNamespace([.. Components, name]);
    }

    public bool IsSameOrBelow(BackupNamespace ancestor) =>
        Components.Count >= ancestor.Components.Count && ancestor.Components.SequenceEqual(Components.Take(ancestor.Components.Count));

    public override string ToString() => string.Join('/', Components);

    public bool Equals(BackupNamespace? other) => other is not null && Components.SequenceEqual(other.Components);
    public override int GetHashCode() => ToString().GetHashCode(StringComparison.Ordinal);
}
