//! The directories planrun writes production data into (backups, rehearsal reports)
//! and the files it creates there. Another local account must neither read those
//! files nor decide what planrun writes to, so a directory is used only when planrun's
//! own user owns it, no one else can write it (a sticky bit, as on /tmp, still lets
//! others plant names) and it is not a symbolic link. A missing one is created 0700.
//! Files are created inside the directory opened once, never through its name again,
//! exclusively, without following a symbolic link, mode 0600.
//!
//! An existing directory's mode is left as it is (it may be one the operator or the
//! plan named for other uses, `/var/backups` say): one others can only read and enter
//! is accepted, the files in it being 0600.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why a directory or a file in it cannot be used; `what` names the directory's use
/// ("backup directory").
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrivateDirError {
    #[error("cannot create {what} {path}: {source}")]
    Create {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{what} {path} is a symbolic link; planrun writes only into a real directory")]
    SymbolicLink { what: &'static str, path: String },
    #[error("cannot open {what} {path}: {source}")]
    Open {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{what} {path} is owned by uid {owner}, not by uid {user} that planrun runs as; another account could read or replace what planrun writes there")]
    OwnedByAnother {
        what: &'static str,
        path: String,
        owner: u32,
        user: u32,
    },
    #[error("{what} {path} is writable by other accounts (mode {mode:o}); they could plant or swap files there: chmod go-w it, or choose another directory")]
    WritableByOthers {
        what: &'static str,
        path: String,
        mode: u32,
    },
    #[error("cannot create {path}: {source}")]
    CreateFile {
        path: String,
        source: std::io::Error,
    },
}

/// A directory checked as above, held open: every file is created relative to this
/// handle, so renaming or replacing the directory's path afterwards changes nothing.
#[derive(Debug)]
pub struct PrivateDir {
    handle: File,
    path: PathBuf,
}

impl PrivateDir {
    /// Opens `dir`, the `what` ("backup directory"), creating it (and missing
    /// parents) 0700 when it does not exist.
    pub fn open_or_create(dir: &Path, what: &'static str) -> Result<PrivateDir, PrivateDirError> {
        let path = || dir.display().to_string();
        match std::fs::symlink_metadata(dir) {
            Err(_) => std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| PrivateDirError::Create {
                    what,
                    path: path(),
                    source,
                })?,
            Ok(meta) if meta.is_symlink() => {
                return Err(PrivateDirError::SymbolicLink { what, path: path() })
            }
            Ok(meta) if !meta.is_dir() => {
                return Err(PrivateDirError::Create {
                    what,
                    path: path(),
                    source: std::io::ErrorKind::NotADirectory.into(),
                })
            }
            Ok(_) => {}
        }
        // O_NOFOLLOW again: the name may have become a link since the look above.
        let handle = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(dir)
            .map_err(|source| PrivateDirError::Open {
                what,
                path: path(),
                source,
            })?;
        let meta = handle.metadata().map_err(|source| PrivateDirError::Open {
            what,
            path: path(),
            source,
        })?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let user = unsafe { libc::geteuid() };
        if meta.uid() != user {
            return Err(PrivateDirError::OwnedByAnother {
                what,
                path: path(),
                owner: meta.uid(),
                user,
            });
        }
        if meta.mode() & 0o022 != 0 {
            return Err(PrivateDirError::WritableByOthers {
                what,
                path: path(),
                mode: meta.mode() & 0o7777,
            });
        }
        let resolved = std::fs::canonicalize(dir).map_err(|source| PrivateDirError::Open {
            what,
            path: path(),
            source,
        })?;
        Ok(PrivateDir {
            handle,
            path: resolved,
        })
    }

    /// The directory's absolute path, as it resolved when opened (for messages and
    /// the ledger; planrun itself never writes through it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the new file `name` in the directory, mode 0600, failing with
    /// `AlreadyExists` when anything, a symbolic link included, has that name.
    pub fn create_new(&self, name: &str) -> Result<File, PrivateDirError> {
        let failed = |source| PrivateDirError::CreateFile {
            path: self.path.join(name).display().to_string(),
            source,
        };
        let c_name = file_name(name).map_err(failed)?;
        // SAFETY: a valid directory descriptor and a NUL-terminated name; the returned
        // descriptor is owned by the File alone.
        let fd = unsafe {
            libc::openat(
                self.handle.as_raw_fd(),
                c_name.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(failed(std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just opened and nothing else owns it.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Writes `contents` as the file `name`, replacing what had that name (a symbolic
    /// link itself, never its target): written first to a new 0600 file beside it,
    /// then renamed over it, so a reader sees the old file or the whole new one.
    pub fn replace(&self, name: &str, contents: &[u8]) -> Result<(), PrivateDirError> {
        let temporary = format!(".{name}.{}.tmp", std::process::id());
        let failed = |source| PrivateDirError::CreateFile {
            path: self.path.join(name).display().to_string(),
            source,
        };
        let mut file = self.create_new(&temporary)?;
        let written = std::io::Write::write_all(&mut file, contents).and_then(|()| file.sync_all());
        let renamed = written.and_then(|()| {
            let from = file_name(&temporary)?;
            let to = file_name(name)?;
            let dir = self.handle.as_raw_fd();
            // SAFETY: a valid directory descriptor and NUL-terminated plain names.
            match unsafe { libc::renameat(dir, from.as_ptr(), dir, to.as_ptr()) } {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
        renamed.map_err(|source| {
            self.remove(&temporary);
            failed(source)
        })
    }

    /// Removes the file `name` from the directory (a partial backup), if it is there.
    pub fn remove(&self, name: &str) {
        if let Ok(c_name) = file_name(name) {
            // SAFETY: a valid directory descriptor and a NUL-terminated name.
            unsafe { libc::unlinkat(self.handle.as_raw_fd(), c_name.as_ptr(), 0) };
        }
    }
}

/// `name` (a plan's, a database's) as part of the name of a file planrun writes here:
/// letters, digits, `-` and `_` kept, anything else `_`, so that no name reaches
/// outside the directory.
pub(crate) fn file_name_part(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `name` as a single path component for `openat`.
fn file_name(name: &str) -> std::io::Result<CString> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a plain file name",
        ));
    }
    CString::new(Path::new(name).as_os_str().as_bytes())
        .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_missing_directory_is_created_0700_and_files_0600() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        let private = PrivateDir::open_or_create(&dir, "test directory").unwrap();
        private.create_new("f").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("f")), 0o600);
        assert_eq!(private.path(), dir.canonicalize().unwrap());
    }

    #[test]
    fn a_symbolic_link_at_the_file_name_is_never_written_through() {
        let root = tempfile::tempdir().unwrap();
        let victim = root.path().join("victim");
        std::fs::write(&victim, "untouched").unwrap();
        let private = PrivateDir::open_or_create(&root.path().join("d"), "test directory").unwrap();
        std::os::unix::fs::symlink(&victim, root.path().join("d/f")).unwrap();
        let error = private.create_new("f").unwrap_err();
        assert!(
            matches!(&error, PrivateDirError::CreateFile { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists),
            "{error}"
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
    }

    #[test]
    fn a_replaced_file_is_0600_and_a_planted_link_is_replaced_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let victim = root.path().join("victim");
        std::fs::write(&victim, "untouched").unwrap();
        let private = PrivateDir::open_or_create(&root.path().join("d"), "test directory").unwrap();
        std::os::unix::fs::symlink(&victim, root.path().join("d/report.html")).unwrap();
        private.replace("report.html", b"new").unwrap();
        private.replace("report.html", b"newer").unwrap();
        let file = root.path().join("d/report.html");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
        assert!(!std::fs::symlink_metadata(&file).unwrap().is_symlink());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "newer");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_dir(root.path().join("d")).unwrap().count(), 1);
    }

    #[test]
    fn names_become_plain_file_name_parts() {
        assert_eq!(file_name_part("memoir-v2_ü"), "memoir-v2_ü");
        assert_eq!(file_name_part("../a b.c"), "___a_b_c");
    }

    #[test]
    fn a_name_that_is_not_a_plain_file_name_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let private = PrivateDir::open_or_create(root.path(), "test directory").unwrap();
        assert!(private.create_new("../escape").is_err());
        assert!(!root.path().parent().unwrap().join("escape").exists());
    }
}
