use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "A" => Some("apple".to_string()),
        "EMPTY" => Some(String::new()),
        "SPACE" => Some("a b".to_string()),
        _ => None,
    }
}

fn x(word: &str) -> String {
    expand(word, '\\', &env).unwrap()
}

fn x_err(word: &str) -> String {
    expand(word, '\\', &env).unwrap_err().to_string()
}

#[test]
fn plain_and_braced_variables() {
    assert_eq!(x("$A"), "apple");
    assert_eq!(x("${A}"), "apple");
    assert_eq!(x("x$A/y"), "xapple/y");
    assert_eq!(x("${A}s"), "apples");
    assert_eq!(x("$As"), "");
    assert_eq!(x("$UNSET-"), "-");
    assert_eq!(x("lone $ sign"), "lone $ sign");
    assert_eq!(x("end$"), "end$");
}

#[test]
fn default_forms_distinguish_unset_and_empty() {
    assert_eq!(x("${UNSET:-d}"), "d");
    assert_eq!(x("${EMPTY:-d}"), "d");
    assert_eq!(x("${A:-d}"), "apple");
    assert_eq!(x("${UNSET-d}"), "d");
    assert_eq!(x("${EMPTY-d}"), "");
    assert_eq!(x("${A-d}"), "apple");
}

#[test]
fn alternative_forms_distinguish_unset_and_empty() {
    assert_eq!(x("${A:+alt}"), "alt");
    assert_eq!(x("${EMPTY:+alt}"), "");
    assert_eq!(x("${UNSET:+alt}"), "");
    assert_eq!(x("${EMPTY+alt}"), "alt");
    assert_eq!(x("${UNSET+alt}"), "");
}

#[test]
fn nested_default_is_expanded() {
    assert_eq!(x("${UNSET:-${A}-x}"), "apple-x");
    assert_eq!(x("${UNSET:-$A}"), "apple");
    assert_eq!(x("${UNSET:-a\\}b}"), "a}b");
}

#[test]
fn required_variable_errors() {
    assert_eq!(x("${A:?must}"), "apple");
    assert_eq!(x_err("${UNSET:?must be set}"), "UNSET: must be set");
    assert_eq!(x_err("${EMPTY:?}"), "EMPTY: is not allowed to be unset");
    assert_eq!(x("${EMPTY?x}"), "");
}

#[test]
fn escape_makes_dollar_literal() {
    assert_eq!(x("\\$A"), "$A");
    assert_eq!(x("\\${A}"), "${A}");
    assert_eq!(x("a\\ b"), "a b");
    assert_eq!(x("trailing\\"), "trailing");
    assert_eq!(expand("`$A", '`', &env).unwrap(), "$A");
    assert_eq!(expand("C:\\$A", '`', &env).unwrap(), "C:\\apple");
}

#[test]
fn single_quotes_are_literal() {
    assert_eq!(x("'$A'"), "$A");
    assert_eq!(x("'a \\ b'"), "a \\ b");
    assert_eq!(x("x'${A}'y"), "x${A}y");
}

#[test]
fn double_quotes_expand_and_escape_few_chars() {
    assert_eq!(x("\"$A b\""), "apple b");
    assert_eq!(x("\"a\\\"b\""), "a\"b");
    assert_eq!(x("\"\\$A\""), "$A");
    assert_eq!(x("\"a\\nb\""), "a\\nb");
    assert_eq!(x("\"it's\""), "it's");
    assert_eq!(x("\"\""), "");
}

#[test]
fn bad_substitutions_are_errors() {
    assert!(x_err("${").contains("missing variable name"));
    assert!(x_err("${}").contains("missing variable name"));
    assert!(x_err("${A").contains("missing '}'"));
    assert!(x_err("${A:-x").contains("missing '}'"));
    assert!(x_err("${A x}").contains("unsupported modifier"));
    assert!(x_err("${A#pre}").contains("not supported yet"));
    assert!(x_err("'open").contains("single-quote"));
    assert!(x_err("\"open").contains("double-quote"));
}

#[test]
fn output_and_depth_are_capped() {
    let big = "x".repeat(MAX_OUTPUT / 2 + 1);
    let lookup = move |_: &str| Some(big.clone());
    let e = expand("$A$A", '\\', &lookup).unwrap_err();
    assert!(e.message.contains("longer than"));
    let deep = format!("{}x{}", "${U:-".repeat(100), "}".repeat(100));
    assert!(x_err(&deep).contains("nested deeper"));
}

#[test]
fn error_messages_truncate_input() {
    let name = "N".repeat(500);
    let e = x_err(&format!("${{{name}:?}}"));
    assert!(e.len() < 200, "{e}");
}

#[test]
fn split_words_keeps_quotes() {
    assert_eq!(
        split_words(r#"a=b c="d e"  f='g h' i=j\ k"#, '\\'),
        ["a=b", "c=\"d e\"", "f='g h'", "i=j\\ k"]
    );
    assert_eq!(split_words(r#"x="a\"b c""#, '\\'), ["x=\"a\\\"b c\""]);
    assert_eq!(split_words(r#"x='a\'"#, '\\'), ["x='a\\'"]);
    assert_eq!(split_words("  ", '\\'), Vec::<String>::new());
}

#[test]
fn split_pairs_both_forms() {
    assert_eq!(
        split_pairs("a=b c=\"d e\"", '\\').unwrap(),
        [
            ("a".to_string(), "b".to_string()),
            ("c".to_string(), "\"d e\"".to_string())
        ]
    );
    assert_eq!(
        split_pairs("key value  with spaces", '\\').unwrap(),
        [("key".to_string(), "value  with spaces".to_string())]
    );
    assert_eq!(split_pairs("A", '\\'), Err(PairsError::MissingValue));
    assert_eq!(split_pairs("", '\\'), Err(PairsError::Empty));
    assert!(matches!(split_pairs("a=1 b", '\\'), Err(PairsError::NoEquals(w)) if w == "b"));
    assert_eq!(
        split_pairs("\"com.x\"=\"v 1\"", '\\').unwrap(),
        [("\"com.x\"".to_string(), "\"v 1\"".to_string())]
    );
}
