//! `planrun completions SHELL`: a completion script generated from the clap
//! definitions, so it never lags behind the commands and options.

use clap::CommandFactory;
use planrun_engine::exit_codes;

use crate::args::{Cli, CompletionsArgs};

pub(crate) fn run(args: &CompletionsArgs) -> i32 {
    let mut command = Cli::command();
    let name = command.get_name().to_owned();
    // Rendered whole first: clap_complete panics on a write error, and a closed
    // stdout should lose the script, not end in a panic.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, name, &mut script);
    write_stdout(&script)
}

/// Writes `bytes` to stdout; a closed stdout is an error, reported on stderr.
pub(crate) fn write_stdout(bytes: &[u8]) -> i32 {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => exit_codes::SUCCESS,
        Err(error) => {
            say_err!("error: cannot write to stdout: {error}");
            exit_codes::ERROR
        }
    }
}
