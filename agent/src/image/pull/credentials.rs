//! The credential store: `registry-auth.json`, written by `login`, read by
//! pulls without per-request credentials, never returned by any RPC.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::locked;
use crate::fsutil::{write_atomic, WriteOptions};
use crate::image::{reference, ImageError};

/// The registry used when a reference names none (and by `login` without one).
const DOCKER_HUB: &str = "docker.io";

/// Registry credentials. `Debug` never shows the password.
#[derive(Clone, Serialize, Deserialize)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({:?}, <redacted>)", self.username)
    }
}

/// The stored-credentials file.
#[derive(Default, Serialize, Deserialize)]
struct AuthFile {
    /// Registry (host[:port]) -> credentials.
    registries: HashMap<String, Credentials>,
}

/// The credentials file, with its read-modify-write serialised.
pub(super) struct CredentialStore {
    path: PathBuf,
    lock: Mutex<()>,
}

/// The registry (host[:port]) a login names; empty and Docker Hub's aliases
/// mean Docker Hub.
pub(super) fn login_registry(registry: &str) -> Result<String, ImageError> {
    let r = registry
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let r = match r {
        "" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB,
        r => r,
    };
    // Validate it the way references are validated: as the domain of one.
    let probe = format!("{r}/x");
    let norm = reference::normalize(&probe)?;
    if !norm.starts_with(&format!("{r}/")) {
        return Err(ImageError::InvalidReference(format!(
            "{registry:?} is not a registry host[:port]"
        )));
    }
    Ok(r.to_string())
}

impl CredentialStore {
    /// The store at `path` (created by the first [`store`](Self::store)).
    pub(super) fn new(path: PathBuf) -> Self {
        // The temporary of versions before fsutil::write_atomic, if a crash
        // left one (mode 0600, but a copy of secrets all the same).
        let _ = std::fs::remove_file(path.with_extension("tmp"));
        CredentialStore {
            path,
            lock: Mutex::new(()),
        }
    }

    /// Credentials stored for `registry`, if any (and if the file is readable).
    pub(super) fn get(&self, registry: &str) -> Option<Credentials> {
        let _g = locked(&self.lock);
        self.read()
            .map_err(|e| tracing::warn!("stored registry credentials: {e}"))
            .ok()?
            .registries
            .remove(registry)
    }

    /// Stores `creds` for `registry`, replacing earlier ones.
    pub(super) fn store(&self, registry: &str, creds: Credentials) -> Result<(), ImageError> {
        let _g = locked(&self.lock);
        let mut file = self.read()?;
        file.registries.insert(registry.to_string(), creds);
        self.write(&file)
    }

    /// Forgets the credentials of `registry`; NotFound if there are none.
    pub(super) fn remove(&self, registry: &str) -> Result<(), ImageError> {
        let _g = locked(&self.lock);
        let mut file = self.read()?;
        if file.registries.remove(registry).is_none() {
            return Err(ImageError::NotFound(format!(
                "no credentials stored for {registry}"
            )));
        }
        self.write(&file)
    }

    fn read(&self) -> Result<AuthFile, ImageError> {
        match std::fs::read(&self.path) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| {
                ImageError::io(
                    format!("parsing {}", self.path.display()),
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AuthFile::default()),
            Err(e) => Err(ImageError::io(
                format!("reading {}", self.path.display()),
                e,
            )),
        }
    }

    /// Replaces the credentials file atomically; created 0600 from the start
    /// so the secrets are never readable by others, not even briefly.
    fn write(&self, auth: &AuthFile) -> Result<(), ImageError> {
        let data = serde_json::to_vec_pretty(auth).map_err(|e| {
            ImageError::io(format!("serialising {}", self.path.display()), e.into())
        })?;
        write_atomic(&self.path, &data, WriteOptions::synced().with_mode(0o600))
            .map_err(|e| ImageError::io(format!("replacing {}", self.path.display()), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_registry_names() {
        assert_eq!(login_registry("").unwrap(), "docker.io");
        assert_eq!(login_registry("index.docker.io").unwrap(), "docker.io");
        assert_eq!(
            login_registry("https://reg.example.com:5000/").unwrap(),
            "reg.example.com:5000"
        );
        assert_eq!(login_registry("127.0.0.1:5000").unwrap(), "127.0.0.1:5000");
        assert!(login_registry("bad host").is_err());
        assert!(login_registry("foo").is_err());
    }

    #[test]
    fn stored_credentials_round_trip_in_a_file_only_root_reads() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry-auth.json");
        let store = CredentialStore::new(path.clone());
        assert!(store.get("r:5000").is_none());
        let creds = |p: &str| Credentials {
            username: "alice".into(),
            password: p.into(),
        };
        store.store("r:5000", creds("one")).unwrap();
        store.store("r:5000", creds("two")).unwrap();
        assert_eq!(store.get("r:5000").unwrap().password, "two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        store.remove("r:5000").unwrap();
        assert!(store.get("r:5000").is_none());
        assert!(matches!(
            store.remove("r:5000"),
            Err(ImageError::NotFound(_))
        ));
        // An unreadable file means no stored credentials, not a failed pull.
        std::fs::write(&path, b"not json").unwrap();
        assert!(store.get("r:5000").is_none());
    }

    #[test]
    fn credentials_debug_hides_the_password() {
        let c = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
