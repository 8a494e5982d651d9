//! The transforms compiled into this `planrun` binary.

use planrun_transform::Registry;

/// Every transform this binary ships: the memoir migration's.
pub fn default_registry() -> Registry {
    let registry = Registry::new();
    // TEMP planrun_memoir::register(&mut registry);
    registry
}
