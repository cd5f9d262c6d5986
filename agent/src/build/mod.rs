//! Building images from a Dockerfile (`berthctl build`, Builds.Build).
//!
//! The context arrives as a tar and is unpacked into a private directory
//! ([`context`]); the Dockerfile is parsed into berth's own plan
//! ([`dockerfile`], [`expand`]); the stages the target needs ([`stages`])
//! run step by step ([`steps`]): RUN in a berth container ([`run`]) whose
//! writable layer becomes the step's layer ([`layer`]), COPY straight from
//! the context ([`copy`]), everything else in the config. Each step's result
//! is a store image kept as build cache ([`snapshot`], [`cache`]).

mod archive;
mod cache;
mod config;
pub(crate) mod content;
mod context;
mod copy;
pub mod dockerfile;
mod error;
pub mod expand;
mod heredoc;
pub mod layer;
mod lower;
mod run;
mod run_mounts;
mod snapshot;
mod stages;
mod steps;
mod support;
pub(crate) mod walk;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

pub use context::MAX_CONTEXT_BYTES;
pub use error::BuildError;
pub use run::BUILD_LABEL;

use crate::container::Manager;
use crate::image::service::Pulling;
use crate::image::{ImageRecord, ImageStore};

/// The most builds one agent runs at once (each holds a context on disk and
/// runs containers); more get RESOURCE_EXHAUSTED.
pub const MAX_BUILDS: usize = 4;

/// What to build (see the API's BuildOptions for each field's meaning).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// References for the result.
    pub tags: Vec<String>,
    /// The Dockerfile's path in the context.
    pub dockerfile: String,
    /// `--build-arg`s.
    pub build_args: BTreeMap<String, String>,
    /// The target stage (name or index); empty: the last.
    pub target: String,
    /// Use no cached result.
    pub no_cache: bool,
    /// The platform asked for ("" for the agent's).
    pub platform: String,
    /// RUN's network mode.
    pub network: String,
    /// File times and `created` are clamped to this (seconds).
    pub source_date_epoch: u64,
    /// Labels added to the result's config.
    pub labels: BTreeMap<String, String>,
}

/// Progress of a build, in order.
#[derive(Debug, Clone)]
pub enum Event {
    /// A step begins (or comes from the cache).
    Step {
        /// 1-based over the build.
        number: u32,
        /// Steps in the build.
        total: u32,
        /// The stage's name or index.
        stage: String,
        /// The instruction as written (capped).
        instruction: String,
        /// Its line.
        line: u32,
        /// From the cache.
        cached: bool,
    },
    /// Output of a RUN step.
    Output {
        /// The step.
        number: u32,
        /// The bytes.
        data: Vec<u8>,
        /// From standard error.
        stderr: bool,
    },
    /// A step ended.
    Done {
        /// The step.
        number: u32,
        /// From the cache.
        cached: bool,
        /// How long it took.
        duration_ms: u64,
        /// The image it made (empty for steps that change nothing stored).
        image_id: String,
    },
    /// Something the user should know.
    Warning(String),
}

/// A finished build.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The image, with its tags.
    pub image: ImageRecord,
    /// Steps that came from the cache.
    pub cached_steps: u32,
    /// Steps that ran.
    pub run_steps: u32,
    /// Wall time.
    pub duration_ms: u64,
}

/// Builds images on this agent.
pub struct Builder {
    store: Arc<ImageStore>,
    mgr: Arc<Manager>,
    pulling: Arc<Pulling>,
    cache: cache::Cache,
    /// Where builds keep their context and layers while they run.
    work: PathBuf,
    /// `RUN --mount=type=cache` directories (`<state>/build/caches`).
    caches: run_mounts::Caches,
    slots: Arc<Semaphore>,
}

impl Builder {
    /// A builder keeping its cache index and work directories under
    /// `dir` (`<state>/build`, made private by `state_dir`). Work
    /// directories a crash left are removed.
    pub fn new(
        store: Arc<ImageStore>,
        mgr: Arc<Manager>,
        pulling: Arc<Pulling>,
        dir: &Path,
    ) -> std::io::Result<Arc<Builder>> {
        // Canonical: the kernel names mounts and resolved paths so.
        let dir = std::fs::canonicalize(dir)?;
        let work = dir.join("work");
        if work.exists() {
            // A crash mid-COPY --from left its view mounted: detached
            // first, or removing would meet a read-only file system.
            let detached = crate::sys::overlay::unmount_under(&work);
            if detached > 0 {
                tracing::info!("detached {detached} mounts a cut-short build left");
            }
            if let Err(e) = std::fs::remove_dir_all(&work) {
                // Not fatal: builds use fresh directories under it.
                tracing::warn!(
                    "removing what cut-short builds left in {}: {e}",
                    work.display()
                );
            }
        }
        // It may still be there: what could not be removed is left.
        match crate::state_dir::create_private_dir(&work) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            other => other?,
        }
        Ok(Arc::new(Builder {
            store,
            mgr,
            pulling,
            cache: cache::Cache::open(dir.join("cache.json")),
            caches: run_mounts::Caches::new(dir.join("caches")),
            work,
            slots: Arc::new(Semaphore::new(MAX_BUILDS)),
        }))
    }

    /// Where an upload for a build may be written (inside the work dir, so
    /// a crash's leftovers go at the next start).
    pub fn upload_path(&self, id: &str) -> PathBuf {
        self.work.join(format!("{id}.tar"))
    }

    /// Takes a build slot, or None when [`MAX_BUILDS`] run.
    pub fn try_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Runs a build of the context tar at `archive`; progress goes to
    /// `events`. Nothing is tagged unless the whole build succeeds.
    pub async fn build(
        self: &Arc<Self>,
        id: &str,
        opts: Options,
        archive: &Path,
        events: mpsc::Sender<Event>,
    ) -> Result<Outcome, BuildError> {
        let dir = self.work.join(id);
        let _cleanup = RemoveDir(dir.clone());
        crate::state_dir::create_private_dir(&dir)
            .map_err(|e| BuildError::io("creating the build directory", e))?;
        steps::Build::prepare(self.clone(), id, opts, archive, &dir, events)
            .await?
            .run()
            .await
    }
}

/// Removes a build's work directory however the build ends (also when it
/// is dropped, its client gone), on the blocking pool: a context may be
/// gigabytes.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let dir = std::mem::take(&mut self.0);
        let remove = move || {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!("removing build directory {}: {e}", dir.display());
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}
