using PbsRestore.Formats;
using PbsRestore.Sources;

namespace PbsRestore.Tests.Sources;

/// <summary>The source-independent listing filter, spec parsing in any case, and times as users type them.</summary>
public sealed class SnapshotFilterTests
{
    private static SnapshotInfo Snap(string ns, string type, string id, string time, string? comment = null) =>
        new(new SnapshotRef(BackupNamespace.Parse(ns), type, id, DateTimeOffset.Parse(time)), "/x",
            [new SnapshotFile("drive-scsi0.img.fidx", 1, CryptMode.None)], null, null, comment);

    private static readonly SnapshotInfo[] Listing =
    [
        Snap("", "vm", "100", "2024-05-01T10:00:00Z", "web01"),
        Snap("", "vm", "100", "2024-05-02T10:00:00Z", "web01"),
        Snap("", "vm", "100", "2024-05-03T10:00:00Z", "web01-old"),
        Snap("", "vm", "101", "2024-05-01T11:00:00Z", "db01"),
        Snap("dev", "vm", "102", "2024-05-01T13:00:00Z"),
    ];

    private static FilterTerm Exact(string v) => new(v, x => string.Equals(x, v, StringComparison.OrdinalIgnoreCase), false);
    private static FilterTerm Prefix(string p) => new(p + "*", x => x.StartsWith(p, StringComparison.OrdinalIgnoreCase), true);

    [Fact]
    public void Exact_ids_that_match_nothing_are_reported_patterns_are_not()
    {
        var s = new SnapshotFilter { Ids = [Exact("100"), Exact("999"), Prefix("9")] }.Apply(Listing);
        Assert.Equal(3, s.Snapshots.Count);
        Assert.Equal(["999"], s.MissedIds.Select(t => t.Text));
    }

    [Fact]
    public void Name_time_window_and_newest_narrow_without_errors()
    {
        var s = new SnapshotFilter
        {
            Names = [Prefix("web")],
            After = DateTimeOffset.Parse("2024-05-01T10:00:00Z"),
            Newest = 1,
        }.Apply(Listing);
        Assert.Equal(["vm/100/2024-05-03T10:00:00Z"], s.Snapshots.Select(x => x.Snapshot));
        Assert.Empty(s.MissedNames);
        var missed = new SnapshotFilter { Names = [Exact("nosuch")] }.Apply(Listing);
        Assert.Empty(missed.Snapshots);
        Assert.Equal(["nosuch"], missed.MissedNames.Select(t => t.Text));
    }

    [Fact]
    public void Specs_match_group_time_and_namespace()
    {
        var f = new SnapshotFilter { Specs = [SnapshotSpec.Parse("VM/100/2024-05-02T12:00:00+02:00"), SnapshotSpec.Parse("ns/dev/vm/102"), SnapshotSpec.Parse("ct/7")] };
        var s = f.Apply(Listing);
        Assert.Equal(["|vm/100/2024-05-02T10:00:00Z", "dev|vm/102/2024-05-01T13:00:00Z"], s.Snapshots.Select(x => $"{x.Namespace}|{x.Snapshot}"));
        Assert.Equal("ct/7", Assert.Single(s.MissedSpecs) is var m ? $"{m.BackupType}/{m.BackupId}" : "");
    }

    [Theory]
    [InlineData("VM", "vm")]
    [InlineData("Ct", "ct")]
    [InlineData(" host ", "host")]
    [InlineData("lxc", null)]
    public void Types_are_normalized_to_lower_case(string typed, string? expected) =>
        Assert.Equal(expected, SnapshotRef.NormalizeType(typed));

    [Fact]
    public void Source_filters_are_passed_down_only_when_exact()
    {
        Assert.Equal("100", new SnapshotFilter { Ids = [Exact("100")] }.SourceId);
        Assert.Null(new SnapshotFilter { Ids = [Prefix("10")] }.SourceId);
        Assert.Null(new SnapshotFilter { Ids = [Exact("100"), Exact("101")] }.SourceId);
        Assert.Equal("100", new SnapshotFilter { Specs = [SnapshotSpec.Parse("VM/100")] }.SourceId);
    }

    [Fact]
    public void User_times_take_offsets_and_local_times_but_folder_names_stay_strict()
    {
        Assert.True(SnapshotTime.TryParseUserTime("2024-05-01T12:00:00+02:00", out var t));
        Assert.Equal(DateTimeOffset.Parse("2024-05-01T10:00:00Z"), t);
        Assert.True(SnapshotTime.TryParseUserTime("2024-05-01 12:00:00", out var local));
        Assert.Equal(new DateTimeOffset(new DateTime(2024, 5, 1, 12, 0, 0, DateTimeKind.Local)), local);
        Assert.False(SnapshotTime.TryParse("2024-05-01 12:00:00", out _));
    }

    [Fact]
    public void Elsewhere_hint_names_the_other_namespaces()
    {
        var where = new[] { BackupNamespace.Root, BackupNamespace.Parse("dev") };
        Assert.Equal("; it exists in namespace 'dev' (use -Namespace dev)", SnapshotFilter.ElsewhereHint(where, n => n.IsRoot));
        Assert.Equal("", SnapshotFilter.ElsewhereHint(where, _ => true));
    }

    [Fact]
    public void Manifest_comment_is_the_first_line_of_the_notes()
    {
        var json = BackupManifest.Build("vm", "100", 1714557600, [], null, new System.Text.Json.Nodes.JsonObject { ["notes"] = "web01\r\nsecond" });
        Assert.Equal("web01", BackupManifest.Parse(json).Comment);
        Assert.Null(BackupManifest.Parse(BackupManifest.Build("vm", "100", 1714557600, [], null, new System.Text.Json.Nodes.JsonObject())).Comment);
    }
}
