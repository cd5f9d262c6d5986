//! berth's typed build plan: what [`super::parse`] makes of a Dockerfile.
//! The rest of berth sees these types, never the parsing crate's.

use std::fmt;

/// A parsed Dockerfile: global ARGs (before the first FROM) and stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildFile {
    /// The escape character (`\` or, with `# escape=\``, a backtick).
    pub escape: char,
    /// ARGs declared before the first FROM; only FROM lines may use them.
    pub global_args: Vec<ArgDecl>,
    /// The stages, in file order (never empty).
    pub stages: Vec<Stage>,
}

/// One declared build argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    /// The argument name.
    pub name: String,
    /// The raw default (still quoted, unexpanded), if any.
    pub default: Option<String>,
}

/// One build stage: a FROM and the steps after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Position among the stages, from 0.
    pub index: usize,
    /// `AS name`, lower-cased as Docker does.
    pub name: Option<String>,
    /// Raw image text (may hold `$ARG`s), `scratch`, or another stage's name.
    pub base: String,
    /// Raw `--platform` value.
    pub platform: Option<String>,
    /// 1-based line of the FROM.
    pub line: usize,
    /// The instructions of the stage, in order.
    pub steps: Vec<Step>,
}

/// One instruction inside a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// 1-based line of the instruction keyword.
    pub line: usize,
    /// The instruction as written on one line, whitespace collapsed, capped
    /// at 200 chars; for progress output only (see [`Step::canonical`]).
    pub text: String,
    /// What the instruction does.
    pub op: Op,
}

impl Step {
    /// An uncapped, stable rendering of [`Step::op`] for cache keys.
    pub fn canonical(&self) -> String {
        format!("{:?}", self.op)
    }
}

/// A command in shell form (run by the SHELL) or exec form (a JSON array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Shell form, continuations joined and comment lines dropped.
    Shell(String),
    /// Exec form, JSON strings decoded.
    Exec(Vec<String>),
}

/// What one instruction does. All word values are raw (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `RUN`; the `--mount`, `--network` and `--security` flags kept raw.
    Run {
        /// The command; for `RUN <<EOF` the shell text starting at `<<EOF`.
        command: Command,
        /// Here-documents of the command, in order.
        heredocs: Vec<HereDoc>,
        /// Raw `--mount` values, in order.
        mounts: Vec<String>,
        /// Raw `--network` value.
        network: Option<String>,
        /// Raw `--security` value.
        security: Option<String>,
    },
    /// `COPY`.
    Copy(CopySpec),
    /// `ADD`.
    Add(CopySpec),
    /// `ENV`: raw key/value pairs, from `a=b c="d e"` or `key value`.
    Env(Vec<(String, String)>),
    /// `ARG`, which may declare several arguments.
    Arg(Vec<ArgDecl>),
    /// `LABEL`: raw key/value pairs; quotes go away when expanded.
    Label(Vec<(String, String)>),
    /// `WORKDIR`.
    Workdir(String),
    /// `USER`.
    User(String),
    /// `STOPSIGNAL`.
    StopSignal(String),
    /// `EXPOSE`: raw words.
    Expose(Vec<String>),
    /// `VOLUME`: JSON array or space-separated words.
    Volume(Vec<String>),
    /// `CMD`.
    Cmd(Command),
    /// `ENTRYPOINT`.
    Entrypoint(Command),
    /// `SHELL`.
    Shell(Vec<String>),
    /// `HEALTHCHECK`.
    Healthcheck(Healthcheck),
    /// `ONBUILD`: the trigger instruction's text, stored only.
    Onbuild(String),
    /// `MAINTAINER` (deprecated).
    Maintainer(String),
}

/// The arguments of COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySpec {
    /// Raw source paths (or URLs for ADD); here-document sources are in `heredocs`.
    pub sources: Vec<String>,
    /// Raw destination.
    pub dest: String,
    /// Raw `--from` (stage name, stage index or image).
    pub from: Option<String>,
    /// Raw `--chown`.
    pub chown: Option<String>,
    /// Raw `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// Here-document sources, each becoming a file named after it.
    pub heredocs: Vec<HereDoc>,
}

/// A here-document (`<<EOF ... EOF`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HereDoc {
    /// The delimiter word, without `-` and quotes.
    pub name: String,
    /// False when the delimiter was quoted: the body is then not expanded.
    pub expand: bool,
    /// The body, ending with a newline.
    pub body: String,
}

/// A `HEALTHCHECK` instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    /// `HEALTHCHECK [options] CMD ...`; `None` options inherit the defaults.
    Cmd {
        /// The check command.
        test: Command,
        /// `--interval`, in nanoseconds.
        interval_ns: Option<u64>,
        /// `--timeout`, in nanoseconds.
        timeout_ns: Option<u64>,
        /// `--start-period`, in nanoseconds.
        start_period_ns: Option<u64>,
        /// `--start-interval`, in nanoseconds.
        start_interval_ns: Option<u64>,
        /// `--retries`.
        retries: Option<u32>,
    },
}

/// A syntax or semantic error with its 1-based line and column (in chars).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in chars.
    pub column: usize,
    /// What is wrong (quoted input is capped at ~100 chars).
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Dockerfile:{}:{}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for ParseError {}
