using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;

namespace PbsRestore.Server;

/// <summary>The command line (a contract other tools rely on; keep the flags as they are).</summary>
public sealed partial class ServerOptions
{
    public const string Usage = """
        PbsRestore.Server - a Proxmox Backup Server compatible server over datastore folders (read-only).

        Usage:
          PbsRestore.Server --datastore NAME=FOLDER [--datastore NAME=FOLDER ...] [--listen IP:PORT]
                            [--token USER@REALM!ID:SECRET ...] [--user USER@REALM:PASSWORD ...]
                            [--ticket-lifetime SECONDS | --ticket-expire-after SECONDS]
                            [--chunk-latency-ms N] [--max-parallel-reads N]
                            [--bandwidth-mbit N] [--connection-bandwidth-mbit N]
                            [--drop-after-chunks N] [--corrupt-chunk DIGEST ...] [--corrupt-rate R] [--corrupt-seed S]
                            [--chunk-status DIGEST=404|500 ...] [--chunk-error-rate R] [--fault-seed S]
                            [--stall-chunk-ms N [--stall-every K]]

        Options:
          --datastore NAME=FOLDER      Serve the PBS datastore folder FOLDER (it has a .chunks folder) as
                                       datastore NAME. Repeat for several datastores. At least one is required.
          --listen IP:PORT             Address to listen on (HTTPS). Default 127.0.0.1:0 (a free port).
          --token USER@REALM!ID:SECRET An API token that may authenticate (header
                                       'Authorization: PBSAPIToken=USER@REALM!ID:SECRET'). Repeatable.
          --user USER@REALM:PASSWORD   A user that may log in with POST /api2/json/access/ticket. Repeatable.
          --ticket-lifetime SECONDS    How long a ticket (and CSRF token) stays valid. Default 7200 (2 h, as PBS).
          --ticket-expire-after SECONDS  Fault injection alias of --ticket-lifetime (the same setting; the last one
                                       given wins): tickets and CSRF tokens expire SECONDS after they were issued,
                                       and renewal or a reader upgrade with an expired ticket is refused (401).
          --help                       Print this text and exit.

        Injection (benchmarks and tests; models a datastore disk or a WAN link; nothing blocks a thread):
          --chunk-latency-ms N         Delay every /chunk read by N ms (a disk read or a WAN round trip). Default 0.
          --max-parallel-reads N       At most N chunk reads at once, server-wide (the disk's queue depth); the
                                       latency counts as part of the read: 40 ms with 16 caps at 400 chunks/s.
          --bandwidth-mbit N           The whole link: all response bodies of all connections share one token
                                       bucket of N megabits (10^6 bits) per second.
          --connection-bandwidth-mbit N  A single-flow cap: each connection (each reader session) has its own
                                       bucket of N megabits per second, as long fat paths and firewalls impose.
        Bodies are paced in 64 KiB slices against the buckets.

        Fault injection (tests of client recovery; all off by default; each injected fault is logged at Information):
        "Chunk responses" below are the 200 answers to a reader session's GET /chunk (corrupted and stalled ones
        included; refused, failed and injected-error answers are not counted).
          --drop-after-chunks N        Abort the reader connection (the upgraded TLS/TCP stream, no GOAWAY) after
                                       every N chunk responses on it, counted per connection: the Nth response is
                                       completed and flushed (with the responses still being sent on that connection;
                                       plus a 100 ms grace), then the connection is aborted. Chunk requests arriving
                                       in between are held unanswered and die with the connection.
          --corrupt-chunk DIGEST       Flip (XOR 0xFF) one byte of this chunk's body in transit (the file on disk is
                                       untouched), every time it is sent. Repeatable. The byte is the middle byte of
                                       the payload after the blob header (12 bytes; 44 for encrypted blobs), so the
                                       client sees a CRC mismatch (and a tag/digest failure when it decodes).
          --corrupt-rate R             Corrupt each chunk response the same way with probability R (0..1).
          --corrupt-seed S             Seed (integer) of the --corrupt-rate draws: one draw per chunk response, in
                                       the order responses are sent server-wide, so a run with the same seed and
                                       the same request order corrupts the same responses. Default: random (logged).
          --chunk-status DIGEST=404|500  Answer GET /chunk for this digest with that status and a PBS-like JSON error
                                       ({"data":null,"message":"..."}) instead of the chunk. Repeatable.
          --chunk-error-rate R         Answer each chunk request (one allowed by the session) with a 500 and a JSON
                                       error with probability R (0..1) instead of reading the chunk.
          --fault-seed S               Seed of the --chunk-error-rate draws (one per chunk request, in arrival order
                                       server-wide). Default: --corrupt-seed if given, else random (logged).
          --stall-chunk-ms N           Stall chunk responses: the headers and the first bytes of the body (half of it,
                                       at most 4 KiB) are sent and flushed, then the rest follows after N ms
                                       (0..600000; an asynchronous wait, no thread is blocked).
          --stall-every K              Stall every K-th chunk response of each connection (K >= 1). Default 1 (all);
                                       needs --stall-chunk-ms.

        Once listening, prints exactly one JSON line on stdout:
          {"url":"https://127.0.0.1:PORT","fingerprint":"aa:bb:..."}
        (fingerprint = SHA-256 of the self-signed certificate created at start). Logs go to stderr.
        Every authenticated id may read everything (no ACLs). Stops on SIGTERM or Ctrl+C.
        """;

    public List<(string Name, string Folder)> Datastores { get; } = [];
    public IPEndPoint Listen { get; private set; } = new(IPAddress.Loopback, 0);
    /// <summary>token id (user@realm!name) → secret.</summary>
    public Dictionary<string, string> Tokens { get; } = new(StringComparer.Ordinal);
    /// <summary>user id (user@realm) → password.</summary>
    public Dictionary<string, string> Users { get; } = new(StringComparer.Ordinal);
    public TimeSpan TicketLifetime { get; private set; } = TimeSpan.FromHours(2);
    public bool Help { get; private set; }
    /// <summary>--chunk-latency-ms (zero: none).</summary>
    public TimeSpan ChunkLatency { get; private set; } = TimeSpan.Zero;
    /// <summary>--max-parallel-reads (null: unlimited).</summary>
    public int? MaxParallelReads { get; private set; }
    /// <summary>--bandwidth-mbit (null: unlimited).</summary>
    public double? BandwidthMbit { get; private set; }
    /// <summary>--connection-bandwidth-mbit (null: unlimited).</summary>
    public double? ConnectionBandwidthMbit { get; private set; }

    /// <summary>--drop-after-chunks (null: never).</summary>
    public int? DropAfterChunks { get; private set; }
    /// <summary>--corrupt-chunk digests.</summary>
    public HashSet<Formats.ChunkDigest> CorruptChunks { get; } = [];
    /// <summary>--corrupt-rate (0: none).</summary>
    public double CorruptRate { get; private set; }
    /// <summary>--corrupt-seed (null: random).</summary>
    public int? CorruptSeed { get; private set; }
    /// <summary>--chunk-status: digest → 404 or 500.</summary>
    public Dictionary<Formats.ChunkDigest, int> ChunkStatus { get; } = [];
    /// <summary>--chunk-error-rate (0: none).</summary>
    public double ChunkErrorRate { get; private set; }
    /// <summary>--fault-seed (null: --corrupt-seed, else random).</summary>
    public int? FaultSeed { get; private set; }
    /// <summary>--stall-chunk-ms (zero: none).</summary>
    public TimeSpan StallChunk { get; private set; } = TimeSpan.Zero;
    /// <summary>--stall-every (default 1).</summary>
    public int StallEvery { get; private set; } = 1;
    private bool _stallEveryGiven;

    /// <summary>Whether any chunk fault is injected.</summary>
    public bool InjectsChunkFaults => DropAfterChunks is not null || CorruptChunks.Count > 0 || CorruptRate > 0 || ChunkStatus.Count > 0
                                      || ChunkErrorRate > 0 || StallChunk > TimeSpan.Zero;

    [GeneratedRegex("^[A-Za-z0-9_][A-Za-z0-9._\\-]{0,31}$")]
    private static partial Regex StoreNamePattern();

    // user@realm: PBS allows most printable characters except ':' and '@'/'!' in the parts; keep it simple and safe.
    [GeneratedRegex("^[^\\s:/@!]{1,64}@[A-Za-z0-9][A-Za-z0-9._\\-]{0,31}$")]
    private static partial Regex UserIdPattern();

    [GeneratedRegex("^[A-Za-z0-9_][A-Za-z0-9._\\-]{0,63}$")]
    private static partial Regex TokenNamePattern();

    public static bool IsValidStoreName(string name) => StoreNamePattern().IsMatch(name);
    public static bool IsValidUserId(string id) => UserIdPattern().IsMatch(id);

    /// <summary>Parses the arguments; throws <see cref="ArgumentException"/> with a message for the user (never echoing secrets).</summary>
    public static ServerOptions Parse(IReadOnlyList<string> args)
    {
        var o = new ServerOptions();
        for (int i = 0; i < args.Count; i++)
        {
            string arg = args[i];
            string? inline = null;
            int eq = arg.IndexOf('=');
            if (arg.StartsWith("--", StringComparison.Ordinal) && eq > 0)
            {
                inline = arg[(eq + 1)..];
                arg = arg[..eq];
            }
            string Value()
            {
                if (inline is not null) return inline;
                if (i + 1 >= args.Count) throw new ArgumentException($"{arg} needs a value");
                return args[++i];
            }
            switch (arg)
            {
                case "--help" or "-h" or "-?":
                    o.Help = true;
                    break;
                case "--datastore":
                {
                    string v = Value();
                    int e = v.IndexOf('=');
                    if (e <= 0 || e == v.Length - 1) throw new ArgumentException($"--datastore expects NAME=FOLDER, not '{v}'");
                    string name = v[..e], folder = v[(e + 1)..];
                    if (!IsValidStoreName(name)) throw new ArgumentException($"--datastore: '{name}' is not a valid datastore name ([A-Za-z0-9_][A-Za-z0-9._-]*, at most 32)");
                    if (o.Datastores.Any(d => d.Name == name)) throw new ArgumentException($"--datastore: '{name}' given twice");
                    o.Datastores.Add((name, folder));
                    break;
                }
                case "--listen":
                {
                    string v = Value();
                    bool hasPort = v.StartsWith('[') ? v.Contains("]:", StringComparison.Ordinal) : v.Count(ch => ch == ':') == 1;
                    if (!hasPort || !IPEndPoint.TryParse(v, out var ep))
                        throw new ArgumentException($"--listen expects IP:PORT (e.g. 127.0.0.1:0 or [::1]:8007), not '{v}'");
                    o.Listen = ep;
                    break;
                }
                case "--token":
                {
                    string v = Value();
                    int c = v.IndexOf(':');
                    string id = c > 0 ? v[..c] : v;
                    int bang = id.IndexOf('!');
                    if (c <= 0 || c == v.Length - 1 || bang <= 0 || !IsValidUserId(id[..bang]) || !TokenNamePattern().IsMatch(id[(bang + 1)..]))
                        throw new ArgumentException("--token expects USER@REALM!TOKENID:SECRET (the value given is not of that form)");
                    o.Tokens[id] = v[(c + 1)..];
                    break;
                }
                case "--user":
                {
                    string v = Value();
                    int c = v.IndexOf(':');
                    if (c <= 0 || c == v.Length - 1 || !IsValidUserId(v[..c]))
                        throw new ArgumentException("--user expects USER@REALM:PASSWORD (the value given is not of that form)");
                    o.Users[v[..c]] = v[(c + 1)..];
                    break;
                }
                case "--ticket-lifetime" or "--ticket-expire-after":
                {
                    string v = Value();
                    if (!int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out int s) || s <= 0)
                        throw new ArgumentException($"{arg} expects a positive number of seconds, not '{v}'");
                    o.TicketLifetime = TimeSpan.FromSeconds(s);
                    break;
                }
                case "--chunk-latency-ms":
                {
                    string v = Value();
                    if (!int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out int ms) || ms > 600_000)
                        throw new ArgumentException($"--chunk-latency-ms expects a number of milliseconds (0..600000), not '{v}'");
                    o.ChunkLatency = TimeSpan.FromMilliseconds(ms);
                    break;
                }
                case "--max-parallel-reads":
                {
                    string v = Value();
                    if (!int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out int n) || n is < 1 or > 65536)
                        throw new ArgumentException($"--max-parallel-reads expects a positive number (1..65536), not '{v}'");
                    o.MaxParallelReads = n;
                    break;
                }
                case "--bandwidth-mbit" or "--connection-bandwidth-mbit":
                {
                    string v = Value();
                    if (!double.TryParse(v, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double mbit) || !(mbit > 0) || mbit > 1e7)
                        throw new ArgumentException($"{arg} expects a positive number of megabits per second, not '{v}'");
                    if (arg == "--bandwidth-mbit") o.BandwidthMbit = mbit;
                    else o.ConnectionBandwidthMbit = mbit;
                    break;
                }
                case "--drop-after-chunks":
                {
                    string v = Value();
                    if (!int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out int n) || n < 1)
                        throw new ArgumentException($"--drop-after-chunks expects a positive number of chunk responses, not '{v}'");
                    o.DropAfterChunks = n;
                    break;
                }
                case "--corrupt-chunk":
                {
                    string v = Value();
                    if (!Formats.ChunkDigest.TryParse(v, out var d))
                        throw new ArgumentException($"--corrupt-chunk expects a 64-digit hex chunk digest, not '{v}'");
                    o.CorruptChunks.Add(d);
                    break;
                }
                case "--corrupt-rate" or "--chunk-error-rate":
                {
                    string v = Value();
                    if (!double.TryParse(v, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double r) || !(r >= 0 && r <= 1))
                        throw new ArgumentException($"{arg} expects a probability between 0 and 1, not '{v}'");
                    if (arg == "--corrupt-rate") o.CorruptRate = r;
                    else o.ChunkErrorRate = r;
                    break;
                }
                case "--corrupt-seed" or "--fault-seed":
                {
                    string v = Value();
                    if (!int.TryParse(v, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int seed))
                        throw new ArgumentException($"{arg} expects an integer seed, not '{v}'");
                    if (arg == "--corrupt-seed") o.CorruptSeed = seed;
                    else o.FaultSeed = seed;
                    break;
                }
                case "--chunk-status":
                {
                    string v = Value();
                    int e = v.IndexOf('=');
                    if (e <= 0 || !Formats.ChunkDigest.TryParse(v[..e], out var d) || v[(e + 1)..] is not ("404" or "500"))
                        throw new ArgumentException($"--chunk-status expects DIGEST=404 or DIGEST=500 (64-digit hex digest), not '{v}'");
                    o.ChunkStatus[d] = v[(e + 1)..] == "404" ? 404 : 500;
                    break;
                }
                case "--stall-chunk-ms":
                {
                    string v = Value();
                    if (!int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out int ms) || ms > 600_000)
                        throw new ArgumentException($"--stall-chunk-ms expects a number of milliseconds (0..600000), not '{v}'");
                    o.StallChunk = TimeSpan.FromMilliseconds(ms);
                    break;
                }
                case "--stall-every":
                {
                    string v = Value();
                    if (!int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out int k) || k < 1)
                        throw new ArgumentException($"--stall-every expects a positive number, not '{v}'");
                    o.StallEvery = k;
                    o._stallEveryGiven = true;
                    break;
                }
                default:
                    throw new ArgumentException($"unknown argument '{arg}' (see --help)");
            }
        }
        if (!o.Help && o._stallEveryGiven && o.StallChunk <= TimeSpan.Zero)
            throw new ArgumentException("--stall-every needs --stall-chunk-ms N (N > 0)");
        if (!o.Help && o.Datastores.Count == 0) throw new ArgumentException("at least one --datastore NAME=FOLDER is required (see --help)");
        return o;
    }
}
