//! `--stage5`: stage 5 of the memoir plan (`image` -> `image_id`) with the new
//! application version replacing and removing sections' images and reading
//! `chapter_sections` (`planrun_appsim::SectionApp`, 2 writers and 2 readers, 2 ms
//! between operations), and what the change capture costs that application.
//!
//! Stages 1 to 4 are applied once, with no application, into database `collected`;
//! every measurement then starts from its own file copy of it.
//!
//! - **The capture's cost under load**: two copies, one without capture and one with
//!   stage 5's capture installed by `planrun apply` (the batched stage held by
//!   `pause_while` right after its first transaction, so no batch competes). The same
//!   application runs on each in turn, [`ROUNDS`] rounds of [`ROUND`] each, so that the
//!   shared machine's noise falls on both alike; the p50 and p99 of its write latency
//!   (an autocommit `UPDATE chapter_sections SET image = ...` by key, timed at the
//!   client) with the capture against without.
//! - **The readers' longest wait**: stage 5 applied with the application running, in
//!   the plan's batched (online) mode, in atomic mode (the same stage with the step's
//!   `mode` removed), and, given `--baseline-plan`, with another plan's stage 5 (say
//!   main's before stage 5 went online); each with the committed images lost.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use planrun_appsim::{AppConfig, SectionApp, SectionLog};
use planrun_tempdb::TempCluster;

use crate::data::{self, connect, db_error};
use crate::stage5_watch::{Watch, Watched};

const ROUNDS: usize = 6;
const ROUND: Duration = Duration::from_secs(5);

/// Stage 5's batched step as the plan has it.
const BATCHED: &str = r#"params = { mode = "batched", batch_size = 5000, batch_target = "500ms" }"#;

/// The application's write latencies with and without the capture.
pub(crate) struct CaptureCost {
    pub without: Vec<Duration>,
    pub with: Vec<Duration>,
}

/// One application of stage 5 with the application running.
pub(crate) struct Stage5Run {
    pub variant: String,
    pub exit: Option<i32>,
    pub wall: Duration,
    pub log: SectionLog,
    pub lost: Vec<String>,
    /// Stopped at `--stage5-timeout`, unfinished.
    pub timed_out: bool,
    pub watched: Watched,
    /// planrun's lines about its batches and catch-up.
    pub notes: Vec<String>,
}

/// Which of stage 5's runs to make, and with what.
pub(crate) struct Variants {
    /// Of `baseline`, `atomic`, `batched`; all when empty.
    pub only: Vec<String>,
    pub baseline_plan: Option<PathBuf>,
    /// The planrun binary for the baseline run (default: the one measured).
    pub baseline_planrun: Option<PathBuf>,
    /// A run still going after this is stopped and reported unfinished.
    pub timeout: Option<Duration>,
}

impl Variants {
    fn wanted(&self, variant: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|only| only == variant)
    }
}

fn app_config() -> AppConfig {
    AppConfig {
        writers: 2,
        readers: 2,
        pause: Duration::from_millis(2),
        ..AppConfig::default()
    }
}

/// A copy of the plan's directory with `edit` applied to the plan's text; the plan
/// file's path in it.
fn plan_edited(
    plan: &Path,
    edit: impl Fn(&str) -> Result<String, String>,
) -> Result<(tempfile::TempDir, PathBuf), String> {
    let dir = crate::online::plan_with(plan, r#"on_invalid = "fail""#)?;
    let file = dir
        .path()
        .join(plan.file_name().ok_or("no plan file name")?);
    let text = std::fs::read_to_string(&file).map_err(|e| format!("cannot read the plan: {e}"))?;
    std::fs::write(&file, edit(&text)?).map_err(|e| format!("cannot write the plan: {e}"))?;
    Ok((dir, file))
}

fn with_stage_5_params(text: &str, params: &str) -> Result<String, String> {
    if !text.contains(BATCHED) {
        return Err(format!("the plan's stage 5 no longer says {BATCHED}"));
    }
    Ok(text.replace(BATCHED, &format!("params = {{ {params} }}")))
}

fn planrun_apply(planrun: &Path, plan: &Path, url: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(planrun);
    command
        .arg("apply")
        .arg(plan)
        .args(["--database-url", url, "--no-backup"])
        .args(extra)
        .stdin(Stdio::null());
    command
}

/// Applies stages 1 to 4 into database `collected`, with the `hold` flag table.
pub(crate) fn prepare(cluster: &TempCluster, planrun: &Path, plan: &Path) -> Result<(), String> {
    let url = data::copy_database(cluster, "legacy", "collected")?;
    eprintln!("  stages 1-4 into database collected ...");
    let output = planrun_apply(planrun, plan, &url, &["--until", "collect_images"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", planrun.display()))?;
    if !output.status.success() {
        return Err(format!(
            "stages 1-4 failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let mut client = connect(&url)?;
    for statement in [
        "CREATE TABLE hold (flag boolean); INSERT INTO hold VALUES (true)",
        "VACUUM (FREEZE, ANALYZE) chapter_sections, memoir_images",
    ] {
        client
            .batch_execute(statement)
            .map_err(db_error("prepare the collected database"))?;
    }
    Ok(())
}

/// Stage 5 started batched and held after its first transaction: the capture is on.
fn hold_capture(
    planrun: &Path,
    plan: &Path,
    url: &str,
) -> Result<(Child, tempfile::TempDir), String> {
    let (dir, file) = plan_edited(plan, |text| {
        with_stage_5_params(
            text,
            r#"mode = "batched", pause_while = "SELECT flag FROM public.hold""#,
        )
    })?;
    let child = planrun_apply(planrun, &file, url, &["--include-optional"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", planrun.display()))?;
    let mut client = connect(url)?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let installed: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_trigger
                                WHERE tgrelid = 'public.chapter_sections'::regclass
                                  AND tgname LIKE 'planrun\\_capture\\_%')",
                &[],
            )
            .map_err(db_error("look for the capture"))?
            .get(0);
        if installed {
            return Ok((child, dir));
        }
        if Instant::now() > deadline {
            return Err("planrun did not install stage 5's capture within 10 minutes".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The application's write latencies on a copy without the capture and on one with it.
pub(crate) fn capture_cost(
    cluster: &TempCluster,
    planrun: &Path,
    plan: &Path,
) -> Result<CaptureCost, String> {
    let without = data::copy_database(cluster, "collected", "cost_without")?;
    let with = data::copy_database(cluster, "collected", "cost_with")?;
    eprintln!("  installing stage 5's capture with planrun apply (batched, held) ...");
    let (mut held, _dir) = hold_capture(planrun, plan, &with)?;
    data::checkpoint(cluster)?;
    let mut cost = CaptureCost {
        without: Vec::new(),
        with: Vec::new(),
    };
    eprintln!(
        "  {ROUNDS} rounds of {} s of the application on each ...",
        ROUND.as_secs()
    );
    for _ in 0..ROUNDS {
        for (url, into) in [(&without, &mut cost.without), (&with, &mut cost.with)] {
            let app = SectionApp::start(url, app_config());
            std::thread::sleep(ROUND);
            into.extend(app.stop().write_latencies);
        }
    }
    let _ = held.kill();
    let _ = held.wait();
    Ok(cost)
}

/// Stage 5 applied on a copy of `collected` with the application running.
pub(crate) fn run_stage(
    cluster: &TempCluster,
    (planrun, plan): (&Path, &Path),
    variant: &str,
    timeout: Option<Duration>,
) -> Result<Stage5Run, String> {
    let url = data::copy_database(cluster, "collected", &format!("stage5_{variant}"))?;
    let app = SectionApp::start(&url, app_config());
    if !app.wait_for(20, 20, Duration::from_secs(60)) {
        return Err("the section application made no progress in 60 s".into());
    }
    let watch = Watch::start(&url)?;
    let started = Instant::now();
    let mut child = planrun_apply(planrun, plan, &url, &["--include-optional"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", planrun.display()))?;
    let readers = [
        drain(
            child
                .stdout
                .take()
                .map(|out| Box::new(out) as Box<dyn Read + Send>),
        ),
        drain(
            child
                .stderr
                .take()
                .map(|err| Box::new(err) as Box<dyn Read + Send>),
        ),
    ];
    let (status, timed_out) = wait_or_kill(&mut child, timeout)?;
    let wall = started.elapsed();
    let log = app.stop();
    let watched = watch.stop();
    let output: String = readers
        .into_iter()
        .map(|reader| reader.join().unwrap_or_default())
        .collect();
    if !status.success() {
        eprintln!("  stage 5 ({variant}) failed or stopped:\n{output}");
    }
    let notes = output
        .lines()
        .filter(|line| {
            ["batched:", "changes by the application", "catching up"]
                .iter()
                .any(|mark| line.contains(mark))
        })
        .map(|line| line.trim().to_owned())
        .collect();
    let lost = log.lost_images(&mut connect(&url)?);
    Ok(Stage5Run {
        variant: variant.to_owned(),
        exit: status.code(),
        wall,
        log,
        lost,
        timed_out,
        watched,
        notes,
    })
}

fn drain(pipe: Option<Box<dyn Read + Send>>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}

/// The child's exit, or its kill at `timeout`; whether it was killed.
fn wait_or_kill(
    child: &mut Child,
    timeout: Option<Duration>,
) -> Result<(std::process::ExitStatus, bool), String> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("planrun: {e}"))? {
            return Ok((status, false));
        }
        if timeout.is_some_and(|timeout| started.elapsed() > timeout) {
            let _ = child.kill();
            let status = child.wait().map_err(|e| format!("planrun: {e}"))?;
            return Ok((status, true));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stage 5 in each variant wanted: the baseline plan's (if any), atomic, batched.
pub(crate) fn runs(
    cluster: &TempCluster,
    planrun: &Path,
    plan: &Path,
    variants: &Variants,
) -> Result<Vec<Stage5Run>, String> {
    let mut runs = Vec::new();
    if let Some(baseline) = variants.baseline_plan.as_deref() {
        if variants.wanted("baseline") {
            let binary = variants.baseline_planrun.as_deref().unwrap_or(planrun);
            eprintln!(
                "  stage 5 of {} with {} ...",
                baseline.display(),
                binary.display()
            );
            runs.push(run_stage(
                cluster,
                (binary, baseline),
                "baseline",
                variants.timeout,
            )?);
        }
    }
    if variants.wanted("atomic") {
        eprintln!("  stage 5 atomic ...");
        let (_atomic_dir, atomic) = plan_edited(plan, |text| with_stage_5_params(text, ""))?;
        runs.push(run_stage(
            cluster,
            (planrun, &atomic),
            "atomic",
            variants.timeout,
        )?);
    }
    if variants.wanted("batched") {
        eprintln!("  stage 5 batched ...");
        runs.push(run_stage(
            cluster,
            (planrun, plan),
            "batched",
            variants.timeout,
        )?);
    }
    Ok(runs)
}

fn percentile(latencies: &[Duration], percent: usize) -> Duration {
    let mut sorted = latencies.to_vec();
    sorted.sort_unstable();
    sorted
        .get((sorted.len() * percent / 100).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// The capture's cost, printed as soon as it is measured.
pub(crate) fn print_cost(cost: &CaptureCost) {
    println!(
        "\nthe application's image writes (UPDATE chapter_sections SET image = ... by key, autocommit; 2 writers, 2 readers, 2 ms pause), {ROUNDS} rounds of {} s on each copy",
        ROUND.as_secs()
    );
    println!(
        "  {:<16} {:>8} {:>9} {:>9}",
        "capture", "writes", "p50 ms", "p99 ms"
    );
    for (name, latencies) in [("without", &cost.without), ("with (stage 5)", &cost.with)] {
        println!(
            "  {:<16} {:>8} {:>9.3} {:>9.3}",
            name,
            latencies.len(),
            ms(percentile(latencies, 50)),
            ms(percentile(latencies, 99))
        );
    }
    let ratio = |percent| {
        percentile(&cost.with, percent).as_secs_f64()
            / percentile(&cost.without, percent).as_secs_f64().max(1e-9)
    };
    println!(
        "  with / without: p50 {:.2}x, p99 {:.2}x (pgroll publishes 4-4.5x for bulk updates under its triggers)",
        ratio(50),
        ratio(99)
    );
}

/// Stage 5's runs.
pub(crate) fn print_runs(runs: &[Stage5Run]) {
    println!("\nstage 5 with the application writing images and reading chapter_sections");
    println!(
        "  {:<9} {:>5} {:>8} {:>16} {:>14} {:>14} {:>9}",
        "variant",
        "exit",
        "total s",
        "lost / committed",
        "longest read",
        "longest write",
        "p99 write"
    );
    for run in runs {
        println!(
            "  {:<9} {:>5} {:>8.1} {:>7} / {:<8} {:>11} ms {:>11} ms {:>6.1} ms",
            run.variant,
            run.exit.map_or("-".into(), |code| code.to_string()),
            run.wall.as_secs_f64(),
            run.lost.len(),
            run.log.writes,
            run.log.longest_read_wait.as_millis(),
            run.log.longest_write_wait.as_millis(),
            ms(percentile(&run.log.write_latencies, 99))
        );
        if run.timed_out {
            println!("    stopped unfinished at --stage5-timeout");
        }
        for line in run.lost.iter().take(5) {
            println!("    lost: {line}");
        }
        for note in run.notes.iter().rev().take(3).rev() {
            println!("    planrun: {note}");
        }
        run.watched.print();
    }
}
