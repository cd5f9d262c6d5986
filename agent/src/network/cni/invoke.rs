//! Running one CNI plugin binary as the CNI spec says: the operation in
//! environment variables, its config on stdin, its result (or error) on
//! stdout. A plugin is found by its `type` in berthd's plugin directories
//! only, runs for a bounded time (then is killed), and its output is read
//! up to a bound.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::CniError;

/// Longest a plugin may run before it is killed.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes of a plugin's stdout read (a result is a few hundred).
pub const MAX_STDOUT: u64 = 1024 * 1024;
/// Most bytes of its stderr kept (for the log).
pub const MAX_STDERR: u64 = 16 * 1024;
/// Longest part of a plugin's error message put into an API error.
pub const MAX_MSG: usize = 512;

/// CNI's operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach.
    Add,
    /// Verify an attachment.
    Check,
    /// Detach (and release).
    Del,
}

impl Command {
    /// `CNI_COMMAND`'s value.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Check => "CHECK",
            Command::Del => "DEL",
        }
    }
}

/// Where plugin binaries are looked up (berthd's `--cni-bin-dir`).
#[derive(Debug, Clone)]
pub struct PluginDirs(pub Vec<PathBuf>);

impl PluginDirs {
    /// From a colon-separated list; empty parts are skipped.
    pub fn parse(s: &str) -> PluginDirs {
        PluginDirs(
            s.split(':')
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect(),
        )
    }

    /// The binary of plugin `type` (checked to be a plain file name at
    /// CreateNetwork): the first regular file of that name.
    pub fn find(&self, plugin: &str) -> Result<PathBuf, CniError> {
        super::conflist::check_type(plugin)?;
        self.0
            .iter()
            .map(|d| d.join(plugin))
            .find(|p| p.is_file())
            .ok_or_else(|| CniError::NoPlugin {
                plugin: plugin.to_string(),
                dirs: self.joined(),
            })
    }

    /// `CNI_PATH`.
    pub fn joined(&self) -> String {
        self.0
            .iter()
            .map(|p| p.to_string_lossy())
            .collect::<Vec<_>>()
            .join(":")
    }

    /// Whether every plugin of a list is installed (checked at Create, so
    /// a list naming an unknown plugin is refused before it is stored).
    pub fn check_all<'a>(&self, types: impl IntoIterator<Item = &'a str>) -> Result<(), CniError> {
        types.into_iter().try_for_each(|t| self.find(t).map(drop))
    }
}

/// The container a call is about.
#[derive(Debug, Clone)]
pub struct Target {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`: a path to its network namespace; "" when it is gone
    /// (a DEL after the container stopped).
    pub netns: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
}

/// Runs plugin `plugin` with `config` on stdin; its parsed stdout (ADD,
/// or `Value::Null` for an empty stdout, as CHECK and DEL give).
pub async fn run(
    dirs: &PluginDirs,
    plugin: &str,
    cmd: Command,
    target: &Target,
    config: &[u8],
) -> Result<Value, CniError> {
    let bin = dirs.find(plugin)?;
    let out = tokio::time::timeout(TIMEOUT, spawn(&bin, dirs, cmd, target, config))
        .await
        .map_err(|_| CniError::Timeout {
            plugin: plugin.to_string(),
            command: cmd.as_str(),
            secs: TIMEOUT.as_secs(),
        })?
        .map_err(|source| CniError::Exec {
            plugin: plugin.to_string(),
            source,
        })?;
    let (ok, stdout, stderr) = out;
    if !stderr.is_empty() {
        tracing::debug!(
            plugin,
            command = cmd.as_str(),
            "plugin stderr: {}",
            String::from_utf8_lossy(&stderr)
        );
    }
    if !ok {
        return Err(plugin_error(plugin, cmd, &stdout, &stderr));
    }
    if stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&stdout).map_err(|e| {
        CniError::BadResult(format!(
            "plugin {plugin} {}: stdout is not JSON: {e}",
            cmd.as_str()
        ))
    })
}

/// Spawns and waits; (exited 0, stdout, stderr). The child is killed when
/// this future is dropped (by the timeout).
async fn spawn(
    bin: &Path,
    dirs: &PluginDirs,
    cmd: Command,
    target: &Target,
    config: &[u8],
) -> std::io::Result<(bool, Vec<u8>, Vec<u8>)> {
    let mut child = tokio::process::Command::new(bin)
        .env_clear()
        .env("CNI_COMMAND", cmd.as_str())
        .env("CNI_CONTAINERID", &target.container_id)
        .env("CNI_NETNS", &target.netns)
        .env("CNI_IFNAME", &target.ifname)
        .env("CNI_PATH", dirs.joined())
        // Plugins run iptables and the like by name.
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(std::io::Error::other("plugin pipes missing"));
    };
    let write = async move {
        // A plugin that exits without reading its config closes the pipe:
        // its exit status tells what happened.
        let _ = stdin.write_all(config).await;
        drop(stdin);
    };
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut stdout = stdout.take(MAX_STDOUT);
    let mut stderr = stderr.take(MAX_STDERR);
    let read_out = stdout.read_to_end(&mut out);
    let read_err = stderr.read_to_end(&mut err);
    let ((), r1, r2) = tokio::join!(write, read_out, read_err);
    r1?;
    r2?;
    let status = child.wait().await?;
    Ok((status.success(), out, err))
}

/// A failed plugin's error: CNI's `{"code", "msg", "details"}` on stdout,
/// else its stderr; capped.
fn plugin_error(plugin: &str, cmd: Command, stdout: &[u8], stderr: &[u8]) -> CniError {
    let parsed: Option<Value> = serde_json::from_slice(stdout).ok();
    let code = parsed
        .as_ref()
        .and_then(|v| v.get("code"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let msg = parsed
        .as_ref()
        .and_then(|v| {
            let msg = v.get("msg").and_then(Value::as_str)?;
            Some(match v.get("details").and_then(Value::as_str) {
                Some(d) if !d.is_empty() => format!("{msg}: {d}"),
                _ => msg.to_string(),
            })
        })
        .unwrap_or_else(|| String::from_utf8_lossy(stderr).trim().to_string());
    CniError::Plugin {
        plugin: plugin.to_string(),
        command: cmd.as_str(),
        code,
        msg: cap(&msg),
    }
}

fn cap(s: &str) -> String {
    match s.char_indices().nth(MAX_MSG) {
        None => s.to_string(),
        Some((end, _)) => format!("{}...", &s[..end]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_errors_use_the_cni_message_and_are_capped() {
        let e = plugin_error(
            "bridge",
            Command::Add,
            br#"{"code":11,"msg":"failed to set bridge addr","details":"busy"}"#,
            b"",
        );
        let text = e.to_string();
        assert!(text.contains("failed to set bridge addr: busy"), "{text}");
        assert!(text.contains("bridge") && text.contains("ADD"), "{text}");
        let long = "x".repeat(10_000);
        let e = plugin_error("p", Command::Del, b"garbage", long.as_bytes());
        assert!(e.to_string().len() < MAX_MSG + 200);
    }

    #[test]
    fn plugins_are_found_only_by_file_name_in_the_directories() {
        let dir = std::env::temp_dir().join(format!("berth-cni-find-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("mine"), b"").unwrap();
        let dirs = PluginDirs::parse(&format!("/nonexistent::{}", dir.display()));
        assert_eq!(dirs.0.len(), 2);
        assert_eq!(dirs.find("mine").unwrap(), dir.join("mine"));
        assert!(matches!(dirs.find("other"), Err(CniError::NoPlugin { .. })));
        assert!(matches!(dirs.find("../mine"), Err(CniError::Invalid(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
