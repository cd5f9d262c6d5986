//! Spare network namespaces, made ahead of time off the start path.
//!
//! A new network namespace costs about half a millisecond, the largest
//! single step of a container start. A thread of berthd keeps a few ready
//! (`lo` already up); a start takes one and
//! its init enters it (`LaunchSpec::netns`), and the thread, at idle CPU
//! priority, makes the next.
//! When none is ready (a burst of starts) the init creates its own, as it
//! would without the pool: the pool only ever saves time.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use nix::sched::CloneFlags;

/// How long the refill thread waits after a failure before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The spare namespaces and the thread that refills them.
#[derive(Debug, Clone)]
pub struct NetnsPool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    spare: Mutex<Vec<OwnedFd>>,
    size: usize,
    taken: Condvar,
}

/// A namespace taken from the pool; the container's init reaches it by
/// [`Spare::path`] while this handle lives.
#[derive(Debug)]
pub struct Spare(OwnedFd);

impl Spare {
    /// The namespace.
    pub fn fd(&self) -> &OwnedFd {
        &self.0
    }

    /// `/proc/<berthd>/fd/<n>`: where the init opens it.
    pub fn path(&self) -> String {
        format!("/proc/{}/fd/{}", std::process::id(), self.0.as_raw_fd())
    }
}

impl NetnsPool {
    /// Keeps `size` namespaces ready (none, and no thread, for 0).
    pub fn start(size: usize) -> std::io::Result<Self> {
        let pool = NetnsPool {
            shared: Arc::new(Shared {
                spare: Mutex::new(Vec::with_capacity(size)),
                size,
                taken: Condvar::new(),
            }),
        };
        if size > 0 {
            let shared = pool.shared.clone();
            std::thread::Builder::new()
                .name("netns-pool".into())
                .spawn(move || refill(&shared))?;
        }
        Ok(pool)
    }

    /// A ready namespace, if there is one. Never waits: the refill thread
    /// runs at idle priority, and a start must not wait for it to be
    /// scheduled again while it holds the lock.
    pub fn take(&self) -> Option<Spare> {
        let ns = match self.shared.spare.try_lock() {
            Ok(mut spare) => spare.pop()?,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner().pop()?,
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        self.shared.taken.notify_one();
        Some(Spare(ns))
    }
}

/// A namespace made now, for a start that needs one in berthd's hands
/// when the pool has none ready. Made on a thread of its own that then
/// ends, so no thread of berthd can be left in it.
pub fn create_now() -> io::Result<Spare> {
    std::thread::Builder::new()
        .name("netns-now".into())
        .spawn(create)?
        .join()
        .map_err(|_| io::Error::other("the thread making a network namespace panicked"))?
        .map(Spare)
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<OwnedFd>> {
        self.spare.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn refill(shared: &Shared) {
    // Refilling is what a start just handed off; it must not take a CPU
    // from the start it follows.
    if let Err(e) = crate::sys::run_at_idle_priority() {
        tracing::debug!("spare network namespaces at normal priority: {e}");
    }
    loop {
        {
            let mut spare = shared.lock();
            while spare.len() >= shared.size {
                spare = shared.taken.wait(spare).unwrap_or_else(|e| e.into_inner());
            }
        }
        // Made without the lock held: takers never wait for the kernel.
        match create() {
            Ok(ns) => shared.lock().push(ns),
            Err(e) => {
                tracing::warn!(
                    "cannot make a spare network namespace ({e}); containers create their own"
                );
                std::thread::sleep(RETRY_AFTER);
            }
        }
    }
}

/// Creates a new network namespace with `lo` up and returns a handle on it.
/// The calling thread is back in its own network namespace afterwards; the
/// pool's thread does nothing else meanwhile.
fn create() -> io::Result<OwnedFd> {
    let home = File::open("/proc/thread-self/ns/net")?;
    nix::sched::unshare(CloneFlags::CLONE_NEWNET)?;
    let made = File::open("/proc/thread-self/ns/net").and_then(|ns| {
        crate::sys::loopback_up()?;
        Ok(ns)
    });
    // Going home must not fail silently: this thread would create its
    // next namespaces nested in the wrong place and talk to the wrong
    // network.
    nix::sched::setns(home.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| {
        io::Error::other(format!(
            "cannot return to the original network namespace: {e}"
        ))
    })?;
    Ok(made?.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net_ns_of(path: &std::path::Path) -> std::path::PathBuf {
        std::fs::read_link(path).unwrap()
    }

    #[test]
    fn spares_are_fresh_namespaces_and_are_refilled() {
        if !nix::unistd::geteuid().is_root() {
            panic!("this test creates network namespaces: run it as root");
        }
        let pool = NetnsPool::start(2).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut seen = std::collections::HashSet::new();
        // Held, so that no namespace is freed and its number reused.
        let mut taken = Vec::new();
        let home = net_ns_of(std::path::Path::new("/proc/self/ns/net"));
        while seen.len() < 4 {
            assert!(std::time::Instant::now() < deadline, "pool never refilled");
            match pool.take() {
                Some(spare) => {
                    let ns = net_ns_of(spare.path().as_ref());
                    assert_ne!(ns, home, "a spare is the host's namespace");
                    assert!(seen.insert(ns), "a namespace was handed out twice");
                    taken.push(spare);
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        // The refill thread went home after each one.
        assert_eq!(net_ns_of(std::path::Path::new("/proc/self/ns/net")), home);
    }
}
