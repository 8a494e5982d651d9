//! A connection string read from a file (`./.env`) rather than given by the user or
//! the environment. Such a file may be stale, left behind for another server, while
//! `PGPASSWORD` is meant for the server the environment names. The two combine only
//! when both name the same server; otherwise the environment's password is never
//! sent, and the resolution says why.

use crate::environment::Environment;
use crate::resolve::{resolve, Resolved};
use crate::settings::Origin;
use crate::ConnInfoError;

/// Resolves `text`, read from `file` (for messages), against `env`, leaving out
/// `PGPASSWORD` unless the server it names (host, address and port, after libpq's
/// defaults) is the one `env` alone names.
pub fn resolve_from_file(
    text: &str,
    file: &str,
    env: &dyn Environment,
) -> Result<Resolved, ConnInfoError> {
    let combined = resolve(Some(text), env)?;
    if combined.origin("password") != Some(&Origin::Environment("PGPASSWORD")) {
        return Ok(combined);
    }
    let server = |resolved: &Resolved| {
        ["host", "hostaddr", "port"].map(|name| resolved.get(name).unwrap_or("").to_owned())
    };
    let named = server(&combined);
    // Settings the environment alone cannot resolve name no server to match.
    let meant = resolve(None, env).ok().map(|alone| server(&alone));
    if meant.as_ref() == Some(&named) {
        return Ok(combined);
    }
    let meant = meant.map_or_else(|| "none it can resolve".to_owned(), |meant| shown(&meant));
    let mut resolved = resolve(
        Some(text),
        &Without {
            env,
            name: "PGPASSWORD",
        },
    )?;
    resolved.note = Some(format!(
        "PGPASSWORD was not sent: it goes with the server the environment names ({meant}), and {file} names another ({})",
        shown(&named)
    ));
    Ok(resolved)
}

/// `host=... hostaddr=... port=...`, the parts that are set.
fn shown(server: &[String; 3]) -> String {
    ["host", "hostaddr", "port"]
        .iter()
        .zip(server)
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `env` with one variable unset.
struct Without<'a> {
    env: &'a dyn Environment,
    name: &'static str,
}

impl Environment for Without<'_> {
    fn var(&self, name: &str) -> Option<String> {
        (name != self.name).then(|| self.env.var(name)).flatten()
    }

    fn home(&self) -> Option<std::path::PathBuf> {
        self.env.home()
    }

    fn os_user(&self) -> Option<String> {
        self.env.os_user()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FixedEnvironment;

    fn env(vars: &[(&str, &str)]) -> FixedEnvironment {
        FixedEnvironment::with_vars(vars)
    }

    #[test]
    fn the_environments_password_goes_only_to_the_environments_server() {
        let vars = [("PGHOST", "a.example"), ("PGPASSWORD", "for-a")];
        let elsewhere =
            resolve_from_file("postgresql://app@b.example/prod", "./.env", &env(&vars)).unwrap();
        assert_eq!(elsewhere.password(), None);
        let note = elsewhere.note.unwrap();
        assert!(
            note.contains("host=a.example") && note.contains("host=b.example"),
            "{note}"
        );
        assert!(!note.contains("for-a"), "{note}");

        for same in ["postgresql://app@a.example/prod", "postgresql:///prod"] {
            let resolved = resolve_from_file(same, "./.env", &env(&vars)).unwrap();
            assert_eq!(resolved.password(), Some("for-a"), "{same}");
        }
        let other_port = resolve_from_file(
            "postgresql://app@a.example:6543/prod",
            "./.env",
            &env(&vars),
        )
        .unwrap();
        assert_eq!(other_port.password(), None);
        let unset_host = resolve_from_file(
            "postgresql://app@b.example/prod",
            "./.env",
            &env(&[("PGPASSWORD", "for-the-socket")]),
        )
        .unwrap();
        assert_eq!(unset_host.password(), None, "libpq's default host is not b");
    }
}
