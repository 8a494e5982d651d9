//! The `planrun` command line: argument parsing and one dispatch per command. The
//! work lives in the library crates; this crate renders their results.

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
mod demo;
mod live;
mod lock_report;
mod output;
mod registry;
mod rehearse;
mod report;

pub use registry::default_registry;

use clap::Parser;

/// Runs `planrun` with `args` (program name first) and returns the exit code.
pub fn run(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    let cli = match args::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return match error.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => planrun_engine::exit_codes::USAGE,
            };
        }
    };
    output::install_miette_hook(cli.global.color);
    commands::dispatch(cli)
}
