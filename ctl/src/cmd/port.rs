//! `port`: a container's published ports, as `docker port` prints them.

use berth::v1::{containers_client::ContainersClient, InspectContainerRequest, PortMapping};

use super::fan::fan_ids;
use crate::cli::PortArgs;
use crate::ctx::missing;
use crate::error::{Error, Result};
use crate::fleet::{with_host, Fleet};
use crate::output::{self, print_json_line};

/// `80/tcp -> 0.0.0.0:8080`: the container's side, then where the host
/// listens (the port the agent chose for `-p 80`).
pub fn port_line(p: &PortMapping) -> String {
    let ip = if p.host_ip.is_empty() {
        "0.0.0.0"
    } else {
        &p.host_ip
    };
    format!("{} -> {ip}:{}", container_side(p), p.host_port)
}

fn container_side(p: &PortMapping) -> String {
    let proto = if p.protocol.is_empty() {
        "tcp"
    } else {
        &p.protocol
    };
    format!("{}/{proto}", p.container_port)
}

/// Whether `p` is what `PRIVATE_PORT[/PROTO]` asks for (tcp by default).
fn wanted(p: &PortMapping, filter: Option<&str>) -> bool {
    match filter {
        None => true,
        Some(f) if f.contains('/') => container_side(p) == f,
        Some(f) => container_side(p) == format!("{f}/tcp"),
    }
}

/// `port CONTAINER [PRIVATE_PORT[/PROTO]]`.
pub async fn port(f: &Fleet, args: PortArgs) -> Result<()> {
    if let Some(filter) = &args.port {
        let (num, proto) = filter.split_once('/').unwrap_or((filter, "tcp"));
        if num.parse::<u16>().map_or(true, |n| n == 0) || !matches!(proto, "tcp" | "udp") {
            return Err(Error::Message(format!(
                "invalid port {:?}: expected PORT[/tcp|udp]",
                output::ellipsis(filter, 32)
            )));
        }
    }
    let ids = [args.id.clone()];
    let outcome = fan_ids(
        f,
        &ids,
        "container",
        |ch, id| async move {
            ContainersClient::new(ch)
                .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
                .inspect(InspectContainerRequest { id })
                .await?
                .into_inner()
                .container
                .ok_or_else(|| missing("container"))
        },
        |_| Ok(()),
    )
    .await?;
    let single = f.is_single();
    let mut found = false;
    for d in &outcome.done {
        let ports = d.value.network_settings.iter().flat_map(|n| &n.ports);
        for p in ports.filter(|p| wanted(p, args.port.as_deref())) {
            found = true;
            if f.json() {
                let v = output::message_json(p)?;
                print_json_line(&if single { v } else { with_host(&d.host, v) });
            } else if single {
                println!("{}", port_line(p));
            } else {
                println!("{}\t{}", d.host, port_line(p));
            }
        }
    }
    match &args.port {
        Some(filter) if !found && !outcome.done.is_empty() => Err(Error::Message(format!(
            "no public port {:?} published for {:?}",
            output::ellipsis(filter, 32),
            output::ellipsis(&args.id, 64)
        ))),
        _ => outcome.finish(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(ip: &str, host: u32, container: u32, proto: &str) -> PortMapping {
        PortMapping {
            host_ip: ip.into(),
            host_port: host,
            container_port: container,
            protocol: proto.into(),
        }
    }

    #[test]
    fn lines_and_filters_are_dockers() {
        let web = mapping("", 8080, 80, "tcp");
        let dns = mapping("127.0.0.1", 5353, 53, "udp");
        assert_eq!(port_line(&web), "80/tcp -> 0.0.0.0:8080");
        assert_eq!(port_line(&dns), "53/udp -> 127.0.0.1:5353");
        assert!(wanted(&web, None) && wanted(&web, Some("80")) && wanted(&web, Some("80/tcp")));
        assert!(!wanted(&web, Some("80/udp")) && !wanted(&web, Some("8080")));
        assert!(wanted(&dns, Some("53/udp")) && !wanted(&dns, Some("53")));
    }
}
