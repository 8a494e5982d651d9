//! Resolution: the connection string first, then the `PG*` variables, then libpq's
//! defaults, then the password file. The one place that decides every setting planrun
//! connects with and hands to `pg_dump`.

use crate::endpoint::{endpoints, Endpoint};
use crate::environment::Environment;
use crate::keywords::{keyword, Support, KEYWORDS};
use crate::passfile;
use crate::settings::{Origin, Settings};
use crate::{parse, ConnInfoError};

/// Debian's libpq: the default socket directory and port.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";
pub const DEFAULT_PORT: &str = "5432";

/// Every setting of a connection, decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    settings: Settings,
    endpoints: Vec<Endpoint>,
    /// Why the password file was ignored, as libpq warns.
    pub warning: Option<String>,
    /// Why a password the environment holds was not used, for a failed connection's
    /// message.
    pub note: Option<String>,
    /// Server settings from the environment, sent at startup as libpq sends them.
    startup_parameters: Vec<(&'static str, String)>,
}

/// libpq's `EnvironmentOptions`: variables that are no connection keyword but set a
/// server parameter at startup, unless they say `default`.
const ENVIRONMENT_OPTIONS: [(&str, &str); 3] = [
    ("PGDATESTYLE", "datestyle"),
    ("PGTZ", "timezone"),
    ("PGGEQO", "geqo"),
];

/// Resolves `text` (a URI or key=value string; `None` when none was given) against
/// `env` as libpq does. With no string and no `PG*` variable at all, there is nothing
/// to connect to and this says so, rather than trying libpq's local defaults on a
/// production host.
pub fn resolve(text: Option<&str>, env: &dyn Environment) -> Result<Resolved, ConnInfoError> {
    let mut settings = match text {
        Some(text) => parse(text)?,
        None if !any_libpq_variable(env) => return Err(ConnInfoError::NothingConfigured),
        None => Settings::default(),
    };
    for keyword in KEYWORDS {
        if settings.contains(keyword.name) {
            continue;
        }
        if let Some(value) = keyword.env.and_then(|var| env.var(var)) {
            settings.set(
                keyword.name,
                value,
                Origin::Environment(keyword.env.unwrap_or("")),
            );
        }
    }
    // libpq's old variable, below PGSSLMODE: a value starting with 1 means require.
    if !settings.contains("sslmode")
        && env
            .var("PGREQUIRESSL")
            .is_some_and(|value| value.starts_with('1'))
    {
        settings.set(
            "sslmode",
            "require".into(),
            Origin::Environment("PGREQUIRESSL"),
        );
    }
    check_values(&settings)?;
    apply_defaults(&mut settings, env);
    system_root_means_verify_full(&mut settings)?;
    let (endpoints, warning) = endpoints(&settings);
    let startup_parameters = ENVIRONMENT_OPTIONS
        .iter()
        .filter_map(|(var, parameter)| Some((*parameter, env.var(var)?)))
        .filter(|(_, value)| !value.eq_ignore_ascii_case("default"))
        .collect();
    Ok(Resolved {
        settings,
        endpoints,
        warning,
        note: None,
        startup_parameters,
    })
}

fn any_libpq_variable(env: &dyn Environment) -> bool {
    KEYWORDS
        .iter()
        .filter_map(|keyword| keyword.env)
        .any(|var| env.var(var).is_some_and(|value| !value.is_empty()))
}

/// libpq's defaults. An empty value counts as unset for names, files and the port;
/// for the modes, where an empty value is invalid (checked before) or means "none"
/// (`sslsni`, `ssl_min_protocol_version`), only a keyword never set gets one.
fn apply_defaults(settings: &mut Settings, env: &dyn Environment) {
    let mut default = |name: &'static str, value: String| {
        if settings.get(name).is_none() {
            settings.set(name, value, Origin::Default);
        }
    };
    default("port", DEFAULT_PORT.into());
    if let Some(user) = env.os_user() {
        default("user", user);
    }
    let mut mode_default = |name: &'static str, value: &str| {
        if !settings.contains(name) {
            settings.set(name, value.into(), Origin::Default);
        }
    };
    mode_default("sslmode", "prefer");
    mode_default("gssencmode", "prefer");
    mode_default("channel_binding", "prefer");
    mode_default("sslsni", "1");
    mode_default("ssl_min_protocol_version", "TLSv1.2");
    mode_default("target_session_attrs", "any");
    let mut default = |name: &'static str, value: String| {
        if settings.get(name).is_none() {
            settings.set(name, value, Origin::Default);
        }
    };
    if let Some(home) = env.home() {
        default(
            "passfile",
            passfile::default_path(&home).display().to_string(),
        );
        for (name, file) in [
            ("sslrootcert", "root.crt"),
            ("sslcert", "postgresql.crt"),
            ("sslkey", "postgresql.key"),
            ("sslcrl", "root.crl"),
        ] {
            // libpq uses these files only when they exist.
            let path = home.join(".postgresql").join(file);
            if path.exists() {
                default(name, path.display().to_string());
            }
        }
    }
    if settings.get("host").is_none() && settings.get("hostaddr").is_none() {
        settings.set("host", DEFAULT_SOCKET_DIR.into(), Origin::Default);
    }
    if let Some(user) = settings.get("user").map(str::to_owned) {
        if settings.get("dbname").is_none() {
            settings.set("dbname", user, Origin::Default);
        }
    }
}

/// `sslrootcert=system` (libpq 16): the operating system's trusted roots, which any
/// public CA's customer could present, so the host name must be checked too: the
/// default `sslmode` becomes `verify-full`, and a weaker one is refused.
fn system_root_means_verify_full(settings: &mut Settings) -> Result<(), ConnInfoError> {
    if settings.get("sslrootcert") != Some("system") {
        return Ok(());
    }
    match (settings.get("sslmode"), settings.origin("sslmode")) {
        (_, Some(Origin::Default)) | (None, _) => {
            settings.set("sslmode", "verify-full".into(), Origin::Default);
            Ok(())
        }
        (Some("verify-full"), _) => Ok(()),
        (Some(weaker), origin) => Err(ConnInfoError::InvalidValue {
            keyword: "sslmode",
            value: weaker.to_owned(),
            origin: origin.map(ToString::to_string).unwrap_or_default(),
            expected: "verify-full with sslrootcert=system, as in libpq 16".into(),
        }),
    }
}

/// Refuses what planrun cannot honour and values libpq would reject, empty ones
/// included (`sslmode=''` is invalid, as in libpq).
fn check_values(settings: &Settings) -> Result<(), ConnInfoError> {
    for (name, value) in settings.iter_set() {
        let keyword = keyword(name).expect("settings hold known keywords only");
        let origin = || {
            settings
                .origin(name)
                .map(ToString::to_string)
                .unwrap_or_default()
        };
        if let (Support::Refused(why), false) = (keyword.support, value.is_empty()) {
            return Err(ConnInfoError::Unsupported {
                keyword: keyword.name,
                origin: origin(),
                why,
            });
        }
        if name == "gssencmode" && value == "require" {
            return Err(ConnInfoError::Unsupported {
                keyword: keyword.name,
                origin: origin(),
                why: "planrun does not speak GSSAPI encryption",
            });
        }
        if let Some(expected) = invalid_value(name, value) {
            return Err(ConnInfoError::InvalidValue {
                keyword: keyword.name,
                value: value.to_owned(),
                origin: origin(),
                expected,
            });
        }
    }
    Ok(())
}

/// What `value` should have been, when libpq (or planrun) would reject it.
fn invalid_value(name: &str, value: &str) -> Option<String> {
    let one_of = |allowed: &[&str]| {
        (!allowed.contains(&value)).then(|| format!("one of {}", allowed.join(", ")))
    };
    // libpq's parse_int_param: strtol's leading spaces and sign, trailing spaces.
    let integer = |value: &str| value.trim().parse::<i64>().ok();
    let whole_number = || integer(value).is_none().then(|| "a whole number".into());
    match name {
        "sslmode" => one_of(&[
            "disable",
            "allow",
            "prefer",
            "require",
            "verify-ca",
            "verify-full",
        ]),
        "channel_binding" => one_of(&["disable", "prefer", "require"]),
        "target_session_attrs" => one_of(&[
            "any",
            "read-write",
            "read-only",
            "primary",
            "standby",
            "prefer-standby",
        ]),
        "gssencmode" => one_of(&["disable", "prefer", "require"]),
        // Empty: no bound, as in libpq.
        "ssl_min_protocol_version" | "ssl_max_protocol_version" if value.is_empty() => None,
        "ssl_min_protocol_version" | "ssl_max_protocol_version" => {
            one_of(&["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"])
        }
        // libpq reads `auto` as the client's own encoding: planrun's is UTF8.
        "client_encoding" => (!value.is_empty()
            && value != "auto"
            && !matches!(
                value.to_ascii_uppercase().as_str(),
                "UTF8" | "UTF-8" | "UNICODE"
            ))
        .then(|| "planrun speaks UTF8 only".into()),
        "port" => (!value.split(',').all(|port| {
            port.is_empty() || integer(port).is_some_and(|port| (1..=65535).contains(&port))
        }))
        .then(|| "a port number, or a comma-separated list of them".into()),
        "connect_timeout"
        | "keepalives"
        | "keepalives_idle"
        | "keepalives_interval"
        | "keepalives_count"
        | "tcp_user_timeout" => whole_number(),
        _ => None,
    }
}

impl Resolved {
    /// The server parameters libpq would send at startup from the environment
    /// (`PGDATESTYLE`, `PGTZ`, `PGGEQO`), in libpq's order.
    pub fn startup_parameters(&self) -> &[(&'static str, String)] {
        &self.startup_parameters
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn get(&self, keyword: &str) -> Option<&str> {
        self.settings.get(keyword)
    }

    pub fn origin(&self, keyword: &str) -> Option<&Origin> {
        self.settings.origin(keyword)
    }

    /// `postgresql://user@host:port/dbname`, for messages and the ledger; never the
    /// password.
    pub fn describe(&self) -> String {
        let host = self
            .get("host")
            .or_else(|| self.get("hostaddr"))
            .unwrap_or_default();
        format!(
            "postgresql://{}@{host}:{}/{}",
            self.get("user").unwrap_or_default(),
            self.get("port").unwrap_or(DEFAULT_PORT),
            self.get("dbname").unwrap_or_default()
        )
    }

    /// A key=value string with every setting but the password, for a libpq tool's
    /// `--dbname`: with the `PG*` variables removed from its environment and the
    /// password in `PGPASSWORD`, the tool connects with exactly these settings.
    pub fn conninfo_without_password(&self) -> String {
        self.settings
            .iter()
            .filter(|(name, _)| *name != "password")
            .map(|(name, value)| format!("{name}={}", crate::key_value::quote_value(value)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The password given for every host (`password=`, `PGPASSWORD`); a password
    /// file's is per host, in [`Resolved::endpoints`].
    pub fn password(&self) -> Option<&str> {
        self.get("password")
    }

    /// The servers to try, in order, each with the password it gets.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Every password some endpoint gets, for scrubbing messages.
    pub fn passwords(&self) -> impl Iterator<Item = &str> {
        self.endpoints
            .iter()
            .filter_map(|endpoint| endpoint.password.as_deref())
    }
}

#[cfg(test)]
mod tests;
