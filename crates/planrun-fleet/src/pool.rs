//! Work on many targets at once without waves or gates (`plan --fleet`,
//! `rehearse --fleet`'s fingerprints and its rehearsals), within the fleet's `max_parallel` and `max_parallel_per_host`: the
//! same queue as the rollout's (`queue.rs`), without waves or gates.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Instant;

use crate::model::Fleet;
use crate::queue::WaveQueue;
use crate::resolve::ResolvedTarget;

/// `work` on each of `indices` (into `targets`), at most `max_parallel` at once and
/// `max_parallel_per_host` per server; the results in the order of `indices`.
pub(crate) fn within_limits<T: Send>(
    fleet: &Fleet,
    targets: &[ResolvedTarget],
    indices: &[usize],
    work: impl Fn(&ResolvedTarget) -> T + Sync,
) -> Vec<T> {
    let host_of = |index: usize| targets[index].host.clone();
    let state = Mutex::new((
        WaveQueue::new(indices, fleet.max_parallel, fleet.max_parallel_per_host),
        Vec::<(usize, T)>::new(),
    ));
    let changed = Condvar::new();
    let worker = || {
        let mut guard = state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if guard.0.is_done() {
                changed.notify_all();
                return;
            }
            let Some(index) = guard.0.start_next(host_of, Instant::now()) else {
                guard = changed.wait(guard).unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            drop(guard);
            let result = work(&targets[index]);
            guard = state.lock().unwrap_or_else(PoisonError::into_inner);
            guard.0.finished(&targets[index].host);
            guard.1.push((index, result));
            changed.notify_all();
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..fleet.max_parallel.min(indices.len()).max(1) {
            scope.spawn(worker);
        }
    });
    let (_, mut results) = state.into_inner().unwrap_or_else(PoisonError::into_inner);
    results.sort_by_key(|(index, _)| indices.iter().position(|i| i == index));
    results.into_iter().map(|(_, result)| result).collect()
}
