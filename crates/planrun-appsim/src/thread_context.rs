//! What every simulator thread carries ([`ThreadContext`]): its name, its connection
//! settings, its random numbers, its pace and the signal to stop; and how a thread keeps
//! the errors it sees for the log.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};
use rand_chacha::ChaCha8Rng;

use crate::progress::SharedProgress;

/// What a thread needs besides its own work; the progress it updates and the stop flag
/// are shared with the [`AppSimulator`](crate::AppSimulator).
pub(crate) struct ThreadContext {
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) pause: Duration,
    pub(crate) deadline: Instant,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) progress: Arc<SharedProgress>,
}

impl ThreadContext {
    pub(crate) fn should_stop(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || Instant::now() >= self.deadline
    }

    pub(crate) fn pause(&self) {
        if !self.pause.is_zero() {
            thread::sleep(self.pause);
        }
    }

    /// A connection named after the thread, retried until it succeeds or the thread is
    /// asked to stop; every failure goes to `errors`.
    pub(crate) fn connect(&self, errors: &mut Vec<String>) -> Option<Client> {
        let mut config: postgres::Config = self.url.parse().expect("a valid database url");
        config.application_name(&self.name);
        loop {
            if self.should_stop() {
                return None;
            }
            match config.connect(NoTls) {
                Ok(client) => return Some(client),
                Err(error) => {
                    keep_error(
                        errors,
                        format!("{} connect: {}", self.name, error_text(&error)),
                    );
                    thread::sleep(RECONNECT_PAUSE);
                }
            }
        }
    }
}

/// How long a thread waits before trying to connect again.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);

pub(crate) fn spawn<T: Send + 'static>(
    name: &str,
    run: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(run)
        .expect("a simulator thread starts")
}

/// How many error messages each thread and the log keep.
pub(crate) const FIRST_ERRORS: usize = 10;

pub(crate) fn keep_error(errors: &mut Vec<String>, message: String) {
    if errors.len() < FIRST_ERRORS {
        errors.push(message);
    }
}

/// The server's message and SQLSTATE, which `postgres::Error` shows only as "db error".
pub(crate) fn error_text(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} [SQLSTATE {}]", db.message(), db.code().code()),
        None => error.to_string(),
    }
}
