//! The steps that make a layer: RUN (a container), COPY (from the context,
//! another stage or an image) and WORKDIR (the directory made when the
//! image lacks it).

use std::collections::BTreeMap;

use serde_json::json;

use super::{blocking, Build, Source};
use crate::build::context::Context;
use crate::build::copy::{self, CopyArgs, FromView};
use crate::build::dockerfile::{self, Command, Step};
use crate::build::error::{BuildError, Result};
use crate::build::snapshot::Snapshot;
use crate::build::{config, layer, run, run_mounts, stages};
use crate::error::capped;
use crate::image::ImageRecord;

impl Build {
    pub(super) async fn run_step(
        &mut self,
        step: &Step,
        command: &Command,
        heredocs: &[dockerfile::HereDoc],
        mounts: &[run_mounts::RunMount],
        snap: &mut Snapshot,
        args: &BTreeMap<String, String>,
    ) -> Result<ImageRecord> {
        let argv = match command {
            Command::Exec(v) => v.clone(),
            Command::Shell(s) if !heredocs.is_empty() => {
                crate::build::heredoc::run_argv(config::shell_of(snap), s, heredocs)?
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
            self.commit(snap, "FROM scratch", None).await?;
        }
        let image = snap.image_id.clone().unwrap_or_default();
        let rec = self.b.store.resolve(&image)?;
        let layer_dirs = self.b.store.layer_dirs(&rec);
        let mut mount_points = Vec::new();
        for m in mounts {
            let real = crate::build::lower::resolve(&layer_dirs, m.target())?;
            mount_points.push(real.trim_start_matches('/').to_string());
        }
        // Locked caches stay held while the step runs (on an error, its
        // container's removal may still be under way when they are let go).
        let (mounts, _held) = self.b.caches.prepare(mounts, &self.ctx).await?;
        let spec = run::RunSpec {
            image,
            args: argv,
            build_env: self.run_env(snap, args),
            network: if self.opts.network.is_empty() {
                "none".into()
            } else {
                self.opts.network.clone()
            },
            build_id: self.id.clone(),
            number: self.number,
            clamp_secs: self.clamp(),
            mounts,
            mount_points,
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
            .await
    }

    /// A RUN's `--mount` flags, expanded and parsed (relative targets
    /// against the working directory).
    pub(super) fn run_mounts(
        &self,
        raw: &[String],
        step: &Step,
        snap: &Snapshot,
        args: &BTreeMap<String, String>,
    ) -> Result<Vec<run_mounts::RunMount>> {
        if raw.len() > run_mounts::MAX_MOUNTS {
            return Err(BuildError::invalid(format!(
                "line {}: at most {} RUN --mount flags",
                step.line,
                run_mounts::MAX_MOUNTS
            )));
        }
        let workdir = snap.field("WorkingDir");
        let workdir = if workdir.is_empty() { "/" } else { &workdir };
        raw.iter()
            .map(|r| run_mounts::parse(&self.expand_vars(r, step.line, snap, args)?, workdir))
            .collect()
    }

    /// The root a COPY reads from: the context, or a view of another
    /// stage's or image's files.
    pub(super) async fn copy_source(
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
        let image = match stages::stage_named(&self.file, &from, self.stage, true) {
            Some(j) => {
                let s = self.results.get(&j).ok_or_else(|| {
                    BuildError::invalid(format!("stage {:?} was not built", capped(&from)))
                })?;
                match &s.image_id {
                    Some(id) => Some(self.b.store.resolve(id)?),
                    None => None,
                }
            }
            None => {
                let img = self.base_image(&from).await?;
                self.hold(&img.id);
                Some(img)
            }
        };
        let layers = image
            .map(|i| self.b.store.layer_dirs(&i))
            .unwrap_or_default();
        let at = self.dir.join(format!("from-{}", self.number + 1));
        Ok(Source::View(FromView::open(&layers, &at)?))
    }

    pub(super) async fn copy_step(
        &mut self,
        step: &Step,
        c: &dockerfile::CopySpec,
        from: &Source,
        sources: &[String],
        snap: &mut Snapshot,
        args: &BTreeMap<String, String>,
    ) -> Result<ImageRecord> {
        let ex = |s: &str| self.expand_vars(s, step.line, snap, args);
        let add = matches!(step.op, dockerfile::Op::Add(_));
        if add {
            if let Some(url) = sources.iter().find(|s| crate::build::support::is_remote(s)) {
                return Err(BuildError::Unsupported(format!(
                    "ADD from a URL or a git repository ({:?}, line {})",
                    capped(url),
                    step.line
                )));
            }
        }
        let dest = ex(&c.dest)?;
        let chown = c.chown.as_deref().map(ex).transpose()?;
        let chmod = c.chmod.as_deref().map(ex).transpose()?;
        let layers = self.layer_dirs(snap)?;
        let workdir = snap.field("WorkingDir");
        let workdir = if workdir.is_empty() {
            "/".to_string()
        } else {
            workdir
        };
        let root = from.context(&self.ctx).root.clone();
        let path = self.dir.join(format!("layer-{}.tar", self.number));
        let clamp = self.clamp();
        let (srcs, to) = (sources.to_vec(), dest.clone());
        // ADD unpacks its archives here (the build's work directory, gone
        // with the build).
        let unpack = add.then(|| self.dir.join(format!("add-{}", self.number)));
        let keyword = if add { "ADD" } else { "COPY" };
        let blob = blocking("writing the COPY layer", move || {
            if let Some(dir) = &unpack {
                crate::state_dir::create_private_dir(dir)
                    .map_err(|e| BuildError::io("creating the ADD directory", e))?;
            }
            let made = (|| {
                let plan = copy::plan(
                    &Context { root },
                    &CopyArgs {
                        sources: &srcs,
                        dest: &to,
                        chown: chown.as_deref(),
                        chmod: chmod.as_deref(),
                        unpack_into: unpack.as_deref(),
                    },
                    &workdir,
                    &layers,
                    clamp,
                )?;
                Ok::<_, BuildError>(layer::copy_layer(&plan.items, &plan.opts, &path)?)
            })();
            // The unpacked archives are in the layer now (or the step
            // failed): not kept until the build ends.
            if let Some(dir) = &unpack {
                if let Err(e) = std::fs::remove_dir_all(dir) {
                    tracing::warn!("removing {}: {e}", dir.display());
                }
            }
            made
        })
        .await?;
        let by = format!("{keyword} {} {}", sources.join(" "), dest);
        self.commit(snap, &by, Some(blob)).await
    }

    /// WORKDIR: sets the working directory and makes it (a layer holding
    /// it) when the image does not have it, as Docker does.
    pub(super) async fn workdir_step(
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
        // Made where the image's links lead (a WORKDIR under /var/run
        // in an image whose /var/run links to /run is made in /run).
        let real = crate::build::lower::resolve(&layers, &abs)?;
        if crate::build::lower::has(&layers, &real) {
            return self.commit(snap, &format!("WORKDIR {abs}"), None).await;
        }
        // The directories up to it, those the image has as they are there.
        let mut dirs = Vec::new();
        copy::add_dirs(&mut dirs, &layers, &real, true);
        let opts = layer::CopyOpts {
            uid: 0,
            gid: 0,
            chmod: None,
            chowned: false,
            clamp_secs: self.clamp(),
            parents: dirs,
        };
        let path = self.dir.join(format!("layer-{}.tar", self.number));
        let blob = blocking("writing the WORKDIR layer", move || {
            Ok(layer::copy_layer(&[], &opts, &path)?)
        })
        .await?;
        self.commit(snap, &format!("WORKDIR {abs}"), Some(blob))
            .await
    }
}
