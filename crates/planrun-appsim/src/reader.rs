//! A reader thread: primary-key reads of random chapters, timed, so that a test sees how
//! long the migration makes the application's reads wait.

use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::Client;
use rand::seq::IndexedRandom;

use crate::thread_context::{error_text, keep_error, ThreadContext};

/// What one reader did, absorbed into the [`AppLog`](crate::AppLog) when it stops.
#[derive(Default)]
pub(crate) struct ReaderLog {
    pub(crate) reads: u64,
    pub(crate) failed: u64,
    pub(crate) longest_wait: Duration,
    pub(crate) first_errors: Vec<String>,
}

/// One reader thread, named `app-reader-N` for reader `N`.
pub(crate) struct Reader {
    context: ThreadContext,
    chapter_ids: Arc<Vec<i64>>,
    client: Option<Client>,
    log: ReaderLog,
}

impl Reader {
    /// A reader of the chapters `chapter_ids`; it connects when it runs.
    pub(crate) fn new(context: ThreadContext, chapter_ids: Arc<Vec<i64>>) -> Reader {
        Reader {
            context,
            chapter_ids,
            client: None,
            log: ReaderLog::default(),
        }
    }

    pub(crate) fn run(mut self) -> ReaderLog {
        while !self.context.should_stop() {
            if self.client.as_ref().is_none_or(Client::is_closed) {
                self.client = self.context.connect(&mut self.log.first_errors);
                continue;
            }
            let Some(&id) = self.chapter_ids.choose(&mut self.context.rng) else {
                break;
            };
            let client = self.client.as_mut().expect("connected above");
            let sent = Instant::now();
            let result = client.query_typed(
                "SELECT id, title FROM chapters WHERE id = $1",
                &[(&id, postgres::types::Type::INT8)],
            );
            self.log.longest_wait = self.log.longest_wait.max(sent.elapsed());
            match result {
                Ok(_) => {
                    self.log.reads += 1;
                    self.context.progress.update(|p| p.reads += 1);
                }
                Err(error) => {
                    self.log.failed += 1;
                    let message = format!(
                        "{} read chapter {id}: {}",
                        self.context.name,
                        error_text(&error)
                    );
                    keep_error(&mut self.log.first_errors, message);
                }
            }
            self.context.pause();
        }
        self.log
    }
}
