//! [`TempClusterBuilder`]: the options of a [`TempCluster`], checked before anything
//! is created.

use std::path::PathBuf;

use crate::{TempCluster, TempDbError};

/// Where and to whom the server listens: fixed by [`TempClusterBuilder::socket_only`].
const LISTENING_SETTINGS: [&str; 3] = [
    "listen_addresses",
    "unix_socket_directories",
    "unix_socket_permissions",
];

/// Options for a [`TempCluster`]; start with [`TempCluster::builder`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct TempClusterBuilder {
    pub(crate) bin_dir: Option<PathBuf>,
    pub(crate) password: Option<String>,
    pub(crate) settings: Vec<(String, String)>,
    pub(crate) ssl: Option<(PathBuf, PathBuf)>,
    pub(crate) socket_only: bool,
    pub(crate) superuser: Option<String>,
}

impl TempClusterBuilder {
    /// Listen on no TCP address at all (`listen_addresses = ''`), only on the Unix
    /// socket, so that no other local account can connect: for clusters that hold
    /// data worth keeping to oneself, such as `planrun rehearse`'s copy of production.
    ///
    /// The socket lives in the cluster's `socket` directory, inside the cluster's
    /// temporary directory; both are mode 0700 and belong to the user the server runs
    /// as, and the socket file itself is 0700 too. Run as a user U, the server runs as
    /// U and only U (and root) can reach the socket. Run as root, the server runs as
    /// `postgres`: root still connects, since it bypasses file permissions, and so
    /// can other processes of `postgres`, but no other account. Where there is no
    /// `postgres` user the server runs as `nobody`, and then every process running
    /// as `nobody` can connect too. [`host`](TempCluster::host) is then the socket
    /// directory and [`url`](TempCluster::url) a socket URL that both the `postgres`
    /// crate and libpq (`psql`, `pg_dump`, `pg_restore`) read. TLS needs TCP, so this
    /// cannot be combined with [`ssl`](Self::ssl).
    pub fn socket_only(mut self) -> Self {
        self.socket_only = true;
        self
    }

    /// Name the bootstrap superuser `name` instead of `postgres` (`initdb -U`): for a
    /// cluster that receives another cluster's roles, such as `planrun rehearse`'s
    /// copy, where the target's own `postgres` role must be free to be created with
    /// the target's attributes rather than be the copy's superuser.
    pub fn superuser(mut self, name: impl Into<String>) -> Self {
        self.superuser = Some(name.into());
        self
    }

    /// Give the superuser a password and require it (SCRAM) for TCP
    /// connections; connections over the Unix socket stay trusted.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// A server setting, e.g. `.setting("max_connections", "200")`; later settings
    /// win, including over the speed settings this crate applies by default. Where a
    /// [`socket_only`](Self::socket_only) server listens is not a setting's to change.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }

    /// Serve TLS with this certificate and private key (PEM files, copied into the
    /// data directory).
    pub fn ssl(mut self, cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        self.ssl = Some((cert_file.into(), key_file.into()));
        self
    }

    /// Use the binaries in `dir` instead of [`find_bin_dir`](crate::find_bin_dir)'s choice.
    pub fn bin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.bin_dir = Some(dir.into());
        self
    }

    /// Create the cluster and start its server.
    pub fn start(self) -> Result<TempCluster, TempDbError> {
        TempCluster::create(self)
    }

    /// Refuse what cannot be passed on safely, or contradicts itself.
    pub(crate) fn check(&self) -> Result<(), TempDbError> {
        check_settings(&self.settings)?;
        if let Some(name) = &self.superuser {
            // PostgreSQL reserves `pg_` for its predefined roles.
            if name.is_empty() || name.contains('\0') || name.starts_with("pg_") {
                return Err(TempDbError::Invalid {
                    what: format!("superuser name {name:?}"),
                    reason: "it must be non-empty, without NUL, and not start with pg_".into(),
                });
            }
        }
        if let Some(password) = &self.password {
            // initdb reads the first line of the password file only.
            if password.contains(['\n', '\r', '\0']) {
                return Err(TempDbError::Invalid {
                    what: "the superuser password".into(),
                    reason: "it must not contain line breaks or NUL".into(),
                });
            }
        }
        if !self.socket_only {
            return Ok(());
        }
        if self.ssl.is_some() {
            return Err(TempDbError::Invalid {
                what: "TLS on a socket-only cluster".into(),
                reason: "PostgreSQL serves TLS over TCP only".into(),
            });
        }
        // Setting names are case-insensitive to PostgreSQL.
        let listening = self.settings.iter().find(|(name, _)| {
            LISTENING_SETTINGS
                .iter()
                .any(|fixed| name.eq_ignore_ascii_case(fixed))
        });
        match listening {
            Some((name, _)) => Err(TempDbError::Invalid {
                what: format!("server setting {name} on a socket-only cluster"),
                reason: "socket_only decides where the server listens".into(),
            }),
            None => Ok(()),
        }
    }
}

/// Names go into `postgresql.conf` unquoted, so only plain identifiers are allowed
/// (dots for extension settings like `auto_explain.log_min_duration`).
fn check_settings(settings: &[(String, String)]) -> Result<(), TempDbError> {
    for (name, value) in settings {
        let plain = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !plain {
            return Err(TempDbError::Invalid {
                what: format!("server setting {name:?}"),
                reason: "names may only contain ASCII letters, digits, `_` and `.`".into(),
            });
        }
        if value.contains(['\n', '\r', '\0']) {
            return Err(TempDbError::Invalid {
                what: format!("server setting {name}"),
                reason: "values must not contain line breaks or NUL".into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_names_are_checked() {
        let ok = [("auto_explain.log_min_duration".to_owned(), "1s".to_owned())];
        assert!(check_settings(&ok).is_ok());
        let bad = [("a = 1\nfsync".to_owned(), "on".to_owned())];
        assert!(matches!(
            check_settings(&bad),
            Err(TempDbError::Invalid { .. })
        ));
        let bad_value = [("work_mem".to_owned(), "1\nfsync = on".to_owned())];
        assert!(check_settings(&bad_value).is_err());
    }

    #[test]
    fn a_superuser_name_of_postgresqls_own_is_refused() {
        let reserved = TempCluster::builder().superuser("pg_monitor");
        assert!(matches!(reserved.check(), Err(TempDbError::Invalid { .. })));
        assert!(TempCluster::builder().superuser("").check().is_err());
        assert!(TempCluster::builder()
            .superuser("planrun_copy")
            .check()
            .is_ok());
    }

    #[test]
    fn socket_only_refuses_tls_and_settings_that_would_open_it() {
        let refused = |builder: TempClusterBuilder| match builder.check() {
            Err(TempDbError::Invalid { what, reason }) => format!("{what}: {reason}"),
            other => panic!("{other:?}"),
        };
        let open = TempCluster::builder()
            .socket_only()
            .setting("LISTEN_Addresses", "*");
        assert!(refused(open).contains("LISTEN_Addresses"));
        let tls = TempCluster::builder().socket_only().ssl("c.pem", "k.pem");
        assert!(refused(tls).contains("TCP only"));
        let tcp = TempCluster::builder().setting("listen_addresses", "*");
        assert!(tcp.check().is_ok(), "a TCP cluster may listen elsewhere");
    }
}
