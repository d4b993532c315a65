using System.Text;
using System.Text.Json;
using PbsRestore.Formats;

namespace PbsRestore.Tests.Formats;

public class CanonicalJsonTests
{
    private static string Canon(string json) =>
        Encoding.UTF8.GetString(CanonicalJson.Serialize(JsonDocument.Parse(json).RootElement));

    [Fact]
    public void Keys_AreSortedRecursively_AndWhitespaceDropped()
    {
        Assert.Equal("{\"a\":1,\"b\":{\"x\":[3,{\"m\":true,\"n\":false}],\"y\":null},\"c\":\"s\"}",
            Canon("{ \"c\": \"s\", \"b\": { \"y\": null, \"x\": [ 3, { \"n\": false, \"m\": true } ] }, \"a\": 1 }"));
    }

    [Fact]
    public void Keys_SortByUtf8Bytes_NotCulture()
    {
        // byte order: "B" (0x42) < "a" (0x61) < "crypt-mode" < "csum" ('r' < 's') < "é" (0xC3 0xA9) < "中" (0xE4 …)
        Assert.Equal("{\"B\":1,\"a\":2,\"crypt-mode\":3,\"csum\":4,\"é\":5,\"中\":6}",
            Canon("{\"中\":6,\"é\":5,\"csum\":4,\"crypt-mode\":3,\"a\":2,\"B\":1}"));
        // U+FF5E (EF BD 9E) sorts after U+1F600 (F0 9F 98 80) in UTF-16 but before it in UTF-8
        Assert.Equal("{\"\uFF5E\":1,\"\U0001F600\":2}", Canon("{\"\U0001F600\":2,\"\uFF5E\":1}"));
    }

    [Fact]
    public void Strings_AreEscapedAsSerdeJson()
    {
        Assert.Equal("\"q\\\"b\\\\n\\nr\\rt\\tb\\bf\\fu\\u0001\\u001f/<>&'\u007f\"",
            Canon("\"q\\\"b\\\\n\\nr\\rt\\tb\\bf\\fu\\u0001\\u001f\\/\\u003c\\u003e\\u0026\\u0027\\u007f\""));
        Assert.Equal("\"\\u0000\"", Canon("\"\\u0000\""));
    }

    [Fact]
    public void NonAscii_IsLeftRaw()
    {
        var bytes = CanonicalJson.Serialize(JsonDocument.Parse("\"\\u00e9 \\u4e2d \\ud83d\\ude00 \\u2028\"").RootElement);
        Assert.Equal(Encoding.UTF8.GetBytes("\"é 中 \U0001F600 \u2028\""), bytes);
    }

    [Fact]
    public void Numbers_AndLiterals_AreKept()
    {
        Assert.Equal("[0,-1,1714557600,9007199254740993,true,false,null]",
            Canon("[0, -1, 1714557600, 9007199254740993, true, false, null]"));
    }

    [Fact]
    public void UpstreamManifestCanonicalForm()
    {
        // the canonical text of upstream's test_manifest_signature manifest (signature and unprotected removed)
        const string expected = "{\"backup-id\":\"elsa\",\"backup-time\":1593179765,\"backup-type\":\"host\"," +
            "\"files\":[{\"crypt-mode\":\"encrypt\",\"csum\":\"0101010101010101010101010101010101010101010101010101010101010101\"," +
            "\"filename\":\"test1.img.fidx\",\"size\":200},{\"crypt-mode\":\"none\"," +
            "\"csum\":\"0202020202020202020202020202020202020202020202020202020202020202\",\"filename\":\"abc.blob\",\"size\":200}]}";
        const string input = "{\"backup-type\":\"host\",\"backup-id\":\"elsa\",\"backup-time\":1593179765,\"files\":[" +
            "{\"filename\":\"test1.img.fidx\",\"size\":200,\"csum\":\"0101010101010101010101010101010101010101010101010101010101010101\",\"crypt-mode\":\"encrypt\"}," +
            "{\"filename\":\"abc.blob\",\"size\":200,\"csum\":\"0202020202020202020202020202020202020202020202020202020202020202\",\"crypt-mode\":\"none\"}]}";
        Assert.Equal(expected, Canon(input));
    }
}
