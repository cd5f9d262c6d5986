//! Many agents at once: which hosts the command line targets, one reused
//! connection per host, concurrent fan-out with bounded parallelism and a
//! per-host timeout, and how partial failures are reported.
//!
//! Every command goes through here. A command line that names a single
//! agent (`-H ADDRESS`, `-H name`, or nothing) is a fleet of one, printed
//! exactly as berthctl always printed one agent's results (no HOST column,
//! no `host` in JSON, errors without a host prefix, no per-host timeout);
//! lists, `--all`, `--group` and `--selector` select many, and every result
//! then carries the host it came from.

use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use berth::client::{Address, ClientTls};
use futures_util::StreamExt;
use tokio::sync::OnceCell;
use tonic::transport::Channel;

use crate::cli::{Cli, OutputFormat};
use crate::ctx::{Ctx, CONNECT_TIMEOUT};
use crate::error::{Error, Result, EXIT_BERTHCTL};
use crate::inventory::{self, Host, Inventory, Targets, TlsPaths};

/// One targeted agent and its connection, opened once and shared by every
/// call made to it.
#[derive(Debug)]
pub struct Member {
    /// The host's name (inventory name, or the address as typed).
    pub name: String,
    /// Where it listens.
    pub address: Address,
    tls: Option<ClientTls>,
    channel: OnceCell<Channel>,
}

impl Member {
    /// A member for `host`, with its TLS files read.
    pub fn new(host: &Host) -> Result<Member> {
        Ok(Member {
            name: host.name.clone(),
            address: host.address.clone(),
            tls: client_tls(&host.tls, &host.name)?,
            channel: OnceCell::new(),
        })
    }

    /// The connection to the agent, opened on first use. A tonic channel
    /// reconnects by itself after the agent comes back, so it is never
    /// reopened here.
    pub async fn channel(&self) -> Result<Channel> {
        self.channel
            .get_or_try_init(|| async {
                let connect = berth::client::connect_with(&self.address, self.tls.as_ref());
                match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
                    Ok(Ok(ch)) => Ok(ch),
                    Ok(Err(e)) => Err(Error::connect(&self.address, &e)),
                    Err(_) => Err(Error::Connect {
                        addr: self.address.to_string(),
                        reason: format!("no answer within {} seconds", CONNECT_TIMEOUT.as_secs()),
                    }),
                }
            })
            .await
            .cloned()
    }
}

/// Reads the TLS files named for a host (none are needed without a CA).
pub fn client_tls(paths: &TlsPaths, host: &str) -> Result<Option<ClientTls>> {
    let Some(ca) = &paths.ca else {
        if paths.cert.is_some() || paths.key.is_some() {
            return Err(Error::Message(format!(
                "{host}: a client certificate needs a CA (--tls-ca or tls_ca) to verify the agent with"
            )));
        }
        return Ok(None);
    };
    let mut tls = ClientTls::from_files(ca, paths.cert.as_deref(), paths.key.as_deref())
        .map_err(|e| Error::Message(format!("{host}: {e}")))?;
    tls.server_name = paths.server_name.clone();
    Ok(Some(tls))
}

/// Targeted agents and how to talk to them.
#[derive(Debug)]
pub struct Fleet {
    /// The hosts, sorted by name.
    pub members: Vec<Rc<Member>>,
    /// At most this many hosts at once.
    pub parallel: usize,
    /// Per-host time limit of a call (not of streams that follow); none for
    /// a single agent, which is waited for as long as it takes.
    pub timeout: Option<Duration>,
    /// How results are printed.
    pub output: OutputFormat,
}

/// The targeted agents: the one the command line names (a fleet of one),
/// or many; the inventory is loaded only when a host name, a list or a
/// fleet flag needs it.
pub fn resolve(cli: &Cli) -> Result<Fleet> {
    let parallel = cli.parallel.max(1);
    let single = |ctx: Ctx| Fleet::of_one(&ctx, parallel);
    let ad_hoc = TlsPaths {
        ca: cli.tls_ca.clone(),
        cert: cli.tls_cert.clone(),
        key: cli.tls_key.clone(),
        server_name: None,
    };
    let names: Vec<String> = cli
        .host
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let fleet_flags = cli.all || !cli.groups.is_empty() || !cli.selectors.is_empty();
    let inventory_path = cli
        .inventory
        .clone()
        .unwrap_or_else(inventory::default_path);
    if !fleet_flags && names.len() <= 1 {
        let host = names
            .first()
            .cloned()
            .unwrap_or_else(|| berth::DEFAULT_SOCKET.to_string());
        // An address is used as is: exactly what berthctl did before
        // inventories existed.
        if Address::parse(&host).is_ok() {
            return single(Ctx {
                tls: client_tls(&ad_hoc, &host)?,
                host,
                output: cli.output,
            });
        }
        let inv = match Inventory::load(&inventory_path) {
            Ok(inv) => inv,
            // Without an inventory a bad -H is what it always was: not an
            // address (exit 125, the agent cannot be reached).
            Err(inventory::InventoryError::Missing(path)) => {
                let msg = Address::parse(&host).err().unwrap_or_default();
                return Err(Error::WithCode(
                    EXIT_BERTHCTL,
                    Box::new(Error::Message(format!(
                        "{msg}; nor a host name, for lack of an inventory at {}",
                        path.display()
                    ))),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        let h = inv
            .hosts
            .get(&host)
            .ok_or_else(|| inventory::InventoryError::UnknownHost(host.clone()))?;
        return single(Ctx {
            host: h.address.to_string(),
            tls: client_tls(&h.tls, &h.name)?,
            output: cli.output,
        });
    }
    // A list of addresses needs no inventory; names, groups and selectors do.
    let needs_inventory = fleet_flags || names.iter().any(|n| Address::parse(n).is_err());
    let inv = if needs_inventory {
        Inventory::load(&inventory_path)?
    } else {
        Inventory::default()
    };
    let targets = Targets {
        names,
        all: cli.all,
        groups: cli.groups.clone(),
        selectors: cli.selectors.clone(),
    };
    let hosts = targets.select(&inv, &ad_hoc)?;
    let members = hosts
        .iter()
        .map(|h| Member::new(h).map(Rc::new))
        .collect::<Result<Vec<_>>>()?;
    Ok(Fleet {
        members,
        parallel,
        timeout: Some(cli.host_timeout),
        output: cli.output,
    })
}

/// One host's outcome.
pub type HostResult<T> = (Rc<Member>, Result<T>);

impl Fleet {
    /// A fleet of the one agent of a single-host context.
    pub fn of_one(ctx: &Ctx, parallel: usize) -> Result<Fleet> {
        let address = Address::parse(&ctx.host)
            .map_err(|m| Error::WithCode(EXIT_BERTHCTL, Box::new(Error::Message(m))))?;
        Ok(Fleet {
            members: vec![Rc::new(Member {
                name: ctx.host.clone(),
                address,
                tls: ctx.tls.clone(),
                channel: OnceCell::new(),
            })],
            parallel,
            timeout: None,
            output: ctx.output,
        })
    }

    /// True for a fleet of one: results print as one agent's always have.
    pub fn is_single(&self) -> bool {
        self.members.len() == 1
    }

    /// The first (for a fleet of one, the only) member.
    pub fn first(&self) -> Result<&Rc<Member>> {
        self.members
            .first()
            .ok_or_else(|| Error::Message("no host targeted".into()))
    }

    /// True when results are printed as JSON lines.
    pub fn json(&self) -> bool {
        self.output == OutputFormat::Json
    }

    /// Runs `f` against every host, at most `parallel` at once, each within
    /// the per-host timeout (connecting included). Results are sorted by
    /// host name.
    pub async fn each<T, F, Fut>(&self, f: F) -> Vec<HostResult<T>>
    where
        F: Fn(Rc<Member>, Channel) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.each_with(self.timeout, f).await
    }

    /// Like [`each`](Self::each) without the per-host timeout on the call,
    /// for streams that follow (logs -f); connecting is still bounded.
    pub async fn each_untimed<T, F, Fut>(&self, f: F) -> Vec<HostResult<T>>
    where
        F: Fn(Rc<Member>, Channel) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.each_with(None, f).await
    }

    async fn each_with<T, F, Fut>(&self, timeout: Option<Duration>, f: F) -> Vec<HostResult<T>>
    where
        F: Fn(Rc<Member>, Channel) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let f = &f;
        let calls = self.members.iter().cloned().map(|m| async move {
            let call = async {
                let ch = m.channel().await?;
                f(m.clone(), ch).await
            };
            let r = match timeout {
                Some(t) => tokio::time::timeout(t, call).await.unwrap_or_else(|_| {
                    Err(Error::Message(format!(
                        "no answer within {} (--host-timeout)",
                        human_duration(t)
                    )))
                }),
                None => call.await,
            };
            (m, r)
        });
        let mut out: Vec<HostResult<T>> = futures_util::stream::iter(calls)
            .buffer_unordered(self.parallel.max(1))
            .collect()
            .await;
        out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        out
    }
}

/// "30s", "1m30s", "250ms".
pub fn human_duration(d: Duration) -> String {
    if d.subsec_millis() != 0 && d.as_secs() == 0 {
        return format!("{}ms", d.as_millis());
    }
    let s = d.as_secs();
    match (s / 60, s % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

/// Hosts that failed, with their errors, reported after the results.
#[derive(Debug, Default)]
pub struct Failures {
    /// (host, error), in host order.
    pub errors: Vec<(String, Error)>,
    /// How many hosts were targeted.
    pub total: usize,
    /// Failures that belong to no one host ("no such container on any
    /// host").
    pub general: Vec<Error>,
}

impl Failures {
    /// Records a host's failure.
    pub fn push(&mut self, host: &str, e: Error) {
        self.errors.push((host.to_string(), e));
    }

    /// Records a failure of no particular host.
    pub fn push_general(&mut self, e: Error) {
        self.general.push(e);
    }

    /// Prints each failed host with its error (`berthctl: HOST: error`) and
    /// turns any failure into a non-zero exit: 125 when no host could be
    /// reached at all, like a single unreachable agent; 1 otherwise, so a
    /// partial success is visible to scripts.
    pub fn finish(self) -> Result<()> {
        if self.errors.is_empty() && self.general.is_empty() {
            return Ok(());
        }
        for (host, e) in &self.errors {
            if !e.is_silent() {
                eprintln!("berthctl: {host}: {e}");
            }
        }
        for e in &self.general {
            crate::ctx::report(e);
        }
        let all_unreachable = self.general.is_empty()
            && self.errors.len() >= self.total
            && self
                .errors
                .iter()
                .all(|(_, e)| e.exit_code() == EXIT_BERTHCTL);
        Err(Error::Exit(if all_unreachable { EXIT_BERTHCTL } else { 1 }))
    }
}

/// Splits per-host results into successes and failures.
pub fn split<T>(results: Vec<HostResult<T>>) -> (Vec<(Rc<Member>, T)>, Failures) {
    let mut fails = Failures {
        total: results.len(),
        ..Default::default()
    };
    let mut ok = Vec::new();
    for (m, r) in results {
        match r {
            Ok(v) => ok.push((m, v)),
            Err(e) => fails.push(&m.name, e),
        }
    }
    (ok, fails)
}

/// A table whose first column is HOST; rows are sorted by host (stably, so
/// each host's rows keep the agent's order).
pub fn host_table(headers: &[&str], mut rows: Vec<(String, Vec<String>)>) -> String {
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let mut h = vec!["HOST"];
    h.extend_from_slice(headers);
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|(host, mut r)| {
            r.insert(0, host);
            r
        })
        .collect();
    crate::output::table(&h, &rows)
}

/// A `--format` object with its `Host` (the PascalCase of [`with_host`]).
pub fn with_host_field(host: &str, mut v: serde_json::Value) -> serde_json::Value {
    if let serde_json::Value::Object(m) = &mut v {
        m.insert("Host".into(), serde_json::Value::String(host.to_string()));
    }
    v
}

/// A JSON object with a `host` field added (keys print sorted).
pub fn with_host(host: &str, v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(map) => {
            let mut out = serde_json::Map::new();
            out.insert("host".into(), serde_json::Value::String(host.to_string()));
            out.extend(map);
            serde_json::Value::Object(out)
        }
        other => serde_json::json!({"host": host, "value": other}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_tables_sort_and_align() {
        let out = host_table(
            &["id", "name"],
            vec![
                ("web2".into(), vec!["b".into(), "y".into()]),
                ("db".into(), vec!["abcdef".into(), "x".into()]),
                ("web2".into(), vec!["a".into(), "z".into()]),
            ],
        );
        assert_eq!(
            out,
            "HOST   ID       NAME\n\
             db     abcdef   x\n\
             web2   b        y\n\
             web2   a        z\n"
        );
    }

    #[test]
    fn failures_exit_codes() {
        assert!(Failures::default().finish().is_ok());
        let mut f = Failures {
            total: 3,
            ..Default::default()
        };
        f.push("a", Error::Message("boom".into()));
        assert!(matches!(f.finish(), Err(Error::Exit(1))));
        let mut f = Failures {
            total: 1,
            ..Default::default()
        };
        f.push(
            "a",
            Error::Connect {
                addr: "x".into(),
                reason: "y".into(),
            },
        );
        assert!(matches!(f.finish(), Err(Error::Exit(125))));
    }

    #[test]
    fn json_gets_a_host_field_first() {
        let v = with_host("web1", serde_json::json!({"id": "x"}));
        assert_eq!(v.to_string(), r#"{"host":"web1","id":"x"}"#);
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(Duration::from_secs(30)), "30s");
        assert_eq!(human_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(human_duration(Duration::from_millis(250)), "250ms");
    }
}
