//! `--fleet N`: N memoir databases on three throwaway clusters, the plan rolled out with
//! `planrun apply --fleet` at `max_parallel` 1, 4 and 8 (each on fresh copies), then
//! planrun's own cost per target once the plan is applied everywhere: a no-op
//! `apply --fleet` and `status --fleet`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use planrun_memoir::legacy::ImagesType;
use planrun_tempdb::TempCluster;

use crate::data;

/// The limits measured, one fleet of fresh copies each.
const PARALLELISM: [usize; 3] = [1, 4, 8];

/// What one `--fleet` run measured.
#[derive(Debug)]
pub(crate) struct FleetTimes {
    pub targets: usize,
    pub chapters: usize,
    /// `(max_parallel, wall time of apply --fleet)`.
    pub rollouts: Vec<(usize, Duration)>,
    pub no_op_apply: Duration,
    pub status: Duration,
}

pub(crate) fn run(
    planrun: &Path,
    plan: &Path,
    targets: usize,
    chapters: usize,
    seed: u64,
) -> Result<FleetTimes, String> {
    let clusters: Vec<TempCluster> = (0..3)
        .map(|_| data::start_cluster())
        .collect::<Result<_, _>>()?;
    for cluster in &clusters {
        data::load_template(cluster, chapters, seed, ImagesType::Jsonb)?;
    }
    let work = tempfile::tempdir().map_err(|e| format!("cannot make a directory: {e}"))?;
    let mut rollouts = Vec::new();
    let mut last_fleet = None;
    for parallel in PARALLELISM {
        let fleet = make_fleet(&clusters, work.path(), targets, parallel)?;
        eprintln!("  apply --fleet, {targets} targets, max_parallel {parallel} ...");
        let took = timed(
            planrun,
            plan,
            &[
                "apply",
                "--fleet",
                &fleet,
                "--no-backup",
                "--format",
                "json",
            ],
        )?;
        rollouts.push((parallel, took));
        last_fleet = Some(fleet);
    }
    let fleet = last_fleet.ok_or("no fleet was made")?;
    eprintln!("  no-op apply --fleet and status --fleet ...");
    let no_op_apply = timed(
        planrun,
        plan,
        &[
            "apply",
            "--fleet",
            &fleet,
            "--no-backup",
            "--format",
            "json",
        ],
    )?;
    let status = timed(
        planrun,
        plan,
        &["status", "--fleet", &fleet, "--format", "json"],
    )?;
    Ok(FleetTimes {
        targets,
        chapters,
        rollouts,
        no_op_apply,
        status,
    })
}

/// `targets` fresh copies of the legacy data, over the clusters in turn, and the fleet
/// file naming them (every limit `parallel`).
fn make_fleet(
    clusters: &[TempCluster],
    dir: &Path,
    targets: usize,
    parallel: usize,
) -> Result<String, String> {
    let mut text =
        format!("[fleet]\nmax_parallel = {parallel}\nmax_parallel_per_host = {parallel}\n\n");
    for i in 0..targets {
        let cluster = &clusters[i % clusters.len()];
        let name = format!("p{parallel}_t{i:04}");
        cluster
            .psql(
                "postgres",
                &format!("CREATE DATABASE {name} TEMPLATE legacy STRATEGY FILE_COPY"),
            )
            .map_err(|e| format!("cannot copy the legacy database to {name}: {e}"))?;
        text.push_str(&format!(
            "[[target]]\nname = \"{name}\"\nurl = \"{}\"\n\n",
            cluster.url(&name)
        ));
    }
    for cluster in clusters {
        data::checkpoint(cluster)?;
    }
    let path = dir.join(format!("fleet-{parallel}.toml"));
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path.display().to_string())
}

/// Runs `planrun <args>` (the plan inserted after the command) and times it; it must exit 0.
fn timed(planrun: &Path, plan: &Path, args: &[&str]) -> Result<Duration, String> {
    let started = Instant::now();
    let output = Command::new(planrun)
        .arg(args[0])
        .arg(plan)
        .args(&args[1..])
        .env_remove("DATABASE_URL")
        .output()
        .map_err(|e| format!("cannot run planrun: {e}"))?;
    let took = started.elapsed();
    if !output.status.success() {
        return Err(format!(
            "planrun {} exited {:?}: {}",
            args.join(" "),
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(took)
}

pub(crate) fn print(times: &FleetTimes) {
    println!(
        "fleet: {} targets of {} chapters each on 3 clusters",
        times.targets, times.chapters
    );
    println!("| max_parallel | apply --fleet | per target |");
    println!("|---|---|---|");
    for (parallel, took) in &times.rollouts {
        println!(
            "| {parallel} | {:.1} s | {:.0} ms |",
            took.as_secs_f64(),
            took.as_secs_f64() * 1000.0 / times.targets as f64
        );
    }
    let per = |took: Duration| took.as_secs_f64() * 1000.0 / times.targets as f64;
    println!(
        "no-op apply --fleet (max_parallel 8): {:.1} s, {:.0} ms per target",
        times.no_op_apply.as_secs_f64(),
        per(times.no_op_apply)
    );
    println!(
        "status --fleet (max_parallel 8): {:.1} s, {:.0} ms per target",
        times.status.as_secs_f64(),
        per(times.status)
    );
}
