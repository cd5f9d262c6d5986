//! `pull`: the agent pulls an image from a registry; berthctl shows the
//! progress. Also the registry flags `login` shares.

use berth::v1::{
    images_client::ImagesClient, LayerProgress, LayerState, PullImageRequest, RegistryCredentials,
};
use tokio::io::AsyncReadExt;
use tokio_stream::StreamExt;

use crate::error::{Error, Result};
use crate::fleet::Member;
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

/// How `pull` and `push` show progress.
pub(super) enum Display {
    /// Progress bars (standard error is a terminal).
    Bars {
        multi: indicatif::MultiProgress,
        bars: Vec<indicatif::ProgressBar>,
    },
    /// One line per layer state change (standard output is not a terminal).
    Lines { last: Vec<i32> },
    /// One JSON object per layer state change (`-o json`).
    Json { last: Vec<i32> },
}

impl Display {
    /// Progress bars on a terminal (standard error), lines otherwise, JSON
    /// lines with `-o json`.
    pub(super) fn new(json: bool) -> Self {
        use std::io::IsTerminal;
        if json {
            Display::Json { last: Vec::new() }
        } else if std::io::stderr().is_terminal() {
            Display::Bars {
                multi: indicatif::MultiProgress::with_draw_target(
                    indicatif::ProgressDrawTarget::stderr(),
                ),
                bars: Vec::new(),
            }
        } else {
            Display::Lines { last: Vec::new() }
        }
    }

    /// Prints a line above the bars (or as it is).
    pub(super) fn println(&self, line: String) {
        match self {
            Display::Bars { multi, .. } => {
                let _ = multi.println(line);
            }
            _ => println!("{line}"),
        }
    }

    pub(super) fn update(&mut self, layers: &[LayerProgress]) -> Result<()> {
        let short = |d: &str| output::short_image_id(d).to_string();
        let json = matches!(self, Display::Json { .. });
        match self {
            Display::Bars { multi, bars } => {
                while bars.len() < layers.len() {
                    let style = indicatif::ProgressStyle::with_template(
                        "{prefix}: {msg:15} [{bar:30}] {bytes}/{total_bytes}",
                    )
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
            Display::Lines { last } | Display::Json { last } => {
                last.resize(layers.len(), LayerState::Unspecified as i32);
                for (i, l) in layers.iter().enumerate() {
                    if last[i] == l.state {
                        continue;
                    }
                    last[i] = l.state;
                    if json {
                        print_json_line(&output::message_json(l)?);
                    } else {
                        let mut line = format!(
                            "{}: {} ({})",
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
            }
        }
        Ok(())
    }

    pub(super) fn finish(&self) {
        if let Display::Bars { bars, .. } = self {
            for b in bars {
                b.finish();
            }
        }
    }
}

/// The credentials of `-u USER --password-stdin`, if given.
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

/// `pull REF`: pulls through the agent, showing per-layer progress.
pub async fn pull(m: &Member, json: bool, args: PullArgs) -> Result<()> {
    let credentials = credentials(args.username, args.password_stdin).await?;
    let mut client = ImagesClient::new(m.channel().await?)
        .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
        .max_encoding_message_size(crate::MAX_REQUEST_BYTES);
    let mut stream = client
        .pull(PullImageRequest {
            reference: args.reference.clone(),
            credentials,
        })
        .await
        .map_err(registry_error)?
        .into_inner();
    let mut display = Display::new(json);
    let mut announced = false;
    let mut image = None;
    // The reference as the agent normalised it: what was pulled, and the
    // only one of the image's references to name (it may have others).
    let mut pulled = args.reference.clone();
    while let Some(msg) = stream.next().await {
        let msg = msg.map_err(|e| {
            display.finish();
            registry_error(e)
        })?;
        if !announced && !msg.manifest_digest.is_empty() && !json {
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
    if json {
        print_json_line(&output::message_json(&image)?);
    } else {
        println!("Pulled: {pulled} ({})", image.id);
    }
    Ok(())
}
