//! Running a build: the stages the target needs, step by step, each step's
//! result looked up in the cache first.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use tokio::sync::mpsc;

use super::context::Context;
use super::copy::FromView;
use super::dockerfile::{self, BuildFile, Op, Stage, Step};
use super::error::{BuildError, Result};
use super::expand::expand;
use super::snapshot::Snapshot;
mod layers;

use super::support::{check_platform, check_supported};
use super::{cache, config, layer, run_mounts, stages, Builder, Event, Options, Outcome};
use crate::error::capped;
use crate::image::{ImageError, ImageRecord};

/// The largest Dockerfile read.
const MAX_DOCKERFILE: u64 = 1 << 20;

/// One build in progress.
pub struct Build {
    b: Arc<Builder>,
    id: String,
    opts: Options,
    ctx: Context,
    file: BuildFile,
    dir: PathBuf,
    events: mpsc::Sender<Event>,
    /// RFC 3339 of `source_date_epoch`: every `created` of the build.
    created: String,
    number: u32,
    total: u32,
    cached: u32,
    ran: u32,
    /// Results of finished stages, by index.
    results: HashMap<usize, Snapshot>,
    /// The stage being built.
    stage: usize,
    /// A step of the stage being built set CMD (a later ENTRYPOINT keeps it).
    cmd_set: bool,
    /// Every image the build stands on, kept from `image prune`.
    pins: std::sync::Mutex<Vec<crate::image::store::ImagePin>>,
    started: Instant,
}

impl Build {
    /// Unpacks the context, reads and checks the Dockerfile: everything
    /// that can fail on input fails here, before any step runs.
    pub async fn prepare(
        b: Arc<Builder>,
        id: &str,
        opts: Options,
        archive: &Path,
        dir: &Path,
        events: mpsc::Sender<Event>,
    ) -> Result<Build> {
        let started = Instant::now();
        check_platform(&opts.platform)?;
        let root = dir.join("context");
        let archive = archive.to_path_buf();
        let name = if opts.dockerfile.is_empty() {
            "Dockerfile".to_string()
        } else {
            opts.dockerfile.clone()
        };
        let (ctx, text) = tokio::task::spawn_blocking(move || {
            let ctx = Context::unpack(&archive, &root)?;
            let text = ctx.read_dockerfile(&name, MAX_DOCKERFILE)?;
            Ok::<_, BuildError>((ctx, text))
        })
        .await
        .map_err(|e| BuildError::io("unpacking the context", std::io::Error::other(e)))??;
        let file = dockerfile::parse(&text).map_err(|e| BuildError::Syntax(e.to_string()))?;
        check_supported(&file)?;
        // SOURCE_DATE_EPOCH makes `created` reproducible; without it the
        // image says when it was built, as Docker's does.
        let nanos = match opts.source_date_epoch {
            0 => crate::container::now_nanos(),
            s => i64::try_from(s)
                .ok()
                .and_then(|s| s.checked_mul(1_000_000_000))
                .ok_or_else(|| BuildError::invalid("source_date_epoch is out of range"))?,
        };
        let created =
            String::from_utf8_lossy(&berth_runtime::rfc3339::format_nanos(nanos)).into_owned();
        Ok(Build {
            b,
            id: id.to_string(),
            opts,
            ctx,
            file,
            dir: dir.to_path_buf(),
            events,
            created,
            number: 0,
            total: 0,
            cached: 0,
            ran: 0,
            results: HashMap::new(),
            stage: 0,
            cmd_set: false,
            pins: std::sync::Mutex::new(Vec::new()),
            started,
        })
    }

    /// Runs the stages the target needs and tags the result.
    pub async fn run(mut self) -> Result<Outcome> {
        let target = stages::target_index(&self.file, &self.opts.target)?;
        let needed = stages::needed(&self.file, target);
        self.total = needed
            .iter()
            .map(|&i| 1 + self.file.stages[i].steps.len() as u32)
            .sum();
        for arg in stages::unused_args(&self.file, &needed, &self.opts.build_args) {
            self.send(Event::Warning(format!(
                "build argument {:?} is not consumed by any ARG of the stages built",
                capped(&arg)
            )))
            .await?;
        }
        for &i in &needed {
            let result = self.stage(i).await?;
            self.results.insert(i, result);
        }
        let mut last = self
            .results
            .remove(&target)
            .ok_or_else(|| BuildError::invalid("the target stage made nothing"))?;
        if !self.opts.labels.is_empty() {
            let labels = self.opts.labels.clone();
            let rt = last.runtime();
            let map = rt.entry("Labels").or_insert_with(|| json!({}));
            for (k, v) in labels {
                map[k] = json!(v);
            }
            self.commit(&mut last, "LABEL (build options)", None)
                .await?;
        }
        let id = match &last.image_id {
            Some(id) => id.clone(),
            // `FROM scratch` and nothing else: an image with no layers.
            None => self.commit(&mut last, "FROM scratch", None).await?.id,
        };
        let mut image = self.b.store.resolve(&id)?;
        for tag in &self.opts.tags {
            image = self.b.store.tag(&id, tag)?;
        }
        Ok(Outcome {
            image,
            cached_steps: self.cached,
            run_steps: self.ran,
            duration_ms: self.started.elapsed().as_millis() as u64,
        })
    }

    /// Builds stage `i`.
    async fn stage(&mut self, i: usize) -> Result<Snapshot> {
        let stage: Stage = self.file.stages[i].clone();
        self.stage = i;
        self.cmd_set = false;
        let label = stage.name.clone().unwrap_or_else(|| i.to_string());
        let globals = stages::global_args(&self.file, &self.opts.build_args);
        let base = self.expand_with(&stage.base, stage.line, &|k| globals.get(k).cloned())?;
        let from_text = format!("FROM {}", capped(&base));
        let t0 = self.begin(&label, &from_text, stage.line, false).await?;
        let mut snap = if base.eq_ignore_ascii_case("scratch") {
            Snapshot::scratch(&self.created)
        } else if let Some(j) = stages::stage_named(&self.file, &base, i, false) {
            self.results
                .get(&j)
                .cloned()
                .ok_or_else(|| BuildError::invalid(format!("stage {j} was not built")))?
        } else {
            let image = self.base_image(&base).await?;
            self.hold(&image.id);
            let snap = Snapshot::of_image(&self.b.store, &image)?;
            let triggers = snap.list("OnBuild").len();
            if triggers > 0 {
                return Err(BuildError::Unsupported(format!(
                    "a base image with ONBUILD triggers ({base:?} has {triggers}); berth does not run them"
                )));
            }
            snap
        };
        self.end(t0, false, snap.image_id.clone().unwrap_or_default())
            .await?;
        // ARGs in scope: declared in this stage (a global one redeclared
        // without a default takes the global value).
        let mut args: BTreeMap<String, String> = BTreeMap::new();
        for step in &stage.steps {
            self.step(&label, step, &mut snap, &mut args, &globals)
                .await?;
        }
        Ok(snap)
    }

    /// The FROM image: from the store, or pulled when it is not there.
    async fn base_image(&self, name: &str) -> Result<ImageRecord> {
        match self.b.store.resolve(name) {
            Ok(img) => Ok(img),
            Err(ImageError::NotFound(_)) if !name.starts_with("sha256:") => {
                let (tx, _rx) = tokio::sync::watch::channel(Default::default());
                let pulled = self.b.pulling.pull(name, None, &tx).await?;
                Ok(pulled.image)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Runs (or finds in the cache) one step.
    async fn step(
        &mut self,
        label: &str,
        step: &Step,
        snap: &mut Snapshot,
        args: &mut BTreeMap<String, String>,
        globals: &BTreeMap<String, String>,
    ) -> Result<()> {
        if matches!(step.op, Op::Cmd(_)) {
            // Also when the step comes from the cache: a later ENTRYPOINT
            // that does not must keep this CMD.
            self.cmd_set = true;
        }
        if let Op::Arg(decls) = &step.op {
            // Changes only what later steps see: nothing to store.
            let t0 = self.begin(label, &step.text, step.line, false).await?;
            for d in decls {
                let value = self
                    .opts
                    .build_args
                    .get(&d.name)
                    .cloned()
                    .or_else(|| {
                        d.default.as_ref().map(|v| {
                            self.expand_vars(v, step.line, snap, args)
                                .unwrap_or_else(|_| v.clone())
                        })
                    })
                    .or_else(|| globals.get(&d.name).cloned());
                if let Some(v) = value {
                    args.insert(d.name.clone(), v);
                }
            }
            return self.end(t0, false, String::new()).await;
        }
        let parent = snap.image_id.clone().unwrap_or_else(|| "scratch".into());
        // COPY's key covers the content it copies.
        let (extra, copy_from, mounts) = match &step.op {
            Op::Copy(c) | Op::Add(c) => {
                let (from, sources) = if c.heredocs.is_empty() {
                    let from = self
                        .copy_source(c.from.as_deref(), step, snap, args)
                        .await?;
                    let sources = c
                        .sources
                        .iter()
                        .map(|s| self.expand_vars(s, step.line, snap, args))
                        .collect::<Result<Vec<_>>>()?;
                    (from, sources)
                } else {
                    let dir = self.dir.join(format!("heredoc-{}", self.number + 1));
                    let ex = |s: &str| self.expand_vars(s, step.line, snap, args);
                    let names = super::heredoc::write_files(&dir, &c.heredocs, &ex)?;
                    (Source::Dir(Context::at(&dir)?), names)
                };
                let root = from.context(&self.ctx).root.clone();
                let names = sources.clone();
                // The whole tree is read: off the async workers.
                let digest = blocking("hashing the COPY sources", move || {
                    let ctx = Context { root };
                    let mut paths = Vec::new();
                    for s in &names {
                        paths.extend(ctx.sources(s)?);
                    }
                    Ok(super::content::content_digest(&paths)?)
                })
                .await?;
                (digest, Some((from, sources)), Vec::new())
            }
            Op::Run { mounts, .. } => {
                let parsed = self.run_mounts(mounts, step, snap, args)?;
                // A bind of the context is an input like a COPY's: its
                // content is part of the key (as in BuildKit).
                let mut sources = Vec::new();
                for m in &parsed {
                    if let run_mounts::RunMount::Bind { source, .. } = m {
                        sources.push(self.ctx.source_path(source)?);
                    }
                }
                let mut extra = format!("network={}", self.opts.network);
                if !sources.is_empty() {
                    let digest = blocking("hashing the RUN --mount binds", move || {
                        Ok(super::content::content_digest(&sources)?)
                    })
                    .await?;
                    extra.push_str(&format!("\nbinds={digest}"));
                }
                (extra, None, parsed)
            }
            _ => (String::new(), None, Vec::new()),
        };
        // SOURCE_DATE_EPOCH decides file times and `created`: part of
        // every step's result.
        let extra = format!("{extra}\nsource_date_epoch={}", self.opts.source_date_epoch);
        let key = cache::key(&parent, &step.canonical(), args, &extra);
        if !self.opts.no_cache {
            // Pinned before it is looked up: a prune between the two
            // cannot take it.
            let hit = self.b.cache.get(&key).and_then(|id| {
                self.hold(&id);
                self.b.store.resolve(&id).ok()
            });
            if let Some(img) = hit {
                let t0 = self.begin(label, &step.text, step.line, true).await?;
                *snap = Snapshot::of_image(&self.b.store, &img)?;
                self.cached += 1;
                return self.end(t0, true, img.id).await;
            }
        }
        let t0 = self.begin(label, &step.text, step.line, false).await?;
        let rec = match &step.op {
            Op::Run {
                command, heredocs, ..
            } => {
                self.run_step(step, command, heredocs, &mounts, snap, args)
                    .await?
            }
            Op::Copy(c) | Op::Add(c) => {
                let (from, sources) =
                    copy_from.ok_or_else(|| BuildError::invalid("COPY without a source"))?;
                self.copy_step(step, c, &from, &sources, snap, args).await?
            }
            Op::Workdir(w) => self.workdir_step(step, w, snap, args).await?,
            _ => {
                let ex = |w: &str, snap: &Snapshot| self.expand_vars(w, step.line, snap, args);
                config::apply(step, snap, &ex, self.cmd_set)?;
                self.commit(snap, &step.text, None).await?
            }
        };
        let (b, id) = (self.b.clone(), rec.id.clone());
        blocking("recording the step in the build cache", move || {
            b.cache.put(&key, &id);
            Ok(())
        })
        .await?;
        self.ran += 1;
        self.end(t0, false, rec.id).await
    }

    /// The env a RUN gets on top of the image's: the ARGs in scope that no
    /// ENV of the image sets (ENV wins, as in Docker), and Docker's
    /// predefined proxy arguments given to the build, declared or not.
    fn run_env(&self, snap: &Snapshot, args: &BTreeMap<String, String>) -> Vec<String> {
        let env = snap.env();
        let in_env = |k: &str| {
            env.iter()
                .any(|e| e.split_once('=').is_some_and(|(n, _)| n == k))
        };
        let mut out: Vec<String> = args
            .iter()
            .filter(|(k, _)| !in_env(k))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for p in stages::PREDEFINED {
            if let Some(v) = self.opts.build_args.get(*p) {
                if !args.contains_key(*p) && !in_env(p) {
                    out.push(format!("{p}={v}"));
                }
            }
        }
        out
    }

    /// Commits the step's result (unpacking its layer into the store, off
    /// the async workers).
    async fn commit(
        &self,
        snap: &mut Snapshot,
        created_by: &str,
        blob: Option<layer::LayerBlob>,
    ) -> Result<ImageRecord> {
        let store = self.b.store.clone();
        let created = self.created.clone();
        let by = created_by.to_string();
        let mut next = snap.clone();
        let (next, rec, pin) = blocking("committing the step", move || {
            let (rec, pin) = next.commit(&store, &created, &by, blob)?;
            Ok((next, rec, pin))
        })
        .await?;
        self.pins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(pin);
        *snap = next;
        Ok(rec)
    }

    /// Keeps image `id` from `image prune` until the build ends.
    fn hold(&self, id: &str) {
        let pin = self.b.store.pin_image(id);
        self.pins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(pin);
    }

    /// The time new layers' file times are clamped to: SOURCE_DATE_EPOCH
    /// when given; otherwise none (times are kept, as Docker keeps them:
    /// tools that compare them, make and cargo, rely on that).
    fn clamp(&self) -> u64 {
        match self.opts.source_date_epoch {
            0 => u64::MAX,
            s => s,
        }
    }

    fn layer_dirs(&self, snap: &Snapshot) -> Result<Vec<PathBuf>> {
        match &snap.image_id {
            Some(id) => Ok(self.b.store.layer_dirs(&self.b.store.resolve(id)?)),
            None => Ok(Vec::new()),
        }
    }

    /// Expands `word` with the stage's env and ARGs (env wins, as in Docker).
    fn expand_vars(
        &self,
        word: &str,
        line: usize,
        snap: &Snapshot,
        args: &BTreeMap<String, String>,
    ) -> Result<String> {
        let env: BTreeMap<String, String> = snap
            .env()
            .into_iter()
            .filter_map(|e| {
                e.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        self.expand_with(word, line, &|k| env.get(k).or(args.get(k)).cloned())
    }

    fn expand_with(
        &self,
        word: &str,
        line: usize,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String> {
        expand(word, self.file.escape, lookup)
            .map_err(|e| BuildError::Syntax(format!("Dockerfile:{line}: {e}")))
    }

    async fn begin(
        &mut self,
        stage: &str,
        text: &str,
        line: usize,
        cached: bool,
    ) -> Result<Instant> {
        self.number += 1;
        self.send(Event::Step {
            number: self.number,
            total: self.total,
            stage: stage.to_string(),
            instruction: text.to_string(),
            line: line as u32,
            cached,
        })
        .await?;
        Ok(Instant::now())
    }

    async fn end(&self, t0: Instant, cached: bool, image_id: String) -> Result<()> {
        self.send(Event::Done {
            number: self.number,
            cached,
            duration_ms: t0.elapsed().as_millis() as u64,
            image_id,
        })
        .await
    }

    async fn send(&self, ev: Event) -> Result<()> {
        self.events
            .send(ev)
            .await
            .map_err(|_| BuildError::Cancelled)
    }
}

/// Where a COPY reads from.
enum Source {
    Context,
    View(FromView),
    /// A private directory (a COPY's here-documents).
    Dir(Context),
}

impl Source {
    fn context<'a>(&'a self, ctx: &'a Context) -> &'a Context {
        match self {
            Source::Context => ctx,
            Source::View(v) => &v.context,
            Source::Dir(c) => c,
        }
    }
}

/// Runs `f` on the blocking pool: file system work that may take long
/// (a whole tree hashed, a layer unpacked) must not hold an async worker.
async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BuildError::io(what.to_string(), std::io::Error::other(e)))?
}
