//! The rehearsal report holds values captured from production and error messages that
//! quote rows: planrun writes it readable by its owner alone (0600, in a 0700
//! directory it creates), and refuses a report directory another account owns or can
//! write, as it does for backups.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use planrun_tests::accounts::Account;
use planrun_tests::{describe, planrun_on, scenario, TestDb, CUSTOMERS};

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

fn reports(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[test]
fn a_rehearsal_report_is_readable_by_its_owner_alone() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    // The plan's directory open to all, so that only the report's own modes keep
    // another account out.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    let output = planrun_on(PLANRUN, dir.path(), &db, &["rehearse", "plan.toml"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report_dir = dir.path().join("rehearsals");
    let files = reports(&report_dir);
    assert_eq!(files.len(), 1, "{files:?}");

    assert_eq!(
        format!("{:o}", mode(&report_dir)),
        "700",
        "the report directory"
    );
    assert_eq!(format!("{:o}", mode(&files[0])), "600", "the report");
    if let Some(nobody) = Account::nobody() {
        assert_eq!(nobody.read(&files[0]), None, "`nobody` read the report");
    }
}

#[test]
fn a_report_directory_another_account_owns_or_can_write_is_refused() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let report_dir = dir.path().join("rehearsals");
    std::fs::create_dir(&report_dir).unwrap();
    std::fs::set_permissions(&report_dir, std::fs::Permissions::from_mode(0o777)).unwrap();

    let output = planrun_on(PLANRUN, dir.path(), &db, &["rehearse", "plan.toml"]);
    assert_ne!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        describe(&output).contains("writable by"),
        "{}",
        describe(&output)
    );
    assert!(reports(&report_dir).is_empty(), "no report written");

    if let Some(nobody) = Account::nobody() {
        std::fs::set_permissions(&report_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        nobody.give(&report_dir);
        let output = planrun_on(PLANRUN, dir.path(), &db, &["rehearse", "plan.toml"]);
        assert_ne!(output.status.code(), Some(0), "{}", describe(&output));
        assert!(
            describe(&output).contains("owned by uid"),
            "{}",
            describe(&output)
        );
        assert!(reports(&report_dir).is_empty(), "no report written");
    }
}
