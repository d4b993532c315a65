using System.Management.Automation;
using PbsRestore.Sources;

namespace PbsRestore.PowerShell;

/// <summary>Turns what the user gave for -Snapshot (a string, or a snapshot object from Get-PbsSnapshot) into a core reference.</summary>
internal static class SnapshotResolver
{
    /// <summary>Unwraps a pipeline value; returns the SnapshotInfo if it is one.</summary>
    public static SnapshotInfo? AsSnapshotInfo(object? value) => (value is PSObject pso ? pso.BaseObject : value) as SnapshotInfo;


    /// <summary>
    /// What a pipeline object stands for: a snapshot object, else the Snapshot property of any other object (an
    /// Import-Csv row, a restore result), else the value itself. -Snapshot takes the whole object by value, so
    /// by-property-name binding never reaches it.
    /// </summary>
    public static object Unwrap(object value)
    {
        if (AsSnapshotInfo(value) is { } info) return info;
        var pso = value as PSObject ?? PSObject.AsPSObject(value);
        if (pso.BaseObject is string) return pso.BaseObject;
        return pso.Properties["Snapshot"]?.Value is { } inner ? Unwrap(inner) : pso.BaseObject;
    }

    public static async Task<SnapshotRef> ResolveAsync(ISnapshotSource source, object value, BackupNamespace? ns, CancellationToken ct)
    {
        value = Unwrap(value);
        if (AsSnapshotInfo(value) is { } info) return info.Ref;
        string text = value.ToString() ?? "";
        var spec = SnapshotSpec.Parse(text);
        var effectiveNs = spec.Namespace ?? ns ?? BackupNamespace.Root;
        if (spec.BackupTime is { } time)
            return new SnapshotRef(effectiveNs, spec.BackupType, spec.BackupId, time);
        var all = await source.ListSnapshotsAsync(effectiveNs, spec.BackupType, spec.BackupId, ct).ConfigureAwait(false);
        if (all.OrderBy(s => s.Ref.BackupTime).LastOrDefault() is { } latest) return latest.Ref;
        // A group missing here may live in another namespace: say where (the usual slip is forgetting -Namespace).
        var elsewhere = await SnapshotFilter.FindGroupNamespacesAsync(source, spec.BackupType, spec.BackupId, ct).ConfigureAwait(false);
        throw new PbsNotFoundException("SnapshotNotFound",
            $"no snapshot of {spec.BackupType}/{spec.BackupId} in " + (effectiveNs.IsRoot ? "the root namespace" : $"namespace '{effectiveNs}'") +
            $" of '{source.Location}'" + SnapshotFilter.ElsewhereHint(elsewhere, n => n.Equals(effectiveNs)));
    }
}
