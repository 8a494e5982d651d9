//! Another local account to act as, for the tests that prove a file planrun writes is
//! out of its reach or that planrun refuses a directory it controls: `nobody`, when
//! the tests run as root (only root can act as another account or give it a file).

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// A local account other than the one the tests run as.
pub struct Account {
    pub name: &'static str,
    pub uid: u32,
    pub gid: u32,
}

impl Account {
    /// `nobody`, or `None` (saying why on stderr) when the tests cannot act as it.
    pub fn nobody() -> Option<Account> {
        let euid = std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid());
        if euid != 0 {
            eprintln!("skipped: acting as another account needs root");
            return None;
        }
        let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd is readable");
        let found = passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&"nobody") && fields.len() > 3)
                .then(|| (fields[2].parse().ok(), fields[3].parse().ok()))
        });
        let Some((Some(uid), Some(gid))) = found else {
            eprintln!("skipped: there is no `nobody` user to act as");
            return None;
        };
        Some(Account {
            name: "nobody",
            uid,
            gid,
        })
    }

    /// Gives `path` (not following a symbolic link) to this account.
    pub fn give(&self, path: &Path) {
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid))
            .unwrap_or_else(|error| panic!("chown {} to {}: {error}", path.display(), self.name));
    }

    /// What `cat file` prints when this account runs it, or `None` when it cannot
    /// read the file. (std drops root's supplementary groups along with the uid.)
    pub fn read(&self, file: &Path) -> Option<String> {
        let output = Command::new("cat")
            .arg(file)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .current_dir("/")
            .stdin(Stdio::null())
            .uid(self.uid)
            .gid(self.gid)
            .output()
            .expect("cat runs as another account");
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }
}
