//! One plan rolled out to a fleet of databases in waves: the fleet file (`load.rs`,
//! every problem with its span), which targets a wave takes (`select.rs`), the queue
//! that keeps within `max_parallel` and `max_parallel_per_host` (`queue.rs`), the
//! waves' gates (`gate.rs`), and the rollout (`rollout.rs`) that calls the engine's
//! `Runner::apply` per target. Nothing here is a coordinator: each target's plan lock
//! and ledger are the only shared state, so any number of processes on any number of
//! machines can work through the same fleet.

mod eta;
mod gate;
mod load;
mod model;
mod pool;
mod preview;
mod problem;
mod queue;
mod rehearsal;
mod resolve;
mod rollout;
mod select;
mod status;
mod target_run;

pub use eta::{estimate, Eta, PaceReading};
pub use gate::DURATION_FLOOR;
pub use load::{load, parse};
pub use model::{Connection, Fleet, FleetTarget, Gate, OnDrift, Wave};
pub use preview::plan_fleet;
pub use problem::{FleetError, FleetErrors, FleetProblem};
pub use rehearsal::{fingerprints, record_path, refused_targets, rehearse_fleet, RehearsalNeed};
pub use resolve::{resolve_targets, ResolvedTarget};
pub use rollout::{apply_fleet, FleetProgress, Quiet, RolloutOptions, WaveTally};
pub use status::fleet_status;
