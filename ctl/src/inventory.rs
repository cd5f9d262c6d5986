//! The inventory: named hosts with their address, TLS files, labels and
//! groups, in a TOML file, and how command-line targets select among them.
//!
//! ```toml
//! [defaults]                      # optional; applies to every host
//! tls_ca = "certs/ca.pem"         # relative paths: to this file's directory
//! tls_cert = "certs/me.pem"
//! tls_key = "certs/me-key.pem"
//!
//! [hosts.web1]
//! address = "https://10.0.0.11:7443"   # "10.0.0.11:7443" means the same
//! labels = { zone = "a" }
//! groups = ["web"]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth::client::Address;
use serde::Deserialize;

/// Why the inventory or a target could not be used.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// No inventory file where one is needed.
    #[error("no inventory at {0} (needed for host names, --all, --group and --selector; see --inventory and docs/fleet.md)")]
    Missing(PathBuf),
    /// The file could not be read.
    #[error("cannot read the inventory {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid inventory TOML.
    #[error("invalid inventory {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A host's entry is unusable.
    #[error("inventory {path}: host {host:?}: {message}")]
    Host {
        /// The file.
        path: PathBuf,
        /// The host's name.
        host: String,
        /// What is wrong.
        message: String,
    },
    /// `-H name` names no host of the inventory and is not an address.
    #[error("unknown host {0:?}: not in the inventory and not an address")]
    UnknownHost(String),
    /// `--group g` names no host's group.
    #[error("no host of the inventory is in group {0:?}")]
    UnknownGroup(String),
    /// The targets select no host at all.
    #[error("the targets select no host ({0})")]
    NoHost(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    #[serde(default)]
    defaults: TlsEntry,
    #[serde(default)]
    hosts: BTreeMap<String, HostEntry>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsEntry {
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    server_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostEntry {
    address: String,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    server_name: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    groups: Vec<String>,
}

/// TLS files of a host (paths resolved).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsPaths {
    /// CA that the agent's certificate must chain to.
    pub ca: Option<PathBuf>,
    /// Client certificate.
    pub cert: Option<PathBuf>,
    /// Its key.
    pub key: Option<PathBuf>,
    /// Name to verify the agent's certificate against, instead of the
    /// address's host.
    pub server_name: Option<String>,
}

/// One agent to talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Its name in the inventory, or the address as typed.
    pub name: String,
    /// Where it listens.
    pub address: Address,
    /// How to talk TLS to it.
    pub tls: TlsPaths,
    /// Its labels, for --selector.
    pub labels: BTreeMap<String, String>,
    /// Its groups, for --group.
    pub groups: Vec<String>,
}

/// A parsed inventory.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// The hosts, by name.
    pub hosts: BTreeMap<String, Host>,
}

/// The default inventory path: `$XDG_CONFIG_HOME/berth/hosts.toml`, which
/// is `~/.config/berth/hosts.toml` unless XDG_CONFIG_HOME says otherwise.
pub fn default_path() -> PathBuf {
    dirs::config_dir()
        .unwrap_or_else(|| PathBuf::from(".config"))
        .join("berth")
        .join("hosts.toml")
}

/// An inventory address: a bare `host:port` means TLS, since plain TCP is
/// only for agents explicitly started with `--insecure-tcp`.
pub fn parse_address(s: &str) -> Result<Address, String> {
    if s.contains("://") || s.starts_with('/') || s.starts_with('.') {
        Address::parse(s)
    } else {
        Address::parse(&format!("https://{s}"))
    }
}

impl Inventory {
    /// Reads and checks the inventory at `path`.
    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                InventoryError::Missing(path.to_path_buf())
            } else {
                InventoryError::Read {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        Inventory::parse(&text, path)
    }

    /// Parses inventory text; relative paths are taken relative to the
    /// directory of `path`, so an inventory can travel with its certs.
    pub fn parse(text: &str, path: &Path) -> Result<Inventory, InventoryError> {
        let file: FileFormat = toml::from_str(text).map_err(|e| InventoryError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &Option<PathBuf>| p.as_ref().map(|p| base.join(p));
        let mut hosts = BTreeMap::new();
        for (name, e) in file.hosts {
            let err = |message: String| InventoryError::Host {
                path: path.to_path_buf(),
                host: name.clone(),
                message,
            };
            if name.is_empty() || name.contains(',') {
                return Err(err(
                    "a host name must be non-empty and without commas".into()
                ));
            }
            let address = parse_address(&e.address).map_err(err)?;
            let tls = TlsPaths {
                ca: resolve(&e.tls_ca).or_else(|| resolve(&file.defaults.tls_ca)),
                cert: resolve(&e.tls_cert).or_else(|| resolve(&file.defaults.tls_cert)),
                key: resolve(&e.tls_key).or_else(|| resolve(&file.defaults.tls_key)),
                server_name: e
                    .server_name
                    .clone()
                    .or_else(|| file.defaults.server_name.clone()),
            };
            if matches!(address, Address::Tls(_)) && tls.ca.is_none() {
                return Err(err(
                    "an https address needs tls_ca (in the host or in [defaults])".into(),
                ));
            }
            hosts.insert(
                name.clone(),
                Host {
                    name: name.clone(),
                    address,
                    tls,
                    labels: e.labels,
                    groups: e.groups,
                },
            );
        }
        Ok(Inventory { hosts })
    }
}

/// What the command line targets.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    /// `-H` entries: inventory names or addresses.
    pub names: Vec<String>,
    /// `--all`.
    pub all: bool,
    /// `--group`s.
    pub groups: Vec<String>,
    /// `--selector`s, all of which must match.
    pub selectors: Vec<(String, String)>,
}

impl Targets {
    /// The hosts selected, sorted by name, without duplicates: `--all`, or
    /// the union of `-H` and `--group`, then narrowed by `--selector` (which
    /// alone starts from all hosts). `ad_hoc_tls` applies to addresses that
    /// are not in the inventory.
    pub fn select(
        &self,
        inv: &Inventory,
        ad_hoc_tls: &TlsPaths,
    ) -> Result<Vec<Host>, InventoryError> {
        let mut chosen: BTreeMap<String, Host> = BTreeMap::new();
        let start_from_all = self.all || (self.names.is_empty() && self.groups.is_empty());
        if start_from_all {
            chosen.extend(inv.hosts.clone());
        }
        for n in &self.names {
            if let Some(h) = inv.hosts.get(n) {
                chosen.insert(n.clone(), h.clone());
                continue;
            }
            let address = Address::parse(n).map_err(|_| InventoryError::UnknownHost(n.clone()))?;
            chosen.insert(
                n.clone(),
                Host {
                    name: n.clone(),
                    address,
                    tls: ad_hoc_tls.clone(),
                    labels: BTreeMap::new(),
                    groups: vec![],
                },
            );
        }
        for g in &self.groups {
            let members: Vec<_> = inv
                .hosts
                .values()
                .filter(|h| h.groups.contains(g))
                .cloned()
                .collect();
            if members.is_empty() {
                return Err(InventoryError::UnknownGroup(g.clone()));
            }
            chosen.extend(members.into_iter().map(|h| (h.name.clone(), h)));
        }
        chosen.retain(|_, h| {
            self.selectors
                .iter()
                .all(|(k, v)| h.labels.get(k).is_some_and(|hv| v.is_empty() || hv == v))
        });
        if chosen.is_empty() {
            let what = if inv.hosts.is_empty() {
                "the inventory has no hosts".to_string()
            } else {
                "no host matches".to_string()
            };
            return Err(InventoryError::NoHost(what));
        }
        Ok(chosen.into_values().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INV: &str = r#"
[defaults]
tls_ca = "certs/ca.pem"
tls_cert = "certs/me.pem"
tls_key = "/abs/me-key.pem"

[hosts.web1]
address = "10.0.0.11:7443"
labels = { zone = "a", tier = "web" }
groups = ["web"]

[hosts.web2]
address = "https://10.0.0.12:7443"
tls_ca = "other-ca.pem"
labels = { zone = "b", tier = "web" }
groups = ["web", "canary"]

[hosts.local]
address = "/run/berth/berthd.sock"
"#;

    fn inv() -> Inventory {
        match Inventory::parse(INV, Path::new("/etc/berth/hosts.toml")) {
            Ok(i) => i,
            Err(e) => panic!("{e}"),
        }
    }

    fn names(t: Targets) -> Result<Vec<String>, String> {
        t.select(&inv(), &TlsPaths::default())
            .map(|hs| hs.into_iter().map(|h| h.name).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn parses_hosts_with_defaults_and_relative_paths() {
        let i = inv();
        let w1 = &i.hosts["web1"];
        assert_eq!(w1.address, Address::Tls("https://10.0.0.11:7443".into()));
        assert_eq!(w1.tls.ca, Some(PathBuf::from("/etc/berth/certs/ca.pem")));
        assert_eq!(w1.tls.key, Some(PathBuf::from("/abs/me-key.pem")));
        assert_eq!(
            i.hosts["web2"].tls.ca,
            Some(PathBuf::from("/etc/berth/other-ca.pem"))
        );
        assert_eq!(
            i.hosts["local"].address,
            Address::Unix("/run/berth/berthd.sock".into())
        );
    }

    #[test]
    fn rejects_bad_inventories() {
        let p = Path::new("/x/hosts.toml");
        let bad = |t: &str| Inventory::parse(t, p).map(drop).map_err(|e| e.to_string());
        assert!(bad("[hosts.a]\naddress = \"h:1\"\n").is_err_and(|e| e.contains("tls_ca")));
        assert!(bad("[hosts.a]\naddres = \"/s\"\n").is_err_and(|e| e.contains("addres")));
        assert!(bad("[hosts.a]\naddress = \"ftp://x\"\n").is_err());
        assert!(bad("[hosts.\"a,b\"]\naddress = \"/s\"\n").is_err());
        assert!(bad("").is_ok());
    }

    #[test]
    fn selects_targets() {
        let t = |names: &[&str], all, groups: &[&str], sel: &[(&str, &str)]| Targets {
            names: names.iter().map(|s| s.to_string()).collect(),
            all,
            groups: groups.iter().map(|s| s.to_string()).collect(),
            selectors: sel
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        assert_eq!(
            names(t(&[], true, &[], &[])),
            Ok(vec!["local".into(), "web1".into(), "web2".into()])
        );
        assert_eq!(
            names(t(&["web2", "web1", "web2"], false, &[], &[])),
            Ok(vec!["web1".into(), "web2".into()])
        );
        assert_eq!(
            names(t(&[], false, &["canary"], &[])),
            Ok(vec!["web2".into()])
        );
        assert_eq!(
            names(t(&[], false, &[], &[("zone", "a")])),
            Ok(vec!["web1".into()])
        );
        assert_eq!(
            names(t(&[], false, &["web"], &[("tier", "")])),
            Ok(vec!["web1".into(), "web2".into()])
        );
        assert_eq!(
            names(t(&["local", "/tmp/x.sock"], false, &[], &[])),
            Ok(vec!["/tmp/x.sock".into(), "local".into()])
        );
        assert!(names(t(&["nope"], false, &[], &[])).is_err());
        assert!(names(t(&[], false, &["nope"], &[])).is_err());
        assert!(names(t(&[], true, &[], &[("zone", "c")])).is_err());
    }
}
