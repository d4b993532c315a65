using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace PbsRestore.Formats;

/// <summary>One entry of a manifest's file list.</summary>
/// <param name="FileName">Stored name, e.g. <c>drive-scsi0.img.fidx</c>.</param>
/// <param name="CryptMode">How it was protected.</param>
/// <param name="Size">For an index: the archive's logical size; for a blob: the blob file's size.</param>
/// <param name="Csum">For an index: its index checksum; for a blob: SHA-256 of the blob file.</param>
public sealed record ManifestFile(string FileName, CryptMode CryptMode, long Size, byte[] Csum)
{
    public ArchiveKind Kind => ArchiveNames.KindOf(FileName);
    public string CsumHex => Hex.Lower(Csum);
}

/// <summary>
/// The snapshot manifest, <c>index.json.blob</c> (upstream: pbs-datastore/src/manifest.rs). The signature is
/// HMAC-SHA256(id_key, canonical JSON without <c>unprotected</c> and <c>signature</c>); the key fingerprint
/// sits in <c>unprotected.key-fingerprint</c>. Immutable after parsing.
/// </summary>
public sealed class BackupManifest
{
    /// <summary>Larger manifests are refused: a real one lists a handful of files.</summary>
    public const int MaxJsonSize = 4 << 20;
    private const int MaxFiles = 10_000;

    private readonly JsonElement _json;

    private BackupManifest(JsonElement json, string backupType, string backupId, long backupTime,
        IReadOnlyList<ManifestFile> files, string? signature, KeyFingerprint? keyFingerprint)
    {
        _json = json;
        BackupType = backupType;
        BackupId = backupId;
        BackupTime = backupTime;
        Files = files;
        Signature = signature;
        KeyFingerprint = keyFingerprint;
    }

    public string BackupType { get; }
    public string BackupId { get; }
    /// <summary>Epoch seconds.</summary>
    public long BackupTime { get; }
    public IReadOnlyList<ManifestFile> Files { get; }
    public string? Signature { get; }
    public KeyFingerprint? KeyFingerprint { get; }

    /// <summary>The <c>unprotected</c> object as JSON text (notes, verify state, upload stats).</summary>
    public string UnprotectedJson => _json.TryGetProperty("unprotected", out var u) ? u.GetRawText() : "{}";

    /// <summary>
    /// The snapshot comment: the first line of <c>unprotected.notes</c>, as PBS's snapshot listing reports it
    /// ('comment'). PVE's backup jobs write the guest name there by default (notes template <c>{{guestname}}</c>).
    /// </summary>
    public string? Comment =>
        _json.TryGetProperty("unprotected", out var u) && u.ValueKind == JsonValueKind.Object
        && u.TryGetProperty("notes", out var n) && n.ValueKind == JsonValueKind.String
            ? n.GetString()!.Split('\n')[0].TrimEnd('\r')
            : null;

    /// <summary>
    /// Decodes a manifest blob (<c>index.json.blob</c>, never encrypted) and parses it: the one decode for a manifest
    /// from a datastore folder or a server. Errors name <paramref name="source"/>.
    /// </summary>
    public static BackupManifest FromBlob(ReadOnlySpan<byte> raw, string source)
    {
        try
        {
            using var decoder = new BlobDecoder(null, MaxJsonSize);
            return Parse(decoder.DecodeToArray(raw), source);
        }
        catch (PbsException e) when (e is not PbsFormatException { ErrorId: "ManifestBadFileName" })
        {
            throw new PbsFormatException($"{source}: cannot read manifest: {e.Message}", e.ErrorId, e);
        }
    }

    public static BackupManifest Parse(ReadOnlySpan<byte> json, string? source = null)
    {
        string where = source ?? "manifest";
        if (json.Length > MaxJsonSize)
            throw new PbsFormatException($"{where}: {json.Length} bytes of JSON exceeds the limit of {MaxJsonSize}", "ManifestTooLarge");
        // JsonDocument checks UTF-8 inside strings only when they are read (GetRawText, GetString), which would
        // surface later as an InvalidOperationException: refuse invalid UTF-8 here, with the other format errors.
        if (!System.Text.Unicode.Utf8.IsValid(json))
            throw new PbsFormatException($"{where}: invalid JSON: not valid UTF-8", "ManifestInvalid");
        JsonElement root;
        try
        {
            using var doc = JsonDocument.Parse(json.ToArray(), new JsonDocumentOptions { MaxDepth = 32 });
            root = doc.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new PbsFormatException($"{where}: invalid JSON: {e.Message}", "ManifestInvalid", e);
        }
        try
        {
            if (root.ValueKind != JsonValueKind.Object) throw new PbsFormatException($"{where}: not a JSON object", "ManifestInvalid");
            // Parsers disagree on which duplicate wins; a manifest whose meaning depends on that is refused
            // (the signature check re-parses the text and must see the same values as this parser).
            RejectDuplicateKeys(root, where);
            string type = root.GetProperty("backup-type").GetString() ?? "";
            string id = root.GetProperty("backup-id").GetString() ?? "";
            long time = root.GetProperty("backup-time").GetInt64();
            var files = new List<ManifestFile>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var f in root.GetProperty("files").EnumerateArray())
            {
                if (files.Count >= MaxFiles) throw new PbsFormatException($"{where}: more than {MaxFiles} files", "ManifestInvalid");
                string name = f.GetProperty("filename").GetString() ?? "";
                if (!ArchiveNames.IsValidStoredName(name))
                    throw new PbsFormatException($"{where}: refusing file name '{Printable(name)}' (not a plain .fidx/.didx/.blob name: no paths, '..' or control characters)", "ManifestBadFileName");
                if (!seen.Add(name)) throw new PbsFormatException($"{where}: file '{name}' is listed twice", "ManifestInvalid");
                CryptMode mode;
                try
                {
                    mode = CryptModeNames.Parse(f.TryGetProperty("crypt-mode", out var cm) ? cm.GetString() : null);
                }
                catch (PbsFormatException e)
                {
                    throw new PbsFormatException($"{where}: file '{name}': {e.Message}", "ManifestInvalid", e);
                }
                long size = f.GetProperty("size").GetInt64();
                if (size < 0) throw new PbsFormatException($"{where}: file '{name}' has negative size", "ManifestInvalid");
                var csum = new byte[32];
                if (!Hex.TryParse(f.GetProperty("csum").GetString() ?? "", csum))
                    throw new PbsFormatException($"{where}: file '{name}' has an invalid csum", "ManifestInvalid");
                files.Add(new ManifestFile(name, mode, size, csum));
            }
            string? sig = root.TryGetProperty("signature", out var s) && s.ValueKind == JsonValueKind.String ? s.GetString() : null;
            KeyFingerprint? fp = null;
            if (root.TryGetProperty("unprotected", out var u) && u.ValueKind == JsonValueKind.Object
                && u.TryGetProperty("key-fingerprint", out var kf) && kf.ValueKind == JsonValueKind.String)
                fp = Formats.KeyFingerprint.Parse(kf.GetString()!);
            return new BackupManifest(root, type, id, time, files, sig, fp);
        }
        catch (Exception e) when (e is KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new PbsFormatException($"{where}: malformed manifest: {e.Message}", "ManifestInvalid", e);
        }
    }

    private static void RejectDuplicateKeys(JsonElement e, string where)
    {
        if (e.ValueKind == JsonValueKind.Object)
        {
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var p in e.EnumerateObject())
            {
                if (!names.Add(p.Name))
                    throw new PbsFormatException($"{where}: key '{Printable(p.Name)}' appears twice in one object", "ManifestInvalid");
                RejectDuplicateKeys(p.Value, where);
            }
        }
        else if (e.ValueKind == JsonValueKind.Array)
        {
            foreach (var item in e.EnumerateArray()) RejectDuplicateKeys(item, where);
        }
    }

    private static string Printable(string s) =>
        new(s.Select(c => char.IsControl(c) ? '?' : c).Take(200).ToArray());

    /// <summary>The file entry with exactly this stored name, or null.</summary>
    public ManifestFile? FindFile(string storedName) => Files.FirstOrDefault(f => f.FileName == storedName);

    public bool IsEncrypted => Files.Any(f => f.CryptMode == CryptMode.Encrypt);

    /// <summary>
    /// Checks the key against the manifest before anything is restored: a manifest made with a key needs that
    /// key (same fingerprint); with a key, a signed manifest's signature must verify.
    /// </summary>
    public void VerifyKey(CryptConfig? crypt, string? source = null)
    {
        string where = source ?? "manifest";
        if (crypt is null)
        {
            if (KeyFingerprint is { } need && IsEncrypted)
                throw new PbsKeyException("KeyRequired", $"{where}: the snapshot is encrypted with key {need.ToShortString()}; give its key file with -Keyfile");
            if (IsEncrypted)
                throw new PbsKeyException("KeyRequired", $"{where}: the snapshot is encrypted; give its key file with -Keyfile");
            return;
        }
        if (KeyFingerprint is { } fp && fp != crypt.Fingerprint)
            throw new PbsKeyException("KeyFingerprintMismatch",
                $"wrong key: the snapshot was made with key {fp.ToShortString()}, the key given is {crypt.Fingerprint.ToShortString()}");
        if (Signature is not null)
        {
            string expected = Hex.Lower(ComputeSignature(_json, crypt));
            if (!string.Equals(expected, Signature, StringComparison.OrdinalIgnoreCase))
                throw new PbsIntegrityException("ManifestSignatureMismatch", $"{where}: the manifest signature does not verify with the given key");
        }
    }

    private static byte[] ComputeSignature(JsonElement manifest, CryptConfig crypt)
    {
        var signed = JsonNode.Parse(manifest.GetRawText())!.AsObject();
        signed.Remove("unprotected");
        signed.Remove("signature");
        using var doc = JsonDocument.Parse(signed.ToJsonString());
        return crypt.ComputeAuthTag(CanonicalJson.Serialize(doc.RootElement));
    }

    /// <summary>Verifies a downloaded index or blob against its manifest entry (size and checksum).</summary>
    public static void VerifyFile(ManifestFile entry, long size, ReadOnlySpan<byte> csum, string? source = null)
    {
        string where = source ?? entry.FileName;
        if (size != entry.Size)
            throw new PbsIntegrityException("ManifestSizeMismatch", $"{where}: size {size} does not match the manifest's {entry.Size}");
        if (!csum.SequenceEqual(entry.Csum))
            throw new PbsIntegrityException("ManifestChecksumMismatch", $"{where}: checksum {Hex.Lower(csum)} does not match the manifest's {entry.CsumHex}");
    }

    /// <summary>
    /// Writes a manifest as upstream's server stores it: pretty JSON, keys sorted, signed and carrying the key
    /// fingerprint when <paramref name="crypt"/> is given. Used by the test datastore writer.
    /// </summary>
    public static byte[] Build(string backupType, string backupId, long backupTime, IEnumerable<ManifestFile> files,
        CryptConfig? crypt, JsonObject? unprotected = null)
    {
        var o = new JsonObject
        {
            ["backup-type"] = backupType,
            ["backup-id"] = backupId,
            ["backup-time"] = backupTime,
            ["files"] = new JsonArray(files.Select(f => (JsonNode)new JsonObject
            {
                ["filename"] = f.FileName,
                ["crypt-mode"] = f.CryptMode.ToPbsString(),
                ["size"] = f.Size,
                ["csum"] = f.CsumHex,
            }).ToArray()),
        };
        var unprot = unprotected is null ? new JsonObject() : (JsonObject)unprotected.DeepClone();
        if (crypt is not null)
        {
            using var doc = JsonDocument.Parse(o.ToJsonString());
            o["signature"] = Hex.Lower(ComputeSignature(doc.RootElement, crypt));
            unprot["key-fingerprint"] = crypt.Fingerprint.ToString();
        }
        else
        {
            o["signature"] = null;
        }
        o["unprotected"] = unprot;
        using var final = JsonDocument.Parse(o.ToJsonString());
        return SortedPretty(final.RootElement);
    }

    private static byte[] SortedPretty(JsonElement e)
    {
        using var canonical = JsonDocument.Parse(CanonicalJson.Serialize(e));
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
            canonical.RootElement.WriteTo(w);
        return ms.ToArray();
    }
}
