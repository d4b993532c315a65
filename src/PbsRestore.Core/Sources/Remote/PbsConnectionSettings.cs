namespace PbsRestore.Sources.Remote;

/// <summary>
/// What it takes to reach a server: repository, optional certificate pin, and the password or API token secret.
/// Parameters win over the environment variables proxmox-backup-client reads (PBS_REPOSITORY, PBS_FINGERPRINT,
/// PBS_PASSWORD), so scripts can set defaults and still override them per call. <see cref="ToString"/> never
/// shows the secret.
/// </summary>
public sealed class PbsConnectionSettings
{
    public const string RepositoryVariable = "PBS_REPOSITORY";
    public const string FingerprintVariable = "PBS_FINGERPRINT";
    public const string PasswordVariable = "PBS_PASSWORD";

    public PbsConnectionSettings(PbsRepository repository, CertificateFingerprint? fingerprint, string? secret)
    {
        Repository = repository;
        Fingerprint = fingerprint;
        Secret = secret;
    }

    public PbsRepository Repository { get; }
    /// <summary>The pinned server certificate; null trusts the system certificate store.</summary>
    public CertificateFingerprint? Fingerprint { get; }
    /// <summary>The password (user) or token secret (API token). Never printed.</summary>
    internal string? Secret { get; }
    public bool HasSecret => !string.IsNullOrEmpty(Secret);

    /// <summary>Combines parameters (null = not given) with the process environment.</summary>
    public static PbsConnectionSettings Resolve(string? repository, string? fingerprint, string? secret) =>
        Resolve(repository, fingerprint, secret, Environment.GetEnvironmentVariable);

    /// <summary>Same, with the environment supplied (tests).</summary>
    public static PbsConnectionSettings Resolve(string? repository, string? fingerprint, string? secret, Func<string, string?> environment)
    {
        string? repoText = NonEmpty(repository) ?? NonEmpty(environment(RepositoryVariable))
            ?? throw new PbsException("RepositoryMissing", PbsErrorKind.InvalidArgument,
                $"no repository: give -Repository or set {RepositoryVariable} (e.g. 'root@pam!restore@pbs.example.com:store1')");
        var repo = PbsRepository.Parse(repoText);
        string? fpText = NonEmpty(fingerprint) ?? NonEmpty(environment(FingerprintVariable));
        var fp = fpText is null ? (CertificateFingerprint?)null : CertificateFingerprint.Parse(fpText);
        // An empty secret is "not given", not an empty password: PBS refuses empty ones anyway.
        string? sec = NonEmpty(secret) ?? NonEmpty(environment(PasswordVariable));
        return new PbsConnectionSettings(repo, fp, sec);
    }

    private static string? NonEmpty(string? s) => string.IsNullOrWhiteSpace(s) ? null : s;

    public override string ToString() =>
        $"{Repository}{(Fingerprint is { } f ? $" (fingerprint {f})" : "")}{(HasSecret ? (Repository.IsToken ? " (token secret set)" : " (password set)") : "")}";
}
