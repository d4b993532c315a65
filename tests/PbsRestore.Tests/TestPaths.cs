namespace PbsRestore.Tests;

/// <summary>Where the repository and the shared, read-only golden datastore are. Never write under <see cref="Golden"/>.</summary>
public static class TestPaths
{
    private static readonly Lazy<string> Root = new(FindRepoRoot);

    /// <summary>The directory holding PbsRestore.slnx, found by walking up from the test binaries.</summary>
    public static string RepoRoot => Root.Value;

    /// <summary>The golden fixture folder (upstream-written PBS datastore): &lt;repo&gt;/../shared/golden.</summary>
    public static string Golden => Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "golden"));

    /// <summary>A path inside the golden folder; <paramref name="relative"/> uses '/' as MANIFEST.json does.</summary>
    public static string GoldenPath(string relative) =>
        Path.Combine(Golden, relative.Replace('/', Path.DirectorySeparatorChar));

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "PbsRestore.slnx")))
                return dir.FullName;
        }
        throw new InvalidOperationException($"PbsRestore.slnx not found above {AppContext.BaseDirectory}");
    }
}
