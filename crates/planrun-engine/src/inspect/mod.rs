//! Read-only commands on a target: `plan`, `verify` and `status`, and the lock weight of a stage on the tables as they are now.

pub(crate) mod column_types;
pub(crate) mod lock_weight;
pub(crate) mod preview;
pub(crate) mod supersede;
