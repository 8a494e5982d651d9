//! File helpers shared by templates and clusters: private directories and files
//! owned by the run user, tree copies, and reading the end of the server log.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::user::RunUser;
use crate::TempDbError;

/// The environment variable naming the directory that holds clusters (and
/// templates) instead of the system temporary directory.
pub const DIR_ENV: &str = "PLANRUN_TEMPDB_DIR";

/// A fresh temporary directory, mode 0700, owned by `user`: the server's files are
/// nobody else's business, but the server has to be able to create them.
pub(crate) fn private_tempdir(
    prefix: &str,
    user: &RunUser,
) -> Result<tempfile::TempDir, TempDbError> {
    // A separate knob from TMPDIR, so that clusters alone can go to a tmpfs such as
    // /dev/shm: copying a template is ~1000 file creations, slow on a busy disk.
    let parent = std::env::var_os(DIR_ENV)
        .filter(|d| !d.is_empty())
        .map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&parent)
        .map_err(|e| TempDbError::io_at("create a temporary directory in", &parent, e))?;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))
        .map_err(|e| TempDbError::io_at("set the mode of", dir.path(), e))?;
    user.chown(dir.path())?;
    Ok(dir)
}

/// Write `contents` to a new file only `user` can read.
pub(crate) fn write_private(
    path: &Path,
    contents: &str,
    user: &RunUser,
) -> Result<(), TempDbError> {
    fs::write(path, contents).map_err(|e| TempDbError::io_at("write", path, e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(|e| TempDbError::io_at("set the mode of", path, e))?;
    user.chown(path)
}

/// Recursive copy keeping modes (`fs::copy` copies permission bits) and symlinks,
/// handing every entry to `user`.
pub(crate) fn copy_tree(src: &Path, dest: &Path, user: &RunUser) -> Result<(), TempDbError> {
    let mode = fs::metadata(src)
        .map_err(|e| TempDbError::io_at("read", src, e))?
        .permissions();
    fs::create_dir(dest).map_err(|e| TempDbError::io_at("create directory", dest, e))?;
    fs::set_permissions(dest, mode).map_err(|e| TempDbError::io_at("set the mode of", dest, e))?;
    user.chown(dest)?;
    let entries = fs::read_dir(src).map_err(|e| TempDbError::io_at("list", src, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| TempDbError::io_at("list", src, e))?;
        let from = entry.path();
        let to = dest.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(|e| TempDbError::io_at("read", &from, e))?;
        if kind.is_dir() {
            copy_tree(&from, &to, user)?;
            continue;
        }
        if kind.is_symlink() {
            let target = fs::read_link(&from).map_err(|e| TempDbError::io_at("read", &from, e))?;
            std::os::unix::fs::symlink(&target, &to)
                .map_err(|e| TempDbError::io_at("create symlink", &to, e))?;
        } else {
            fs::copy(&from, &to).map_err(|e| TempDbError::io_at("copy to", &to, e))?;
        }
        user.chown(&to)?;
    }
    Ok(())
}

/// The last `lines` lines of `path` written after byte `from`: the part of the log
/// that belongs to one start attempt.
pub(crate) fn log_tail(path: &Path, from: u64, lines: usize) -> String {
    let mut text = Vec::new();
    let read = fs::File::open(path).and_then(|mut f| {
        f.seek(SeekFrom::Start(from))?;
        f.read_to_end(&mut text)
    });
    if let Err(e) = read {
        return format!("(could not read the log: {e})");
    }
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    let tail = all[all.len().saturating_sub(lines)..].join("\n");
    if tail.trim().is_empty() {
        "(the log is empty)".to_owned()
    } else {
        tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_starts_at_offset() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        fs::write(&log, "old\nnew 1\nnew 2\nnew 3\n").unwrap();
        assert_eq!(log_tail(&log, 4, 2), "new 2\nnew 3");
        assert_eq!(log_tail(&log, 4, 10), "new 1\nnew 2\nnew 3");
        assert_eq!(log_tail(&log, 100, 10), "(the log is empty)");
    }

    #[test]
    fn copy_tree_keeps_modes_and_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/f"), "x").unwrap();
        fs::set_permissions(src.join("sub/f"), fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink("sub/f", src.join("link")).unwrap();
        let me = RunUser {
            name: "me".into(),
            switch_to: None,
        };
        copy_tree(&src, &dir.path().join("dest"), &me).unwrap();
        let copied = dir.path().join("dest/sub/f");
        assert_eq!(fs::read_to_string(&copied).unwrap(), "x");
        assert_eq!(
            fs::metadata(&copied).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::read_link(dir.path().join("dest/link")).unwrap(),
            Path::new("sub/f")
        );
    }
}
