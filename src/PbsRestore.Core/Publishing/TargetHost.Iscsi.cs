using System.Net;
using PbsRestore.Publishing.Iscsi;

namespace PbsRestore.Publishing;

// The one place that names the iSCSI target's types (compiled when Publishing/Iscsi exists, see the csproj).
internal static partial class TargetHost
{
    public static async partial Task<ITargetHost> StartAsync(TargetSpec spec, CancellationToken ct)
    {
        var options = new IscsiTargetOptions
        {
            TargetName = spec.TargetName,
            EndPoint = spec.Listen,
            Luns = spec.Luns.Select(l => new IscsiLun(l.Lun, l.Name, l.Device)).ToList(),
            Chap = spec.Chap is { } c ? new IscsiChap(c.User, c.Secret) : null,
            AllowedInitiators = spec.AllowedInitiators,
        };
        var target = await IscsiTarget.StartAsync(options, ct).ConfigureAwait(false);
        return new Host(target);
    }

    private sealed class Host(IscsiTarget target) : ITargetHost
    {
        public IPEndPoint LocalEndPoint => target.LocalEndPoint;
        public ValueTask DisposeAsync() => target.DisposeAsync();
    }
}
