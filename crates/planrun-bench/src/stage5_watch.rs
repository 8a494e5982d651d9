//! What planrun's sessions wait on while stage 5 runs beside the application: a
//! sample of `pg_stat_activity` every [`EVERY`] (wait event and statement of each
//! active planrun session), and how often `chapter_sections` was read whole
//! (`pg_stat_user_tables.seq_scan`) over the run. The evidence for why a stage's
//! batches slow: a batch waiting on the application's row locks shows as
//! `Lock:transactionid`; one doing work shows no wait event (`CPU`) or `IO`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::data::{connect, db_error};

const EVERY: Duration = Duration::from_millis(100);
/// The sample lines printed, most frequent first.
const SHOWN: usize = 8;

/// Stage 5's progress as its checkpoint and change capture show it, looked at every
/// tenth sample: the batches committed, the largest backlog of the application's
/// changes to redo.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Progress {
    pub batches: i64,
    pub largest_backlog: i64,
}

fn look_at_progress(client: &mut postgres::Client, progress: &mut Progress) {
    let exists = |client: &mut postgres::Client, table: &str| {
        client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .is_ok_and(|row| row.get(0))
    };
    if exists(client, "planrun.checkpoints") {
        if let Ok(Some(row)) = client.query_opt(
            "SELECT batches::int8 FROM planrun.checkpoints WHERE stage_id = 'section_image_fk'",
            &[],
        ) {
            progress.batches = progress.batches.max(row.get(0));
        }
    }
    if exists(client, "planrun.changed_keys") {
        if let Ok(row) = client.query_one(
            "SELECT count(*) FROM planrun.changed_keys WHERE stage_id = 'section_image_fk'",
            &[],
        ) {
            progress.largest_backlog = progress.largest_backlog.max(row.get(0));
        }
    }
}

/// A running sampler; [`stop`](Watch::stop) it for what it saw.
pub(crate) struct Watch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(BTreeMap<String, u64>, Progress)>,
    scans_before: (i64, i64),
    url: String,
}

/// What the sampler saw.
#[derive(Debug, Default)]
pub(crate) struct Watched {
    /// `wait | statement` -> samples, most frequent first.
    pub waits: Vec<(String, u64)>,
    /// Whole-table reads of `chapter_sections` during the run, and the rows they read.
    pub seq_scans: i64,
    pub seq_rows: i64,
    pub progress: Progress,
}

fn section_scans(url: &str) -> Result<(i64, i64), String> {
    let row = connect(url)?
        .query_one(
            "SELECT coalesce(seq_scan, 0), coalesce(seq_tup_read, 0)
             FROM pg_stat_user_tables WHERE relid = 'public.chapter_sections'::regclass",
            &[],
        )
        .map_err(db_error("read chapter_sections' scans"))?;
    Ok((row.get(0), row.get(1)))
}

impl Watch {
    pub(crate) fn start(url: &str) -> Result<Watch, String> {
        let scans_before = section_scans(url)?;
        let mut client = connect(url)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut seen = BTreeMap::new();
            let mut progress = Progress::default();
            for sample in 0u64.. {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                if sample % 10 == 0 {
                    look_at_progress(&mut client, &mut progress);
                }
                let Ok(rows) = client.query(
                    "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') || ' | '
                            || left(regexp_replace(query, '\\s+', ' ', 'g'), 70)
                     FROM pg_stat_activity
                     WHERE application_name LIKE 'planrun%' AND state = 'active'
                       AND pid <> pg_backend_pid()",
                    &[],
                ) else {
                    break;
                };
                for row in rows {
                    *seen.entry(row.get::<_, String>(0)).or_insert(0) += 1;
                }
                std::thread::sleep(EVERY);
            }
            (seen, progress)
        });
        Ok(Watch {
            stop,
            thread,
            scans_before,
            url: url.to_owned(),
        })
    }

    pub(crate) fn stop(self) -> Watched {
        self.stop.store(true, Ordering::SeqCst);
        let (seen, progress) = self.thread.join().unwrap_or_default();
        let mut waits: Vec<(String, u64)> = seen.into_iter().collect();
        waits.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let after = section_scans(&self.url).unwrap_or(self.scans_before);
        Watched {
            waits,
            seq_scans: after.0 - self.scans_before.0,
            seq_rows: after.1 - self.scans_before.1,
            progress,
        }
    }
}

impl Watched {
    pub(crate) fn print(&self) {
        println!(
            "    batches committed: {} (the checkpoint's, looked at every second); largest backlog of the application's changes to redo: {}",
            self.progress.batches, self.progress.largest_backlog
        );
        println!(
            "    chapter_sections read whole {} times ({} rows) during the run",
            self.seq_scans, self.seq_rows
        );
        let total: u64 = self.waits.iter().map(|(_, n)| n).sum();
        println!(
            "    planrun's active sessions, {total} samples every {} ms (wait | statement):",
            EVERY.as_millis()
        );
        for (what, samples) in self.waits.iter().take(SHOWN) {
            println!("    {samples:>6}  {what}");
        }
    }
}
