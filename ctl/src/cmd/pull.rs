//! `pull`: the agent pulls an image from a registry; berthctl shows the
//! progress. Also the registry flags `login` shares.

use std::os::fd::AsFd;

use berth::v1::{
    images_client::ImagesClient, Image, LayerProgress, LayerState, PullImageRequest,
    RegistryCredentials,
};
use tokio::io::AsyncReadExt;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use super::fan::{per_host, prefix_width};
use crate::error::{Error, Result};
use crate::fleet::{with_host, Fleet, Member};
use crate::output::{self, print_json_line};

// `pull`.
#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// Image to pull, e.g. busybox, registry:5000/app:v1, name@sha256:<hex>.
    pub reference: String,
    /// User name for this pull only (otherwise the agent uses what `login`
    /// stored for the registry, or none).
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Read the password for --username from standard input.
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
}

// `login`.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// Registry host[:port]; Docker Hub when omitted.
    pub registry: Option<String>,
    /// User name.
    #[arg(short = 'u', long)]
    pub username: String,
    /// Read the password from standard input (the only way to give it, so
    /// it never appears in the process list or shell history).
    #[arg(long)]
    pub password_stdin: bool,
}

// `logout`.
#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    /// Registry host[:port]; Docker Hub when omitted.
    pub registry: Option<String>,
}

/// Reads a password: standard input up to the first newline (which is not
/// part of it), as `docker login --password-stdin` does.
pub async fn read_password() -> Result<String> {
    let mut buf = String::new();
    tokio::io::stdin()
        .read_to_string(&mut buf)
        .await
        .map_err(|e| Error::Message(format!("cannot read the password from stdin: {e}")))?;
    let pw = buf.lines().next().unwrap_or("").to_string();
    if pw.is_empty() {
        return Err(Error::Message(
            "the password read from stdin is empty".into(),
        ));
    }
    Ok(pw)
}

/// Registry errors are the registry's, not the agent's: exit 1, not the
/// 125 that UNAVAILABLE (agent gone) gets.
pub fn registry_error(s: tonic::Status) -> Error {
    if s.code() == tonic::Code::Unavailable && s.message().starts_with("registry") {
        Error::Message(s.message().to_string())
    } else {
        Error::Status(s)
    }
}

/// Words for a layer state.
fn state_word(state: i32) -> &'static str {
    match LayerState::try_from(state).unwrap_or(LayerState::Unspecified) {
        LayerState::Unspecified => "unknown",
        LayerState::Waiting => "waiting",
        LayerState::Downloading => "downloading",
        LayerState::Verifying => "verifying",
        LayerState::Extracting => "extracting",
        LayerState::Done => "done",
        LayerState::AlreadyPresent => "already present",
        LayerState::Uploading => "uploading",
    }
}

/// The layout of a layer's progress bar for a terminal `columns` wide: the
/// bar takes what the rest leaves (indicatif's `wide_bar`), and below 72
/// columns the state word and byte counts give way to a percentage, so a
/// line never wraps (a wrapped bar is redrawn as a new line each tick).
fn bar_template(columns: Option<u16>) -> &'static str {
    match columns {
        Some(c) if c < 72 => "{prefix} [{wide_bar}] {percent:>3}%",
        _ => "{prefix}: {msg:15} [{wide_bar}] {bytes}/{total_bytes}",
    }
}

/// How `pull` and `push` show progress.
pub(super) enum Display {
    /// Progress bars (standard error is a terminal).
    Bars {
        multi: indicatif::MultiProgress,
        bars: Vec<indicatif::ProgressBar>,
    },
    /// One line per layer state change (standard output is not a terminal,
    /// or many hosts: then each line starts with `prefix`, the host's).
    Lines { last: Vec<i32>, prefix: String },
    /// One JSON object per layer state change (`-o json`), with its `host`
    /// on many hosts.
    Json {
        last: Vec<i32>,
        host: Option<String>,
    },
}

/// The layers whose state changed since `last` (which is brought up to
/// date).
fn changed<'a>(last: &mut Vec<i32>, layers: &'a [LayerProgress]) -> Vec<&'a LayerProgress> {
    last.resize(layers.len(), LayerState::Unspecified as i32);
    let mut out = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        if last[i] != l.state {
            last[i] = l.state;
            out.push(l);
        }
    }
    out
}

impl Display {
    /// One host's display: progress bars on a terminal (standard error),
    /// lines otherwise, JSON lines with `-o json`.
    pub(super) fn new(json: bool) -> Self {
        use std::io::IsTerminal;
        if json {
            Display::Json {
                last: Vec::new(),
                host: None,
            }
        } else if std::io::stderr().is_terminal() {
            Display::Bars {
                multi: indicatif::MultiProgress::with_draw_target(
                    indicatif::ProgressDrawTarget::stderr(),
                ),
                bars: Vec::new(),
            }
        } else {
            Display::Lines {
                last: Vec::new(),
                prefix: String::new(),
            }
        }
    }

    /// One host's display among many: lines that start with the host, or
    /// JSON objects that name it.
    pub(super) fn for_host(json: bool, host: &str, width: usize) -> Self {
        if json {
            Display::Json {
                last: Vec::new(),
                host: Some(host.to_string()),
            }
        } else {
            Display::Lines {
                last: Vec::new(),
                prefix: format!("{host:<width$} | "),
            }
        }
    }

    pub(super) fn update(&mut self, layers: &[LayerProgress]) -> Result<()> {
        let short = |d: &str| output::short_image_id(d).to_string();
        match self {
            Display::Bars { multi, bars } => {
                while bars.len() < layers.len() {
                    let style = indicatif::ProgressStyle::with_template(bar_template(
                        crate::term::size(std::io::stderr().as_fd()).map(|(_, cols)| cols),
                    ))
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> ");
                    let l = &layers[bars.len()];
                    let bar = multi.add(indicatif::ProgressBar::new(l.total_bytes.max(0) as u64));
                    bar.set_style(style);
                    bar.set_prefix(short(&l.digest));
                    bars.push(bar);
                }
                for (bar, l) in bars.iter().zip(layers) {
                    let state = LayerState::try_from(l.state).unwrap_or(LayerState::Unspecified);
                    let pos = if state == LayerState::AlreadyPresent {
                        l.total_bytes
                    } else {
                        l.done_bytes
                    };
                    bar.set_position(pos.max(0) as u64);
                    bar.set_message(state_word(l.state));
                }
            }
            Display::Lines { last, prefix } => {
                for l in changed(last, layers) {
                    let mut line = format!(
                        "{prefix}{}: {} ({})",
                        short(&l.digest),
                        state_word(l.state),
                        output::human_size(l.total_bytes)
                    );
                    if l.resumed_from_bytes > 0 {
                        line.push_str(&format!(
                            ", resumed from {}",
                            output::human_size(l.resumed_from_bytes)
                        ));
                    }
                    println!("{line}");
                }
            }
            Display::Json { last, host } => {
                for l in changed(last, layers) {
                    let v = output::message_json(l)?;
                    print_json_line(&match host {
                        Some(h) => with_host(h, v),
                        None => v,
                    });
                }
            }
        }
        Ok(())
    }

    /// Prints a line above the bars, or as any other line (not among
    /// JSON lines).
    pub(super) fn println(&self, line: String) {
        match self {
            Display::Bars { multi, .. } => {
                let _ = multi.println(line);
            }
            Display::Lines { prefix, .. } => println!("{prefix}{line}"),
            Display::Json { .. } => {}
        }
    }

    pub(super) fn finish(&self) {
        if let Display::Bars { bars, .. } = self {
            for b in bars {
                b.finish();
            }
        }
    }
}

/// The credentials of `-u USER --password-stdin`, if given (read once).
pub(super) async fn credentials(
    username: Option<String>,
    password_stdin: bool,
) -> Result<Option<RegistryCredentials>> {
    let Some(username) = username else {
        return Ok(None);
    };
    if !password_stdin {
        return Err(Error::Message(
            "--username needs --password-stdin (the password is read from stdin)".into(),
        ));
    }
    Ok(Some(RegistryCredentials {
        username,
        password: read_password().await?,
    }))
}

/// One host's pull, shown on `display`: the reference as the agent
/// normalised it (what was pulled: the only one of the image's references
/// to name, as it may have others) and the image.
async fn pull_on(
    channel: Channel,
    request: PullImageRequest,
    display: &mut Display,
) -> Result<(String, Image)> {
    let mut client = ImagesClient::new(channel)
        .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
        .max_encoding_message_size(crate::MAX_REQUEST_BYTES);
    let mut pulled = request.reference.clone();
    let mut stream = client
        .pull(request)
        .await
        .map_err(registry_error)?
        .into_inner();
    let mut announced = false;
    let mut image = None;
    while let Some(msg) = stream.next().await {
        let msg = msg.map_err(|e| {
            display.finish();
            registry_error(e)
        })?;
        if !announced && !msg.manifest_digest.is_empty() {
            announced = true;
            display.println(format!(
                "{}: resolved to {}",
                msg.reference, msg.manifest_digest
            ));
        }
        if !msg.reference.is_empty() {
            pulled.clone_from(&msg.reference);
        }
        display.update(&msg.layers)?;
        if msg.image.is_some() {
            image = msg.image;
        }
    }
    display.finish();
    let image = image.ok_or_else(|| Error::Message("the pull ended without an image".into()))?;
    Ok((pulled, image))
}

/// `pull REF` on one agent: per-layer progress (bars on a terminal), then
/// what was pulled.
pub async fn pull(m: &Member, json: bool, args: PullArgs) -> Result<()> {
    let request = PullImageRequest {
        reference: args.reference.clone(),
        credentials: credentials(args.username, args.password_stdin).await?,
    };
    let mut display = Display::new(json);
    let (pulled, image) = pull_on(m.channel().await?, request, &mut display).await?;
    if json {
        print_json_line(&output::message_json(&image)?);
    } else {
        println!("Pulled: {pulled} ({})", image.id);
    }
    Ok(())
}

/// `pull REF` on many hosts: all pull at once (at most `--parallel`), each
/// layer's changes as lines that start with the host, then one `Pulled`
/// line per host; hosts that failed are reported after, as other fleet
/// verbs do. No per-host timeout: a pull takes as long as the registry.
pub async fn pull_fleet(f: &Fleet, args: PullArgs) -> Result<()> {
    let credentials = credentials(args.username.clone(), args.password_stdin).await?;
    let width = prefix_width(f);
    let json = f.json();
    let results = f
        .each_untimed(|m, ch| {
            let request = PullImageRequest {
                reference: args.reference.clone(),
                credentials: credentials.clone(),
            };
            async move {
                let mut display = Display::for_host(json, &m.name, width);
                pull_on(ch, request, &mut display).await
            }
        })
        .await;
    per_host(f, results, |ok| {
        for (m, (pulled, image)) in ok {
            if json {
                print_json_line(&with_host(&m.name, output::message_json(image)?));
            } else {
                println!("{:<width$} | Pulled: {pulled} ({})", m.name, image.id);
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::bar_template;

    #[test]
    fn bar_layouts_are_valid_and_narrow_terminals_get_the_short_one() {
        for cols in [None, Some(40), Some(71), Some(72), Some(200)] {
            let t = bar_template(cols);
            assert!(indicatif::ProgressStyle::with_template(t).is_ok(), "{t}");
        }
        // What surrounds the bar on a 60-column terminal: a 12-digit layer
        // id, brackets and a percentage leave the bar 40 columns.
        assert_eq!(
            bar_template(Some(60)),
            "{prefix} [{wide_bar}] {percent:>3}%"
        );
        assert!(bar_template(Some(100)).contains("{bytes}/{total_bytes}"));
    }
}
