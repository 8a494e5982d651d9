//! Cleanup that survives the owner being killed.
//!
//! `Drop` does not run when the owning process is SIGKILLed (or calls
//! `process::exit`, or the cluster lives in a `static`). So every temporary directory
//! gets a tiny `sh` that blocks reading a pipe whose only write end the owner holds.
//! When the owner goes away for any reason the kernel closes that end, `read` sees
//! end-of-file, and the shell stops the server (if any) and removes the directory. A
//! normal shutdown writes `cancel` first, so the shell exits without touching anything.
//!
//! A pipe rather than polling `kill -0 $owner`: it reacts at once, cannot be fooled by
//! pid reuse, and works when the shell may not signal the owner. std opens pipes with
//! `O_CLOEXEC`, so no other child (including the server) inherits the write end and
//! keeps it open.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

use crate::TempDbError;

/// `$1`: directory to remove; `$2`: data directory whose server to stop, or empty;
/// `$3`: the pid file of a connection pooler to kill, or empty.
///
/// The server is stopped with SIGQUIT, which is what `pg_ctl stop -m immediate` sends;
/// signalling it directly works when the shell runs as root, where `pg_ctl` refuses to
/// run. The server removes `postmaster.pid` on its way out, so we wait for that (a
/// zombie would still answer `kill -0` where init does not reap promptly). The
/// `comm` check avoids signalling an unrelated process that reused a stale pid.
const SCRIPT: &str = r#"
trap '' HUP INT
read -r word
[ "$word" = cancel ] && exit 0
if [ -n "$2" ]; then
  pidfile="$2/postmaster.pid"
  # A server that is still starting may not have written its pid file yet.
  [ -d "$2" ] && [ ! -f "$pidfile" ] && sleep 1
  if [ -f "$pidfile" ]; then
    pid=$(head -n 1 "$pidfile")
    case "$(cat "/proc/$pid/comm" 2>/dev/null || echo postgres)" in
      postgres*|postmaster*)
        kill -QUIT "$pid" 2>/dev/null
        i=0
        while [ -f "$pidfile" ] && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        [ -f "$pidfile" ] && kill -KILL "$pid" 2>/dev/null
        ;;
    esac
  fi
fi
if [ -n "$3" ] && [ -f "$3" ]; then
  pid=$(head -n 1 "$3")
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = pgbouncer ] && kill -KILL "$pid" 2>/dev/null
fi
rm -rf "$1"
"#;

/// A running watchdog; dropping it cancels it.
#[derive(Debug)]
pub(crate) struct Watchdog {
    child: Child,
    pipe: Option<ChildStdin>,
}

impl Watchdog {
    /// Guard `dir`, and the server of `data_dir` if given.
    pub(crate) fn spawn(dir: &Path, data_dir: Option<&Path>) -> Result<Watchdog, TempDbError> {
        Self::spawn_guarding(dir, data_dir, None)
    }

    /// Guard `dir` and the PgBouncer whose pid `pid_file` holds.
    pub(crate) fn spawn_for_pooler(dir: &Path, pid_file: &Path) -> Result<Watchdog, TempDbError> {
        Self::spawn_guarding(dir, None, Some(pid_file))
    }

    fn spawn_guarding(
        dir: &Path,
        data_dir: Option<&Path>,
        pid_file: Option<&Path>,
    ) -> Result<Watchdog, TempDbError> {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(SCRIPT)
            .arg("planrun-tempdb-watchdog")
            .arg(dir)
            .arg(data_dir.unwrap_or(Path::new("")))
            .arg(pid_file.unwrap_or(Path::new("")))
            .stdin(Stdio::piped())
            // Holding the test harness's output pipes would make `cargo test` wait
            // for this process after the tests finish.
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir("/")
            // Out of the terminal's process group: Ctrl-C kills the owner, and this
            // must outlive it to clean up.
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| TempDbError::io("start the cleanup watchdog /bin/sh", e))?;
        let pipe = child.stdin.take();
        Ok(Watchdog { child, pipe })
    }

    /// Let the watchdog do its cleanup now, as if the owner had died, and wait for it.
    /// Used when our own shutdown failed.
    pub(crate) fn fire(mut self) {
        self.pipe = None;
        let _ = self.child.wait();
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(mut pipe) = self.pipe.take() {
            // If the shell is already gone the write fails; nothing is left to cancel.
            let _ = pipe.write_all(b"cancel\n");
        }
        // Reap it, so neither a process nor a zombie is left behind.
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_leaves_the_directory_and_fire_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("kept");
        let doomed = dir.path().join("doomed");
        std::fs::create_dir(&kept).unwrap();
        std::fs::create_dir(&doomed).unwrap();

        drop(Watchdog::spawn(&kept, None).unwrap());
        assert!(kept.exists());

        Watchdog::spawn(&doomed, None).unwrap().fire();
        assert!(!doomed.exists());
    }
}
