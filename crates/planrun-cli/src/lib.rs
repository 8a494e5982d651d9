//! The `planrun` command line: argument parsing and one dispatch per command. The
//! work lives in the library crates; this crate renders their results.
//!
//! It is a library too, so that a crate can build its own `planrun` binary with its
//! own native transforms, without forking this one: see [`Planrun`].

/// `println!` that never panics: a closed stdout (`planrun apply | head -1`) loses
/// the rest of the output, not the run.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` that never panics.
macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that never panics, for a closed stderr.
macro_rules! say_err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod args;
mod commands;
mod completions;
mod demo;
mod documents;
mod fleet;
mod fleet_plan;
mod fleet_rehearse;
mod html_report;
mod init;
mod json_lines;
mod live;
mod lock_report;
mod man_page;
mod output;
mod planrun;
mod registry;
mod rehearse;
mod report;
mod revert;

pub use documents::json_schemas;
pub use planrun::Planrun;
pub use planrun_transform::Registry;
pub use registry::default_registry;

/// Runs the `planrun` binary as shipped, with the memoir transforms, on `args`
/// (program name first), and returns the exit code.
///
/// The same as `Planrun::new().with_memoir_transforms().run(args)`; a binary with
/// transforms of its own uses [`Planrun`].
pub fn run(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    Planrun::new().with_memoir_transforms().run(args)
}
