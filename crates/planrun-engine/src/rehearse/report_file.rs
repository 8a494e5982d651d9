//! Rehearsal report files: `<plan>-<YYYYmmdd_HHMMSS>.json`, written private to their
//! owner, and the newest of a plan found again by that name.

use std::path::{Path, PathBuf};

use chrono::Local;

use crate::db::private_dir::file_name_part;
use crate::rehearse::error::RehearseError;
use crate::rehearse::report::RehearsalReport;

/// Writes `report` to `<dir>/<plan>-<YYYYmmdd_HHMMSS>.json`, a new file readable by
/// its owner alone (it holds captured production values and errors quoting rows),
/// returning the file. Should a report of the same second exist, the name takes the
/// next free second, so the newest report still sorts last.
pub fn write_report(
    report: &RehearsalReport,
    dir: &crate::PrivateDir,
) -> Result<PathBuf, RehearseError> {
    let text = serde_json::to_string_pretty(report).map_err(|error| RehearseError::Report {
        path: dir.path().display().to_string(),
        source: std::io::Error::other(error),
    })? + "\n";
    let now = Local::now();
    for second in 0..60 {
        let stamp = (now + chrono::Duration::seconds(second)).format("%Y%m%d_%H%M%S");
        let name = format!("{}-{stamp}.json", file_name_part(&report.plan));
        let file = dir.path().join(&name);
        let mut out = match dir.create_new(&name) {
            Ok(out) => out,
            Err(crate::PrivateDirError::CreateFile { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                continue
            }
            Err(error) => return Err(error.into()),
        };
        return match std::io::Write::write_all(&mut out, text.as_bytes()) {
            Ok(()) => Ok(file),
            Err(source) => {
                dir.remove(&name);
                Err(RehearseError::Report {
                    path: file.display().to_string(),
                    source,
                })
            }
        };
    }
    Err(RehearseError::Report {
        path: dir.path().display().to_string(),
        source: std::io::Error::other("no free report name in the next minute"),
    })
}

/// The newest rehearsal report of `plan` in `dir` (`<plan>-<stamp>.json`), if any.
pub fn newest_rehearsal(dir: &Path, plan: &str) -> Option<PathBuf> {
    let prefix = format!("{}-", file_name_part(plan));
    let mut reports: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.extension().is_some_and(|ext| ext == "json")
                && path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .and_then(|name| name.strip_prefix(&prefix))
                    .is_some_and(is_stamp)
        })
        .collect();
    reports.sort();
    reports.pop()
}

/// `YYYYmmdd_HHMMSS.json`: the rest of a report's name after `<plan>-`.
fn is_stamp(rest: &str) -> bool {
    let bytes = rest.as_bytes();
    rest.len() == "YYYYmmdd_HHMMSS.json".len()
        && rest.ends_with(".json")
        && bytes[8] == b'_'
        && bytes[..15]
            .iter()
            .enumerate()
            .all(|(i, b)| i == 8 || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_report_of_the_plan_is_found_and_no_other_plans() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "memoir-20261130_101010.json",
            "memoir-20261201_090000.json",
            "memoir-v2-20261202_090000.json",
            "memoir-notes.json",
        ] {
            std::fs::write(dir.path().join(name), "{}").unwrap();
        }
        assert_eq!(
            newest_rehearsal(dir.path(), "memoir").unwrap(),
            dir.path().join("memoir-20261201_090000.json")
        );
        assert_eq!(newest_rehearsal(dir.path(), "other"), None);
    }
}
