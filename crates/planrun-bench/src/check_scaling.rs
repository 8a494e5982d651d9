//! `--check-scaling`: how long `planrun check` takes on generated plans of 10,000
//! stages, a chain (each stage depends on the one before) and as many independent
//! stages, with half the count beside each so that a cost growing faster than the
//! plan shows as a ratio over 2 (issue 26, item 12: a 3,000-stage chain took 9 s).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// One `planrun check` of a generated plan.
pub(crate) struct CheckRun {
    pub shape: &'static str,
    pub stages: usize,
    pub wall: Duration,
    pub exit: Option<i32>,
}

/// Checks a chain and independent stages, each at `stages / 2` and `stages`.
pub(crate) fn run(planrun: &Path, stages: usize) -> Result<Vec<CheckRun>, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("cannot make a directory: {e}"))?;
    let mut runs = Vec::new();
    for (shape, chained) in [("chain", true), ("independent", false)] {
        for count in [stages / 2, stages] {
            let file = dir.path().join(format!("{shape}_{count}.toml"));
            std::fs::write(&file, generated(count, chained))
                .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
            let started = Instant::now();
            let output = Command::new(planrun)
                .arg("check")
                .arg(&file)
                .output()
                .map_err(|e| format!("cannot run {}: {e}", planrun.display()))?;
            runs.push(CheckRun {
                shape,
                stages: count,
                wall: started.elapsed(),
                exit: output.status.code(),
            });
        }
    }
    Ok(runs)
}

/// A plan of `stages` stages of one inline SQL step, each depending on the one before
/// when `chained`.
fn generated(stages: usize, chained: bool) -> String {
    let mut text = String::from("[plan]\nname = \"scale\"\n");
    for i in 0..stages {
        text.push_str(&format!("\n[[stage]]\nid = \"s{i}\"\n"));
        if chained && i > 0 {
            text.push_str(&format!("depends_on = [\"s{}\"]\n", i - 1));
        }
        text.push_str(&format!("[[stage.step]]\nsql = \"SELECT {i}\"\n"));
    }
    text
}

pub(crate) fn print(runs: &[CheckRun]) {
    println!("\nplanrun check on generated plans (--check-scaling)");
    println!(
        "  {:<12} {:>7} {:>6} {:>9} {:>12}",
        "shape", "stages", "exit", "wall s", "x half size"
    );
    for pair in runs.chunks(2) {
        let half = &pair[0];
        for run in pair {
            println!(
                "  {:<12} {:>7} {:>6} {:>9.2} {:>12.2}",
                run.shape,
                run.stages,
                run.exit.map_or("-".into(), |code| code.to_string()),
                run.wall.as_secs_f64(),
                run.wall.as_secs_f64() / half.wall.as_secs_f64()
            );
        }
    }
}
