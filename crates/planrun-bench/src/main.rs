//! `planrun-bench`: how far `planrun apply` of the memoir plan is from the floor, the
//! fastest plain-SQL way to write the same rows, on one throwaway cluster in one run.
//!
//! The machine is shared and noisy, so absolute seconds mean little across runs: every
//! number worth quoting is a ratio between two measurements taken minutes apart in the
//! same process, on copies of the same database. See `docs/performance.md`.
//!
//! ```sh
//! cargo run --release -p planrun-bench -- --chapters 100000
//! cargo run --release -p planrun-bench -- --chapters 100000 --online
//! cargo run --release -p planrun-bench -- --chapters 10000 --capture-cost
//! cargo run --release -p planrun-bench -- --chapters 100000 --stage5 --baseline-plan /tmp/main/plans/memoir.toml
//! cargo run --release -p planrun-bench -- --chapters 100000 --revert
//! cargo run --release -p planrun-bench -- --check-scaling 10000
//! cargo run --release -p planrun-bench -- --fleet 200 --chapters 50
//! ```

mod capture_cost;
mod check_scaling;
mod checks;
mod data;
mod fleet;
mod floor;
mod live;
mod online;
mod proto;
mod report;
mod revert;
mod stage5;
mod stage5_watch;
mod subprocess;

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use planrun_memoir::legacy::ImagesType;

/// Benchmark `planrun apply` of the memoir plan against a server-side COPY floor.
#[derive(Debug, Parser)]
#[command(name = "planrun-bench")]
struct Args {
    /// Legacy chapters to generate.
    #[arg(long, default_value_t = 10_000)]
    chapters: usize,
    /// Type of the legacy chapters.images column: jsonb, json or text.
    #[arg(long, default_value = "jsonb")]
    images_type: String,
    /// Generator seed; fixed so runs are comparable.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The planrun binary (default: `planrun` next to this binary, built if missing).
    #[arg(long, value_name = "PATH")]
    planrun: Option<PathBuf>,
    /// The plan to apply (default: the workspace's plans/memoir.toml).
    #[arg(long, value_name = "PATH")]
    plan: Option<PathBuf>,
    /// Skip the in-process prototypes (each costs about one more split_chapters).
    #[arg(long)]
    no_prototypes: bool,
    /// Run the simulated application (reads, writes, inserts, deletes) during the apply
    /// and report lost writes and the longest waits it saw.
    #[arg(long)]
    with_app: bool,
    /// Only stages 1 and 2 with the simulated application writing, atomic and then
    /// batched (online) on copies of one database: lost writes, longest waits, time.
    #[arg(long)]
    online: bool,
    /// Only the application's write latency (p50, p99) without the change capture of a
    /// batched stage, with it, and with the former capture, for a typical and a 5 MB row.
    #[arg(long)]
    capture_cost: bool,
    /// Only stage 5 (after stages 1-4, applied once) with the new application version
    /// writing sections' images and reading chapter_sections: its write latency (p50,
    /// p99) with stage 5's change capture against without, then the longest read wait
    /// and the images lost in atomic and batched mode (and `--baseline-plan`'s).
    #[arg(long)]
    stage5: bool,
    /// Only every stage applied, then `revert --to start` with the simulated
    /// application writing and following the shape: each stage's revert time and
    /// locks, the application's longest waits and lost writes.
    #[arg(long)]
    revert: bool,
    /// With `--stage5`: another plan whose stage 5 to measure too (say main's before
    /// stage 5 went online), e.g. `git archive <commit> plans | tar -x -C /tmp/main`.
    #[arg(long, value_name = "PATH")]
    baseline_plan: Option<PathBuf>,
    /// With `--stage5 --baseline-plan`: the planrun binary that applies the baseline
    /// plan (say main's build), for a before/after of the engine in one run.
    #[arg(long, value_name = "PATH")]
    baseline_planrun: Option<PathBuf>,
    /// With `--stage5`: only these runs (comma-separated: baseline, atomic, batched).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    stage5_only: Vec<String>,
    /// With `--stage5`: skip the capture's cost (12 rounds of the application).
    #[arg(long)]
    no_capture_cost: bool,
    /// With `--stage5`: stop a run still going after this many seconds.
    #[arg(long, value_name = "SECS")]
    stage5_timeout: Option<u64>,
    /// Only `planrun check` of generated plans of N stages, a chain and independent
    /// stages, beside N/2 of each; no database.
    #[arg(long, value_name = "N")]
    check_scaling: Option<usize>,
    /// Only `apply --fleet` of N targets (of --chapters each) on three clusters at
    /// max_parallel 1, 4 and 8, then a no-op `apply --fleet` and `status --fleet`.
    #[arg(long, value_name = "N")]
    fleet: Option<usize>,
    /// With `--fleet`: how many throwaway clusters the targets are spread over.
    #[arg(long, value_name = "N", default_value_t = 3)]
    fleet_clusters: usize,
    /// With `--fleet`: another planrun binary (say one built from an earlier commit)
    /// whose no-op `apply --fleet` and `status --fleet` are timed too, alternating
    /// with this one's on the same fleet, for a before/after ratio from one run.
    #[arg(long, value_name = "PATH")]
    fleet_baseline: Option<PathBuf>,
    /// Leave the cluster running at the end and print how to stop it.
    #[arg(long)]
    keep: bool,
}

fn main() {
    let args = Args::parse();
    if let Err(message) = run(&args) {
        eprintln!("planrun-bench: {message}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    let images: ImagesType = args.images_type.parse().map_err(|e| format!("{e}"))?;
    let planrun = subprocess::locate_planrun(args.planrun.as_deref())?;
    let plan = match &args.plan {
        Some(plan) => plan.clone(),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../plans/memoir.toml"
        )),
    };
    let plan = plan
        .canonicalize()
        .map_err(|e| format!("cannot find the plan {}: {e}", plan.display()))?;
    let plan_dir = plan.parent().unwrap_or(&plan).to_path_buf();

    if let Some(stages) = args.check_scaling {
        check_scaling::print(&check_scaling::run(&planrun, stages)?);
        return Ok(());
    }
    if let Some(targets) = args.fleet {
        let started = Instant::now();
        let setup = fleet::FleetSetup {
            targets,
            clusters: args.fleet_clusters.max(1),
            chapters: args.chapters,
            seed: args.seed,
            baseline: args.fleet_baseline.clone(),
        };
        fleet::print(&fleet::run(&planrun, &plan, &setup)?);
        eprintln!(
            "planrun-bench: done in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }

    eprintln!(
        "planrun-bench: {} chapters, images {images}, seed {}; planrun = {}",
        args.chapters,
        args.seed,
        planrun.display()
    );
    let started = Instant::now();
    let cluster = data::start_cluster()?;
    let loaded = data::load_template(&cluster, args.chapters, args.seed, images)?;
    eprintln!(
        "  legacy data: {} chapters, {} MB, loaded in {:.1} s",
        loaded.chapters,
        loaded.bytes / 1_000_000,
        loaded.duration.as_secs_f64()
    );

    if args.capture_cost {
        let measured = capture_cost::run(&cluster, &planrun, &plan)?;
        capture_cost::print(&measured);
        eprintln!(
            "planrun-bench: done in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }

    if args.stage5 {
        stage5::prepare(&cluster, &planrun, &plan)?;
        if !args.no_capture_cost {
            stage5::print_cost(&stage5::capture_cost(&cluster, &planrun, &plan)?);
        }
        let variants = stage5::Variants {
            only: args.stage5_only.clone(),
            baseline_plan: args.baseline_plan.clone(),
            baseline_planrun: args.baseline_planrun.clone(),
            timeout: args.stage5_timeout.map(std::time::Duration::from_secs),
        };
        let runs = stage5::runs(&cluster, &planrun, &plan, &variants)?;
        stage5::print_runs(&runs);
        eprintln!(
            "planrun-bench: done in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }

    if args.revert {
        let url = data::clone_database(&cluster, "revert_db")?;
        revert::print(&revert::run(&planrun, &plan, &url)?);
        eprintln!(
            "planrun-bench: done in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        if args.keep {
            let kept = cluster.keep();
            println!("\ncluster kept: {} (stop: {})", kept.url, kept.stop_command);
        }
        return Ok(());
    }

    if args.online {
        let mut runs = Vec::new();
        for (mode, params) in [
            ("atomic", r#"on_invalid = "fail""#),
            ("batched", online::ONLINE_PARAMS),
        ] {
            eprintln!("  {mode} split with the application writing ...");
            let url = data::clone_database(&cluster, &format!("online_{mode}"))?;
            runs.push(online::run(&planrun, &plan, &url, mode, params)?);
        }
        online::print(&runs);
        eprintln!(
            "planrun-bench: done in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }

    // (a) planrun itself, first, on its own copy.
    let url = data::clone_database(&cluster, "planrun_db")?;
    eprintln!("  running planrun apply ...");
    let app = if args.with_app {
        Some(live::start(&url)?)
    } else {
        None
    };
    let planrun_run = subprocess::apply(&planrun, &plan, &url)?;
    let live_traffic = match app {
        Some(app) => Some(live::finish(app, &url)?),
        None => None,
    };

    // (b) the floor: the same rows, server-side COPY, on two more copies.
    let files = floor::ResultFiles::compute(&data::clone_database(&cluster, "floor_a")?)?;
    let floor_b_url = data::clone_database(&cluster, "floor_b")?;
    eprintln!("  floor with constraints in place ...");
    let floor_a_url = cluster.url("floor_a");
    let with_constraints = floor::split_floor(&floor_a_url, &files, false)?;
    eprintln!("  floor with constraints added after ...");
    let constraints_after = floor::split_floor(&floor_b_url, &files, true)?;
    eprintln!("  collect floor (INSERT ... SELECT) ...");
    let collect = floor::collect_floor(&floor_a_url, &plan_dir)?;

    eprintln!("  timing the captures and verifications ...");
    let checks = checks::time_checks(
        &plan,
        &data::clone_database(&cluster, "checks_db")?,
        &floor_a_url,
    )?;

    let mut prototypes = Vec::new();
    if !args.no_prototypes {
        for variant in proto::Variant::ALL {
            eprintln!("  prototype: {} ...", variant.label());
            let url = data::clone_database(&cluster, variant.database())?;
            prototypes.push(proto::run(&url, &plan_dir, variant)?);
        }
    }

    report::print(&report::Everything {
        chapters: args.chapters,
        images,
        seed: args.seed,
        loaded: &loaded,
        planrun: &planrun_run,
        files: &files,
        with_constraints: &with_constraints,
        constraints_after: &constraints_after,
        collect: &collect,
        checks: &checks,
        prototypes: &prototypes,
    });
    if let Some(live_traffic) = &live_traffic {
        live::print(live_traffic);
    }
    eprintln!(
        "planrun-bench: done in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    if args.keep {
        let kept = cluster.keep();
        println!("\ncluster kept: {} (stop: {})", kept.url, kept.stop_command);
    }
    Ok(())
}
