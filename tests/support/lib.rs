//! Shared support for planrun's end-to-end tests: paths into the repository, running
//! the `planrun` binary, rendering diagnostics.

pub use planrun_appsim as app;

pub mod accounts;
pub mod online_split;
pub mod tls;

pub use app::{AppConfig, AppLog, AppSimulator, LegacyState, Progress, WriteKind};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits inside the repository")
        .to_path_buf()
}

/// A path relative to the repository root.
pub fn repo_path(relative: &str) -> PathBuf {
    repo_root().join(relative)
}

/// Renders a diagnostic as a user sees it on a terminal without colour.
pub fn render_diagnostic(diagnostic: &dyn miette::Diagnostic) -> String {
    let mut out = String::new();
    miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        .with_width(100)
        // Unwrapped: a message holding the plan's absolute path would wrap at a place
        // that depends on where the repository is checked out.
        .with_wrap_lines(false)
        .with_links(false)
        .render_report(&mut out, diagnostic)
        .expect("rendering into a String cannot fail");
    out
}

/// The `planrun` binary with `args` in `cwd`, its environment free of the caller's plan
/// and database settings; not started yet.
pub fn planrun_command(binary: &str, cwd: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(binary);
    command
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .env_remove("PLANRUN_PLAN")
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null());
    command
}

/// Runs the `planrun` binary with `args` in `cwd` and the given extra environment.
pub fn planrun(binary: &str, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = planrun_command(binary, cwd, args);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("the planrun binary runs")
}

/// Starts `planrun apply <plan> --no-backup <extra>` against `db` in the background,
/// its output piped.
pub fn spawn_apply(binary: &str, cwd: &Path, plan: &str, db: &TestDb, extra: &[&str]) -> Child {
    let mut args = vec!["apply", plan, "--no-backup", "--database-url", &db.url];
    args.extend(extra);
    planrun_command(binary, cwd, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the planrun binary starts")
}

/// Stdout and stderr of a finished command, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A throwaway cluster with one database for one test.
pub struct TestDb {
    pub cluster: planrun_tempdb::TempCluster,
    pub url: String,
}

impl TestDb {
    pub fn new() -> TestDb {
        let cluster = planrun_tempdb::TempCluster::start().expect("a throwaway PostgreSQL starts");
        let url = cluster
            .create_database("planrun_test")
            .expect("the test database is created");
        TestDb { cluster, url }
    }

    pub fn with_password(password: &str) -> TestDb {
        let cluster = planrun_tempdb::TempCluster::builder()
            .password(password)
            .start()
            .expect("a throwaway PostgreSQL starts");
        let url = cluster
            .create_database("planrun_test")
            .expect("the test database is created");
        TestDb { cluster, url }
    }

    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("connect to the test database")
    }

    pub fn execute(&self, sql: &str) {
        self.client().batch_execute(sql).expect("test SQL runs");
    }

    /// The first column of every row, as text.
    pub fn column(&self, sql: &str) -> Vec<Option<String>> {
        self.client()
            .simple_query(sql)
            .expect("test query runs")
            .into_iter()
            .filter_map(|message| match message {
                postgres::SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_owned)),
                _ => None,
            })
            .collect()
    }

    pub fn scalar(&self, sql: &str) -> String {
        self.column(sql)
            .into_iter()
            .next()
            .flatten()
            .unwrap_or_else(|| "NULL".into())
    }

    /// Schema and data as `pg_dump` prints them, for before/after comparisons.
    pub fn dump(&self) -> String {
        self.pg_dump(&[], |_| true)
    }

    /// The dump without planrun's own schema and without sequence positions (a
    /// rolled-back transaction still moves a sequence, as PostgreSQL documents): what
    /// the application sees.
    pub fn dump_application(&self) -> String {
        self.pg_dump(&["--exclude-schema=planrun"], |line| {
            !line.starts_with("SELECT pg_catalog.setval(")
        })
    }

    /// `pg_dump --inserts` of the database with `extra` options, the lines `keep`
    /// accepts.
    fn pg_dump(&self, extra: &[&str], keep: impl Fn(&str) -> bool) -> String {
        let output = std::process::Command::new(self.cluster.bin_dir().join("pg_dump"))
            .args(["--no-owner", "--no-privileges", "--inserts"])
            .args(extra)
            .args(["-d", &self.url])
            .output()
            .expect("pg_dump runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        // pg_dump 15.14+ brackets the dump with a random \restrict key.
        String::from_utf8(output.stdout)
            .expect("the dump is UTF-8")
            .lines()
            .filter(|line| !line.starts_with("\\restrict") && !line.starts_with("\\unrestrict"))
            .filter(|line| keep(line))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Default for TestDb {
    fn default() -> Self {
        TestDb::new()
    }
}

/// A copy of a scenario plan directory in a temporary directory, so a test may edit
/// its files.
pub fn scenario(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    copy_dir(
        &repo_path(&format!("tests/plans/scenarios/{name}")),
        dir.path(),
    );
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create directory");
    for entry in std::fs::read_dir(from).expect("read scenario directory") {
        let entry = entry.expect("directory entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy scenario file");
        }
    }
}

/// The customers table the `shop` scenario plan starts from: 25 rows.
pub const CUSTOMERS: &str = "CREATE TABLE customers (id bigserial PRIMARY KEY, name text NOT NULL);
                             INSERT INTO customers (name) SELECT 'c' || g FROM generate_series(1, 25) g;";

/// Runs the `planrun` binary in `cwd` against `db` (`--database-url` appended).
pub fn planrun_on(binary: &str, cwd: &Path, db: &TestDb, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.extend(["--database-url", &db.url]);
    planrun(binary, cwd, &all, &[])
}

/// A command's stdout as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A copy of the memoir plan in a temporary directory, with the split step's params
/// replaced by `split_params` (e.g. `on_invalid = "quarantine"`).
pub fn memoir_plan_with(split_params: &str) -> tempfile::TempDir {
    let original = r#"params = { on_invalid = "fail" }"#;
    memoir_plan_edited(|text| {
        assert!(
            text.contains(original),
            "the memoir plan's split params changed"
        );
        text.replace(original, &format!("params = {{ {split_params} }}"))
    })
}

/// A copy of the memoir plan (and its SQL files) in a temporary directory, with `edit`
/// applied to the plan's text.
pub fn memoir_plan_edited(edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let text = std::fs::read_to_string(repo_path("plans/memoir.toml")).expect("the memoir plan");
    std::fs::write(dir.path().join("memoir.toml"), edit(text)).expect("write the plan copy");
    copy_dir(&repo_path("plans/memoir"), &dir.path().join("memoir"));
    dir
}

/// A throwaway database with the memoir's legacy schema and `chapters` generated
/// chapters (seed 11, `images` as jsonb).
pub fn legacy_db(chapters: usize) -> TestDb {
    use planrun_memoir::legacy::{create_legacy_schema, load_legacy, ImagesType};
    let db = TestDb::new();
    let mut client = db.client();
    create_legacy_schema(&mut client, ImagesType::Jsonb).expect("the legacy schema");
    load_legacy(&mut client, 11, chapters, ImagesType::Jsonb).expect("the legacy chapters");
    db
}

/// Polls `condition` every 10 ms for up to `limit`; fails the test, naming `what`,
/// when it never holds.
pub fn wait_until(what: &str, limit: std::time::Duration, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
