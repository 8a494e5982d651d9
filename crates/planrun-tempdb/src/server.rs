//! Running the postmaster as our own child process.
//!
//! We spawn `postgres` directly instead of going through `pg_ctl start`: `pg_ctl`
//! detaches the server, so nobody but init ever reaps it, and where init does not
//! reap promptly (containers, VMs with a minimal init) stopped servers linger as
//! zombies. As our child it is reaped by `wait`. Readiness is detected the way
//! `pg_ctl -w` does it, from the status line of `postmaster.pid`, but polled more
//! often than `pg_ctl`'s 100 ms.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::files::log_tail;
use crate::user::RunUser;
use crate::TempDbError;

/// How a server is stopped; see the PostgreSQL docs of `pg_ctl stop -m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopMode {
    /// Roll back open transactions, disconnect clients and shut down cleanly.
    Fast,
    /// Abort every process at once, like a crash; the next start runs recovery.
    Immediate,
}

/// Long enough for a loaded CI machine, short enough to report a hang.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(5);
const LOG_TAIL_LINES: usize = 20;

/// Where a server lives and who runs it.
pub(crate) struct ServerFiles<'a> {
    pub bin_dir: &'a Path,
    pub data_dir: &'a Path,
    pub log: &'a Path,
    pub cwd: &'a Path,
    pub user: &'a RunUser,
}

/// Why a start failed; `port_taken` says trying another port may help.
pub(crate) struct LaunchError {
    pub error: TempDbError,
    pub port_taken: bool,
}

impl From<TempDbError> for LaunchError {
    fn from(error: TempDbError) -> Self {
        LaunchError {
            error,
            port_taken: false,
        }
    }
}

/// Start the postmaster on `port` and wait until it accepts connections.
pub(crate) fn launch(files: &ServerFiles<'_>, port: u16) -> Result<Child, LaunchError> {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(files.log)
        .map_err(|e| TempDbError::io_at("open", files.log, e))?;
    let log_start = log
        .metadata()
        .map_err(|e| TempDbError::io_at("read", files.log, e))?
        .len();
    let stderr = log
        .try_clone()
        .map_err(|e| TempDbError::io_at("open", files.log, e))?;
    let postgres = files.bin_dir.join("postgres");
    let mut child = files
        .user
        .command(&postgres, files.cwd)
        .arg("-D")
        .arg(files.data_dir)
        .arg("-p")
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(stderr)
        // Like pg_ctl's setsid: Ctrl-C in the terminal is for the owner, whose
        // Drop or watchdog then stops the server in an orderly way.
        .process_group(0)
        .spawn()
        .map_err(|e| TempDbError::io_at("run", &postgres, e))?;

    let pid_file = files.data_dir.join("postmaster.pid");
    let started = Instant::now();
    let failure = loop {
        match child.try_wait() {
            Ok(Some(status)) => break format!("the server exited ({status})"),
            Ok(None) => {}
            Err(e) => break format!("could not check on the server: {e}"),
        }
        if is_ready(&pid_file, child.id()) {
            return Ok(child);
        }
        if started.elapsed() > START_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break format!(
                "the server did not accept connections within {} s",
                START_TIMEOUT.as_secs()
            );
        }
        sleep(POLL);
    };
    let tail = log_tail(files.log, log_start, LOG_TAIL_LINES);
    let port_taken = tail.contains("Address already in use")
        || tail.contains("could not create any TCP/IP sockets");
    Err(LaunchError {
        error: TempDbError::Start {
            port,
            reason: failure,
            log_tail: tail,
        },
        port_taken,
    })
}

/// `postmaster.pid` names this process and its status line (the 8th) says `ready`.
fn is_ready(pid_file: &Path, pid: u32) -> bool {
    let Ok(text) = fs::read_to_string(pid_file) else {
        return false;
    };
    let lines: Vec<&str> = text.lines().collect();
    lines.first().map(|l| l.trim()) == Some(pid.to_string().as_str())
        && lines.get(7).map(|l| l.trim()) == Some("ready")
}

/// Stop the server and reap it. If it ignores the request it is killed, so that this
/// always ends with the process gone; an error still reports the failed request.
pub(crate) fn stop(
    child: &mut Child,
    mode: StopMode,
    files: &ServerFiles<'_>,
) -> Result<(), TempDbError> {
    let pid = child.id();
    if let Ok(Some(_)) = child.try_wait() {
        return Ok(());
    }
    let (signal, patience) = match mode {
        StopMode::Fast => ("INT", Duration::from_secs(60)),
        StopMode::Immediate => ("QUIT", Duration::from_secs(10)),
    };
    // `pg_ctl kill` signals as the run user; std can only send SIGKILL, and an
    // immediate shutdown must be SIGQUIT so the postmaster takes its children along.
    let pg_ctl = files.bin_dir.join("pg_ctl");
    let sent = files
        .user
        .command(&pg_ctl, files.cwd)
        .args(["kill", signal, &pid.to_string()])
        .stdin(Stdio::null())
        .output();
    let mut problem = match sent {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "pg_ctl kill {signal} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("could not run {}: {e}", pg_ctl.display())),
    };
    let deadline = Instant::now()
        + if problem.is_some() {
            Duration::ZERO
        } else {
            patience
        };
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => sleep(POLL),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                problem.get_or_insert_with(|| {
                    format!(
                        "it did not exit within {} s and was killed",
                        patience.as_secs()
                    )
                });
                break;
            }
        }
    }
    match problem {
        None => Ok(()),
        Some(reason) => Err(TempDbError::Stop { pid, reason }),
    }
}
