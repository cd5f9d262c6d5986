//! `completion` and `man`: shell completions and man pages, generated from
//! the command line's own definition (clap_complete, clap_mangen) so they
//! never drift from what berthctl accepts. Made locally: no agent.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;

use crate::cli::{Cli, CompletionArgs, CompletionShell, ManArgs};
use crate::error::{Error, Result};

/// The whole command tree, every deferred argument and propagated global
/// option built in.
fn full_command() -> clap::Command {
    let mut cmd = Cli::command();
    cmd.build();
    cmd
}

/// `completion SHELL`: the completion script on standard output.
pub fn completion(args: CompletionArgs) -> Result<()> {
    let shell = match args.shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut cmd = full_command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "berthctl", &mut script);
    std::io::stdout()
        .write_all(&script)
        .map_err(|e| Error::Message(format!("cannot write the completion script: {e}")))
}

/// `man --dir DIR`: `berthctl.1` and one page per command
/// (`berthctl-run.1`, `berthctl-image-import.1`, ...) in DIR, which is
/// made if missing; prints the paths written.
pub fn man(args: ManArgs) -> Result<()> {
    let dir = &args.dir;
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Message(format!("cannot make {}: {e}", dir.display())))?;
    let root = full_command();
    write_pages(&root, &["berthctl".to_string()], dir)
}

/// Writes the page of `cmd`, typed as `words` (`berthctl image import`,
/// file `berthctl-image-import.1`), and those of its subcommands.
fn write_pages(cmd: &clap::Command, words: &[String], dir: &Path) -> Result<()> {
    let name = words.join("-");
    let page = cmd.clone().bin_name(words.join(" "));
    let mut text = Vec::new();
    clap_mangen::Man::new(page)
        .title(name.to_uppercase())
        .render(&mut text)
        .map_err(|e| Error::Message(format!("cannot render the {name} man page: {e}")))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, text)
        .map_err(|e| Error::Message(format!("cannot write {}: {e}", path.display())))?;
    writeln!(std::io::stdout(), "{}", path.display())
        .map_err(|e| Error::Message(format!("cannot print the pages written: {e}")))?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let mut words = words.to_vec();
        words.push(sub.get_name().to_string());
        write_pages(sub, &words, dir)?;
    }
    Ok(())
}
