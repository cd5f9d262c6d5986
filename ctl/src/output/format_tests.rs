use super::*;
use serde_json::json;

fn rows() -> Vec<Value> {
    vec![
        json!({"ID": "0123456789ab", "Names": "web", "Labels": {"app": "shop", "tier": "front"},
               "Spec": {"Image": "busybox", "Args": ["httpd", "-f"]}, "Count": 2}),
        json!({"ID": "ba9876543210", "Names": "database-1", "Labels": {},
               "Spec": {"Image": "postgres", "Args": []}, "Count": 0}),
    ]
}

fn render(format: &str) -> String {
    match parse(format) {
        Ok(Some(f)) => match f.render(&rows(), &[("ID", "CONTAINER ID")]) {
            Ok(s) => s,
            Err(e) => format!("render error: {e}"),
        },
        Ok(None) => "default table".into(),
        Err(e) => format!("parse error: {e}"),
    }
}

#[test]
fn fields_nested_fields_and_lines() {
    assert_eq!(
        render("{{.ID}} {{.Names}}"),
        "0123456789ab web\nba9876543210 database-1\n"
    );
    assert_eq!(render("{{.Spec.Image}}"), "busybox\npostgres\n");
    // Untyped, as a map of interface{} in Go: a missing key has no value.
    assert_eq!(render("{{index .Labels \"app\"}}"), "shop\n<no value>\n");
    assert_eq!(render("{{.Missing}}"), "<no value>\n<no value>\n");
}

#[test]
fn docker_functions() {
    assert_eq!(
        render("{{json .Labels}}"),
        "{\"app\":\"shop\",\"tier\":\"front\"}\n{}\n"
    );
    assert_eq!(render("{{json .Spec.Args}}"), "[\"httpd\",\"-f\"]\n[]\n");
    assert_eq!(render("{{join .Spec.Args \" \"}}"), "httpd -f\n\n");
    assert_eq!(
        render("{{upper .Names}}|{{lower \"AB\"}}"),
        "WEB|ab\nDATABASE-1|ab\n"
    );
    assert_eq!(
        render("{{title \"hello world\"}}"),
        "Hello World\nHello World\n"
    );
    assert_eq!(render("{{truncate .Names 3}}"), "web\ndat\n");
    assert_eq!(
        render("[{{pad .Names 1 2}}]"),
        "[ web  ]\n[ database-1  ]\n"
    );
    assert_eq!(
        render("{{index (split .Names \"-\") 0}}"),
        "web\ndatabase\n"
    );
    assert_eq!(
        render("{{if gt .Count 0}}busy{{else}}idle{{end}}"),
        "busy\nidle\n"
    );
    assert_eq!(
        render("{{range $k, $v := .Labels}}{{$k}}={{$v}};{{end}}"),
        "app=shop;tier=front;\n\n"
    );
}

#[test]
fn tables_align_at_tabs_and_title_their_columns() {
    // A shell passes `\t` as two characters; Docker reads them as a tab.
    assert_eq!(
        render("table {{.ID}}\\t{{.Names}}\\t{{.Spec.Image}}"),
        "CONTAINER ID   NAMES        IMAGE\n\
         0123456789ab   web          busybox\n\
         ba9876543210   database-1   postgres\n"
    );
    // Literal text stays as it is in the header.
    assert_eq!(
        render("table name: {{.Names}}"),
        "name: NAMES\nname: web\nname: database-1\n"
    );
    assert_eq!(render("table"), "default table");
    assert_eq!(render(" table "), "default table");
}

#[test]
fn json_is_one_object_per_line() {
    let out = render("json");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2);
    let first: Value = serde_json::from_str(lines[0]).unwrap_or_default();
    assert_eq!(first["Names"], "web");
}

#[test]
fn bad_formats_are_refused_clearly_and_briefly() {
    let e = render("{{.ID");
    assert!(
        e.starts_with("parse error: invalid --format template \"{{.ID\""),
        "{e}"
    );
    let long = format!("{{{{.ID}} {}", "x".repeat(5000));
    let e = render(&long);
    assert!(
        e.starts_with("parse error: --format is longer than 4096 bytes"),
        "{e}"
    );
    let bad = format!("{{{{.ID {}", "y".repeat(200));
    let e = render(&bad);
    assert!(e.len() < 400, "the error quotes all the input: {e}");
    let e = render("{{nosuchfunction .ID}}");
    assert_eq!(
        e,
        "render error: --format: undefined function: nosuchfunction"
    );
}

#[test]
fn pascal_keys_leave_user_maps_alone() {
    let v = pascal(json!({
        "id": "x",
        "spec": {"image": "busybox", "labels": {"app.kind": "web"}},
        "mounts": [{"target": "/data"}],
        "driverOpts": {"o": "size=1m"}
    }));
    assert_eq!(
        v,
        json!({
            "Id": "x",
            "Spec": {"Image": "busybox", "Labels": {"app.kind": "web"}},
            "Mounts": [{"Target": "/data"}],
            "DriverOpts": {"o": "size=1m"}
        })
    );
}

#[test]
fn table_is_any_format_that_starts_with_the_word() {
    // Docker: `table` then anything; no space is needed after it.
    let expected = "CONTAINER ID   NAMES\n\
                    0123456789ab   web\n\
                    ba9876543210   database-1\n";
    assert_eq!(render("table{{.ID}}\\t{{.Names}}"), expected);
    assert_eq!(render("table {{.ID}}\\t{{.Names}}"), expected);
    assert_eq!(render("table\\t{{.ID}}\\t{{.Names}}"), expected);
    assert_eq!(render("table\t{{.ID}}\t{{.Names}}"), expected);
    assert_eq!(render("  table{{.ID}}\\t{{.Names}}  "), expected);
    // `table` and blanks alone: the command's usual table.
    assert_eq!(render("table\\t"), "default table");
    // Not at the start: a plain template, `table` printed as it is.
    assert_eq!(
        render("x table{{.Names}}"),
        "x tableweb\nx tabledatabase-1\n"
    );
}

#[test]
fn labels_print_as_docker_and_stay_a_map() {
    // Docker's ps: `k1=v1,k2=v2`, sorted by key; nothing for no labels.
    assert_eq!(render("{{.Labels}}"), "app=shop,tier=front\n\n");
    assert_eq!(render("[{{ .Labels }}]"), "[app=shop,tier=front]\n[]\n");
    assert_eq!(
        render("{{range .}}{{end}}{{$c := .}}{{$c.Labels}}"),
        "app=shop,tier=front\n\n"
    );
    assert_eq!(
        render("{{if .Labels}}{{.Labels}}{{else}}none{{end}}"),
        "app=shop,tier=front\nnone\n"
    );
    assert_eq!(
        render("table {{.Names}}\\t{{.Labels}}"),
        "NAMES        LABELS\n\
         web          app=shop,tier=front\n\
         database-1\n"
    );
    // Still a map for json, index, range and len.
    assert_eq!(
        render("{{json .Labels}}"),
        "{\"app\":\"shop\",\"tier\":\"front\"}\n{}\n"
    );
    assert_eq!(render("{{index .Labels \"tier\"}}"), "front\n<no value>\n");
    assert_eq!(render("{{len .Labels}}"), "2\n0\n");
    // Docker's `Label` method: one value, nothing when it is missing.
    assert_eq!(render("{{.Label \"tier\"}}"), "front\n\n");
    assert_eq!(render("{{.Label \"nope\"}}|"), "|\n|\n");
    assert_eq!(render("{{upper (.Label \"app\")}}"), "SHOP\n\n");
    assert_eq!(
        render("{{with $c := .}}{{$c.Label \"app\"}}{{end}}"),
        "shop\n\n"
    );
    assert_eq!(
        render("{{if eq (.Label \"app\") \"shop\"}}yes{{end}}"),
        "yes\n\n"
    );
    // Other maps print as Go prints them.
    assert_eq!(
        render("{{.Spec}}"),
        "map[Args:[httpd -f] Image:busybox]\nmap[Args:[] Image:postgres]\n"
    );
    // Named templates are rewritten too.
    assert_eq!(
        render("{{define \"l\"}}{{.Labels}}{{end}}{{template \"l\" .}}"),
        "app=shop,tier=front\n\n"
    );
}

#[test]
fn label_columns_are_titled_as_docker_titles_them() {
    assert_eq!(
        render(
            "table {{.Names}}\\t{{.Label \"com.example.app-name\"}}\\t{{index .Labels \"app\"}}"
        ),
        "NAMES        app name   APP\n\
         web                     shop\n\
         database-1              <no value>\n"
    );
    assert_eq!(
        render("table {{json .Labels}}"),
        "{\"app\":\"APP\",\"tier\":\"TIER\"}\n\
         {\"app\":\"shop\",\"tier\":\"front\"}\n\
         {}\n"
    );
}
