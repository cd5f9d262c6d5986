//! The runtime's events and records in their `berth.v1` form: the one
//! adapter between [`super::domain`] and the wire, used by the event bus
//! (which stores the protobuf encoding) and by the gRPC server.

use berth::v1 as pb;

use super::domain::{Action, Event, Object};
use crate::monitor::ExitRecord;

/// A runtime event as a `berth.v1.Event` (seq, time and instance id are
/// the bus's to stamp).
pub fn event_to_proto(ev: Event) -> pb::Event {
    pb::Event {
        r#type: object_to_proto(ev.object) as i32,
        action: action_to_proto(ev.action) as i32,
        id: ev.id,
        name: ev.name,
        labels: ev.labels.into_iter().collect(),
        image: ev.image,
        exit: ev.exit.as_ref().map(exit_to_proto),
        signal: ev.signal,
        restart_attempt: ev.restart_attempt,
        restart_delay_ms: u64::try_from(ev.restart_delay.as_millis()).unwrap_or(u64::MAX),
        exec: ev.exec.map(|x| pb::ExecEvent {
            exec_id: x.exec_id,
            command: x.command,
            exit: x.exit.as_ref().map(exit_to_proto),
            truncated: x.truncated,
        }),
        old_name: ev.old_name,
        container_id: ev.container,
        ..Default::default()
    }
}

fn object_to_proto(o: Object) -> pb::ObjectType {
    match o {
        Object::Container => pb::ObjectType::Container,
        Object::Image => pb::ObjectType::Image,
        Object::Network => pb::ObjectType::Network,
        Object::Volume => pb::ObjectType::Volume,
        Object::Pod => pb::ObjectType::Pod,
    }
}

pub(super) fn action_to_proto(a: Action) -> pb::EventAction {
    use pb::EventAction as P;
    match a {
        Action::Created => P::Created,
        Action::Started => P::Started,
        Action::Stopping => P::Stopping,
        Action::Killed => P::Killed,
        Action::Exited => P::Exited,
        Action::Removed => P::Removed,
        Action::Imported => P::Imported,
        Action::Pulled => P::Pulled,
        Action::Paused => P::Paused,
        Action::Resumed => P::Resumed,
        Action::Restarting => P::Restarting,
        Action::Updated => P::Updated,
        Action::ExecStarted => P::ExecStarted,
        Action::ExecExited => P::ExecExited,
        Action::Renamed => P::Renamed,
        Action::Connected => P::Connected,
        Action::Disconnected => P::Disconnected,
        Action::Built => P::Built,
    }
}

/// An exit record in its API form.
pub fn exit_to_proto(x: &ExitRecord) -> pb::ExitStatus {
    pb::ExitStatus {
        exit_code: x.exit_code,
        signal: x.signal,
        oom_killed: x.oom_killed,
        finished_at: Some(nanos_to_ts(x.finished_at_unix_nanos)),
    }
}

/// Unix nanoseconds to a protobuf timestamp.
pub fn nanos_to_ts(n: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: n.div_euclid(1_000_000_000),
        nanos: n.rem_euclid(1_000_000_000) as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_field_reaches_the_wire() {
        let mut ev = Event::new(Object::Container, Action::Restarting, "c1");
        ev.name = "web".into();
        ev.labels.insert("app".into(), "x".into());
        ev.image = "busybox".into();
        ev.exit = Some(ExitRecord {
            exit_code: 3,
            signal: 9,
            oom_killed: true,
            finished_at_unix_nanos: 5_000_000_007,
        });
        ev.signal = 15;
        ev.restart_attempt = 2;
        ev.restart_delay = Duration::from_millis(400);
        ev.exec = Some(super::super::domain::ExecInfo::new("e1", &["true".into()]));
        let p = event_to_proto(ev);
        let x = p.exec.clone().unwrap();
        assert_eq!(
            (x.exec_id.as_str(), x.command, x.truncated),
            ("e1", vec!["true".to_string()], false)
        );
        assert_eq!(p.r#type, pb::ObjectType::Container as i32);
        assert_eq!(p.action, pb::EventAction::Restarting as i32);
        assert_eq!((p.id.as_str(), p.name.as_str()), ("c1", "web"));
        assert_eq!(p.labels["app"], "x");
        assert_eq!(p.image, "busybox");
        let x = p.exit.unwrap();
        assert_eq!((x.exit_code, x.signal, x.oom_killed), (3, 9, true));
        assert_eq!(x.finished_at, Some(nanos_to_ts(5_000_000_007)));
        assert_eq!(
            (p.signal, p.restart_attempt, p.restart_delay_ms),
            (15, 2, 400)
        );
    }
}
