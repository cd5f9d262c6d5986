//! `berthctl certs init|issue`: a fleet's own CA and the certificates its
//! agents (server) and operators (client) present for mutual TLS, so nobody
//! needs an openssl recipe. Keys are ECDSA P-256, written mode 0600.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::cli::{CertKind, CertsInitArgs, CertsIssueArgs};
use crate::error::{Error, Result};
use berth_runtime::civil::civil_from_days;

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused (bad name, key generation failed).
    #[error("cannot make the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Refusing to overwrite.
    #[error("{0} already exists (use --force to replace it)")]
    Exists(PathBuf),
    /// No CA to sign with.
    #[error("no CA in {0} (run `berthctl certs init` first)")]
    NoCa(PathBuf),
}

impl From<CertError> for Error {
    fn from(e: CertError) -> Self {
        Error::Message(e.to_string())
    }
}

/// The default certificates directory: `~/.config/berth/certs`.
pub fn default_dir() -> PathBuf {
    dirs::config_dir()
        .unwrap_or_else(|| PathBuf::from(".config"))
        .join("berth")
        .join("certs")
}

/// A validity window from yesterday (tolerates clock skew between hosts)
/// to `days` from today.
fn validity(params: &mut CertificateParams, days: u32) {
    let today = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| (d.as_secs() / 86_400) as i64)
        .unwrap_or(0);
    let date = |day: i64| {
        let (y, m, d) = civil_from_days(day);
        rcgen::date_time_ymd(y as i32, m as u8, d as u8)
    };
    params.not_before = date(today - 1);
    params.not_after = date(today + i64::from(days));
}

fn write_file(
    path: &Path,
    data: &str,
    mode: u32,
    force: bool,
) -> std::result::Result<(), CertError> {
    let file_err = |source| CertError::File {
        path: path.to_path_buf(),
        source,
    };
    if path.exists() && !force {
        return Err(CertError::Exists(path.to_path_buf()));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(file_err)?;
    }
    // Write beside, then rename: a crash never leaves half a key.
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(file_err)?;
    f.write_all(data.as_bytes()).map_err(file_err)?;
    f.sync_all().map_err(file_err)?;
    std::fs::rename(&tmp, path).map_err(file_err)
}

/// Paths of the CA certificate and key in `dir`.
pub fn ca_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("ca.pem"), dir.join("ca-key.pem"))
}

/// Creates a CA in `dir`; returns the certificate's path.
pub fn init_ca(
    dir: &Path,
    name: &str,
    days: u32,
    force: bool,
) -> std::result::Result<PathBuf, CertError> {
    let (cert_path, key_path) = ca_paths(dir);
    if !force {
        for p in [&cert_path, &key_path] {
            if p.exists() {
                return Err(CertError::Exists(p.clone()));
            }
        }
    }
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, days);
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    write_file(&key_path, &key.serialize_pem(), 0o600, force)?;
    write_file(&cert_path, &cert.pem(), 0o644, force)?;
    Ok(cert_path)
}

/// Issues a certificate signed by the CA in `dir`; returns the paths of the
/// certificate and key.
pub fn issue(
    dir: &Path,
    kind: CertKind,
    name: &str,
    sans: &[String],
    days: u32,
    force: bool,
) -> std::result::Result<(PathBuf, PathBuf), CertError> {
    let (ca_cert, ca_key) = ca_paths(dir);
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                CertError::NoCa(dir.to_path_buf())
            } else {
                CertError::File {
                    path: p.to_path_buf(),
                    source,
                }
            }
        })
    };
    let issuer = Issuer::from_ca_cert_pem(&read(&ca_cert)?, KeyPair::from_pem(&read(&ca_key)?)?)?;
    let sans: Vec<String> = if sans.is_empty() {
        vec![name.to_string()]
    } else {
        sans.to_vec()
    };
    // rcgen makes an IP SAN of anything that parses as an address, and a
    // DNS SAN of the rest: agents are often reached by IP.
    let mut params = CertificateParams::new(sans)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::NoCa;
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![match kind {
        CertKind::Server => ExtendedKeyUsagePurpose::ServerAuth,
        CertKind::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    validity(&mut params, days);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    let cert_path = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}-key.pem"));
    if !force {
        for p in [&cert_path, &key_path] {
            if p.exists() {
                return Err(CertError::Exists(p.clone()));
            }
        }
    }
    write_file(&key_path, &key.serialize_pem(), 0o600, force)?;
    write_file(&cert_path, &cert.pem(), 0o644, force)?;
    Ok((cert_path, key_path))
}

fn valid_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name == "ca"
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || name.starts_with('.')
    {
        return Err(Error::Message(format!(
            "invalid certificate name {name:?} (letters, digits, '-', '_' and '.'; not \"ca\")"
        )));
    }
    Ok(())
}

/// `certs init`.
pub fn cmd_init(args: CertsInitArgs) -> Result<()> {
    let dir = args.dir.unwrap_or_else(default_dir);
    let cert = init_ca(&dir, &args.name, args.days, args.force)?;
    println!("CA certificate: {}", cert.display());
    println!(
        "CA key:         {} (keep it secret)",
        ca_paths(&dir).1.display()
    );
    Ok(())
}

/// `certs issue`.
pub fn cmd_issue(args: CertsIssueArgs) -> Result<()> {
    valid_name(&args.name)?;
    let dir = args.dir.unwrap_or_else(default_dir);
    let (cert, key) = issue(
        &dir, args.kind, &args.name, &args.sans, args.days, args.force,
    )?;
    println!("Certificate: {}", cert.display());
    println!("Key:         {}", key.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_then_issue_and_refuse_overwrites() {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        let d = dir.path();
        assert!(matches!(
            issue(d, CertKind::Server, "a", &[], 1, false),
            Err(CertError::NoCa(_))
        ));
        assert!(init_ca(d, "test CA", 10, false).is_ok());
        assert!(matches!(
            init_ca(d, "x", 10, false),
            Err(CertError::Exists(_))
        ));
        let sans = vec!["10.1.2.3".to_string(), "web1".to_string()];
        let r = issue(d, CertKind::Server, "web1", &sans, 10, false);
        assert!(r.is_ok(), "{r:?}");
        assert!(issue(d, CertKind::Client, "me", &[], 10, false).is_ok());
        assert!(matches!(
            issue(d, CertKind::Client, "me", &[], 10, false),
            Err(CertError::Exists(_))
        ));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join("me-key.pem"))
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        assert_eq!(mode, 0o600);
        let pem = std::fs::read_to_string(d.join("web1.pem")).unwrap_or_default();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(valid_name("../x").is_err() && valid_name("ca").is_err());
        assert!(valid_name("web-1.example").is_ok());
    }
}
