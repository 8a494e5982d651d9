//! Finding the PostgreSQL server binaries.
//!
//! The order is: `$PG_BIN` (an explicit choice, so it is not second-guessed), then the
//! directory of the `initdb` on `PATH`, then the newest `/usr/lib/postgresql/*/bin`
//! (Debian and Ubuntu keep the server out of `PATH`).

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::TempDbError;

/// Where Debian-style packages install one directory per major version.
const VERSIONED_ROOT: &str = "/usr/lib/postgresql";

/// The binaries a cluster cannot do without; a directory missing any of them is skipped.
const REQUIRED: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// The directory holding `initdb`, `pg_ctl` and `postgres` of one PostgreSQL installation.
///
/// Callers use it to pick the `pg_dump`/`pg_restore`/`psql` of the same version.
pub fn find_bin_dir() -> Result<PathBuf, TempDbError> {
    search(
        std::env::var_os("PG_BIN").as_deref(),
        std::env::var_os("PATH").as_deref(),
        Path::new(VERSIONED_ROOT),
    )
}

fn search(
    pg_bin: Option<&OsStr>,
    path: Option<&OsStr>,
    versioned_root: &Path,
) -> Result<PathBuf, TempDbError> {
    let mut searched = Vec::new();

    if let Some(dir) = pg_bin.filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        if is_bin_dir(&dir) {
            return Ok(dir);
        }
        searched.push(dir);
        return Err(TempDbError::BinariesNotFound { searched });
    }

    for dir in std::env::split_paths(path.unwrap_or_default()) {
        let initdb = dir.join("initdb");
        if !is_executable(&initdb) {
            continue;
        }
        // `/usr/local/bin/initdb` is often a symlink into a versioned directory, and
        // callers want that directory: it also holds pg_dump, psql, ... of the same
        // version. Debian's pg_wrapper links resolve elsewhere and fail the check.
        if let Some(real) = std::fs::canonicalize(&initdb)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
        {
            if is_bin_dir(&real) {
                return Ok(real);
            }
        }
        if is_bin_dir(&dir) {
            return Ok(dir);
        }
        searched.push(dir);
    }

    let mut versioned: Vec<(Vec<u64>, PathBuf)> = std::fs::read_dir(versioned_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let version = parse_version(name.to_str()?)?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    // Numeric, newest first: 16 > 15 > 10 > 9.6.
    versioned.sort_by(|a, b| b.0.cmp(&a.0));
    for (_, dir) in versioned {
        if is_bin_dir(&dir) {
            return Ok(dir);
        }
        searched.push(dir);
    }
    if searched.is_empty() {
        searched.push(versioned_root.join("*/bin"));
    }
    Err(TempDbError::BinariesNotFound { searched })
}

/// `"9.6"` -> `[9, 6]`, `"16"` -> `[16]`; the leading digits of each part count, so
/// `"17beta1"` sorts as 17. Names without a leading number are not versions.
fn parse_version(name: &str) -> Option<Vec<u64>> {
    let parts: Vec<u64> = name
        .split('.')
        .map_while(|part| {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect();
    (!parts.is_empty()).then_some(parts)
}

fn is_bin_dir(dir: &Path) -> bool {
    REQUIRED.iter().all(|name| is_executable(&dir.join(name)))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn fake_bin(dir: &Path, names: &[&str]) {
        fs::create_dir_all(dir).unwrap();
        for name in names {
            let p = dir.join(name);
            fs::write(&p, "#!/bin/sh\n").unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    #[test]
    fn versions_compare_numerically() {
        let mut v = ["9.6", "10", "16", "15", "17beta1"]
            .iter()
            .map(|s| parse_version(s).unwrap())
            .collect::<Vec<_>>();
        v.sort();
        assert_eq!(v, vec![vec![9, 6], vec![10], vec![15], vec![16], vec![17]]);
        assert_eq!(parse_version("common"), None);
    }

    #[test]
    fn newest_versioned_dir_wins() {
        let root = tempfile::tempdir().unwrap();
        fake_bin(&root.path().join("9.6/bin"), &REQUIRED);
        fake_bin(&root.path().join("15/bin"), &REQUIRED);
        fake_bin(&root.path().join("10/bin"), &REQUIRED);
        // Newest, but incomplete: skipped.
        fake_bin(&root.path().join("16/bin"), &["pg_ctl"]);
        let found = search(None, None, root.path()).unwrap();
        assert_eq!(found, root.path().join("15/bin"));
    }

    #[test]
    fn path_symlink_resolves_to_versioned_dir() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("pg/15/bin");
        fake_bin(&real, &["initdb", "pg_ctl", "postgres", "pg_dump"]);
        let links = root.path().join("local-bin");
        fs::create_dir_all(&links).unwrap();
        for name in REQUIRED {
            std::os::unix::fs::symlink(real.join(name), links.join(name)).unwrap();
        }
        let wrappers = root.path().join("wrappers");
        fake_bin(&wrappers, &["pg_ctl"]);
        let path = std::env::join_paths([&wrappers, &links]).unwrap();
        let found = search(None, Some(&path), &root.path().join("none")).unwrap();
        assert_eq!(found, fs::canonicalize(real).unwrap());
    }

    #[test]
    fn pg_bin_is_not_second_guessed() {
        let root = tempfile::tempdir().unwrap();
        fake_bin(&root.path().join("15/bin"), &REQUIRED);
        let empty = root.path().join("empty");
        fs::create_dir_all(&empty).unwrap();
        let err = search(Some(empty.as_os_str()), None, root.path()).unwrap_err();
        match err {
            TempDbError::BinariesNotFound { searched } => assert_eq!(searched, vec![empty]),
            other => panic!("unexpected error {other:?}"),
        }
        let found = search(
            Some(root.path().join("15/bin").as_os_str()),
            None,
            root.path(),
        );
        assert_eq!(found.unwrap(), root.path().join("15/bin"));
    }

    #[test]
    fn nothing_found_is_a_typed_error() {
        let root = tempfile::tempdir().unwrap();
        let err = search(None, Some(OsStr::new("")), root.path()).unwrap_err();
        assert!(matches!(err, TempDbError::BinariesNotFound { .. }));
    }
}
