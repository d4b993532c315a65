using System.Text.RegularExpressions;

namespace PbsRestore.Publishing.Iscsi;

/// <summary>iSCSI name rules (RFC 7143 §4.2.7): iqn., eui. or naa. formats, at most 223 bytes.</summary>
public static partial class IscsiNames
{
    [GeneratedRegex(@"^(iqn\.\d{4}-\d{2}\.[a-z0-9]([a-z0-9\-\.]*[a-z0-9])?(:[a-z0-9\-\.:]+)?|eui\.[0-9a-f]{16}|naa\.([0-9a-f]{16}|[0-9a-f]{32}))$", RegexOptions.CultureInvariant)]
    private static partial Regex NameRegex();

    /// <summary>True when <paramref name="name"/> is a valid (lower-case, normalized) iSCSI name.</summary>
    public static bool IsValid(string? name) =>
        !string.IsNullOrEmpty(name) && System.Text.Encoding.UTF8.GetByteCount(name) <= 223 && NameRegex().IsMatch(name);

    /// <summary>A target IQN for a name like an archive: iqn.2024-01.org.pbsrestore:&lt;sanitized&gt;.</summary>
    public static string ForTarget(string suffix)
    {
        var chars = suffix.ToLowerInvariant().Select(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '-' or '.' or ':' ? c : '-').ToArray();
        string s = new string(chars).Trim('-', '.', ':');
        if (s.Length == 0) s = "image";
        string name = "iqn.2024-01.org.pbsrestore:" + s;
        return name.Length > 223 ? name[..223].TrimEnd('-', '.', ':') : name;
    }
}
