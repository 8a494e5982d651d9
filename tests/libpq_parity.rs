//! libpq parity, proved against libpq itself (issue 26). A generated matrix of
//! connection inputs (URLs, key=value strings, `PG*` variables, password files, TLS
//! modes, host lists, empty values) runs through psql 15 and through planrun (the
//! `planrun-connect-probe` binary, which resolves and connects as every command does)
//! against servers started here: `tls` (TLS from a throwaway CA, SCRAM over TCP, the
//! socket trusted), `plain` (no TLS, SCRAM) and `silent` (a TCP listener that accepts
//! and never answers). Compared: where each landed (the server's port, the user, the
//! database, TLS or not, and the settings libpq sends from the environment:
//! `TimeZone`, `DateStyle`, `geqo`, `search_path`), or that it refused. Every
//! difference fails the test unless its case carries a tag of [`DELIBERATE`], which
//! docs/security.md mirrors, and planrun is the stricter side.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};

use planrun_tempdb::TempCluster;
use planrun_tests::tls::{Ca, TlsServer, PASSWORD};

const PROBE: &str = env!("CARGO_BIN_EXE_planrun-connect-probe");

/// What both clients run once connected; psql prints it as the probe does.
const WHERE_AM_I: &str = "SELECT current_setting('port'), current_user, current_database(), \
     COALESCE((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false), \
     current_setting('TimeZone'), current_setting('DateStyle'), current_setting('geqo'), \
     current_setting('search_path')";

/// The plain server's superuser password: a space, for the quoting of key=value.
const PLAIN_PASSWORD: &str = "plain s3cret";

/// Where planrun differs from psql on purpose, always the stricter way: a case's tag,
/// and why. docs/security.md ("Connection settings follow libpq") mirrors this table.
const DELIBERATE: &[(&str, &str)] = &[
    (
        "allow",
        "sslmode=allow: planrun tries TLS first, as under prefer, so it is encrypted where psql is not",
    ),
    (
        "client_encoding",
        "planrun speaks UTF8 only: another client_encoding is refused",
    ),
    (
        "sslcrl",
        "planrun checks no revocation list: sslcrl is refused, where psql skips a missing file",
    ),
    (
        "sslpassword",
        "planrun cannot decrypt a client key: sslpassword is refused, where psql ignores it without an encrypted key",
    ),
];

/// The servers every case may reach.
struct Servers {
    tls: TlsServer,
    plain: TempCluster,
    silent_port: u16,
    closed_port: u16,
}

impl Servers {
    fn start() -> Servers {
        let ca = Ca::new("planrun parity CA");
        let tls = TlsServer::start(&ca, &["localhost"], &["127.0.0.1"]);
        tls.db.cluster.create_database("other").unwrap();
        tls.db
            .cluster
            .psql("postgres", "CREATE ROLE app LOGIN PASSWORD 'app-pw'")
            .unwrap();
        let plain = TempCluster::builder()
            .password(PLAIN_PASSWORD)
            .start()
            .expect("a throwaway PostgreSQL starts");
        plain.create_database("other").unwrap();
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_port = silent.local_addr().unwrap().port();
        // Accepted connections are kept open, unanswered, until the test ends.
        std::thread::spawn(move || {
            let held: Vec<_> = silent.incoming().collect();
            drop(held);
        });
        let closed_port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .unwrap()
            .port();
        Servers {
            tls,
            plain,
            silent_port,
            closed_port,
        }
    }

    fn tls_port(&self) -> u16 {
        self.tls.db.cluster.port()
    }

    fn plain_port(&self) -> u16 {
        self.plain.port()
    }

    fn ca(&self) -> String {
        self.tls.ca_file().display().to_string()
    }
}

/// One input: a connection string (or none), `PG*` variables, a password file.
#[derive(Debug, Clone, Default)]
struct Case {
    name: String,
    conninfo: Option<String>,
    env: Vec<(String, String)>,
    pgpass: Option<(String, u32)>,
    tag: Option<&'static str>,
}

impl Case {
    fn new(name: impl Into<String>) -> Case {
        Case {
            name: name.into(),
            ..Case::default()
        }
    }

    fn string(mut self, text: impl Into<String>) -> Case {
        self.conninfo = Some(text.into());
        self
    }

    fn var(mut self, name: &str, value: impl Into<String>) -> Case {
        self.env.push((name.to_owned(), value.into()));
        self
    }

    fn pgpass(mut self, text: impl Into<String>, mode: u32) -> Case {
        self.pgpass = Some((text.into(), mode));
        self
    }

    fn tag(mut self, tag: &'static str) -> Case {
        self.tag = Some(tag);
        self
    }
}

/// `value` quoted for a key=value string.
fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\\', r"\\").replace('\'', r"\'"))
}

/// `value` percent-encoded for any part of a URI.
fn encoded(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            byte => format!("%{byte:02X}"),
        })
        .collect()
}

/// A server as a case names it.
struct Place {
    name: &'static str,
    host: Option<String>,
    hostaddr: Option<&'static str>,
    port: u16,
    password: &'static str,
}

fn places(servers: &Servers) -> Vec<Place> {
    let tls = |name, host: Option<&str>, hostaddr| Place {
        name,
        host: host.map(str::to_owned),
        hostaddr,
        port: servers.tls_port(),
        password: PASSWORD,
    };
    let socket = servers.tls.db.cluster.socket_dir().display().to_string();
    vec![
        tls("tls-localhost", Some("localhost"), None),
        tls("tls-127.0.0.1", Some("127.0.0.1"), None),
        tls("tls-hostaddr", None, Some("127.0.0.1")),
        tls("tls-socket", Some(&socket), None),
        Place {
            name: "plain-127.0.0.1",
            host: Some("127.0.0.1".into()),
            hostaddr: None,
            port: servers.plain_port(),
            password: PLAIN_PASSWORD,
        },
    ]
}

/// The same settings as a URI, a key=value string and `PG*` variables.
fn in_every_form(name: &str, settings: &[(&str, String)]) -> Vec<Case> {
    let env_name = |keyword: &str| match keyword {
        "dbname" => "PGDATABASE".to_owned(),
        keyword => format!("PG{}", keyword.to_ascii_uppercase()),
    };
    let key_value = settings
        .iter()
        .map(|(keyword, value)| format!("{keyword}={}", quoted(value)))
        .collect::<Vec<_>>()
        .join(" ");
    let query = settings
        .iter()
        .map(|(keyword, value)| format!("{keyword}={}", encoded(value)))
        .collect::<Vec<_>>()
        .join("&");
    let mut env = Case::new(format!("env {name}"));
    for (keyword, value) in settings {
        env = env.var(&env_name(keyword), value.clone());
    }
    vec![
        Case::new(format!("uri {name}")).string(format!("postgresql://?{query}")),
        Case::new(format!("key=value {name}")).string(key_value),
        env,
    ]
}

/// Every server by every way of naming it, under every `sslmode`, in every form.
fn tls_modes(servers: &Servers) -> Vec<Case> {
    let mut cases = Vec::new();
    for place in places(servers) {
        for sslmode in [
            "",
            "disable",
            "allow",
            "prefer",
            "require",
            "verify-ca",
            "verify-full",
        ] {
            let mut settings = vec![
                ("port", place.port.to_string()),
                ("user", "postgres".to_owned()),
                ("password", place.password.to_owned()),
                ("dbname", "other".to_owned()),
            ];
            settings.extend(place.host.clone().map(|host| ("host", host)));
            settings.extend(
                place
                    .hostaddr
                    .map(|address| ("hostaddr", address.to_owned())),
            );
            if !sslmode.is_empty() {
                settings.push(("sslmode", sslmode.to_owned()));
            }
            if sslmode.starts_with("verify") {
                settings.push(("sslrootcert", servers.ca()));
            }
            let name = format!("{} sslmode={sslmode}", place.name);
            cases.extend(
                in_every_form(&name, &settings)
                    .into_iter()
                    .map(|case| match sslmode {
                        "allow" => case.tag("allow"),
                        _ => case,
                    }),
            );
        }
    }
    cases
}

/// Where the password comes from, for each server over TCP.
fn password_sources(servers: &Servers) -> Vec<Case> {
    let mut cases = Vec::new();
    for (server, port, password, user) in [
        ("tls", servers.tls_port(), PASSWORD, "postgres"),
        ("tls", servers.tls_port(), "app-pw", "app"),
        ("plain", servers.plain_port(), PLAIN_PASSWORD, "postgres"),
    ] {
        let line = format!("127.0.0.1:{port}:*:{user}:{}", password.replace(':', r"\:"));
        let string = format!("host=127.0.0.1 port={port} user={user} dbname=postgres");
        let name = |how: &str| format!("{server} {user} password {how}");
        cases.extend([
            Case::new(name("PGPASSWORD"))
                .string(&string)
                .var("PGPASSWORD", password),
            Case::new(name("wrong PGPASSWORD"))
                .string(&string)
                .var("PGPASSWORD", "wrong"),
            Case::new(name("~/.pgpass"))
                .string(&string)
                .pgpass(&line, 0o600),
            Case::new(name("~/.pgpass 0644"))
                .string(&string)
                .pgpass(&line, 0o644),
            Case::new(name("~/.pgpass with a sixth field"))
                .string(&string)
                .pgpass(format!("{line}:extra"), 0o600),
            Case::new(name("none")).string(&string),
            Case::new(name("env only, ~/.pgpass"))
                .var("PGHOST", "127.0.0.1")
                .var("PGPORT", port.to_string())
                .var("PGUSER", user)
                .pgpass(&line, 0o600),
        ]);
    }
    cases
}

/// Host lists, and a first host that accepts and never answers (item 1).
fn host_lists(servers: &Servers) -> Vec<Case> {
    let (silent, closed, plain) = (
        servers.silent_port,
        servers.closed_port,
        servers.plain_port(),
    );
    let user = format!("user=postgres password={}", quoted(PLAIN_PASSWORD));
    let pw = encoded(PLAIN_PASSWORD);
    vec![
        Case::new("a silent first host, connect_timeout=2").string(format!(
            "host=127.0.0.1,127.0.0.1 port={silent},{plain} connect_timeout=2 {user}"
        )),
        Case::new("uri, a silent first host, connect_timeout=1").string(format!(
            "postgresql://postgres:{pw}@127.0.0.1:{silent},127.0.0.1:{plain}/other?connect_timeout=1"
        )),
        Case::new("a silent host alone, PGCONNECT_TIMEOUT=1")
            .string(format!("host=127.0.0.1 port={silent} {user}"))
            .var("PGCONNECT_TIMEOUT", "1"),
        Case::new("a closed first host")
            .string(format!("host=127.0.0.1,localhost port={closed},{plain} {user}")),
        Case::new("one port for two hosts")
            .string(format!("host=127.0.0.2,127.0.0.1 port={plain} {user}")),
        Case::new("hosts from PGHOST, ports from PGPORT")
            .var("PGHOST", "127.0.0.1,127.0.0.1")
            .var("PGPORT", format!("{closed},{plain}"))
            .var("PGUSER", "postgres")
            .var("PGPASSWORD", PLAIN_PASSWORD),
    ]
}

/// The inputs of issue 26, items 2 to 8, and the settings around them.
fn libpq_readings(servers: &Servers) -> Vec<Case> {
    let (tls, plain) = (servers.tls_port(), servers.plain_port());
    let socket = servers.tls.db.cluster.socket_dir().display().to_string();
    let on_plain = format!(
        "host=127.0.0.1 port={plain} user=postgres password={}",
        quoted(PLAIN_PASSWORD)
    );
    let on_tls = format!(
        "host=127.0.0.1 port={tls} user=postgres password={}",
        quoted(PASSWORD)
    );
    let plain_uri = format!(
        "postgresql://postgres:{}@127.0.0.1:{plain}",
        encoded(PLAIN_PASSWORD)
    );
    let tls_uri = format!(
        "postgresql://postgres:{}@localhost:{tls}",
        encoded(PASSWORD)
    );
    let kv = |name: &str, text: String| Case::new(name).string(text);
    vec![
        // Item 2: the old spelling of sslmode=require.
        kv("PGREQUIRESSL=1, plain", on_plain.clone()).var("PGREQUIRESSL", "1"),
        kv(
            "PGREQUIRESSL=1 under PGSSLMODE=disable, plain",
            on_plain.clone(),
        )
        .var("PGREQUIRESSL", "1")
        .var("PGSSLMODE", "disable"),
        kv("PGREQUIRESSL=0, plain", on_plain.clone()).var("PGREQUIRESSL", "0"),
        kv("requiressl=1, plain", format!("{on_plain} requiressl=1")),
        kv(
            "requiressl=0 after require, plain",
            format!("{on_plain} sslmode=require requiressl=0"),
        ),
        kv(
            "PGREQUIRESSL=1 over the socket",
            format!("host={socket} port={tls} user=postgres"),
        )
        .var("PGREQUIRESSL", "1"),
        // Item 3: an empty value is given.
        kv("dbname='' with PGDATABASE", format!("{on_plain} dbname=''")).var("PGDATABASE", "other"),
        kv(
            "host='' with PGHOST",
            format!(
                "host='' port={plain} user=postgres password={}",
                quoted(PLAIN_PASSWORD)
            ),
        )
        .var("PGHOST", "127.0.0.1"),
        kv(
            "port='' with PGPORT",
            format!(
                "host=127.0.0.1 port='' user=postgres password={}",
                quoted(PLAIN_PASSWORD)
            ),
        )
        .var("PGPORT", plain.to_string()),
        kv("sslmode=''", format!("{on_tls} sslmode=''")),
        kv("PGSSLMODE=''", on_tls.clone()).var("PGSSLMODE", ""),
        kv("PGDATABASE=''", on_plain.clone()).var("PGDATABASE", ""),
        kv("user=''", format!("{on_plain} user=''")),
        kv(
            "connect_timeout=''",
            format!("{on_plain} connect_timeout=''"),
        ),
        kv("sslsni=''", format!("{on_tls} sslsni=''")),
        kv(
            "password='' with ~/.pgpass",
            format!("host=127.0.0.1 port={plain} user=postgres password=''"),
        )
        .pgpass(format!("*:{plain}:*:postgres:{PLAIN_PASSWORD}"), 0o600),
        Case::new("uri ?dbname= with PGDATABASE")
            .string(format!("{plain_uri}?dbname="))
            .var("PGDATABASE", "other"),
        // Item 4: the environment's session settings.
        kv("PGTZ, PGDATESTYLE, PGGEQO, PGOPTIONS", on_plain.clone())
            .var("PGTZ", "Pacific/Auckland")
            .var("PGDATESTYLE", "SQL, DMY")
            .var("PGGEQO", "off")
            .var("PGOPTIONS", "-c search_path=other_path"),
        kv("PGTZ=default", on_plain.clone()).var("PGTZ", "default"),
        kv(
            "PGOPTIONS and PGTZ both set the time zone",
            on_plain.clone(),
        )
        .var("PGOPTIONS", "-c TimeZone=UTC")
        .var("PGTZ", "Asia/Tokyo"),
        // Item 5: values libpq accepts.
        kv(
            "target_session_attrs=primary",
            format!("{on_plain} target_session_attrs=primary"),
        ),
        kv(
            "target_session_attrs=standby",
            format!("{on_plain} target_session_attrs=standby"),
        ),
        kv(
            "target_session_attrs=prefer-standby",
            format!("{on_plain} target_session_attrs=prefer-standby"),
        ),
        kv(
            "target_session_attrs=read-write",
            format!("{on_plain} target_session_attrs=read-write"),
        ),
        kv(
            "target_session_attrs=read-only",
            format!("{on_plain} target_session_attrs=read-only"),
        ),
        kv(
            "PGSSLMODE=require over the socket",
            format!("host={socket} port={tls} user=postgres"),
        )
        .var("PGSSLMODE", "require"),
        kv(
            "port=' N'",
            format!(
                "host=127.0.0.1 port=' {plain}' user=postgres password={}",
                quoted(PLAIN_PASSWORD)
            ),
        ),
        Case::new("uri with a percent-encoded port").string(format!(
            "postgresql://postgres:{}@127.0.0.1:%3{}{}/other",
            encoded(PLAIN_PASSWORD),
            &plain.to_string()[..1],
            &plain.to_string()[1..]
        )),
        kv(
            "keepalives=2 sslsni=2",
            format!("{on_tls} keepalives=2 sslsni=2"),
        ),
        kv(
            "client_encoding=auto",
            format!("{on_plain} client_encoding=auto"),
        ),
        kv(
            "client_encoding=LATIN1",
            format!("{on_plain} client_encoding=LATIN1"),
        )
        .tag("client_encoding"),
        kv("port=0", format!("{on_plain} port=0")),
        kv("keepalives=x", format!("{on_plain} keepalives=x")),
        // Item 6: URIs libpq rejects.
        Case::new("uri [::1]x").string(format!("postgresql://postgres@[::1]x:{plain}/other")),
        Case::new("uri with an unencoded = in options")
            .string(format!("{plain_uri}/other?options=-c%20geqo=off")),
        Case::new("uri ?&").string(format!("{plain_uri}/other?&sslmode=disable")),
        Case::new("uri with a trailing &").string(format!("{plain_uri}/other?sslmode=disable&")),
        Case::new("uri with a password holding @").string(format!(
            "postgresql://postgres:pw@Secret@127.0.0.1:{plain}/other"
        )),
        Case::new("uri ssl=true").string(format!("{tls_uri}/other?ssl=true")),
        Case::new("uri with a socket host")
            .string(format!("postgresql://{}:{tls}/other", encoded(&socket))),
        // Item 7: the password file's host key for hostaddr alone.
        kv(
            "hostaddr alone, ~/.pgpass for localhost",
            format!("hostaddr=127.0.0.1 port={plain} user=postgres"),
        )
        .pgpass(
            format!("localhost:{plain}:*:postgres:{PLAIN_PASSWORD}"),
            0o600,
        ),
        kv(
            "hostaddr alone, ~/.pgpass for the address",
            format!("hostaddr=127.0.0.1 port={plain} user=postgres"),
        )
        .pgpass(
            format!("127.0.0.1:{plain}:*:postgres:{PLAIN_PASSWORD}"),
            0o600,
        ),
        // Item 8: a no-break space is no separator.
        kv(
            "a no-break space between settings",
            format!("{on_plain} dbname=other\u{a0}sslmode=disable"),
        ),
        kv(
            "a no-break space in a password",
            format!("host=127.0.0.1 port={plain} user=postgres password=plain\u{a0}s3cret"),
        ),
        // What planrun refuses on purpose.
        kv(
            "sslcrl naming no file",
            format!("{on_tls} sslcrl=/nonexistent/crl.pem"),
        )
        .tag("sslcrl"),
        kv(
            "sslpassword without an encrypted key",
            format!("{on_tls} sslpassword=x"),
        )
        .tag("sslpassword"),
    ]
}

/// Where a client landed (`port|user|database|ssl|TimeZone|DateStyle|geqo|search_path`),
/// or `refused`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Landed {
    At(String),
    Refused(String),
}

impl Landed {
    fn from(output: &Output) -> Landed {
        let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if output.status.success() && !stdout.is_empty() {
            Landed::At(stdout)
        } else {
            Landed::Refused(String::from_utf8_lossy(&output.stderr).trim().to_owned())
        }
    }

    fn place(&self) -> Option<Vec<&str>> {
        match self {
            Landed::At(place) => Some(place.split('|').collect()),
            Landed::Refused(_) => None,
        }
    }
}

/// Runs `program` with the case's string and variables, the caller's `PG*` variables
/// removed and `HOME` a fresh directory holding the case's password file; a client
/// still waiting after 20 s is stopped (and counts as refused).
fn run(case: &Case, program: &str, args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    if let Some((text, mode)) = &case.pgpass {
        let file = home.path().join(".pgpass");
        std::fs::write(&file, format!("{text}\n")).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    let mut command = Command::new("timeout");
    command.arg("20").arg(program).args(args);
    command.args(case.conninfo.iter());
    for (key, _) in std::env::vars() {
        if key.starts_with("PG") || key == "DATABASE_URL" {
            command.env_remove(key);
        }
    }
    command
        .env("HOME", home.path())
        .envs(case.env.iter().map(|(key, value)| (key, value)))
        .current_dir(home.path())
        .stdin(Stdio::null());
    command.output().expect("the client runs")
}

fn psql_bin() -> String {
    let bin_dir = planrun_tempdb::find_bin_dir().expect("PostgreSQL's binaries");
    bin_dir.join("psql").display().to_string()
}

/// Both clients on one case, side by side.
fn compare(case: &Case, psql: &str) -> (Landed, Landed) {
    std::thread::scope(|scope| {
        let by_psql = scope.spawn(|| run(case, psql, &["-X", "-w", "-q", "-At", "-c", WHERE_AM_I]));
        let by_planrun = run(case, PROBE, &[WHERE_AM_I]);
        (
            Landed::from(&by_psql.join().unwrap()),
            Landed::from(&by_planrun),
        )
    })
}

/// Whether planrun's landing is the stricter one: it refused, or it is encrypted
/// where psql is not and otherwise the same.
fn stricter(psql: &Landed, planrun: &Landed) -> bool {
    match (psql.place(), planrun.place()) {
        (_, None) => true,
        (Some(psql), Some(planrun)) => {
            psql.len() == planrun.len()
                && psql
                    .iter()
                    .zip(&planrun)
                    .enumerate()
                    .all(|(index, (a, b))| a == b || (index == 3 && *a == "f" && *b == "t"))
        }
        (None, Some(_)) => false,
    }
}

fn every_case(servers: &Servers) -> Vec<Case> {
    let mut cases = tls_modes(servers);
    cases.extend(password_sources(servers));
    cases.extend(host_lists(servers));
    cases.extend(libpq_readings(servers));
    cases
}

#[test]
fn planrun_lands_where_psql_lands() {
    let servers = Servers::start();
    let psql = psql_bin();
    let cases = every_case(&servers);
    let workers = 4;
    let results: Vec<(Case, Landed, Landed)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|worker| {
                let (cases, psql) = (&cases, &psql);
                scope.spawn(move || {
                    cases
                        .iter()
                        .skip(worker)
                        .step_by(workers)
                        .map(|case| {
                            let (by_psql, by_planrun) = compare(case, psql);
                            (case.clone(), by_psql, by_planrun)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().unwrap())
            .collect()
    });
    let mut failures = Vec::new();
    let mut deliberate = 0;
    for (case, by_psql, by_planrun) in &results {
        if by_psql.place() == by_planrun.place() {
            continue;
        }
        let listed = case
            .tag
            .filter(|tag| DELIBERATE.iter().any(|(listed, _)| listed == tag));
        if listed.is_some() && stricter(by_psql, by_planrun) {
            deliberate += 1;
            continue;
        }
        failures.push(format!(
            "{}\n    input: {:?} {:?} pgpass {:?}\n    psql:    {by_psql:?}\n    planrun: {by_planrun:?}",
            case.name, case.conninfo, case.env, case.pgpass
        ));
    }
    let connected = results
        .iter()
        .filter(|(_, by_psql, _)| by_psql.place().is_some())
        .count();
    eprintln!(
        "{} cases: psql connected in {connected}, {deliberate} deliberate differences",
        results.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from psql:\n{}",
        failures.len(),
        results.len(),
        failures.join("\n")
    );
    assert!(
        connected > results.len() / 3,
        "the matrix reaches its servers"
    );
}

/// Issue 26, item 9: psql echoes what is left of a password in a malformed string
/// (the host `Secret@127.0.0.1`, the word `horse`); planrun refuses as psql does but
/// shows none of it.
#[test]
fn malformed_strings_echo_no_password_fragment() {
    let psql = psql_bin();
    for (text, fragment) in [
        ("postgresql://app:pw@Secret@127.0.0.1:1/db", "Secret"),
        (
            "host=127.0.0.1 port=1 password=correct horse battery",
            "horse",
        ),
        (
            "postgresql://127.0.0.1:1/db?password=correct&horse=battery",
            "horse",
        ),
    ] {
        let case = Case::new(text).string(text);
        let (by_psql, by_planrun) = compare(&case, &psql);
        let (Landed::Refused(psql_says), Landed::Refused(planrun_says)) = (&by_psql, &by_planrun)
        else {
            panic!("{text}: both refuse: {by_psql:?} {by_planrun:?}");
        };
        assert!(psql_says.contains(fragment), "psql shows it: {psql_says}");
        assert!(!planrun_says.contains(fragment), "{planrun_says}");
    }
}
