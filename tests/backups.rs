//! The backup before the first change: a name of its own (plan, database, microsecond
//! timestamp) created exclusively, readable by its owner alone in a directory only the
//! owner can enter, recorded by absolute path; and `pg_dump` bounded by the plan's lock
//! timeout, so a session holding a table cannot hang the apply before its first stage.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use planrun_engine::exit_codes;
use planrun_tests::accounts::Account;
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

/// Applies the shop plan with a backup into `dir/backups` that planrun must refuse:
/// the backup exit code, nothing in the database changed, no backup file anywhere.
fn assert_backup_directory_refused(dir: &Path, db: &TestDb, why: &str) {
    let output = apply_with_backup(dir, &db.url);
    assert_eq!(
        output.status.code(),
        Some(exit_codes::BACKUP_FAILED),
        "{why}: {}",
        describe(&output)
    );
    assert!(
        describe(&output).contains(why),
        "the error says why: {}",
        describe(&output)
    );
    assert_eq!(
        db.scalar("SELECT to_regclass('orders') IS NULL"),
        "t",
        "nothing ran"
    );
}

/// Another local account that created `./backups` beforehand could replace or read
/// what planrun writes there: planrun refuses it, even as root.
#[test]
fn a_backup_directory_another_account_owns_is_refused() {
    let Some(nobody) = Account::nobody() else {
        return;
    };
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    std::fs::create_dir(dir.path().join("backups")).unwrap();
    nobody.give(&dir.path().join("backups"));

    assert_backup_directory_refused(dir.path(), &db, "owned by uid");
    assert!(backups(dir.path()).is_empty(), "no backup was written");
}

/// A directory others can write (0777, or 1777 like /tmp: the sticky bit still lets
/// them plant names) is refused.
#[test]
fn a_backup_directory_others_can_write_is_refused() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let backups_dir = dir.path().join("backups");
    for mode in [0o777, 0o1777, 0o770] {
        std::fs::create_dir_all(&backups_dir).unwrap();
        std::fs::set_permissions(&backups_dir, std::fs::Permissions::from_mode(mode)).unwrap();

        assert_backup_directory_refused(dir.path(), &db, "writable by");
        assert!(
            backups(dir.path()).is_empty(),
            "no backup in a {mode:o} dir"
        );
    }
}

/// `./backups` a symbolic link planted by someone else: planrun writes nothing
/// through it.
#[test]
fn a_backup_directory_that_is_a_symbolic_link_is_refused() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let elsewhere = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("backups")).unwrap();

    assert_backup_directory_refused(dir.path(), &db, "symbolic link");
    let written: Vec<_> = std::fs::read_dir(elsewhere.path()).unwrap().collect();
    assert!(written.is_empty(), "written through the link: {written:?}");
}

/// The race of issue 20: between planrun creating its 0600 file and pg_dump opening
/// it by name, another account swapped the name for a symbolic link, and a root
/// planrun's pg_dump overwrote the link's target. A `pg_dump` stand-in (`PG_BIN`)
/// makes that swap for every file name it is given, then runs the real pg_dump;
/// planrun gives it none, so the target is untouched and the backup is whole.
#[test]
fn pg_dump_is_given_no_backup_file_name_to_race_for() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let victim = dir.path().join("victim.conf");
    std::fs::write(&victim, "untouched\n").unwrap();
    let bin = tempfile::tempdir().unwrap();
    let stand_in = bin.path().join("pg_dump");
    std::fs::write(
        &stand_in,
        format!(
            "#!/bin/sh\nprev=\nfor arg; do\n  case \"$prev\" in --file|-f) rm -f \"$arg\"; ln -s '{victim}' \"$arg\";; esac\n  case \"$arg\" in --file=*) rm -f \"${{arg#--file=}}\"; ln -s '{victim}' \"${{arg#--file=}}\";; esac\n  prev=$arg\ndone\nexec '{real}' \"$@\"\n",
            victim = victim.display(),
            real = db.cluster.bin_dir().join("pg_dump").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755)).unwrap();

    let output = planrun(
        PLANRUN,
        dir.path(),
        &["apply", "plan.toml", "--database-url", &db.url],
        &[("PG_BIN", bin.path().to_str().unwrap())],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        std::fs::read(&victim).unwrap() == b"untouched\n",
        "pg_dump wrote the backup through the swapped-in link into {}",
        victim.display()
    );
    let files = backups(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let meta = std::fs::symlink_metadata(&files[0]).unwrap();
    assert!(meta.is_file(), "a regular file, not a link");
    let listed = std::process::Command::new(db.cluster.bin_dir().join("pg_restore"))
        .arg("--list")
        .arg(&files[0])
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", describe(&listed));
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("TABLE DATA public customers"),
        "{}",
        describe(&listed)
    );
}
