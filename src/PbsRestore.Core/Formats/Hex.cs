namespace PbsRestore.Formats;

internal static class Hex
{
    public static string Lower(ReadOnlySpan<byte> bytes) => Convert.ToHexString(bytes).ToLowerInvariant();

    /// <summary>"aa:bb:cc", as PBS shows fingerprints.</summary>
    public static string Colon(ReadOnlySpan<byte> bytes)
    {
        var chars = new char[bytes.Length == 0 ? 0 : bytes.Length * 3 - 1];
        const string digits = "0123456789abcdef";
        for (int i = 0; i < bytes.Length; i++)
        {
            if (i > 0) chars[i * 3 - 1] = ':';
            chars[i * 3] = digits[bytes[i] >> 4];
            chars[i * 3 + 1] = digits[bytes[i] & 15];
        }
        return new string(chars);
    }

    /// <summary>Parses plain or colon-separated hex of exactly destination.Length bytes.</summary>
    public static bool TryParse(ReadOnlySpan<char> text, Span<byte> destination)
    {
        int j = 0;
        for (int i = 0; i < text.Length;)
        {
            if (text[i] == ':') { i++; continue; }
            if (i + 1 >= text.Length || j >= destination.Length) return false;
            int hi = Nibble(text[i]), lo = Nibble(text[i + 1]);
            if (hi < 0 || lo < 0) return false;
            destination[j++] = (byte)(hi << 4 | lo);
            i += 2;
        }
        return j == destination.Length;
    }

    private static int Nibble(char c) => c switch
    {
        >= '0' and <= '9' => c - '0',
        >= 'a' and <= 'f' => c - 'a' + 10,
        >= 'A' and <= 'F' => c - 'A' + 10,
        _ => -1,
    };
}
