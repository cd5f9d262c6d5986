//! The local end of a stream with a container's process, shared by `exec`
//! and the attaching verbs (`attach`, `run -it`, `start -ai`): stdin sent
//! as it comes (with detach keys on a terminal), the window's size at each
//! SIGWINCH, raw mode, and the output written as it comes.

use std::io::Write;
use std::os::fd::AsFd;

use berth::v1::TerminalSize;
use tokio::sync::{mpsc, oneshot};

use crate::detach_keys::Matcher;
use crate::error::{Error, Result};

/// Bytes of stdin per message (the API takes up to 1 MiB; output comes in
/// up to 64 KiB).
pub const STDIN_CHUNK: usize = 32 * 1024;

/// How the requests of one kind of call carry stdin, its end and a resize.
pub struct Wire<R> {
    /// Bytes for the process's stdin.
    pub stdin: fn(Vec<u8>) -> R,
    /// End of file on the process's stdin.
    pub close_stdin: fn() -> R,
    /// The terminal's new size.
    pub resize: fn(TerminalSize) -> R,
}

impl<R> Clone for Wire<R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for Wire<R> {}

/// The local terminal's size: stdout's, else stdin's; `None` when neither
/// is a terminal.
pub fn local_size() -> Option<TerminalSize> {
    crate::term::size(std::io::stdout().as_fd())
        .or_else(|| crate::term::size(std::io::stdin().as_fd()))
        .map(|(rows, cols)| TerminalSize {
            rows: rows.into(),
            cols: cols.into(),
        })
}

/// Whether berthctl's stdin is a terminal.
pub fn stdin_is_terminal() -> bool {
    crate::term::is_terminal(std::io::stdin().as_fd())
}

/// With `tty` and stdin a terminal: the terminal in raw mode until the
/// guard is dropped (on every way out). Entered only once the process
/// runs, so that an error before prints on a sane terminal.
pub fn raw_mode(tty: bool) -> Result<Option<crate::term::RawMode>> {
    if !tty || !stdin_is_terminal() {
        return Ok(None);
    }
    crate::term::RawMode::enter(std::io::stdin().as_fd())
        .map(Some)
        .map_err(|e| Error::Message(format!("terminal raw mode: {e}")))
}

/// Fires when the detach keys were typed; never without them.
pub struct Detached(Option<oneshot::Receiver<()>>);

impl Detached {
    /// Never fires.
    pub fn never() -> Detached {
        Detached(None)
    }

    /// Waits for the detach keys.
    pub async fn wait(&mut self) {
        match self.0.as_mut() {
            Some(rx) => {
                if rx.await.is_ok() {
                    return;
                }
                // Stdin ended without them: never.
                self.0 = None;
                std::future::pending().await
            }
            None => std::future::pending().await,
        }
    }
}

/// Sends berthctl's stdin as it comes, then `close_stdin` at end of file.
/// With `keys`, typed detach keys end the sending instead, and the
/// returned [`Detached`] fires. A thread of its own: a read of an
/// interactive stdin blocks, and must not hold up the exit (the runtime
/// waits for its blocking tasks).
pub fn forward_stdin<R: Send + 'static>(
    tx: mpsc::Sender<R>,
    wire: Wire<R>,
    keys: Option<Matcher>,
) -> Detached {
    let (detached_tx, detached_rx) = oneshot::channel();
    std::thread::spawn(move || {
        let mut keys = keys;
        let mut buf = vec![0u8; STDIN_CHUNK];
        let mut stdin = std::io::stdin().lock();
        loop {
            let n = match std::io::Read::read(&mut stdin, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let (data, detach) = match keys.as_mut() {
                Some(m) => {
                    let fed = m.feed(&buf[..n]);
                    (fed.send, fed.detach)
                }
                None => (buf[..n].to_vec(), false),
            };
            if !data.is_empty() && tx.blocking_send((wire.stdin)(data)).is_err() {
                return;
            }
            if detach {
                let _ = detached_tx.send(());
                return;
            }
        }
        let _ = tx.blocking_send((wire.close_stdin)());
    });
    Detached(Some(detached_rx))
}

/// Sends the window's new size at each SIGWINCH, until aborted.
pub fn forward_resizes<R: Send + 'static>(
    tx: mpsc::Sender<R>,
    wire: Wire<R>,
) -> Option<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut winch = signal(SignalKind::window_change()).ok()?;
    Some(tokio::spawn(async move {
        while winch.recv().await.is_some() {
            if let Some(size) = local_size() {
                if tx.send((wire.resize)(size)).await.is_err() {
                    return;
                }
            }
        }
    }))
}

/// Which of a container's output streams berthctl shows (`run -a`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown {
    /// Its stdout (or terminal).
    pub stdout: bool,
    /// Its stderr.
    pub stderr: bool,
}

impl Shown {
    /// Both, as without `-a`.
    pub const ALL: Shown = Shown {
        stdout: true,
        stderr: true,
    };
}

/// berthctl's stdout and stderr, for a process's output as it comes.
pub struct Output {
    out: std::io::StdoutLock<'static>,
    err: std::io::StderrLock<'static>,
}

impl Output {
    /// Locks stdout and stderr.
    pub fn new() -> Output {
        Output {
            out: std::io::stdout().lock(),
            err: std::io::stderr().lock(),
        }
    }

    /// Writes to stdout, flushed. A closed pipe (`| head`) is an error:
    /// stop, as the process's own output would.
    pub fn stdout(&mut self, b: &[u8]) -> Result<()> {
        write(&mut self.out, b)
    }

    /// Writes to stderr, flushed.
    pub fn stderr(&mut self, b: &[u8]) -> Result<()> {
        write(&mut self.err, b)
    }
}

fn write(w: &mut impl Write, b: &[u8]) -> Result<()> {
    w.write_all(b)
        .and_then(|()| w.flush())
        .map_err(|e| Error::Message(format!("writing the output: {e}")))
}
