//! `--report FILE` of `apply` and `rehearse`: the run drawn as one HTML page
//! (`planrun-html`), written as planrun writes every file that may hold production
//! values. Its directory is checked before the run (owned by planrun's user, not
//! writable by others, not a symbolic link; created 0700 when missing), and the page
//! goes to a new 0600 file there, renamed over FILE, so a link planted at FILE is
//! replaced, never followed, and a reader sees the old page or the whole new one.

use std::path::{Path, PathBuf};

use planrun_engine::{exit_codes, PrivateDir};
use planrun_plan::{Dag, Plan};

use crate::args::ReportFormat;
use crate::commands::print_json;
use crate::documents::ErrorBody;

/// Where the HTML report goes: its directory, checked and held open, and its name.
pub(crate) struct HtmlReport {
    dir: PrivateDir,
    name: String,
}

impl HtmlReport {
    /// Checks `file`'s directory now, before anything runs; the error is one line.
    pub(crate) fn open(file: &Path) -> Result<HtmlReport, String> {
        let name = file
            .file_name()
            .and_then(|name| name.to_str())
            .ok_or_else(|| format!("--report {}: not a file name", file.display()))?
            .to_owned();
        let dir = match file.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let dir = PrivateDir::open_or_create(dir, "report directory")
            .map_err(|error| format!("--report {}: {error}", file.display()))?;
        Ok(HtmlReport { dir, name })
    }

    /// Writes `html`, returning the file's path.
    pub(crate) fn write(&self, html: &str) -> Result<PathBuf, String> {
        self.dir
            .replace(&self.name, html.as_bytes())
            .map_err(|error| format!("cannot write the HTML report: {error}"))?;
        Ok(self.dir.path().join(&self.name))
    }
}

/// [`HtmlReport::open`] for `--report`, if given; `Err` is the exit code, the reason
/// said on stderr (and with `--format json`, as a `planrun.error` document of
/// `command` on stdout).
pub(crate) fn open_requested(
    file: Option<&Path>,
    command: &str,
    plan: &Plan,
    format: ReportFormat,
) -> Result<Option<HtmlReport>, i32> {
    file.map(HtmlReport::open).transpose().map_err(|message| {
        let message = format!("{message}; nothing ran");
        say_err!("error: {message}");
        if format == ReportFormat::Json {
            print_json(
                &ErrorBody::new(command, Some(&plan.name), message).document(exit_codes::ERROR),
            );
        }
        exit_codes::ERROR
    })
}

/// Writes the page `render` draws of a run of `plan` that ended with `code`; a page
/// that cannot be written turns a success into [`exit_codes::ERROR`].
pub(crate) fn finish(
    report: Option<&HtmlReport>,
    plan: &Plan,
    render: impl FnOnce(&Plan, &Dag) -> String,
    code: i32,
) -> i32 {
    let Some(report) = report else {
        return code;
    };
    let dag = Dag::build(plan).expect("a loaded plan has no cycle");
    match report.write(&render(plan, &dag)) {
        Ok(file) => {
            say_err!("HTML report written to {}", file.display());
            code
        }
        Err(message) => {
            say_err!("error: {message}");
            if code == exit_codes::SUCCESS {
                exit_codes::ERROR
            } else {
                code
            }
        }
    }
}
