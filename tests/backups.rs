//! The backup before the first change: a name of its own (plan, database, microsecond
//! timestamp) created exclusively, readable by its owner alone in a directory only the
//! owner can enter, recorded by absolute path; and `pg_dump` bounded by the plan's lock
//! timeout, so a session holding a table cannot hang the apply before its first stage.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use planrun_engine::exit_codes;
use planrun_tests::{describe, planrun, scenario, TestDb, CUSTOMERS};

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

fn apply_with_backup(dir: &Path, url: &str) -> std::process::Output {
    planrun(
        PLANRUN,
        dir,
        &["apply", "plan.toml", "--database-url", url],
        &[],
    )
}

fn backups(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("backups"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn backups_are_private_unique_per_database_and_recorded_by_absolute_path() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let other_url = db.cluster.create_database("other_app").unwrap();
    let mut other = postgres::Client::connect(&other_url, postgres::NoTls).unwrap();
    other.batch_execute(CUSTOMERS).unwrap();
    let dir = scenario("shop");

    let first = apply_with_backup(dir.path(), &db.url);
    assert_eq!(first.status.code(), Some(0), "{}", describe(&first));
    let second = apply_with_backup(dir.path(), &other_url);
    assert_eq!(second.status.code(), Some(0), "{}", describe(&second));

    let files = backups(dir.path());
    assert_eq!(
        files.len(),
        2,
        "one backup per database, neither overwritten: {files:?}"
    );
    let names: Vec<String> = files
        .iter()
        .map(|file| file.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|name| name.starts_with("shop-other_app-")),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|name| name.starts_with("shop-planrun_test-")),
        "{names:?}"
    );
    for file in &files {
        let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
    let dir_mode = std::fs::metadata(dir.path().join("backups"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);
    let recorded = db.scalar("SELECT backup_file FROM planrun.runs ORDER BY id LIMIT 1");
    assert!(Path::new(&recorded).is_absolute(), "{recorded}");
    assert!(Path::new(&recorded).is_file(), "{recorded}");
}

/// A session holds ACCESS EXCLUSIVE on a table: the old planrun's pg_dump waited for
/// it for ever. Now it gives up after the plan's lock_timeout (2s in the shop plan),
/// the apply fails with the backup code, nothing runs and no file is left.
#[test]
fn a_table_locked_by_another_session_fails_the_backup_instead_of_hanging() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let holder_url = format!("{}?application_name=app-maintenance", db.url);
    let mut holder = postgres::Client::connect(&holder_url, postgres::NoTls).unwrap();
    holder
        .batch_execute("BEGIN; LOCK TABLE customers IN ACCESS EXCLUSIVE MODE;")
        .unwrap();
    let started = Instant::now();
    let output = apply_with_backup(dir.path(), &db.url);
    assert_eq!(
        output.status.code(),
        Some(exit_codes::BACKUP_FAILED),
        "{}",
        describe(&output)
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(
        describe(&output).contains("lock-wait-timeout"),
        "{}",
        describe(&output)
    );
    holder.batch_execute("ROLLBACK").unwrap();
    assert_eq!(
        db.scalar("SELECT to_regclass('orders') IS NULL"),
        "t",
        "nothing ran"
    );
    assert!(backups(dir.path()).is_empty(), "no partial backup is left");
}
