//! `apply --fleet` and `status --fleet` against three real clusters holding 30 memoir
//! databases each test (made cheaply from a template database per cluster): waves and
//! their gate, resume by running again, a drifted target refused alone, two processes
//! sharing one fleet, and the per-server limit measured in `pg_stat_activity`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use planrun_memoir::legacy::{create_legacy_schema, load_legacy, ImagesType};
use planrun_tempdb::TempCluster;
use planrun_tests::{describe, memoir_plan_edited, planrun, planrun_command};

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");
const TEMPLATE: &str = "memoir_template";

/// The memoir plan with one more stage whose verification a test can make fail on
/// one tenant (a memoir titled BROKEN), and fix.
const MARKED_STAGE: &str = r#"
[[stage]]
id = "tenant_marked"
title = "Mark the tenant migrated"
depends_on = ["collect_images"]

[[stage.step]]
sql = "COMMENT ON TABLE chapters IS 'sections and images split by planrun'"

[[stage.verify]]
name = "no memoir is marked broken"
sql = "SELECT count(*) FROM memoirs WHERE title = 'BROKEN'"
expect = 0
"#;

/// The required stages of that plan.
const STAGES: i64 = 5;

/// Three clusters, each with a template database of legacy memoir data; shared by the
/// tests of this file, each of which makes databases of its own from the templates.
fn clusters() -> &'static [TempCluster] {
    static CLUSTERS: OnceLock<Vec<TempCluster>> = OnceLock::new();
    CLUSTERS.get_or_init(|| {
        (0..3)
            .map(|seed| {
                let cluster = TempCluster::start().expect("a throwaway PostgreSQL starts");
                let url = cluster.create_database(TEMPLATE).expect("the template");
                let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
                create_legacy_schema(&mut client, ImagesType::Jsonb).expect("legacy schema");
                load_legacy(&mut client, 11 + seed, 40, ImagesType::Jsonb).expect("legacy data");
                cluster
            })
            .collect()
    })
}

/// A tenant database: its name in the fleet, its cluster and database name.
#[derive(Clone)]
struct Tenant {
    name: String,
    cluster: usize,
    database: String,
}

impl Tenant {
    fn url(&self) -> String {
        clusters()[self.cluster].url(&self.database)
    }

    fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).expect("connect to a tenant")
    }

    fn scalar(&self, sql: &str) -> i64 {
        self.client()
            .query_one(sql, &[])
            .expect("tenant query")
            .get(0)
    }

    fn has_ledger(&self) -> bool {
        self.scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'planrun'") == 1
    }
}

/// `count` tenants named `<prefix>-NN`, spread over the three clusters in turn.
fn tenants(prefix: &str, count: usize) -> Vec<Tenant> {
    (1..=count)
        .map(|i| {
            let cluster = i % 3;
            let database = format!("{prefix}_{i:02}");
            clusters()[cluster]
                .psql(
                    "postgres",
                    &format!("CREATE DATABASE {database} TEMPLATE {TEMPLATE}"),
                )
                .expect("a tenant database from the template");
            Tenant {
                name: format!("{prefix}-{i:02}"),
                cluster,
                database,
            }
        })
        .collect()
}

/// A fleet file of `tenants`: `fleet` is its `[fleet]` table's body, `waves` its waves.
fn write_fleet(dir: &Path, tenants: &[Tenant], fleet: &str, waves: &str) -> String {
    let mut text = format!("[fleet]\n{fleet}\n");
    for tenant in tenants {
        text.push_str(&format!(
            "[[target]]\nname = \"{}\"\nurl = \"{}\"\n\n",
            tenant.name,
            tenant.url()
        ));
    }
    text.push_str(waves);
    let path = dir.join("fleet.toml");
    std::fs::write(&path, text).expect("write the fleet file");
    path.display().to_string()
}

fn plan_dir() -> tempfile::TempDir {
    memoir_plan_edited(|text| format!("{text}\n{MARKED_STAGE}"))
}

/// The document on stdout, valid against its checked-in schema (`docs/schemas/`).
fn json(output: &std::process::Output) -> serde_json::Value {
    let document: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("JSON on stdout: {}", describe(output)));
    let format = planrun_contract::format::ALL
        .into_iter()
        .find(|format| document["format"] == format.name)
        .unwrap_or_else(|| panic!("a known format: {document}"));
    let text =
        std::fs::read_to_string(planrun_tests::repo_path(&format.schema_path())).expect("schema");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("schema JSON");
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("a valid schema");
    let errors: Vec<String> = validator
        .iter_errors(&document)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "not a valid {} document: {errors:#?}\n{document:#}",
        format.name
    );
    assert_eq!(document["exit_code"], output.status.code().unwrap_or(-1));
    document
}

fn target_states(report: &serde_json::Value) -> Vec<(String, String, String)> {
    report["waves"]
        .as_array()
        .expect("waves")
        .iter()
        .flat_map(|wave| {
            let name = wave["name"].as_str().unwrap_or_default().to_owned();
            wave["targets"]
                .as_array()
                .expect("targets")
                .iter()
                .map(move |target| {
                    (
                        name.clone(),
                        target["name"].as_str().unwrap_or_default().to_owned(),
                        target["state"].as_str().unwrap_or_default().to_owned(),
                    )
                })
        })
        .collect()
}

/// Samples every cluster's `pg_stat_activity` while `work` runs: the most databases
/// named `<prefix>_*` (this test's: the clusters are shared) planrun's apply sessions
/// were in at once, per cluster.
fn peak_per_server(prefix: &str, work: impl FnOnce()) -> Vec<usize> {
    let stop = Arc::new(AtomicBool::new(false));
    let peaks: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let samplers: Vec<_> = (0..3)
        .map(|i| {
            let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peaks[i]));
            let url = clusters()[i].url("postgres");
            let pattern = format!("{prefix}\\_%");
            std::thread::spawn(move || {
                let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("sampler");
                while !stop.load(Ordering::SeqCst) {
                    let row = client
                        .query_one(
                            "SELECT count(DISTINCT datname) FROM pg_stat_activity \
                             WHERE application_name LIKE 'planrun apply%' AND datname LIKE $1",
                            &[&pattern],
                        )
                        .expect("sample pg_stat_activity");
                    let now = row.get::<_, i64>(0) as usize;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        })
        .collect();
    work();
    stop.store(true, Ordering::SeqCst);
    for sampler in samplers {
        sampler.join().expect("sampler");
    }
    peaks
        .iter()
        .map(|peak| peak.load(Ordering::SeqCst))
        .collect()
}

const THREE_WAVES: &str = r#"
[[wave]]
name = "canary"
targets = ["w-01"]

[[wave]]
name = "second"
targets = ["w-0*", "w-1*"]
[wave.gate]
max_lock_wait = "5s"

[[wave]]
name = "rest"
targets = ["*"]
"#;

#[test]
fn a_failed_verification_halts_the_rollout_and_running_again_completes_only_what_is_left() {
    let plan = plan_dir();
    let tenants = tenants("w", 30);
    let broken = &tenants[6];
    broken
        .client()
        .batch_execute("INSERT INTO memoirs (title) VALUES ('BROKEN')")
        .expect("break");
    let fleet = write_fleet(
        plan.path(),
        &tenants,
        "max_parallel = 5\nmax_parallel_per_host = 2",
        THREE_WAVES,
    );
    let args = [
        "apply",
        "memoir.toml",
        "--fleet",
        &fleet,
        "--no-backup",
        "--format",
        "json",
    ];

    let mut output = None;
    let peaks = peak_per_server("w", || {
        output = Some(planrun(PLANRUN, plan.path(), &args, &[]))
    });
    let output = output.expect("ran");
    assert_eq!(output.status.code(), Some(21), "{}", describe(&output));
    assert!(
        peaks.iter().all(|&peak| peak <= 2),
        "over max_parallel_per_host: {peaks:?}"
    );
    assert!(
        peaks.iter().any(|&peak| peak >= 1),
        "no apply was ever seen: {peaks:?}"
    );
    let report = json(&output);
    assert_eq!(report["outcome"], "fleet_halted");
    for (wave, name, state) in target_states(&report) {
        match wave.as_str() {
            "canary" => assert_eq!(state, "applied", "{name}"),
            "second" if name == broken.name => assert_eq!(state, "failed", "{name}"),
            "second" => assert!(
                matches!(state.as_str(), "applied" | "not_started"),
                "{name}: {state}"
            ),
            _ => assert_eq!(state, "not_started", "{name}"),
        }
    }
    let halted = report["halted"].as_str().expect("halted says why");
    assert!(
        halted.contains("second") && halted.contains(&broken.name),
        "{halted}"
    );
    for tenant in &tenants[10..] {
        if !tenant.name.starts_with("w-1") || tenant.name == "w-20" {
            assert!(
                !tenant.has_ledger(),
                "{} of a later wave was touched",
                tenant.name
            );
        }
    }

    broken
        .client()
        .batch_execute("DELETE FROM memoirs WHERE title = 'BROKEN'")
        .expect("fix");
    let again = planrun(PLANRUN, plan.path(), &args, &[]);
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    let progress = String::from_utf8_lossy(&again.stderr);
    let lines: Vec<&str> = progress.lines().collect();
    assert!(
        lines
            .iter()
            .find(|line| line.starts_with("wave "))
            .is_some_and(|line| line.ends_with("ETA unknown")),
        "no estimate before a target of this run finished: {progress}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line.contains(" done, ") && line.contains(" failed, ETA ")),
        "an estimate once one finished: {progress}"
    );
    assert!(
        lines
            .iter()
            .rev()
            .find(|line| line.contains(" done, "))
            .is_some_and(|line| line.contains(" failed, nothing left: ")),
        "nothing left after the last target: {progress}"
    );
    assert!(
        !String::from_utf8_lossy(&again.stdout).contains("ETA"),
        "the JSON report holds no estimate"
    );
    let report = json(&again);
    for (_, name, state) in target_states(&report) {
        assert!(
            matches!(state.as_str(), "applied" | "nothing_to_do"),
            "{name}: {state}"
        );
    }
    for tenant in &tenants {
        let applied =
            tenant.scalar("SELECT count(*) FROM planrun.stage_results WHERE status = 'applied'");
        assert_eq!(
            applied, STAGES,
            "{}: every stage applied exactly once",
            tenant.name
        );
    }
    assert_eq!(
        broken
            .scalar("SELECT count(*) FROM planrun.stage_results WHERE stage_id = 'split_chapters' AND status = 'applied'"),
        1,
        "the broken tenant's committed stages did not run again"
    );
}

#[test]
fn a_drifted_target_is_refused_alone_and_named() {
    let plan = plan_dir();
    let tenants = tenants("d", 30);
    let drifted = &tenants[4];
    let older = memoir_plan_edited(|text| {
        format!(
            "{text}\n{}",
            MARKED_STAGE.replace("split by planrun", "split by planrun 0.9")
        )
    });
    let first = planrun(
        PLANRUN,
        older.path(),
        &[
            "apply",
            "memoir.toml",
            "--no-backup",
            "--database-url",
            &drifted.url(),
        ],
        &[],
    );
    assert_eq!(first.status.code(), Some(0), "{}", describe(&first));
    let fleet = write_fleet(
        plan.path(),
        &tenants,
        "max_parallel = 6\non_drift = \"skip\"",
        "",
    );
    let output = planrun(
        PLANRUN,
        plan.path(),
        &[
            "apply",
            "memoir.toml",
            "--fleet",
            &fleet,
            "--no-backup",
            "--format",
            "json",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(14), "{}", describe(&output));
    for (_, name, state) in target_states(&json(&output)) {
        let expected = if name == drifted.name {
            "drifted"
        } else {
            "applied"
        };
        assert_eq!(state, expected, "{name}");
    }
    let text = planrun(
        PLANRUN,
        plan.path(),
        &["apply", "memoir.toml", "--fleet", &fleet, "--no-backup"],
        &[],
    );
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains(&drifted.name) && stdout.contains("tenant_marked"),
        "{}",
        describe(&text)
    );
}

#[test]
fn two_processes_on_one_fleet_apply_every_target_exactly_once() {
    let plan = plan_dir();
    let tenants = tenants("p", 30);
    let fleet = write_fleet(
        plan.path(),
        &tenants,
        "max_parallel = 3\nmax_parallel_per_host = 1",
        "",
    );
    let args = [
        "apply",
        "memoir.toml",
        "--fleet",
        &fleet,
        "--no-backup",
        "--format",
        "json",
    ];
    let spawn = || {
        planrun_command(PLANRUN, plan.path(), &args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("planrun starts")
    };
    let (one, two) = (spawn(), spawn());
    let one = one.wait_with_output().expect("first process");
    let two = two.wait_with_output().expect("second process");
    assert_eq!(one.status.code(), Some(0), "{}", describe(&one));
    assert_eq!(two.status.code(), Some(0), "{}", describe(&two));
    for tenant in &tenants {
        let runs = tenant.scalar("SELECT count(*) FROM planrun.runs WHERE outcome = 'success'");
        assert_eq!(runs, 1, "{}: applied by exactly one process", tenant.name);
        let applied =
            tenant.scalar("SELECT count(*) FROM planrun.stage_results WHERE status = 'applied'");
        assert_eq!(applied, STAGES, "{}", tenant.name);
    }

    let status = planrun(
        PLANRUN,
        plan.path(),
        &[
            "status",
            "memoir.toml",
            "--fleet",
            &fleet,
            "--format",
            "json",
        ],
        &[],
    );
    assert_eq!(status.status.code(), Some(0), "{}", describe(&status));
    let status = json(&status);
    assert_eq!(
        status["groups"].as_array().map(Vec::len),
        Some(1),
        "{status}"
    );
    assert_eq!(status["targets"][0]["stages"][0]["state"], "applied");
}

#[test]
fn status_names_the_tenant_whose_schema_differs() {
    let plan = plan_dir();
    let tenants = tenants("s", 6);
    tenants[2]
        .client()
        .batch_execute("ALTER TABLE chapters ADD COLUMN subtitle text")
        .expect("one tenant differs");
    let fleet = write_fleet(plan.path(), &tenants, "max_parallel = 3", "");
    let output = planrun(
        PLANRUN,
        plan.path(),
        &[
            "status",
            "memoir.toml",
            "--fleet",
            &fleet,
            "--format",
            "json",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let status = json(&output);
    assert_eq!(
        status["outliers"],
        serde_json::json!([tenants[2].name]),
        "{status}"
    );
    assert_eq!(status["targets"][0]["stages"][0]["state"], "pending");
}

#[test]
fn check_refuses_a_password_in_the_fleet_file_and_names_every_problem() {
    let dir = tempfile::tempdir().expect("a directory");
    let fleet = dir.path().join("fleet.toml");
    std::fs::write(
        &fleet,
        "[fleet]\nmax_parallel = 2\n\n[[target]]\nname = \"a\"\nurl = \"postgresql://app:hunter2@db1/a\"\n\n\
         [[target]]\nname = \"b\"\nurl_env = \"B_URL\"\n\n[[wave]]\nname = \"first\"\ntargets = [\"c*\"]\n",
    )
    .expect("write");
    let output = planrun(PLANRUN, dir.path(), &["check", "fleet.toml"], &[]);
    assert_eq!(output.status.code(), Some(10), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("holds a password"), "{stderr}");
    assert!(stderr.contains("`c*` matches no target"), "{stderr}");
    assert!(stderr.contains("target `b` is in no wave"), "{stderr}");
    assert!(
        !stderr.contains("hunter2"),
        "the password is never printed: {stderr}"
    );

    let example = planrun_tests::repo_path("plans/fleets/tenants.toml");
    let output = planrun(
        PLANRUN,
        dir.path(),
        &["check", &example.display().to_string()],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
}

#[test]
fn sigint_mid_wave_leaves_every_target_applied_or_untouched_at_a_stage_boundary() {
    let plan = plan_dir();
    let tenants = tenants("i", 30);
    let fleet = write_fleet(plan.path(), &tenants, "max_parallel = 3", "");
    let child = planrun_command(
        PLANRUN,
        plan.path(),
        &[
            "apply",
            "memoir.toml",
            "--fleet",
            &fleet,
            "--no-backup",
            "--format",
            "json",
        ],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("planrun starts");
    planrun_tests::wait_until(
        "a first tenant is applied",
        Duration::from_secs(120),
        || {
            tenants.iter().any(|tenant| {
                tenant.has_ledger()
                    && tenant.scalar("SELECT count(*) FROM planrun.runs WHERE outcome = 'success'")
                        > 0
            })
        },
    );
    // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let output = child.wait_with_output().expect("planrun ends");
    assert_eq!(output.status.code(), Some(130), "{}", describe(&output));
    let report = json(&output);
    assert_eq!(report["outcome"], "interrupted");
    let states = target_states(&report);
    assert!(
        states.iter().any(|(_, _, state)| state == "not_started"),
        "{states:?}"
    );
    for tenant in &tenants {
        let applied = |stage: &str| {
            tenant.has_ledger()
                && tenant.scalar(&format!(
                    "SELECT count(*) FROM planrun.stage_results WHERE stage_id = '{stage}' AND status = 'applied'"
                )) == 1
        };
        let sections =
            tenant.scalar("SELECT count(*) FROM pg_class WHERE relname = 'chapter_sections'") == 1;
        let legacy = tenant.scalar(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'chapters' AND column_name = 'images'",
        ) == 1;
        assert_eq!(
            sections,
            applied("sections_schema"),
            "{}: sections_schema whole or not at all",
            tenant.name
        );
        assert_eq!(
            !legacy,
            applied("split_chapters"),
            "{}: split_chapters whole or not at all",
            tenant.name
        );
    }
}

/// `apply` of `dir`'s plan to `tenant` alone.
fn apply_one(dir: &Path, tenant: &Tenant) {
    let output = planrun(
        PLANRUN,
        dir,
        &[
            "apply",
            "memoir.toml",
            "--no-backup",
            "--database-url",
            &tenant.url(),
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
}

#[test]
fn plan_says_per_target_by_wave_what_would_run_and_which_drifted_writing_nothing() {
    let plan = plan_dir();
    let tenants = tenants("v", 6);
    let older = memoir_plan_edited(|text| {
        format!(
            "{text}\n{}",
            MARKED_STAGE.replace("split by planrun", "split by planrun 0.9")
        )
    });
    apply_one(older.path(), &tenants[4]);
    apply_one(plan.path(), &tenants[1]);
    let fleet = write_fleet(
        plan.path(),
        &tenants,
        "max_parallel = 4\nmax_parallel_per_host = 1",
        "[[wave]]\nname = \"canary\"\ntargets = [\"v-01\"]\n\n[[wave]]\nname = \"rest\"\ntargets = [\"*\"]\n",
    );
    let output = planrun(
        PLANRUN,
        plan.path(),
        &["plan", "memoir.toml", "--fleet", &fleet, "--format", "json"],
        &[],
    );
    assert_eq!(output.status.code(), Some(14), "{}", describe(&output));
    let report = json(&output);
    assert_eq!(report["outcome"], "drift");
    let waves = report["waves"].as_array().expect("waves");
    assert_eq!(waves.len(), 2);
    assert_eq!(waves[0]["targets"][0]["name"], "v-01");
    assert_eq!(
        waves[0]["targets"][0]["would_run"]
            .as_array()
            .expect("would_run")
            .len(),
        STAGES as usize,
        "{report}"
    );
    let rest = waves[1]["targets"].as_array().expect("targets");
    let state = |name: &str| {
        rest.iter()
            .find(|target| target["name"] == name)
            .unwrap_or_else(|| panic!("{name} in the second wave: {report}"))
    };
    assert_eq!(state("v-02")["state"], "nothing_to_do");
    assert_eq!(state("v-05")["state"], "drifted");
    assert!(
        state("v-05")["drift"][0]
            .as_str()
            .is_some_and(|drift| drift.starts_with("tenant_marked")),
        "{report}"
    );
    assert_eq!(state("v-03")["state"], "would_apply");
    assert_eq!(report["counts"]["would_apply"], 4);
    for tenant in [&tenants[0], &tenants[2], &tenants[3], &tenants[5]] {
        assert!(!tenant.has_ledger(), "{}: plan wrote nothing", tenant.name);
    }

    let text = planrun(
        PLANRUN,
        plan.path(),
        &["plan", "memoir.toml", "--fleet", &fleet],
        &[],
    );
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains("wave canary: 1 targets") && stdout.contains("drifted: tenant_marked"),
        "{}",
        describe(&text)
    );
}

/// `rehearse --fleet` of `fleet` into `<plan dir>/reports`: its document.
fn rehearse_fleet(dir: &Path, fleet: &str) -> serde_json::Value {
    let output = planrun(
        PLANRUN,
        dir,
        &[
            "rehearse",
            "memoir.toml",
            "--fleet",
            fleet,
            "--report-dir",
            "reports",
            "--format",
            "json",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    json(&output)
}

#[test]
fn rehearse_rehearses_one_target_per_schema_group_and_records_each_report() {
    let plan = plan_dir();
    let tenants = tenants("r", 4);
    tenants[2]
        .client()
        .batch_execute("ALTER TABLE chapters ADD COLUMN subtitle text")
        .expect("one tenant differs");
    let fleet = write_fleet(plan.path(), &tenants, "max_parallel = 2", "");
    let record = rehearse_fleet(plan.path(), &fleet);
    let groups = record["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 2, "{record}");
    assert_eq!(groups[0]["representative"], "r-01");
    assert_eq!(
        groups[0]["targets"],
        serde_json::json!(["r-01", "r-02", "r-04"])
    );
    assert_eq!(groups[1]["representative"], "r-03");
    assert_eq!(groups[1]["targets"], serde_json::json!(["r-03"]));
    let mut spans = Vec::new();
    for group in groups {
        assert_eq!(group["passed"], true, "{group}");
        let file = plan
            .path()
            .join("reports")
            .join(group["report"].as_str().expect("a report file"));
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).expect("the report"))
                .expect("JSON");
        assert_eq!(report["format"], "planrun.rehearsal");
        let at = |key: &str| report[key].as_str().expect(key).to_owned();
        spans.push((at("started_at"), at("finished_at")));
    }
    // Same offset, millisecond timestamps: the text orders as the time does.
    assert!(
        spans[1].0 < spans[0].1 && spans[0].0 < spans[1].1,
        "with max_parallel = 2 the two groups are rehearsed at once: {spans:?}"
    );
    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(plan.path().join("reports/memoir-fleet.json"))
            .expect("the fleet's record"),
    )
    .expect("JSON");
    assert_eq!(saved["groups"], record["groups"]);
    for tenant in &tenants {
        assert!(
            !tenant.has_ledger(),
            "{}: rehearsed on a copy only",
            tenant.name
        );
    }
}

#[test]
fn apply_requiring_rehearsal_refuses_alone_the_target_whose_schema_was_not_rehearsed() {
    let plan = plan_dir();
    let tenants = tenants("q", 4);
    let rehearsed = write_fleet(plan.path(), &tenants[..3], "max_parallel = 2", "");
    rehearse_fleet(plan.path(), &rehearsed);
    tenants[3]
        .client()
        .batch_execute("ALTER TABLE chapters ADD COLUMN subtitle text")
        .expect("the tenant added since differs");
    let fleet = write_fleet(
        plan.path(),
        &tenants,
        "max_parallel = 2\non_drift = \"skip\"",
        "",
    );
    let output = planrun(
        PLANRUN,
        plan.path(),
        &[
            "apply",
            "memoir.toml",
            "--fleet",
            &fleet,
            "--no-backup",
            "--require-rehearsal",
            "reports",
            "--format",
            "json",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(18), "{}", describe(&output));
    let report = json(&output);
    assert_eq!(report["outcome"], "rehearsal_required");
    for (_, name, state) in target_states(&report) {
        let expected = if name == "q-04" { "refused" } else { "applied" };
        assert_eq!(state, expected, "{name}: {report}");
    }
    assert!(!tenants[3].has_ledger(), "the refused target is untouched");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("q-04: refused by --require-rehearsal: no rehearsal of its schema"),
        "{stderr}"
    );
}

#[test]
fn a_standby_replaying_behind_the_gate_s_max_replica_lag_halts_the_rollout() {
    // A cluster of its own: its standby's paused replay must not slow the other tests.
    let cluster = TempCluster::start().expect("a throwaway PostgreSQL starts");
    let lagging: Vec<String> = (1..=2)
        .map(|i| {
            let url = cluster
                .create_database(&format!("lag_{i}"))
                .expect("a tenant");
            let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
            create_legacy_schema(&mut client, ImagesType::Jsonb).expect("legacy schema");
            load_legacy(&mut client, 5, 20, ImagesType::Jsonb).expect("legacy data");
            url
        })
        .collect();
    let replica = cluster.start_replica().expect("a streaming replica starts");
    replica
        .wait_until_streaming(Duration::from_secs(60))
        .expect("the replica streams");
    replica.pause_replay().expect("replay paused");
    cluster
        .psql(
            "postgres",
            "CREATE TABLE wal_filler AS SELECT g FROM generate_series(1, 20000) g",
        )
        .expect("WAL the standby does not replay");
    planrun_tests::wait_until(
        "the standby replays over a second behind",
        Duration::from_secs(60),
        || {
            cluster
                .psql(
                    "postgres",
                    "SELECT coalesce(max(extract(epoch FROM replay_lag)), 0) > 1.5 FROM pg_stat_replication",
                )
                .expect("pg_stat_replication")
                .trim()
                == "t"
        },
    );
    let plan = plan_dir();
    let canary = &tenants("l", 1)[0];
    let mut text = format!(
        "[[target]]\nname = \"{}\"\nurl = \"{}\"\n\n",
        canary.name,
        canary.url()
    );
    for (i, url) in lagging.iter().enumerate() {
        text.push_str(&format!(
            "[[target]]\nname = \"lag-{}\"\nurl = \"{url}\"\n\n",
            i + 1
        ));
    }
    text.push_str(
        "[[wave]]\nname = \"canary\"\ntargets = [\"l-01\"]\n[wave.gate]\nmax_replica_lag = \"1s\"\n\n\
         [[wave]]\nname = \"second\"\ntargets = [\"lag-1\"]\n[wave.gate]\nmax_replica_lag = \"1s\"\n\n\
         [[wave]]\nname = \"rest\"\ntargets = [\"*\"]\n",
    );
    std::fs::write(plan.path().join("fleet.toml"), text).expect("write the fleet file");
    let output = planrun(
        PLANRUN,
        plan.path(),
        &[
            "apply",
            "memoir.toml",
            "--fleet",
            "fleet.toml",
            "--no-backup",
            "--format",
            "json",
        ],
        &[],
    );
    replica.resume_replay().expect("replay resumed");
    assert_eq!(output.status.code(), Some(21), "{}", describe(&output));
    let report = json(&output);
    let states: Vec<(String, String)> = target_states(&report)
        .into_iter()
        .map(|(_, name, state)| (name, state))
        .collect();
    assert_eq!(
        states,
        [
            ("l-01".to_owned(), "applied".to_owned()),
            ("lag-1".to_owned(), "applied".to_owned()),
            ("lag-2".to_owned(), "not_started".to_owned()),
        ]
    );
    assert!(report["waves"][0]["targets"][0]["replica_lag_ms"].is_null());
    assert!(
        report["waves"][1]["targets"][0]["replica_lag_ms"]
            .as_u64()
            .is_some_and(|lag| lag > 1000),
        "{report}"
    );
    assert!(
        report["halted"]
            .as_str()
            .is_some_and(|why| why.contains("lag-1") && why.contains("max_replica_lag")),
        "{report}"
    );
}

/// A stage whose key is added `NOT VALID` and validated after its commit
/// (`after_commit`, issue 23), on tables of its own beside the memoir data.
const KEY_PLAN: &str = r#"
[plan]
name = "keys"
lock_timeout = "2s"

[[stage]]
id = "parent_key"

[[stage.step]]
name = "add the key"
sql = """
ALTER TABLE children ADD CONSTRAINT children_parent_fkey
    FOREIGN KEY (parent_id) REFERENCES parents(id) NOT VALID;
"""

[[stage.step]]
name = "validate the key"
after_commit = true
sql = "ALTER TABLE children VALIDATE CONSTRAINT children_parent_fkey;"
"#;

const KEY_WAVES: &str = r#"
[[wave]]
name = "canary"
targets = ["k-01"]

[[wave]]
name = "rest"
targets = ["k-*"]
"#;

/// A target whose stage committed but whose validation after the commit failed
/// (single-database exit 23, `validation_pending`) fails its wave's gate: the rollout
/// halts there (exit 21), and once its row is fixed the same command validates it
/// alone, without running any target's stage again.
#[test]
fn a_target_left_validation_pending_halts_its_wave_and_a_rerun_validates_only_it() {
    let plan = tempfile::tempdir().unwrap();
    std::fs::write(plan.path().join("keys.toml"), KEY_PLAN).unwrap();
    let tenants = tenants("k", 4);
    for tenant in &tenants {
        tenant
            .client()
            .batch_execute(
                "CREATE TABLE parents (id bigint PRIMARY KEY);
                 CREATE TABLE children (id bigint PRIMARY KEY, parent_id bigint);
                 INSERT INTO parents VALUES (1), (2);
                 INSERT INTO children VALUES (1, 1), (2, 2);",
            )
            .expect("the tables of the key");
    }
    let broken = &tenants[2];
    broken
        .client()
        .batch_execute("INSERT INTO children VALUES (3, 99)")
        .expect("a child without its parent");
    let fleet = write_fleet(plan.path(), &tenants, "max_parallel = 1", KEY_WAVES);
    let args = [
        "apply",
        "keys.toml",
        "--fleet",
        &fleet,
        "--no-backup",
        "--format",
        "json",
    ];

    let output = planrun(PLANRUN, plan.path(), &args, &[]);
    assert_eq!(output.status.code(), Some(21), "{}", describe(&output));
    let report = json(&output);
    let states = target_states(&report);
    let broken_state = states
        .iter()
        .find(|(_, name, _)| *name == broken.name)
        .expect("the broken target is reported");
    assert_eq!(broken_state.2, "failed", "{report:#}");
    assert_eq!(states[0].2, "applied", "the canary: {report:#}");
    let pending = broken
        .scalar("SELECT count(*) FROM pg_constraint WHERE conname = 'children_parent_fkey' AND NOT convalidated");
    assert_eq!(
        pending, 1,
        "the key stays NOT VALID where a row violates it"
    );

    broken
        .client()
        .batch_execute("INSERT INTO parents VALUES (99)")
        .expect("fix the row");
    // The stage's step would fail if it ran again (the key exists): exit 0 says that
    // only the validation was retried.
    let output = planrun(PLANRUN, plan.path(), &args, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    for tenant in &tenants {
        assert_eq!(
            tenant.scalar(
                "SELECT count(*) FROM pg_constraint WHERE conname = 'children_parent_fkey' AND convalidated"
            ),
            1,
            "{} validated",
            tenant.name
        );
    }
}
