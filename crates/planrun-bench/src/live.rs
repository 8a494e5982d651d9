//! `--with-app`: the simulated application (crate `planrun-appsim`) reads and writes
//! the database while planrun applies the plan, and afterwards every write it saw
//! commit is looked for in the migrated data.

use std::time::Duration;

use planrun_appsim::{AppConfig, AppLog, AppSimulator};

/// What the application saw during the apply.
pub(crate) struct LiveTraffic {
    pub log: AppLog,
    /// Committed writes not found in the migrated data, one line each.
    pub lost: Vec<String>,
}

/// Starts the application on `url` and waits until it has written a little.
pub(crate) fn start(url: &str) -> Result<AppSimulator, String> {
    let app = AppSimulator::start(url, AppConfig::default());
    if !app.wait_until(Duration::from_secs(60), |p| p.committed_least() >= 3) {
        return Err("the simulated application made no progress in 60 s".into());
    }
    Ok(app)
}

/// Stops the application and checks its committed writes against `url`.
pub(crate) fn finish(app: AppSimulator, url: &str) -> Result<LiveTraffic, String> {
    let log = app.stop();
    let mut client = postgres::Client::connect(url, postgres::NoTls)
        .map_err(|e| format!("cannot connect to check the writes: {e}"))?;
    let lost = log.lost_writes(&mut client);
    Ok(LiveTraffic { log, lost })
}

pub(crate) fn print(live: &LiveTraffic) {
    let log = &live.log;
    println!("\napplication running during the apply (--with-app, planrun-appsim defaults)");
    println!(
        "  writes committed {}, failed {} (wrote a column the plan had dropped, or waited and lost a race), in doubt {}",
        log.committed_total(),
        log.failed_total(),
        log.in_doubt
    );
    println!("  committed writes lost: {}", live.lost.len());
    for line in live.lost.iter().take(10) {
        println!("    {line}");
    }
    println!(
        "  reads of chapters: {}; longest read wait {} ms; longest write wait {} ms",
        log.reads,
        log.longest_read_wait.as_millis(),
        log.longest_write_wait.as_millis()
    );
}
