//! A CNI network configuration list (a "conflist"), as a client sends it
//! at CreateNetwork: checked once, stored in the network's record, and
//! turned into each plugin's stdin at every ADD, CHECK and DEL.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::CniError;
use crate::error::capped;

/// Largest conflist accepted, in bytes.
pub const MAX_BYTES: usize = 64 * 1024;
/// Most plugins in one list.
pub const MAX_PLUGINS: usize = 16;
/// Longest plugin `type` (a file name in the plugin directories).
pub const MAX_TYPE: usize = 64;
/// CNI versions whose result format berthd reads (0.3.0 onwards: `ips`
/// with `address`, `interfaces`, `dns`).
pub const VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// The capability a plugin declares to be handed published ports.
pub const PORT_MAPPINGS: &str = "portMappings";

/// A checked conflist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflist {
    /// Its `cniVersion`.
    pub cni_version: String,
    /// Its `name` (handed to every plugin).
    pub name: String,
    /// The plugins' own objects, in order, as given.
    pub plugins: Vec<Map<String, Value>>,
}

fn bad(msg: impl Into<String>) -> CniError {
    CniError::Invalid(msg.into())
}

/// A plugin `type`: a plain file name, never a path, so that only
/// binaries in berthd's plugin directories run.
pub fn check_type(t: &str) -> Result<(), CniError> {
    let ok = !t.is_empty()
        && t.len() <= MAX_TYPE
        && t != "."
        && t != ".."
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "plugin type {:?}: 1 to {MAX_TYPE} of [a-zA-Z0-9._-], a file name in berthd's \
             CNI plugin directories, not a path",
            capped(t)
        )))
    }
}

impl Conflist {
    /// Parses and checks `text` (the bytes a client sent).
    pub fn parse(text: &[u8]) -> Result<Conflist, CniError> {
        if text.len() > MAX_BYTES {
            return Err(bad(format!(
                "the CNI conflist is {} bytes; at most {MAX_BYTES}",
                text.len()
            )));
        }
        let v: Value = serde_json::from_slice(text)
            .map_err(|e| bad(format!("the CNI conflist is not JSON: {e}")))?;
        let Value::Object(top) = v else {
            return Err(bad("the CNI conflist is not a JSON object"));
        };
        let version = match top.get("cniVersion") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(bad("the CNI conflist has no \"cniVersion\" string")),
        };
        if !VERSIONS.contains(&version.as_str()) {
            return Err(bad(format!(
                "cniVersion {:?} is not one of {}",
                capped(&version),
                VERSIONS.join(", ")
            )));
        }
        let name = match top.get("name") {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 128 => s.clone(),
            _ => {
                return Err(bad(
                    "the CNI conflist has no \"name\" string of 1 to 128 bytes",
                ))
            }
        };
        let plugins = match top.get("plugins") {
            Some(Value::Array(a)) if !a.is_empty() && a.len() <= MAX_PLUGINS => a,
            _ => {
                return Err(bad(format!(
                    "the CNI conflist has no \"plugins\" list of 1 to {MAX_PLUGINS} objects"
                )))
            }
        };
        let mut list = Vec::with_capacity(plugins.len());
        for p in plugins {
            let Value::Object(obj) = p else {
                return Err(bad("a CNI plugin entry is not a JSON object"));
            };
            match obj.get("type") {
                Some(Value::String(t)) => check_type(t)?,
                _ => return Err(bad("a CNI plugin entry has no \"type\" string")),
            }
            if let Some(ipam) = obj.get("ipam").and_then(|i| i.get("type")) {
                match ipam {
                    Value::String(t) => check_type(t)?,
                    _ => return Err(bad("an \"ipam\" section's \"type\" is not a string")),
                }
            }
            list.push(obj.clone());
        }
        Ok(Conflist {
            cni_version: version,
            name,
            plugins: list,
        })
    }

    /// The plugin types, in order.
    pub fn types(&self) -> Vec<&str> {
        self.plugins
            .iter()
            .filter_map(|p| p.get("type").and_then(Value::as_str))
            .collect()
    }

    /// Every binary the list runs: the plugin types and their IPAM
    /// plugins' types.
    pub fn binaries(&self) -> Vec<&str> {
        let mut all = self.types();
        all.extend(
            self.plugins
                .iter()
                .filter_map(|p| p.get("ipam")?.get("type")?.as_str()),
        );
        all
    }

    /// Whether plugin `i` declares capability `cap` (`"capabilities":
    /// {"portMappings": true}`).
    pub fn has_capability(&self, i: usize, cap: &str) -> bool {
        self.plugins
            .get(i)
            .and_then(|p| p.get("capabilities"))
            .and_then(|c| c.get(cap))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// Whether any plugin takes published ports.
    pub fn supports_ports(&self) -> bool {
        (0..self.plugins.len()).any(|i| self.has_capability(i, PORT_MAPPINGS))
    }

    /// Plugin `i`'s stdin: its object with the list's `name` and
    /// `cniVersion`, the previous plugin's result (if any), and
    /// `runtimeConfig` for the capabilities it declares.
    pub fn plugin_config(
        &self,
        i: usize,
        prev: Option<&Value>,
        runtime: &RuntimeConfig,
    ) -> Result<Vec<u8>, CniError> {
        let mut obj = self
            .plugins
            .get(i)
            .cloned()
            .ok_or_else(|| bad(format!("no plugin {i} in the conflist")))?;
        obj.insert("name".into(), Value::String(self.name.clone()));
        obj.insert("cniVersion".into(), Value::String(self.cni_version.clone()));
        obj.remove("runtimeConfig");
        if let Some(prev) = prev {
            obj.insert("prevResult".into(), prev.clone());
        }
        if self.has_capability(i, PORT_MAPPINGS) && !runtime.port_mappings.is_empty() {
            let mut rc = Map::new();
            rc.insert(
                PORT_MAPPINGS.into(),
                serde_json::to_value(&runtime.port_mappings)
                    .map_err(|e| bad(format!("encoding port mappings: {e}")))?,
            );
            obj.insert("runtimeConfig".into(), Value::Object(rc));
        }
        serde_json::to_vec(&obj).map_err(|e| bad(format!("encoding the plugin config: {e}")))
    }
}

/// One published port as the `portMappings` capability names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// The host's port.
    pub host_port: u16,
    /// The container's port.
    pub container_port: u16,
    /// "tcp" or "udp".
    pub protocol: String,
    /// The host address, "" for all.
    #[serde(default, rename = "hostIP", skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

/// What the runtime hands plugins beyond their config
/// (CNI's `runtimeConfig`, by capability).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeConfig {
    /// Published ports, for plugins declaring `portMappings`.
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"cniVersion":"1.0.0","name":"t","plugins":[
        {"type":"bridge","bridge":"cni-t","ipam":{"type":"host-local","subnet":"10.9.0.0/24"}},
        {"type":"portmap","capabilities":{"portMappings":true}}]}"#;

    fn err(text: &str) -> String {
        match Conflist::parse(text.as_bytes()) {
            Err(CniError::Invalid(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_good_list_parses_with_its_plugins_and_capabilities() {
        let c = Conflist::parse(GOOD.as_bytes()).unwrap();
        assert_eq!(c.types(), ["bridge", "portmap"]);
        assert!(c.supports_ports());
        assert!(!c.has_capability(0, PORT_MAPPINGS));
    }

    #[test]
    fn types_must_be_file_names() {
        for t in [
            "../bin/sh",
            "/usr/bin/true",
            "..",
            "",
            "a b",
            &"x".repeat(65),
        ] {
            let text =
                format!(r#"{{"cniVersion":"1.0.0","name":"t","plugins":[{{"type":{t:?}}}]}}"#);
            assert!(err(&text).contains("not a path"), "{t}");
        }
        let ipam = r#"{"cniVersion":"1.0.0","name":"t","plugins":[{"type":"bridge","ipam":{"type":"/x"}}]}"#;
        assert!(err(ipam).contains("not a path"));
    }

    #[test]
    fn bad_lists_say_what_is_wrong() {
        assert!(err("nope").contains("not JSON"));
        assert!(err("[]").contains("not a JSON object"));
        assert!(err(r#"{"name":"t","plugins":[]}"#).contains("cniVersion"));
        assert!(err(r#"{"cniVersion":"0.2.0","name":"t","plugins":[]}"#).contains("is not one of"));
        assert!(err(r#"{"cniVersion":"1.0.0","plugins":[{"type":"x"}]}"#).contains("\"name\""));
        assert!(err(r#"{"cniVersion":"1.0.0","name":"t","plugins":[]}"#).contains("plugins"));
        assert!(err(r#"{"cniVersion":"1.0.0","name":"t","plugins":[{}]}"#).contains("type"));
        let huge = format!(r#"{{"pad":"{}"}}"#, "x".repeat(MAX_BYTES));
        assert!(err(&huge).contains("at most"));
    }

    #[test]
    fn plugin_configs_carry_name_version_prev_result_and_ports_by_capability() {
        let c = Conflist::parse(GOOD.as_bytes()).unwrap();
        let rt = RuntimeConfig {
            port_mappings: vec![PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".into(),
                host_ip: String::new(),
            }],
        };
        let first: Value = serde_json::from_slice(&c.plugin_config(0, None, &rt).unwrap()).unwrap();
        assert_eq!(first["name"], "t");
        assert_eq!(first["cniVersion"], "1.0.0");
        assert!(first.get("prevResult").is_none());
        assert!(
            first.get("runtimeConfig").is_none(),
            "bridge declares no ports"
        );
        let prev = serde_json::json!({"cniVersion":"1.0.0","ips":[]});
        let second: Value =
            serde_json::from_slice(&c.plugin_config(1, Some(&prev), &rt).unwrap()).unwrap();
        assert_eq!(second["prevResult"], prev);
        assert_eq!(
            second["runtimeConfig"]["portMappings"],
            serde_json::json!([{"hostPort":8080,"containerPort":80,"protocol":"tcp"}])
        );
    }
}
