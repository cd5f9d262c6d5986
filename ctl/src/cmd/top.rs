//! `top`: the processes of a container, with ps-like columns.

use berth::v1::{stats_client::StatsClient, ProcessInfo, TopRequest, TopResponse};

use super::fan::fan_ids;
use crate::cli::TopArgs;
use crate::error::Result;
use crate::fleet::{host_table, with_host, Fleet};
use crate::output::{self, print_json_line};

/// Headers of the top table: the host pid, the pid inside the container.
pub const TOP_HEADERS: [&str; 8] = [
    "USER", "PID", "PPID", "CPID", "STAT", "TIME", "RSS", "COMMAND",
];

/// CPU time as ps prints it: `MM:SS`, or `H:MM:SS` past an hour.
pub fn cpu_time(nanos: u64) -> String {
    let s = nanos / 1_000_000_000;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m:02}:{s:02}")
    }
}

/// One row of the table.
pub fn top_row(p: &ProcessInfo) -> Vec<String> {
    vec![
        p.user.clone(),
        p.pid.to_string(),
        p.ppid.to_string(),
        if p.container_pid > 0 {
            p.container_pid.to_string()
        } else {
            "-".into()
        },
        p.state.clone(),
        cpu_time(p.cpu_nanos),
        output::binary_size(p.rss_bytes),
        p.command.clone(),
    ]
}

/// `top`.
pub async fn top(f: &Fleet, args: TopArgs) -> Result<()> {
    let ids = [args.id.clone()];
    let outcome = fan_ids(
        f,
        &ids,
        "container",
        |ch, id| async move {
            Ok(StatsClient::new(ch)
                .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
                .top(TopRequest { container: id })
                .await?
                .into_inner())
        },
        |_| Ok(()),
    )
    .await?;
    let single = f.is_single();
    let mut rows = Vec::new();
    for d in &outcome.done {
        let TopResponse {
            processes,
            truncated,
        } = &d.value;
        for p in processes {
            if f.json() {
                let v = output::message_json(p)?;
                print_json_line(&if single { v } else { with_host(&d.host, v) });
            } else {
                rows.push((d.host.clone(), top_row(p)));
            }
        }
        if *truncated {
            eprintln!(
                "berthctl: {}: only the first {} processes are listed",
                d.id,
                processes.len()
            );
        }
    }
    if !f.json() {
        if single {
            let rows: Vec<Vec<String>> = rows.into_iter().map(|(_, r)| r).collect();
            print!("{}", output::table(&TOP_HEADERS, &rows));
        } else {
            print!("{}", host_table(&TOP_HEADERS, rows));
        }
    }
    outcome.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_like_ps() {
        assert_eq!(cpu_time(0), "00:00");
        assert_eq!(cpu_time(61_500_000_000), "01:01");
        assert_eq!(cpu_time(3_723_000_000_000), "1:02:03");
        let p = ProcessInfo {
            pid: 4242,
            container_pid: 1,
            ppid: 4240,
            uid: 0,
            user: "root".into(),
            state: "S".into(),
            cpu_nanos: 2_000_000_000,
            rss_bytes: 512 * 1024,
            command: "sleep 100".into(),
            started_at: None,
        };
        assert_eq!(
            top_row(&p),
            [
                "root",
                "4242",
                "4240",
                "1",
                "S",
                "00:02",
                "512KiB",
                "sleep 100"
            ]
        );
    }
}
