//! The new application version, after stage 2 of the memoir plan: writers that replace
//! or remove sections' images (`chapter_sections.image`) and readers of
//! `chapter_sections` by key, timed, while stage 5 turns `image` into `image_id`.
//!
//! As in the old version's simulator, writers own disjoint sections
//! (`id % writers == index`), every write is one autocommit statement whose
//! `RETURNING` clause says what committed, and [`SectionLog::committed`] keeps the last
//! committed image of every section written: what the section's `memoir_images` row
//! must hold once `image` is gone. Once stage 5 has dropped `image` the writes fail in
//! the application (an error it sees, not a loss), and readers read `*`, which works in
//! either shape.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use postgres::types::Type;
use postgres::{Client, NoTls};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::progress::SharedProgress;
use crate::thread_context::{error_text, keep_error, spawn, ThreadContext, FIRST_ERRORS};
use crate::AppConfig;

/// What the section application did.
#[derive(Debug, Default)]
pub struct SectionLog {
    /// The last committed image of each section written (`None`: removed), as
    /// `jsonb` printed it.
    pub committed: BTreeMap<i64, Option<String>>,
    /// Sections whose last write broke off without an answer: either state is right.
    pub in_doubt: Vec<i64>,
    pub writes: u64,
    pub failed_writes: u64,
    pub reads: u64,
    pub failed_reads: u64,
    /// Each write's time at the client, in the order they were made.
    pub write_latencies: Vec<Duration>,
    pub longest_read_wait: Duration,
    pub longest_write_wait: Duration,
    pub first_errors: Vec<String>,
    /// Every section's image when the application started.
    pub before: BTreeMap<i64, Option<String>>,
}

/// A section's image as `memoir_images` holds it: url, caption, meta.
type ImageColumns = (String, Option<String>, serde_json::Value);

impl SectionLog {
    /// Every section whose image, as the application last saw it commit (or as it was
    /// when the application started), is not what the database holds for it now: in
    /// `image` while that column exists, else in the `memoir_images` row `image_id`
    /// points at. One line each; empty when nothing was lost.
    pub fn lost_images(&self, client: &mut Client) -> Vec<String> {
        let through_image_id = client
            .query_typed(
                "SELECT count(*) FROM pg_catalog.pg_attribute
                 WHERE attrelid = 'public.chapter_sections'::regclass
                   AND attname = 'image' AND NOT attisdropped",
                &[],
            )
            .expect("the catalog is readable")[0]
            .get::<_, i64>(0)
            == 0;
        let query = if through_image_id {
            "SELECT s.id, m.url, m.caption, m.meta::text FROM chapter_sections s
             LEFT JOIN memoir_images m ON m.id = s.image_id"
        } else {
            "SELECT id, image ->> 'url'::text, image ->> 'caption'::text,
                    (image - 'url'::text - 'caption'::text)::text
             FROM chapter_sections"
        };
        let now: BTreeMap<i64, Option<ImageColumns>> = client
            .query_typed(query, &[])
            .expect("the sections are readable")
            .iter()
            .map(|row| {
                let url: Option<String> = row.get(1);
                let meta: Option<String> = row.get(3);
                let columns = url.map(|url| {
                    let meta = meta.map_or(serde_json::Value::Null, |meta| {
                        serde_json::from_str(&meta).expect("meta is JSON")
                    });
                    (url, row.get(2), meta)
                });
                (row.get(0), columns)
            })
            .collect();
        let mut expected = self.before.clone();
        expected.extend(self.committed.clone());
        let mut lost = Vec::new();
        for (section, image) in &expected {
            if self.in_doubt.contains(section) {
                continue;
            }
            let Some(found) = now.get(section) else {
                // Deleted (its chapter, by cascade): not this application's write.
                continue;
            };
            let want = image.as_deref().map(|text| {
                let value: serde_json::Value = serde_json::from_str(text).expect("jsonb text");
                match planrun_memoir::image_row(&value) {
                    Ok(row) => Ok((row.url, row.caption, serde_json::Value::Object(row.meta))),
                    Err(invalid) => Err(invalid.to_string()),
                }
            });
            let matches = match (&want, found) {
                (None, None) => true,
                (Some(Ok(want)), Some(found)) => want == found,
                _ => false,
            };
            if !matches {
                lost.push(format!(
                    "section {section}: expected {image:?}, found {found:?}"
                ));
            }
        }
        lost
    }

    /// One line for a test's failure message or the bench.
    pub fn summary(&self) -> String {
        format!(
            "section application: {} image writes committed, {} failed, {} in doubt; {} reads ({} failed); longest read wait {} ms, longest write wait {} ms; first errors: {:?}",
            self.writes,
            self.failed_writes,
            self.in_doubt.len(),
            self.reads,
            self.failed_reads,
            self.longest_read_wait.as_millis(),
            self.longest_write_wait.as_millis(),
            self.first_errors
        )
    }

    fn absorb(&mut self, other: SectionLog) {
        self.committed.extend(other.committed);
        self.in_doubt.extend(other.in_doubt);
        self.writes += other.writes;
        self.failed_writes += other.failed_writes;
        self.reads += other.reads;
        self.failed_reads += other.failed_reads;
        self.write_latencies.extend(other.write_latencies);
        self.longest_read_wait = self.longest_read_wait.max(other.longest_read_wait);
        self.longest_write_wait = self.longest_write_wait.max(other.longest_write_wait);
        for error in other.first_errors {
            keep_error(&mut self.first_errors, error);
        }
    }
}

/// The running section application; [`stop`](SectionApp::stop) it for its log.
pub struct SectionApp {
    stop: Arc<AtomicBool>,
    progress: Arc<SharedProgress>,
    threads: Vec<JoinHandle<SectionLog>>,
    before: BTreeMap<i64, Option<String>>,
}

impl SectionApp {
    /// Reads the section ids of the database at `url` and starts `config.writers`
    /// image writers and `config.readers` readers of `chapter_sections`.
    ///
    /// Panics when the database cannot be read: this is test support.
    pub fn start(url: &str, config: AppConfig) -> SectionApp {
        let mut client = Client::connect(url, NoTls).expect("the simulator connects");
        let before: BTreeMap<i64, Option<String>> = client
            .query_typed(
                "SELECT id, image::text FROM chapter_sections ORDER BY id",
                &[],
            )
            .expect("the simulator reads the sections")
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        drop(client);
        let ids: Vec<i64> = before.keys().copied().collect();
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(SharedProgress::default());
        let started = Instant::now();
        let context = |name: String, offset: usize| ThreadContext {
            name,
            url: url.to_owned(),
            rng: ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(offset as u64)),
            pause: config.pause,
            deadline: started + config.max_duration,
            stop: Arc::clone(&stop),
            progress: Arc::clone(&progress),
        };
        let ids = Arc::new(ids);
        let mut threads = Vec::new();
        for index in 0..config.writers {
            let owned: Vec<i64> = ids
                .iter()
                .copied()
                .filter(|id| id.rem_euclid(config.writers as i64) == index as i64)
                .collect();
            let name = format!("app-section-writer-{index}");
            let context = context(name.clone(), index);
            threads.push(spawn(&name, move || write_images(context, owned)));
        }
        for index in 0..config.readers {
            let name = format!("app-section-reader-{index}");
            let context = context(name.clone(), config.writers + index);
            let ids = Arc::clone(&ids);
            threads.push(spawn(&name, move || read_sections(context, &ids)));
        }
        SectionApp {
            stop,
            progress,
            threads,
            before,
        }
    }

    /// Waits until the threads have committed `writes` writes and made `reads` reads,
    /// or `timeout` passes; true when they have.
    pub fn wait_for(&self, writes: u64, reads: u64, timeout: Duration) -> bool {
        let counts = self.progress.counts.lock().expect("progress lock");
        let enough =
            |p: &crate::Progress| p.committed.values().sum::<u64>() >= writes && p.reads >= reads;
        let (counts, _) = self
            .progress
            .changed
            .wait_timeout_while(counts, timeout, |p| !enough(p))
            .expect("progress lock");
        enough(&counts)
    }

    /// Stops every thread after its current statement and gathers their logs.
    pub fn stop(mut self) -> SectionLog {
        self.stop.store(true, Ordering::SeqCst);
        let mut log = SectionLog::default();
        for thread in std::mem::take(&mut self.threads) {
            log.absorb(thread.join().expect("a section thread panicked"));
        }
        log.first_errors.truncate(FIRST_ERRORS);
        log.before = std::mem::take(&mut self.before);
        log
    }
}

impl Drop for SectionApp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A writer: replaces (4 in 5) or removes (1 in 5) the image of one of its sections.
fn write_images(mut context: ThreadContext, mut owned: Vec<i64>) -> SectionLog {
    let mut log = SectionLog::default();
    let mut client: Option<Client> = None;
    let mut serial = 0u64;
    while !context.should_stop() {
        if client.as_ref().is_none_or(Client::is_closed) {
            client = context.connect(&mut log.first_errors);
            continue;
        }
        let Some(&id) = owned.choose(&mut context.rng) else {
            break;
        };
        serial += 1;
        let image = (context.rng.random_range(0..5) != 0).then(|| {
            format!(
                r#"{{"url": "{}/{serial}.jpg", "caption": "set by the application", "w": {}}}"#,
                context.name,
                context.rng.random_range(100..2000)
            )
        });
        let sent = Instant::now();
        let result = client.as_mut().expect("connected above").query_typed(
            "UPDATE chapter_sections SET image = $1::text::jsonb WHERE id = $2 RETURNING image::text",
            &[(&image, Type::TEXT), (&id, Type::INT8)],
        );
        let waited = sent.elapsed();
        log.longest_write_wait = log.longest_write_wait.max(waited);
        match result {
            Ok(rows) => {
                log.write_latencies.push(waited);
                match rows.first() {
                    Some(row) => {
                        log.committed.insert(id, row.get(0));
                        log.writes += 1;
                        context.progress.update(|p| {
                            *p.committed
                                .entry(crate::WriteKind::UpdateImages)
                                .or_default() += 1;
                        });
                    }
                    None => owned.retain(|owned| *owned != id),
                }
            }
            Err(error) => {
                keep_error(
                    &mut log.first_errors,
                    format!("{} section {id}: {}", context.name, error_text(&error)),
                );
                if error.as_db_error().is_some() {
                    log.failed_writes += 1;
                } else {
                    log.in_doubt.push(id);
                    owned.retain(|owned| *owned != id);
                }
                context.progress.update(|p| p.failed += 1);
            }
        }
        context.pause();
    }
    log
}

/// A reader: primary-key reads of random sections, timed.
fn read_sections(mut context: ThreadContext, ids: &[i64]) -> SectionLog {
    let mut log = SectionLog::default();
    let mut client: Option<Client> = None;
    while !context.should_stop() {
        if client.as_ref().is_none_or(Client::is_closed) {
            client = context.connect(&mut log.first_errors);
            continue;
        }
        let Some(&id) = ids.choose(&mut context.rng) else {
            break;
        };
        let sent = Instant::now();
        let result = client.as_mut().expect("connected above").query_typed(
            "SELECT * FROM chapter_sections WHERE id = $1",
            &[(&id, Type::INT8)],
        );
        log.longest_read_wait = log.longest_read_wait.max(sent.elapsed());
        match result {
            Ok(_) => {
                log.reads += 1;
                context.progress.update(|p| p.reads += 1);
            }
            Err(error) => {
                log.failed_reads += 1;
                keep_error(
                    &mut log.first_errors,
                    format!("{} read section {id}: {}", context.name, error_text(&error)),
                );
            }
        }
        context.pause();
    }
    log
}
