//! The `planrun` binary: parse the command line, run, exit with its code.

fn main() {
    std::process::exit(planrun_cli::run(std::env::args_os()));
}
