using System.Text;

namespace PbsRestore.Publishing.Iscsi;

/// <summary>
/// iSCSI text key=value pairs (RFC 7143 §6.1): UTF-8, each pair ends with a NUL. Parsing is bounded by the input
/// and keeps the order; a malformed pair or a key given twice is an error the caller turns into a login failure.
/// </summary>
internal static class TextKeys
{
    public const int MaxKeyLength = 63;
    public const int MaxValueLength = 8192;

    /// <summary>Parses <paramref name="data"/>; returns null and an error text when malformed.</summary>
    public static List<KeyValuePair<string, string>>? Parse(ReadOnlySpan<byte> data, out string? error)
    {
        var list = new List<KeyValuePair<string, string>>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        error = null;
        while (!data.IsEmpty)
        {
            int end = data.IndexOf((byte)0);
            var pair = end < 0 ? data : data[..end];
            data = end < 0 ? [] : data[(end + 1)..];
            if (pair.IsEmpty) continue; // padding or an empty pair
            int eq = pair.IndexOf((byte)'=');
            if (eq <= 0) { error = "a text pair without '=' or key"; return null; }
            if (eq > MaxKeyLength) { error = "a text key longer than 63 bytes"; return null; }
            if (pair.Length - eq - 1 > MaxValueLength) { error = "a text value longer than 8192 bytes"; return null; }
            string key, value;
            try
            {
                key = Strict.GetString(pair[..eq]);
                value = Strict.GetString(pair[(eq + 1)..]);
            }
            catch (DecoderFallbackException) { error = "a text pair that is not UTF-8"; return null; }
            foreach (char c in key)
                if (!(char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '+' or '@' or '_'))
                { error = "a text key with an invalid character"; return null; }
            if (!seen.Add(key)) { error = $"key {key} given twice"; return null; }
            if (list.Count >= 256) { error = "more than 256 text keys"; return null; }
            list.Add(new(key, value));
        }
        return list;
    }

    public static void Append(List<byte> output, string key, string value)
    {
        output.AddRange(Encoding.UTF8.GetBytes(key));
        output.Add((byte)'=');
        output.AddRange(Encoding.UTF8.GetBytes(value));
        output.Add(0);
    }

    private static readonly UTF8Encoding Strict = new(false, true);
}
