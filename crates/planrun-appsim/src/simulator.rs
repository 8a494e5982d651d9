//! Starting and stopping the simulated application: [`AppSimulator`] reads the ids to
//! work on, starts the writer and reader threads, and gathers their logs when stopped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::progress::SharedProgress;
use crate::reader::{Reader, ReaderLog};
use crate::thread_context::{spawn, ThreadContext, FIRST_ERRORS};
use crate::writer::{Writer, WriterLog};
use crate::{AppConfig, AppLog, Progress};

/// The running application; [`stop`](AppSimulator::stop) it to get its [`AppLog`].
///
/// Dropping it without `stop` asks the threads to stop but does not wait for them.
pub struct AppSimulator {
    stop: Arc<AtomicBool>,
    progress: Arc<SharedProgress>,
    writers: Vec<JoinHandle<WriterLog>>,
    readers: Vec<JoinHandle<ReaderLog>>,
}

impl AppSimulator {
    /// Reads the chapter and memoir ids in the database at `url`, then starts
    /// `config.writers` writer and `config.readers` reader threads against it.
    ///
    /// Panics when the database cannot be read: this is test support.
    pub fn start(url: &str, config: AppConfig) -> AppSimulator {
        let mut client = Client::connect(url, NoTls).expect("the simulator connects");
        let chapter_ids: Vec<i64> = client
            .query_typed("SELECT id FROM chapters ORDER BY id", &[])
            .expect("the simulator reads the chapter ids")
            .iter()
            .map(|row| row.get(0))
            .collect();
        let memoir_ids: Vec<i64> = client
            .query_typed("SELECT id FROM memoirs ORDER BY id", &[])
            .expect("the simulator reads the memoir ids")
            .iter()
            .map(|row| row.get(0))
            .collect();
        let images_type: String = client
            .query_typed(
                "SELECT format_type(atttypid, atttypmod) FROM pg_catalog.pg_attribute
                 WHERE attrelid = 'chapters'::regclass AND attname = 'images'
                   AND NOT attisdropped",
                &[],
            )
            .expect("the simulator reads the images column type")
            .first()
            .map_or_else(|| "jsonb".to_owned(), |row| row.get(0));
        drop(client);

        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(SharedProgress::default());
        let started = Instant::now();
        let memoir_ids = Arc::new(memoir_ids);
        let chapter_ids = Arc::new(chapter_ids);
        let context = |name: String, offset: usize| ThreadContext {
            name,
            url: url.to_owned(),
            rng: ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(offset as u64)),
            pause: config.pause,
            deadline: started + config.max_duration,
            stop: Arc::clone(&stop),
            progress: Arc::clone(&progress),
        };

        let writers = (0..config.writers)
            .map(|index| {
                let owned = chapter_ids
                    .iter()
                    .copied()
                    .filter(|id| id.rem_euclid(config.writers as i64) == index as i64)
                    .filter(|id| config.chapter_ids_below.is_none_or(|below| *id < below))
                    .collect();
                let name = format!("app-writer-{index}");
                let writer = Writer::new(
                    context(name.clone(), index),
                    index,
                    owned,
                    Arc::clone(&memoir_ids),
                    images_type.clone(),
                    config.follow_shape,
                );
                spawn(&name, move || writer.run())
            })
            .collect();
        let readers = (0..config.readers)
            .map(|index| {
                let name = format!("app-reader-{index}");
                let reader = Reader::new(
                    context(name.clone(), config.writers + index),
                    Arc::clone(&chapter_ids),
                );
                spawn(&name, move || reader.run())
            })
            .collect();

        AppSimulator {
            stop,
            progress,
            writers,
            readers,
        }
    }

    /// The counts so far.
    pub fn progress(&self) -> Progress {
        self.progress.counts.lock().expect("progress lock").clone()
    }

    /// Waits until `condition` holds for the counts, or `timeout` passes; true when it
    /// held. Wakes on every operation the threads finish, not on a timer.
    pub fn wait_until(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&Progress) -> bool,
    ) -> bool {
        let counts = self.progress.counts.lock().expect("progress lock");
        let (counts, _) = self
            .progress
            .changed
            .wait_timeout_while(counts, timeout, |counts| !condition(counts))
            .expect("progress lock");
        condition(&counts)
    }

    /// Asks every thread to stop after its current operation, waits for them, and
    /// returns what they did. A thread waiting on a lock finishes that statement first.
    pub fn stop(mut self) -> AppLog {
        self.stop.store(true, Ordering::SeqCst);
        let mut log = AppLog::default();
        for handle in std::mem::take(&mut self.writers) {
            log.absorb_writer(handle.join().expect("a simulator writer thread panicked"));
        }
        for handle in std::mem::take(&mut self.readers) {
            log.absorb_reader(handle.join().expect("a simulator reader thread panicked"));
        }
        log.first_errors.truncate(FIRST_ERRORS);
        log
    }
}

impl Drop for AppSimulator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
