using System.Globalization;

namespace PbsRestore.PowerShell;

/// <summary>
/// Readable sizes, rates and durations for the module's default views (module/PbsRestore.Format.ps1xml); the
/// objects keep their numeric properties, only what the table shows is text.
/// </summary>
public static class PbsFormat
{
    private static readonly string[] Units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

    /// <summary>Bytes in binary units with one decimal: '345 B', '512.0 KiB', '4.0 GiB'.</summary>
    public static string Size(long bytes)
    {
        if (bytes < 0) return bytes.ToString(CultureInfo.CurrentCulture);
        if (bytes < 1024) return bytes.ToString(CultureInfo.CurrentCulture) + " B";
        double value = bytes;
        int unit = 0;
        while (value >= 1024 && unit < Units.Length - 1)
        {
            value /= 1024;
            unit++;
        }
        return value.ToString("0.0", CultureInfo.CurrentCulture) + " " + Units[unit];
    }

    /// <summary>A rate in MB/s (10^6 bytes per second) with one decimal, without the unit.</summary>
    public static string Rate(double megabytesPerSecond) =>
        double.IsFinite(megabytesPerSecond) ? megabytesPerSecond.ToString("N1", CultureInfo.CurrentCulture) : "";

    /// <summary>A duration in seconds with two decimals: '1.25 s'.</summary>
    public static string Seconds(TimeSpan duration) => duration.TotalSeconds.ToString("N2", CultureInfo.CurrentCulture) + " s";

    /// <summary>Milliseconds with two decimals, without the unit.</summary>
    public static string Milliseconds(double ms) => double.IsFinite(ms) ? ms.ToString("N2", CultureInfo.CurrentCulture) : "";

    /// <summary>
    /// A point in time that says its zone: '2024-05-01 10:00:00 UTC' (a DateTime of kind Local is converted; one
    /// without a kind is taken as UTC, as every time this module returns is).
    /// </summary>
    public static string Time(DateTime time) =>
        (time.Kind == DateTimeKind.Local ? time.ToUniversalTime() : time).ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture) + " UTC";

    /// <summary>A share 0..1 as a percentage: '42 %'.</summary>
    public static string Percent(double share) =>
        double.IsFinite(share) ? (share * 100).ToString("N0", CultureInfo.CurrentCulture) + " %" : "";
}
