//! `--format`: Go templates over what a command lists, as Docker's.
//!
//! A format is `json` (one JSON object per line), `table` (the command's
//! usual table), `table TEMPLATE` (a table whose header is the template
//! rendered over the column names, Docker's trick) or any other `TEMPLATE`
//! (one rendering per object, each followed by a newline). Templates are Go's
//! `text/template` (the gotmpl crate: pipelines, `if`, `range`, `with`,
//! `printf`, `index`, ...) with Docker's extra functions `json`, `join`,
//! `split`, `lower`, `upper`, `title`, `truncate` and `pad`. As in Docker,
//! the two characters `\t` and `\n` in a format (what a shell passes for
//! `"{{.ID}}\t{{.Names}}"`) are a tab and a newline, and the cells of a
//! table are split at tabs and aligned.
//!
//! The objects are the command's JSON (see each command's help) with
//! Docker's PascalCase keys: `labels` and `driverOpts` stay maps keyed as
//! the user wrote them.

use std::sync::Arc;

use gotmpl::{Template, Value as TValue};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Longest format accepted, in bytes: a template is typed or scripted, not
/// generated; errors quote at most its first 64 characters.
pub const MAX_FORMAT_BYTES: usize = 4096;

/// A parsed `--format`.
pub enum Format {
    /// One JSON object per line.
    Json,
    /// A header line, then one line per object, cells aligned at tabs.
    Table(Template),
    /// One rendering per object.
    Lines(Template),
}

/// Parses a `--format`; `None` for `table` alone (the command's usual
/// table).
pub fn parse(text: &str) -> Result<Option<Format>> {
    if text.len() > MAX_FORMAT_BYTES {
        return Err(Error::Message(format!(
            "--format is longer than {MAX_FORMAT_BYTES} bytes"
        )));
    }
    let trimmed = text.trim();
    if trimmed == "json" {
        return Ok(Some(Format::Json));
    }
    if trimmed == "table" {
        return Ok(None);
    }
    let (table, body) = match trimmed.strip_prefix("table ") {
        Some(rest) => (true, rest.trim_start()),
        None => (false, text),
    };
    let body = body.replace("\\t", "\t").replace("\\n", "\n");
    let template = compile(&body).map_err(|e| {
        Error::Message(format!(
            "invalid --format template {:?}: {e}",
            shorten(text, 64)
        ))
    })?;
    Ok(Some(if table {
        Format::Table(template)
    } else {
        Format::Lines(template)
    }))
}

impl Format {
    /// Renders `objects` (already PascalCase, see [`pascal`]). `header`
    /// maps field names to column titles for a table; fields it lacks are
    /// titled by their upper-cased names.
    pub fn render(&self, objects: &[Value], header: &[(&str, &str)]) -> Result<String> {
        match self {
            Format::Json => {
                let mut out = String::new();
                for o in objects {
                    out.push_str(&o.to_string());
                    out.push('\n');
                }
                Ok(out)
            }
            Format::Lines(t) => {
                let mut out = String::new();
                for o in objects {
                    out.push_str(&execute(t, o)?);
                    out.push('\n');
                }
                Ok(out)
            }
            Format::Table(t) => {
                let titles = titles(objects.first(), header);
                // A header that cannot be rendered (a function given a
                // title where it wants a list) is left out, as Docker does.
                let mut lines: Vec<String> = execute(t, &titles).into_iter().collect();
                for o in objects {
                    lines.push(execute(t, o)?);
                }
                let rows: Vec<Vec<String>> = lines
                    .iter()
                    .flat_map(|l| l.split('\n'))
                    .map(|l| l.split('\t').map(str::to_string).collect())
                    .collect();
                Ok(super::align(&rows))
            }
        }
    }
}

/// The object a table's header is rendered over: every key of `first` (the
/// first object) recursively, each leaf its key upper-cased, then the
/// command's own titles.
fn titles(first: Option<&Value>, header: &[(&str, &str)]) -> Value {
    fn walk(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| {
                        let t = match v {
                            Value::Object(_) => walk(v),
                            _ => Value::String(k.to_uppercase()),
                        };
                        (k.clone(), t)
                    })
                    .collect(),
            ),
            _ => Value::Null,
        }
    }
    let mut out = match first.map(walk) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for (field, title) in header {
        out.insert((*field).to_string(), Value::String((*title).to_string()));
    }
    Value::Object(out)
}

fn execute(t: &Template, data: &Value) -> Result<String> {
    let data = gotmpl::to_value(data)
        .map_err(|e| Error::Message(format!("--format: cannot use the data: {e}")))?;
    t.execute_to_string(&data)
        .map_err(|e| Error::Message(format!("--format: {e}")))
}

/// Keys whose values are maps of the user's own keys, left as they are.
const USER_MAPS: [&str; 2] = ["labels", "driverOpts"];

/// The API's JSON (lowerCamelCase keys) with Docker's PascalCase keys,
/// recursively, except inside maps of the user's own keys (labels).
pub fn pascal(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let v = if USER_MAPS.contains(&k.as_str()) {
                        v
                    } else {
                        pascal(v)
                    };
                    (capitalize(&k), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(pascal).collect()),
        other => other,
    }
}

fn capitalize(k: &str) -> String {
    let mut c = k.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// A template with Docker's functions.
fn compile(body: &str) -> std::result::Result<Template, String> {
    Template::new("format")
        .func("json", |a| {
            Ok(TValue::String(to_json(first(a)).to_string().into()))
        })
        .func("join", |a| {
            let sep = string_arg(a.get(1));
            let parts: Vec<String> = match first(a) {
                TValue::List(l) => l.iter().map(text).collect(),
                other => vec![text(&other)],
            };
            Ok(TValue::String(parts.join(&sep).into()))
        })
        .func("split", |a| {
            let s = string_arg(a.first());
            let sep = string_arg(a.get(1));
            let parts: Vec<TValue> = if sep.is_empty() {
                s.chars()
                    .map(|c| TValue::String(c.to_string().into()))
                    .collect()
            } else {
                s.split(sep.as_str())
                    .map(|p| TValue::String(p.into()))
                    .collect()
            };
            Ok(TValue::List(Arc::from(parts)))
        })
        .func("lower", |a| {
            Ok(TValue::String(string_arg(a.first()).to_lowercase().into()))
        })
        .func("upper", |a| {
            Ok(TValue::String(string_arg(a.first()).to_uppercase().into()))
        })
        .func("title", |a| {
            let s = string_arg(a.first());
            let titled: Vec<String> = s.split(' ').map(capitalize).collect();
            Ok(TValue::String(titled.join(" ").into()))
        })
        .func("truncate", |a| {
            let s = string_arg(a.first());
            let n = a.get(1).and_then(TValue::as_int).unwrap_or(0).max(0) as usize;
            Ok(TValue::String(s.chars().take(n).collect::<String>().into()))
        })
        .func("pad", |a| {
            let s = string_arg(a.first());
            let left = a.get(1).and_then(TValue::as_int).unwrap_or(0).clamp(0, 256) as usize;
            let right = a.get(2).and_then(TValue::as_int).unwrap_or(0).clamp(0, 256) as usize;
            Ok(TValue::String(
                format!("{}{s}{}", " ".repeat(left), " ".repeat(right)).into(),
            ))
        })
        .parse(body)
        .map_err(|e| e.to_string())
}

fn first(a: &[TValue]) -> TValue {
    a.first().cloned().unwrap_or(TValue::Nil)
}

fn string_arg(v: Option<&TValue>) -> String {
    v.map(text).unwrap_or_default()
}

/// A value as the template prints it.
fn text(v: &TValue) -> String {
    match v {
        TValue::String(s) => s.to_string(),
        TValue::Nil => String::new(),
        other => other.to_string(),
    }
}

/// A template value back in JSON (`{{json .X}}`).
fn to_json(v: TValue) -> Value {
    match v {
        TValue::Nil => Value::Null,
        TValue::Bool(b) => Value::Bool(b),
        TValue::Int(i) => Value::from(i),
        TValue::Uint(u) => Value::from(u),
        TValue::Float(f) => Value::from(f),
        TValue::String(s) => Value::String(s.to_string()),
        TValue::List(l) => Value::Array(l.iter().cloned().map(to_json).collect()),
        TValue::Map(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.to_string(), to_json(v.clone())))
                .collect(),
        ),
        other => Value::String(other.to_string()),
    }
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
