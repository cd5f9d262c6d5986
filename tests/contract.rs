//! The API contract, guarded: `berth.v1` as this crate is built from
//! `proto/berth/v1` must keep every message, field (number, name, type,
//! label, oneof), enum value, service and RPC (types and streaming) recorded
//! in `proto/berth/v1/descriptor.snapshot`. A removal or a change fails with
//! the list of breaking changes; an addition fails too, until the snapshot
//! records it, so that every change to the contract shows up in review as a
//! change to that file.
//!
//! To record a deliberate change: `BERTH_UPDATE_SNAPSHOT=1 cargo test -p berth --test contract`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use prost_reflect::{EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor};

const PACKAGE: &str = "berth.v1";
const UPDATE_VAR: &str = "BERTH_UPDATE_SNAPSHOT";

fn snapshot_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("proto/berth/v1/descriptor.snapshot")
}

const HEADER: &str = "\
# The berth.v1 API contract, normalized from its descriptors: one fact per line,
# `<what it is>: <what it must stay>`. Written by tests/contract.rs; to record a
# deliberate change run `BERTH_UPDATE_SNAPSHOT=1 cargo test -p berth --test contract`.
";

#[test]
fn api_matches_the_committed_snapshot() {
    let current = normalize();
    let path = snapshot_path();
    let update = std::env::var_os(UPDATE_VAR).is_some_and(|v| !v.is_empty() && v != "0");
    let committed = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if update && e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    };
    let report = compare(&parse(&committed), &current);
    if update {
        std::fs::write(&path, render(&current))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        eprintln!("{}: recorded\n{}", path.display(), report.describe());
        return;
    }
    assert!(
        report.is_empty(),
        "the berth.v1 API differs from {}:\n{}\nIf this change is deliberate (and, when breaking, \
         agreed), record it with `{UPDATE_VAR}=1 cargo test -p berth --test contract` and commit \
         the snapshot.",
        path.display(),
        report.describe()
    );
}

/// Every fact of the contract, keyed by what identifies it on the wire.
type Facts = BTreeMap<String, String>;

fn normalize() -> Facts {
    let pool = berth::json::descriptor_pool().expect("the built-in descriptors decode");
    let mut facts = Facts::new();
    for file in pool.files().filter(|f| f.package_name() == PACKAGE) {
        for m in file.messages() {
            message(&m, &mut facts);
        }
        for e in file.enums() {
            enumeration(&e, &mut facts);
        }
        for s in file.services() {
            facts.insert(format!("service {}", s.full_name()), String::new());
            for m in s.methods() {
                let stream = |yes: bool| if yes { "stream " } else { "" };
                facts.insert(
                    format!("rpc {}", m.full_name()),
                    format!(
                        "({}{}) returns ({}{})",
                        stream(m.is_client_streaming()),
                        m.input().full_name(),
                        stream(m.is_server_streaming()),
                        m.output().full_name()
                    ),
                );
            }
        }
    }
    facts
}

fn message(m: &MessageDescriptor, facts: &mut Facts) {
    // A map's entry message is implied by its field (`map<K, V>`).
    if m.is_map_entry() {
        return;
    }
    facts.insert(format!("message {}", m.full_name()), String::new());
    for f in m.fields() {
        facts.insert(
            format!("field {} #{}", m.full_name(), f.number()),
            field(&f),
        );
    }
    for child in m.child_messages() {
        message(&child, facts);
    }
    for e in m.child_enums() {
        enumeration(&e, facts);
    }
}

/// `name type`, with the label and, for a real oneof, its name.
fn field(f: &FieldDescriptor) -> String {
    let ty = if f.is_map() {
        let Kind::Message(entry) = f.kind() else {
            unreachable!("a map field holds entry messages")
        };
        format!(
            "map<{}, {}>",
            kind(&entry.map_entry_key_field().kind()),
            kind(&entry.map_entry_value_field().kind())
        )
    } else if f.is_list() {
        format!("repeated {}", kind(&f.kind()))
    } else if f.field_descriptor_proto().proto3_optional() {
        format!("optional {}", kind(&f.kind()))
    } else {
        kind(&f.kind())
    };
    let mut s = format!("{} {ty}", f.name());
    if let Some(oneof) = f.containing_oneof().filter(|o| !o.is_synthetic()) {
        let _ = write!(s, " (oneof {})", oneof.name());
    }
    s
}

fn kind(k: &Kind) -> String {
    match k {
        Kind::Message(m) => format!("message {}", m.full_name()),
        Kind::Enum(e) => format!("enum {}", e.full_name()),
        scalar => format!("{scalar:?}").to_lowercase(),
    }
}

fn enumeration(e: &EnumDescriptor, facts: &mut Facts) {
    facts.insert(format!("enum {}", e.full_name()), String::new());
    for v in e.values() {
        facts.insert(
            format!("value {} #{}", e.full_name(), v.number()),
            v.name().to_string(),
        );
    }
}

/// The snapshot file: the header, then one `key: value` line per fact, in
/// key order (a message's fields follow it, by number).
fn render(facts: &Facts) -> String {
    let mut lines: Vec<(&String, &String)> = facts.iter().collect();
    lines.sort_by_key(|(k, _)| sort_key(k));
    let mut out = HEADER.to_string();
    for (k, v) in lines {
        if v.is_empty() {
            let _ = writeln!(out, "{k}:");
        } else {
            let _ = writeln!(out, "{k}: {v}");
        }
    }
    out
}

/// Orders facts as a reader wants them: each message, enum or service
/// followed by its fields, values or RPCs, fields by number.
fn sort_key(key: &str) -> (String, u8, i64, String) {
    let (kind, rest) = key.split_once(' ').unwrap_or((key, ""));
    let (owner, number) = match rest.split_once(" #") {
        Some((owner, n)) => (owner.to_string(), n.parse().unwrap_or(i64::MAX)),
        None => (rest.to_string(), -1),
    };
    let (owner, rank) = match kind {
        "rpc" => (
            owner
                .rsplit_once('.')
                .map_or(owner.clone(), |(s, _)| s.to_string()),
            1,
        ),
        "field" | "value" => (owner, 1),
        _ => (owner, 0),
    };
    (owner, rank, number, key.to_string())
}

fn parse(text: &str) -> Facts {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once(": ") {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.trim_end_matches(':').to_string(), String::new()),
        })
        .collect()
}

/// How the current contract differs from the recorded one.
#[derive(Debug, Default)]
struct Report {
    /// Recorded facts that are gone (removed or renumbered).
    removed: Vec<String>,
    /// Facts whose key stayed but whose meaning changed: (key, was, now).
    changed: Vec<(String, String, String)>,
    /// Facts not recorded yet: compatible, but the snapshot must say so.
    added: Vec<String>,
}

impl Report {
    fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.changed.is_empty() && self.added.is_empty()
    }

    fn describe(&self) -> String {
        let mut out = String::new();
        if !self.removed.is_empty() || !self.changed.is_empty() {
            out.push_str("BREAKING changes (clients built from the snapshot break):\n");
        }
        for r in &self.removed {
            let _ = writeln!(out, "  removed or renumbered: {r}");
        }
        for (k, was, now) in &self.changed {
            let _ = writeln!(out, "  changed: {k}: was `{was}`, now `{now}`");
        }
        for a in &self.added {
            let _ = writeln!(out, "  new {a}: update the snapshot");
        }
        out
    }
}

fn compare(recorded: &Facts, current: &Facts) -> Report {
    let mut report = Report::default();
    let line = |k: &str, v: &str| {
        if v.is_empty() {
            k.to_string()
        } else {
            format!("{k}: {v}")
        }
    };
    for (k, was) in recorded {
        match current.get(k) {
            None => report.removed.push(line(k, was)),
            Some(now) if now != was => report.changed.push((k.clone(), was.clone(), now.clone())),
            Some(_) => {}
        }
    }
    for (k, v) in current {
        if !recorded.contains_key(k) {
            report.added.push(line(k, v));
        }
    }
    report
}

#[test]
fn the_guard_names_breaking_changes_and_additions() {
    let recorded = normalize();
    let key = "field berth.v1.Container #16".to_string();
    assert_eq!(recorded[&key], "restart_count uint32");

    // A field removed (or renumbered: its old number is gone).
    let mut current = recorded.clone();
    current.remove(&key);
    let r = compare(&recorded, &current);
    assert_eq!(
        r.removed,
        ["field berth.v1.Container #16: restart_count uint32"]
    );
    assert!(r.describe().contains("BREAKING"));

    // A type changed.
    let mut current = recorded.clone();
    current.insert(key.clone(), "restart_count int64".into());
    let r = compare(&recorded, &current);
    assert_eq!(r.changed.len(), 1);
    assert!(r
        .describe()
        .contains("was `restart_count uint32`, now `restart_count int64`"));

    // An RPC that starts streaming.
    let rpc = "rpc berth.v1.Containers.Wait".to_string();
    let mut current = recorded.clone();
    let streaming = current[&rpc].replace("returns (", "returns (stream ");
    current.insert(rpc, streaming);
    assert_eq!(compare(&recorded, &current).changed.len(), 1);

    // An addition: not breaking, but the snapshot must record it.
    let mut current = recorded.clone();
    current.insert("field berth.v1.Container #99".into(), "shiny string".into());
    let r = compare(&recorded, &current);
    assert!(r.removed.is_empty() && r.changed.is_empty());
    assert_eq!(
        r.describe(),
        "  new field berth.v1.Container #99: shiny string: update the snapshot\n"
    );

    // The file round-trips.
    assert!(compare(&recorded, &parse(&render(&recorded))).is_empty());
}
