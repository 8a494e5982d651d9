//! Measurement (a): the real `planrun apply` as a subprocess, so what is measured is what
//! an operator runs (argument parsing, plan checks, ledger, captures, verification), with
//! per-stage times from its JSON report and its peak RSS from the kernel.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One stage of the JSON report.
#[derive(Debug, Clone)]
pub(crate) struct Stage {
    pub id: String,
    pub status: String,
    pub duration_ms: u64,
    pub rows_affected: u64,
    /// `(name, kind, duration_ms)` of each step, so the transform's own time can be told
    /// apart from captures and verification.
    pub steps: Vec<(String, String, u64)>,
}

impl Stage {
    /// Milliseconds in transform steps; the rest of the stage is SQL steps, captures,
    /// checks and the ledger.
    pub(crate) fn transform_ms(&self) -> Option<u64> {
        let mut transforms = self.steps.iter().filter(|(_, kind, _)| kind == "transform");
        let first = transforms.next()?;
        Some(first.2 + transforms.map(|s| s.2).sum::<u64>())
    }
}

/// What one `planrun apply` did.
#[derive(Debug)]
pub(crate) struct Apply {
    pub stages: Vec<Stage>,
    pub outcome: String,
    pub exit_code: i32,
    pub wall: Duration,
    /// Peak resident set size of the planrun process, in KiB (Linux `ru_maxrss`).
    pub peak_rss_kib: i64,
}

/// `explicit`, else `planrun` next to this binary: when both are built into the same
/// target directory that is the release build of the same sources. Built if missing.
pub(crate) fn locate_planrun(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = explicit {
        return path
            .canonicalize()
            .map_err(|e| format!("cannot find {}: {e}", path.display()));
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate myself: {e}"))?;
    let profile_dir = exe.parent().ok_or("cannot locate my directory")?;
    let planrun = profile_dir.join("planrun");
    if planrun.is_file() {
        return Ok(planrun);
    }
    let target_dir = profile_dir
        .parent()
        .ok_or("cannot locate the target directory")?;
    eprintln!(
        "planrun-bench: {} is missing; building it (cargo build --release -p planrun-cli)",
        planrun.display()
    );
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .args(["build", "--release", "-p", "planrun-cli"])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() || !planrun.is_file() {
        return Err(format!(
            "could not build planrun; build it and pass --planrun PATH ({status})"
        ));
    }
    Ok(planrun)
}

/// `planrun apply PLAN --include-optional --no-backup --format json` against `url`.
pub(crate) fn apply(planrun: &Path, plan: &Path, url: &str) -> Result<Apply, String> {
    let started = Instant::now();
    let mut child = Command::new(planrun)
        .arg("apply")
        .arg(plan)
        .args(["--database-url", url])
        .args(["--include-optional", "--no-backup", "--format", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", planrun.display()))?;
    let pid = child.id() as libc::pid_t;

    // stderr on its own thread: a chatty child must not block on a full pipe while we
    // read stdout to its end.
    let mut stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .ok_or("no stdout pipe")?
        .read_to_string(&mut stdout)
        .map_err(|e| format!("cannot read planrun's output: {e}"))?;

    // wait4 rather than Child::wait: it reaps the child and returns its rusage in one
    // call, and ru_maxrss is the kernel's own high-water mark, which polling
    // /proc/PID/status could miss between samples. `child` is never waited on afterwards.
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data, valid when zeroed.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own unreaped child; both pointers are valid for the call.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    if reaped != pid {
        return Err(format!("wait4 failed: {}", std::io::Error::last_os_error()));
    }
    drop(child);
    let stderr = stderr_reader.join().unwrap_or_default();
    let exit_code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };

    let report: Value = serde_json::from_str(&stdout).map_err(|e| {
        format!("planrun exited with {exit_code} without a JSON report ({e}); stderr:\n{stderr}")
    })?;
    let stages = report["stages"]
        .as_array()
        .ok_or("the report has no stages")?
        .iter()
        .map(parse_stage)
        .collect();
    let outcome = report["outcome"].as_str().unwrap_or("?").to_owned();
    if exit_code != 0 {
        eprintln!("planrun exited with {exit_code} ({outcome}); stderr:\n{stderr}");
    }
    Ok(Apply {
        stages,
        outcome,
        exit_code,
        wall,
        peak_rss_kib: usage.ru_maxrss,
    })
}

fn parse_stage(stage: &Value) -> Stage {
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    Stage {
        id: text(&stage["id"]),
        status: text(&stage["status"]),
        duration_ms: stage["duration_ms"].as_u64().unwrap_or(0),
        rows_affected: stage["rows_affected"].as_u64().unwrap_or(0),
        steps: stage["steps"]
            .as_array()
            .map(|steps| {
                steps
                    .iter()
                    .map(|s| {
                        (
                            text(&s["name"]),
                            text(&s["kind"]),
                            s["duration_ms"].as_u64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}
