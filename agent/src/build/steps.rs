//! Running a build: the stages the target needs, step by step, each step's
//! result looked up in the cache first.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use tokio::sync::mpsc;

use super::context::Context;
use super::copy::{self, CopyArgs, FromView};
use super::dockerfile::{self, BuildFile, Command, Op, Stage, Step};
use super::error::{BuildError, Result};
use super::expand::expand;
use super::snapshot::Snapshot;
use super::support::{check_platform, check_supported};
use super::{cache, config, layer, run, stages, Builder, Event, Options, Outcome};
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
            self.commit(&mut last, "LABEL (build options)", None)?;
        }
        let id = match &last.image_id {
            Some(id) => id.clone(),
            // `FROM scratch` and nothing else: an image with no layers.
            None => self.commit(&mut last, "FROM scratch", None)?.id,
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
            Snapshot::of_image(&self.b.store, &image)?
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
        let (extra, copy_from) = match &step.op {
            Op::Copy(c) => {
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
                    (Source::Dir(Context { root: dir }), names)
                };
                let srcs = self.copy_sources(&from, &sources)?;
                let digest = super::content::content_digest(&srcs)?;
                (digest, Some((from, sources)))
            }
            Op::Run { .. } => (format!("network={}", self.opts.network), None),
            _ => (String::new(), None),
        };
        let key = cache::key(&parent, &step.canonical(), args, &extra);
        if !self.opts.no_cache {
            if let Some(img) = self
                .b
                .cache
                .get(&key)
                .and_then(|id| self.b.store.resolve(&id).ok())
            {
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
            } => self.run_step(step, command, heredocs, snap, args).await?,
            Op::Copy(c) => {
                let (from, sources) =
                    copy_from.ok_or_else(|| BuildError::invalid("COPY without a source"))?;
                self.copy_step(step, c, &from, &sources, snap, args).await?
            }
            Op::Workdir(w) => self.workdir_step(step, w, snap, args).await?,
            _ => {
                let ex = |w: &str, snap: &Snapshot| self.expand_vars(w, step.line, snap, args);
                config::apply(step, snap, &ex)?;
                self.commit(snap, &step.text, None)?
            }
        };
        self.b
            .cache
            .put(&key, &rec.id, &|id| self.b.store.resolve(id).is_ok());
        self.ran += 1;
        self.end(t0, false, rec.id).await
    }

    async fn run_step(
        &mut self,
        step: &Step,
        command: &Command,
        heredocs: &[dockerfile::HereDoc],
        snap: &mut Snapshot,
        args: &BTreeMap<String, String>,
    ) -> Result<ImageRecord> {
        let argv = match command {
            Command::Exec(v) => v.clone(),
            Command::Shell(s) if !heredocs.is_empty() => {
                super::heredoc::run_argv(config::shell_of(snap), s, heredocs)?
            }
            Command::Shell(s) => {
                let mut v = config::shell_of(snap);
                v.push(s.clone());
                v
            }
        };
        if argv.is_empty() {
            return Err(BuildError::invalid(format!(
                "line {}: RUN has no command",
                step.line
            )));
        }
        // The image a RUN starts from must be in the store: `FROM scratch`
        // has none until a first step.
        if snap.image_id.is_none() {
            self.commit(snap, "FROM scratch", None)?;
        }
        let image = snap.image_id.clone().unwrap_or_default();
        let rec = self.b.store.resolve(&image)?;
        let layer_dirs = self.b.store.layer_dirs(&rec);
        let spec = run::RunSpec {
            image,
            args: argv,
            build_env: args.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            network: if self.opts.network.is_empty() {
                "none".into()
            } else {
                self.opts.network.clone()
            },
            build_id: self.id.clone(),
            number: self.number,
            clamp_secs: self.opts.source_date_epoch,
        };
        let dest = self.dir.join(format!("layer-{}.tar", self.number));
        let (code, blob) = run::run(&self.b.mgr, spec, layer_dirs, &self.events, &dest).await?;
        if code != 0 {
            return Err(BuildError::RunFailed {
                number: self.number,
                total: self.total,
                instruction: capped(&step.text).to_string(),
                code,
            });
        }
        self.commit(snap, &format!("RUN {}", config::run_text(command)), blob)
    }

    /// The root a COPY reads from: the context, or a view of another
    /// stage's or image's files.
    async fn copy_source(
        &mut self,
        from: Option<&str>,
        step: &Step,
        snap: &Snapshot,
        args: &BTreeMap<String, String>,
    ) -> Result<Source> {
        let Some(from) = from else {
            return Ok(Source::Context);
        };
        let from = self.expand_vars(from, step.line, snap, args)?;
        let stage = self
            .file
            .stages
            .iter()
            .position(|s| s.steps.iter().any(|x| std::ptr::eq(x, step)))
            .unwrap_or(self.file.stages.len());
        let image = match stages::stage_named(&self.file, &from, stage, true) {
            Some(j) => {
                let s = self.results.get(&j).ok_or_else(|| {
                    BuildError::invalid(format!("stage {:?} was not built", capped(&from)))
                })?;
                match &s.image_id {
                    Some(id) => Some(self.b.store.resolve(id)?),
                    None => None,
                }
            }
            None => Some(self.base_image(&from).await?),
        };
        let layers = image
            .map(|i| self.b.store.layer_dirs(&i))
            .unwrap_or_default();
        let at = self.dir.join(format!("from-{}", self.number + 1));
        Ok(Source::View(FromView::open(&layers, &at)?))
    }

    fn copy_sources(&self, from: &Source, sources: &[String]) -> Result<Vec<PathBuf>> {
        let root = from.context(&self.ctx);
        let mut out = Vec::new();
        for s in sources {
            out.extend(root.sources(s)?);
        }
        Ok(out)
    }

    async fn copy_step(
        &mut self,
        step: &Step,
        c: &dockerfile::CopySpec,
        from: &Source,
        sources: &[String],
        snap: &mut Snapshot,
        args: &BTreeMap<String, String>,
    ) -> Result<ImageRecord> {
        let ex = |s: &str| self.expand_vars(s, step.line, snap, args);
        let dest = ex(&c.dest)?;
        let chown = c.chown.as_deref().map(ex).transpose()?;
        let chmod = c.chmod.as_deref().map(ex).transpose()?;
        let layers = self.layer_dirs(snap)?;
        let workdir = snap.field("WorkingDir");
        let plan = copy::plan(
            from.context(&self.ctx),
            &CopyArgs {
                sources,
                dest: &dest,
                chown: chown.as_deref(),
                chmod: chmod.as_deref(),
            },
            if workdir.is_empty() { "/" } else { &workdir },
            &layers,
            self.opts.source_date_epoch,
        )?;
        let path = self.dir.join(format!("layer-{}.tar", self.number));
        let blob =
            tokio::task::spawn_blocking(move || layer::copy_layer(&plan.items, &plan.opts, &path))
                .await
                .map_err(|e| {
                    BuildError::io("writing the COPY layer", std::io::Error::other(e))
                })??;
        let by = format!("COPY {} {}", sources.join(" "), dest);
        self.commit(snap, &by, Some(blob))
    }

    /// WORKDIR: sets the working directory and makes it (a layer holding
    /// it) when the image does not have it, as Docker does.
    async fn workdir_step(
        &mut self,
        step: &Step,
        w: &str,
        snap: &mut Snapshot,
        args: &BTreeMap<String, String>,
    ) -> Result<ImageRecord> {
        let w = self.expand_vars(w, step.line, snap, args)?;
        let cur = snap.field("WorkingDir");
        let abs = if w.starts_with('/') {
            copy::clean_abs(&w)
        } else {
            copy::clean_abs(&format!("{}/{w}", if cur.is_empty() { "/" } else { &cur }))
        };
        snap.runtime().insert("WorkingDir".into(), json!(abs));
        let layers = self.layer_dirs(snap)?;
        let mut missing = Vec::new();
        let mut at = Some(Path::new(&abs));
        while let Some(p) = at {
            let text = p.to_string_lossy();
            if text == "/" || super::lower::has(&layers, &text) {
                break;
            }
            missing.push((text.into_owned(), 0o755, 0, 0));
            at = p.parent();
        }
        if missing.is_empty() {
            return self.commit(snap, &format!("WORKDIR {abs}"), None);
        }
        missing.reverse();
        let opts = layer::CopyOpts {
            uid: 0,
            gid: 0,
            chmod: None,
            clamp_secs: self.opts.source_date_epoch,
            parents: missing,
        };
        let path = self.dir.join(format!("layer-{}.tar", self.number));
        let blob = tokio::task::spawn_blocking(move || layer::copy_layer(&[], &opts, &path))
            .await
            .map_err(|e| BuildError::io("writing the WORKDIR layer", std::io::Error::other(e)))??;
        self.commit(snap, &format!("WORKDIR {abs}"), Some(blob))
    }

    fn commit(
        &self,
        snap: &mut Snapshot,
        created_by: &str,
        blob: Option<layer::LayerBlob>,
    ) -> Result<ImageRecord> {
        snap.commit(&self.b.store, &self.created, created_by, blob)
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
