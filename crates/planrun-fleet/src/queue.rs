//! A wave's queue: which target starts next within `max_parallel` and
//! `max_parallel_per_host`, and when a target another process holds is looked at
//! again. Pure: no database, no threads, so the limits are tested here directly.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// How long a target found locked by another process waits before it is revisited.
pub(crate) const REVISIT_AFTER: Duration = Duration::from_millis(300);

/// The targets of one wave still to start, and what runs now.
#[derive(Debug)]
pub(crate) struct WaveQueue {
    /// Target index and the earliest moment it may start.
    pending: VecDeque<(usize, Instant)>,
    running: usize,
    running_per_host: BTreeMap<String, usize>,
    max_parallel: usize,
    max_parallel_per_host: usize,
}

impl WaveQueue {
    pub(crate) fn new(
        targets: &[usize],
        max_parallel: usize,
        max_parallel_per_host: usize,
    ) -> WaveQueue {
        let now = Instant::now();
        WaveQueue {
            pending: targets.iter().map(|&index| (index, now)).collect(),
            running: 0,
            running_per_host: BTreeMap::new(),
            max_parallel: max_parallel.max(1),
            max_parallel_per_host: max_parallel_per_host.max(1),
        }
    }

    /// The next target that may start now (its server below its limit, the fleet
    /// below its own), counted as running; `None` when none may.
    pub(crate) fn start_next(
        &mut self,
        host_of: impl Fn(usize) -> String,
        now: Instant,
    ) -> Option<usize> {
        if self.running >= self.max_parallel {
            return None;
        }
        let position = self.pending.iter().position(|(index, not_before)| {
            *not_before <= now
                && self
                    .running_per_host
                    .get(&host_of(*index))
                    .copied()
                    .unwrap_or(0)
                    < self.max_parallel_per_host
        })?;
        let (index, _) = self.pending.remove(position)?;
        self.running += 1;
        *self.running_per_host.entry(host_of(index)).or_default() += 1;
        Some(index)
    }

    /// Target `index` on `host` has stopped.
    pub(crate) fn finished(&mut self, host: &str) {
        self.running = self.running.saturating_sub(1);
        if let Some(count) = self.running_per_host.get_mut(host) {
            *count = count.saturating_sub(1);
        }
    }

    /// Target `index` was locked by another process: it stops counting as running and
    /// goes to the back of the queue, not to start again before `REVISIT_AFTER`.
    pub(crate) fn revisit(&mut self, index: usize, host: &str, now: Instant) {
        self.finished(host);
        self.pending.push_back((index, now + REVISIT_AFTER));
    }

    /// Stops starting anything: the targets not started stay not started.
    pub(crate) fn drain(&mut self) -> Vec<usize> {
        self.pending.drain(..).map(|(index, _)| index).collect()
    }

    pub(crate) fn is_done(&self) -> bool {
        self.pending.is_empty() && self.running == 0
    }

    pub(crate) fn running(&self) -> usize {
        self.running
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_more_than_the_per_host_limit_on_a_server_nor_the_fleet_limit_in_all() {
        let hosts = ["a", "a", "a", "b", "b", "c"];
        let host_of = |i: usize| hosts[i].to_owned();
        let mut queue = WaveQueue::new(&[0, 1, 2, 3, 4, 5], 4, 2);
        let now = Instant::now();
        let mut started = Vec::new();
        while let Some(index) = queue.start_next(host_of, now) {
            started.push(index);
        }
        assert_eq!(
            started,
            vec![0, 1, 3, 4],
            "two of a, two of b, then the fleet limit"
        );
        queue.finished("a");
        assert_eq!(queue.start_next(host_of, now), Some(2), "in file order");
        assert_eq!(
            queue.start_next(host_of, now),
            None,
            "a at its limit, the fleet at its own"
        );
        queue.finished("a");
        assert_eq!(
            queue.start_next(host_of, now),
            Some(5),
            "c, since no a is left"
        );
    }

    #[test]
    fn a_locked_target_waits_before_it_is_looked_at_again() {
        let host_of = |_: usize| "a".to_owned();
        let mut queue = WaveQueue::new(&[0], 1, 1);
        let now = Instant::now();
        assert_eq!(queue.start_next(host_of, now), Some(0));
        queue.revisit(0, "a", now);
        assert_eq!(queue.start_next(host_of, now), None);
        assert!(!queue.is_done());
        assert_eq!(queue.start_next(host_of, now + REVISIT_AFTER), Some(0));
    }
}
