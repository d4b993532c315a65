namespace PbsRestore.Tests;

// Proves the test pipeline (build.ps1 Test / .ci/run) runs xunit and finds the shared test data.
public class InfraSmokeTests
{
    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "PbsRestore.slnx")))
            {
                return dir.FullName;
            }
        }
        throw new InvalidOperationException($"PbsRestore.slnx not found above {AppContext.BaseDirectory}");
    }

    [Fact]
    public void RepoRootAndGoldenFolderAreFound()
    {
        var root = FindRepoRoot();
        Assert.True(File.Exists(Path.Combine(root, "PbsRestore.psd1")), "module manifest missing at repo root");
        var golden = Path.GetFullPath(Path.Combine(root, "..", "shared", "golden"));
        Assert.True(Directory.Exists(golden), $"golden test data not found at {golden}");
    }
}
