namespace PbsRestore;

/// <summary>What kind of failure a <see cref="PbsException"/> is; the cmdlet layer maps it to an ErrorCategory.</summary>
public enum PbsErrorKind
{
    InvalidData,
    Integrity,
    NotFound,
    InvalidArgument,
    Authentication,
    ResourceExists,
    Io,
    Connection,
}

/// <summary>
/// Base of every error the core raises on purpose. <see cref="ErrorId"/> is a stable identifier
/// (it becomes the FullyQualifiedErrorId in PowerShell), so treat the ids as API.
/// </summary>
public class PbsException : Exception
{
    public PbsException(string errorId, PbsErrorKind kind, string message, Exception? inner = null)
        : base(message, inner)
    {
        ErrorId = errorId;
        Kind = kind;
    }

    public string ErrorId { get; }
    public PbsErrorKind Kind { get; }
}

/// <summary>Bytes that do not follow a PBS format (bad magic, truncated, inconsistent sizes, hostile values).</summary>
public class PbsFormatException : PbsException
{
    public PbsFormatException(string message, string errorId = "InvalidFormat", Exception? inner = null)
        : base(errorId, PbsErrorKind.InvalidData, message, inner) { }
}

/// <summary>Data that parsed but failed a check: CRC, GCM tag, digest, index checksum, signature.</summary>
public class PbsIntegrityException : PbsException
{
    public PbsIntegrityException(string errorId, string message, Exception? inner = null)
        : base(errorId, PbsErrorKind.Integrity, message, inner) { }
}

/// <summary>A key problem: missing key, wrong key, wrong password, unreadable key file.</summary>
public class PbsKeyException : PbsException
{
    public PbsKeyException(string errorId, string message, Exception? inner = null)
        : base(errorId, errorId == "KeyPasswordWrong" ? PbsErrorKind.Authentication : PbsErrorKind.InvalidArgument, message, inner) { }
}

/// <summary>A snapshot, archive, namespace or chunk that does not exist.</summary>
public class PbsNotFoundException : PbsException
{
    public PbsNotFoundException(string errorId, string message, Exception? inner = null)
        : base(errorId, PbsErrorKind.NotFound, message, inner) { }
}
