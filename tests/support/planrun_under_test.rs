//! `planrun` as built for the end-to-end tests: the same entry point as the shipped
//! binary.

fn main() {
    std::process::exit(planrun_cli::run(std::env::args_os()));
}
