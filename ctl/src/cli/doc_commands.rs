//! The berthctl command lines shown in README.md and docs/ are ones
//! berthctl accepts: each literal command in a fenced code block is parsed
//! with the real command line definition, so a renamed or removed flag
//! fails here before a reader meets it. (The end-to-end tests run the
//! commands themselves; this keeps the pages honest line by line.)

use std::path::{Path, PathBuf};

use super::try_parse_from;

/// The pages checked, relative to the workspace root.
fn pages() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut pages = vec![root.join("README.md")];
    if let Ok(dir) = std::fs::read_dir(root.join("docs")) {
        let mut docs: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "md"))
            .collect();
        docs.sort();
        pages.extend(docs);
    }
    pages
}

/// The berthctl commands in the fenced blocks of `text`, with their line
/// numbers: a line's comment dropped, split at `;`, `&&`, `||` and pipes,
/// redirections cut off. Synopses (`[-q]`, `NAME...`, `...`, `a|b`) are not
/// literal command lines and are skipped.
fn commands(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            continue;
        }
        let t = t.strip_prefix("$ ").unwrap_or(t);
        let code = strip_comment(t);
        for part in split_commands(&code) {
            let Some(words) = shlex::split(&part) else {
                continue;
            };
            let words = cut_redirections(words);
            if words.first().map(String::as_str) != Some("berthctl") {
                continue;
            }
            let synopsis = words.iter().any(|w| {
                w.starts_with('[') || w.contains("...") || (w.contains('|') && !w.contains("{{"))
            });
            if !synopsis {
                out.push((i + 1, words));
            }
        }
    }
    out
}

/// The line up to an unquoted `#` that starts a word.
fn strip_comment(line: &str) -> String {
    let (mut single, mut double) = (false, false);
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev.is_whitespace() => return line[..i].to_string(),
            _ => {}
        }
        prev = c;
    }
    line.to_string()
}

/// Splits at unquoted `;`, `&&`, `||` and `|`.
fn split_commands(line: &str) -> Vec<String> {
    let (mut single, mut double) = (false, false);
    let mut parts = vec![String::new()];
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            ';' | '|' | '&' if !single && !double => {
                if matches!(c, '|' | '&') && chars.peek() == Some(&c) {
                    chars.next();
                }
                parts.push(String::new());
                continue;
            }
            _ => {}
        }
        if let Some(p) = parts.last_mut() {
            p.push(c);
        }
    }
    parts
}

/// The words before the first redirection (`>`, `<`, `2>`, ...).
fn cut_redirections(words: Vec<String>) -> Vec<String> {
    let at = words
        .iter()
        .position(|w| w.starts_with('>') || w.starts_with('<') || w.starts_with("2>"));
    match at {
        Some(at) => words[..at].to_vec(),
        None => words,
    }
}

#[test]
fn every_command_line_in_the_docs_is_one_berthctl_accepts() {
    let mut checked = 0;
    let mut refused = Vec::new();
    for page in pages() {
        let Ok(text) = std::fs::read_to_string(&page) else {
            panic!("cannot read {}", page.display());
        };
        for (line, words) in commands(&text) {
            checked += 1;
            if let Err(e) = try_parse_from(&words) {
                let first = e.to_string().lines().next().unwrap_or_default().to_string();
                refused.push(format!(
                    "{}:{line}: {}\n    {first}",
                    page.display(),
                    words.join(" ")
                ));
            }
        }
    }
    assert!(refused.is_empty(), "refused:\n{}", refused.join("\n"));
    // The README alone shows dozens; fewer means the extraction broke.
    assert!(checked >= 30, "only {checked} command lines found");
}

#[test]
fn extraction_splits_strips_and_skips_synopses() {
    let text = "text berthctl ps\n```sh\nberthctl pause web; berthctl unpause web   # both\n\
                $ berthctl --all ps\nberthctl completion bash > /etc/x\n\
                echo hi | berthctl exec -i web cat\nberthctl volume ls [-q]\n\
                berthctl ps --format 'table {{.Names}}\\t# not a comment'\n```\nberthctl info\n";
    let got: Vec<String> = commands(text)
        .into_iter()
        .map(|(_, w)| w.join(" "))
        .collect();
    assert_eq!(
        got,
        [
            "berthctl pause web",
            "berthctl unpause web",
            "berthctl --all ps",
            "berthctl completion bash",
            "berthctl exec -i web cat",
            "berthctl ps --format table {{.Names}}\\t# not a comment",
        ]
    );
}
