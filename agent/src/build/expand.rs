//! Docker's "environment replacement" for Dockerfile words, and the word
//! splitting Docker applies to `ENV`, `LABEL` and `ARG` arguments.
//!
//! `expand` follows the Dockerfile reference: `$VAR`, `${VAR}`,
//! `${VAR:-word}`, `${VAR:+word}`, `${VAR-word}`, `${VAR+word}`,
//! `${VAR:?msg}`/`${VAR?msg}`; single quotes keep their content literal, double
//! quotes allow expansion, and the escape character makes the next character
//! literal. Quotes and escapes are removed from the result, as Docker does.

use std::fmt;

/// Largest expansion result, so a chain of variables cannot blow up memory.
pub const MAX_OUTPUT: usize = 1 << 20;
/// Deepest nesting of `${A:-${B:-...}}`, so hostile input cannot exhaust the stack.
const MAX_DEPTH: usize = 32;
/// Longest piece of input quoted back in an error message.
const MAX_QUOTE: usize = 100;

/// Why a word could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandError {
    /// Human-readable reason, never holding more than ~100 chars of input.
    pub message: String,
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExpandError {}

fn err(message: impl Into<String>) -> ExpandError {
    ExpandError {
        message: message.into(),
    }
}

/// Cuts `s` to at most ~100 chars for quoting in an error message.
pub fn truncate_for_message(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTE) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// Expands variables in `word` the way Docker does for ENV/ARG-expanded
/// instructions. `lookup` returns `None` for an unset variable (which differs
/// from `Some("")` for `${VAR-word}` and `${VAR+word}`).
pub fn expand(
    word: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let mut lexer = Lexer {
        chars: word.chars().collect(),
        pos: 0,
        escape,
        lookup,
        depth: 0,
    };
    let mut out = Output::default();
    lexer.word(&mut out, None)?;
    Ok(out.text)
}

/// The result under construction, capped at [`MAX_OUTPUT`].
#[derive(Default)]
struct Output {
    text: String,
}

impl Output {
    fn push(&mut self, c: char) -> Result<(), ExpandError> {
        self.push_str(c.encode_utf8(&mut [0; 4]))
    }

    fn push_str(&mut self, s: &str) -> Result<(), ExpandError> {
        if self.text.len() + s.len() > MAX_OUTPUT {
            return Err(err(format!(
                "expansion result longer than {MAX_OUTPUT} bytes"
            )));
        }
        self.text.push_str(s);
        Ok(())
    }
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    depth: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    /// Processes a word until the end of input or, inside `${...}`, until
    /// the unescaped `stop` character (which is consumed).
    fn word(&mut self, out: &mut Output, stop: Option<char>) -> Result<(), ExpandError> {
        while let Some(c) = self.next() {
            if Some(c) == stop {
                return Ok(());
            }
            if c == self.escape {
                // A trailing escape is dropped; otherwise the next char is literal.
                if let Some(literal) = self.next() {
                    out.push(literal)?;
                }
            } else if c == '\'' {
                self.single_quoted(out)?;
            } else if c == '"' {
                self.double_quoted(out)?;
            } else if c == '$' {
                self.dollar(out)?;
            } else {
                out.push(c)?;
            }
        }
        match stop {
            Some(_) => Err(err("missing '}' in variable substitution")),
            None => Ok(()),
        }
    }

    fn single_quoted(&mut self, out: &mut Output) -> Result<(), ExpandError> {
        while let Some(c) = self.next() {
            if c == '\'' {
                return Ok(());
            }
            out.push(c)?;
        }
        Err(err(
            "unexpected end of word while looking for matching single-quote",
        ))
    }

    fn double_quoted(&mut self, out: &mut Output) -> Result<(), ExpandError> {
        while let Some(c) = self.next() {
            if c == '"' {
                return Ok(());
            }
            if c == '$' {
                self.dollar(out)?;
            } else if c == self.escape {
                // Inside double quotes only `"`, `$` and the escape char itself
                // can be escaped; any other escape char stays as written.
                match self.peek() {
                    Some(n) if n == '"' || n == '$' || n == self.escape => {
                        self.pos += 1;
                        out.push(n)?;
                    }
                    Some(_) => out.push(c)?,
                    None => {}
                }
            } else {
                out.push(c)?;
            }
        }
        Err(err(
            "unexpected end of word while looking for matching double-quote",
        ))
    }

    /// Reads a variable name: letters, digits and `_`, or a run of digits, or
    /// one special parameter char (these are looked up like any other name).
    fn name(&mut self) -> String {
        let mut name = String::new();
        if let Some(c) = self.peek() {
            if c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if "@*#?-$!".contains(c) {
                self.pos += 1;
                name.push(c);
                return name;
            }
        }
        while let Some(c) = self.peek().filter(|c| c.is_alphanumeric() || *c == '_') {
            name.push(c);
            self.pos += 1;
        }
        name
    }

    fn dollar(&mut self, out: &mut Output) -> Result<(), ExpandError> {
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return out.push('$');
            }
            let value = (self.lookup)(&name).unwrap_or_default();
            return out.push_str(&value);
        }
        self.pos += 1;
        let name = self.name();
        if name.is_empty() {
            return Err(err("bad substitution: missing variable name after '${'"));
        }
        let value = (self.lookup)(&name);
        let Some(op) = self.next() else {
            return Err(err(format!(
                "missing '}}' after '${{{}'",
                truncate_for_message(&name)
            )));
        };
        if op == '}' {
            return out.push_str(&value.unwrap_or_default());
        }
        let (colon, op) = if op == ':' {
            match self.next() {
                Some(next) => (true, next),
                None => return Err(err("missing '}' in variable substitution")),
            }
        } else {
            (false, op)
        };
        // With a colon an empty value counts as unset, as in POSIX shells.
        let set = match &value {
            Some(v) => !(colon && v.is_empty()),
            None => false,
        };
        match op {
            '-' | '+' | '?' => {
                let alternative = self.nested_word()?;
                match op {
                    '-' if set => out.push_str(&value.unwrap_or_default()),
                    '-' => out.push_str(&alternative),
                    '+' if set => out.push_str(&alternative),
                    '+' => Ok(()),
                    _ if set => out.push_str(&value.unwrap_or_default()),
                    _ => Err(err(format!(
                        "{}: {}",
                        truncate_for_message(&name),
                        if alternative.is_empty() {
                            "is not allowed to be unset".to_string()
                        } else {
                            truncate_for_message(&alternative)
                        }
                    ))),
                }
            }
            '#' | '%' | '/' if !colon => Err(err(format!(
                "not supported yet: pattern substitution '${{VAR{op}...}}'"
            ))),
            other => Err(err(format!(
                "unsupported modifier '{other}' in variable substitution"
            ))),
        }
    }

    /// Expands the `word` part of `${VAR:-word}` up to its closing brace.
    fn nested_word(&mut self) -> Result<String, ExpandError> {
        if self.depth >= MAX_DEPTH {
            return Err(err(format!(
                "variable substitution nested deeper than {MAX_DEPTH}"
            )));
        }
        self.depth += 1;
        let mut inner = Output::default();
        let result = self.word(&mut inner, Some('}'));
        self.depth -= 1;
        result.map(|()| inner.text)
    }
}

/// Splits `rest` into words at unquoted whitespace, keeping quotes and
/// escapes in the words (they are removed later by [`expand`]), the way
/// Docker splits `ENV`, `LABEL` and `ARG` arguments.
pub fn split_words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    // A quoted empty string ("") is still a word.
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
                word.push(c);
            } else if c == escape && q != '\'' {
                // A trailing escape is dropped, as Docker does.
                if let Some(next) = chars.next() {
                    word.push(c);
                    word.push(next);
                }
            } else {
                word.push(c);
            }
            continue;
        }
        if c.is_whitespace() {
            if in_word {
                words.push(std::mem::take(&mut word));
                in_word = false;
            }
            continue;
        }
        in_word = true;
        if c == '\'' || c == '"' {
            quote = Some(c);
            word.push(c);
        } else if c == escape {
            if let Some(next) = chars.next() {
                word.push(c);
                word.push(next);
            }
        } else {
            word.push(c);
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Why `ENV`/`LABEL` arguments could not be split into pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairsError {
    /// No arguments at all.
    Empty,
    /// Legacy `KEY name value` form without a value.
    MissingValue,
    /// A word of the `name=value` form had no `=` (the word, truncated).
    NoEquals(String),
}

impl fmt::Display for PairsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("requires at least one argument"),
            Self::MissingValue => f.write_str("must have two arguments"),
            Self::NoEquals(word) => {
                write!(
                    f,
                    "can't find = in '{word}'; must be of the form name=value"
                )
            }
        }
    }
}

/// Splits `ENV`/`LABEL` arguments into raw (unexpanded, still quoted) pairs.
/// Supports both `a=b c="d e"` and the legacy `key value with spaces`, which
/// Docker picks by whether the first word holds a `=`.
pub fn split_pairs(rest: &str, escape: char) -> Result<Vec<(String, String)>, PairsError> {
    let words = split_words(rest, escape);
    let Some(first) = words.first() else {
        return Err(PairsError::Empty);
    };
    if !first.contains('=') {
        let rest = rest.trim_start();
        let Some(split) = rest.find(char::is_whitespace) else {
            return Err(PairsError::MissingValue);
        };
        let (key, value) = rest.split_at(split);
        let value = value.trim_start();
        if value.is_empty() {
            return Err(PairsError::MissingValue);
        }
        return Ok(vec![(key.to_string(), value.to_string())]);
    }
    words
        .into_iter()
        .map(|word| match word.split_once('=') {
            Some((key, value)) => Ok((key.to_string(), value.to_string())),
            None => Err(PairsError::NoEquals(truncate_for_message(&word))),
        })
        .collect()
}

#[cfg(test)]
#[path = "expand_tests.rs"]
mod tests;
