//! What the verbs share: running a call on every targeted host (a single
//! agent being a fleet of one), and printing the outcome as one agent's
//! results always were, or, for many hosts, tagged with their host.

use std::future::Future;
use std::rc::Rc;

use serde_json::Value;
use tonic::transport::Channel;
use tonic::Code;

use crate::ctx::report;
use crate::error::{Error, Result, EXIT_BERTHCTL};
use crate::fleet::{host_table, split, with_host, Failures, Fleet, HostResult, Member};
use crate::output::print_json_line;

/// What one id did on one host.
#[derive(Debug)]
pub struct Done<T> {
    /// The host's name.
    pub host: String,
    /// The id, prefix or name as the user gave it.
    pub id: String,
    /// What the call returned.
    pub value: T,
}

/// The outcome of [`fan_ids`]: what succeeded, and how the failures end
/// the command.
#[derive(Debug)]
pub struct Outcome<T> {
    /// Successes, in host order then id order.
    pub done: Vec<Done<T>>,
    failures: Failures,
    /// One agent: some id failed (its error is already printed).
    failed: bool,
    single: bool,
}

impl<T> Outcome<T> {
    /// Ok if every id succeeded; otherwise the exit status (errors of many
    /// hosts are printed now, after the results).
    pub fn finish(self) -> Result<()> {
        if self.single {
            return if self.failed {
                Err(Error::Exit(1))
            } else {
                Ok(())
            };
        }
        self.failures.finish()
    }
}

/// Applies `op` to each id on every host.
///
/// On one agent, ids are taken in order; `show` prints each success as it
/// comes, each failure is reported as it happens and the others go on, as
/// `docker rm a b c` does, except that an unreachable agent stops everything
/// at once (every other id would fail the same way).
///
/// On many hosts, an id a host does not know (NOT_FOUND) is skipped there;
/// an id no host knows is an error. `show` is not called: the caller prints
/// [`Outcome::done`] as a whole, tagged with hosts.
pub async fn fan_ids<T, F, Fut>(
    f: &Fleet,
    ids: &[String],
    what: &str,
    op: F,
    show: impl Fn(&Done<T>) -> Result<()>,
) -> Result<Outcome<T>>
where
    F: Fn(Channel, String) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    if f.is_single() {
        let m = f.first()?;
        let ch = m.channel().await?;
        let mut outcome = Outcome {
            done: Vec::with_capacity(ids.len()),
            failures: Failures::default(),
            failed: false,
            single: true,
        };
        for id in ids {
            match op(ch.clone(), id.clone()).await {
                Ok(value) => {
                    let d = Done {
                        host: m.name.clone(),
                        id: id.clone(),
                        value,
                    };
                    show(&d)?;
                    outcome.done.push(d);
                }
                Err(e) if e.exit_code() == EXIT_BERTHCTL => return Err(e),
                Err(e) => {
                    report(&e);
                    outcome.failed = true;
                }
            }
        }
        return Ok(outcome);
    }
    let op = &op;
    let results = f
        .each(|_, ch| async move {
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                out.push((id.clone(), op(ch.clone(), id.clone()).await));
            }
            Ok(out)
        })
        .await;
    let (ok, mut failures) = split(results);
    let mut done = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let answered = !ok.is_empty();
    for (m, outs) in ok {
        for (id, r) in outs {
            match r {
                Ok(value) => {
                    seen.insert(id.clone());
                    done.push(Done {
                        host: m.name.clone(),
                        id,
                        value,
                    });
                }
                Err(Error::Status(s)) if s.code() == Code::NotFound => {}
                Err(e) => {
                    seen.insert(id.clone());
                    failures.push(&m.name, Error::Message(format!("{id}: {e}")));
                }
            }
        }
    }
    if answered {
        // Hosts that did not answer may have it: say so rather than "any".
        let scope = if failures.errors.is_empty() {
            "any targeted host"
        } else {
            "any host that answered"
        };
        for id in ids {
            if !seen.contains(id) {
                failures.push_general(Error::Message(format!("no such {what} on {scope}: {id}")));
            }
        }
    }
    Ok(Outcome {
        done,
        failures,
        failed: false,
        single: false,
    })
}

/// How a verb acting on ids prints its results.
pub struct IdsOutput<'a, T> {
    /// Table header of the id column on many hosts ("CONTAINER", "IMAGE").
    pub header: &'a str,
    /// The JSON object for one result (`-o json`).
    pub json: &'a dyn Fn(&Done<T>) -> Result<Value>,
    /// What one agent prints for one result (lines, each ending in a newline).
    pub text: &'a dyn Fn(&Done<T>) -> String,
}

/// [`fan_ids`] with the usual printing: one agent prints each result as it
/// comes; many hosts print a `HOST <header>` table (or JSON lines with a
/// `host`) once all have answered.
pub async fn ids_verb<T, F, Fut>(
    f: &Fleet,
    ids: &[String],
    what: &str,
    op: F,
    out: IdsOutput<'_, T>,
) -> Result<Outcome<T>>
where
    F: Fn(Channel, String) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let json = f.json();
    let outcome = fan_ids(f, ids, what, op, |d| {
        if json {
            print_json_line(&(out.json)(d)?);
        } else {
            print!("{}", (out.text)(d));
        }
        Ok(())
    })
    .await?;
    if !f.is_single() {
        if json {
            for d in &outcome.done {
                print_json_line(&with_host(&d.host, (out.json)(d)?));
            }
        } else {
            let rows = outcome
                .done
                .iter()
                .map(|d| (d.host.clone(), vec![d.id.clone()]))
                .collect();
            print!("{}", host_table(&[out.header], rows));
        }
    }
    Ok(outcome)
}

/// Ends a command that made one call per host: one agent's error is the
/// command's own (its message and exit status exactly as ever); on many
/// hosts `print` gets the successes and failures are reported after them.
pub fn per_host<T>(
    f: &Fleet,
    results: Vec<HostResult<T>>,
    print: impl FnOnce(&[(Rc<Member>, T)]) -> Result<()>,
) -> Result<()> {
    if f.is_single() {
        let mut ok = Vec::with_capacity(1);
        for (m, r) in results {
            ok.push((m, r?));
        }
        return print(&ok);
    }
    let (ok, failures) = split(results);
    print(&ok)?;
    failures.finish()
}

/// Width of the host prefix of output lines (`web1 | ...`): the longest
/// host name; nothing for a single agent.
pub fn prefix_width(f: &Fleet) -> usize {
    f.members
        .iter()
        .map(|m| m.name.chars().count())
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::Fake;
    use berth::v1::{containers_client::ContainersClient, StopContainerRequest};

    /// A fleet of the given one-agent fleets.
    fn fleet_of(parts: &[&Fleet]) -> Fleet {
        Fleet {
            members: parts.iter().map(|f| f.members[0].clone()).collect(),
            parallel: 4,
            timeout: Some(std::time::Duration::from_secs(10)),
            output: crate::cli::OutputFormat::Table,
        }
    }

    /// A fleet of one whose agent is not there.
    fn nobody() -> Fleet {
        let ctx = crate::ctx::Ctx {
            host: "/nonexistent/berthd.sock".into(),
            tls: None,
            output: crate::cli::OutputFormat::Table,
        };
        match Fleet::of_one(&ctx, 1) {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        }
    }

    async fn stop_each(f: &Fleet, ids: &[&str]) -> Result<Outcome<String>> {
        let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        fan_ids(
            f,
            &ids,
            "container",
            |ch, id| async move {
                ContainersClient::new(ch)
                    .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
                    .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
                    .stop(StopContainerRequest {
                        id: id.clone(),
                        timeout_seconds: None,
                    })
                    .await?;
                Ok(id)
            },
            |_| Ok(()),
        )
        .await
    }

    #[tokio::test]
    async fn many_hosts_skip_what_a_host_lacks_and_fail_what_none_has() {
        let (a, b) = (Fake::default(), Fake::default());
        let f = fleet_of(&[&a.serve().await, &b.serve().await]);
        let Ok(out) = stop_each(&f, &["fake", "missing"]).await else {
            panic!("the fan-out itself fails only for one agent")
        };
        assert_eq!(out.done.len(), 2, "{out:?}");
        assert!(out.done.iter().all(|d| d.id == "fake"));
        assert_eq!(
            out.failures
                .general
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["no such container on any targeted host: missing"]
        );
        assert!(matches!(out.finish(), Err(Error::Exit(1))));
        assert_eq!(a.calls(), ["stop fake", "stop missing"]);
    }

    #[tokio::test]
    async fn an_unreachable_host_is_a_partial_failure_and_all_of_them_125() {
        let a = Fake::default();
        let f = fleet_of(&[&a.serve().await, &nobody()]);
        let Ok(out) = stop_each(&f, &["fake", "missing"]).await else {
            panic!("the fan-out itself fails only for one agent")
        };
        assert_eq!(out.done.len(), 1);
        assert_eq!(out.failures.errors.len(), 1);
        // The host that did not answer may have it.
        assert_eq!(
            out.failures
                .general
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["no such container on any host that answered: missing"]
        );
        assert!(matches!(out.finish(), Err(Error::Exit(1))));

        let f = fleet_of(&[&nobody(), &nobody()]);
        let Ok(out) = stop_each(&f, &["fake"]).await else {
            panic!("the fan-out itself fails only for one agent")
        };
        assert!(matches!(out.finish(), Err(Error::Exit(EXIT_BERTHCTL))));
    }

    #[tokio::test]
    async fn one_agent_goes_on_after_a_failure_but_not_when_unreachable() {
        let a = Fake::default();
        let f = a.serve().await;
        let Ok(out) = stop_each(&f, &["missing", "fake"]).await else {
            panic!("reachable")
        };
        assert_eq!(out.done.len(), 1);
        assert!(matches!(out.finish(), Err(Error::Exit(1))));
        let r = stop_each(&nobody(), &["fake", "fake"]).await;
        assert_eq!(r.map(|_| ()).map_err(|e| e.exit_code()), Err(EXIT_BERTHCTL));
    }
}
