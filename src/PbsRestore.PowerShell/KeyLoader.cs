using System.Runtime.InteropServices;
using System.Security;
using System.Security.Cryptography;
using System.Text;
using PbsRestore.Formats;

namespace PbsRestore.PowerShell;

/// <summary>
/// Opens a key file with a password from -KeyPassword or PBS_ENCRYPTION_PASSWORD. The password lives only in a
/// byte array that is cleared afterwards, and never appears in any message.
/// </summary>
internal static class KeyLoader
{
    public const string PasswordVariable = "PBS_ENCRYPTION_PASSWORD";

    public static CryptConfig Open(string keyfile, SecureString? password)
    {
        if (!File.Exists(keyfile))
            throw new PbsKeyException("KeyFileNotFound", $"key file '{keyfile}' does not exist");
        var info = new FileInfo(keyfile);
        if (info.Length > 64 * 1024)
            throw new PbsKeyException("KeyFileInvalid", $"key file '{keyfile}' is too large to be a PBS key file");
        var config = KeyConfig.Parse(File.ReadAllBytes(keyfile), keyfile);
        byte[] secret = password is not null ? ToUtf8(password)
            : Environment.GetEnvironmentVariable(PasswordVariable) is { Length: > 0 } env ? Encoding.UTF8.GetBytes(env)
            : [];
        try
        {
            if (config.NeedsPassword && secret.Length == 0)
                throw new PbsKeyException("KeyPasswordRequired",
                    $"key file '{keyfile}' is protected by a password: give -KeyPassword or set {PasswordVariable}");
            return config.Open(secret);
        }
        catch (PbsKeyException e) when (e.ErrorId == "KeyPasswordWrong")
        {
            throw new PbsKeyException("KeyPasswordWrong", $"cannot open key file '{keyfile}': wrong password", e);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(secret);
        }
    }

    private static byte[] ToUtf8(SecureString s)
    {
        IntPtr p = Marshal.SecureStringToGlobalAllocUnicode(s);
        var chars = new char[s.Length];
        try
        {
            Marshal.Copy(p, chars, 0, chars.Length);
            return Encoding.UTF8.GetBytes(chars);
        }
        finally
        {
            Array.Clear(chars);
            Marshal.ZeroFreeGlobalAllocUnicode(p);
        }
    }
}
