using System.Collections.Concurrent;
using System.Management.Automation.Runspaces;
using PbsRestore.Publishing;

namespace PbsRestore.PowerShell;

/// <summary>
/// The publications of this process (Publish-PbsImage adds, Get-PbsPublication lists, Unpublish-PbsImage removes).
/// A target runs in the background of the session that published it and ends with it: when that runspace
/// closes, when the module is removed, or when the process exits, whichever comes first (overlays are then
/// deleted unless kept).
/// </summary>
internal static class PublicationRegistry
{
    private static readonly ConcurrentDictionary<int, (Publication Publication, Guid Runspace)> Items = new();
    private static readonly ConcurrentDictionary<Guid, bool> Watched = new();
    private static int _nextId;

    static PublicationRegistry()
    {
        AppDomain.CurrentDomain.ProcessExit += (_, _) => UnpublishAll();
    }

    public static int NextId() => Interlocked.Increment(ref _nextId);

    public static void Add(Publication publication)
    {
        var runspace = Runspace.DefaultRunspace;
        Guid id = runspace?.InstanceId ?? Guid.Empty;
        Items[publication.Id] = (publication, id);
        if (runspace is not null && Watched.TryAdd(id, true))
            runspace.StateChanged += (_, e) =>
            {
                if (e.RunspaceStateInfo.State is RunspaceState.Closed or RunspaceState.Broken)
                {
                    Watched.TryRemove(id, out bool _);
                    foreach (var (key, item) in Items)
                        if (item.Runspace == id) Remove(key)?.DisposeAsync().AsTask().GetAwaiter().GetResult();
                }
            };
    }

    public static IReadOnlyList<Publication> All => Items.Values.Select(v => v.Publication).OrderBy(p => p.Id).ToList();

    public static Publication? Get(int id) => Items.TryGetValue(id, out var item) ? item.Publication : null;

    public static Publication? Remove(int id) => Items.TryRemove(id, out var item) ? item.Publication : null;

    /// <summary>Stops every publication (module removed, process exiting); overlays go unless they were to be kept.</summary>
    public static void UnpublishAll()
    {
        foreach (var key in Items.Keys)
        {
            try
            {
                Remove(key)?.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or PbsException)
            {
                // Shutting down: one overlay that cannot be deleted must not keep the others alive.
            }
        }
    }
}
