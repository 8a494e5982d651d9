use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::environment::FixedEnvironment;

fn env(vars: &[(&str, &str)]) -> FixedEnvironment {
    FixedEnvironment::with_vars(vars)
}

#[test]
fn the_environment_fills_what_a_url_leaves_out() {
    let resolved = resolve(
        Some("postgresql://app@db/prod"),
        &env(&[
            ("PGSSLMODE", "verify-full"),
            ("PGSSLROOTCERT", "/etc/ca.pem"),
            ("PGHOST", "elsewhere"),
            ("PGPASSWORD", "from-env"),
        ]),
    )
    .unwrap();
    assert_eq!(resolved.get("sslmode"), Some("verify-full"));
    assert_eq!(
        resolved.origin("sslmode"),
        Some(&Origin::Environment("PGSSLMODE"))
    );
    assert_eq!(resolved.get("sslrootcert"), Some("/etc/ca.pem"));
    assert_eq!(resolved.get("host"), Some("db"), "the URL's host wins");
    assert_eq!(resolved.password(), Some("from-env"));
}

#[test]
fn a_percent_encoded_sslmode_is_not_downgraded() {
    let resolved = resolve(Some("postgresql://db/prod?ssl%6Dode=require"), &env(&[])).unwrap();
    assert_eq!(resolved.get("sslmode"), Some("require"));
}

#[test]
fn libpq_defaults_apply_last() {
    let resolved = resolve(Some("dbname=prod"), &env(&[])).unwrap();
    assert_eq!(resolved.get("host"), Some(DEFAULT_SOCKET_DIR));
    assert_eq!(resolved.get("port"), Some("5432"));
    assert_eq!(resolved.get("user"), Some("osuser"));
    assert_eq!(resolved.get("sslmode"), Some("prefer"));
    let resolved = resolve(None, &env(&[("PGUSER", "app")])).unwrap();
    assert_eq!(
        resolved.get("dbname"),
        Some("app"),
        "the database defaults to the user"
    );
}

#[test]
fn nothing_configured_is_said_plainly() {
    let error = resolve(None, &env(&[("HOME", "/root")])).unwrap_err();
    assert_eq!(error, ConnInfoError::NothingConfigured);
    assert!(error.to_string().contains("--database-url"), "{error}");
}

#[test]
fn the_password_file_follows_libpq() {
    let home = tempfile::tempdir().unwrap();
    let pgpass = home.path().join(".pgpass");
    std::fs::write(&pgpass, "db:5432:prod:app:from-file\n").unwrap();
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let with_home = FixedEnvironment {
        home: Some(home.path().to_owned()),
        ..env(&[])
    };
    let resolved = resolve(Some("postgresql://app@db/prod"), &with_home).unwrap();
    let endpoint = &resolved.endpoints()[0];
    assert_eq!(endpoint.password.as_deref(), Some("from-file"));
    assert_eq!(
        endpoint.password_origin,
        Some(Origin::PassFile(pgpass.clone()))
    );
    assert_eq!(resolved.password(), None, "a file's password is per host");
    assert!(!resolved.conninfo_without_password().contains("from-file"));

    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let resolved = resolve(Some("postgresql://app@db/prod"), &with_home).unwrap();
    assert_eq!(resolved.passwords().next(), None);
    assert!(resolved
        .warning
        .as_deref()
        .unwrap_or("")
        .contains("group or world access"));

    let elsewhere = home.path().join("elsewhere");
    std::fs::write(&elsewhere, "*:*:*:*:from-passfile-var\n").unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o600)).unwrap();
    let path = elsewhere.display().to_string();
    let resolved = resolve(
        Some("postgresql://app@db/prod"),
        &FixedEnvironment {
            home: Some(home.path().to_owned()),
            ..env(&[("PGPASSFILE", &path)])
        },
    )
    .unwrap();
    assert_eq!(resolved.passwords().next(), Some("from-passfile-var"));
}

#[test]
fn each_host_gets_its_own_password_file_line() {
    let home = tempfile::tempdir().unwrap();
    let pgpass = home.path().join(".pgpass");
    std::fs::write(
        &pgpass,
        "a:5432:prod:app:for-a
b:6543:prod:app:for-b
",
    )
    .unwrap();
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let with_home = FixedEnvironment {
        home: Some(home.path().to_owned()),
        ..env(&[])
    };
    let resolved = resolve(
        Some("host=a,b port=5432,6543 user=app dbname=prod"),
        &with_home,
    )
    .unwrap();
    let passwords: Vec<_> = resolved
        .endpoints()
        .iter()
        .map(|endpoint| (endpoint.describe(), endpoint.password.clone()))
        .collect();
    assert_eq!(
        passwords,
        [
            ("a:5432".to_owned(), Some("for-a".to_owned())),
            ("b:6543".to_owned(), Some("for-b".to_owned()))
        ]
    );
    let given = resolve(
        Some("host=a,b user=app dbname=prod password=everywhere"),
        &with_home,
    )
    .unwrap();
    assert!(given.passwords().all(|password| password == "everywhere"));
}

#[test]
fn sslrootcert_system_means_verify_full_as_in_libpq_16() {
    let resolved = resolve(Some("host=db sslrootcert=system"), &env(&[])).unwrap();
    assert_eq!(resolved.get("sslmode"), Some("verify-full"));
    let error = resolve(
        Some("host=db sslrootcert=system sslmode=verify-ca"),
        &env(&[]),
    );
    assert!(
        matches!(error, Err(ConnInfoError::InvalidValue { .. })),
        "{error:?}"
    );
}

#[test]
fn what_planrun_cannot_honour_is_refused_not_ignored() {
    for (text, vars) in [
        ("service=prod", vec![]),
        ("host=db", vec![("PGSERVICE", "prod")]),
        ("host=db gssencmode=require", vec![]),
        ("host=db sslcrl=/etc/crl.pem", vec![]),
        ("host=db client_encoding=LATIN1", vec![]),
        ("host=db", vec![("PGSSLMODE", "sometimes")]),
    ] {
        let error = resolve(Some(text), &env(&vars)).unwrap_err();
        assert!(
            matches!(
                error,
                ConnInfoError::Unsupported { .. } | ConnInfoError::InvalidValue { .. }
            ),
            "{text}: {error}"
        );
    }
}

#[test]
fn a_tool_handed_the_conninfo_reads_back_the_same_settings() {
    let resolved = resolve(
        Some(r"host=db user=app password=Tr0ub4dor\ horse options='-c x=1\'s' sslmode=verify-ca"),
        &env(&[("PGAPPNAME", "mine")]),
    )
    .unwrap();
    let handed = crate::parse(&resolved.conninfo_without_password()).unwrap();
    for (name, value) in resolved
        .settings()
        .iter()
        .filter(|(name, _)| *name != "password")
    {
        assert_eq!(handed.get(name), Some(value), "{name}");
    }
    assert_eq!(handed.get("password"), None);
}

/// Issue 26, item 2: `PGREQUIRESSL=1` (any value starting with 1) means
/// `sslmode=require` unless the string or `PGSSLMODE` says otherwise; `requiressl` in
/// the string is another spelling of `sslmode` (1: require, else prefer), where it
/// stands.
#[test]
fn requiressl_means_sslmode_require_as_in_libpq() {
    let sslmode = |text: &str, vars: &[(&str, &str)]| {
        resolve(Some(text), &env(vars))
            .unwrap()
            .get("sslmode")
            .map(str::to_owned)
    };
    let require = Some("require".to_owned());
    assert_eq!(sslmode("host=db", &[("PGREQUIRESSL", "1")]), require);
    assert_eq!(sslmode("host=db", &[("PGREQUIRESSL", "1x")]), require);
    assert_eq!(
        sslmode("host=db", &[("PGREQUIRESSL", "0")]).as_deref(),
        Some("prefer")
    );
    assert_eq!(
        sslmode(
            "host=db",
            &[("PGREQUIRESSL", "1"), ("PGSSLMODE", "disable")]
        )
        .as_deref(),
        Some("disable")
    );
    assert_eq!(
        sslmode("host=db sslmode=disable", &[("PGREQUIRESSL", "1")]).as_deref(),
        Some("disable")
    );
    assert_eq!(
        sslmode("host=db sslmode=disable requiressl=1", &[]),
        require
    );
    assert_eq!(
        sslmode("host=db requiressl=1 sslmode=disable", &[]).as_deref(),
        Some("disable")
    );
    assert_eq!(
        sslmode("host=db sslmode=require requiressl=0", &[]).as_deref(),
        Some("prefer")
    );
    assert_eq!(sslmode("postgresql://db/x?requiressl=1", &[]), require);
}

/// Issue 26, item 3: a value given empty is given: the environment does not fill it;
/// for most keywords it then means libpq's default, for some it is invalid.
#[test]
fn an_empty_value_is_given_not_missing() {
    let resolved = resolve(
        Some("host='' dbname='' port=''"),
        &env(&[
            ("PGDATABASE", "other"),
            ("PGHOST", "elsewhere"),
            ("PGPORT", "6543"),
        ]),
    )
    .unwrap();
    assert_eq!(resolved.get("dbname"), Some("osuser"));
    assert_eq!(resolved.get("host"), Some(DEFAULT_SOCKET_DIR));
    assert_eq!(resolved.endpoints()[0].port, "5432");
    let empty_env = resolve(Some("host=db"), &env(&[("PGDATABASE", "")])).unwrap();
    assert_eq!(empty_env.get("dbname"), Some("osuser"));
    for text in [
        "host=db sslmode=''",
        "host=db connect_timeout=''",
        "host=db keepalives=''",
        "host=db target_session_attrs=''",
        "host=db channel_binding=''",
        "host=db gssencmode=''",
    ] {
        assert!(
            matches!(
                resolve(Some(text), &env(&[])),
                Err(ConnInfoError::InvalidValue { .. })
            ),
            "{text}"
        );
    }
    assert!(resolve(Some("host=db"), &env(&[("PGSSLMODE", "")])).is_err());
    let no_sni = resolve(
        Some("host=db sslsni='' ssl_min_protocol_version=''"),
        &env(&[]),
    )
    .unwrap();
    assert_eq!(no_sni.get("sslsni"), None, "libpq sends no SNI");
    assert_eq!(no_sni.get("ssl_min_protocol_version"), None, "no bound");
}

/// Issue 26, item 4: the environment options libpq sends at startup.
#[test]
fn pgtz_pgdatestyle_and_pggeqo_become_startup_parameters() {
    let resolved = resolve(
        Some("host=db"),
        &env(&[
            ("PGTZ", "Pacific/Auckland"),
            ("PGDATESTYLE", "SQL, DMY"),
            ("PGGEQO", "DEFAULT"),
        ]),
    )
    .unwrap();
    assert_eq!(
        resolved.startup_parameters(),
        [
            ("datestyle", "SQL, DMY".to_owned()),
            ("timezone", "Pacific/Auckland".to_owned())
        ]
    );
}

/// Issue 26, item 5: values libpq accepts.
#[test]
fn values_libpq_accepts_are_accepted() {
    for text in [
        "host=db target_session_attrs=primary",
        "host=db target_session_attrs=standby",
        "host=db target_session_attrs=prefer-standby",
        "host=db port=' 5433'",
        "host=db port='5433 '",
        "host=db port=+5433",
        "postgresql://db:%35433/x",
        "host=db keepalives=2",
        "host=db keepalives=-1",
        "host=db sslsni=2",
        "host=db client_encoding=auto",
        "hostaddr=127.0.0.1",
    ] {
        let resolved = resolve(Some(text), &env(&[]));
        assert!(resolved.is_ok(), "{text}: {resolved:?}");
    }
    let port = resolve(Some("host=db port=' 5433'"), &env(&[])).unwrap();
    assert_eq!(port.endpoints()[0].port, "5433");
    for text in ["host=db port=0", "host=db port=5433x", "host=db port=70000"] {
        assert!(resolve(Some(text), &env(&[])).is_err(), "{text}");
    }
}

/// Issue 26, item 7: with `hostaddr` alone, libpq 15 looks up the address in the
/// password file. (Debian's `/usr/bin/psql` wrapper sets `PGHOST` to its default
/// cluster's socket first, which makes psql look up `localhost`; libpq itself does
/// not.)
#[test]
fn a_hostaddr_only_connection_looks_up_its_address_in_the_password_file() {
    let home = tempfile::tempdir().unwrap();
    let pgpass = home.path().join(".pgpass");
    std::fs::write(
        &pgpass,
        "localhost:5432:prod:app:by-localhost\n127.0.0.1:5432:prod:app:by-address\n",
    )
    .unwrap();
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let with_home = FixedEnvironment {
        home: Some(home.path().to_owned()),
        ..env(&[])
    };
    let resolved = resolve(Some("hostaddr=127.0.0.1 user=app dbname=prod"), &with_home).unwrap();
    assert_eq!(
        resolved.endpoints()[0].password.as_deref(),
        Some("by-address")
    );
}
