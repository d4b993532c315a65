using System.Net;
using PbsRestore.Publishing.Iscsi;

namespace PbsRestore.Publishing;

// The one place that names the iSCSI target's types (compiled when Publishing/Iscsi exists, see the csproj).
internal static partial class TargetHost
{
    public static async partial Task<ITargetHost> StartAsync(TargetSpec spec, CancellationToken ct)
    {
        var chap = spec.Chap is { } c ? new IscsiChapSecret(c.User, c.Secret) : null;
        try
        {
            var target = await IscsiTarget.StartAsync(new IscsiTargetOptions
            {
                TargetName = spec.TargetName,
                Listen = spec.Listen,
                Luns = spec.Luns.Select(l => new IscsiLun(l.Lun, l.Name, l.Device)).ToList(),
                Chap = chap,
                AllowedInitiators = spec.AllowedInitiators.Count > 0 ? spec.AllowedInitiators : null,
            }, ct).ConfigureAwait(false);
            return new Host(target, chap);
        }
        catch
        {
            chap?.Dispose();
            throw;
        }
    }

    private sealed class Host(IscsiTarget target, IscsiChapSecret? chap) : ITargetHost
    {
        public IPEndPoint LocalEndPoint => target.LocalEndPoint;
        public int ActiveSessions => target.Counters.ActiveSessions;
        public long LoginFailures => target.Counters.LoginFailures;

        public async ValueTask DisposeAsync()
        {
            await target.DisposeAsync().ConfigureAwait(false);
            chap?.Dispose();
        }
    }
}
