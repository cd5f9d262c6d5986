//! Honest errors for Docker habits berthctl does not have yet.
//!
//! clap answers an unknown subcommand or option with a tip about the
//! closest one it knows (`top` -> "similar subcommands: 'top-hosts',
//! 'stop'"; `-it` -> "to pass '-i' as a value, use '-- -i'"), which sends a
//! Docker user the wrong way. When clap refuses a name that Docker users
//! type, berthctl says plainly that it is not supported yet. Only names clap
//! refused are looked up here, so a command or option added later simply
//! stops matching. The lists name only what is not built
//! (a command or option that lands simply stops matching).

use clap::error::{ContextKind, ContextValue, ErrorKind};

/// Docker subcommands (of `docker`, `docker container` or `docker image`)
/// berthctl does not have, and what they do.
const COMMANDS: &[(&str, &str)] = &[
    ("commit", "making an image from a container"),
    ("compose", "compose files"),
    ("diff", "listing a container's changed files"),
    ("export", "exporting a container's filesystem"),
    ("load", "loading images (use `berthctl image import FILE`)"),
];

/// Options of `docker run` and `docker create` berthctl does not have, and
/// what they do (`run` has -a; `create` refuses it).
const RUN_OPTIONS: &[(&[&str], &str)] = &[(
    &["-a", "--attach"],
    "choosing the streams of a created container (create -a): `start -a` shows stdout and \
     stderr, `start -ai` stdin too; `run -a` chooses",
)];

/// Docker options of any command berthctl does not have.
const OPTIONS: &[(&[&str], &str)] = &[(
    &["--format"],
    "--format templates on this command (use `-o json`; ps, images, inspect and image inspect take --format)",
)];

/// The "not supported yet" message for a command line clap refused, when
/// it refused something Docker has; `subcommand` is the one the line names.
pub fn explain(e: &clap::Error, subcommand: Option<&str>) -> Option<String> {
    match e.kind() {
        ErrorKind::InvalidSubcommand => {
            let word = context_string(e, ContextKind::InvalidSubcommand)?;
            let (_, what) = COMMANDS.iter().find(|(name, _)| *name == word)?;
            Some(format!("not supported yet: {what} (`{word}`)"))
        }
        ErrorKind::UnknownArgument => {
            let arg = context_string(e, ContextKind::InvalidArg)?;
            let name = arg.split('=').next().unwrap_or(&arg);
            let run = matches!(subcommand, Some("run" | "create"));
            let (_, what) = OPTIONS
                .iter()
                .chain(RUN_OPTIONS.iter().filter(|_| run))
                .find(|(names, _)| names.contains(&name))?;
            Some(format!("not supported yet: {what}"))
        }
        _ => None,
    }
}

fn context_string(e: &clap::Error, kind: ContextKind) -> Option<String> {
    match e.get(kind)? {
        ContextValue::String(s) => Some(s.clone()),
        _ => None,
    }
}
