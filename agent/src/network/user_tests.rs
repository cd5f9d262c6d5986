//! Unit tests of user-defined networks: pool, overlap, records, refusals.

use super::*;

struct Sink;
impl EventSink for Sink {
    fn publish(&self, _: Event) -> u64 {
        0
    }
    fn announced_since(&self, _: &str, _: Action, _: i64) -> bool {
        false
    }
}

fn open(dir: &std::path::Path) -> Networks {
    let default = Arc::new(Bridge::new(
        bridge::Config::new("berth-t0", "10.89.0.0/24").unwrap(),
    ));
    Networks::open(dir.join("networks"), default, Arc::new(Sink)).unwrap()
}

fn req(name: &str, subnet: &str) -> CreateRequest {
    CreateRequest {
        name: name.into(),
        subnet: subnet.into(),
        ..Default::default()
    }
}

#[test]
fn subnets_come_from_the_pool_and_overlaps_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let n = open(tmp.path());
    // 10.89.0.0/24 is the default bridge's here.
    let a = n.create(req("a", "")).unwrap();
    assert_eq!(a.rec.subnet, "10.89.1.0/24");
    let e = n.create(req("b", "10.89.1.128/25")).unwrap_err();
    assert!(matches!(e, NetworkError::Overlap { .. }), "{e}");
    let e = n.create(req("a", "")).unwrap_err();
    assert!(matches!(e, NetworkError::NameInUse { .. }), "{e}");
    let c = n.create(req("c", "192.168.50.0/24")).unwrap();
    assert_eq!(c.rec.gateway, Ipv4Addr::new(192, 168, 50, 1));
    assert_eq!(n.create(req("d", "")).unwrap().rec.subnet, "10.89.2.0/24");
}

#[test]
fn records_survive_a_reopen_and_are_private() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let a = open(tmp.path()).create(req("a", "")).unwrap();
    let path = tmp.path().join(format!("networks/{}.json", a.rec.id));
    assert_eq!(std::fs::metadata(path).unwrap().mode() & 0o777, 0o600);
    let again = open(tmp.path());
    assert_eq!(again.get("a").unwrap().rec, a.rec);
    assert_eq!(again.get(&a.rec.id[..6]).unwrap().rec, a.rec);
}

#[test]
fn a_record_with_a_bad_id_is_skipped_not_sliced() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(tmp.path()).create(req("a", "")).unwrap();
    let dir = tmp.path().join("networks");
    let good = std::fs::read_to_string(dir.join(format!("{}.json", a.rec.id))).unwrap();
    for (file, id) in [
        ("short", "ab"),
        (
            "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
            "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
        ),
    ] {
        let bad = good.replace(&a.rec.id, id).replace("\"a\"", "\"skipped\"");
        std::fs::write(dir.join(format!("{file}.json")), bad).unwrap();
    }
    // Opening does not panic, and keeps the good one.
    let again = open(tmp.path());
    assert_eq!(again.get("a").unwrap().rec, a.rec);
    // Not "b": a one-letter hex name would match the good id by prefix.
    assert!(again.get("skipped").is_err());
}

#[test]
fn bad_input_is_refused_without_echoing_it_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let n = open(tmp.path());
    for bad in [
        req("", ""),
        req("-x", ""),
        req("bridge", ""),
        req(&"a".repeat(100_000), ""),
        req("x", "10.1.0.0/33"),
        req("x", &"1".repeat(100_000)),
        CreateRequest {
            gateway: "10.90.0.0".into(),
            ..req("x", "10.90.0.0/24")
        },
        CreateRequest {
            driver: "macvlan".into(),
            ..req("x", "")
        },
    ] {
        let e = n.create(bad).unwrap_err();
        assert!(matches!(e, NetworkError::InvalidField { .. }), "{e}");
        assert!(e.to_string().len() < 300, "{e}");
    }
    for bad in [
        CreateRequest {
            subnet6: "fd00::/64".into(),
            ..req("x", "")
        },
        CreateRequest {
            ipv6: true,
            gateway6: "fd00::1".into(),
            ..req("x", "")
        },
        CreateRequest {
            ipv6: true,
            subnet6: "fd00::/56".into(),
            ..req("x", "")
        },
        CreateRequest {
            ipv6: true,
            subnet6: "fd00::/64".into(),
            gateway6: "fd01::1".into(),
            ..req("x", "")
        },
        req("x", "fd00::/64"),
    ] {
        if bad.ipv6 && super::super::ipam6::host_supports_ipv6().is_err() {
            continue;
        }
        let e = n.create(bad).unwrap_err();
        assert!(matches!(e, NetworkError::InvalidField { .. }), "{e}");
    }
    assert!(n.list().is_empty(), "a refused create changed nothing");
    assert!(matches!(
        n.get("bridge").unwrap_err(),
        NetworkError::Predefined { .. }
    ));
}

#[test]
fn ipv6_prefixes_come_from_their_pool_survive_a_reopen_and_overlaps_are_refused() {
    if let Err(e) = super::super::ipam6::host_supports_ipv6() {
        panic!("this test needs IPv6 on the host: {e}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let n = open(tmp.path());
    let six = |name: &str, subnet6: &str| CreateRequest {
        ipv6: true,
        subnet6: subnet6.into(),
        ..req(name, "")
    };
    let a = n.create(six("a", "")).unwrap();
    assert_eq!(a.rec.subnet6.as_deref(), Some("fd62:6572:7468::/64"));
    assert_eq!(a.rec.gateway6, Some("fd62:6572:7468::1".parse().unwrap()));
    let b = n.create(six("b", "")).unwrap();
    assert_eq!(b.rec.subnet6.as_deref(), Some("fd62:6572:7468:1::/64"));
    let e = n
        .create(six("c", "fd62:6572:7468:1::8000/113"))
        .unwrap_err();
    assert!(matches!(e, NetworkError::Overlap { .. }), "{e}");
    // An IPv4-only network has no IPv6 side.
    let v4 = n.create(req("v4", "")).unwrap();
    assert!(v4.rec.subnet6.is_none() && v4.rec.gateway6.is_none());
    // Addresses: both families, taken and freed together.
    let s = a.bridge().unwrap().allocate().unwrap();
    assert_eq!(
        s.ip6.map(|a| a.ip),
        Some("fd62:6572:7468::2".parse().unwrap())
    );
    a.bridge().unwrap().unclaim(&s);
    assert!(a.bridge().unwrap().is_unused());
    assert_eq!(a.bridge().unwrap().allocate().unwrap(), s);
    drop(n);
    let n = open(tmp.path());
    let again = n.get("b").unwrap();
    assert_eq!(again.rec, b.rec);
    assert!(n.create(six("d", "fd62:6572:7468::/64")).is_err());
}
