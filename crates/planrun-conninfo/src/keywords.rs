//! The connection keywords libpq 15 knows, the environment variable each falls back
//! to, and what planrun does with each.

/// What planrun does with a keyword's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Used for planrun's own connections and handed to child tools.
    Used,
    /// Accepted with libpq's meaning, with nothing for planrun to do (a GSSAPI
    /// setting when GSSAPI is off, an obsolete option).
    Inert,
    /// planrun cannot honour it; a value set anywhere is refused rather than
    /// silently weakened. The text says why.
    Refused(&'static str),
}

/// One libpq connection keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyword {
    pub name: &'static str,
    /// The `PG*` variable libpq reads when the string leaves the keyword out.
    pub env: Option<&'static str>,
    pub support: Support,
}

const fn used(name: &'static str, env: Option<&'static str>) -> Keyword {
    Keyword {
        name,
        env,
        support: Support::Used,
    }
}

const fn inert(name: &'static str, env: Option<&'static str>) -> Keyword {
    Keyword {
        name,
        env,
        support: Support::Inert,
    }
}

const fn refused(name: &'static str, env: Option<&'static str>, why: &'static str) -> Keyword {
    Keyword {
        name,
        env,
        support: Support::Refused(why),
    }
}

/// libpq 15's `PQconninfoOptions`, in its order.
pub const KEYWORDS: &[Keyword] = &[
    refused(
        "service",
        Some("PGSERVICE"),
        "connection service files are not read by planrun; write the settings out",
    ),
    used("user", Some("PGUSER")),
    used("password", Some("PGPASSWORD")),
    used("passfile", Some("PGPASSFILE")),
    used("channel_binding", Some("PGCHANNELBINDING")),
    used("connect_timeout", Some("PGCONNECT_TIMEOUT")),
    used("dbname", Some("PGDATABASE")),
    used("host", Some("PGHOST")),
    used("hostaddr", Some("PGHOSTADDR")),
    used("port", Some("PGPORT")),
    used("client_encoding", Some("PGCLIENTENCODING")),
    used("options", Some("PGOPTIONS")),
    used("application_name", Some("PGAPPNAME")),
    inert("fallback_application_name", None),
    used("keepalives", None),
    used("keepalives_idle", None),
    used("keepalives_interval", None),
    used("keepalives_count", None),
    used("tcp_user_timeout", None),
    used("sslmode", Some("PGSSLMODE")),
    inert("sslcompression", Some("PGSSLCOMPRESSION")),
    used("sslcert", Some("PGSSLCERT")),
    used("sslkey", Some("PGSSLKEY")),
    refused(
        "sslpassword",
        None,
        "planrun cannot decrypt a client key; use an unencrypted key file with mode 0600",
    ),
    used("sslrootcert", Some("PGSSLROOTCERT")),
    refused(
        "sslcrl",
        Some("PGSSLCRL"),
        "planrun does not check certificate revocation lists",
    ),
    refused(
        "sslcrldir",
        Some("PGSSLCRLDIR"),
        "planrun does not check certificate revocation lists",
    ),
    used("sslsni", Some("PGSSLSNI")),
    refused(
        "requirepeer",
        Some("PGREQUIREPEER"),
        "planrun cannot check the server's operating-system user",
    ),
    used("ssl_min_protocol_version", Some("PGSSLMINPROTOCOLVERSION")),
    used("ssl_max_protocol_version", Some("PGSSLMAXPROTOCOLVERSION")),
    used("gssencmode", Some("PGGSSENCMODE")),
    inert("krbsrvname", Some("PGKRBSRVNAME")),
    inert("gsslib", Some("PGGSSLIB")),
    refused(
        "replication",
        None,
        "a replication connection cannot run a migration",
    ),
    used("target_session_attrs", Some("PGTARGETSESSIONATTRS")),
];

/// The keyword called `name`, if libpq knows it.
pub fn keyword(name: &str) -> Option<&'static Keyword> {
    KEYWORDS.iter().find(|keyword| keyword.name == name)
}
