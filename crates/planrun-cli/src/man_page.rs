//! `planrun man`: the man pages, generated from the clap definitions (clap_mangen).

use std::path::Path;

use clap::CommandFactory;
use planrun_engine::exit_codes;

use crate::args::{Cli, ManArgs};
use crate::completions::write_stdout;

pub(crate) fn run(args: &ManArgs) -> i32 {
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    match &args.out_dir {
        None => {
            let mut page = Vec::new();
            match man(command).render(&mut page) {
                Ok(()) => write_stdout(&page),
                Err(error) => {
                    say_err!("error: cannot render the man page: {error}");
                    exit_codes::ERROR
                }
            }
        }
        Some(dir) => match write_pages(command, dir) {
            Ok(()) => {
                say!("read them with: man -l {}", dir.join("planrun.1").display());
                exit_codes::SUCCESS
            }
            Err(error) => {
                say_err!(
                    "error: cannot write the man pages to {}: {error}",
                    dir.display()
                );
                exit_codes::ERROR
            }
        },
    }
}

/// Writes `planrun.1` and a page per command (`planrun-apply.1`, ...) into `dir`,
/// creating it, and names each file written.
fn write_pages(command: clap::Command, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let pages = command
        .get_subcommands()
        .filter(|subcommand| !subcommand.is_hide_set())
        .cloned()
        .chain(std::iter::once(command.clone()));
    for page in pages {
        let page = man(page);
        let path = dir.join(page.get_filename());
        let mut text = Vec::new();
        page.render(&mut text)?;
        replace_file(dir, &path, &text)?;
        say!("wrote {}", path.display());
    }
    Ok(())
}

/// Puts `text` at `path` as a new file: written to a temporary file of `dir` that no
/// one else can have opened, then renamed over `path`. Opening `path` itself would
/// follow a symlink planted there and overwrite whatever it points to; the rename
/// replaces the link.
fn replace_file(dir: &Path, path: &Path, text: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = tempfile::Builder::new()
        .prefix(".planrun-man")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(dir)?;
    file.write_all(text)?;
    file.persist(path).map_err(|error| error.error)?;
    Ok(())
}

/// The page of `command`, its footer naming planrun's version (clap_mangen would
/// take the subcommand's, which it has none of).
fn man(command: clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(command).source(format!("planrun {}", env!("CARGO_PKG_VERSION")))
}
