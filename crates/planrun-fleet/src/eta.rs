//! The fleet's estimate of its time left, from what this run has seen: how long a
//! target took on average, how many ran at once on average (the concurrency the
//! limits and the servers actually allowed, not the limit itself), and how many
//! targets are left. `Pace` keeps the readings as the rollout goes; `estimate` is
//! pure, so its cases are tested here without a database.

use std::time::{Duration, Instant};

/// What the progress view says of the time left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Eta {
    /// No target has finished in this run yet: nothing to estimate from.
    #[default]
    Unknown,
    /// Nothing is left to run.
    Done,
    /// About this long.
    Left(Duration),
}

/// The readings an estimate is made from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaceReading {
    /// Targets finished in this run (whatever their state).
    pub finished: usize,
    /// Their durations, added up.
    pub finished_time: Duration,
    /// Targets running now or still to start in this run.
    pub left: usize,
    /// Average number of targets running at once since the rollout started (time
    /// spent by targets, added up, over the wall time).
    pub concurrency: f64,
    /// `max_parallel`: the estimate never assumes more at once than this.
    pub max_parallel: usize,
}

/// The time left: the average target's duration, times the targets left, over the
/// concurrency achieved (at least one, at most `max_parallel` and the targets left).
pub fn estimate(reading: &PaceReading) -> Eta {
    if reading.left == 0 {
        return Eta::Done;
    }
    if reading.finished == 0 {
        return Eta::Unknown;
    }
    let per_target = reading.finished_time.as_secs_f64() / reading.finished as f64;
    let slots = reading
        .concurrency
        .min(reading.max_parallel.max(1) as f64)
        .min(reading.left as f64)
        .max(1.0);
    Eta::Left(Duration::from_secs_f64(
        per_target * reading.left as f64 / slots,
    ))
}

/// The rollout's readings as it goes: told when a target starts and stops running.
#[derive(Debug)]
pub(crate) struct Pace {
    started: Instant,
    last_change: Instant,
    running: usize,
    /// Time spent by targets running, added up, until `last_change`.
    busy: Duration,
    finished: usize,
    finished_time: Duration,
    max_parallel: usize,
}

impl Pace {
    pub(crate) fn new(max_parallel: usize, now: Instant) -> Pace {
        Pace {
            started: now,
            last_change: now,
            running: 0,
            busy: Duration::ZERO,
            finished: 0,
            finished_time: Duration::ZERO,
            max_parallel,
        }
    }

    fn advance(&mut self, now: Instant) {
        let since = now.saturating_duration_since(self.last_change);
        self.busy += since * self.running as u32;
        self.last_change = now;
    }

    pub(crate) fn started_one(&mut self, now: Instant) {
        self.advance(now);
        self.running += 1;
    }

    /// A target stopped running: `took` when it finished, `None` when it was found
    /// locked by another process and goes back to the queue.
    pub(crate) fn stopped_one(&mut self, took: Option<Duration>, now: Instant) {
        self.advance(now);
        self.running = self.running.saturating_sub(1);
        if let Some(took) = took {
            self.finished += 1;
            self.finished_time += took;
        }
    }

    /// The reading now, with `left` targets running or still to start.
    pub(crate) fn reading(&self, left: usize, now: Instant) -> PaceReading {
        let wall = now.saturating_duration_since(self.started).as_secs_f64();
        let busy = self.busy.as_secs_f64()
            + now
                .saturating_duration_since(self.last_change)
                .as_secs_f64()
                * self.running as f64;
        PaceReading {
            finished: self.finished,
            finished_time: self.finished_time,
            left,
            concurrency: if wall > 0.0 { busy / wall } else { 1.0 },
            max_parallel: self.max_parallel,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(finished: usize, secs: u64, left: usize, concurrency: f64) -> PaceReading {
        PaceReading {
            finished,
            finished_time: Duration::from_secs(secs),
            left,
            concurrency,
            max_parallel: 8,
        }
    }

    #[test]
    fn before_any_target_finished_the_time_left_is_unknown() {
        assert_eq!(estimate(&reading(0, 0, 30, 4.0)), Eta::Unknown);
    }

    #[test]
    fn with_every_target_finished_nothing_is_left() {
        assert_eq!(estimate(&reading(30, 60, 0, 4.0)), Eta::Done);
    }

    #[test]
    fn one_at_a_time_the_targets_left_take_the_average_each() {
        assert_eq!(
            estimate(&reading(4, 8, 10, 1.0)),
            Eta::Left(Duration::from_secs(20))
        );
    }

    #[test]
    fn targets_running_side_by_side_divide_the_time_left_by_how_many_ran_at_once() {
        assert_eq!(
            estimate(&reading(4, 8, 10, 4.0)),
            Eta::Left(Duration::from_secs(5))
        );
    }

    #[test]
    fn more_at_once_than_targets_left_or_than_the_limit_is_not_assumed() {
        assert_eq!(
            estimate(&reading(10, 20, 2, 6.0)),
            Eta::Left(Duration::from_secs(2)),
            "two targets left run side by side at best: one target's time"
        );
        let mut over = reading(10, 20, 16, 12.0);
        over.max_parallel = 4;
        assert_eq!(
            estimate(&over),
            Eta::Left(Duration::from_secs(8)),
            "16 of 2 s each, at most 4 at once"
        );
    }

    #[test]
    fn the_pace_counts_the_targets_that_ran_at_once_and_not_a_locked_one_as_finished() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let mut pace = Pace::new(4, start);
        pace.started_one(at(0));
        pace.started_one(at(0));
        pace.stopped_one(None, at(1));
        pace.stopped_one(Some(Duration::from_secs(4)), at(4));
        let now = pace.reading(6, at(4));
        assert_eq!(now.finished, 1, "the locked target did not finish");
        assert_eq!(now.finished_time, Duration::from_secs(4));
        assert!(
            (now.concurrency - 1.25).abs() < 1e-9,
            "5 target-seconds in 4 s: {}",
            now.concurrency
        );
        assert_eq!(
            estimate(&now),
            Eta::Left(Duration::from_secs_f64(4.0 * 6.0 / 1.25))
        );
    }
}
