//! Seccomp: which system calls a container may make.
//!
//! Every container runs under a seccomp filter unless it asks for none
//! (`seccomp=unconfined`): berth's default profile ([`default`]), or a
//! profile of its own in Docker's JSON format ([`profile`]). A profile is
//! compiled to BPF ([`compile`], berth's own emitter: one program, a binary
//! search over the call numbers) once, when berthd starts (the default) or
//! when a container is created with it, and kept in
//! `<state>/seccomp/<sha256>.bpf`, named by the digest of the file, so a
//! change of the emitter gives new names (files of the old emitter stay
//! valid for the containers that name them); the container's init installs
//! the file's programs as the last step before it execs the container's
//! process.

#[cfg(any(test, feature = "fuzzing"))]
mod bpf_interp;
mod compile;
pub mod default;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod profile;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use profile::{go_arch, parse_kernel, Host, Profile};

/// Docker's default capabilities, which a container has (see the monitor's
/// `caps.rs`): the profile's capability conditions are decided on these.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Why a profile cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// Not valid JSON, or not a profile: serde's message, cut to
    /// [`MAX_JSON_ERROR`] bytes (it quotes the offending value, which a
    /// client may have made megabytes long).
    #[error("not a seccomp profile in Docker's format: {0}")]
    Json(String),
    /// Over [`profile::MAX_PROFILE_BYTES`].
    #[error("seccomp profile of {bytes} bytes: at most {max} are accepted")]
    TooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A rule that cannot be built.
    #[error("seccomp profile: {0}")]
    InvalidRule(String),
    /// Something berth does not do (yet).
    #[error("not supported yet: {0} in a seccomp profile")]
    Unsupported(String),
    /// The profile allows every call: ask for `unconfined` instead.
    #[error("the seccomp profile allows every system call: use seccomp=unconfined instead")]
    AllowsEverything,
    /// The program cannot be built (for example: too large).
    #[error("compiling the seccomp profile: {0}")]
    Filter(String),
    /// The compiled programs could not be stored.
    #[error("storing the compiled seccomp profile in {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What a container asks for, as its spec keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Choice {
    /// Nothing asked: the default profile.
    #[default]
    Unset,
    /// berth's default profile, asked for by name.
    Default,
    /// No filter.
    Unconfined,
    /// A profile of the container's own: its text in Docker's JSON format
    /// as a request brings it, and once compiled (at Create) only the
    /// digest of the compiled programs, which is what the record keeps.
    Custom {
        /// The profile, until compiled.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        json: String,
        /// "sha256:<hex>" of the compiled programs, once compiled.
        #[serde(default)]
        digest: String,
    },
}

/// Compiled profiles, one file each under `<state>/seccomp/`.
pub struct Seccomp {
    dir: PathBuf,
    host_arch: &'static str,
    kernel: (u32, u32),
    default: PathBuf,
    /// The default profile compiled for other capability sets than
    /// Docker's default (by the sorted capability names).
    default_for_caps: Mutex<HashMap<Vec<String>, PathBuf>>,
    /// Digests whose file is known to be in place.
    stored: Mutex<HashSet<String>>,
}

impl Seccomp {
    /// Opens the store in `dir` and compiles the default profile into it.
    pub fn open(dir: &Path) -> Result<Self, SeccompError> {
        let io = |source| SeccompError::Io {
            path: dir.to_path_buf(),
            source,
        };
        match crate::state_dir::create_private_dir(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(io(e)),
            _ => {}
        }
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut store = Seccomp {
            dir: dir.to_path_buf(),
            host_arch: go_arch(),
            kernel: parse_kernel(&release).unwrap_or((0, 0)),
            default: PathBuf::new(),
            default_for_caps: Mutex::new(HashMap::new()),
            stored: Mutex::new(HashSet::new()),
        };
        let caps: Vec<String> = DEFAULT_CAPS.iter().map(|c| c.to_string()).collect();
        let digest = store.store(&default::profile(), &caps)?;
        store.default = store.path_of(&digest);
        Ok(store)
    }

    /// Compiles a custom profile (or finds it compiled) for a container
    /// with the capabilities `caps` (`CAP_*` names), which decide the
    /// rules' capability conditions: the choice as the container's record
    /// keeps it, with the digest instead of the text. The default profile
    /// for capabilities other than Docker's default is compiled here too,
    /// so Create fails if it cannot be.
    pub fn prepare(&self, choice: Choice, caps: &[String]) -> Result<Choice, SeccompError> {
        match choice {
            Choice::Custom { json, .. } => {
                if json.is_empty() {
                    return Err(SeccompError::InvalidRule(
                        "no profile given (a custom profile needs its JSON)".into(),
                    ));
                }
                let digest = self.store(&Profile::parse(json.as_bytes())?, caps)?;
                Ok(Choice::Custom {
                    json: String::new(),
                    digest: format!("sha256:{digest}"),
                })
            }
            Choice::Unset | Choice::Default => {
                self.default_file(caps)?;
                Ok(choice)
            }
            other => Ok(other),
        }
    }

    /// The default profile's programs for a container with `caps`.
    fn default_file(&self, caps: &[String]) -> Result<PathBuf, SeccompError> {
        let mut key: Vec<String> = caps.to_vec();
        key.sort();
        key.dedup();
        let mut default: Vec<&str> = DEFAULT_CAPS.to_vec();
        default.sort();
        if key.iter().map(String::as_str).eq(default) {
            return Ok(self.default.clone());
        }
        if let Some(p) = self.lock_default_for_caps().get(&key) {
            return Ok(p.clone());
        }
        let digest = self.store(&default::profile(), &key)?;
        let path = self.path_of(&digest);
        self.lock_default_for_caps().insert(key, path.clone());
        Ok(path)
    }

    fn lock_default_for_caps(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<String>, PathBuf>> {
        self.default_for_caps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The file of compiled programs for a prepared choice, for a
    /// container with `caps`; `None` for `unconfined`.
    pub fn program_file(
        &self,
        choice: &Choice,
        caps: &[String],
    ) -> Result<Option<PathBuf>, SeccompError> {
        match choice {
            Choice::Unset | Choice::Default => Ok(Some(self.default_file(caps)?)),
            Choice::Unconfined => Ok(None),
            Choice::Custom { digest, .. } => {
                let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(SeccompError::InvalidRule(format!(
                        "unknown compiled profile {:.80}",
                        digest
                    )));
                }
                let path = self.path_of(hex);
                if !path.is_file() {
                    return Err(SeccompError::Io {
                        path,
                        source: std::io::ErrorKind::NotFound.into(),
                    });
                }
                Ok(Some(path))
            }
        }
    }

    fn path_of(&self, hex: &str) -> PathBuf {
        self.dir.join(format!("{hex}.bpf"))
    }

    /// Compiles `profile` for a container with `caps` and writes the
    /// programs under their digest, once.
    fn store(&self, profile: &Profile, caps: &[String]) -> Result<String, SeccompError> {
        let caps: Vec<&str> = caps.iter().map(String::as_str).collect();
        let host = Host {
            caps: &caps,
            arch: self.host_arch,
            kernel: self.kernel,
        };
        let bytes = compile::encode(&compile::compile(profile, &host)?);
        let digest = hex::encode(Sha256::digest(&bytes));
        let mut stored = self.stored.lock().unwrap_or_else(|e| e.into_inner());
        if !stored.contains(&digest) {
            let path = self.path_of(&digest);
            crate::fsutil::replace(&path, &bytes).map_err(|source| SeccompError::Io {
                path: path.clone(),
                source,
            })?;
            stored.insert(digest.clone());
        }
        Ok(digest)
    }
}

/// The longest JSON error message [`SeccompError::Json`] keeps.
pub const MAX_JSON_ERROR: usize = 256;

impl SeccompError {
    /// A JSON error, its message bounded (see [`SeccompError::Json`]).
    pub(crate) fn json(e: &serde_json::Error) -> Self {
        let mut msg = e.to_string();
        if msg.len() > MAX_JSON_ERROR {
            let mut cut = MAX_JSON_ERROR;
            while !msg.is_char_boundary(cut) {
                cut -= 1;
            }
            msg.truncate(cut);
            msg.push_str("...");
        }
        SeccompError::Json(msg)
    }
}

#[cfg(test)]
mod equivalence;
#[cfg(any(test, feature = "fuzzing"))]
mod oracle;
#[cfg(test)]
mod random_profiles;
#[cfg(test)]
mod tests;
