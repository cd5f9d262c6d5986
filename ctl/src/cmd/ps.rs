//! `ps`: lists containers.

use std::time::SystemTime;

use serde_json::Value;

use berth::v1::{
    containers_client::ContainersClient, Container, ContainerState, ListContainersRequest,
};

use super::fan::per_host;
use crate::cli::PsArgs;
use crate::error::{Error, Result};
use crate::fleet::{host_table, with_host, with_host_field, Fleet};
use crate::output::{self, format, print_json_line};
use crate::parse;

/// Builds the List request of `ps` from its flags and `--filter`s.
pub fn list_request(args: &PsArgs) -> Result<ListContainersRequest> {
    let mut req = ListContainersRequest::default();
    for f in &args.filters {
        let (key, value) = f
            .split_once('=')
            .ok_or_else(|| Error::Message(format!("invalid filter {f:?} (expected key=value)")))?;
        match key {
            "label" => {
                let (k, v) = parse::label(value)?;
                req.labels.insert(k, v);
            }
            "name" => {
                if !req.name.is_empty() && req.name != value {
                    return Err(Error::Message("only one name filter is supported".into()));
                }
                req.name = value.to_string();
            }
            "status" => {
                let state = match value {
                    "created" => ContainerState::Created,
                    "running" => ContainerState::Running,
                    "exited" => ContainerState::Exited,
                    "paused" => ContainerState::Paused,
                    "restarting" => ContainerState::Restarting,
                    _ => {
                        return Err(Error::Message(format!(
                            "invalid status filter {value:?} (expected created, running, paused, restarting or exited)"
                        )))
                    }
                };
                req.states.push(state as i32);
            }
            _ => {
                return Err(Error::Message(format!(
                    "invalid filter {key:?} (expected label, name or status)"
                )))
            }
        }
    }
    // Like docker ps: only running containers, unless -a or a status filter
    // says otherwise.
    if !args.all_containers && req.states.is_empty() {
        req.states.extend([
            ContainerState::Running as i32,
            ContainerState::Paused as i32,
            ContainerState::Restarting as i32,
        ]);
    }
    Ok(req)
}

/// The rows of the `ps` table.
pub fn ps_rows(containers: &[Container], now: SystemTime, no_trunc: bool) -> Vec<Vec<String>> {
    containers
        .iter()
        .map(|c| {
            vec![
                if no_trunc {
                    c.id.clone()
                } else {
                    output::short_id(&c.id).to_string()
                },
                c.image.clone(),
                output::command_column(c, no_trunc),
                output::ago(&c.created_at, now),
                output::status_text(c, now),
                c.name.clone(),
            ]
        })
        .collect()
}

/// Headers of the `ps` table.
pub const PS_HEADERS: [&str; 6] = [
    "CONTAINER ID",
    "IMAGE",
    "COMMAND",
    "CREATED",
    "STATUS",
    "NAMES",
];

/// Column titles of `ps --format "table ..."`, by field.
pub const PS_TITLES: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Status", "STATUS"),
    ("State", "STATE"),
    ("Names", "NAMES"),
    ("Ports", "PORTS"),
    ("Networks", "NETWORKS"),
    ("Host", "HOST"),
];

/// A container as `ps --format` sees it: its API message in PascalCase,
/// with the fields of Docker's `ps` (as the table shows them) over it.
pub fn ps_object(c: &Container, now: SystemTime, no_trunc: bool) -> Result<Value> {
    let mut v = format::pascal(output::message_json(c)?);
    let id = if no_trunc {
        c.id.clone()
    } else {
        output::short_id(&c.id).to_string()
    };
    let state = ContainerState::try_from(c.state)
        .map(output::state_word)
        .unwrap_or("unknown");
    let fields = [
        ("ID", id),
        ("Names", c.name.clone()),
        ("Command", output::command_column(c, no_trunc)),
        (
            "CreatedAt",
            c.created_at
                .as_ref()
                .map(output::rfc3339)
                .unwrap_or_default(),
        ),
        ("RunningFor", output::ago(&c.created_at, now)),
        ("Status", output::status_text(c, now)),
        ("State", state.to_string()),
        ("Ports", output::ports_text(c)),
        ("Networks", c.network.clone()),
    ];
    if let Value::Object(m) = &mut v {
        for (k, text) in fields {
            m.insert(k.to_string(), Value::String(text));
        }
    }
    Ok(v)
}

/// `ps`: a table (with a HOST column on many hosts), ids with `-q`, the
/// containers as JSON lines, or as `--format` says.
pub async fn ps(f: &Fleet, args: PsArgs) -> Result<()> {
    let req = list_request(&args)?;
    let format = args
        .format
        .as_deref()
        .map(format::parse)
        .transpose()?
        .flatten();
    let results = f
        .each(|_, ch| {
            let req = req.clone();
            async move {
                Ok(ContainersClient::new(ch)
                    .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
                    .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
                    .list(req)
                    .await?
                    .into_inner()
                    .containers)
            }
        })
        .await;
    let single = f.is_single();
    per_host(f, results, |ok| {
        let now = SystemTime::now();
        if args.quiet {
            for c in ok.iter().flat_map(|(_, cs)| cs) {
                let id = if args.no_trunc {
                    &c.id
                } else {
                    output::short_id(&c.id)
                };
                println!("{id}");
            }
        } else if let Some(format) = &format {
            let mut objects = Vec::new();
            for (m, cs) in ok {
                for c in cs {
                    let v = ps_object(c, now, args.no_trunc)?;
                    objects.push(if single {
                        v
                    } else {
                        with_host_field(&m.name, v)
                    });
                }
            }
            print!("{}", format.render(&objects, PS_TITLES)?);
        } else if f.json() {
            for (m, cs) in ok {
                for c in cs {
                    let v = output::message_json(c)?;
                    print_json_line(&if single { v } else { with_host(&m.name, v) });
                }
            }
        } else if single {
            let rows: Vec<_> = ok
                .iter()
                .flat_map(|(_, cs)| ps_rows(cs, now, args.no_trunc))
                .collect();
            print!("{}", output::table(&PS_HEADERS, &rows));
        } else {
            let mut rows = Vec::new();
            for (m, cs) in ok {
                for r in ps_rows(cs, now, args.no_trunc) {
                    rows.push((m.name.clone(), r));
                }
            }
            print!("{}", host_table(&PS_HEADERS, rows));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Command;
    use crate::cmd::parse_command as cli;
    use std::time::{Duration, UNIX_EPOCH};

    fn ps_request(args: &[&str]) -> Result<ListContainersRequest> {
        let Command::Ps(p) = cli(args) else { panic!() };
        list_request(&p)
    }

    #[test]
    fn ps_requests() {
        let running = vec![
            ContainerState::Running as i32,
            ContainerState::Paused as i32,
            ContainerState::Restarting as i32,
        ];
        let r = ps_request(&["ps"]).map_err(|e| e.to_string());
        assert_eq!(r.map(|r| r.states), Ok(running.clone()));
        let r = ps_request(&["ps", "-a"]).map_err(|e| e.to_string());
        assert_eq!(r.map(|r| r.states), Ok(vec![]));
        let r = ps_request(&["ps", "--filter", "status=exited", "-f", "status=created"])
            .map_err(|e| e.to_string());
        assert_eq!(
            r.map(|r| r.states),
            Ok(vec![
                ContainerState::Exited as i32,
                ContainerState::Created as i32
            ])
        );
        let Ok(r) = ps_request(&[
            "ps",
            "-a",
            "-f",
            "label=app=web",
            "-f",
            "label=tier",
            "-f",
            "name=we",
        ]) else {
            panic!()
        };
        assert_eq!(r.labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(r.labels.get("tier").map(String::as_str), Some(""));
        assert_eq!(r.name, "we");
        assert!(r.states.is_empty());
        assert!(ps_request(&["ps", "-f", "status=bogus"]).is_err());
        assert!(ps_request(&["ps", "-f", "color=red"]).is_err());
        assert!(ps_request(&["ps", "-f", "name"]).is_err());
        assert!(ps_request(&["ps", "-f", "name=a", "-f", "name=b"]).is_err());
    }

    #[test]
    fn ps_table() {
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let c = Container {
            id: "0123456789abcdef".repeat(4),
            name: "web".into(),
            image: "busybox".into(),
            state: ContainerState::Running as i32,
            args: vec!["sleep".into(), "100".into()],
            created_at: Some(prost_types::Timestamp {
                seconds: 990,
                nanos: 0,
            }),
            started_at: Some(prost_types::Timestamp {
                seconds: 997,
                nanos: 0,
            }),
            ..Default::default()
        };
        let out = output::table(&PS_HEADERS, &ps_rows(&[c], now, false));
        assert_eq!(
            out,
            "CONTAINER ID   IMAGE     COMMAND       CREATED          STATUS         NAMES\n\
             0123456789ab   busybox   \"sleep 100\"   10 seconds ago   Up 3 seconds   web\n"
        );
    }

    #[tokio::test]
    async fn unreachable_agent_is_125() {
        let ctx = crate::ctx::Ctx {
            host: "/nonexistent/berthd.sock".into(),
            tls: None,
            output: crate::cli::OutputFormat::Table,
        };
        let Ok(f) = Fleet::of_one(&ctx, 1) else {
            panic!("a valid address")
        };
        let Command::Ps(a) = cli(&["ps"]) else {
            panic!()
        };
        let Err(e) = ps(&f, a).await else {
            panic!("should fail")
        };
        assert_eq!(e.exit_code(), 125);
        assert!(e
            .to_string()
            .starts_with("cannot connect to berthd at unix:///nonexistent/berthd.sock: "));
        assert!(e.to_string().ends_with("(is berthd running?)"));
    }
}
