//! The monitor's side of the attach socket (the protocol is
//! `berth_runtime::attach`'s): the clients berthd connects, what they
//! write to the container's stdin or terminal, and the container's output
//! on its way to them.
//!
//! Nothing here blocks the monitor: every descriptor is non-blocking and
//! the pump ([`crate::pump`]) polls them. Output a client has not taken
//! yet is queued; while any client's queue is over [`CONGESTED`], the pump
//! stops reading the container's output, which then blocks the container
//! as a full pipe would (as `docker attach` does), rather than dropping
//! output or growing without bound. Stdin waits in one buffer for the
//! container to read it; meanwhile no client's input is read, so a
//! client writing faster than the container reads is held back through
//! its socket.

use alloc::vec::Vec;

use berth_runtime::attach::{self as proto, Parsed};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use crate::io::{Context, Result};

/// Most clients at once; more are turned away (closed at once).
const MAX_CLIENTS: usize = 16;
/// Output queued for one client past which the container's output waits.
const CONGESTED: usize = 1 << 20;
/// Output held for the client a start awaits, until it connects; more is
/// logged but not held.
const MAX_HELD: usize = 1 << 20;
/// Buffer capacity kept between bursts.
const KEEP: usize = 64 * 1024;
/// Bytes read from a client at a time.
const READ_CHUNK: usize = 64 * 1024;

/// The listener, its clients and the container's stdin.
pub struct Attach {
    listener: OwnedFd,
    clients: Vec<Client>,
    /// Output for the first client, while a start awaits it.
    held: Option<Vec<u8>>,
    /// Whether clients may write to the container's stdin.
    open_stdin: bool,
    /// The write end of the container's stdin pipe (no terminal).
    stdin: Option<OwnedFd>,
    /// The terminal's master (with a terminal).
    terminal: Option<OwnedFd>,
    /// A slave of the terminal held while the init lives, so the master
    /// never reads as hung up (EIO) when the container's processes happen
    /// to have closed theirs, to open /dev/console again later.
    held_slave: Option<OwnedFd>,
    /// The output held for the first client outgrew [`MAX_HELD`]: no more
    /// is held, so what the client gets has no gap in the middle.
    held_overflowed: bool,
    /// Stdin bytes the container has not read yet.
    pending: Vec<u8>,
    /// Close the stdin pipe once `pending` is written.
    close_stdin: bool,
}

struct Client {
    fd: OwnedFd,
    /// Bytes read but not yet a whole frame.
    input: Vec<u8>,
    /// Frames not yet sent, from `sent` on.
    output: Vec<u8>,
    sent: usize,
    /// It shut down its writing side: no more input, output still goes.
    input_done: bool,
    gone: bool,
}

impl Client {
    fn queued(&self) -> usize {
        self.output.len() - self.sent
    }
}

/// What a descriptor the pump polls for [`Attach`] stands for.
#[derive(Clone, Copy)]
pub enum Source {
    /// The listener: a client connects.
    Listener,
    /// A client: input to read, or room for its queued output.
    Client(usize),
    /// Room in the container's stdin (or terminal) for pending bytes.
    Stdin,
}

impl Attach {
    /// Listens on [`proto::SOCKET`] in the working directory (the
    /// container's), replacing what a previous run left there.
    pub fn listen(open_stdin: bool, await_client: bool) -> Result<Self> {
        match rustix::fs::unlink(proto::SOCKET) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(e).ctx("removing the old attach socket"),
        }
        let listener = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .ctx("attach socket")?;
        let addr = SocketAddrUnix::new(proto::SOCKET).ctx("attach socket address")?;
        rustix::net::bind(&listener, &addr).ctx("binding the attach socket")?;
        rustix::net::listen(&listener, MAX_CLIENTS as i32).ctx("listening for attach")?;
        Ok(Attach {
            listener,
            clients: Vec::new(),
            held: await_client.then(Vec::new),
            open_stdin,
            stdin: None,
            terminal: None,
            held_slave: None,
            held_overflowed: false,
            pending: Vec::new(),
            close_stdin: false,
        })
    }

    /// The write end of the container's stdin pipe.
    pub fn set_stdin(&mut self, fd: OwnedFd) -> Result<()> {
        set_nonblocking(&fd)?;
        self.stdin = Some(fd);
        Ok(())
    }

    /// The terminal's master, received from the init.
    pub fn set_terminal(&mut self, fd: OwnedFd) -> Result<()> {
        set_nonblocking(&fd)?;
        let slave = rustix::pty::ioctl_tiocgptpeer(
            &fd,
            rustix::pty::OpenptFlags::RDWR
                | rustix::pty::OpenptFlags::NOCTTY
                | rustix::pty::OpenptFlags::CLOEXEC,
        )
        .ctx("holding the terminal open")?;
        self.held_slave = Some(slave);
        self.terminal = Some(fd);
        Ok(())
    }

    /// The init has exited (and with it every process of the container):
    /// the terminal may hang up once its output is read.
    pub fn init_exited(&mut self) {
        self.held_slave = None;
    }

    /// The terminal's master, for the pump to read the output from.
    pub fn terminal(&self) -> Option<BorrowedFd<'_>> {
        self.terminal.as_ref().map(|t| t.as_fd())
    }

    /// Whether a client is too far behind for more output to be read.
    pub fn congested(&self) -> bool {
        self.clients.iter().any(|c| c.queued() > CONGESTED)
    }

    /// Whether a start still awaits its client.
    pub fn awaiting(&self) -> bool {
        self.held.is_some()
    }

    /// Where stdin bytes go: the pipe, or the terminal.
    fn target(&self) -> Option<BorrowedFd<'_>> {
        match (&self.terminal, &self.stdin) {
            (Some(t), _) => Some(t.as_fd()),
            (None, Some(s)) => Some(s.as_fd()),
            (None, None) => None,
        }
    }

    /// The descriptors to poll and what they stand for.
    pub fn interest<'a>(
        &'a self,
        out: &mut Vec<(BorrowedFd<'a>, rustix::event::PollFlags, Source)>,
    ) {
        use rustix::event::PollFlags;
        // Polled even when full: one more is told so and let go.
        out.push((self.listener.as_fd(), PollFlags::IN, Source::Listener));
        let stdin_waits = !self.pending.is_empty();
        for (i, c) in self.clients.iter().enumerate() {
            let mut flags = PollFlags::empty();
            if !stdin_waits && !c.input_done {
                flags |= PollFlags::IN;
            }
            if c.queued() > 0 {
                flags |= PollFlags::OUT;
            }
            // Hang-ups are reported whatever was asked for.
            out.push((c.fd.as_fd(), flags, Source::Client(i)));
        }
        if stdin_waits {
            if let Some(t) = self.target() {
                out.push((t, PollFlags::OUT, Source::Stdin));
            }
        }
    }

    /// Handles what `poll` reported for `source`.
    pub fn ready(&mut self, source: Source, events: rustix::event::PollFlags) {
        use rustix::event::PollFlags;
        match source {
            Source::Listener => self.accept(),
            Source::Client(i) => {
                // Closed (not only shut down for writing): detached. What
                // it sent before closing is still the container's (a
                // client that sends stdin, then detaches at once).
                if events.intersects(PollFlags::HUP | PollFlags::ERR) {
                    if events.contains(PollFlags::IN) {
                        // A closed peer cannot add more: this ends.
                        while self.read_client(i) {}
                    }
                    if let Some(c) = self.clients.get_mut(i) {
                        c.gone = true;
                    }
                    return;
                }
                if events.contains(PollFlags::OUT) {
                    self.flush(i);
                }
                if events.contains(PollFlags::IN) {
                    self.read_client(i);
                }
            }
            Source::Stdin => self.write_stdin(),
        }
    }

    /// Drops the clients that went away; call after each round of
    /// [`Attach::ready`] (indices stay valid within a round).
    pub fn sweep(&mut self) {
        self.clients.retain(|c| !c.gone);
    }

    /// Queues the container's output (`kind`: stdout or stderr) for every
    /// client, or holds it for the client a start awaits.
    pub fn output(&mut self, kind: u8, bytes: &[u8]) {
        if let Some(held) = &mut self.held {
            if !self.held_overflowed && held.len() + bytes.len() <= MAX_HELD {
                proto::encode(held, kind, bytes);
            } else {
                self.held_overflowed = true;
            }
            return;
        }
        for c in &mut self.clients {
            proto::encode(&mut c.output, kind, bytes);
        }
    }

    fn accept(&mut self) {
        let fd = match rustix::net::accept_with(
            &self.listener,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        ) {
            Ok(fd) => fd,
            Err(_) => return,
        };
        if self.clients.len() >= MAX_CLIENTS {
            let mut busy = Vec::new();
            proto::encode(&mut busy, proto::OUT_BUSY, &[]);
            // A new socket has room for five bytes; it closes on return.
            let _ = rustix::io::write(&fd, &busy);
            return;
        }
        // Connected is not yet attached: the client waits for this, so it
        // knows from when on it gets the output.
        let mut output = Vec::new();
        proto::encode(&mut output, proto::OUT_ATTACHED, &[]);
        if let Some(held) = self.held.take() {
            output.extend_from_slice(&held);
        }
        self.clients.push(Client {
            fd,
            input: Vec::new(),
            output,
            sent: 0,
            input_done: false,
            gone: false,
        });
    }

    fn flush(&mut self, i: usize) {
        let Some(c) = self.clients.get_mut(i) else {
            return;
        };
        while c.queued() > 0 {
            match rustix::io::write(&c.fd, &c.output[c.sent..]) {
                Ok(n) => c.sent += n,
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => break,
                Err(_) => {
                    c.gone = true;
                    return;
                }
            }
        }
        // What was sent is dropped as it goes, not when the queue first
        // empties (a client that never quite catches up would keep all of
        // it), and a burst's memory is given back.
        if c.queued() == 0 {
            c.output.clear();
            c.sent = 0;
            c.output.shrink_to(KEEP);
        } else if c.sent >= KEEP {
            c.output.drain(..c.sent);
            c.sent = 0;
        }
    }

    /// Reads and obeys what client `i` sent; true when it read something
    /// (there may be more).
    fn read_client(&mut self, i: usize) -> bool {
        let Some(c) = self.clients.get_mut(i) else {
            return false;
        };
        c.input.reserve(READ_CHUNK);
        let got = rustix::io::read(&c.fd, rustix::buffer::spare_capacity(&mut c.input));
        match got {
            Ok(n) if n > 0 => {}
            Err(Errno::AGAIN | Errno::INTR) => return false,
            // End of its input; the output still goes to it.
            Ok(_) => {
                c.input_done = true;
                return false;
            }
            Err(_) => {
                c.gone = true;
                return false;
            }
        }
        let mut input = core::mem::take(&mut c.input);
        let mut used = 0;
        loop {
            match proto::parse(&input[used..]) {
                Parsed::Frame { kind, payload, len } => {
                    self.command(kind, payload);
                    used += len;
                }
                Parsed::Incomplete => break,
                Parsed::TooLarge => {
                    self.clients[i].gone = true;
                    return false;
                }
            }
        }
        input.drain(..used);
        if input.is_empty() {
            input.shrink_to(READ_CHUNK);
        }
        self.clients[i].input = input;
        if !self.pending.is_empty() {
            self.write_stdin();
        }
        true
    }

    /// One frame from a client.
    fn command(&mut self, kind: u8, payload: &[u8]) {
        match kind {
            proto::IN_STDIN if self.open_stdin && self.target().is_some() => {
                self.pending.extend_from_slice(payload);
            }
            // A terminal has no end of file but the one its user types.
            proto::IN_CLOSE_STDIN if self.terminal.is_none() => {
                self.close_stdin = true;
                if self.pending.is_empty() {
                    self.stdin = None;
                }
            }
            proto::IN_RESIZE => {
                if let (Some(t), Some((rows, cols))) =
                    (&self.terminal, proto::parse_resize(payload))
                {
                    let size = rustix::termios::Winsize {
                        ws_row: rows,
                        ws_col: cols,
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    };
                    // The foreground process group gets SIGWINCH.
                    let _ = rustix::termios::tcsetwinsize(t, size);
                }
            }
            _ => {}
        }
    }

    fn write_stdin(&mut self) {
        while !self.pending.is_empty() {
            let Some(target) = self.target() else {
                self.pending.clear();
                break;
            };
            match rustix::io::write(target, &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                    if self.pending.is_empty() {
                        self.pending.shrink_to(KEEP);
                    }
                }
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return,
                // The container closed its stdin: nothing more reaches it.
                Err(_) => {
                    self.pending.clear();
                    self.stdin = None;
                    self.open_stdin = false;
                }
            }
        }
        if self.close_stdin {
            self.stdin = None;
        }
    }

    /// At the container's exit: waits up to `patience` for the client a
    /// start awaits, then for every client to take its queued output;
    /// the clients then read end of file.
    pub fn finish(mut self, patience: rustix::time::Timespec) {
        use rustix::event::{PollFd, PollFlags};
        let deadline = crate::pump::deadline(patience);
        self.stdin = None;
        loop {
            let pending: Vec<usize> = (0..self.clients.len())
                .filter(|&i| !self.clients[i].gone && self.clients[i].queued() > 0)
                .collect();
            if pending.is_empty() && !self.awaiting() {
                return;
            }
            let Some(left) = crate::pump::remaining(&deadline) else {
                return;
            };
            let ready = {
                let mut fds: Vec<PollFd<'_>> = Vec::new();
                if self.awaiting() {
                    fds.push(PollFd::new(&self.listener, PollFlags::IN));
                }
                for &i in &pending {
                    fds.push(PollFd::new(&self.clients[i].fd, PollFlags::OUT));
                }
                match rustix::event::poll(&mut fds, Some(&left)) {
                    Ok(_) | Err(Errno::INTR) => {}
                    Err(_) => return,
                }
                fds.iter()
                    .map(|f| !f.revents().is_empty())
                    .collect::<Vec<bool>>()
            };
            let mut at = 0;
            if self.awaiting() {
                if ready[0] {
                    self.accept();
                }
                at = 1;
            }
            for (k, &i) in pending.iter().enumerate() {
                if ready[at + k] {
                    self.flush(i);
                }
            }
        }
    }
}

fn set_nonblocking(fd: &OwnedFd) -> Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd).ctx("descriptor flags")?;
    rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK).ctx("descriptor flags")
}
