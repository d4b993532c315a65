using System.Buffers;
using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace PbsRestore.Server;

/// <summary>Writes PBS-style answers: <c>{"data": …}</c>, and errors as their plain message.</summary>
public static class Json
{
    // Plain output as upstream's serde_json (no \u0027 for quotes); answers are never embedded in HTML.
    private static readonly JsonWriterOptions Options = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static async Task WriteDataAsync(HttpContext context, Action<Utf8JsonWriter> writeData, int status = 200)
    {
        var buffer = new ArrayBufferWriter<byte>(1024);
        using (var w = new Utf8JsonWriter(buffer, Options))
        {
            w.WriteStartObject();
            w.WritePropertyName("data");
            writeData(w);
            w.WriteEndObject();
        }
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json;charset=UTF-8";
        context.Response.ContentLength = buffer.WrittenCount;
        await WriteBodyAsync(context, buffer.WrittenMemory);
    }

    private static Task WriteBodyAsync(HttpContext context, ReadOnlyMemory<byte> body) =>
        TrafficShaper.Of(context) is { } shaper
            ? shaper.WriteBodyAsync(context, body, context.RequestAborted)
            : context.Response.Body.WriteAsync(body, context.RequestAborted).AsTask();

    /// <summary>
    /// An error answer as upstream's REST server writes it (seen on PBS 3.2.4): the message as the plain-text body,
    /// content type application/json (none for a refused authentication), the status line's standard reason phrase.
    /// </summary>
    public static async Task WriteErrorAsync(HttpContext context, int status, string message, bool contentType = true)
    {
        if (context.Response.HasStarted) { context.Abort(); return; }
        context.Response.Clear();
        byte[] body = System.Text.Encoding.UTF8.GetBytes(message);
        context.Response.StatusCode = status;
        if (contentType) context.Response.ContentType = "application/json;charset=UTF-8";
        context.Response.ContentLength = body.Length;
        await WriteBodyAsync(context, body);
    }
}

/// <summary>An error with the HTTP status to answer and a message for the client.</summary>
public sealed class HttpError(int status, string message, bool contentType = true) : Exception(message)
{
    public int Status { get; } = status;
    /// <summary>Whether the answer has a content type: upstream's parameter errors on the reader's HTTP/2 have none.</summary>
    public bool ContentType { get; } = contentType;
}
