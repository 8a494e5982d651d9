//! SIGINT and SIGTERM during `apply`: stop cleanly, never half-way.
//!
//! Once [`install`]ed, the first signal does not end the process. A watcher thread
//! records it, stops the child processes planrun started (`pg_dump`), and asks the
//! server to cancel the statement running on the apply's connection, again every half
//! second until the run acknowledges, since a cancel that arrives between two
//! statements of a transform does nothing. The run checks [`requested`] before each
//! stage, each step, each batch and before every commit: the stage in progress rolls
//! back, committed stages stay, the report and the ledger say `interrupted`. A second
//! signal leaves at once (the ledger row then stays `running`, and `status` shows it
//! abandoned once its session is gone).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use postgres::{CancelToken, Client};

use crate::db::connect::Target;

/// The signal received, or 0.
static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// Set once the run has stopped; the watcher stops cancelling.
static ACKNOWLEDGED: AtomicBool = AtomicBool::new(false);
static REGISTERED: Mutex<Registered> = Mutex::new(Registered {
    connection: None,
    children: Vec::new(),
});

struct Registered {
    connection: Option<(CancelToken, Target)>,
    children: Vec<u32>,
}

/// How long the watcher keeps cancelling before it leaves the run to its checks.
const CANCEL_FOR: Duration = Duration::from_secs(120);
const CANCEL_EVERY: Duration = Duration::from_millis(500);

/// A signal that interrupted the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted {
    pub signal: i32,
}

impl Interrupted {
    pub fn name(self) -> &'static str {
        match self.signal {
            signal_hook::consts::SIGINT => "SIGINT",
            signal_hook::consts::SIGTERM => "SIGTERM",
            _ => "a signal",
        }
    }
}

/// Handles SIGINT and SIGTERM from now on; `notify` tells the user (on stderr) what
/// happens. Idempotent.
pub fn install(notify: fn(&str)) -> std::io::Result<()> {
    static INSTALLED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    let _ = INSTALLED.set(());
    std::thread::spawn(move || {
        for signal in signals.forever() {
            on_signal(signal, notify);
        }
    });
    Ok(())
}

fn on_signal(signal: i32, notify: fn(&str)) {
    if SIGNAL
        .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        stop_children(libc::SIGKILL);
        notify("second signal: leaving now; the server rolls back the open transaction, and `planrun status` will show this run abandoned");
        std::process::exit(crate::exit_codes::INTERRUPTED);
    }
    let name = Interrupted { signal }.name();
    notify(&format!(
        "{name}: stopping; the running statement is cancelled and its stage rolled back, committed stages stay (send it again to leave at once)"
    ));
    stop_children(libc::SIGTERM);
    std::thread::spawn(|| {
        let started = Instant::now();
        while !ACKNOWLEDGED.load(Ordering::SeqCst) && started.elapsed() < CANCEL_FOR {
            cancel_statement();
            std::thread::sleep(CANCEL_EVERY);
        }
    });
}

fn cancel_statement() {
    let connection = REGISTERED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .connection
        .as_ref()
        .map(|(token, target)| (token.clone(), target.clone()));
    if let Some((token, target)) = connection {
        // Best effort: a failed cancel leaves the run to stop at its next check.
        let _ = target.cancel(&token);
    }
}

fn stop_children(signal: i32) {
    let children = REGISTERED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .children
        .clone();
    for pid in children {
        if let Ok(pid) = libc::pid_t::try_from(pid) {
            // SAFETY: kill has no memory-safety preconditions; a stale pid of ours
            // is at worst a process that has exited (ESRCH).
            unsafe {
                libc::kill(pid, signal);
            }
        }
    }
}

/// The signal that interrupted this run, if one did.
pub fn requested() -> Option<Interrupted> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(Interrupted { signal }),
    }
}

/// Sleeps for `duration`, or less when a signal arrives; `false` if it did.
pub fn sleep(duration: Duration) -> bool {
    let until = Instant::now() + duration;
    loop {
        if requested().is_some() {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// The run has stopped: no more cancels.
pub fn acknowledge() {
    ACKNOWLEDGED.store(true, Ordering::SeqCst);
}

/// Statements on `client` are cancelled on a signal while the guard lives.
#[must_use]
pub fn watch_connection(client: &Client, target: &Target) -> ConnectionGuard {
    REGISTERED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .connection = Some((client.cancel_token(), target.clone()));
    ConnectionGuard
}

pub struct ConnectionGuard;

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        REGISTERED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .connection = None;
    }
}

/// The child process `pid` is stopped on a signal while the guard lives.
#[must_use]
pub fn watch_child(pid: u32) -> ChildGuard {
    let mut registered = REGISTERED.lock().unwrap_or_else(PoisonError::into_inner);
    registered.children.push(pid);
    if SIGNAL.load(Ordering::SeqCst) != 0 {
        // The signal came while the child was starting.
        drop(registered);
        stop_children(libc::SIGTERM);
    }
    ChildGuard { pid }
}

pub struct ChildGuard {
    pid: u32,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        REGISTERED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .children
            .retain(|pid| *pid != self.pid);
    }
}
