//! A conflist's operations, plugin by plugin, as libcni runs them: ADD in
//! order, each plugin handed the previous one's result as `prevResult`;
//! CHECK in order with the stored result; DEL in reverse order. An ADD that
//! fails part-way is undone by a DEL of the whole list, so nothing is left
//! half-made.

use serde_json::Value;

use super::conflist::{Conflist, RuntimeConfig};
use super::invoke::{self, Command, PluginDirs, Target};
use super::CniError;

/// Whether results are handed to CHECK and DEL (CNI 0.4.0 onwards).
fn has_prev_result(version: &str) -> bool {
    !version.starts_with("0.3.")
}

/// Runs ADD through the list; the last plugin's result.
pub async fn add(
    dirs: &PluginDirs,
    list: &Conflist,
    target: &Target,
    runtime: &RuntimeConfig,
) -> Result<Value, CniError> {
    let mut prev: Option<Value> = None;
    for (i, plugin) in list.types().into_iter().enumerate() {
        let config = list.plugin_config(i, prev.as_ref(), runtime)?;
        match invoke::run(dirs, plugin, Command::Add, target, &config).await {
            // A plugin that prints nothing passes the previous result on.
            Ok(Value::Null) => {}
            Ok(result) => prev = Some(result),
            Err(e) => {
                if let Err(undo) = del(dirs, list, target, prev.as_ref(), runtime).await {
                    tracing::warn!(
                        container = %target.container_id,
                        "undoing a failed CNI ADD: {undo}"
                    );
                }
                return Err(e);
            }
        }
    }
    Ok(prev.unwrap_or_else(|| serde_json::json!({ "cniVersion": list.cni_version })))
}

/// Runs CHECK through the list against `result` (skipped for 0.3.x lists,
/// which have no CHECK).
pub async fn check(
    dirs: &PluginDirs,
    list: &Conflist,
    target: &Target,
    result: &Value,
    runtime: &RuntimeConfig,
) -> Result<(), CniError> {
    if !has_prev_result(&list.cni_version) {
        return Ok(());
    }
    for (i, plugin) in list.types().into_iter().enumerate() {
        let config = list.plugin_config(i, Some(result), runtime)?;
        invoke::run(dirs, plugin, Command::Check, target, &config).await?;
    }
    Ok(())
}

/// Runs DEL through the list in reverse order. Every plugin runs even when
/// one fails (each releases what it holds); the first failure is returned.
pub async fn del(
    dirs: &PluginDirs,
    list: &Conflist,
    target: &Target,
    result: Option<&Value>,
    runtime: &RuntimeConfig,
) -> Result<(), CniError> {
    let prev = result.filter(|_| has_prev_result(&list.cni_version));
    let mut first = None;
    for (i, plugin) in list.types().into_iter().enumerate().rev() {
        let outcome = match list.plugin_config(i, prev, runtime) {
            Ok(config) => invoke::run(dirs, plugin, Command::Del, target, &config)
                .await
                .map(drop),
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            tracing::warn!(container = %target.container_id, "CNI DEL: {e}");
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}
