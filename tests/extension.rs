//! What lets a user start and extend planrun without reading its source: `planrun init`
//! (a starter plan that passes `check` and applies), shell completions and man pages
//! generated from the command line's own definitions. The library API that builds a
//! binary with one's own transforms is tested by `examples/custom-transform`.

use std::path::Path;

use planrun_engine::exit_codes;
use planrun_tests::{describe, planrun, planrun_on, stdout, TestDb};

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

/// The commands a user can complete and look up, as `planrun --help` lists them.
const COMMANDS: [&str; 13] = [
    "check",
    "graph",
    "transforms",
    "apply",
    "plan",
    "rehearse",
    "status",
    "verify",
    "reset",
    "demo",
    "init",
    "completions",
    "man",
];

fn run(dir: &Path, args: &[&str]) -> std::process::Output {
    planrun(PLANRUN, dir, args, &[])
}

#[test]
fn init_writes_a_starter_plan_that_passes_check_and_applies() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(dir.path(), &["init", "shop"]);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(
        stdout(&output),
        "wrote plans/shop.toml: one stage with a precondition, a SQL step and a verification\n\
         wrote plans/shop/01_create_feature_flags.sql: the stage's SQL\n\
         next: planrun check plans/shop.toml\n"
    );
    let plan = std::fs::read_to_string(dir.path().join("plans/shop.toml")).unwrap();
    for part in [
        "name = \"shop\"",
        "[[stage.precondition]]",
        "sql_file = \"shop/01_create_feature_flags.sql\"",
        "[[stage.verify]]",
    ] {
        assert!(plan.contains(part), "{part} is missing from\n{plan}");
    }

    let check = run(dir.path(), &["check", "plans/shop.toml"]);
    assert!(check.status.success(), "{}", describe(&check));
    assert!(
        stdout(&check).contains("plan shop (plans/shop.toml): valid"),
        "{}",
        describe(&check)
    );

    let db = TestDb::new();
    let apply = planrun_on(
        PLANRUN,
        dir.path(),
        &db,
        &["apply", "plans/shop.toml", "--no-backup"],
    );
    assert!(apply.status.success(), "{}", describe(&apply));
    assert_eq!(
        db.scalar("SELECT name || ':' || enabled FROM public.feature_flags"),
        "new_checkout:false"
    );
    assert_eq!(
        db.scalar("SELECT stage_id || ':' || status FROM planrun.stage_results"),
        "create_feature_flags:applied"
    );
}

#[test]
fn init_never_overwrites_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let sql = dir.path().join("plans/shop/01_create_feature_flags.sql");
    std::fs::create_dir_all(sql.parent().unwrap()).unwrap();
    std::fs::write(&sql, "-- mine\n").unwrap();

    let output = run(dir.path(), &["init", "shop"]);
    assert_eq!(
        output.status.code(),
        Some(exit_codes::ERROR),
        "{}",
        describe(&output)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "error: plans/shop/01_create_feature_flags.sql already exists, and planrun init never overwrites a file"
        ),
        "{}",
        describe(&output)
    );
    assert_eq!(std::fs::read_to_string(&sql).unwrap(), "-- mine\n");
    assert!(
        !dir.path().join("plans/shop.toml").exists(),
        "nothing is written when one file exists"
    );

    let again = run(dir.path(), &["init", "orders"]);
    assert!(again.status.success(), "{}", describe(&again));
    let twice = run(dir.path(), &["init", "orders"]);
    assert_eq!(twice.status.code(), Some(exit_codes::ERROR));
    assert!(String::from_utf8_lossy(&twice.stderr).contains("plans/orders.toml already exists"));
}

#[test]
fn init_names_the_plan_after_the_directory_and_refuses_a_path() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("billing");
    std::fs::create_dir(&project).unwrap();
    let output = run(&project, &["init"]);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(project.join("plans/billing.toml").is_file());

    let bad = run(&project, &["init", "../elsewhere"]);
    assert_eq!(
        bad.status.code(),
        Some(exit_codes::USAGE),
        "{}",
        describe(&bad)
    );
    assert!(!dir.path().join("elsewhere.toml").exists());
}

#[test]
fn bash_completion_offers_every_command() {
    let output = run(Path::new("."), &["completions", "bash"]);
    assert!(output.status.success(), "{}", describe(&output));
    let script = stdout(&output);
    assert!(script.contains("complete -F _planrun"), "{script}");
    let top_level: Vec<&str> = script
        .lines()
        .find(|line| line.trim_start().starts_with("opts=\"-v -h -V --color"))
        .unwrap_or_else(|| panic!("no completion of `planrun <TAB>` in\n{script}"))
        .trim()
        .trim_start_matches("opts=\"")
        .trim_end_matches('"')
        .split_whitespace()
        .collect();
    for command in COMMANDS {
        assert!(
            top_level.contains(&command),
            "`planrun <TAB>` does not offer `{command}`: {top_level:?}"
        );
    }
    for shell in ["zsh", "fish", "powershell", "elvish"] {
        let output = run(Path::new("."), &["completions", shell]);
        assert!(output.status.success(), "{shell}: {}", describe(&output));
        assert!(stdout(&output).contains("rehearse"), "{shell}");
    }
}

#[test]
fn the_man_page_documents_every_command() {
    let output = run(Path::new("."), &["man"]);
    assert!(output.status.success(), "{}", describe(&output));
    let page = stdout(&output);
    assert!(page.contains(".TH planrun 1"), "{page}");
    for command in COMMANDS {
        assert!(
            page.contains(&format!("planrun\\-{command}(1)")),
            "`{command}` is not in the man page:\n{page}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    let written = run(dir.path(), &["man", "--out-dir", "man1"]);
    assert!(written.status.success(), "{}", describe(&written));
    for command in COMMANDS {
        let page = std::fs::read_to_string(out.join(format!("planrun-{command}.1")))
            .unwrap_or_else(|error| panic!("planrun-{command}.1: {error}"));
        assert!(page.contains(&format!(".TH planrun-{command} 1")), "{page}");
    }
    assert!(out.join("planrun.1").is_file());
}

/// `man --out-dir` into a directory where someone planted a symlink named like a page
/// (issue 26, item 13): the page replaces the link, and the file it pointed to, outside
/// the directory, stays as it was.
#[test]
fn man_out_dir_does_not_write_through_a_planted_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    std::fs::create_dir(&out).unwrap();
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "not a man page\n").unwrap();
    std::os::unix::fs::symlink(&victim, out.join("planrun-apply.1")).unwrap();

    let written = run(dir.path(), &["man", "--out-dir", "man1"]);
    assert!(written.status.success(), "{}", describe(&written));
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "not a man page\n",
        "the symlink's target was overwritten"
    );
    let page = out.join("planrun-apply.1");
    assert!(
        !std::fs::symlink_metadata(&page).unwrap().is_symlink(),
        "the page is a file of its own"
    );
    assert!(std::fs::read_to_string(&page)
        .unwrap()
        .contains(".TH planrun-apply 1"));
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.ends_with(".1"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}
