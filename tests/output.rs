//! What a production engineer reads: the default text of `apply`, `apply --dry-run`,
//! `plan`, `verify` and `demo`, one line per stage with failures in full, `-v` for
//! every check, and the phases the progress display names once the rows are done.
//! Snapshots are taken with times, ports and temporary paths redacted.

use std::path::Path;
use std::process::Output;
use std::sync::Mutex;

use planrun_engine::{exit_codes, ApplyOptions, Observer, Runner, Source, StageReport, Target};
use planrun_plan::{Plan, Stage};
use planrun_tests::{
    describe, legacy_db, planrun, planrun_on, repo_root, scenario, stdout, TestDb, CUSTOMERS,
};
use planrun_transform::Progress;
use regex::{Captures, Regex};

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

/// The widest line of the stage table and what is shown below a stage (a long note
/// wraps below its stage, a long value is shortened). The title and the summary are
/// a sentence each, their commands whole to copy: they are not held to it.
const WIDEST: usize = 100;

/// A pattern and what replaces each of its matches.
type Redaction<'a> = (&'a str, &'a dyn Fn(&Captures) -> String);

/// `text` with what changes from run to run replaced: durations (keeping a table
/// column's width), timestamps, ports, temporary directories and backup stamps.
fn redact(text: &str) -> String {
    let mut text = text.replace(&std::env::temp_dir().display().to_string(), "[tmp]");
    text = text.replace(
        &std::env::temp_dir()
            .display()
            .to_string()
            .replace('/', "%2F"),
        "[tmp]",
    );
    let rules: [Redaction; 7] = [
        (
            r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}(:?\d{2})?)?",
            &|_| "[timestamp]".into(),
        ),
        (r"\d{8}_\d{6}(_\d+)?", &|_| "[stamp]".into()),
        (r"planrun-(pg|demo)-[A-Za-z0-9]+", &|c| {
            format!("planrun-{}-[random]", &c[1])
        }),
        (r":\d{2,5}(/|$)", &|c| format!(":[port]{}", &c[1])),
        (r"pid \d+", &|_| "pid [pid]".into()),
        (r"port \d{2,5}\b", &|_| "port [port]".into()),
        (r"( *)\d[\d,]*(\.\d+)? (ms|s)\b", &|c| {
            let width = c[0].chars().count();
            if c[1].len() >= 2 {
                format!("{:>width$}", "[time]")
            } else {
                format!("{}[time]", &c[1])
            }
        }),
    ];
    for (pattern, replace) in rules {
        let regex = Regex::new(pattern).expect("a valid pattern");
        text = regex
            .replace_all(&text, |captures: &Captures| replace(captures))
            .into_owned();
    }
    text
}

fn run(dir: &Path, db: &TestDb, args: &[&str]) -> Output {
    planrun_on(PLANRUN, dir, db, args)
}

/// The shop scenario on a database with its 25 customers.
fn shop() -> (TestDb, tempfile::TempDir) {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    (db, scenario("shop"))
}

fn assert_exit(output: &Output, code: i32) {
    assert_eq!(output.status.code(), Some(code), "{}", describe(output));
}

/// Every line of the table and below its stages at most [`WIDEST`] characters.
fn assert_narrow(text: &str) {
    for line in text.lines().filter(|line| line.starts_with(' ')) {
        assert!(
            line.chars().count() <= WIDEST,
            "a line of {} characters:\n{line}\n--- in\n{text}",
            line.chars().count()
        );
    }
}

/// The lines of the stage table: they start with the stage's position, right-aligned
/// in the table's first column (what is shown below a stage is indented further).
fn stage_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|line| {
            let indent = line.len() - line.trim_start().len();
            (2..=4).contains(&indent)
                && line
                    .split_whitespace()
                    .next()
                    .is_some_and(|first| first.parse::<u32>().is_ok())
        })
        .collect()
}

#[test]
fn apply_prints_one_line_per_stage_with_its_checks_counted() {
    let (db, dir) = shop();
    let output = run(dir.path(), &db, &["apply", "plan.toml", "--no-backup"]);
    assert_exit(&output, 0);
    let text = stdout(&output);
    assert_narrow(&text);
    assert!(
        !text.contains("ok   "),
        "no passing check is listed:\n{text}"
    );
    let stages = stage_lines(&text);
    assert_eq!(stages.len(), 3, "{text}");
    assert!(stages[0].contains("2/2 checks ok"), "{text}");
    assert!(stages[1].contains("1/1 checks ok"), "{text}");
    assert_eq!(
        text.lines().count(),
        8,
        "title, blank, header, 3 stages, blank, committed:\n{text}"
    );
    insta::assert_snapshot!(redact(&text));
}

/// The memoir plan: thousands of rows, booleans, long values; the default output
/// still fits a screen, and `-v` lists every check with values shortened in the
/// middle and booleans as `true`/`false`.
#[test]
fn apply_of_the_memoir_plan_fits_a_screen_and_verbose_lists_every_check() {
    let db = legacy_db(250);
    let quiet = run(
        &repo_root(),
        &db,
        &[
            "apply",
            "plans/memoir.toml",
            "--no-backup",
            "--until",
            "split_chapters",
        ],
    );
    assert_exit(&quiet, 0);
    let text = stdout(&quiet);
    assert_narrow(&text);
    assert!(
        text.lines().count() <= 12,
        "a few lines, not one per check:\n{text}"
    );
    assert!(text.contains("15/15 checks ok"), "{text}");
    insta::assert_snapshot!("memoir_apply_until_split", redact(&text));

    let verbose = run(
        &repo_root(),
        &db,
        &["apply", "plans/memoir.toml", "--no-backup", "-v"],
    );
    assert_exit(&verbose, 0);
    let text = stdout(&verbose);
    assert_narrow(&text);
    assert!(
        !text.contains(", got t\n") && !text.contains(", got f\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "verify every section image has its memoir_images row: expected = true, got true"
        ),
        "{text}"
    );
    let plan = std::fs::read_to_string(repo_root().join("plans/memoir.toml")).unwrap();
    let stage_starts: Vec<usize> = plan.match_indices("[[stage]]").map(|(at, _)| at).collect();
    let verifications_of_3_and_4 = plan[stage_starts[2]..stage_starts[4]]
        .matches("[[stage.verify]]")
        .count();
    assert_eq!(
        text.lines()
            .filter(|line| line.trim_start().starts_with("ok   verify"))
            .count(),
        verifications_of_3_and_4,
        "-v lists every verification of the stages that ran:\n{text}"
    );
    insta::assert_snapshot!("memoir_apply_verbose", redact(&text));
}

#[test]
fn a_failed_check_is_shown_in_full_under_its_stage() {
    let (db, dir) = shop();
    std::fs::write(
        dir.path().join("02_load.sql"),
        "INSERT INTO orders (customer_id) SELECT id FROM customers WHERE id > 1;\n",
    )
    .unwrap();
    let output = run(dir.path(), &db, &["apply", "plan.toml", "--no-backup"]);
    assert_exit(&output, exit_codes::VERIFICATION_FAILED);
    let text = stdout(&output);
    assert_narrow(&text);
    assert!(text.contains("1 of 1 checks FAILED"), "{text}");
    insta::assert_snapshot!(redact(&text));
}

#[test]
fn a_failed_step_shows_the_sql_error_with_its_position_and_hint() {
    let (db, dir) = shop();
    std::fs::write(
        dir.path().join("03_total.sql"),
        "ALTER TABLE orders ADD COLUMN total numeric;\n-- the next line is wrong\nUPDATE orders SET totl = customer_id * 10;\n",
    )
    .unwrap();
    let output = run(dir.path(), &db, &["apply", "plan.toml", "--no-backup"]);
    assert_exit(&output, exit_codes::STEP_FAILED);
    let text = stdout(&output);
    assert_narrow(&text);
    assert!(text.contains("at line 3, column 19"), "{text}");
    insta::assert_snapshot!(redact(&text));
}

/// A long value (a digest, a column list) that differs is shown around where it differs.
#[test]
fn long_values_are_shortened_in_the_middle() {
    let (db, dir) = shop();
    let plan = std::fs::read_to_string(dir.path().join("plan.toml")).unwrap();
    let long = "x".repeat(150);
    std::fs::write(
        dir.path().join("plan.toml"),
        plan.replace(
            "name = \"orders exists\"\nsql = \"SELECT to_regclass('public.orders') IS NOT NULL\"\nexpect = true",
            &format!(
                "name = \"a long value\"\nsql = \"SELECT repeat('x', 150) || 'tail'\"\nexpect = \"= '{long}'\""
            ),
        ),
    )
    .unwrap();
    let output = run(dir.path(), &db, &["apply", "plan.toml", "--no-backup"]);
    assert_exit(&output, exit_codes::VERIFICATION_FAILED);
    let text = stdout(&output);
    assert_narrow(&text);
    assert!(text.contains('…'), "{text}");
    assert!(text.contains("tail"), "where they differ is shown:\n{text}");
    insta::assert_snapshot!(redact(&text));
}

#[test]
fn a_dry_run_says_what_would_apply_and_shows_no_run_id() {
    let (db, dir) = shop();
    let output = run(dir.path(), &db, &["apply", "plan.toml", "--dry-run"]);
    assert_exit(&output, 0);
    let text = stdout(&output);
    assert!(text.contains("dry run, nothing recorded"), "{text}");
    assert!(!text.contains("[run"), "{text}");
    for line in stage_lines(&text) {
        assert!(line.contains("would apply"), "{text}");
        assert!(!line.contains(" applied "), "{text}");
    }
    insta::assert_snapshot!(redact(&text));
}

/// A refused run takes no run id: the next run that does something is run 2.
#[test]
fn a_run_refused_for_drift_takes_no_run_id() {
    let (db, dir) = shop();
    assert_exit(
        &run(dir.path(), &db, &["apply", "plan.toml", "--no-backup"]),
        0,
    );
    std::fs::write(
        dir.path().join("02_load.sql"),
        "INSERT INTO orders (customer_id) SELECT id FROM customers ORDER BY id;\n",
    )
    .unwrap();
    let refused = run(dir.path(), &db, &["apply", "plan.toml", "--no-backup"]);
    assert_exit(&refused, exit_codes::DRIFT);
    let text = stdout(&refused);
    assert!(!text.contains("[run"), "{text}");
    assert!(text.contains("nothing ran, nothing recorded"), "{text}");
    insta::assert_snapshot!(redact(&text));
    assert_eq!(db.scalar("SELECT count(*) FROM planrun.runs"), "1");
    let accepted = run(
        dir.path(),
        &db,
        &["apply", "plan.toml", "--no-backup", "--allow-drift"],
    );
    assert_exit(&accepted, 0);
    assert!(
        stdout(&accepted).contains("[run 2]"),
        "{}",
        describe(&accepted)
    );
}

#[test]
fn plan_prints_one_line_per_stage() {
    let db = legacy_db(20);
    let output = run(&repo_root(), &db, &["plan", "plans/memoir.toml"]);
    assert_exit(&output, 0);
    let text = stdout(&output);
    let table: String = text
        .split("\nlock impact")
        .next()
        .unwrap_or_default()
        .to_owned();
    assert_narrow(&table);
    assert!(!text.contains("ok   "), "{text}");
    assert_eq!(stage_lines(&table).len(), 5, "{text}");
    insta::assert_snapshot!(redact(&table));
}

#[test]
fn verify_prints_one_line_per_stage_and_verbose_names_superseded_checks() {
    let db = legacy_db(60);
    assert_exit(
        &run(
            &repo_root(),
            &db,
            &[
                "apply",
                "plans/memoir.toml",
                "--no-backup",
                "--include-optional",
            ],
        ),
        0,
    );
    let output = run(&repo_root(), &db, &["verify", "plans/memoir.toml"]);
    assert_exit(&output, 0);
    let text = stdout(&output);
    assert_narrow(&text);
    assert_eq!(stage_lines(&text).len(), 5, "{text}");
    insta::assert_snapshot!(redact(&text));

    let verbose = run(&repo_root(), &db, &["verify", "plans/memoir.toml", "-v"]);
    assert_exit(&verbose, 0);
    assert!(
        stdout(&verbose)
            .contains("section positions are dense from 0: superseded by section_image_fk"),
        "{}",
        describe(&verbose)
    );
}

/// `planrun --help` describes the tool and the way through it for a user, not a note
/// for planrun's developers; each main command's help says what it does in full.
#[test]
fn help_says_what_a_user_needs() {
    let output = planrun(PLANRUN, &repo_root(), &["--help"], &[]);
    assert_exit(&output, 0);
    let text = stdout(&output);
    assert!(
        !text.contains("clap"),
        "a developer's note in the help:\n{text}"
    );
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for command in ["init", "check", "plan", "rehearse", "apply", "status"] {
        assert!(
            words.contains(&format!("`planrun {command}`")),
            "{command}:\n{text}"
        );
    }
    insta::assert_snapshot!("help", text);
    for command in ["check", "plan", "apply"] {
        let output = planrun(PLANRUN, &repo_root(), &[command, "--help"], &[]);
        assert_exit(&output, 0);
        insta::assert_snapshot!(format!("help_{command}"), stdout(&output));
    }
}

/// `planrun demo`: chapter text as text, an honest word on the backup, and what to
/// do next.
#[test]
fn demo_output() {
    let output = planrun(
        PLANRUN,
        &repo_root(),
        &["demo", "--chapters", "60", "--seed", "3"],
        &[],
    );
    assert_exit(&output, 0);
    let text = stdout(&output);
    assert!(!text.contains("\\u{"), "no Rust escapes:\n{text}");
    assert!(
        !text.contains("backup: /"),
        "no path to a backup that is deleted:\n{text}"
    );
    for line in text.lines() {
        assert!(
            unicode_width::UnicodeWidthStr::width(line) <= 120,
            "a line wider than a 120-column terminal (CJK characters count two):\n{line}"
        );
    }
    assert!(
        text.contains("-> socket in "),
        "a socket target as psql shows it:\n{text}"
    );
    let last: Vec<&str> = text.lines().rev().take(3).collect();
    assert!(last.iter().all(|line| line.starts_with("next: ")), "{text}");
    insta::assert_snapshot!(redact(&text));
}

/// What the progress display hears: rows, then the phases after them.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
}

impl Recorder {
    fn push(&self, event: String) {
        self.events.lock().unwrap().push(event);
    }
}

impl Observer for Recorder {
    fn stage_started(&self, stage: &Stage) {
        self.push(format!("stage {}", stage.id));
    }
    fn stage_finished(&self, report: &StageReport) {
        self.push(format!("finished {}", report.id));
    }
    fn progress(&self) -> &dyn Progress {
        self
    }
}

impl Progress for Recorder {
    fn start(&self, total: Option<u64>) {
        self.push(format!("start {total:?}"));
    }
    fn advance(&self, _done: u64) {
        let mut events = self.events.lock().unwrap();
        if events.last().map(String::as_str) != Some("rows") {
            events.push("rows".into());
        }
    }
    fn phase(&self, what: &str) {
        self.push(format!("phase {what}"));
    }
    fn finish(&self) {
        self.push("finish".into());
    }
}

/// Once a transform's rows are done, the display hears what the stage does next:
/// rebuilding keys, running the checks, committing, validating a key after the commit.
#[test]
fn progress_names_the_phase_after_the_rows() {
    let db = legacy_db(40);
    let registry = planrun_cli::default_registry();
    let plan = Plan::load_checked(&repo_root().join("plans/memoir.toml"), &registry).unwrap();
    let runner = Runner::new(&plan, &registry).unwrap();
    let target = Target::parse(&db.url, Source::Flag).unwrap();
    let recorder = Recorder::default();
    let options = ApplyOptions {
        until: Some("split_chapters".into()),
        ..ApplyOptions::default()
    };
    let report = runner.apply(&target, &options, &recorder).unwrap();
    assert_eq!(report.exit_code, 0, "{:#?}", report.summary);
    let events = recorder.events.into_inner().unwrap();
    let split: Vec<&str> = events
        .iter()
        .map(String::as_str)
        .skip_while(|event| *event != "stage split_chapters")
        .take_while(|event| *event != "finished split_chapters")
        .collect();
    let expected = [
        "stage split_chapters",
        "start Some(40)",
        "rows",
        "phase writing covers",
        "phase rebuilding keys and indexes",
        "finish",
        "phase running 9 checks",
        "phase checking deferred constraints",
        "phase running 1 check",
        "phase committing",
        // The key's validation, after the commit, then the check that it is validated.
        "phase running memoir/02_validate_chapter_sections_fk.sql",
        "phase running 1 check",
        "phase committing",
    ];
    let mut at = 0;
    for event in &split {
        if at < expected.len() && *event == expected[at] {
            at += 1;
        }
    }
    assert_eq!(at, expected.len(), "{split:#?}");
}
