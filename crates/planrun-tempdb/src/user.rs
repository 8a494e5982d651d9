//! The operating-system user the server runs as.
//!
//! `initdb` and `postgres` refuse to run as root, and tests commonly run as root in
//! containers, so as root we drop to `postgres` (or `nobody`) for every server-side
//! command and hand that user the files it needs. Otherwise we run as ourselves.

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use crate::TempDbError;

/// Who runs `initdb`, `postgres` and `pg_ctl`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RunUser {
    /// Login name, for messages and the stop command of a kept cluster.
    pub name: String,
    /// `(uid, gid)` to switch to; `None` when we run as ourselves.
    pub switch_to: Option<(u32, u32)>,
}

impl RunUser {
    /// Ourselves, unless we are root.
    pub(crate) fn detect() -> Result<RunUser, TempDbError> {
        if effective_uid() != 0 {
            let name = std::env::var("USER").unwrap_or_else(|_| "current user".to_owned());
            return Ok(RunUser {
                name,
                switch_to: None,
            });
        }
        let passwd = std::fs::read_to_string("/etc/passwd")
            .map_err(|e| TempDbError::io("read /etc/passwd", e))?;
        ["postgres", "nobody"]
            .into_iter()
            .find_map(|name| lookup(&passwd, name))
            .ok_or(TempDbError::NoRunUser)
    }

    /// A command for `program` that runs as this user. The working directory is set
    /// because the inherited one (e.g. `/root/...`) may be unreadable for the user, and
    /// `initdb` fails when it cannot resolve it. `LC_ALL=C` keeps messages, which we
    /// match on, in English.
    pub(crate) fn command(&self, program: impl AsRef<OsStr>, cwd: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(cwd).env("LC_ALL", "C");
        if let Some((uid, gid)) = self.switch_to {
            // std also clears supplementary groups when switching uid, so root's
            // groups do not leak into the server.
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// Give `path` to this user, so the server can write its files; a no-op when we
    /// run as ourselves.
    pub(crate) fn chown(&self, path: &Path) -> Result<(), TempDbError> {
        match self.switch_to {
            Some((uid, gid)) => std::os::unix::fs::lchown(path, Some(uid), Some(gid))
                .map_err(|e| TempDbError::io_at("change the owner of", path, e)),
            None => Ok(()),
        }
    }
}

fn lookup(passwd: &str, wanted: &str) -> Option<RunUser> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        if name != wanted {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        // Switching to uid 0 would not help; treat such an entry as absent.
        (uid != 0).then(|| RunUser {
            name: name.to_owned(),
            switch_to: Some((uid, gid)),
        })
    })
}

/// Our effective uid, without `libc`: the second field of the `Uid:` line of
/// `/proc/self/status`, or, where that is unavailable, the owner of a file we create
/// (new files belong to the effective uid).
fn effective_uid() -> u32 {
    let from_proc = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| parse_status_euid(&status));
    from_proc
        .or_else(|| {
            use std::os::unix::fs::MetadataExt;
            let file = tempfile::tempfile().ok()?;
            Some(file.metadata().ok()?.uid())
        })
        // Assume root when unsure: dropping privileges needlessly fails loudly,
        // while running the server as root fails anyway.
        .unwrap_or(0)
}

fn parse_status_euid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
        postgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n";

    #[test]
    fn finds_users_in_passwd() {
        assert_eq!(
            lookup(PASSWD, "postgres"),
            Some(RunUser {
                name: "postgres".into(),
                switch_to: Some((101, 104))
            })
        );
        assert_eq!(
            lookup(PASSWD, "nobody").unwrap().switch_to,
            Some((65534, 65534))
        );
        assert_eq!(lookup(PASSWD, "root"), None);
        assert_eq!(lookup(PASSWD, "missing"), None);
    }

    #[test]
    fn reads_effective_uid_from_status() {
        let status = "Name:\tcat\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(parse_status_euid(status), Some(0));
    }
}
