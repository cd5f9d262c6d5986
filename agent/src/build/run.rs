//! A RUN step: a berth container on the parent step's image, its output
//! relayed as it comes, and its writable layer turned into the step's layer.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_runtime::cri_log::{parse_header, Stream, Tag};
use tokio::sync::mpsc;

use super::error::{BuildError, Result};
use super::layer::{self, LayerBlob};
use super::Event;
use crate::container::record::SpecRecord;
use crate::container::rootfs::Rootfs;
use crate::container::{Entry, Manager, LOG_FILE};

/// The label marking a build's containers (removed at berthd's start if a
/// crash left one behind).
pub const BUILD_LABEL: &str = "berth.build";

/// Paths the runtime makes in a container's writable layer as mount points
/// or placeholders: left out of the layer while they are still the empty
/// placeholders the runtime made, as Docker does.
const PLACEHOLDERS: &[&str] = &["proc", "sys", "dev"];

/// Files the runtime writes for each container: never part of a layer,
/// whatever the step did to them (Docker binds them in, so a write to them
/// does not reach its layers either).
const WRITTEN: &[&str] = &["etc/hostname", "etc/hosts", "etc/resolv.conf"];

/// How often the step's log is read for new output while it runs.
const POLL: Duration = Duration::from_millis(100);

/// What a RUN step runs.
pub struct RunSpec {
    /// The parent step's image.
    pub image: String,
    /// The command (shell form already wrapped in the SHELL).
    pub args: Vec<String>,
    /// Build arguments visible to the step, passed as env (not kept).
    pub build_env: Vec<String>,
    /// "none", "bridge" or "host".
    pub network: String,
    /// The build's id (the containers' label).
    pub build_id: String,
    /// The step's number (output events name it).
    pub number: u32,
    /// File times in the layer are clamped to this (seconds).
    pub clamp_secs: u64,
    /// `RUN --mount`s, as container mounts.
    pub mounts: Vec<crate::container::MountSpec>,
    /// Their targets in the image (relative, links resolved): left out of
    /// the layer while they are the empty mount points the runtime made.
    pub mount_points: Vec<String>,
}

/// Removes the step's container however the step ends.
struct Cleanup {
    mgr: Arc<Manager>,
    entry: Option<Arc<Entry>>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            let mgr = self.mgr.clone();
            tokio::spawn(async move {
                if let Err(e) = mgr.remove(&entry, true).await {
                    tracing::warn!("removing build container {}: {e}", entry.id);
                }
            });
        }
    }
}

/// Runs the step; returns its exit code and, when it is 0, its layer
/// (written to `layer_dest`).
pub async fn run(
    mgr: &Arc<Manager>,
    spec: RunSpec,
    layer_dirs: Vec<PathBuf>,
    events: &mpsc::Sender<Event>,
    layer_dest: &Path,
) -> Result<(i32, Option<LayerBlob>)> {
    let mut labels = BTreeMap::new();
    labels.insert(BUILD_LABEL.to_string(), spec.build_id.clone());
    let rec = mgr.create(SpecRecord {
        image: spec.image.clone(),
        command: spec.args.clone(),
        // The image's entrypoint never wraps a RUN.
        entrypoint: Some(Vec::new()),
        env: spec.build_env.clone(),
        network: spec.network.clone(),
        mounts: spec.mounts.clone(),
        labels,
        ..Default::default()
    })?;
    let entry = mgr.get(&rec.id)?;
    let mut cleanup = Cleanup {
        mgr: mgr.clone(),
        entry: Some(entry.clone()),
    };
    let log_path = entry.dir.join(LOG_FILE);
    mgr.start(&entry).await?;
    let mut log = Follower::open(&log_path)?;
    let wait = mgr.wait(&entry, false);
    tokio::pin!(wait);
    let exit = loop {
        tokio::select! {
            res = &mut wait => break res?.1,
            () = tokio::time::sleep(POLL) => {
                log.relay(spec.number, events).await?;
            }
        }
    };
    log.relay(spec.number, events).await?;
    if exit.exit_code != 0 {
        // Removed before the failure is told, so nothing of the build is
        // left when its client hears it failed.
        if let Some(entry) = cleanup.entry.take() {
            mgr.remove(&entry, true).await?;
        }
        return Ok((exit.exit_code, None));
    }
    let upper = Rootfs::under(&entry.dir).upper;
    let dest = layer_dest.to_path_buf();
    let clamp = spec.clamp_secs;
    let points = spec.mount_points;
    let blob = tokio::task::spawn_blocking(move || {
        let lower_has = |rel: &str| super::lower::has(&layer_dirs, rel);
        let mut skip: Vec<&str> = PLACEHOLDERS.to_vec();
        skip.extend(points.iter().map(String::as_str));
        layer::diff_upper(&upper, &skip, WRITTEN, &lower_has, clamp, &dest)
    })
    .await
    .map_err(|e| BuildError::io("diffing the step's layer", std::io::Error::other(e)))??;
    // Removed now rather than by the guard's task: the next step should
    // not race this one's teardown for the disk.
    if let Some(entry) = cleanup.entry.take() {
        mgr.remove(&entry, true).await?;
    }
    Ok((0, Some(blob)))
}

/// Reads a step's log as it grows and relays whole records.
struct Follower {
    reader: BufReader<std::fs::File>,
    pending: Vec<u8>,
}

impl Follower {
    fn open(path: &Path) -> Result<Follower> {
        let file =
            std::fs::File::open(path).map_err(|e| BuildError::io("opening the step's log", e))?;
        Ok(Follower {
            reader: BufReader::new(file),
            pending: Vec::new(),
        })
    }

    /// Sends every complete record written since the last call.
    async fn relay(&mut self, number: u32, events: &mpsc::Sender<Event>) -> Result<()> {
        loop {
            let n = self
                .reader
                .read_until(b'\n', &mut self.pending)
                .map_err(|e| BuildError::io("reading the step's log", e))?;
            if n == 0 {
                return Ok(());
            }
            if self.pending.last() != Some(&b'\n') {
                // A record being written: read it again whole next time.
                let back = self.pending.len() as i64;
                self.pending.clear();
                self.reader
                    .seek(SeekFrom::Current(-back))
                    .map_err(|e| BuildError::io("reading the step's log", e))?;
                return Ok(());
            }
            let line = &self.pending[..self.pending.len() - 1];
            if let Some((_, stream, tag, content)) = parse_header(line) {
                let mut data = content.to_vec();
                if tag == Tag::Full {
                    data.push(b'\n');
                }
                let ev = Event::Output {
                    number,
                    data,
                    stderr: stream == Stream::Stderr,
                };
                if events.send(ev).await.is_err() {
                    return Err(BuildError::Cancelled);
                }
            }
            self.pending.clear();
        }
    }
}
