//! `--fleet N`: N memoir databases on `--fleet-clusters` throwaway clusters (3), the plan
//! rolled out with `planrun apply --fleet` at `max_parallel` 1, 4 and 8 (each on fresh
//! copies), then planrun's own cost per target once the plan is applied everywhere: a
//! no-op `apply --fleet` and `status --fleet`, each the best of two, alternating with
//! `--fleet-baseline`'s when given.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use planrun_memoir::legacy::ImagesType;
use planrun_tempdb::TempCluster;

use crate::data;

/// The limits measured, one fleet of fresh copies each.
const PARALLELISM: [usize; 3] = [1, 4, 8];

/// What one `--fleet` run sets up.
#[derive(Debug)]
pub(crate) struct FleetSetup {
    pub targets: usize,
    pub clusters: usize,
    pub chapters: usize,
    pub seed: u64,
    /// Another planrun whose no-op apply and status are timed beside this one's.
    pub baseline: Option<PathBuf>,
}

/// The no-op `apply --fleet` and `status --fleet` of one binary.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Overhead {
    pub no_op_apply: Duration,
    pub status: Duration,
}

/// What one `--fleet` run measured.
#[derive(Debug)]
pub(crate) struct FleetTimes {
    pub targets: usize,
    pub clusters: usize,
    pub chapters: usize,
    /// `(max_parallel, wall time of apply --fleet)`.
    pub rollouts: Vec<(usize, Duration)>,
    pub overhead: Overhead,
    pub baseline: Option<Overhead>,
}

pub(crate) fn run(planrun: &Path, plan: &Path, setup: &FleetSetup) -> Result<FleetTimes, String> {
    let (targets, chapters, seed) = (setup.targets, setup.chapters, setup.seed);
    let clusters: Vec<TempCluster> = (0..setup.clusters)
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
    let mut overhead: Option<Overhead> = None;
    let mut baseline: Option<Overhead> = None;
    for _ in 0..2 {
        if let Some(before) = &setup.baseline {
            baseline = Some(best(baseline, overhead_of(before, plan, &fleet)?));
        }
        overhead = Some(best(overhead, overhead_of(planrun, plan, &fleet)?));
    }
    Ok(FleetTimes {
        targets,
        clusters: setup.clusters,
        chapters,
        rollouts,
        overhead: overhead.unwrap_or_default(),
        baseline,
    })
}

/// A no-op `apply --fleet` and a `status --fleet` of `planrun` on `fleet`.
fn overhead_of(planrun: &Path, plan: &Path, fleet: &str) -> Result<Overhead, String> {
    let no_op_apply = timed(
        planrun,
        plan,
        &["apply", "--fleet", fleet, "--no-backup", "--format", "json"],
    )?;
    let status = timed(
        planrun,
        plan,
        &["status", "--fleet", fleet, "--format", "json"],
    )?;
    Ok(Overhead {
        no_op_apply,
        status,
    })
}

fn best(so_far: Option<Overhead>, now: Overhead) -> Overhead {
    match so_far {
        None => now,
        Some(so_far) => Overhead {
            no_op_apply: so_far.no_op_apply.min(now.no_op_apply),
            status: so_far.status.min(now.status),
        },
    }
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
        "fleet: {} targets of {} chapters each on {} clusters",
        times.targets, times.chapters, times.clusters
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
    let line = |what: &str, took: Duration, before: Option<Duration>| {
        let ratio = before
            .map(|before| {
                format!(
                    "; baseline {:.1} s, {:.0} ms per target, {:.2}x",
                    before.as_secs_f64(),
                    per(before),
                    before.as_secs_f64() / took.as_secs_f64()
                )
            })
            .unwrap_or_default();
        println!(
            "{what} (max_parallel 8, best of 2): {:.1} s, {:.0} ms per target{ratio}",
            took.as_secs_f64(),
            per(took)
        );
    };
    line(
        "no-op apply --fleet",
        times.overhead.no_op_apply,
        times.baseline.map(|b| b.no_op_apply),
    );
    line(
        "status --fleet",
        times.overhead.status,
        times.baseline.map(|b| b.status),
    );
}
