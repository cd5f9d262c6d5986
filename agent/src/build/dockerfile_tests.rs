use super::*;

fn ok(text: &str) -> BuildFile {
    match parse(text) {
        Ok(file) => file,
        Err(e) => panic!("{e}"),
    }
}

fn fail(text: &str) -> ParseError {
    match parse(text) {
        Ok(file) => panic!("parsed: {file:?}"),
        Err(e) => e,
    }
}

/// The ops of the first stage.
fn ops(text: &str) -> Vec<Op> {
    ok(text)
        .stages
        .remove(0)
        .steps
        .into_iter()
        .map(|s| s.op)
        .collect()
}

fn one_op(text: &str) -> Op {
    let mut ops = ops(text);
    assert_eq!(ops.len(), 1, "{ops:?}");
    ops.remove(0)
}

fn s(v: &str) -> String {
    v.to_string()
}

fn pair(k: &str, v: &str) -> (String, String) {
    (s(k), s(v))
}

#[test]
fn every_instruction() {
    let text = "\
ARG BASE=alpine:3.19
FROM --platform=linux/amd64 ${BASE} AS Build
RUN echo hi
COPY --from=build --chown=1:2 --chmod=644 --link a b /dst/
ADD https://example.com/x.tar /x
ENV a=b
ARG v=1
LABEL k=v
WORKDIR /app
USER 1000:1000
STOPSIGNAL SIGTERM
EXPOSE 80/tcp 443
VOLUME /data
CMD [\"run\"]
ENTRYPOINT [\"/bin/app\"]
SHELL [\"/bin/bash\", \"-c\"]
HEALTHCHECK NONE
ONBUILD RUN make
MAINTAINER someone
";
    let file = ok(text);
    assert_eq!(file.escape, '\\');
    assert_eq!(
        file.global_args,
        [ArgDecl {
            name: s("BASE"),
            default: Some(s("alpine:3.19"))
        }]
    );
    let stage = &file.stages[0];
    assert_eq!(stage.name.as_deref(), Some("build"));
    assert_eq!(stage.base, "${BASE}");
    assert_eq!(stage.platform.as_deref(), Some("linux/amd64"));
    assert_eq!(stage.line, 2);
    let ops: Vec<&Op> = stage.steps.iter().map(|s| &s.op).collect();
    assert_eq!(ops.len(), 17);
    assert!(matches!(ops[0], Op::Run { command: Command::Shell(c), .. } if c == "echo hi"));
    assert_eq!(
        ops[1],
        &Op::Copy(CopySpec {
            sources: vec![s("a"), s("b")],
            dest: s("/dst/"),
            from: Some(s("build")),
            chown: Some(s("1:2")),
            chmod: Some(s("644")),
            link: true,
            heredocs: vec![],
        })
    );
    assert!(matches!(ops[2], Op::Add(spec) if spec.sources == [s("https://example.com/x.tar")]));
    assert_eq!(ops[3], &Op::Env(vec![pair("a", "b")]));
    assert_eq!(
        ops[4],
        &Op::Arg(vec![ArgDecl {
            name: s("v"),
            default: Some(s("1"))
        }])
    );
    assert_eq!(ops[5], &Op::Label(vec![pair("k", "v")]));
    assert_eq!(ops[6], &Op::Workdir(s("/app")));
    assert_eq!(ops[7], &Op::User(s("1000:1000")));
    assert_eq!(ops[8], &Op::StopSignal(s("SIGTERM")));
    assert_eq!(ops[9], &Op::Expose(vec![s("80/tcp"), s("443")]));
    assert_eq!(ops[10], &Op::Volume(vec![s("/data")]));
    assert_eq!(ops[11], &Op::Cmd(Command::Exec(vec![s("run")])));
    assert_eq!(ops[12], &Op::Entrypoint(Command::Exec(vec![s("/bin/app")])));
    assert_eq!(ops[13], &Op::Shell(vec![s("/bin/bash"), s("-c")]));
    assert_eq!(ops[14], &Op::Healthcheck(Healthcheck::None));
    assert_eq!(ops[15], &Op::Onbuild(s("RUN make")));
    assert_eq!(ops[16], &Op::Maintainer(s("someone")));
    let lines: Vec<usize> = stage.steps.iter().map(|s| s.line).collect();
    assert_eq!(lines, (3..=19).collect::<Vec<_>>());
    assert_eq!(
        stage.steps[1].text,
        "COPY --from=build --chown=1:2 --chmod=644 --link a b /dst/"
    );
}

#[test]
fn line_continuations_with_comments_inside() {
    let text = "FROM x\nRUN echo hi \\\n  # a comment\n\n  && echo \"there\" \\\n  bye\nUSER me\n";
    let file = ok(text);
    let steps = &file.stages[0].steps;
    assert_eq!(
        steps[0].op,
        Op::Run {
            command: Command::Shell(s("echo hi   && echo \"there\"   bye")),
            heredocs: vec![],
            mounts: vec![],
            network: None,
            security: None,
        }
    );
    assert_eq!(steps[0].text, "RUN echo hi && echo \"there\" bye");
    assert_eq!(steps[0].line, 2);
    assert_eq!(steps[1].line, 7);
}

#[test]
fn backtick_escape_directive() {
    let text = "# escape=`\nFROM windows\nRUN dir C:\\ `\n  /w\nWORKDIR C:\\app\n";
    let file = ok(text);
    assert_eq!(file.escape, '`');
    let ops: Vec<&Op> = file.stages[0].steps.iter().map(|s| &s.op).collect();
    assert!(matches!(ops[0], Op::Run { command: Command::Shell(c), .. } if c == "dir C:\\   /w"));
    assert_eq!(ops[1], &Op::Workdir(s("C:\\app")));
}

#[test]
fn comments_and_blank_lines_are_ignored() {
    let text = "# a comment\n\n   # indented comment\nFROM x\n\n# between\nUSER a\n";
    let file = ok(text);
    assert_eq!(file.stages[0].line, 4);
    assert_eq!(file.stages[0].steps[0].line, 7);
}

#[test]
fn exec_form_versus_shell_form() {
    assert_eq!(
        one_op("FROM x\nCMD [\"echo\", \"a\\\"b\", \"c\"]\n"),
        Op::Cmd(Command::Exec(vec![s("echo"), s("a\"b"), s("c")]))
    );
    assert_eq!(
        one_op("FROM x\nCMD echo [a]\n"),
        Op::Cmd(Command::Shell(s("echo [a]")))
    );
    // Not valid JSON, so shell form, as Docker does.
    assert_eq!(
        one_op("FROM x\nENTRYPOINT [\"a\", b]\n"),
        Op::Entrypoint(Command::Shell(s("[\"a\", b]")))
    );
    assert!(matches!(
        one_op("FROM x\nRUN [\"sh\", \"-c\", \"true\"]\n"),
        Op::Run { command: Command::Exec(args), .. } if args.len() == 3
    ));
}

#[test]
fn env_both_forms() {
    let op = one_op("FROM x\nENV a=b c=\"d e\" \\\n    f='g h' i=j\\ k\n");
    assert_eq!(
        op,
        Op::Env(vec![
            pair("a", "b"),
            pair("c", "\"d e\""),
            pair("f", "'g h'"),
            pair("i", "j\\ k")
        ])
    );
    assert_eq!(
        one_op("FROM x\nENV key value with spaces\n"),
        Op::Env(vec![pair("key", "value with spaces")])
    );
    assert!(fail("FROM x\nENV lonely\n")
        .message
        .contains("ENV must have two arguments"));
    assert!(fail("FROM x\nENV a=1 b\n").message.contains("can't find ="));
    assert!(fail("FROM x\nENV =1\n").message.contains("blank"));
}

#[test]
fn label_with_quotes() {
    let op = one_op("FROM x\nLABEL \"com.example.v\"=\"v 1\" other=x\\\"y\n");
    assert_eq!(
        op,
        Op::Label(vec![
            pair("\"com.example.v\"", "\"v 1\""),
            pair("other", "x\\\"y")
        ])
    );
    let Op::Label(pairs) = op else { unreachable!() };
    let plain = |raw: &str| crate::build::expand::expand(raw, '\\', &|_| None).unwrap();
    assert_eq!(plain(&pairs[0].0), "com.example.v");
    assert_eq!(plain(&pairs[0].1), "v 1");
    assert_eq!(plain(&pairs[1].1), "x\"y");
}

#[test]
fn arg_declares_several() {
    assert_eq!(
        one_op("FROM x\nARG a b=1 c=\"q r\"\n"),
        Op::Arg(vec![
            ArgDecl {
                name: s("a"),
                default: None
            },
            ArgDecl {
                name: s("b"),
                default: Some(s("1"))
            },
            ArgDecl {
                name: s("c"),
                default: Some(s("\"q r\""))
            },
        ])
    );
}

#[test]
fn multi_stage_with_as() {
    let text =
        "FROM golang AS Builder\nRUN go build\nFROM scratch as final\nCOPY --from=builder /out /\n";
    let file = ok(text);
    assert_eq!(file.stages.len(), 2);
    assert_eq!(file.stages[0].name.as_deref(), Some("builder"));
    assert_eq!(file.stages[1].name.as_deref(), Some("final"));
    assert_eq!(file.stages[1].index, 1);
    assert_eq!(file.stages[1].base, "scratch");
    assert_eq!(file.stages[1].line, 3);
    assert!(
        matches!(&file.stages[1].steps[0].op, Op::Copy(c) if c.from.as_deref() == Some("builder"))
    );
}

#[test]
fn heredoc_run() {
    let op = one_op("FROM x\nRUN <<EOF\necho 1\necho 2\nEOF\n");
    assert_eq!(
        op,
        Op::Run {
            command: Command::Shell(s("<<EOF")),
            heredocs: vec![HereDoc {
                name: s("EOF"),
                expand: true,
                body: s("echo 1\necho 2\n")
            }],
            mounts: vec![],
            network: None,
            security: None,
        }
    );
    let file = ok("FROM x\nRUN <<'END' bash\necho $HOME\nEND\nUSER me\n");
    let steps = &file.stages[0].steps;
    assert!(
        matches!(&steps[0].op, Op::Run { command: Command::Shell(c), heredocs, .. }
        if c == "<<'END' bash" && heredocs[0].name == "END" && !heredocs[0].expand)
    );
    assert_eq!(steps[0].text, "RUN <<'END' bash");
    assert_eq!(steps[1].line, 5);
}

#[test]
fn heredoc_copy() {
    let op = one_op("FROM x\nCOPY <<EOT /file\nhello $x\nEOT\n");
    let Op::Copy(spec) = op else { panic!("{op:?}") };
    assert!(spec.sources.is_empty());
    assert_eq!(spec.dest, "/file");
    assert_eq!(
        spec.heredocs,
        [HereDoc {
            name: s("EOT"),
            expand: true,
            body: s("hello $x\n")
        }]
    );
}

#[test]
fn heredoc_later_in_run_is_explained() {
    let e = fail("FROM x\nRUN cat <<EOF > /f\nhello world\nEOF\n");
    assert!(e.message.contains("here-document"), "{e}");
}

#[test]
fn run_flags_kept_raw() {
    let op = one_op(
        "FROM x\nRUN --mount=type=cache,target=/c --mount=type=tmpfs,target=/t --network=none --security=insecure make\n",
    );
    assert_eq!(
        op,
        Op::Run {
            command: Command::Shell(s("make")),
            heredocs: vec![],
            mounts: vec![s("type=cache,target=/c"), s("type=tmpfs,target=/t")],
            network: Some(s("none")),
            security: Some(s("insecure")),
        }
    );
}

#[test]
fn unknown_flags_are_errors_naming_the_flag() {
    let e = fail("FROM --bogus=1 x\n");
    assert_eq!((e.line, e.column), (1, 6));
    assert!(e.message.contains("--bogus"), "{e}");
    assert!(fail("FROM x\nRUN --privileged true\n")
        .message
        .contains("--privileged"));
    assert!(fail("FROM x\nCOPY --owner=1 a b\n")
        .message
        .contains("--owner"));
    assert!(fail("FROM x\nADD --from=y a b\n")
        .message
        .contains("unknown flag --from for ADD"));
    assert!(fail("FROM x\nCOPY --exclude=*.o a b\n")
        .message
        .contains("not supported yet"));
    assert!(fail("FROM x\nHEALTHCHECK --every=1s CMD true\n")
        .message
        .contains("--every"));
}

#[test]
fn flag_values_are_checked() {
    assert!(fail("FROM x\nCOPY --from a b\n")
        .message
        .contains("needs a value"));
    assert!(fail("FROM x\nCOPY --from=a --from=b a b\n")
        .message
        .contains("more than once"));
    assert!(fail("FROM x\nCOPY --link=maybe a b\n")
        .message
        .contains("true or false"));
    assert!(matches!(one_op("FROM x\nCOPY --link=false a b\n"), Op::Copy(c) if !c.link));
}

#[test]
fn healthcheck_options() {
    let op = one_op(
        "FROM x\nHEALTHCHECK --interval=1m30s --timeout=500ms --start-period=1.5s --start-interval=2s --retries=3 CMD curl -f http://x/ || exit 1\n",
    );
    assert_eq!(
        op,
        Op::Healthcheck(Healthcheck::Cmd {
            test: Command::Shell(s("curl -f http://x/ || exit 1")),
            interval_ns: Some(90_000_000_000),
            timeout_ns: Some(500_000_000),
            start_period_ns: Some(1_500_000_000),
            start_interval_ns: Some(2_000_000_000),
            retries: Some(3),
        })
    );
    assert!(matches!(
        one_op("FROM x\nHEALTHCHECK CMD [\"true\"]\n"),
        Op::Healthcheck(Healthcheck::Cmd {
            test: Command::Exec(_),
            interval_ns: None,
            ..
        })
    ));
    assert!(fail("FROM x\nHEALTHCHECK --interval=5 CMD true\n")
        .message
        .contains("invalid duration"));
    assert!(fail("FROM x\nHEALTHCHECK --interval=10us CMD true\n")
        .message
        .contains("1ms"));
    assert!(fail("FROM x\nHEALTHCHECK --retries=-1 CMD true\n")
        .message
        .contains("--retries"));
    assert!(fail("FROM x\nHEALTHCHECK --interval=1s NONE\n")
        .message
        .contains("no options"));
}

#[test]
fn durations() {
    assert_eq!(parse_duration("0"), Some(0));
    assert_eq!(parse_duration("1h2m3s"), Some(3_723_000_000_000));
    assert_eq!(parse_duration("1ms"), Some(1_000_000));
    assert_eq!(parse_duration(".5s"), Some(500_000_000));
    assert_eq!(parse_duration("1500us"), Some(1_500_000));
    assert_eq!(parse_duration("s"), None);
    assert_eq!(parse_duration("1d"), None);
    assert_eq!(parse_duration("-1s"), None);
    assert_eq!(parse_duration("99999999999h"), None);
}

#[test]
fn volume_json_and_words() {
    assert_eq!(
        one_op("FROM x\nVOLUME [\"/a\", \"/b\"]\n"),
        Op::Volume(vec![s("/a"), s("/b")])
    );
    assert_eq!(
        one_op("FROM x\nVOLUME /c /d\n"),
        Op::Volume(vec![s("/c"), s("/d")])
    );
}

#[test]
fn copy_json_form() {
    let op = one_op("FROM x\nCOPY [\"a b\", \"/y z/\"]\n");
    assert!(matches!(op, Op::Copy(c) if c.sources == [s("a b")] && c.dest == "/y z/"));
}

#[test]
fn onbuild_rules() {
    assert_eq!(
        one_op("FROM x\nONBUILD COPY \\\n  a /b\n"),
        Op::Onbuild(s("COPY   a /b"))
    );
    assert!(fail("FROM x\nONBUILD FROM y\n")
        .message
        .contains("not allowed"));
    assert!(fail("FROM x\nONBUILD ONBUILD RUN a\n")
        .message
        .contains("not allowed"));
}

#[test]
fn input_size_limit() {
    let big = format!("FROM x\n{}", "#".repeat(MAX_INPUT));
    assert!(fail(&big).message.contains("larger than"));
}

#[test]
fn instruction_limit() {
    let mut text = String::from("FROM x\n");
    text.push_str(&"USER a\n".repeat(MAX_INSTRUCTIONS - 1));
    assert_eq!(ok(&text).stages[0].steps.len(), MAX_INSTRUCTIONS - 1);
    text.push_str("USER b\n");
    let e = fail(&text);
    assert!(e.message.contains("more than 1000 instructions"), "{e}");
    assert_eq!((e.line, e.column), (MAX_INSTRUCTIONS + 1, 1));
}

#[test]
fn stage_limit() {
    let text = "FROM x\n".repeat(MAX_STAGES);
    assert_eq!(ok(&text).stages.len(), MAX_STAGES);
    let e = fail(&"FROM x\n".repeat(MAX_STAGES + 1));
    assert!(e.message.contains("more than 100 stages"), "{e}");
    assert_eq!(e.line, MAX_STAGES + 1);
}

#[test]
fn only_arg_before_first_from() {
    let file = ok("ARG A=1 B\nARG C\nFROM x\n");
    assert_eq!(file.global_args.len(), 3);
    let e = fail("ARG A\nRUN true\nFROM x\n");
    assert_eq!((e.line, e.column), (2, 1));
    assert!(e.message.contains("only ARG"), "{e}");
}

#[test]
fn duplicate_stage_names() {
    let e = fail("FROM a AS one\nFROM b AS One\n");
    assert_eq!((e.line, e.column), (2, 11));
    assert!(e.message.contains("duplicate stage name 'one'"), "{e}");
    assert!(fail("FROM a AS one\nFROM b AS one\n")
        .message
        .contains("duplicate"));
}

#[test]
fn stage_name_syntax() {
    assert_eq!(
        ok("FROM a AS b-1_2.c\n").stages[0].name.as_deref(),
        Some("b-1_2.c")
    );
    for bad in ["1abc", "a/b", "-a", "a$b", "é"] {
        let e = fail(&format!("FROM a AS {bad}\n"));
        assert!(e.message.contains("invalid stage name"), "{bad}: {e}");
    }
}

#[test]
fn empty_or_no_from_is_an_error() {
    assert_eq!(fail("").message, "no FROM instruction");
    assert_eq!(fail("# only a comment\n\n").message, "no FROM instruction");
    assert_eq!(fail("ARG A=1\n").message, "no FROM instruction");
}

#[test]
fn errors_have_line_and_char_column() {
    let e = fail("FROM x\nRUN --mount=a\nLABEL é=1\nFROBNICATE\n");
    assert_eq!((e.line, e.column), (4, 1));
    assert!(e.message.contains("unknown instruction"), "{e}");
    let e = fail("FROM x\n# é\nUSER a\n  COPY --from=é --bad a b\n");
    assert_eq!((e.line, e.column), (4, 17));
    assert_eq!(
        e.to_string(),
        "Dockerfile:4:17: unknown flag --bad for COPY"
    );
    let e = fail("FROM é AS Ünïcode\n");
    assert_eq!((e.line, e.column), (1, 11));
}

#[test]
fn crate_errors_map_position_to_chars() {
    // The crate reports the byte column; berth reports chars.
    let e = fail("FROM x\nFROM é AS x y\n");
    assert_eq!((e.line, e.column), (2, 13), "{e}");
}

#[test]
fn errors_do_not_echo_long_input() {
    let e = fail(&format!("FROM x\n{} a\n", "Q".repeat(5000)));
    assert!(e.message.len() < 200, "{}", e.message.len());
    let e = fail(&format!("FROM x AS {}/\n", "Z".repeat(5000)));
    assert!(e.message.len() < 200, "{}", e.message.len());
}

#[test]
fn step_text_is_capped_and_canonical_is_not() {
    let long = "a".repeat(500);
    let file = ok(&format!("FROM x\nRUN echo {long}\n"));
    let step = &file.stages[0].steps[0];
    assert_eq!(step.text.chars().count(), 200);
    assert!(step.canonical().contains(&long));
    let other = ok(&format!("FROM x\nRUN echo {long}b\n"));
    assert_ne!(step.canonical(), other.stages[0].steps[0].canonical());
}

#[test]
fn bom_is_ignored() {
    let file = ok("\u{feff}FROM x\nUSER a\n");
    assert_eq!(file.stages[0].steps[0].line, 2);
}
