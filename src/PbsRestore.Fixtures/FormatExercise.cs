namespace PbsRestore.Fixtures;

/// <summary>
/// Reads everything a parser can be asked for, so that the fuzzer (tests/PbsRestore.Fuzz) and the replay of its
/// findings (FuzzRegressionTests) exercise the same calls. Contract of the parsers: success or a PbsException.
/// </summary>
public static class FormatExercise
{
    /// <summary>Opens a pxar archive (a v2 one fails for want of its payload) and reads everything: every entry, content, hardlink and lookup.</summary>
    public static void Pxar(byte[] input)
    {
        var archive = PbsRestore.Formats.Pxar.PxarArchive.OpenAsync(new PbsRestore.Formats.MemoryAccessData(input), null, default).GetAwaiter().GetResult();
        int n = 0;
        var walk = archive.WalkAsync(archive.Root, default).GetAsyncEnumerator();
        while (walk.MoveNextAsync().AsTask().GetAwaiter().GetResult() && n++ < 100_000)
        {
            var e = walk.Current;
            if (e.Type == PbsRestore.Formats.Pxar.PxarEntryType.File)
                archive.OpenContentAsync(e, default).GetAwaiter().GetResult().CopyTo(Stream.Null);
            if (e.Type == PbsRestore.Formats.Pxar.PxarEntryType.Hardlink)
                archive.ResolveHardlinkAsync(e, default).GetAwaiter().GetResult();
            _ = archive.LookupAsync(e.Path, default).GetAwaiter().GetResult();
            _ = (e.Acl.AccessText(e.Mode), e.Acl.DefaultText());
        }
    }

    /// <summary>Opens a catalog and walks every table.</summary>
    public static void Catalog(byte[] input)
    {
        var catalog = PbsRestore.Formats.Pxar.PxarCatalog.OpenAsync(new PbsRestore.Formats.MemoryAccessData(input), default).GetAwaiter().GetResult();
        var stack = new Stack<PbsRestore.Formats.Pxar.CatalogEntry>([catalog.Root]);
        int n = 0;
        while (stack.Count > 0 && n++ < 100_000)
            foreach (var e in catalog.ListAsync(stack.Pop(), default).GetAwaiter().GetResult())
                if (e.Type == PbsRestore.Formats.Pxar.CatalogEntryType.Directory) stack.Push(e);
    }

}
