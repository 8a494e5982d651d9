//! The servers a connection may reach, one [`Endpoint`] per entry of the `host` (or
//! `hostaddr`) list, each with the password libpq would send it: the one given
//! (`password=`, `PGPASSWORD`) goes to every host, as in libpq; otherwise each host
//! gets its own line of the password file, looked up by that host and its port, so
//! a password meant for one server never reaches another.

use std::path::Path;

use crate::passfile::{self, Lookup, PassFileResult};
use crate::resolve::{DEFAULT_PORT, DEFAULT_SOCKET_DIR};
use crate::settings::{Origin, Settings};

/// One server of the host list, and what planrun sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// A host name or socket directory; `None` when only `hostaddr` names it.
    pub host: Option<String>,
    pub hostaddr: Option<String>,
    pub port: String,
    pub password: Option<String>,
    pub password_origin: Option<Origin>,
}

/// The endpoints of `settings`, in the order libpq tries them, with their passwords;
/// and libpq's warning when the password file was ignored.
pub(crate) fn endpoints(settings: &Settings) -> (Vec<Endpoint>, Option<String>) {
    let list = |name: &str| -> Vec<String> {
        settings
            .get(name)
            .map(|value| value.split(',').map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let (hosts, addresses, ports) = (list("host"), list("hostaddr"), list("port"));
    let count = hosts.len().max(addresses.len()).max(1);
    let nth = |values: &[String], index: usize| {
        values.get(index).filter(|value| !value.is_empty()).cloned()
    };
    let mut warning = None;
    let endpoints = (0..count)
        .map(|index| {
            // One port serves every host, as in libpq.
            let port = match ports.len() {
                1 => nth(&ports, 0),
                _ => nth(&ports, index),
            }
            .map_or_else(|| DEFAULT_PORT.to_owned(), |port| port_number(&port));
            let mut endpoint = Endpoint {
                host: nth(&hosts, index),
                hostaddr: nth(&addresses, index),
                port,
                password: settings.get("password").map(str::to_owned),
                password_origin: settings.origin("password").cloned(),
            };
            if endpoint.password.is_none() {
                if let Some(why) = fill_from_passfile(&mut endpoint, settings) {
                    warning.get_or_insert(why);
                }
            }
            endpoint
        })
        .collect();
    (endpoints, warning)
}

/// Takes `endpoint`'s password from its own line of the password file (libpq looks up
/// the host name, else the address, else `localhost`); returns libpq's warning when
/// the file was ignored.
fn fill_from_passfile(endpoint: &mut Endpoint, settings: &Settings) -> Option<String> {
    let path = settings.get("passfile")?;
    let host = endpoint
        .host
        .as_deref()
        .or(endpoint.hostaddr.as_deref())
        .unwrap_or(DEFAULT_SOCKET_DIR);
    let lookup = Lookup {
        host,
        port: &endpoint.port,
        dbname: settings.get("dbname").unwrap_or(""),
        user: settings.get("user").unwrap_or(""),
    };
    match passfile::look_up(Path::new(path), lookup, DEFAULT_SOCKET_DIR) {
        PassFileResult::Found(password) => {
            endpoint.password = Some(password);
            endpoint.password_origin = Some(Origin::PassFile(path.into()));
            None
        }
        PassFileResult::NotFound => None,
        PassFileResult::Ignored(why) => Some(why),
    }
}

impl Endpoint {
    /// `host:port`, for messages.
    pub fn describe(&self) -> String {
        let host = self
            .host
            .as_deref()
            .or(self.hostaddr.as_deref())
            .unwrap_or(DEFAULT_SOCKET_DIR);
        format!("{host}:{}", self.port)
    }
}

/// A port as libpq reads it (`' 5433'`, `+5433`), written plainly; resolution has
/// checked it.
fn port_number(port: &str) -> String {
    port.trim()
        .parse::<u16>()
        .map_or_else(|_| port.to_owned(), |port| port.to_string())
}
