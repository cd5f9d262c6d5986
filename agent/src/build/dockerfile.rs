//! The Dockerfile front end of `berthctl build`: turns Dockerfile text into
//! berth's typed build plan ([`BuildFile`]).
//!
//! The `parse-dockerfile` crate does the syntax (continuations, the escape
//! directive, comments, JSON vs shell forms, flags, here-documents); this
//! module maps its tree to berth's own types, so the rest of berth never sees
//! the crate, and enforces berth's limits and Docker's semantic rules.
//! Word values stay raw (quotes, escapes and `$VAR`s as written): the builder
//! expands them with [`super::expand::expand`] at the point where the ARG/ENV
//! state is known, which is also when Docker removes the quotes.

use parse_dockerfile as pd;

use super::expand::{split_pairs, split_words, truncate_for_message};

#[path = "dockerfile_plan.rs"]
mod plan;
#[path = "dockerfile_text.rs"]
mod text;

pub use plan::*;
use text::{
    collapse, crate_error, header_end, here_doc, heredoc_names, join_lines, keyword_start,
    line_column, parse_duration, strings,
};

/// Largest Dockerfile accepted, in bytes.
pub const MAX_INPUT: usize = 1 << 20;
/// Most instructions (FROM and global ARGs included) in one Dockerfile.
pub const MAX_INSTRUCTIONS: usize = 1000;
/// Most stages (FROM instructions) in one Dockerfile.
pub const MAX_STAGES: usize = 100;
/// Longest [`Step::text`], in chars.
const MAX_STEP_TEXT: usize = 200;

/// Parses Dockerfile `text` into berth's build plan, enforcing berth's limits
/// (size, instruction and stage counts) and Docker's semantic rules.
pub fn parse(text: &str) -> Result<BuildFile, ParseError> {
    if text.len() > MAX_INPUT {
        let message = format!("Dockerfile is larger than {MAX_INPUT} bytes");
        return Err(ParseError {
            line: 1,
            column: 1,
            message,
        });
    }
    // Stripped here too so the crate's byte offsets index this very string.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let file = pd::parse(text).map_err(|e| crate_error(text, &e))?;
    let escape = file
        .parser_directives
        .escape
        .as_ref()
        .map_or('\\', |d| d.value.value);
    let cx = Context { text, escape };
    if let Some(extra) = file.instructions.get(MAX_INSTRUCTIONS) {
        let message = format!("more than {MAX_INSTRUCTIONS} instructions");
        return Err(cx.error_at(keyword_start(extra), message));
    }
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for instruction in &file.instructions {
        if let pd::Instruction::From(from) = instruction {
            if stages.len() == MAX_STAGES {
                let message = format!("more than {MAX_STAGES} stages");
                return Err(cx.error_at(from.from.span.start, message));
            }
            let stage = cx.stage(from, stages.len())?;
            cx.check_unique_name(&stages, &stage, from)?;
            stages.push(stage);
        } else if let Some(stage) = stages.last_mut() {
            stage.steps.push(cx.step(instruction)?);
        } else if let pd::Instruction::Arg(arg) = instruction {
            global_args.extend(cx.arg_decls(arg)?);
        } else {
            let message = "only ARG may come before the first FROM";
            return Err(cx.error_at(keyword_start(instruction), message));
        }
    }
    if stages.is_empty() {
        let message = "no FROM instruction".to_string();
        return Err(ParseError {
            line: 1,
            column: 1,
            message,
        });
    }
    Ok(BuildFile {
        escape,
        global_args,
        stages,
    })
}

/// The source text and escape char, for positions and raw text.
struct Context<'t> {
    text: &'t str,
    escape: char,
}

impl Context<'_> {
    /// A [`ParseError`] at byte `offset` of the text.
    fn error_at(&self, offset: usize, message: impl Into<String>) -> ParseError {
        let (line, column) = line_column(self.text, offset);
        ParseError {
            line,
            column,
            message: message.into(),
        }
    }

    fn stage(&self, from: &pd::FromInstruction<'_>, index: usize) -> Result<Stage, ParseError> {
        let mut platform = None;
        for flag in &from.options {
            match flag.name.value.as_ref() {
                "platform" => self.set_once(&mut platform, flag)?,
                _ => return Err(self.unknown_flag(flag, "FROM")),
            }
        }
        let name = match &from.as_ {
            Some((_, name)) => Some(self.stage_name(name)?),
            None => None,
        };
        Ok(Stage {
            index,
            name,
            base: from.image.value.to_string(),
            platform,
            line: line_column(self.text, from.from.span.start).0,
            steps: Vec::new(),
        })
    }

    fn stage_name(&self, name: &pd::UnescapedString<'_>) -> Result<String, ParseError> {
        let lower = name.value.to_lowercase();
        let mut chars = lower.chars();
        let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
        if !valid {
            let message = format!(
                "invalid stage name '{}': must match [a-z][a-z0-9-_.]*",
                truncate_for_message(&name.value)
            );
            return Err(self.error_at(name.span.start, message));
        }
        Ok(lower)
    }

    fn check_unique_name(
        &self,
        stages: &[Stage],
        stage: &Stage,
        from: &pd::FromInstruction<'_>,
    ) -> Result<(), ParseError> {
        let (Some(name), Some((_, written))) = (&stage.name, &from.as_) else {
            return Ok(());
        };
        if let Some(first) = stages.iter().find(|s| s.name.as_ref() == Some(name)) {
            let message = format!(
                "duplicate stage name '{}' (first used on line {})",
                truncate_for_message(name),
                first.line
            );
            return Err(self.error_at(written.span.start, message));
        }
        Ok(())
    }

    fn step(&self, instruction: &pd::Instruction<'_>) -> Result<Step, ParseError> {
        let start = keyword_start(instruction);
        let header = &self.text[start..header_end(self.text, instruction)];
        let text = collapse(&join_lines(header, self.escape), MAX_STEP_TEXT);
        let line = line_column(self.text, start).0;
        Ok(Step {
            line,
            text,
            op: self.op(instruction, header)?,
        })
    }

    fn op(&self, instruction: &pd::Instruction<'_>, header: &str) -> Result<Op, ParseError> {
        use pd::Instruction as I;
        let start = keyword_start(instruction);
        Ok(match instruction {
            I::Run(run) => self.run(run, header)?,
            I::Copy(copy) => {
                Op::Copy(self.copy_spec("COPY", &copy.options, &copy.src, &copy.dest, header)?)
            }
            I::Add(add) => {
                Op::Add(self.copy_spec("ADD", &add.options, &add.src, &add.dest, header)?)
            }
            I::Env(env) => Op::Env(self.pairs("ENV", &env.arguments)?),
            I::Arg(arg) => Op::Arg(self.arg_decls(arg)?),
            I::Label(label) => Op::Label(self.pairs("LABEL", &label.arguments)?),
            I::Workdir(w) => Op::Workdir(w.arguments.value.to_string()),
            I::User(u) => Op::User(u.arguments.value.to_string()),
            I::Stopsignal(s) => Op::StopSignal(s.arguments.value.to_string()),
            I::Expose(e) => Op::Expose(e.arguments.iter().map(|w| w.value.to_string()).collect()),
            I::Volume(v) => Op::Volume(match &v.arguments {
                pd::JsonOrStringArray::Json(json) => strings(&json.value),
                pd::JsonOrStringArray::String(words) => strings(words),
            }),
            I::Cmd(cmd) => Op::Cmd(self.command(&cmd.arguments, start)?),
            I::Entrypoint(e) => Op::Entrypoint(self.command(&e.arguments, start)?),
            I::Shell(shell) => Op::Shell(strings(&shell.arguments)),
            I::Healthcheck(h) => Op::Healthcheck(self.healthcheck(h)?),
            I::Onbuild(onbuild) => self.onbuild(onbuild)?,
            I::Maintainer(m) => Op::Maintainer(m.name.value.to_string()),
            I::From(_) => return Err(self.error_at(start, "FROM cannot be a step")),
            _ => return Err(self.error_at(start, "not supported yet: this instruction")),
        })
    }

    fn run(&self, run: &pd::RunInstruction<'_>, header: &str) -> Result<Op, ParseError> {
        let (mut mounts, mut network, mut security) = (Vec::new(), None, None);
        for flag in &run.options {
            match flag.name.value.as_ref() {
                "mount" => mounts.push(self.flag_value(flag)?),
                "network" => self.set_once(&mut network, flag)?,
                "security" => self.set_once(&mut security, flag)?,
                _ => return Err(self.unknown_flag(flag, "RUN")),
            }
        }
        let names = heredoc_names(header);
        let heredocs = run
            .here_docs
            .iter()
            .enumerate()
            .map(|(i, doc)| here_doc(doc, &names, i));
        let heredocs: Vec<HereDoc> = heredocs.collect();
        let command = match &run.arguments {
            // The crate leaves the `<<EOF` word out of the command; put it back
            // so the builder sees the command as written.
            pd::Command::Shell(shell) if !heredocs.is_empty() => {
                let after_flags = run
                    .options
                    .last()
                    .map_or(run.run.span.end, |f| f.span().end);
                let line = &self.text[after_flags..shell.span.end];
                let from_marker = line.find("<<").map_or(line, |i| &line[i..]);
                Command::Shell(join_lines(from_marker, self.escape))
            }
            other => self.command(other, run.run.span.start)?,
        };
        Ok(Op::Run {
            command,
            heredocs,
            mounts,
            network,
            security,
        })
    }

    fn copy_spec(
        &self,
        keyword: &str,
        flags: &[pd::Flag<'_>],
        sources: &[pd::Source<'_>],
        dest: &pd::UnescapedString<'_>,
        header: &str,
    ) -> Result<CopySpec, ParseError> {
        let (mut from, mut chown, mut chmod, mut link) = (None, None, None, None);
        for flag in flags {
            match flag.name.value.as_ref() {
                "from" if keyword == "COPY" => self.set_once(&mut from, flag)?,
                "chown" => self.set_once(&mut chown, flag)?,
                "chmod" => self.set_once(&mut chmod, flag)?,
                "link" => self.set_bool_once(&mut link, flag)?,
                "parents" | "exclude" | "checksum" | "keep-git-dir" | "unpack" => {
                    let message = format!("not supported yet: {keyword} --{}", flag.name.value);
                    return Err(self.error_at(flag.span().start, message));
                }
                _ => return Err(self.unknown_flag(flag, keyword)),
            }
        }
        let names = heredoc_names(header);
        let mut spec = CopySpec {
            sources: Vec::new(),
            dest: dest.value.to_string(),
            from,
            chown,
            chmod,
            link: link.unwrap_or(false),
            heredocs: Vec::new(),
        };
        for source in sources {
            match source {
                pd::Source::Path(path) => spec.sources.push(path.value.to_string()),
                pd::Source::HereDoc(doc) => {
                    spec.heredocs
                        .push(here_doc(doc, &names, spec.heredocs.len()));
                }
                _ => {
                    let message = format!("not supported yet: this {keyword} source");
                    return Err(self.error_at(dest.span.start, message));
                }
            }
        }
        Ok(spec)
    }

    fn command(&self, command: &pd::Command<'_>, start: usize) -> Result<Command, ParseError> {
        match command {
            pd::Command::Exec(args) => Ok(Command::Exec(strings(&args.value))),
            pd::Command::Shell(shell) => Ok(Command::Shell(join_lines(shell.value, self.escape))),
            _ => Err(self.error_at(start, "not supported yet: this command form")),
        }
    }

    fn pairs(
        &self,
        keyword: &str,
        arguments: &pd::UnescapedString<'_>,
    ) -> Result<Vec<(String, String)>, ParseError> {
        let pairs = split_pairs(&arguments.value, self.escape)
            .map_err(|e| self.error_at(arguments.span.start, format!("{keyword} {e}")))?;
        if pairs.iter().any(|(key, _)| key.is_empty()) {
            let message = format!("{keyword} names can not be blank");
            return Err(self.error_at(arguments.span.start, message));
        }
        Ok(pairs)
    }

    fn arg_decls(&self, arg: &pd::ArgInstruction<'_>) -> Result<Vec<ArgDecl>, ParseError> {
        let mut decls = Vec::new();
        for word in split_words(&arg.arguments.value, self.escape) {
            let (name, default) = match word.split_once('=') {
                Some((name, default)) => (name.to_string(), Some(default.to_string())),
                None => (word, None),
            };
            if name.is_empty() {
                return Err(self.error_at(arg.arguments.span.start, "ARG names can not be blank"));
            }
            decls.push(ArgDecl { name, default });
        }
        Ok(decls)
    }

    fn onbuild(&self, onbuild: &pd::OnbuildInstruction<'_>) -> Result<Op, ParseError> {
        let inner = onbuild.instruction.as_ref();
        let start = keyword_start(inner);
        if let pd::Instruction::From(_) | pd::Instruction::Maintainer(_) = inner {
            let message = "ONBUILD FROM and ONBUILD MAINTAINER are not allowed";
            return Err(self.error_at(start, message));
        }
        let trigger = &self.text[start..header_end(self.text, inner)];
        Ok(Op::Onbuild(
            join_lines(trigger, self.escape).trim().to_string(),
        ))
    }

    fn healthcheck(&self, h: &pd::HealthcheckInstruction<'_>) -> Result<Healthcheck, ParseError> {
        let test = match &h.arguments {
            pd::HealthcheckArguments::Cmd { arguments, .. } => {
                self.command(arguments, h.healthcheck.span.start)?
            }
            _ => {
                if let Some(flag) = h.options.first() {
                    let message = "HEALTHCHECK NONE takes no options";
                    return Err(self.error_at(flag.span().start, message));
                }
                return Ok(Healthcheck::None);
            }
        };
        let (mut interval_ns, mut timeout_ns, mut start_period_ns) = (None, None, None);
        let (mut start_interval_ns, mut retries) = (None, None);
        for flag in &h.options {
            let slot = match flag.name.value.as_ref() {
                "interval" => &mut interval_ns,
                "timeout" => &mut timeout_ns,
                "start-period" => &mut start_period_ns,
                "start-interval" => &mut start_interval_ns,
                "retries" => {
                    let mut raw = None;
                    self.set_once(&mut raw, flag)?;
                    let value = raw.unwrap_or_default();
                    let parsed = value.parse::<u32>().map_err(|_| {
                        let shown = truncate_for_message(&value);
                        self.error_at(flag.span().start, format!("invalid --retries '{shown}'"))
                    })?;
                    retries = Some(parsed);
                    continue;
                }
                _ => return Err(self.unknown_flag(flag, "HEALTHCHECK")),
            };
            let mut raw = None;
            self.set_once(&mut raw, flag)?;
            if slot.is_some() {
                return Err(self.duplicate_flag(flag));
            }
            let value = raw.unwrap_or_default();
            *slot = Some(parse_duration(&value).ok_or_else(|| {
                let message = format!(
                    "invalid duration '{}' for --{} (like 30s, 1m30s; at least 1ms)",
                    truncate_for_message(&value),
                    flag.name.value
                );
                self.error_at(flag.span().start, message)
            })?);
        }
        Ok(Healthcheck::Cmd {
            test,
            interval_ns,
            timeout_ns,
            start_period_ns,
            start_interval_ns,
            retries,
        })
    }

    fn flag_value(&self, flag: &pd::Flag<'_>) -> Result<String, ParseError> {
        match &flag.value {
            Some(value) if !value.value.is_empty() => Ok(value.value.to_string()),
            _ => {
                let name = truncate_for_message(&flag.name.value);
                Err(self.error_at(flag.span().start, format!("flag --{name} needs a value")))
            }
        }
    }

    fn set_once(&self, slot: &mut Option<String>, flag: &pd::Flag<'_>) -> Result<(), ParseError> {
        if slot.is_some() {
            return Err(self.duplicate_flag(flag));
        }
        *slot = Some(self.flag_value(flag)?);
        Ok(())
    }

    fn set_bool_once(
        &self,
        slot: &mut Option<bool>,
        flag: &pd::Flag<'_>,
    ) -> Result<(), ParseError> {
        if slot.is_some() {
            return Err(self.duplicate_flag(flag));
        }
        *slot = Some(match flag.value.as_ref().map(|v| v.value.as_ref()) {
            None | Some("true") => true,
            Some("false") => false,
            Some(_) => {
                let message = format!("flag --{} takes true or false", flag.name.value);
                return Err(self.error_at(flag.span().start, message));
            }
        });
        Ok(())
    }

    fn duplicate_flag(&self, flag: &pd::Flag<'_>) -> ParseError {
        let name = truncate_for_message(&flag.name.value);
        self.error_at(
            flag.span().start,
            format!("flag --{name} given more than once"),
        )
    }

    fn unknown_flag(&self, flag: &pd::Flag<'_>, keyword: &str) -> ParseError {
        let name = truncate_for_message(&flag.name.value);
        self.error_at(
            flag.span().start,
            format!("unknown flag --{name} for {keyword}"),
        )
    }
}

#[cfg(test)]
#[path = "dockerfile_tests.rs"]
mod tests;
