//! `container prune`, `image prune` and `system prune`: remove what nothing
//! uses, after Docker's confirmation prompt (unless -f), and report what
//! went and the space reclaimed, per host.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::time::SystemTime;

use berth::v1::containers_client::ContainersClient;
use berth::v1::images_client::ImagesClient;
use berth::v1::networks_client::NetworksClient;
use berth::v1::volumes_client::VolumesClient;
use berth::v1::{
    ListNetworksRequest, PruneContainersRequest, PruneContainersResponse, PruneImagesRequest,
    PruneImagesResponse, PruneVolumesRequest, PruneVolumesResponse, RemoveNetworkRequest,
};
use prost_types::Timestamp;
use serde_json::{json, Value};
use tonic::transport::Channel;
use tonic::Code;

use super::fan::per_host;
use crate::cli::{ContainerPruneArgs, ImagePruneArgs, SystemPruneArgs};
use crate::error::{Error, Result};
use crate::fleet::{with_host, Fleet};
use crate::output::{self, print_json_line};
use crate::parse;

/// Most characters of a user's filter quoted back in an error.
const QUOTE_MAX: usize = 64;

/// Container prune filters: `label=KEY[=VALUE]` (all must match) and
/// `until=DURATION|TIME` (created before it; relative to `now`).
pub fn container_filters(
    given: &[String],
    now: SystemTime,
) -> Result<(HashMap<String, String>, Option<Timestamp>)> {
    let mut labels = HashMap::new();
    let mut until = None;
    for f in given {
        match f.split_once('=') {
            Some(("label", l)) => {
                let (k, v) = parse::label(l).map_err(|_| bad_filter(f, "label=KEY[=VALUE]"))?;
                labels.insert(k, v);
            }
            Some(("until", t)) => {
                until = Some(
                    parse::since(t, now)
                        .map_err(|_| bad_filter(f, "until=DURATION (24h) or TIME"))?,
                );
            }
            _ => return Err(bad_filter(f, "label=KEY[=VALUE] or until=DURATION|TIME")),
        }
    }
    Ok((labels, until))
}

/// Image prune filters: `label=KEY[=VALUE]`, as the API takes them.
pub fn image_filters(given: &[String]) -> Result<Vec<String>> {
    given
        .iter()
        .map(|f| match f.split_once('=') {
            Some(("label", l)) if !l.is_empty() && !l.starts_with('=') => Ok(l.to_string()),
            _ => Err(bad_filter(f, "label=KEY[=VALUE]")),
        })
        .collect()
}

fn bad_filter(f: &str, expected: &str) -> Error {
    Error::Message(format!(
        "invalid filter {:?}: expected {expected}",
        f.chars().take(QUOTE_MAX).collect::<String>()
    ))
}

/// Docker's prompt: the warning, then "[y/N]"; true for y or yes. The
/// prompt goes to stdout as Docker's does, or to stderr under `-o json`,
/// whose stdout is only JSON.
fn confirm(f: &Fleet, removes: &[&str], force: bool) -> Result<bool> {
    if force {
        return Ok(true);
    }
    let on = if f.is_single() {
        String::new()
    } else {
        format!(" on {} hosts", f.members.len())
    };
    let mut text = match removes {
        [one] => format!("WARNING! This will remove {one}{on}.\n"),
        many => {
            let mut t = format!("WARNING! This will remove{on}:\n");
            for what in many {
                t.push_str(&format!("  - {what}\n"));
            }
            t
        }
    };
    text.push_str("Are you sure you want to continue? [y/N] ");
    if f.json() {
        eprint!("{text}");
        let _ = std::io::stderr().flush();
    } else {
        print!("{text}");
        let _ = std::io::stdout().flush();
    }
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Error::Message(format!("reading the answer: {e}")))?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// What one host's prune removed, for printing.
#[derive(Debug, Default)]
pub struct Report {
    /// The API responses, in the order they were made.
    sections: Vec<(&'static str, Value)>,
    /// "Deleted Containers:" and the like, with their lines.
    lists: Vec<(&'static str, Vec<String>)>,
    /// Bytes reclaimed in all.
    bytes: u64,
}

impl Report {
    fn containers(&mut self, r: &PruneContainersResponse) -> Result<()> {
        self.sections.push(("containers", output::message_json(r)?));
        self.lists.push(("Deleted Containers:", r.removed.clone()));
        self.bytes = self.bytes.saturating_add(r.reclaimed_bytes);
        Ok(())
    }

    fn images(&mut self, r: &PruneImagesResponse) -> Result<()> {
        self.sections.push(("images", output::message_json(r)?));
        let lines = r
            .untagged
            .iter()
            .map(|u| format!("untagged: {u}"))
            .chain(r.deleted.iter().map(|d| format!("deleted: {d}")))
            .collect();
        self.lists.push(("Deleted Images:", lines));
        self.bytes = self.bytes.saturating_add(r.reclaimed_bytes);
        Ok(())
    }

    fn volumes(&mut self, r: &PruneVolumesResponse) -> Result<()> {
        self.sections.push(("volumes", output::message_json(r)?));
        self.lists.push(("Deleted Volumes:", r.removed.clone()));
        self.bytes = self.bytes.saturating_add(r.reclaimed_bytes);
        Ok(())
    }

    fn networks(&mut self, removed: Vec<String>) {
        self.sections
            .push(("networks", json!({ "removed": removed.clone() })));
        self.lists.push(("Deleted Networks:", removed));
    }

    /// Docker's text: each non-empty list under its heading, then the total.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for (heading, lines) in &self.lists {
            if lines.is_empty() {
                continue;
            }
            s.push_str(heading);
            s.push('\n');
            for l in lines {
                s.push_str(l);
                s.push('\n');
            }
            s.push('\n');
        }
        let total = output::human_size(i64::try_from(self.bytes).unwrap_or(i64::MAX));
        s.push_str(&format!("Total reclaimed space: {total}\n"));
        s
    }

    /// The API response of a one-call prune, or an object of them all
    /// (`system prune`).
    fn json(&self) -> Value {
        match self.sections.as_slice() {
            [(_, one)] => one.clone(),
            all => Value::Object(
                all.iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
            ),
        }
    }
}

/// Prints each host's report: as one agent's for a fleet of one, else
/// every line after `host | ` (JSON: with a `host` field).
fn print_reports(f: &Fleet, ok: &[(std::rc::Rc<crate::fleet::Member>, Report)]) -> Result<()> {
    let width = super::fan::prefix_width(f);
    for (m, r) in ok {
        if f.json() {
            let v = r.json();
            print_json_line(&if f.is_single() {
                v
            } else {
                with_host(&m.name, v)
            });
        } else if f.is_single() {
            print!("{}", r.text());
        } else {
            for line in r.text().lines() {
                println!("{:<width$} | {line}", m.name);
            }
        }
    }
    Ok(())
}

fn containers(ch: Channel) -> ContainersClient<Channel> {
    ContainersClient::new(ch)
        .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
        .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
}

fn images(ch: Channel) -> ImagesClient<Channel> {
    ImagesClient::new(ch)
        .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
        .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
}

/// `container prune`.
pub async fn container_prune(f: &Fleet, a: ContainerPruneArgs) -> Result<()> {
    let (labels, until) = container_filters(&a.filters, SystemTime::now())?;
    if !confirm(f, &["all stopped containers"], a.force)? {
        return Ok(());
    }
    let req = PruneContainersRequest { labels, until };
    let results = f
        .each(|_, ch| {
            let req = req.clone();
            async move {
                let r = containers(ch).prune(req).await?.into_inner();
                let mut rep = Report::default();
                rep.containers(&r)?;
                Ok(rep)
            }
        })
        .await;
    per_host(f, results, |ok| print_reports(f, ok))
}

fn images_warning(all: bool) -> &'static str {
    if all {
        "all images without at least one container associated to them"
    } else {
        "all dangling images"
    }
}

/// `image prune`.
pub async fn image_prune(f: &Fleet, a: ImagePruneArgs) -> Result<()> {
    let labels = image_filters(&a.filters)?;
    if !confirm(f, &[images_warning(a.all_images)], a.force)? {
        return Ok(());
    }
    let req = PruneImagesRequest {
        all: a.all_images,
        labels,
    };
    let results = f
        .each(|_, ch| {
            let req = req.clone();
            async move {
                let r = images(ch).prune(req).await?.into_inner();
                let mut rep = Report::default();
                rep.images(&r)?;
                Ok(rep)
            }
        })
        .await;
    per_host(f, results, |ok| print_reports(f, ok))
}

/// Removes every user-defined network no container is on; returns their
/// names. One in use (or gone meanwhile) is skipped, as the agent refuses
/// to remove it.
async fn prune_networks(ch: Channel) -> Result<Vec<String>> {
    let mut c = NetworksClient::new(ch)
        .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
        .max_encoding_message_size(crate::MAX_REQUEST_BYTES);
    let nets = c
        .list_networks(ListNetworksRequest {})
        .await?
        .into_inner()
        .networks;
    let mut removed = Vec::new();
    for n in nets {
        match c
            .remove_network(RemoveNetworkRequest {
                network: n.id.clone(),
            })
            .await
        {
            Ok(_) => removed.push(n.name),
            Err(s) if matches!(s.code(), Code::FailedPrecondition | Code::NotFound) => {}
            Err(s) => return Err(s.into()),
        }
    }
    Ok(removed)
}

/// `system prune`: stopped containers, then the networks and images they
/// held, then (with --volumes) unused volumes.
pub async fn system_prune(f: &Fleet, a: SystemPruneArgs) -> Result<()> {
    let mut removes = vec![
        "all stopped containers",
        "all networks not used by at least one container",
    ];
    if a.volumes {
        removes.push("all volumes not used by at least one container");
    }
    removes.push(images_warning(a.all_images));
    if !confirm(f, &removes, a.force)? {
        return Ok(());
    }
    let (all, volumes) = (a.all_images, a.volumes);
    let results = f
        .each(|_, ch| async move {
            let mut rep = Report::default();
            let r = containers(ch.clone())
                .prune(PruneContainersRequest::default())
                .await?
                .into_inner();
            rep.containers(&r)?;
            rep.networks(prune_networks(ch.clone()).await?);
            let r = images(ch.clone())
                .prune(PruneImagesRequest {
                    all,
                    labels: Vec::new(),
                })
                .await?
                .into_inner();
            rep.images(&r)?;
            if volumes {
                let r = VolumesClient::new(ch)
                    .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
                    .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
                    .prune(PruneVolumesRequest::default())
                    .await?
                    .into_inner();
                rep.volumes(&r)?;
            }
            Ok(rep)
        })
        .await;
    per_host(f, results, |ok| print_reports(f, ok))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn container_filters_take_labels_and_until() {
        let now = UNIX_EPOCH + Duration::from_secs(100_000);
        let given: Vec<String> = ["label=app", "label=tier=db", "until=1h"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let Ok((labels, until)) = container_filters(&given, now) else {
            panic!("valid filters")
        };
        assert_eq!(labels.get("app").map(String::as_str), Some(""));
        assert_eq!(labels.get("tier").map(String::as_str), Some("db"));
        assert_eq!(until.map(|t| t.seconds), Some(100_000 - 3600));
        let rfc = container_filters(&["until=2024-05-01T10:00:00Z".into()], now);
        assert_eq!(
            rfc.ok().and_then(|(_, u)| u).map(|t| t.seconds),
            Some(1_714_557_600)
        );
    }

    #[test]
    fn bad_filters_are_refused_and_quoted_short() {
        let now = SystemTime::now();
        for bad in ["dangling=true", "label=", "until=soon", "x"] {
            assert!(container_filters(&[bad.into()], now).is_err(), "{bad}");
        }
        let long = format!("nope={}", "x".repeat(1000));
        let Err(e) = container_filters(&[long], now) else {
            panic!("refused")
        };
        assert!(e.to_string().len() < 200, "{e}");
        assert!(image_filters(&["label=a=b".into(), "label=c".into()]).is_ok());
        assert!(image_filters(&["until=1h".into()]).is_err());
        assert!(image_filters(&["label=".into()]).is_err());
    }

    #[test]
    fn reports_read_as_docker_s() {
        let mut r = Report::default();
        let c = PruneContainersResponse {
            removed: vec!["c1".into(), "c2".into()],
            reclaimed_bytes: 12_300_000,
        };
        let Ok(()) = r.containers(&c) else { panic!() };
        assert_eq!(
            r.text(),
            "Deleted Containers:\nc1\nc2\n\nTotal reclaimed space: 12.3MB\n"
        );
        let empty = Report::default();
        assert_eq!(empty.text(), "Total reclaimed space: 0B\n");
        let mut sys = Report::default();
        let Ok(()) = sys.containers(&PruneContainersResponse::default()) else {
            panic!()
        };
        sys.networks(vec!["net1".into()]);
        let i = PruneImagesResponse {
            deleted: vec!["sha256:ab".into()],
            untagged: vec!["docker.io/library/a:1".into()],
            reclaimed_bytes: 999,
        };
        let Ok(()) = sys.images(&i) else { panic!() };
        assert_eq!(
            sys.text(),
            "Deleted Networks:\nnet1\n\nDeleted Images:\nuntagged: docker.io/library/a:1\n\
             deleted: sha256:ab\n\nTotal reclaimed space: 999B\n"
        );
        let j = sys.json();
        assert_eq!(j["networks"]["removed"][0], "net1");
        assert!(j.get("containers").is_some() && j.get("images").is_some());
    }
}
