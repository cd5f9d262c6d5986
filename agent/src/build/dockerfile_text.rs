//! Source-text helpers for the Dockerfile front end: positions, the
//! instruction text as written, here-document names and durations.

use parse_dockerfile as pd;

use super::{truncate_for_message, HereDoc, ParseError};

/// Maps the crate's error (1-based line, byte column) to a [`ParseError`]
/// with a char column and a bounded message.
pub(super) fn crate_error(text: &str, error: &pd::Error) -> ParseError {
    let mut message = truncate_for_message(&format!("{error:#}"));
    if message == "expected FROM" {
        message = "only ARG may come before the first FROM".to_string();
    } else if message == "expected at least one FROM instruction" {
        message = "no FROM instruction".to_string();
    } else if message.starts_with("unknown instruction") && text.contains("<<") {
        message.push_str(
            " (not supported yet: a RUN here-document must come first and alone, as in `RUN <<EOF`)",
        );
    }
    let line = error.line().max(1);
    let line_start = text
        .split_inclusive('\n')
        .take(line - 1)
        .map(str::len)
        .sum::<usize>();
    let offset = line_start + error.column().saturating_sub(1);
    let (line, column) = line_column(text, offset);
    ParseError {
        line,
        column,
        message,
    }
}

/// 1-based line and char column of byte `offset` in `text`.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

pub(super) fn keyword_start(instruction: &pd::Instruction<'_>) -> usize {
    use pd::Instruction as I;
    match instruction {
        I::Add(i) => i.add.span.start,
        I::Arg(i) => i.arg.span.start,
        I::Cmd(i) => i.cmd.span.start,
        I::Copy(i) => i.copy.span.start,
        I::Entrypoint(i) => i.entrypoint.span.start,
        I::Env(i) => i.env.span.start,
        I::Expose(i) => i.expose.span.start,
        I::From(i) => i.from.span.start,
        I::Healthcheck(i) => i.healthcheck.span.start,
        I::Label(i) => i.label.span.start,
        I::Maintainer(i) => i.maintainer.span.start,
        I::Onbuild(i) => i.onbuild.span.start,
        I::Run(i) => i.run.span.start,
        I::Shell(i) => i.shell.span.start,
        I::Stopsignal(i) => i.stopsignal.span.start,
        I::User(i) => i.user.span.start,
        I::Volume(i) => i.volume.span.start,
        I::Workdir(i) => i.workdir.span.start,
        _ => 0,
    }
}

/// End of the instruction's own lines (here-document bodies excluded): the
/// end of the line holding its last non-here-document part.
pub(super) fn header_end(text: &str, instruction: &pd::Instruction<'_>) -> usize {
    use pd::Instruction as I;
    let command_end = |c: &pd::Command<'_>| match c {
        pd::Command::Exec(args) => args.span.end,
        pd::Command::Shell(shell) => shell.span.end,
        _ => 0,
    };
    let last = match instruction {
        I::Add(i) => i.dest.span.end,
        I::Copy(i) => i.dest.span.end,
        I::Arg(i) => i.arguments.span.end,
        I::Env(i) => i.arguments.span.end,
        I::Label(i) => i.arguments.span.end,
        I::Stopsignal(i) => i.arguments.span.end,
        I::User(i) => i.arguments.span.end,
        I::Workdir(i) => i.arguments.span.end,
        I::Maintainer(i) => i.name.span.end,
        I::Cmd(i) => command_end(&i.arguments),
        I::Entrypoint(i) => command_end(&i.arguments),
        I::Run(i) => command_end(&i.arguments),
        I::Expose(i) => i.arguments.last().map_or(0, |a| a.span.end),
        I::Shell(i) => i.arguments.last().map_or(0, |a| a.span.end),
        I::Volume(i) => match &i.arguments {
            pd::JsonOrStringArray::Json(json) => json.span.end,
            pd::JsonOrStringArray::String(words) => words.last().map_or(0, |a| a.span.end),
        },
        I::From(i) => i
            .as_
            .as_ref()
            .map_or(i.image.span.end, |(_, name)| name.span.end),
        I::Healthcheck(i) => match &i.arguments {
            pd::HealthcheckArguments::Cmd { arguments, .. } => command_end(arguments),
            pd::HealthcheckArguments::None { none, .. } => none.span.end,
            _ => 0,
        },
        I::Onbuild(i) => header_end(text, &i.instruction),
        _ => 0,
    };
    let last = last.max(keyword_start(instruction)).min(text.len());
    text[last..].find('\n').map_or(text.len(), |i| last + i)
}

/// Joins continuation lines the way Docker does: the escape char ending a
/// line (and blanks after it) is removed, and comment or empty lines inside
/// the continuation are dropped.
pub(super) fn join_lines(raw: &str, escape: char) -> String {
    let mut joined = String::with_capacity(raw.len());
    for (i, line) in raw.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let content = line.trim_start();
        if i > 0 && (content.is_empty() || content.starts_with('#')) {
            continue;
        }
        let trimmed = line.trim_end_matches([' ', '\t']);
        joined.push_str(trimmed.strip_suffix(escape).unwrap_or(line));
    }
    joined
}

/// Collapses whitespace runs to one space and caps the result at `max` chars.
pub(super) fn collapse(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, word) in text.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
        if out.len() > max * 4 {
            break;
        }
    }
    match out.char_indices().nth(max) {
        Some((cut, _)) => out[..cut].to_string(),
        None => out,
    }
}

/// The delimiter words of the `<<WORD` here-documents in an instruction's
/// header, in order, without `-` and quotes.
pub(super) fn heredoc_names(header: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = header;
    while let Some(i) = rest.find("<<") {
        rest = &rest[i + 2..];
        let word = rest
            .strip_prefix('-')
            .unwrap_or(rest)
            .trim_start_matches(['"', '\'']);
        let name: String = word
            .chars()
            .take_while(|c| !c.is_whitespace() && !"\"'".contains(*c))
            .collect();
        if !name.is_empty() {
            names.push(name);
        }
    }
    names
}

pub(super) fn here_doc(doc: &pd::HereDoc<'_>, names: &[String], index: usize) -> HereDoc {
    HereDoc {
        name: names.get(index).cloned().unwrap_or_default(),
        expand: doc.expand,
        body: doc.value.to_string(),
    }
}

pub(super) fn strings(words: &[pd::UnescapedString<'_>]) -> Vec<String> {
    words.iter().map(|w| w.value.to_string()).collect()
}

/// Parses a Go-style duration (`1m30s`, `500ms`, `1.5h`, `0`) into
/// nanoseconds; like Docker, a non-zero duration below 1ms is refused.
pub(super) fn parse_duration(text: &str) -> Option<u64> {
    if text == "0" {
        return Some(0);
    }
    let mut rest = text;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_ns: u64 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() {
            return None;
        }
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        let mut part = whole.checked_mul(unit_ns)?;
        // Digits past nanosecond precision cannot change the result.
        let digits = &fraction[..fraction.len().min(18)];
        if !digits.is_empty() {
            let scale = 10u128.pow(u32::try_from(digits.len()).ok()?);
            let frac = u128::from(digits.parse::<u64>().ok()?) * u128::from(unit_ns) / scale;
            part = part.checked_add(u64::try_from(frac).ok()?)?;
        }
        total = total.checked_add(part)?;
        rest = after;
    }
    (total >= 1_000_000).then_some(total)
}
