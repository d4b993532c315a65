using System.Diagnostics;
using System.Globalization;
using PbsRestore.Formats;
using PbsRestore.Sources.Local;
using PbsRestore.Sources.Remote;
using PbsRestore.Sources;

namespace PbsRestore.Bench;

/// <summary>
/// Chunk download throughput of ONE reader session (HTTP/2 connection) against our server, raw (no decoding), with
/// the server's and this process's CPU: what a session can carry before the pipeline adds anything. Was a "Fact"
/// without assertion in the unit tests; a measurement belongs here.
/// <c>PbsRestore.Bench --server-session DATASTORE [--concurrency N] [--rounds N]</c>; DATASTORE holds a vm snapshot
/// with a fixed index (e.g. written by PbsRestore.Fixtures <c>image --size 1GiB --pattern random:1</c>).
/// </summary>
internal static class ServerSessionBench
{
    public static async Task<int> RunAsync(string[] args)
    {
        if (args.Length == 0 || args[0].StartsWith("--", StringComparison.Ordinal))
        {
            Console.Error.WriteLine("usage: --server-session DATASTORE [--concurrency N] [--rounds N]");
            return 2;
        }
        string store = Path.GetFullPath(args[0]);
        int concurrency = 16, rounds = 3;
        for (int i = 1; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--concurrency": concurrency = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--rounds": rounds = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                default: throw new ArgumentException($"unknown argument '{args[i]}'");
            }
        }
        var local = new LocalDatastore(store);
        var snap = (await local.ListSnapshotsAsync(BackupNamespace.Root, null, null, default))
            .First(s => s.Files.Any(f => f.Name.EndsWith(".fidx", StringComparison.Ordinal)));
        string fidxName = snap.Files.First(f => f.Name.EndsWith(".fidx", StringComparison.Ordinal)).Name;

        var server = await Benchmark.StartServerAsync(BenchOptions.FindRoot(), store, []);
        try
        {
            using var client = Benchmark.Client(server.Port, server.Fingerprint);
            using var remote = new RemoteDatastore(client, sessionsPerSnapshot: 1);
            await using var reader = (RemoteSnapshotReader)await remote.OpenSnapshotAsync(snap.Ref, default);
            var index = FixedIndex.Parse(await reader.ReadFileAsync(fidxName, 64 << 20, default));
            var digests = Enumerable.Range(0, index.Count).Select(index.DigestAt).Distinct().ToList();
            for (int round = 0; round < rounds; round++)
            {
                long bytes = 0;
                server.Process.Refresh();
                var serverCpu0 = server.Process.TotalProcessorTime;
                var clientCpu0 = Process.GetCurrentProcess().TotalProcessorTime;
                var sw = Stopwatch.StartNew();
                await Parallel.ForEachAsync(digests, new ParallelOptions { MaxDegreeOfParallelism = concurrency }, async (d, ct) =>
                {
                    var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent((16 << 20) + (1 << 16)); // the largest chunk PBS allows
                    try { Interlocked.Add(ref bytes, await reader.ReadRawChunkAsync(d, buffer, ct)); }
                    finally { System.Buffers.ArrayPool<byte>.Shared.Return(buffer); }
                });
                sw.Stop();
                server.Process.Refresh();
                double serverCpu = (server.Process.TotalProcessorTime - serverCpu0).TotalSeconds;
                double clientCpu = (Process.GetCurrentProcess().TotalProcessorTime - clientCpu0).TotalSeconds;
                Console.WriteLine($"round {round}: {digests.Count} chunks, {bytes / 1e6:F0} MB in {sw.Elapsed.TotalSeconds:F2} s = " +
                                  $"{bytes / 1e6 / sw.Elapsed.TotalSeconds:F0} MB/s over {reader.Sessions.Count} session(s) " +
                                  $"(concurrency {concurrency}; CPU s: server {serverCpu:F2}, client {clientCpu:F2})");
            }
        }
        finally
        {
            if (!server.Process.HasExited) server.Process.Kill();
            server.Process.Dispose();
        }
        return 0;
    }
}
