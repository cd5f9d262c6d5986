//! Image commands: import, ls, rm, inspect, pull, login, logout.

use std::time::SystemTime;

use berth::v1::{
    import_image_request::Payload, Image, ImportImageRequest, ImportOptions, InspectImageRequest,
    LayerState, ListImagesRequest, LoginRequest, LogoutRequest, PullImageProgress,
    PullImageRequest, RegistryCredentials, RemoveImageRequest,
};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use crate::cli::{ImageIdsArgs, ImageRmArgs, ImportArgs};
use crate::ctx::{for_each, missing, Ctx};
use crate::error::{Error, Result};
use crate::output::{self, print_json_line};

/// Size of each uploaded piece of an archive: large enough to keep the
/// per-message overhead small, well under gRPC's default 4 MiB limit.
pub const CHUNK_SIZE: usize = 1 << 20;

/// The first message of an Import: the options.
pub fn import_options(reference: Option<&str>) -> ImportImageRequest {
    ImportImageRequest {
        payload: Some(Payload::Options(ImportOptions {
            reference: reference.unwrap_or_default().to_string(),
        })),
    }
}

/// Reads `input` in chunks of [`CHUNK_SIZE`] into `tx` as Import messages,
/// after the options. A read error is sent on `failed` and the request
/// stream is left open, so that the caller can abandon the call (which
/// cancels it on the agent) instead of ending the upload early and having a
/// truncated archive imported.
async fn pump(
    mut input: impl AsyncRead + Unpin,
    first: ImportImageRequest,
    tx: mpsc::Sender<ImportImageRequest>,
    failed: oneshot::Sender<std::io::Error>,
) {
    if tx.send(first).await.is_err() {
        return;
    }
    loop {
        let mut buf = vec![0u8; CHUNK_SIZE];
        let mut filled = 0;
        // Fill whole chunks: pipes return short reads.
        while filled < CHUNK_SIZE {
            match input.read(&mut buf[filled..]).await {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = failed.send(e);
                    // Keep `tx` alive until the caller drops the call.
                    std::future::pending::<()>().await;
                    return;
                }
            }
        }
        if filled == 0 {
            return;
        }
        buf.truncate(filled);
        let msg = ImportImageRequest {
            payload: Some(Payload::Chunk(buf)),
        };
        if tx.send(msg).await.is_err() || filled < CHUNK_SIZE {
            return;
        }
    }
}

/// `image import FILE`: uploads the archive and prints what was imported.
pub async fn import(ctx: &Ctx, args: ImportArgs) -> Result<()> {
    // Open the file first: a typo in its name should not need an agent.
    let input: Box<dyn AsyncRead + Unpin + Send> = if args.file == "-" {
        Box::new(tokio::io::stdin())
    } else {
        Box::new(
            tokio::fs::File::open(&args.file)
                .await
                .map_err(|e| Error::Message(format!("cannot open {}: {e}", args.file)))?,
        )
    };
    let mut client = ctx.images().await?;
    let (tx, rx) = mpsc::channel(2);
    let (failed_tx, failed_rx) = oneshot::channel();
    let reader = tokio::spawn(pump(
        input,
        import_options(args.reference.as_deref()),
        tx,
        failed_tx,
    ));
    let result = tokio::select! {
        r = client.import(ReceiverStream::new(rx)) => r.map_err(Error::from),
        Ok(e) = failed_rx => Err(Error::Message(format!("cannot read {}: {e}", args.file))),
    };
    reader.abort();
    let images = result?.into_inner().images;
    for image in &images {
        if ctx.json() {
            print_json_line(&output::message_json(image)?);
        } else if image.references.is_empty() {
            println!("Imported: {}", image.id);
        } else {
            for r in &image.references {
                println!("Imported: {r} ({})", image.id);
            }
        }
    }
    Ok(())
}

/// Headers of the `image ls` table.
pub const IMAGE_HEADERS: [&str; 5] = ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"];

/// The rows of `image ls`: one per reference, like `docker images`, and
/// one with `<none>` for an image without any.
pub fn image_rows(images: &[Image], now: SystemTime) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for i in images {
        let created = output::ago(&i.created_at, now);
        let row = |repo: String, tag: String| {
            vec![
                repo,
                tag,
                output::short_image_id(&i.id).to_string(),
                created.clone(),
                output::human_size(i.size_bytes),
            ]
        };
        if i.references.is_empty() {
            rows.push(row("<none>".into(), "<none>".into()));
        }
        for r in &i.references {
            let (repo, tag) = output::repo_tag(r);
            rows.push(row(repo, tag));
        }
    }
    rows
}

/// `image ls` / `images`.
pub async fn ls(ctx: &Ctx) -> Result<()> {
    let mut client = ctx.images().await?;
    let images = client.list(ListImagesRequest {}).await?.into_inner().images;
    if ctx.json() {
        for i in &images {
            print_json_line(&output::message_json(i)?);
        }
    } else {
        print!(
            "{}",
            output::table(&IMAGE_HEADERS, &image_rows(&images, SystemTime::now()))
        );
    }
    Ok(())
}

/// `image rm`: "Untagged: ref" per removed reference, "Deleted: id" when
/// the image itself went.
pub async fn rm(ctx: &Ctx, args: ImageRmArgs) -> Result<()> {
    let client = ctx.images().await?;
    let force = args.force;
    for_each(&args.images, |image| {
        let mut client = client.clone();
        async move {
            let r = client
                .remove(RemoveImageRequest { image, force })
                .await?
                .into_inner();
            if ctx.json() {
                print_json_line(&output::message_json(&r)?);
            } else {
                for u in &r.untagged {
                    println!("Untagged: {u}");
                }
                if !r.deleted.is_empty() {
                    println!("Deleted: {}", r.deleted);
                }
            }
            Ok(())
        }
    })
    .await?
    .into_result()
    .map(drop)
}

/// `image inspect`: a pretty JSON array (one object per line with `-o json`).
pub async fn inspect(ctx: &Ctx, args: ImageIdsArgs) -> Result<()> {
    let client = ctx.images().await?;
    let each = for_each(&args.images, |image| {
        let mut client = client.clone();
        async move {
            client
                .inspect(InspectImageRequest { image })
                .await?
                .into_inner()
                .image
                .ok_or_else(|| missing("image"))
        }
    })
    .await?;
    let list = each
        .values
        .iter()
        .map(output::message_json)
        .collect::<Result<Vec<_>>>()?;
    output::print_inspected(list, ctx.json());
    each.into_result().map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn options_come_first() {
        assert_eq!(
            import_options(Some("busybox:test")).payload,
            Some(Payload::Options(ImportOptions {
                reference: "busybox:test".into()
            }))
        );
        assert_eq!(
            import_options(None).payload,
            Some(Payload::Options(ImportOptions {
                reference: String::new()
            }))
        );
    }

    async fn chunks_of(data: Vec<u8>) -> Vec<usize> {
        let (tx, mut rx) = mpsc::channel(4);
        let (ftx, _frx) = oneshot::channel();
        let task = tokio::spawn(pump(
            std::io::Cursor::new(data),
            import_options(None),
            tx,
            ftx,
        ));
        let mut sizes = Vec::new();
        let first = rx.recv().await.and_then(|m| m.payload);
        assert!(matches!(first, Some(Payload::Options(_))));
        while let Some(m) = rx.recv().await {
            match m.payload {
                Some(Payload::Chunk(c)) => sizes.push(c.len()),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(task.await.is_ok());
        sizes
    }

    #[tokio::test]
    async fn archives_are_sent_in_mib_chunks() {
        assert_eq!(chunks_of(vec![]).await, Vec::<usize>::new());
        assert_eq!(chunks_of(vec![1; 10]).await, [10]);
        assert_eq!(chunks_of(vec![1; CHUNK_SIZE]).await, [CHUNK_SIZE]);
        assert_eq!(
            chunks_of(vec![1; 2 * CHUNK_SIZE + 5]).await,
            [CHUNK_SIZE, CHUNK_SIZE, 5]
        );
    }

    #[test]
    fn image_table() {
        let now = UNIX_EPOCH + Duration::from_secs(100_000);
        let images = vec![
            Image {
                id: format!("sha256:{}", "ab".repeat(32)),
                references: vec![
                    "docker.io/library/busybox:latest".into(),
                    "docker.io/library/busybox:1.36".into(),
                ],
                size_bytes: 4_261_000,
                created_at: Some(prost_types::Timestamp {
                    seconds: 100_000 - 7200,
                    nanos: 0,
                }),
                ..Default::default()
            },
            Image {
                id: format!("sha256:{}", "cd".repeat(32)),
                size_bytes: 999,
                ..Default::default()
            },
        ];
        assert_eq!(
            output::table(&IMAGE_HEADERS, &image_rows(&images, now)),
            "REPOSITORY   TAG      IMAGE ID       CREATED       SIZE\n\
             busybox      latest   abababababab   2 hours ago   4.26MB\n\
             busybox      1.36     abababababab   2 hours ago   4.26MB\n\
             <none>       <none>   cdcdcdcdcdcd   N/A           999B\n"
        );
    }
}

/// `pull`.
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

/// `login`.
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

/// `logout`.
#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    /// Registry host[:port]; Docker Hub when omitted.
    pub registry: Option<String>,
}

/// Reads a password: standard input up to the first newline (which is not
/// part of it), as `docker login --password-stdin` does.
async fn read_password() -> Result<String> {
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
fn registry_error(s: tonic::Status) -> Error {
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
    }
}

/// How `pull` shows progress.
enum Display {
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
    fn update(&mut self, p: &PullImageProgress) -> Result<()> {
        let short = |d: &str| output::short_image_id(d).to_string();
        let json = matches!(self, Display::Json { .. });
        match self {
            Display::Bars { multi, bars } => {
                while bars.len() < p.layers.len() {
                    let style = indicatif::ProgressStyle::with_template(
                        "{prefix}: {msg:15} [{bar:30}] {bytes}/{total_bytes}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> ");
                    let l = &p.layers[bars.len()];
                    let bar = multi.add(indicatif::ProgressBar::new(l.total_bytes.max(0) as u64));
                    bar.set_style(style);
                    bar.set_prefix(short(&l.digest));
                    bars.push(bar);
                }
                for (bar, l) in bars.iter().zip(&p.layers) {
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
                last.resize(p.layers.len(), LayerState::Unspecified as i32);
                for (i, l) in p.layers.iter().enumerate() {
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

    fn finish(&self) {
        if let Display::Bars { bars, .. } = self {
            for b in bars {
                b.finish();
            }
        }
    }
}

/// `pull REF`: pulls through the agent, showing per-layer progress.
pub async fn pull(ctx: &Ctx, args: PullArgs) -> Result<()> {
    use std::io::IsTerminal;
    let credentials = match args.username {
        Some(username) => {
            if !args.password_stdin {
                return Err(Error::Message(
                    "--username needs --password-stdin (the password is read from stdin)".into(),
                ));
            }
            Some(RegistryCredentials {
                username,
                password: read_password().await?,
            })
        }
        None => None,
    };
    let mut client = ctx.images().await?;
    let mut stream = client
        .pull(PullImageRequest {
            reference: args.reference.clone(),
            credentials,
        })
        .await
        .map_err(registry_error)?
        .into_inner();
    let mut display = if ctx.json() {
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
    };
    let mut announced = false;
    let mut image = None;
    while let Some(msg) = stream.next().await {
        let msg = msg.map_err(|e| {
            display.finish();
            registry_error(e)
        })?;
        if !announced && !msg.manifest_digest.is_empty() && !ctx.json() {
            announced = true;
            let line = format!("{}: resolved to {}", msg.reference, msg.manifest_digest);
            match &display {
                Display::Bars { multi, .. } => {
                    let _ = multi.println(line);
                }
                _ => println!("{line}"),
            }
        }
        display.update(&msg)?;
        if msg.image.is_some() {
            image = msg.image;
        }
    }
    display.finish();
    let image = image.ok_or_else(|| Error::Message("the pull ended without an image".into()))?;
    if ctx.json() {
        print_json_line(&output::message_json(&image)?);
    } else {
        for r in &image.references {
            println!("Pulled: {r} ({})", image.id);
        }
    }
    Ok(())
}

/// `login [REGISTRY] -u USER --password-stdin`: checks and stores
/// credentials on the agent.
pub async fn login(ctx: &Ctx, args: LoginArgs) -> Result<()> {
    if !args.password_stdin {
        return Err(Error::Message(
            "give the password on stdin with --password-stdin".into(),
        ));
    }
    let password = read_password().await?;
    let r = ctx
        .images()
        .await?
        .login(LoginRequest {
            registry: args.registry.unwrap_or_default(),
            credentials: Some(RegistryCredentials {
                username: args.username,
                password,
            }),
        })
        .await
        .map_err(registry_error)?
        .into_inner();
    if ctx.json() {
        print_json_line(&output::message_json(&r)?);
    } else {
        println!("Login succeeded: {} as {}", r.registry, r.username);
    }
    Ok(())
}

/// `logout [REGISTRY]`.
pub async fn logout(ctx: &Ctx, args: LogoutArgs) -> Result<()> {
    let r = ctx
        .images()
        .await?
        .logout(LogoutRequest {
            registry: args.registry.unwrap_or_default(),
        })
        .await?
        .into_inner();
    if ctx.json() {
        print_json_line(&output::message_json(&r)?);
    } else {
        println!("Removed the credentials of {}", r.registry);
    }
    Ok(())
}
