//! The command line as users type it.

use super::*;

/// Parses a command line given without the program name.
pub(crate) fn parse(args: &[&str]) -> Cli {
    match try_parse_from(std::iter::once("berthctl").chain(args.iter().copied())) {
        Ok(cli) => cli,
        Err(e) => panic!("{args:?} should parse: {e}"),
    }
}

fn fails(args: &[&str]) -> bool {
    try_parse_from(std::iter::once("berthctl").chain(args.iter().copied())).is_err()
}

/// What clap makes of `args` with the whole tree, and with only the
/// subcommand that `args` name: the same, value or error message.
fn same_as_whole_tree(args: &[&str]) {
    let line = || std::iter::once("berthctl").chain(args.iter().copied());
    let show = |r: Result<Cli, clap::Error>| match r {
        Ok(cli) => format!("{cli:?}"),
        Err(e) => format!("{:?}: {}", e.kind(), e.render()),
    };
    assert_eq!(
        show(try_parse_from(line())),
        show(Cli::try_parse_from(line())),
        "{args:?}"
    );
}

#[test]
fn parsing_only_the_named_subcommand_changes_nothing() {
    let lines: &[&[&str]] = &[
        &["ps"],
        &["-H", "unix:///x", "ps", "-a"],
        &["-H", "--forse", "ps", "rm"],
        &["-H", "-a", "ps"],
        &["-H", "-", "ps"],
        &["--host", "--", "ps"],
        &["ps", "-H", "/x", "-o", "json"],
        &["-H/x", "-ojson", "ps"],
        &["--host=/x", "--output=json", "ps"],
        &[
            "--all",
            "--group",
            "g",
            "--group",
            "h",
            "--selector",
            "a=b",
            "ps",
        ],
        &["ps", "--all", "--parallel", "3", "--host-timeout", "5s"],
        &[
            "--tls-ca",
            "ca",
            "--tls-cert",
            "c",
            "--tls-key",
            "k",
            "info",
        ],
        &["--inventory", "hosts.toml", "top-hosts"],
        &["run", "--rm", "-m", "64m", "busybox", "sh", "-c", "x -H y"],
        &["run", "-d", "--name", "web", "busybox", "--", "-H", "ps"],
        &["image", "ls"],
        &["image", "list"],
        &["-o", "json", "image", "import", "-", "--reference", "x:y"],
        &["resume", "a"],
        &["rm", "-f", "a", "b"],
        &["logs", "-f", "--tail", "5", "web"],
        &["certs", "init", "--dir", "d"],
        // Errors, help and version: clap's own, from the whole tree
        // or from the one subcommand.
        &[],
        &["--help"],
        &["-h"],
        &["--version"],
        &["help"],
        &["help", "run"],
        &["pss"],
        &["--bogus", "ps"],
        &["-H"],
        &["--", "ps"],
        &["ps", "--bogus"],
        &["-o", "yaml", "ps"],
        &["ps", "--version"],
        &["run"],
        &["run", "--memory", "lots", "busybox"],
        &["image"],
        &["image", "bogus"],
        &["image", "import", "--help"],
    ];
    for args in lines {
        same_as_whole_tree(args);
    }
    // Every subcommand's help and bare use.
    for sub in all_commands().get_subcommands() {
        same_as_whole_tree(&[sub.get_name()]);
        same_as_whole_tree(&[sub.get_name(), "--help"]);
        same_as_whole_tree(&["-H", "/x", sub.get_name(), "-h"]);
    }
}

#[test]
fn the_subcommand_is_found_behind_root_options() {
    let root = with_selection(Selection::Root, <Cli as clap::CommandFactory>::command);
    let name = |args: &[&str]| {
        let args: Vec<OsString> = std::iter::once("berthctl")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        subcommand_name(&root, &args)
    };
    assert_eq!(name(&["ps"]).as_deref(), Some("ps"));
    assert_eq!(name(&["-H", "ps", "run"]).as_deref(), Some("run"));
    assert_eq!(name(&["-Hps", "run"]).as_deref(), Some("run"));
    assert_eq!(name(&["--host=ps", "run"]).as_deref(), Some("run"));
    assert_eq!(name(&["--all", "ps"]).as_deref(), Some("ps"));
    assert_eq!(
        name(&["-o", "json", "--group", "g", "ps"]).as_deref(),
        Some("ps")
    );
    assert_eq!(name(&["--", "ps"]), None);
    assert_eq!(name(&["--bogus", "ps"]), None);
    assert_eq!(name(&["-H"]), None);
    assert_eq!(name(&[]), None);
}

#[test]
fn definition_is_consistent() {
    use clap::CommandFactory;
    Cli::command().debug_assert();
}

#[test]
fn global_flags() {
    let cli = parse(&["-H", "http://h:1", "ps", "-o", "json"]);
    assert_eq!(cli.host.as_deref(), Some("http://h:1"));
    assert_eq!(cli.output, OutputFormat::Json);
    let cli = parse(&["--output", "table", "ps"]);
    assert_eq!(cli.output, OutputFormat::Table);
    assert!(fails(&["-o", "yaml", "ps"]));
}

#[test]
fn run_command_with_and_without_dashes() {
    let Command::Run(r) = parse(&["run", "--rm", "-e", "A=1", "busybox", "sh", "-c", "echo hi"])
        .command
        .0
    else {
        panic!("not run")
    };
    assert!(r.rm && !r.detach);
    assert_eq!(r.spec.image(), "busybox");
    assert_eq!(r.spec.command(), ["sh", "-c", "echo hi"]);
    assert_eq!(r.spec.env, ["A=1"]);

    let Command::Run(r) = parse(&["run", "-d", "busybox", "--", "ls", "-l", "--rm"])
        .command
        .0
    else {
        panic!("not run")
    };
    assert!(r.detach && !r.rm);
    assert_eq!(r.spec.command(), ["ls", "-l", "--rm"]);

    // Flags after the image belong to the command, as with docker.
    let Command::Run(r) = parse(&["run", "busybox", "--name", "x"]).command.0 else {
        panic!("not run")
    };
    assert_eq!(r.spec.name, None);
    assert_eq!(r.spec.command(), ["--name", "x"]);
    assert!(fails(&["run"]));
    // A mistyped flag before the image is an error, not an image name.
    assert!(fails(&["run", "--nmae", "x", "busybox"]));
    let Command::Run(r) = parse(&["run", "--", "busybox", "ls"]).command.0 else {
        panic!("not run")
    };
    assert_eq!(
        (r.spec.image(), r.spec.command()),
        ("busybox", ["ls".to_string()].as_slice())
    );
}

#[test]
fn run_resource_flags() {
    let Command::Run(r) = parse(&[
        "run",
        "--memory",
        "64m",
        "--memory-swap",
        "-1",
        "--cpus",
        "0.5",
        "--pids-limit",
        "-1",
        "--stop-signal",
        "term",
        "busybox",
    ])
    .command
    .0
    else {
        panic!("not run")
    };
    assert_eq!(r.spec.memory, Some(64 << 20));
    assert_eq!(r.spec.memory_swap, Some(-1));
    assert_eq!(r.spec.cpus, Some(500_000_000));
    assert_eq!(r.spec.pids_limit, Some(-1));
    assert_eq!(r.spec.stop_signal.as_deref(), Some("SIGTERM"));
    assert!(fails(&["run", "--memory", "lots", "busybox"]));
    assert!(fails(&["run", "--cpus", "x", "busybox"]));
    assert!(fails(&["run", "--stop-signal", "SIGNOPE", "busybox"]));
}

#[test]
fn other_commands() {
    let Command::Stop(s) = parse(&["stop", "-t", "3", "a", "b"]).command.0 else {
        panic!()
    };
    assert_eq!(
        (s.time, s.ids.as_slice()),
        (Some(3), ["a".to_string(), "b".into()].as_slice())
    );
    let Command::Kill(k) = parse(&["kill", "a"]).command.0 else {
        panic!()
    };
    assert_eq!(k.signal, "SIGKILL");
    let Command::Kill(k) = parse(&["kill", "-s", "hup", "a"]).command.0 else {
        panic!()
    };
    assert_eq!(k.signal, "SIGHUP");
    assert!(fails(&["rm"]));
    assert!(fails(&["kill", "-s", "NOPE", "a"]));
    let Command::Logs(l) = parse(&["logs", "-f", "--tail", "5", "-t", "--since", "10m", "web"])
        .command
        .0
    else {
        panic!()
    };
    assert!(l.follow && l.timestamps);
    assert_eq!(
        (l.tail.as_deref(), l.since.as_deref(), l.id.as_str()),
        (Some("5"), Some("10m"), "web")
    );
    assert!(matches!(
        parse(&["images"]).command.0,
        Command::Images(ImageLsArgs { quiet: false, .. })
    ));
    assert!(matches!(
        parse(&["image", "ls", "-q", "--no-trunc"]).command.0,
        Command::Image(ImageCommand::Ls(ImageLsArgs {
            quiet: true,
            no_trunc: true,
            format: None
        }))
    ));
    assert!(matches!(
        parse(&["restart", "-t", "3", "a", "b"]).command.0,
        Command::Restart(StopArgs { time: Some(3), .. })
    ));
    let Command::Image(ImageCommand::Import(i)) =
        parse(&["image", "import", "-", "--reference", "x:y"])
            .command
            .0
    else {
        panic!()
    };
    assert_eq!(
        (i.file.as_str(), i.reference.as_deref()),
        ("-", Some("x:y"))
    );
}

#[test]
fn save_takes_dockers_dash_o_as_the_archive_file() {
    for line in [
        &["save", "-o", "a.tar", "app"][..],
        &["image", "save", "--output", "a.tar", "app"],
        &["save", "--output=a.tar", "app"],
        &["save", "-oa.tar", "app"],
        &["-o", "json", "image", "save", "-o", "a.tar", "app"],
    ] {
        let cli = parse(line);
        match cli.command.0 {
            Command::Save(a) | Command::Image(ImageCommand::Save(a)) => {
                assert_eq!(a.file, Some(PathBuf::from("a.tar")), "{line:?}");
                assert_eq!(a.images, ["app"], "{line:?}");
                assert_eq!(a.format, SaveFormatArg::Docker);
            }
            other => panic!("{line:?}: {other:?}"),
        }
    }
    // Elsewhere -o is still the output format; after `--` nothing changes.
    assert_eq!(
        parse(&["-o", "json", "save", "app"]).output,
        OutputFormat::Json
    );
    assert_eq!(parse(&["ps", "-o", "json"]).output, OutputFormat::Json);
    assert!(matches!(
        parse(&["save", "--format", "oci", "app"]).command.0,
        Command::Save(ImageSaveArgs {
            format: SaveFormatArg::Oci,
            ..
        })
    ));
}
