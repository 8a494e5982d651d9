//! The fleet file as planrun uses it once it is valid: the limits, the targets and
//! the waves, each wave holding the targets it takes in file order.

use std::path::PathBuf;
use std::time::Duration;

/// A fleet file: where one plan is rolled out, in which order and how fast.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub path: PathBuf,
    /// How many targets run at once, in all (`[fleet] max_parallel`, default 4).
    pub max_parallel: usize,
    /// How many targets of one server run at once (`[fleet] max_parallel_per_host`,
    /// default: `max_parallel`); a server is its `host:port`.
    pub max_parallel_per_host: usize,
    /// What a drifted target does to its wave's gate (`[fleet] on_drift`).
    pub on_drift: OnDrift,
    pub targets: Vec<FleetTarget>,
    pub waves: Vec<Wave>,
}

/// `on_drift`: a target whose applied stage changed is always refused alone; this
/// says whether the rollout goes on without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDrift {
    /// The wave's gate fails and later waves wait (the default).
    Halt,
    /// The target is named in the report and the rest go on; the command still ends
    /// with the drift exit code.
    Skip,
}

/// One database of the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetTarget {
    pub name: String,
    pub connection: Connection,
    pub labels: Vec<String>,
}

/// Where a target's connection string comes from. Neither form may carry a password
/// in the fleet file; passwords come from libpq's usual sources (`PGPASSWORD`, the
/// password file) or from the variable `url_env` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// `url = "postgresql://app@db1:5432/tenant_a"`.
    Url(String),
    /// `url_env = "TENANT_A_URL"`: the variable holding the connection string.
    UrlEnv(String),
}

/// A wave: targets applied together; its gate decides whether the next one starts.
#[derive(Debug, Clone)]
pub struct Wave {
    pub name: String,
    /// Indices into [`Fleet::targets`], in file order.
    pub targets: Vec<usize>,
    pub gate: Gate,
}

/// What a wave's targets must have measured, besides every one of them applied, for
/// the next wave to start (`[wave.gate]`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gate {
    /// The longest wait of any stage for its declared locks.
    pub max_lock_wait: Option<Duration>,
    /// A stage may take at most this many times what it took on the first wave (the
    /// canary), and never fails the gate under one second.
    pub max_duration_factor: Option<f64>,
    /// The worst standby's `replay_lag` on the target's server (its
    /// `pg_stat_replication`), read as soon as the target finishes.
    pub max_replica_lag: Option<Duration>,
}

impl Fleet {
    /// The wave that holds target `index`.
    pub fn wave_of(&self, index: usize) -> Option<&Wave> {
        self.waves.iter().find(|wave| wave.targets.contains(&index))
    }
}
