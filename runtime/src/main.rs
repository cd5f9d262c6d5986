//! `berth-monitor __monitor [<container dir>]`: one container's monitor (see
//! the `berth_runtime` crate). berthd starts it with the launch spec on
//! stdin; nobody else should.

use std::path::Path;

use berth_runtime::launch::MONITOR_ARG;

fn main() {
    let mut args = std::env::args_os().skip(1);
    match (args.next(), args.next()) {
        // With the directory: started for one container. Without: started
        // ahead of time, the directory comes with the launch spec.
        (Some(mode), dir) if mode == MONITOR_ARG => {
            berth_runtime::monitor::main(dir.as_deref().map(Path::new))
        }
        _ => {
            eprintln!(
                "berth-monitor: started by berthd as `berth-monitor {MONITOR_ARG} [<container dir>]`, with the launch spec on stdin"
            );
            std::process::exit(2);
        }
    }
}
