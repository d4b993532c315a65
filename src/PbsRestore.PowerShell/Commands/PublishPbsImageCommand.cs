using System.Management.Automation;
using System.Net;
using System.Runtime.InteropServices;
using PbsRestore.Formats;
using PbsRestore.Publishing;

namespace PbsRestore.PowerShell.Commands;

/// <summary>
/// <para type="synopsis">Publishes the disks of a Proxmox Backup Server snapshot as the LUNs of an iSCSI target, without restoring them.</para>
/// </summary>
[Cmdlet(VerbsData.Publish, "PbsImage", DefaultParameterSetName = ConnectionSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low,
    HelpUri = HelpLinks.PublishPbsImage)]
[OutputType(typeof(Publication))]
public sealed class PublishPbsImageCommand : PbsArchiveCmdlet
{
    /// <summary>The disk archives to publish (wildcards allowed), one LUN each; every disk (.img) of the snapshot when omitted.</summary>
    [Parameter(Position = 1, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(Completers.ArchiveCompleter))]
    public string[]? Archive { get; set; }

    protected override string? ArchiveName => Archive is { Length: 1 } a ? a[0] : null;

    /// <summary>The address to listen on: 127.0.0.1 (default, this machine only), an address of this machine, or 0.0.0.0 / :: for all.
    /// Anything but loopback needs -ChapCredential or -AllowedInitiator.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string Listen { get; set; } = "127.0.0.1";

    /// <summary>TCP port; a free one when omitted (3260 is the iSCSI default, which initiators assume).</summary>
    [Parameter]
    [ValidateRange(0, 65535)]
    public int Port { get; set; }

    /// <summary>Initiator names (IQNs) allowed to log in, e.g. iqn.1991-05.com.microsoft:host1.example.com; any when omitted.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string[]? AllowedInitiator { get; set; }

    /// <summary>CHAP user name and secret (12 to 16 characters) initiators must log in with. -Credential stays the PBS login, as in the other cmdlets.</summary>
    [Parameter]
    [Credential]
    public PSCredential? ChapCredential { get; set; }

    /// <summary>Memory for decoded chunks, shared by the publication's disks (default 256 MB).</summary>
    [Parameter]
    [ValidateRange(1L << 20, 1L << 40)]
    public long CacheSize { get; set; } = 256L << 20;

    /// <summary>Report the disks as write-protected and refuse writes; no overlay is made.</summary>
    [Parameter]
    public SwitchParameter ReadOnly { get; set; }

    /// <summary>Keep the overlays (the writes made to the disks) when unpublished; publish again with the same -OverlayPath to go on with them.</summary>
    [Parameter]
    public SwitchParameter KeepOverlay { get; set; }

    /// <summary>Folder for the overlays (one file per disk, named after snapshot and archive); the temp folder when omitted.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? OverlayPath { get; set; }

    /// <summary>The target's IQN; made from the snapshot when omitted (iqn.2024-05.io.github.pbsrestore:vm-100-20240501t100000z).</summary>
    [Parameter]
    [ValidatePattern(@"^(iqn\.\d{4}-\d{2}\.[a-z0-9.-]+(:[a-z0-9.:-]+)?|eui\.[0-9A-Fa-f]{16})$")]
    public string? TargetName { get; set; }

    /// <summary>Hold the publication in the foreground, showing its counters, until Ctrl+C; then unpublish it.</summary>
    [Parameter]
    public SwitchParameter Wait { get; set; }

    protected override void ProcessRecord()
    {
        try
        {
            var options = Options();
            Publication.CheckSafe(options);
            var info = SnapshotResolver.AsSnapshotInfo(Snapshot);
            bool sourceNamed = ParameterSetName != ConnectionSet || Connection is not null || Store is not null;
            // The publication outlives this command: it opens a source of its own (the one that listed a piped
            // snapshot, else the one the parameters name) and closes it when it is unpublished.
            var request = sourceNamed || info is null ? null
                : SnapshotSources.Of(info) ?? (Directory.Exists(info.Location) ? SourceRequest.ForFolder(info.Location) : null);
            var source = SourceFactory.Open(request ?? DescribeSource(), SessionsPerSnapshot);
            var owned = source as IDisposable;
            Sources.ISnapshotReader reader;
            try
            {
                reader = Run(ct => OpenSnapshotAsync(source, ct));
            }
            catch
            {
                owned?.Dispose();
                throw;
            }
            IReadOnlyList<string> archives;
            Sources.OpenedSnapshot snapshot;
            try
            {
                snapshot = Run(ct => Sources.OpenedSnapshot.OpenAsync(reader, Crypt, ct));
                archives = ResolveArchives(snapshot);
                string what = string.Join(", ", archives);
                if (!ShouldProcess($"{reader.Snapshot}", $"publish {what} over iSCSI at {options.Listen}{(ReadOnly ? " (read-only)" : "")}"))
                {
                    reader.DisposeAsync().AsTask().GetAwaiter().GetResult();
                    owned?.Dispose();
                    return;
                }
            }
            catch
            {
                reader.DisposeAsync().AsTask().GetAwaiter().GetResult();
                owned?.Dispose();
                throw;
            }
            var publication = Run(ct => Publication.StartAsync(PublicationRegistry.NextId(), snapshot, owned, archives, options, ct));
            PublicationRegistry.Add(publication);
            WriteVerbose($"Published {string.Join(", ", publication.Luns.Select(l => $"LUN {l.Lun} {l.Archive}"))} of {publication.Snapshot} as " +
                         $"{publication.TargetName} at {publication.Portal}" + (ReadOnly ? ", read-only." : $"; overlays in {Path.GetDirectoryName(publication.Luns[0].OverlayPath)}."));
            WriteObject(publication);
            if (Wait) HoldUntilStopped(publication);
        }
        catch (Exception e) when (IsFailure(e))
        {
            WriteFailure(e, FailureTarget(e, OverlayPath));
        }
    }

    private PublicationOptions Options()
    {
        if (!IPAddress.TryParse(Listen.Trim('[', ']'), out var address))
            throw new PbsException("ListenAddressInvalid", PbsErrorKind.InvalidArgument,
                $"-Listen '{Listen}' is not an IP address of this machine (e.g. 127.0.0.1, 192.0.2.10, 0.0.0.0)");
        ChapLogin? chap = null;
        if (ChapCredential is { } c)
        {
            IntPtr p = Marshal.SecureStringToGlobalAllocUnicode(c.Password);
            try { chap = new ChapLogin(c.UserName, Marshal.PtrToStringUni(p, c.Password.Length)); }
            finally { Marshal.ZeroFreeGlobalAllocUnicode(p); }
        }
        return new PublicationOptions
        {
            Listen = new IPEndPoint(address, Port),
            TargetName = TargetName,
            Chap = chap,
            AllowedInitiators = AllowedInitiator ?? [],
            CacheBytes = CacheSize,
            ReadOnly = ReadOnly,
            KeepOverlay = KeepOverlay,
            OverlayFolder = OverlayPath is null ? null : Directory.CreateDirectory(ResolvePath(OverlayPath)).FullName,
        };
    }

    /// <summary>-Archive names and wildcards against the manifest's index archives; nothing given: the default (all disks).</summary>
    private IReadOnlyList<string> ResolveArchives(Sources.OpenedSnapshot snapshot)
    {
        var manifest = snapshot.Manifest;
        if (Archive is null) return Publication.DefaultArchives(manifest);
        var indexes = manifest.Files.Where(f => f.Kind is ArchiveKind.FixedIndex or ArchiveKind.DynamicIndex)
            .Select(f => ArchiveNames.DisplayName(f.FileName)).ToList();
        var chosen = new List<string>();
        foreach (var a in Archive)
        {
            if (!WildcardPattern.ContainsWildcardCharacters(a))
                chosen.Add(a); // checked when opened, with the restore's message for a name that is not there
            else
            {
                var pattern = new WildcardPattern(a, WildcardOptions.IgnoreCase);
                var matched = indexes.Where(n => pattern.IsMatch(n)).ToList();
                if (matched.Count == 0)
                    throw new PbsNotFoundException("ArchiveNotFound", $"no disk archive of snapshot '{snapshot.Snapshot}' matches '{a}'; it has: {string.Join(", ", indexes)}");
                chosen.AddRange(matched);
            }
        }
        return chosen.Distinct(StringComparer.Ordinal).ToList();
    }

    /// <summary>-Wait: a progress record with the counters until Ctrl+C, then the publication ends.</summary>
    private void HoldUntilStopped(Publication publication)
    {
        try
        {
            while (!StopToken.WaitHandle.WaitOne(1000))
                WriteProgress(new ProgressRecord(1, $"Published {publication.TargetName} at {publication.Portal}",
                    $"{ProgressView.Size(publication.BytesRead)} read, {ProgressView.Size(publication.BytesWritten)} written; Ctrl+C to unpublish"));
        }
        catch (PipelineStoppedException)
        {
        }
        finally
        {
            PublicationRegistry.Remove(publication.Id);
            publication.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    }
}
