//! The transforms of the `planrun` binary as shipped.

use planrun_transform::Registry;

/// Every transform the shipped `planrun` binary has: the memoir migration's. A binary
/// of your own chooses its transforms with [`Planrun`](crate::Planrun).
pub fn default_registry() -> Registry {
    let mut registry = Registry::new();
    planrun_memoir::register(&mut registry);
    registry
}
