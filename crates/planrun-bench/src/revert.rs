//! `--revert`: the memoir plan applied with its optional stage, then `planrun revert
//! --to start` while the simulated application writes and follows the shape (crate
//! `planrun-appsim`, `AppConfig::follow_shape`): each stage's revert time and locks
//! from the revert's JSON report, the application's longest waits, and every write it
//! saw commit looked for afterwards.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use planrun_appsim::{AppConfig, AppLog, AppSimulator, Progress};
use serde_json::Value;

/// What one `revert --to start` under the application did.
pub(crate) struct RevertRun {
    pub apply_wall: Duration,
    pub revert_wall: Duration,
    pub exit_code: i32,
    pub report: Value,
    pub log: AppLog,
    pub lost: Vec<String>,
}

/// How many writes the application makes in each shape around the revert.
const WRITES: u64 = 100;

pub(crate) fn run(planrun: &Path, plan: &Path, url: &str) -> Result<RevertRun, String> {
    eprintln!("  applying every stage ...");
    let applied = crate::subprocess::apply(planrun, plan, url)?;
    if applied.exit_code != 0 {
        return Err(format!("the apply failed: {}", applied.outcome));
    }
    let app = AppSimulator::start(
        url,
        AppConfig {
            follow_shape: true,
            ..AppConfig::default()
        },
    );
    let wait = |app: &AppSimulator, what: &str, enough: &dyn Fn(&Progress) -> bool| match app
        .wait_until(Duration::from_secs(300), |p| enough(p))
    {
        true => Ok(()),
        false => Err(format!("the application made no {what} in 300 s")),
    };
    wait(&app, "writes in the new shape", &|p| {
        p.committed_in_new_shape >= WRITES
    })?;
    eprintln!("  reverting to the start with the application writing ...");
    let started = Instant::now();
    let output = Command::new(planrun)
        .arg("revert")
        .arg(plan)
        .args(["--to", "start", "--no-backup", "--format", "json"])
        .args(["--database-url", url])
        .output()
        .map_err(|e| format!("cannot run planrun revert: {e}"))?;
    let revert_wall = started.elapsed();
    wait(&app, "legacy writes after the revert", &|p| {
        p.committed_total() - p.committed_in_new_shape >= WRITES
    })?;
    let log = app.stop();
    let report: Value = serde_json::from_slice(&output.stdout).map_err(|e| {
        format!(
            "the revert printed no JSON report ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    let mut client = crate::data::connect(url)?;
    let lost = log.lost_writes(&mut client);
    Ok(RevertRun {
        apply_wall: applied.wall,
        revert_wall,
        exit_code: output.status.code().unwrap_or(-1),
        report,
        log,
        lost,
    })
}

pub(crate) fn print(run: &RevertRun) {
    println!(
        "\nrevert --to start with the application writing (apply {:.1} s before it)",
        run.apply_wall.as_secs_f64()
    );
    println!(
        "  exit {}, {:.1} s in all",
        run.exit_code,
        run.revert_wall.as_secs_f64()
    );
    let stages = run.report["stages"].as_array().cloned().unwrap_or_default();
    for stage in &stages {
        println!(
            "  {:<18} {:<10} {:>8} ms  rows {}",
            stage["id"].as_str().unwrap_or("?"),
            stage["status"].as_str().unwrap_or("?"),
            stage["duration_ms"],
            stage["rows_affected"]
        );
        for lock in stage["locks"].as_array().into_iter().flatten() {
            println!(
                "      {} {} ({}), waited {} ms in {} attempt(s)",
                lock["mode"].as_str().unwrap_or("?"),
                lock["table"].as_str().unwrap_or("?"),
                lock["declared_by"].as_str().unwrap_or("?"),
                lock["waited_ms"],
                lock["attempts"]
            );
        }
        if let Some(message) = stage["error"]["message"].as_str() {
            println!("      error: {message}");
            println!("      statement: {}", stage["error"]["statement"]);
        }
        let retries = stage["lock_retries"].as_array().map_or(0, Vec::len);
        if retries > 0 {
            println!("      lock retries: {retries}");
        }
        for step in stage["steps"].as_array().into_iter().flatten() {
            println!(
                "      step {}: {} ms",
                step["name"].as_str().unwrap_or("?"),
                step["duration_ms"]
            );
        }
    }
    let log = &run.log;
    println!("  application: {}", log.summary());
    println!("  committed writes lost: {}", run.lost.len());
    for line in run.lost.iter().take(10) {
        println!("    {line}");
    }
}
