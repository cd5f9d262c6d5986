//! `build`: sends a context directory to the agent, which builds the image
//! from its Dockerfile; shows the steps as `docker build` does.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use berth::v1::{
    build_progress::Event, build_request::Payload, builds_client::BuildsClient, BuildOptions,
    BuildProgress, BuildRequest,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::build_context::{files, write_tar, Ignore};
use crate::error::{Error, Result};
use crate::fleet::Member;
use crate::output::{self, print_json_line};

/// Each context message: 1 MiB, well under the agent's 4 MiB limit.
const CHUNK: usize = 1 << 20;

// `build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The context directory the Dockerfile's COPY reads from.
    pub context: String,
    /// Name (and tag) for the image, e.g. app:1.0; may be repeated.
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// The Dockerfile, relative to the context (default: CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<String>,
    /// A build argument for an ARG (KEY=VALUE; KEY alone takes it from
    /// this environment); may be repeated.
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// Build this stage (its AS name) rather than the last.
    #[arg(long)]
    pub target: Option<String>,
    /// Run every step again (no cached result is used).
    #[arg(long)]
    pub no_cache: bool,
    /// The platform to build for; only the agent's own (linux/ARCH).
    #[arg(long)]
    pub platform: Option<String>,
    /// The network of RUN steps: none (default), bridge or host.
    #[arg(long)]
    pub network: Option<String>,
    /// A label for the image (KEY=VALUE); may be repeated.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// How to show progress: plain (or auto): every step and its output.
    #[arg(long, default_value = "auto", value_name = "plain|auto")]
    pub progress: String,
    /// Print only the image id when done.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// `build CONTEXT` on one agent.
pub async fn build(m: &Member, json: bool, args: BuildArgs) -> Result<()> {
    match args.progress.as_str() {
        "auto" | "plain" => {}
        "tty" => {
            return Err(Error::Message(
                "not supported yet: --progress tty (use plain, which is the default)".into(),
            ))
        }
        other => {
            return Err(Error::Message(format!(
                "--progress {other:?}: use plain or auto"
            )))
        }
    }
    let root = PathBuf::from(&args.context);
    if !root.is_dir() {
        return Err(Error::Message(format!(
            "the build context {} is not a directory",
            args.context
        )));
    }
    let dockerfile = dockerfile_in(&root, args.file.as_deref())?;
    let options = options(&args, &dockerfile)?;
    let ignore = match std::fs::read_to_string(root.join(".dockerignore")) {
        Ok(text) => Ignore::parse(&text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ignore::default(),
        Err(e) => return Err(Error::Message(format!("cannot read .dockerignore: {e}"))),
    };
    let list = files(&root, &ignore, std::slice::from_ref(&dockerfile))?;

    let (tx, rx) = mpsc::channel::<BuildRequest>(4);
    tx.send(BuildRequest {
        payload: Some(Payload::Options(options)),
    })
    .await
    .map_err(|_| Error::Message("the build was cut short".into()))?;
    // The tar is written on a blocking thread, straight into the request.
    let writer = tokio::task::spawn_blocking(move || {
        let mut out = Chunks {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        write_tar(&list, &mut out)?;
        out.flush()
            .map_err(|e| Error::Message(format!("cannot send the context: {e}")))
    });
    let mut client = BuildsClient::new(m.channel().await?)
        .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
        .max_encoding_message_size(crate::MAX_REQUEST_BYTES);
    let mut stream = client.build(ReceiverStream::new(rx)).await?.into_inner();
    let mut shown = Shown::default();
    let mut result = None;
    while let Some(msg) = stream.next().await {
        let msg = match msg {
            Ok(m) => m,
            Err(status) => {
                shown.newline();
                return Err(status.into());
            }
        };
        if json {
            print_json_line(&output::message_json(&msg)?);
        } else if !args.quiet {
            shown.show(&msg);
        }
        if let Some(Event::Result(r)) = msg.event {
            result = Some(r);
        }
    }
    match writer.await {
        Ok(r) => r?,
        Err(e) => return Err(Error::Message(format!("sending the context: {e}"))),
    }
    let r = result
        .ok_or_else(|| Error::Message("the agent ended the build without a result".into()))?;
    let image = r.image.unwrap_or_default();
    if args.quiet {
        println!("{}", image.id);
    } else if !json {
        println!(
            "Successfully built {} ({} steps, {} cached, {:.1}s)",
            output::short_image_id(&image.id),
            r.run_steps + r.cached_steps,
            r.cached_steps,
            r.duration_ms as f64 / 1000.0
        );
        for t in &image.references {
            println!("Successfully tagged {t}");
        }
    }
    Ok(())
}

/// The Dockerfile's path relative to the context: `-f` may name it
/// relative to the context, or by a path that lies inside it.
fn dockerfile_in(root: &Path, file: Option<&str>) -> Result<String> {
    let Some(file) = file else {
        return Ok("Dockerfile".into());
    };
    let direct = root.join(file);
    if direct.is_file() && !Path::new(file).is_absolute() {
        return Ok(file.to_string());
    }
    let abs = std::fs::canonicalize(file)
        .map_err(|e| Error::Message(format!("cannot find the Dockerfile {file}: {e}")))?;
    let root = std::fs::canonicalize(root)
        .map_err(|e| Error::Message(format!("cannot resolve the context: {e}")))?;
    abs.strip_prefix(&root)
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|_| {
            Error::Message(format!(
                "the Dockerfile {file} must be inside the build context (the agent reads it from there)"
            ))
        })
}

fn options(args: &BuildArgs, dockerfile: &str) -> Result<BuildOptions> {
    let mut build_args = HashMap::new();
    for a in &args.build_args {
        match a.split_once('=') {
            Some((k, v)) => {
                build_args.insert(k.to_string(), v.to_string());
            }
            // Docker: a name alone takes its value from the environment,
            // and is left out when unset there.
            None => {
                if let Ok(v) = std::env::var(a) {
                    build_args.insert(a.clone(), v);
                }
            }
        }
    }
    let mut labels = HashMap::new();
    for l in &args.labels {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_string(), v.to_string());
    }
    // SOURCE_DATE_EPOCH as a build argument or in the environment, as
    // buildx takes it.
    let epoch = build_args
        .get("SOURCE_DATE_EPOCH")
        .cloned()
        .or_else(|| std::env::var("SOURCE_DATE_EPOCH").ok());
    let source_date_epoch = match epoch {
        Some(s) => s.trim().parse::<i64>().map_err(|_| {
            Error::Message(format!(
                "SOURCE_DATE_EPOCH {s:?} is not a number of seconds"
            ))
        })?,
        None => 0,
    };
    Ok(BuildOptions {
        tags: args.tags.clone(),
        dockerfile: dockerfile.to_string(),
        build_args,
        target: args.target.clone().unwrap_or_default(),
        no_cache: args.no_cache,
        platform: args.platform.clone().unwrap_or_default(),
        network: args.network.clone().unwrap_or_default(),
        source_date_epoch,
        labels,
    })
}

/// A writer sending what it gets as context chunks.
struct Chunks {
    tx: mpsc::Sender<BuildRequest>,
    buf: Vec<u8>,
}

impl Chunks {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(BuildRequest {
                payload: Some(Payload::Context(data)),
            })
            .map_err(|_| std::io::Error::other("the agent ended the build"))
    }
}

impl Write for Chunks {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// What the terminal shows, Docker's classic way.
#[derive(Default)]
struct Shown {
    /// The last output did not end its line.
    open_line: bool,
}

impl Shown {
    fn show(&mut self, msg: &BuildProgress) {
        let mut out = std::io::stdout().lock();
        match &msg.event {
            Some(Event::Step(s)) => {
                self.newline_on(&mut out);
                let _ = writeln!(out, "Step {}/{} : {}", s.number, s.total, s.instruction);
                if s.cached {
                    let _ = writeln!(out, " ---> Using cache");
                }
            }
            Some(Event::Output(o)) => {
                let _ = out.write_all(&o.data);
                self.open_line = !o.data.ends_with(b"\n");
            }
            Some(Event::Done(d)) => {
                self.newline_on(&mut out);
                if !d.image_id.is_empty() {
                    let _ = writeln!(
                        out,
                        " ---> {} ({:.2}s)",
                        output::short_image_id(&d.image_id),
                        d.duration_ms as f64 / 1000.0
                    );
                }
            }
            Some(Event::Warning(w)) => {
                self.newline_on(&mut out);
                let _ = writeln!(out, "[warning] {w}");
            }
            Some(Event::Result(_)) | None => {}
        }
        let _ = out.flush();
    }

    fn newline(&mut self) {
        let mut out = std::io::stdout().lock();
        self.newline_on(&mut out);
    }

    fn newline_on(&mut self, out: &mut impl Write) {
        if self.open_line {
            let _ = writeln!(out);
            self.open_line = false;
        }
    }
}
