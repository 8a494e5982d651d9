//! `--online`: the memoir split (stages 1 and 2) with the simulated application
//! writing throughout, once in atomic mode and once batched (online: change capture,
//! catch-up, a short cutover), each on its own copy of the same database. Reports the
//! committed writes lost, the longest write and read waits the application saw, and
//! the total time of each, as a ratio to atomic mode measured in the same run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::live;

/// The batched settings measured: the default batch size, adapted to half a second.
pub(crate) const ONLINE_PARAMS: &str =
    r#"on_invalid = "fail", mode = "batched", batch_size = 5000, batch_target = "500ms""#;

pub(crate) struct ModeRun {
    pub mode: &'static str,
    pub wall: Duration,
    pub exit: Option<i32>,
    pub traffic: live::LiveTraffic,
}

/// A copy of the plan's directory whose split runs with `params`.
pub(crate) fn plan_with(plan: &Path, params: &str) -> Result<tempfile::TempDir, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("cannot make a directory: {e}"))?;
    let source = plan.parent().ok_or("the plan has no directory")?;
    let copied = Command::new("cp")
        .arg("-r")
        .arg(format!("{}/.", source.display()))
        .arg(dir.path())
        .status()
        .map_err(|e| format!("cannot copy the plan: {e}"))?;
    if !copied.success() {
        return Err("cannot copy the plan directory".into());
    }
    let file = dir
        .path()
        .join(plan.file_name().ok_or("no plan file name")?);
    let text = std::fs::read_to_string(&file).map_err(|e| format!("cannot read the plan: {e}"))?;
    let original = r#"params = { on_invalid = "fail" }"#;
    if !text.contains(original) {
        return Err(format!("the plan's split step no longer says {original}"));
    }
    std::fs::write(
        &file,
        text.replace(original, &format!("params = {{ {params} }}")),
    )
    .map_err(|e| format!("cannot write the plan: {e}"))?;
    Ok(dir)
}

/// Applies stages 1 and 2 of the plan in `mode` on `url` with the application running.
pub(crate) fn run(
    planrun: &Path,
    plan: &Path,
    url: &str,
    mode: &'static str,
    params: &str,
) -> Result<ModeRun, String> {
    let dir = plan_with(plan, params)?;
    let plan_file = dir
        .path()
        .join(plan.file_name().ok_or("no plan file name")?);
    let app = live::start(url)?;
    let started = Instant::now();
    let output = Command::new(planrun)
        .arg("apply")
        .arg(&plan_file)
        .args([
            "--database-url",
            url,
            "--no-backup",
            "--until",
            "split_chapters",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", planrun.display()))?;
    let wall = started.elapsed();
    let traffic = live::finish(app, url)?;
    let report = std::env::temp_dir().join(format!("planrun-bench-online-{mode}.txt"));
    let _ = std::fs::write(&report, &output.stdout);
    eprintln!("  {mode}: planrun's report in {}", report.display());
    if !output.status.success() {
        eprintln!(
            "  {mode} apply failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(ModeRun {
        mode,
        wall,
        exit: output.status.code(),
        traffic,
    })
}

pub(crate) fn print(runs: &[ModeRun]) {
    let Some(atomic) = runs.first() else {
        return;
    };
    println!("\nstages 1-2 with the application writing (--online; batched = {ONLINE_PARAMS})");
    println!(
        "  {:<8} {:>6} {:>10} {:>9} {:>14} {:>15} {:>15}",
        "mode", "exit", "total s", "x atomic", "writes lost", "longest write", "longest read"
    );
    for run in runs {
        let log = &run.traffic.log;
        println!(
            "  {:<8} {:>6} {:>10.1} {:>9.2} {:>7} of {:<6} {:>12} ms {:>12} ms",
            run.mode,
            run.exit.map_or("-".into(), |code| code.to_string()),
            run.wall.as_secs_f64(),
            run.wall.as_secs_f64() / atomic.wall.as_secs_f64(),
            run.traffic.lost.len(),
            log.committed_total(),
            log.longest_write_wait.as_millis(),
            log.longest_read_wait.as_millis()
        );
    }
}
