//! `--format`: Go templates over what a command lists, as Docker's.
//!
//! A format is `json` (one JSON object per line), `table` (the command's
//! usual table), `table TEMPLATE` (a table whose header is the template
//! rendered over the column names, Docker's trick; as in Docker, any format
//! that starts with `table` is one, `table{{.ID}}` too) or any other
//! `TEMPLATE` (one rendering per object, each followed by a newline). Templates are Go's
//! `text/template` (the gotmpl crate: pipelines, `if`, `range`, `with`,
//! `printf`, `index`, ...) with Docker's extra functions `json`, `join`,
//! `split`, `lower`, `upper`, `title`, `truncate` and `pad`. As in Docker,
//! the two characters `\t` and `\n` in a format (what a shell passes for
//! `"{{.ID}}\t{{.Names}}"`) are a tab and a newline, and the cells of a
//! table are split at tabs and aligned.
//!
//! The objects are the command's JSON (see each command's help) with
//! Docker's PascalCase keys: `labels` and `driverOpts` stay maps keyed as
//! the user wrote them. As Docker's `ps` and `images`, `{{.Labels}}` prints
//! `k1=v1,k2=v2` (sorted by key) and `{{.Label "k"}}` one value, while
//! `index`, `range` and `json` still see a map.

use std::sync::Arc;

use gotmpl::parse::{CommandNode, Expr, ListNode, Node, PipeNode, SmolStr};
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
    // Docker's rule: a format that starts with `table` is a table, whatever
    // follows (`table {{.ID}}`, `table{{.ID}}`, `table\t{{.ID}}`).
    let (table, body) = match trimmed.strip_prefix("table") {
        Some(rest) => (true, table_body(rest)),
        None => (false, text),
    };
    if table && body.is_empty() {
        return Ok(None);
    }
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

/// What follows `table`, without the blanks (spaces, tabs, newlines, or
/// the two characters `\t` or `\n`) that separate it from the word.
fn table_body(rest: &str) -> &str {
    let mut rest = rest;
    loop {
        let trimmed = rest.trim_start();
        match trimmed
            .strip_prefix("\\t")
            .or_else(|| trimmed.strip_prefix("\\n"))
        {
            Some(r) => rest = r,
            None => return trimmed,
        }
    }
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
                            Value::Object(_) if k == "Labels" => {
                                // `{{.Labels}}` is titled LABELS, while
                                // `{{index .Labels "k"}}` is still K.
                                let mut t = walk(v);
                                if let Value::Object(m) = &mut t {
                                    m.insert(HEADER_KEY.into(), k.to_uppercase().into());
                                }
                                t
                            }
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

/// A template with Docker's functions, and Docker's `Labels` and `Label`
/// (see [`docker_labels`]).
fn compile(body: &str) -> std::result::Result<Template, String> {
    let parsed = functions(Template::new(FORMAT))
        .parse(body)
        .map_err(|e| e.to_string())?;
    // The top-level tree is kept under the template's name unless the format
    // is blank; then there is nothing to rewrite.
    if parsed.lookup(FORMAT).is_none() {
        return Ok(parsed);
    }
    // The same trees, rewritten, under a template that calls the format's.
    let mut out = functions(Template::new(WRAPPER))
        .parse(&format!("{{{{template {FORMAT:?} .}}}}"))
        .map_err(|e| e.to_string())?;
    for name in parsed.templates() {
        if let Some(tree) = parsed.lookup(name) {
            let mut tree = tree.clone();
            docker_labels(&mut tree);
            out = out.add_parse_tree(name, tree);
        }
    }
    Ok(out)
}

/// The name of the user's template, and of the one that runs it.
const FORMAT: &str = "format";
const WRAPPER: &str = "berthctl --format";

/// Functions the rewritten trees call; their names cannot be written in a
/// template, so a user cannot call them.
const LABELS_TEXT: &str = "(labels)";
const LABEL_OF: &str = "(label)";

/// Docker's `ps` and `images` objects have `Labels` as a string,
/// `k1=v1,k2=v2` sorted by key, and a method `Label "k"` for one value.
/// Here labels stay maps (`index .Labels "k"`, `range`, `json .Labels` an
/// object), but an action that prints a field named `Labels` prints it as
/// Docker does, and `.Label "k"` (on dot, a variable or a chain) is the
/// value of `k` in the `Labels` beside it, or nothing.
fn docker_labels(list: &mut ListNode) {
    for node in &mut list.nodes {
        match node {
            Node::List(l) => docker_labels(l),
            Node::Action(a) => {
                label_methods(&mut a.pipe);
                let prints_labels = a.pipe.decl.is_empty()
                    && a.pipe.commands.last().is_some_and(|c| {
                        c.args.len() == 1 && last_field(&c.args[0]) == Some("Labels")
                    });
                if prints_labels {
                    let pos = a.pipe.pos;
                    a.pipe.commands.push(CommandNode {
                        pos,
                        args: vec![Expr::Identifier(pos, SmolStr::new(LABELS_TEXT))],
                    });
                }
            }
            Node::If(b) | Node::Range(b) | Node::With(b) => {
                label_methods(&mut b.pipe);
                docker_labels(&mut b.body);
                if let Some(e) = &mut b.else_body {
                    docker_labels(e);
                }
            }
            Node::Template(t) => {
                if let Some(p) = &mut t.pipe {
                    label_methods(p);
                }
            }
            _ => {}
        }
    }
}

/// Rewrites every `X.Label "k"` command of `pipe` (and of the pipelines in
/// its parentheses) into `(label) X.Labels "k"`.
fn label_methods(pipe: &mut PipeNode) {
    for c in &mut pipe.commands {
        for arg in &mut c.args {
            sub_pipes(arg);
        }
        if c.args.len() == 2 && last_field(&c.args[0]) == Some("Label") {
            let mut labels = c.args[0].clone();
            if let Expr::Field(_, f) | Expr::Variable(_, _, f) | Expr::Chain(_, _, f) = &mut labels
            {
                if let Some(last) = f.last_mut() {
                    *last = SmolStr::new("Labels");
                }
            }
            let key = c.args[1].clone();
            c.args = vec![Expr::Identifier(c.pos, SmolStr::new(LABEL_OF)), labels, key];
        }
    }
}

fn sub_pipes(e: &mut Expr) {
    match e {
        Expr::Pipe(_, p) => label_methods(p),
        Expr::Chain(_, inner, _) => sub_pipes(inner),
        _ => {}
    }
}

/// The last field name of `.A.B`, `$x.A.B` or `(...).A.B`.
fn last_field(e: &Expr) -> Option<&str> {
    match e {
        Expr::Field(_, f) | Expr::Variable(_, _, f) | Expr::Chain(_, _, f) => {
            f.last().map(SmolStr::as_str)
        }
        _ => None,
    }
}

/// A key no label has, in the `Labels` a table's header is rendered over:
/// the column's title.
const HEADER_KEY: &str = "\u{0}title";

/// Labels as Docker's `ps` prints them: `k1=v1,k2=v2`, sorted by key (in a
/// table's header, the column's title).
fn labels_text(v: &TValue) -> Option<String> {
    match v {
        TValue::Map(m) if m.contains_key(HEADER_KEY) => m.get(HEADER_KEY).map(text),
        TValue::Map(m) => Some(
            m.iter()
                .map(|(k, v)| format!("{k}={}", text(v)))
                .collect::<Vec<_>>()
                .join(","),
        ),
        _ => None,
    }
}

/// Docker's functions, and those the rewritten trees call.
fn functions(t: Template) -> Template {
    t.func(LABELS_TEXT, |a| {
        let v = first(a);
        Ok(match labels_text(&v) {
            Some(s) => TValue::String(s.into()),
            None => v,
        })
    })
    .func(LABEL_OF, |a| {
        let value = match (a.first(), a.get(1)) {
            // In a table's header, Docker's title: the key's last
            // dot-separated part, `-` and `_` as spaces.
            (Some(TValue::Map(m)), Some(TValue::String(k))) if m.contains_key(HEADER_KEY) => {
                k.rsplit('.').next().map(|t| t.replace(['-', '_'], " "))
            }
            (Some(TValue::Map(m)), Some(TValue::String(k))) => m.get(k).map(text),
            _ => None,
        };
        Ok(TValue::String(value.unwrap_or_default().into()))
    })
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
                .filter(|(k, _)| &***k != HEADER_KEY)
                .map(|(k, v)| (k.to_string(), to_json(v.clone())))
                .collect(),
        ),
        other => Value::String(other.to_string()),
    }
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
