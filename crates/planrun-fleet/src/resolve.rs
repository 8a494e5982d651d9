//! A fleet target's connection resolved as `--database-url` would be (libpq's `PG*`
//! variables and password file fill in what the url leaves out), and the server it
//! is on: `host:port` of its first endpoint, which `max_parallel_per_host` counts.

use std::path::Path;

use planrun_engine::Target;

use crate::model::{Connection, Fleet, FleetTarget};
use crate::problem::FleetError;

/// A target ready to connect to, or why it is not.
#[derive(Debug, Clone)]
pub struct ResolvedTarget {
    pub name: String,
    /// `host:port`, or the url's redacted text when it names no endpoint.
    pub host: String,
    pub target: Result<Target, String>,
}

/// Every target of `fleet`, in file order; one that cannot be resolved keeps its
/// reason and fails alone when its wave comes.
pub fn resolve_targets(fleet: &Fleet, cwd: &Path) -> Vec<ResolvedTarget> {
    fleet
        .targets
        .iter()
        .map(|target| match resolve(target, cwd) {
            Ok(resolved) => ResolvedTarget {
                name: target.name.clone(),
                host: host_of(&resolved),
                target: Ok(resolved),
            },
            Err(error) => ResolvedTarget {
                name: target.name.clone(),
                host: "?".into(),
                target: Err(planrun_engine::redact(&error.to_string())),
            },
        })
        .collect()
}

fn resolve(target: &FleetTarget, cwd: &Path) -> Result<Target, FleetError> {
    let url = match &target.connection {
        Connection::Url(url) => url.clone(),
        Connection::UrlEnv(variable) => std::env::var(variable)
            .ok()
            .filter(|url| !url.is_empty())
            .ok_or_else(|| FleetError::UnsetVariable {
                target: target.name.clone(),
                variable: variable.clone(),
            })?,
    };
    Target::resolve(Some(&url), cwd).map_err(|error| FleetError::Target {
        target: target.name.clone(),
        reason: error.to_string(),
    })
}

/// The server a target is on, as its first endpoint names it.
fn host_of(target: &Target) -> String {
    match target.settings().endpoints().first() {
        Some(endpoint) => {
            let host = endpoint
                .hostaddr
                .as_deref()
                .or(endpoint.host.as_deref())
                .unwrap_or("localhost");
            format!("{host}:{}", endpoint.port)
        }
        None => target.to_string(),
    }
}
