//! The shop's native transforms for planrun, and [`register`], which a `planrun` binary
//! built with [`planrun_cli::Planrun`] calls to have them (see `src/main.rs`).

mod normalize_emails;

pub use normalize_emails::{normalize_email, NormalizeEmails};

/// Adds the shop's transforms to `registry`.
pub fn register(registry: &mut planrun_cli::Registry) {
    registry.register(NormalizeEmails);
}
