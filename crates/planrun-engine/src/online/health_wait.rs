//! Waiting for the server's health (`throttle.rs`) and saying so: one line when the
//! reason to wait changes (its kind or subject, not the lag or age, which change at
//! every look), then a summary every [`SUMMARY_EVERY`] with how long planrun has
//! waited, so that a wait of an hour is a few dozen lines, not fourteen thousand.
//! A slot that `on_replica_gone = "continue"` lets planrun go on without is said once
//! per stage. A signal ends the wait, also in the middle of a health query (the
//! signal's cancel ends the query).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use planrun_transform::BatchSettings;
use postgres::GenericClient;

use crate::online::throttle::{self, megabytes};

/// How often a bad signal is looked at again.
const RECHECK: Duration = Duration::from_millis(250);
/// How often a wait whose reason has not changed is summarised.
pub(crate) const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// What a stage has said about its waits, kept across them.
#[derive(Debug, Default)]
pub(crate) struct HealthWatch {
    /// Slots said to be gone and gone on without.
    ignored_slots: BTreeSet<String>,
}

impl HealthWatch {
    /// For the step's report: the slots the stage went on without, if any.
    pub(crate) fn note(&self) -> Option<String> {
        (!self.ignored_slots.is_empty()).then(|| {
            format!(
                "went on without replication slot(s) {}: no standby was connected (on_replica_gone = \"continue\")",
                self.ignored_slots.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    }

    /// Waits until every health signal is good, telling `say` what a user should
    /// know; returns how long it waited, or `None` when a signal interrupted the wait.
    pub(crate) fn wait_until_healthy<C: GenericClient>(
        &mut self,
        conn: &mut C,
        settings: &BatchSettings,
        mut say: impl FnMut(&str),
    ) -> Result<Option<Duration>, postgres::Error> {
        let mut started: Option<Instant> = None;
        let mut last_said = Instant::now();
        let mut state = None;
        loop {
            let health = match throttle::look(conn, settings) {
                Ok(health) => health,
                Err(_) if crate::db::interrupt::requested().is_some() => return Ok(None),
                Err(error) => return Err(error),
            };
            for (slot, behind) in health.gone_ignored {
                if self.ignored_slots.insert(slot.clone()) {
                    say(&format!(
                        "going on without replication slot {slot}: no standby is connected to it ({} behind); on_replica_gone = \"continue\"",
                        megabytes(behind)
                    ));
                }
            }
            let Some(reason) = health.waiting else {
                return Ok(Some(started.map_or(Duration::ZERO, |at| at.elapsed())));
            };
            let since = *started.get_or_insert_with(Instant::now);
            if state.as_ref() != Some(&reason.state()) {
                say(&format!("waiting: {reason}"));
                state = Some(reason.state());
                last_said = Instant::now();
            } else if last_said.elapsed() >= SUMMARY_EVERY {
                say(&format!(
                    "still waiting after {:.0} s: {reason}",
                    since.elapsed().as_secs_f64()
                ));
                last_said = Instant::now();
            }
            if !crate::db::interrupt::sleep(RECHECK) {
                return Ok(None);
            }
        }
    }
}
