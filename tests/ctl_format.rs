//! End to end: `--format` of `ps`, `images`, `inspect` and `image inspect`
//! (issue 22), through the real `berthctl` against a real berthd: Go
//! templates over Docker's field names, `table` templates with titled and
//! aligned columns, `json`, and bad templates refused with a clear error.

mod common;

use common::cli::{expect_failure, json_lines, ok};
use common::Agent;

#[tokio::test]
async fn templates_select_what_ps_images_and_inspect_print() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    ok(
        &agent,
        &[
            "run", "-d", "--name", "web", "-l", "app=shop", "busybox", "sleep", "300",
        ],
    );
    ok(&agent, &["create", "--name", "idle", "busybox", "true"]);

    // Docker's fields, one line per container; running ones unless -a.
    let out = ok(
        &agent,
        &[
            "ps",
            "--format",
            "{{.Names}} {{.State}} {{index .Labels \"app\"}}",
        ],
    );
    assert_eq!(out, "web running shop\n");
    let out = ok(&agent, &["ps", "-a", "--format", "{{.Names}}={{.Status}}"]);
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0], "idle=Created");
    assert!(lines[1].starts_with("web=Up "), "{out}");
    // Every field of the API message too, in PascalCase.
    let out = ok(
        &agent,
        &["ps", "--format", "{{.Spec.Image}} {{json .Args}}"],
    );
    assert_eq!(out, "busybox [\"sleep\",\"300\"]\n");

    // A table: titles from the field names, cells aligned at tabs (the
    // two characters `\t`, as a shell passes them).
    let out = ok(
        &agent,
        &[
            "ps",
            "-a",
            "--format",
            "table {{.Names}}\\t{{.State}}\\t{{.Image}}",
        ],
    );
    let mut lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.remove(0), "NAMES   STATE     IMAGE", "{out}");
    lines.sort();
    assert_eq!(
        lines,
        ["idle    created   busybox", "web     running   busybox"],
        "{out}"
    );
    // As Docker: no space is needed after `table`.
    let out = ok(&agent, &["ps", "--format", "table{{.Names}}\\t{{.State}}"]);
    assert_eq!(out, "NAMES   STATE\nweb     running\n", "{out}");
    // Labels as Docker's ps prints them, one with Label; json an object.
    ok(
        &agent,
        &[
            "run", "-d", "--name", "lab", "-l", "z=1", "-l", "a=2", "busybox", "sleep", "300",
        ],
    );
    let out = ok(
        &agent,
        &[
            "ps",
            "--filter",
            "name=lab",
            "--format",
            "{{.Labels}}|{{.Label \"z\"}}|{{json .Labels}}",
        ],
    );
    assert_eq!(out, "a=2,z=1|1|{\"a\":\"2\",\"z\":\"1\"}\n", "{out}");
    ok(&agent, &["rm", "-f", "lab"]);
    // `table` alone is the usual table; `json` one object per line.
    let table = ok(&agent, &["ps", "--format", "table"]);
    assert!(table.starts_with("CONTAINER ID   IMAGE"), "{table}");
    let objects = json_lines(&ok(&agent, &["ps", "--format", "json"]));
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0]["Names"], "web");
    assert_eq!(objects[0]["State"], "running");

    // Images: one object per reference, as the table's rows.
    let out = ok(
        &agent,
        &["images", "--format", "{{.Repository}}:{{.Tag}} {{len .ID}}"],
    );
    assert_eq!(out, "busybox:latest 12\n");
    let out = ok(
        &agent,
        &["images", "--format", "table {{.Repository}}\\t{{.Tag}}"],
    );
    assert_eq!(out, "REPOSITORY   TAG\nbusybox      latest\n");

    // Inspect: the API message in PascalCase, one rendering per object.
    let out = ok(
        &agent,
        &[
            "inspect",
            "--format",
            "{{.Name}} {{.Spec.Image}} {{.Pid}}",
            "web",
        ],
    );
    let fields: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(fields[..2], ["web", "busybox"], "{out}");
    assert!(fields[2].parse::<u32>().is_ok_and(|p| p > 1), "{out}");
    let out = ok(&agent, &["inspect", "--format", "{{.Name}}", "idle", "web"]);
    assert_eq!(out, "idle\nweb\n");
    let out = ok(
        &agent,
        &[
            "image",
            "inspect",
            "--format",
            "{{json .References}}",
            "busybox",
        ],
    );
    assert_eq!(out, "[\"docker.io/library/busybox:latest\"]\n");

    // A bad template: one clear line, exit 1 (as Docker), nothing on stdout.
    for (args, mentions) in [
        (
            &["ps", "--format", "{{.Names"][..],
            &["invalid --format template"][..],
        ),
        (
            &["inspect", "--format", "{{nosuch .Name}}", "web"],
            &["--format", "nosuch"],
        ),
    ] {
        let o = agent.ctl(args);
        expect_failure(&o, args, 1, mentions);
        assert!(o.stdout.is_empty(), "{args:?}");
    }

    ok(&agent, &["rm", "-f", "web", "idle"]);
    agent.assert_clean().await;
}
