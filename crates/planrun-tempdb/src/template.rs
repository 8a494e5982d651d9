//! One `initdb`'ed data directory per process and configuration, copied for every
//! cluster: `initdb` takes one to two seconds, a copy a few tens of milliseconds.
//!
//! Templates live for the whole process (in a `static`, so they are never dropped);
//! each has a watchdog that removes it once the process has exited.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crate::files::{copy_tree, private_tempdir, write_private};
use crate::user::RunUser;
use crate::watchdog::Watchdog;
use crate::TempDbError;

/// Everything `initdb` bakes into the data directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct TemplateKey {
    pub bin_dir: PathBuf,
    pub password: Option<String>,
    pub user: RunUser,
    /// The bootstrap superuser's name.
    pub superuser: String,
}

#[derive(Debug)]
pub(crate) struct Template {
    data_dir: PathBuf,
    _dir: tempfile::TempDir,
    _watchdog: Watchdog,
}

type Slot = Arc<Mutex<Option<Arc<Template>>>>;

static TEMPLATES: OnceLock<Mutex<HashMap<TemplateKey, Slot>>> = OnceLock::new();

/// The template for `key`, running `initdb` on first use.
///
/// The per-key lock makes concurrent first users wait for one `initdb` instead of
/// running several; a failure is not cached, so a later call tries again.
pub(crate) fn get(key: &TemplateKey) -> Result<Arc<Template>, TempDbError> {
    let slot = {
        let mut map = TEMPLATES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.entry(key.clone()).or_default().clone()
    };
    let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(template) = &*slot {
        return Ok(template.clone());
    }
    let template = Arc::new(create(key)?);
    *slot = Some(template.clone());
    Ok(template)
}

impl Template {
    /// Copy the template to `dest` (which must not exist), owned by `user`, mode 0700
    /// as the server demands.
    pub(crate) fn copy_to(&self, dest: &Path, user: &RunUser) -> Result<(), TempDbError> {
        copy_tree(&self.data_dir, dest, user)?;
        fs::set_permissions(dest, fs::Permissions::from_mode(0o700))
            .map_err(|e| TempDbError::io_at("set the mode of", dest, e))
    }
}

fn create(key: &TemplateKey) -> Result<Template, TempDbError> {
    let dir = private_tempdir("planrun-pg-template-", &key.user)?;
    let watchdog = Watchdog::spawn(dir.path(), None)?;
    let data_dir = dir.path().join("data");
    let initdb = key.bin_dir.join("initdb");

    let mut cmd = key.user.command(&initdb, dir.path());
    cmd.arg("-D")
        .arg(&data_dir)
        .arg("-U")
        .arg(&key.superuser)
        .args(["-E", "UTF8", "--locale=C", "--no-sync"]);
    match &key.password {
        None => {
            cmd.arg("--auth=trust");
        }
        Some(password) => {
            let pwfile = dir.path().join("pwfile");
            write_private(&pwfile, password, &key.user)?;
            // Local (socket) connections stay trusted so that we can always
            // administer the cluster; TCP demands the password.
            cmd.args(["--auth-local=trust", "--auth-host=scram-sha-256"])
                .arg(format!("--pwfile={}", pwfile.display()));
        }
    }
    let output = cmd
        .output()
        .map_err(|e| TempDbError::io_at("run", &initdb, e))?;
    let _ = fs::remove_file(dir.path().join("pwfile"));
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if text.is_empty() {
            text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        }
        return Err(TempDbError::Initdb {
            program: initdb,
            output: format!("{} ({})", text, output.status),
        });
    }
    Ok(Template {
        data_dir,
        _dir: dir,
        _watchdog: watchdog,
    })
}
