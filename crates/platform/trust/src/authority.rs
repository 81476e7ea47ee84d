//! The stack's certificate authority, for development and tests: one CA and
//! one certificate per process, written to a trust directory that every
//! process of the stack reads its own files from.
//!
//! The directory holds `ca.crt` (the authority every process trusts),
//! `ca.key`, and `<name>.crt` / `<name>.key` for each process. It is 0700
//! and every file 0600. In production the same files come from the
//! operator's own CA (for example one secret per process).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};

use crate::TrustError;

/// The authority's certificate, trusted by every process.
pub const CA_CERT: &str = "ca.crt";
/// The authority's private key.
pub const CA_KEY: &str = "ca.key";

/// Where a process's files are in a trust directory.
#[derive(Debug, Clone)]
pub struct TrustFiles {
    /// The directory.
    pub dir: PathBuf,
}

impl TrustFiles {
    /// The trust directory `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The authority's certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join(CA_CERT)
    }

    /// `name`'s certificate.
    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.crt"))
    }

    /// `name`'s private key.
    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }
}

/// A certificate authority that issues one certificate per process.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

/// A certificate with its private key, both PEM.
#[derive(Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").finish_non_exhaustive()
    }
}

/// Certificates are valid from the start of this year to the end of next
/// year: long enough for development, short enough to notice.
fn validity(params: &mut CertificateParams) {
    let year = 1970
        + (SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            / 31_556_952) as i32;
    params.not_before = rcgen::date_time_ymd(year - 1, 12, 31);
    params.not_after = rcgen::date_time_ymd(year + 2, 1, 1);
}

impl Authority {
    /// A new authority with a fresh P-256 key.
    pub fn generate() -> Result<Self, TrustError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(TrustError::invalid)?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(TrustError::invalid)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "Tailor stack authority");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params);
        let cert = params.self_signed(&key).map_err(TrustError::invalid)?;
        let key_pem = key.serialize_pem();
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// The authority's certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A certificate for the process `name`, valid for the DNS name `name`
    /// and for loopback addresses, usable as server and as client.
    pub fn issue(&self, name: &str) -> Result<Issued, TrustError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(TrustError::invalid)?;
        let mut params = CertificateParams::new(vec![name.to_owned(), "localhost".to_owned()])
            .map_err(TrustError::invalid)?;
        params.subject_alt_names.push(rcgen::SanType::IpAddress(
            std::net::Ipv4Addr::LOCALHOST.into(),
        ));
        params.subject_alt_names.push(rcgen::SanType::IpAddress(
            std::net::Ipv6Addr::LOCALHOST.into(),
        ));
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        validity(&mut params);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(TrustError::invalid)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Writes the authority and a certificate for each of `names` into
    /// `dir` (0700, files 0600). A directory that already holds every file
    /// is left as it is, so restarts keep their certificates; an incomplete
    /// one is filled with a new authority and new certificates.
    pub fn ensure_dir(dir: &Path, names: &[&str]) -> Result<TrustFiles, TrustError> {
        let files = TrustFiles::new(dir);
        let complete = [files.ca_cert(), dir.join(CA_KEY)]
            .into_iter()
            .chain(names.iter().flat_map(|n| [files.cert(n), files.key(n)]))
            .all(|path| path.is_file());
        if complete {
            return Ok(files);
        }
        create_private_dir(dir)?;
        let authority = Self::generate()?;
        write_private(&files.ca_cert(), &authority.cert_pem)?;
        write_private(&dir.join(CA_KEY), &authority.key_pem)?;
        for name in names {
            let issued = authority.issue(name)?;
            write_private(&files.cert(name), &issued.cert_pem)?;
            write_private(&files.key(name), &issued.key_pem)?;
        }
        Ok(files)
    }
}

fn create_private_dir(dir: &Path) -> Result<(), TrustError> {
    let error = |source| TrustError::File {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(error)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(error)?;
    }
    Ok(())
}

fn write_private(path: &Path, contents: &str) -> Result<(), TrustError> {
    use std::io::Write;
    let error = |source| TrustError::File {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(error)?;
    file.write_all(contents.as_bytes()).map_err(error)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trust_directory_is_private_and_kept_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let trust = dir.path().join("trust");
        let files = Authority::ensure_dir(&trust, &["catalog", "web-bff"]).unwrap();
        let first = std::fs::read_to_string(files.cert("catalog")).unwrap();
        assert!(first.starts_with("-----BEGIN CERTIFICATE-----"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&trust), 0o700);
            assert_eq!(mode(&files.key("web-bff")), 0o600);
            assert_eq!(mode(&trust.join(CA_KEY)), 0o600);
        }
        Authority::ensure_dir(&trust, &["catalog", "web-bff"]).unwrap();
        assert_eq!(
            first,
            std::fs::read_to_string(files.cert("catalog")).unwrap()
        );
        // A process the directory lacks: everything is issued anew.
        Authority::ensure_dir(&trust, &["catalog", "web-bff", "orders"]).unwrap();
        assert_ne!(
            first,
            std::fs::read_to_string(files.cert("catalog")).unwrap()
        );
    }
}
