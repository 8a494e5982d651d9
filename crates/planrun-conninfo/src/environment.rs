//! What resolution reads besides the connection string: environment variables, the
//! home directory and the operating-system user. A trait, so tests can set them
//! without touching the process environment.

use std::path::PathBuf;

pub trait Environment {
    /// The variable's value, empty or not: libpq takes an empty `PG*` variable as
    /// given (`PGSSLMODE=` is an invalid mode, `PGDATABASE=` the default database).
    fn var(&self, name: &str) -> Option<String>;
    /// The home directory: `HOME`, else the password database.
    fn home(&self) -> Option<PathBuf>;
    /// The effective operating-system user, libpq's default user name.
    fn os_user(&self) -> Option<String>;
}

/// The process's own environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn home(&self) -> Option<PathBuf> {
        non_empty(self.var("HOME"))
            .map(PathBuf::from)
            .or_else(|| passwd_entry().map(|(_, home)| home))
    }

    fn os_user(&self) -> Option<String> {
        passwd_entry()
            .map(|(name, _)| name)
            .or_else(|| non_empty(self.var("USER")))
            .or_else(|| non_empty(self.var("LOGNAME")))
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|value| !value.is_empty())
}

/// Name and home directory of the effective user, from the password database.
fn passwd_entry() -> Option<(String, PathBuf)> {
    // SAFETY: geteuid cannot fail and has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: all-zero is a valid `passwd` (null pointers, zero ids).
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: the pointers are valid for the call; getpwuid_r writes strings into
    // `buffer`, which outlives their use below.
    let status = unsafe {
        libc::getpwuid_r(
            uid,
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if status != 0 || found.is_null() {
        return None;
    }
    // SAFETY: on success both fields point at NUL-terminated strings in `buffer`.
    let (name, home) = unsafe {
        (
            std::ffi::CStr::from_ptr(entry.pw_name),
            std::ffi::CStr::from_ptr(entry.pw_dir),
        )
    };
    Some((
        name.to_string_lossy().into_owned(),
        PathBuf::from(home.to_string_lossy().into_owned()),
    ))
}

/// A fixed environment, for tests.
#[derive(Debug, Clone, Default)]
pub struct FixedEnvironment {
    pub vars: Vec<(String, String)>,
    pub home: Option<PathBuf>,
    pub os_user: Option<String>,
}

#[cfg(test)]
impl FixedEnvironment {
    /// The variables `vars`, no home directory, the operating-system user `osuser`.
    pub(crate) fn with_vars(vars: &[(&str, &str)]) -> FixedEnvironment {
        FixedEnvironment {
            vars: vars
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
            home: None,
            os_user: Some("osuser".into()),
        }
    }
}

impl Environment for FixedEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        self.vars
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    }

    fn home(&self) -> Option<PathBuf> {
        self.home.clone()
    }

    fn os_user(&self) -> Option<String> {
        self.os_user.clone()
    }
}
