//! `planrun verify` after the application has written the migrated tables (issue 21,
//! item 13): a check comparing a table the application wrote since with a value
//! captured when its stage committed is reported not re-checkable, with why, and is
//! no failure; a corruption that a check can still judge fails as before.

use std::path::Path;

use planrun_engine::exit_codes;
use planrun_tests::{describe, legacy_db, planrun, planrun_on, repo_root, stdout, TestDb};

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

fn verify(db: &TestDb, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["verify", "plans/memoir.toml"];
    args.extend(extra);
    planrun_on(PLANRUN, &repo_root(), db, &args)
}

fn verify_json(db: &TestDb) -> (Option<i32>, serde_json::Value, std::process::Output) {
    let output = verify(db, &["--format", "json"]);
    let report =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("{}", describe(&output)));
    (output.status.code(), report, output)
}

fn check<'r>(report: &'r serde_json::Value, name: &str) -> &'r serde_json::Value {
    report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|stage| stage["verifications"].as_array().unwrap())
        .find(|check| check["name"] == name)
        .unwrap_or_else(|| panic!("check `{name}` in {report:#}"))
}

fn apply_memoir(cwd: &Path, db: &TestDb) {
    let output = planrun(
        PLANRUN,
        cwd,
        &[
            "apply",
            "plans/memoir.toml",
            "--no-backup",
            "--database-url",
            &db.url,
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
}

#[test]
fn a_capture_check_over_a_table_the_application_wrote_is_not_recheckable_and_a_corruption_still_fails(
) {
    let db = legacy_db(60);
    apply_memoir(&repo_root(), &db);
    assert_eq!(verify_json(&db).0, Some(0));

    // The application adds a chapter, as it may once the plan is applied.
    db.execute(
        "INSERT INTO chapters (memoir_id, position, title) \
         SELECT memoir_id, max(position) + 1, 'written by the application' \
         FROM chapters GROUP BY memoir_id ORDER BY memoir_id LIMIT 1",
    );
    let (code, report, output) = verify_json(&db);
    assert_eq!(code, Some(0), "{}", describe(&output));
    let lost = check(&report, "no chapter lost");
    assert_eq!(lost["status"], "not_recheckable", "{lost:#}");
    let why = &lost["not_recheckable"];
    assert_eq!(
        why["captures"],
        serde_json::json!(["legacy_chapters"]),
        "{lost:#}"
    );
    // Since stage 2: the application's chapter, and the covers stage 4 moved.
    assert_eq!(why["changed"][0]["table"], "chapters", "{lost:#}");
    assert!(
        why["changed"][0]["rows_written_since"].as_i64() >= Some(1),
        "{lost:#}"
    );
    assert!(why["captured_at"].as_str().is_some_and(|at| !at.is_empty()));
    assert_eq!(lost["actual"], "61", "{lost:#}");
    let text = verify(&db, &["-v"]);
    assert_eq!(text.status.code(), Some(0), "{}", describe(&text));
    let words = stdout(&text)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for expected in [
        "no chapter lost: not re-checkable: compares with {legacy_chapters} captured when its stage committed at",
        "1 rows of chapters written since",
        "checks not re-checkable now",
    ] {
        assert!(words.contains(expected), "`{expected}` missing:\n{}", describe(&text));
    }

    // A chapter's sections no longer numbered from 0: a check with no capture
    // still judges it, and fails.
    db.execute(
        "UPDATE chapter_sections SET position = position + 1000 \
         WHERE chapter_id = (SELECT min(chapter_id) FROM chapter_sections)",
    );
    let (code, report, output) = verify_json(&db);
    assert_eq!(
        code,
        Some(exit_codes::VERIFICATION_FAILED),
        "{}",
        describe(&output)
    );
    assert_eq!(
        check(&report, "section positions are dense from 0")["status"],
        "failed",
        "{report:#}"
    );
}
