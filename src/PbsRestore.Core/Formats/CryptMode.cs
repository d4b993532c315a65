namespace PbsRestore.Formats;

/// <summary>How an archive was protected: the manifest's <c>crypt-mode</c> ("none", "encrypt", "sign-only").</summary>
public enum CryptMode
{
    None,
    Encrypt,
    SignOnly,
}

public static class CryptModeNames
{
    public static string ToPbsString(this CryptMode mode) => mode switch
    {
        CryptMode.Encrypt => "encrypt",
        CryptMode.SignOnly => "sign-only",
        _ => "none",
    };

    public static CryptMode Parse(string? text) => text switch
    {
        null or "none" => CryptMode.None,
        "encrypt" => CryptMode.Encrypt,
        "sign-only" => CryptMode.SignOnly,
        _ => throw new PbsFormatException($"unknown crypt-mode '{text}'"),
    };
}
