using System.Buffers;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;
using PbsRestore.Formats;

namespace PbsRestore.Server;

/// <summary>
/// The requests of a reader session (HTTP/2 on an upgraded connection): <c>/download</c>, <c>/chunk</c>,
/// <c>/speedtest</c>. Downloading an index registers its chunks for this session only (upstream register_chunk).
/// </summary>
public sealed class ReaderApi(TrafficShaper shaper, FaultInjector faults, ILogger<ReaderApi> log)
{
    private static readonly byte[] SpeedtestBody = CreateSpeedtestBody();
    /// <summary>Indexes are read whole to register their chunks: 64 MiB is 2 M chunks (8 TiB of 4 MiB chunks).</summary>
    private const long MaxIndexSize = 64L << 20;

    private static byte[] CreateSpeedtestBody()
    {
        var b = new byte[1024 * 1024];
        b.AsSpan().Fill((byte)'A');
        return b;
    }

    public async Task HandleAsync(HttpContext context, ReaderSession session)
    {
        try
        {
            if (!HttpMethods.IsGet(context.Request.Method))
                throw new HttpError(405, $"Method '{context.Request.Method}' not allowed.");
            switch (context.Request.Path.Value?.TrimEnd('/'))
            {
                case "/chunk":
                    await ChunkAsync(context, session);
                    break;
                case "/download":
                    await DownloadAsync(context, session);
                    break;
                case "/speedtest":
                    context.Response.ContentType = "application/octet-stream";
                    context.Response.ContentLength = SpeedtestBody.Length;
                    await shaper.WriteBodyAsync(context, SpeedtestBody, context.RequestAborted);
                    break;
                case "" or null:
                    await Json.WriteDataAsync(context, w =>
                    {
                        w.WriteStartArray();
                        foreach (var s in new[] { "chunk", "download", "speedtest" })
                        {
                            w.WriteStartObject();
                            w.WriteString("subdir", s);
                            w.WriteEndObject();
                        }
                        w.WriteEndArray();
                    });
                    break;
                default:
                    throw new HttpError(404, $"Path '{context.Request.Path}' not found.");
            }
        }
        catch (HttpError e)
        {
            if (e.Status != 404) log.LogInformation("reader session {Id}: {Path}: {Message}", session.ConnectionId, context.Request.Path, e.Message);
            await Json.WriteErrorAsync(context, e.Status, e.Message, e.ContentType);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or PbsException)
        {
            log.LogWarning("reader session {Id}: {Path}{Query} failed: {Message}", session.ConnectionId, context.Request.Path, context.Request.QueryString, e.Message);
            await Json.WriteErrorAsync(context, 400, e.Message);
        }
    }

    private async Task ChunkAsync(HttpContext context, ReaderSession session)
    {
        string? hex = context.Request.Query["digest"];
        if (string.IsNullOrEmpty(hex)) throw new HttpError(400, "parameter verification failed - 'digest': parameter is missing and it is not optional.", contentType: false);
        if (!ChunkDigest.TryParse(hex, out var digest))
            throw new HttpError(400, "parameter verification failed - 'digest': value does not match the regex pattern", contentType: false);
        hex = digest.ToString();
        if (!session.IsAllowed(digest))
            throw new HttpError(401, $"download chunk {hex} not allowed");
        if (faults.ErrorFor(session, digest, hex) is { } error)
        {
            await Json.WriteErrorAsync(context, error.Status, error.Message);
            return;
        }
        string path = Path.Combine(session.ChunkDir, hex[..4], hex);
        // The read (with any injected latency and queue) first; the body is sent outside the read queue.
        var (buffer, read) = await shaper.ReadAsync(() => ReadChunkFileAsync(session, path, hex, context.RequestAborted), context.RequestAborted);
        var plan = faults.Plan(session, digest);
        if (plan.Number > 0) session.Faults.BeginSend();
        try
        {
            if (plan.Hold)
            {
                // The connection is being dropped (--drop-after-chunks): this request dies with it.
                ArrayPool<byte>.Shared.Return(buffer);
                buffer = [];
                await Task.Delay(Timeout.Infinite, context.RequestAborted);
            }
            if (plan.Corrupt) faults.LogCorrupt(session, hex, plan.Number, FaultInjector.Corrupt(buffer.AsSpan(0, read)));
            context.Response.ContentType = "application/octet-stream";
            context.Response.ContentLength = read;
            if (plan.Stall)
            {
                int first = Math.Min(FaultInjector.StallPrefix, read / 2);
                await shaper.WriteBodyAsync(context, buffer.AsMemory(0, first), context.RequestAborted);
                await context.Response.Body.FlushAsync(context.RequestAborted);
                faults.LogStall(session, hex, plan.Number, first);
                await Task.Delay(faults.Stall, context.RequestAborted);
                await shaper.WriteBodyAsync(context, buffer.AsMemory(first, read - first), context.RequestAborted);
            }
            else
            {
                await shaper.WriteBodyAsync(context, buffer.AsMemory(0, read), context.RequestAborted);
            }
            // A counted response is complete (END_STREAM flushed) before it stops counting as being sent.
            if (plan.Number > 0 && faults.DropsConnections) await context.Response.CompleteAsync();
        }
        finally
        {
            if (plan.Number > 0) session.Faults.EndSend();
            if (buffer.Length > 0) ArrayPool<byte>.Shared.Return(buffer);
        }
        if (plan.Drop) _ = faults.DropAsync(session, hex, plan.Number);
    }

    /// <summary>Reads a chunk file whole into a rented buffer (the caller returns it).</summary>
    private static async Task<(byte[] Buffer, int Length)> ReadChunkFileAsync(ReaderSession session, string path, string hex, CancellationToken ct)
    {
        SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.Asynchronous);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new HttpError(400, $"reading chunk {hex} failed: the chunk file does not exist in datastore '{session.Store}'");
        }
        using (handle)
        {
            long length = RandomAccess.GetLength(handle);
            if (length > FileFormats.MaxBlobSize)
                throw new HttpError(400, $"reading chunk {hex} failed: {length} bytes is larger than any blob");
            byte[] buffer = ArrayPool<byte>.Shared.Rent((int)Math.Max(length, 1));
            try
            {
                int read = 0;
                while (read < length)
                {
                    int n = await RandomAccess.ReadAsync(handle, buffer.AsMemory(read, (int)length - read), read, ct);
                    if (n == 0) break;
                    read += n;
                }
                return (buffer, read);
            }
            catch
            {
                ArrayPool<byte>.Shared.Return(buffer);
                throw;
            }
        }
    }

    private async Task DownloadAsync(HttpContext context, ReaderSession session)
    {
        string? name = context.Request.Query["file-name"];
        if (string.IsNullOrEmpty(name)) throw new HttpError(400, "parameter verification failed - 'file-name': parameter is missing and it is not optional.", contentType: false);
        if (!ArchiveNames.IsValidStoredName(name))
            throw new HttpError(400, "parameter verification failed - 'file-name': value does not match the regex pattern", contentType: false);
        string path = Path.Combine(session.SnapshotDir, name);
        // Upstream: 404 naming the file's path on the server; we name it relative to the datastore (no server paths out).
        if (!File.Exists(path))
            throw new HttpError(404, $"open file \"{session.Snapshot}/{name}\" failed - not found");
        var kind = ArchiveNames.KindOf(name);
        context.Response.ContentType = "application/octet-stream";
        if (kind is ArchiveKind.FixedIndex or ArchiveKind.DynamicIndex)
        {
            var info = new FileInfo(path);
            if (info.Length > MaxIndexSize) throw new HttpError(400, $"index '{name}' is too large ({info.Length} bytes)");
            byte[] data = await File.ReadAllBytesAsync(path, context.RequestAborted);
            IChunkIndex index = kind == ArchiveKind.FixedIndex ? FixedIndex.Parse(data, name) : DynamicIndex.Parse(data, name);
            session.Register(index);
            log.LogDebug("reader session {Id}: registered {Count} chunks of {Name}", session.ConnectionId, index.Count, name);
            context.Response.ContentLength = data.Length;
            await shaper.WriteBodyAsync(context, data, context.RequestAborted);
        }
        else
        {
            long length = new FileInfo(path).Length;
            context.Response.ContentLength = length;
            await shaper.SendFileAsync(context, path, length, context.RequestAborted);
        }
    }
}
