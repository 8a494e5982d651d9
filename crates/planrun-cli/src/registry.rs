//! The transforms compiled into this `planrun` binary.

use planrun_transform::Registry;

/// Every transform this binary ships: the memoir migration's.
pub fn default_registry() -> Registry {
    let mut registry = Registry::new();
    planrun_memoir::register(&mut registry);
    registry
}
