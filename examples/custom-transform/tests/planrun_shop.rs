//! The example binary, `planrun-shop`, run as a user runs it: it lists its own
//! transform and not the memoir ones, checks the shop plan, and applies it to a real,
//! throwaway PostgreSQL, where the transform's rows are then read back.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use planrun_tempdb::TempCluster;

/// `planrun-shop ARGS` in this crate's directory, so `plans/shop.toml` resolves.
fn planrun_shop(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_planrun-shop"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .env("NO_COLOR", "1")
        .env_remove("PLANRUN_PLAN")
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .output()
        .expect("planrun-shop runs")
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A database of `cluster` holding `customers`, one row per email.
fn customers_db(cluster: &TempCluster, name: &str, emails: &str) -> (String, postgres::Client) {
    let url = cluster.create_database(name).expect("a database");
    let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    client
        .batch_execute(&format!(
            "CREATE TABLE public.customers (id bigserial PRIMARY KEY, email text);
             INSERT INTO public.customers (email) {emails};"
        ))
        .expect("the customers");
    (url, client)
}

#[test]
fn transforms_lists_the_shop_transform_and_no_memoir_one() {
    let output = planrun_shop(&["transforms"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        stdout.contains("shop.normalize_emails  v1  customers.email"),
        "{}",
        describe(&output)
    );
    assert!(!stdout.contains("memoir."), "{}", describe(&output));
}

#[test]
fn the_shop_plan_passes_check_with_the_transform_lock_listed() {
    let output = planrun_shop(&["check", "plans/shop.toml"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        stdout.contains("plan shop (plans/shop.toml): valid"),
        "{stdout}"
    );
    assert!(
        stdout.contains("normalize_emails: EXCLUSIVE public.customers (shop.normalize_emails)"),
        "{stdout}"
    );
}

#[test]
fn the_demo_says_this_binary_has_no_memoir_transforms() {
    let output = planrun_shop(&["demo"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(".with_memoir_transforms()"),
        "{}",
        describe(&output)
    );
}

#[test]
fn apply_runs_the_custom_transform_in_batches_on_a_real_database() {
    let cluster = TempCluster::start().expect("a throwaway PostgreSQL starts");
    // 1,200 customers: three batches of 500; one without an email.
    let (url, mut client) = customers_db(
        &cluster,
        "shop",
        "SELECT '  Customer' || g || '@Shop' || g % 3 || '.EXAMPLE ' FROM generate_series(1, 1199) g
         UNION ALL SELECT NULL",
    );

    let output = planrun_shop(&[
        "apply",
        "plans/shop.toml",
        "--no-backup",
        "--database-url",
        &url,
    ]);
    assert!(output.status.success(), "{}", describe(&output));

    let normalized: Vec<(i64, Option<String>)> = client
        .query(
            "SELECT id, email_normalized FROM public.customers WHERE id IN (1, 2, 1199, 1200) ORDER BY id",
            &[],
        )
        .expect("read back")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        normalized,
        [
            (1, Some("Customer1@shop1.example".to_owned())),
            (2, Some("Customer2@shop2.example".to_owned())),
            (1199, Some("Customer1199@shop2.example".to_owned())),
            (1200, None),
        ]
    );
    let ledger = client
        .query_one(
            "SELECT status, rows_affected FROM planrun.stage_results WHERE stage_id = 'normalize_emails'",
            &[],
        )
        .expect("the ledger row");
    assert_eq!(ledger.get::<_, String>(0), "applied");
    assert_eq!(
        ledger.get::<_, i64>(1),
        1200,
        "rows the transform wrote: every customer's, the one without an email too"
    );

    let again = planrun_shop(&[
        "apply",
        "plans/shop.toml",
        "--no-backup",
        "--database-url",
        &url,
    ]);
    assert!(again.status.success(), "{}", describe(&again));
    assert_eq!(
        client
            .query_one("SELECT count(*) FROM planrun.stage_results", &[])
            .expect("count")
            .get::<_, i64>(0),
        1,
        "a second apply runs nothing again"
    );
}

#[test]
fn an_address_the_transform_cannot_normalize_fails_the_stage_naming_the_row() {
    let cluster = TempCluster::start().expect("a throwaway PostgreSQL starts");
    let (url, mut client) = customers_db(&cluster, "shop", "VALUES ('ann@example.com'), ('bob@')");

    let output = planrun_shop(&[
        "apply",
        "plans/shop.toml",
        "--no-backup",
        "--database-url",
        &url,
    ]);
    assert_eq!(output.status.code(), Some(13), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("invalid row in public.customers (id 2): email: `bob@` has nothing before or after its @"),
        "{}",
        describe(&output)
    );
    let column = client
        .query_one(
            "SELECT count(*) FROM information_schema.columns WHERE column_name = 'email_normalized'",
            &[],
        )
        .expect("the catalog")
        .get::<_, i64>(0);
    assert_eq!(
        column, 1,
        "batched mode committed the column in the stage's first transaction"
    );
}
