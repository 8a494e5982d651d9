//! The `postgres` driver's configuration from libpq's resolved settings: one
//! [`Config`] per server of the host list, each with the password that server gets.

use std::time::Duration;

use planrun_conninfo::{Endpoint, Resolved};
use postgres::config::{ChannelBinding, TargetSessionAttrs};
use postgres::Config;

/// `base` for one server of the host list, with the password it gets.
pub(crate) fn endpoint_config(base: &Config, endpoint: &Endpoint) -> Result<Config, String> {
    let mut config = base.clone();
    if let Some(host) = &endpoint.host {
        config.host(host);
    }
    if let Some(address) = &endpoint.hostaddr {
        let address = address
            .parse()
            .map_err(|_| format!("hostaddr `{address}` is not an IP address"))?;
        config.hostaddr(address);
    }
    if endpoint.host.is_none() && endpoint.hostaddr.is_none() {
        config.host(planrun_conninfo::DEFAULT_SOCKET_DIR);
    }
    config.port(endpoint.port.parse().unwrap_or(5432));
    if let Some(password) = &endpoint.password {
        config.password(password);
    }
    Ok(config)
}

/// The driver's settings: every keyword it understands, with libpq's meaning (TLS is
/// [`Tls`]'s; the servers and their passwords are [`endpoint_config`]'s; the rest are
/// inert).
pub(crate) fn driver_config(resolved: &Resolved) -> Result<Config, String> {
    let mut config = Config::new();
    let seconds = |value: &str| value.trim().parse::<i64>().unwrap_or(0).max(0) as u64;
    for (name, value) in resolved.settings().iter() {
        match name {
            "user" => {
                config.user(value);
            }
            "dbname" => {
                config.dbname(value);
            }
            "options" => {
                config.options(value);
            }
            "application_name" => {
                config.application_name(value);
            }
            // Any whole number but zero turns them on, as in libpq.
            "keepalives" => {
                config.keepalives(value.trim().parse::<i64>().ok().is_none_or(|n| n != 0));
            }
            "keepalives_idle" if seconds(value) > 0 => {
                config.keepalives_idle(Duration::from_secs(seconds(value)));
            }
            "keepalives_interval" if seconds(value) > 0 => {
                config.keepalives_interval(Duration::from_secs(seconds(value)));
            }
            "keepalives_count" => {
                config.keepalives_retries(seconds(value) as u32);
            }
            // libpq counts it in milliseconds.
            "tcp_user_timeout" if seconds(value) > 0 => {
                config.tcp_user_timeout(Duration::from_millis(seconds(value)));
            }
            "target_session_attrs" => {
                // primary, standby and prefer-standby are the connection's
                // (`Target::open`), as the driver does not know them.
                config.target_session_attrs(match value {
                    "read-write" => TargetSessionAttrs::ReadWrite,
                    "read-only" => TargetSessionAttrs::ReadOnly,
                    _ => TargetSessionAttrs::Any,
                });
            }
            "channel_binding" => {
                config.channel_binding(match value {
                    "disable" => ChannelBinding::Disable,
                    "require" => ChannelBinding::Require,
                    _ => ChannelBinding::Prefer,
                });
            }
            _ => {}
        }
    }
    if let Some(options) = with_startup_parameters(resolved) {
        config.options(&options);
    }
    Ok(config)
}

/// `options` with the environment's server settings (`PGTZ`, ...) appended as
/// `-c name=value`: libpq sends them as startup parameters, which the server applies
/// after `options`, so they come last here too. The driver sends no other startup
/// parameter; the server reads both at the same level (client).
fn with_startup_parameters(resolved: &Resolved) -> Option<String> {
    let parameters = resolved.startup_parameters();
    if parameters.is_empty() {
        return None;
    }
    let mut options = resolved.get("options").unwrap_or_default().to_owned();
    for (name, value) in parameters {
        options.push_str(" -c ");
        options.push_str(name);
        options.push('=');
        // The server splits options at white space; a backslash keeps the next
        // character.
        for c in value.chars() {
            if c.is_ascii_whitespace() || c == '\\' {
                options.push('\\');
            }
            options.push(c);
        }
    }
    Some(options.trim_start().to_owned())
}
