//! The memoir plan end to end through the `planrun` binary: generated legacy data
//! for each `images` column type, applied, verified against an independent
//! computation of the spec, applied again without change; a bad row fails the stage
//! naming the chapter and JSON path; quarantine mode sets bad rows aside.

use std::collections::BTreeMap;
use std::path::Path;

use planrun_engine::exit_codes;
use planrun_memoir::legacy::{create_legacy_schema, insert_chapter, load_legacy, ImagesType};
use planrun_tests::{
    describe, legacy_db, memoir_plan_with, planrun, planrun_on, repo_root, stdout, TestDb,
};

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

fn apply(cwd: &Path, plan: &str, db: &TestDb, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["apply", plan, "--no-backup", "--database-url", &db.url];
    args.extend(extra);
    planrun(PLANRUN, cwd, &args, &[])
}

/// Every chapter's legacy (content, images as text), read before the migration.
fn legacy_rows(db: &TestDb) -> BTreeMap<i64, (Option<String>, Option<String>)> {
    db.client()
        .query(
            "SELECT id, content, images::text FROM chapters ORDER BY id",
            &[],
        )
        .unwrap()
        .into_iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2))))
        .collect()
}

/// The target tables as (chapter, position) -> (content, image json), plus covers.
fn sections(db: &TestDb) -> BTreeMap<(i64, i32), (String, Option<serde_json::Value>)> {
    let has_image = db.scalar("SELECT count(*) FROM information_schema.columns WHERE table_name = 'chapter_sections' AND column_name = 'image'") == "1";
    let sql = if has_image {
        "SELECT chapter_id, position, content, image::text FROM chapter_sections"
    } else {
        "SELECT s.chapter_id, s.position, s.content, \
         (SELECT jsonb_build_object('url', m.url, 'caption', m.caption) || m.meta FROM memoir_images m WHERE m.id = s.image_id)::text \
         FROM chapter_sections s"
    };
    db.client()
        .query(sql, &[])
        .unwrap()
        .into_iter()
        .map(|row| {
            let image: Option<String> = row.get(3);
            (
                (row.get(0), row.get(1)),
                (
                    row.get(2),
                    image.map(|text| serde_json::from_str(&text).unwrap()),
                ),
            )
        })
        .collect()
}

/// A JSON value as jsonb stores it (objects drop a null caption only if absent...):
/// round-trip through the database so key order and number spelling compare equal.
fn as_jsonb(db: &TestDb, value: &serde_json::Value) -> serde_json::Value {
    let text: String = db
        .client()
        .query_one("SELECT ($1::text)::jsonb::text", &[&value.to_string()])
        .unwrap()
        .get(0);
    serde_json::from_str(&text).unwrap()
}

fn migrate_and_compare(images: ImagesType) {
    let db = TestDb::new();
    let mut client = db.client();
    create_legacy_schema(&mut client, images).unwrap();
    load_legacy(&mut client, 7, 600, images).unwrap();
    let legacy = legacy_rows(&db);

    let output = apply(
        &repo_root(),
        "plans/memoir.toml",
        &db,
        &["--include-optional"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));

    // An independent computation of the spec, in the test, from the legacy rows.
    let mut expected = BTreeMap::new();
    let mut expected_covers = BTreeMap::new();
    for (id, (content, images_text)) in &legacy {
        let split =
            planrun_memoir::split_chapter(content.as_deref(), images_text.as_deref()).unwrap();
        for section in split.sections {
            let image = section.image.map(|image| as_jsonb(&db, &image));
            expected.insert((*id, section.position), (section.content, image));
        }
        expected_covers.insert(*id, split.cover_image.map(|cover| as_jsonb(&db, &cover)));
    }
    let actual = sections(&db);
    assert_eq!(actual.len(), expected.len());
    for (key, value) in &expected {
        // After stage 5 a section's image comes back from memoir_images, where a
        // missing caption reads as null.
        let mut got = actual
            .get(key)
            .cloned()
            .unwrap_or_else(|| panic!("section {key:?} missing"));
        if let (Some(serde_json::Value::Object(got_image)), Some(serde_json::Value::Object(want))) =
            (&mut got.1, &value.1)
        {
            if !want.contains_key("caption") {
                got_image.remove("caption");
            }
        }
        assert_eq!(&got, value, "section {key:?}");
    }
    let covers: BTreeMap<i64, Option<serde_json::Value>> = db
        .client()
        .query("SELECT id, cover_image::text FROM chapters", &[])
        .unwrap()
        .into_iter()
        .map(|row| {
            (
                row.get(0),
                row.get::<_, Option<String>>(1)
                    .map(|t| serde_json::from_str(&t).unwrap()),
            )
        })
        .collect();
    assert_eq!(covers, expected_covers);

    let digest = "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM (SELECT * FROM chapter_sections) t";
    let images_digest = "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM (SELECT * FROM memoir_images) t";
    let before = (db.scalar(digest), db.scalar(images_digest));
    let again = apply(
        &repo_root(),
        "plans/memoir.toml",
        &db,
        &["--include-optional"],
    );
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("nothing to do"),
        "{}",
        describe(&again)
    );
    assert_eq!(
        before,
        (db.scalar(digest), db.scalar(images_digest)),
        "a second apply changes nothing"
    );
}

#[test]
fn memoir_plan_with_a_jsonb_images_column() {
    migrate_and_compare(ImagesType::Jsonb);
}

#[test]
fn memoir_plan_with_a_json_images_column() {
    migrate_and_compare(ImagesType::Json);
}

#[test]
fn memoir_plan_with_a_text_images_column() {
    migrate_and_compare(ImagesType::Text);
}

#[test]
fn a_bad_legacy_row_fails_the_stage_naming_the_chapter_and_json_path() {
    let db = TestDb::new();
    let mut client = db.client();
    create_legacy_schema(&mut client, ImagesType::Text).unwrap();
    load_legacy(&mut client, 3, 50, ImagesType::Text).unwrap();
    insert_chapter(
        &mut client,
        1,
        1001,
        Some("one\n\ntwo"),
        Some(r#"["a.jpg", {"url": "b.jpg", "paragraph": -1}]"#),
    )
    .unwrap();
    let stage_one = apply(
        &repo_root(),
        "plans/memoir.toml",
        &db,
        &["--until", "sections_schema"],
    );
    assert_eq!(stage_one.status.code(), Some(0), "{}", describe(&stage_one));
    let before = db.dump_application();
    let output = apply(
        &repo_root(),
        "plans/memoir.toml",
        &db,
        &["--format", "json"],
    );
    assert_eq!(
        output.status.code(),
        Some(exit_codes::STEP_FAILED),
        "{}",
        describe(&output)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let message = report["stages"][1]["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("id 1001"), "{message}");
    assert!(message.contains("images[1].paragraph"), "{message}");
    assert!(before.contains("CREATE TABLE public.chapter_sections"));
    assert!(before.contains("INSERT INTO public.chapters"));
    assert_eq!(
        db.dump_application(),
        before,
        "the failed stage left schema and data as stage 1 left them"
    );
}

#[test]
fn quarantine_mode_sets_bad_rows_aside_and_migrates_the_rest() {
    let db = TestDb::new();
    let mut client = db.client();
    create_legacy_schema(&mut client, ImagesType::Json).unwrap();
    load_legacy(&mut client, 5, 200, ImagesType::Json).unwrap();
    insert_chapter(
        &mut client,
        1,
        5001,
        Some("kept\n\nverbatim"),
        Some(r#"[{"url": ""}, "x.jpg"]"#),
    )
    .unwrap();
    let plans = memoir_plan_with(r#"on_invalid = "quarantine""#);
    let output = apply(plans.path(), "memoir.toml", &db, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("1 quarantined"),
        "{}",
        describe(&output)
    );
    assert_eq!(
        db.scalar(
            "SELECT content || ' | ' || images || ' | ' || path FROM planrun.memoir_quarantine"
        ),
        r#"kept

verbatim | [{"url": ""}, "x.jpg"] | images[0].url"#
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM chapter_sections WHERE chapter_id = 5001"),
        "0"
    );
    let status = planrun(
        PLANRUN,
        plans.path(),
        &["status", "memoir.toml", "--database-url", &db.url],
        &[],
    );
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("1 rows quarantined"),
        "{}",
        describe(&status)
    );
}

#[test]
fn planrun_plan_shows_the_memoir_stages_without_writing() {
    let db = TestDb::new();
    let mut client = db.client();
    create_legacy_schema(&mut client, ImagesType::Jsonb).unwrap();
    load_legacy(&mut client, 1, 20, ImagesType::Jsonb).unwrap();
    let before = db.dump();
    let output = planrun(
        PLANRUN,
        &repo_root(),
        &["plan", "plans/memoir.toml", "-v", "--database-url", &db.url],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("sections_schema") && text.contains("would run"),
        "{text}"
    );
    assert!(
        text.contains("precondition chapters table exists"),
        "{text}"
    );
    assert!(
        text.contains("not selected"),
        "the optional stage is shown as not selected: {text}"
    );
    assert_eq!(before, db.dump());
}

/// The plan checks the splitter with its own SQL rendering of the spec's paragraph
/// rule (`plans/memoir/session.sql`); the two must agree on every input, or the
/// checks would fail good migrations or pass bad ones.
#[test]
fn the_plans_sql_paragraph_rule_agrees_with_the_rust_rule() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let db = TestDb::new();
    let mut client = db.client();
    let session = std::fs::read_to_string(repo_root().join("plans/memoir/session.sql")).unwrap();
    client.batch_execute(&session).unwrap();
    let statement = client
        .prepare("SELECT pg_temp.memoir_paragraphs($1::text)")
        .unwrap();
    let client = std::cell::RefCell::new(client);
    let sql_paragraphs = |content: Option<&str>| -> String {
        client
            .borrow_mut()
            .query_one(&statement, &[&content])
            .unwrap()
            .get(0)
    };

    let spec_example = "A\r\n \r\n\u{3000}\u{3000}B1\rB2\n\n\n\t\nC\n";
    assert_eq!(
        sql_paragraphs(Some(spec_example)),
        "A\n\n\u{3000}\u{3000}B1\nB2\n\nC"
    );
    assert_eq!(sql_paragraphs(None), "");
    for chapter in planrun_memoir::generate::generate(7, 500) {
        let content = chapter.content.as_deref();
        assert_eq!(
            sql_paragraphs(content),
            planrun_memoir::joined_paragraphs(content),
            "{content:?}"
        );
    }
    // Every White_Space character, the line breaks, and look-alikes that are not
    // White_Space (zero-width space, BOM, word joiner), in any arrangement.
    let alphabet: Vec<char> = "a中\n\r\t\u{b}\u{c} \u{85}\u{a0}\u{1680}\u{2000}\u{2005}\u{200a}\u{2028}\u{2029}\u{202f}\u{205f}\u{3000}\u{200b}\u{feff}\u{2060}"
        .chars()
        .collect();
    let strategy = proptest::collection::vec(proptest::sample::select(alphabet), 0..40)
        .prop_map(|chars| chars.into_iter().collect::<String>());
    TestRunner::new(Config::with_cases(1_000))
        .run(&strategy, |content| {
            prop_assert_eq!(
                sql_paragraphs(Some(&content)),
                planrun_memoir::joined_paragraphs(Some(&content)),
                "{:?}",
                content
            );
            Ok(())
        })
        .unwrap();
}

/// The names of a reported stage's failed verifications.
fn failed_checks(stage: &serde_json::Value) -> Vec<&str> {
    stage["verifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|check| check["passed"] == false)
        .map(|check| check["name"].as_str().unwrap())
        .collect()
}

/// The split stage's check of every chapter's images, independent of their counts.
const IMAGES_DIGEST: &str = "every chapter's images are its sections' images and cover";

/// The split stage's check that nothing but the transform wrote `chapter_sections`,
/// which lets the other checks trust the transform's witness.
const WRITTEN_BEHIND: &str = "nothing wrote chapter_sections behind the split";

/// The memoir plan with `step` (TOML of one `[[stage.step]]`) right after the split
/// transform, and the checks that ran after the transform running after it instead.
fn plan_with_step_after_split(step_toml: &str, after: &str) -> tempfile::TempDir {
    let plans = memoir_plan_with(r#"on_invalid = "fail""#);
    let plan = plans.path().join("memoir.toml");
    let text = std::fs::read_to_string(&plan).unwrap();
    let split_step = "params = { on_invalid = \"fail\" }\n";
    let checks_after = "after_step = \"memoir.split_chapters\"";
    assert!(
        text.contains(split_step) && text.contains(checks_after),
        "the memoir plan's split stage changed"
    );
    std::fs::write(
        &plan,
        text.replace(split_step, &format!("{split_step}\n{step_toml}\n"))
            .replace(checks_after, &format!("after_step = \"{after}\"")),
    )
    .unwrap();
    plans
}

/// Applies stages 1-2 of `plans`, expects a verification failure with exactly
/// `checks` failing and nothing of the split committed.
fn assert_split_refused(db: &TestDb, plans: &tempfile::TempDir, checks: &[&str], what: &str) {
    let output = apply(
        plans.path(),
        "memoir.toml",
        db,
        &["--until", "split_chapters", "--format", "json"],
    );
    assert_eq!(
        output.status.code(),
        Some(exit_codes::VERIFICATION_FAILED),
        "{what}\n{}",
        describe(&output)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let split = &report["stages"][1];
    assert_eq!(split["id"], "split_chapters");
    assert_eq!(failed_checks(split), checks, "{what}");
    assert_eq!(
        db.scalar("SELECT count(*) FROM chapter_sections"),
        "0",
        "the stage rolled back"
    );
}

/// Each independent check of the split stage fails the stage when the rows it guards
/// are wrong: a step slipped in after the transform damages one row at a time. The
/// atomic split's checks of `chapter_sections` compare the legacy side with the
/// transform's witness, so there the check that nothing else wrote the table refuses
/// the damage; with the witness gone (as in batched mode, where the checks read the
/// table) each check that reads the damaged rows refuses it itself.
#[test]
fn the_split_stages_checks_catch_a_damaged_paragraph_image_cover_or_position() {
    let db = TestDb::new();
    let mut client = db.client();
    create_legacy_schema(&mut client, ImagesType::Jsonb).unwrap();
    load_legacy(&mut client, 11, 300, ImagesType::Jsonb).unwrap();
    let damage: [(&str, &[&str], &[&str]); 5] = [
        (
            "UPDATE chapter_sections SET content = content || ' ' WHERE id = (SELECT min(id) FROM chapter_sections WHERE content <> '')",
            &[WRITTEN_BEHIND],
            &["section contents joined equal the legacy paragraphs"],
        ),
        (
            "UPDATE chapter_sections SET image = NULL WHERE id = (SELECT max(id) FROM chapter_sections WHERE image IS NOT NULL)",
            &[WRITTEN_BEHIND],
            &[
                "every legacy image is in a section (quarantined ones counted on the legacy side)",
                IMAGES_DIGEST,
            ],
        ),
        (
            "UPDATE chapters SET cover_image = NULL WHERE id = (SELECT min(id) FROM chapters WHERE cover_image IS NOT NULL)",
            &["one cover per chapter with images", IMAGES_DIGEST],
            &["one cover per chapter with images", IMAGES_DIGEST],
        ),
        // An image changed in place, no count changes (issue 21).
        (
            "UPDATE chapter_sections SET image = jsonb_set(image, '{url}', to_jsonb('swapped.jpg'::text)) WHERE id = (SELECT min(id) FROM chapter_sections WHERE image IS NOT NULL)",
            &[WRITTEN_BEHIND],
            &[IMAGES_DIGEST],
        ),
        (
            "UPDATE chapter_sections SET position = position + 100 WHERE id = (SELECT max(id) FROM chapter_sections)",
            &[WRITTEN_BEHIND],
            &["section positions are dense from 0"],
        ),
    ];
    for (sql, with_witness, reading_the_table) in damage {
        let step = format!("[[stage.step]]\nname = \"damage\"\nsql = \"{sql}\"");
        let plans = plan_with_step_after_split(&step, "damage");
        assert_split_refused(&db, &plans, with_witness, sql);

        let step = format!(
            "[[stage.step]]\nname = \"damage\"\nsql = \"{sql}; DELETE FROM pg_temp.memoir_split_witness\""
        );
        let plans = plan_with_step_after_split(&step, "damage");
        assert_split_refused(&db, &plans, reading_the_table, sql);
    }
}

/// A trigger on `chapter_sections` rewrites one section's text as the split's COPY
/// inserts it, behind the transform's back: the witness holds what the transform sent,
/// not what the table holds, so the stage refuses to commit.
#[test]
fn a_trigger_rewriting_sections_behind_the_split_makes_the_stage_refuse() {
    let db = TestDb::new();
    let mut client = db.client();
    create_legacy_schema(&mut client, ImagesType::Jsonb).unwrap();
    load_legacy(&mut client, 11, 200, ImagesType::Jsonb).unwrap();
    let step = r#"[[stage.step]]
name = "sections_trigger"
sql = """
CREATE FUNCTION pg_temp.corrupt_section() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.position = 0 AND NEW.content <> '' THEN
        NEW.content := NEW.content || ' (rewritten)';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER corrupt_section BEFORE INSERT ON chapter_sections
    FOR EACH ROW EXECUTE FUNCTION pg_temp.corrupt_section();
"""
"#;
    let plans = memoir_plan_with(r#"on_invalid = "fail""#);
    let plan = plans.path().join("memoir.toml");
    let text = std::fs::read_to_string(&plan).unwrap();
    let split_step = "[[stage.step]]\ntransform = \"memoir.split_chapters\"";
    assert!(
        text.contains(split_step),
        "the memoir plan's split stage changed"
    );
    std::fs::write(
        &plan,
        text.replace(split_step, &format!("{step}\n{split_step}")),
    )
    .unwrap();
    assert_split_refused(&db, &plans, &[WRITTEN_BEHIND], "a BEFORE INSERT trigger");
}

/// The constraint and index definitions and column defaults of a table.
fn table_shape(db: &TestDb, table: &str) -> String {
    db.scalar(&format!(
        "SELECT concat_ws(E'\\n',
             (SELECT string_agg(conname || ': ' || pg_get_constraintdef(oid), E'\\n' ORDER BY conname)
              FROM pg_constraint WHERE conrelid = 'public.{table}'::regclass),
             (SELECT string_agg(indexname || ': ' || indexdef, E'\\n' ORDER BY indexname)
              FROM pg_indexes WHERE schemaname = 'public' AND tablename = '{table}'),
             (SELECT string_agg(a.attname || ' default ' || pg_get_expr(d.adbin, d.adrelid), E'\\n' ORDER BY a.attname)
              FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
              WHERE d.adrelid = 'public.{table}'::regclass))"
    ))
}

/// Both transforms drop the keys and indexes of their empty target table for the
/// load and build them again; afterwards the table is exactly as the schema stage made
/// it: the same constraints (ON DELETE rules included), indexes (partial ones
/// included) and defaults.
#[test]
fn the_transforms_leave_their_tables_keys_and_indexes_as_the_schema_stages_made_them() {
    let db = TestDb::new();
    let mut client = db.client();
    create_legacy_schema(&mut client, ImagesType::Jsonb).unwrap();
    load_legacy(&mut client, 5, 300, ImagesType::Jsonb).unwrap();
    let until = |stage: &str| {
        let output = apply(&repo_root(), "plans/memoir.toml", &db, &["--until", stage]);
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    };
    until("sections_schema");
    let sections = table_shape(&db, "chapter_sections");
    let foreign_key = "chapter_sections_chapter_id_fkey: FOREIGN KEY (chapter_id) REFERENCES chapters(id) ON DELETE CASCADE";
    assert!(!sections.contains("FOREIGN KEY"), "{sections}");
    until("split_chapters");
    // The split adds the foreign key to chapters after its load (stage 1 leaves it out,
    // see plans/memoir/01_sections_schema.sql); everything else is as stage 1 made it.
    let after = table_shape(&db, "chapter_sections");
    assert!(after.contains(foreign_key), "{after}");
    assert_eq!(
        after.replace(&format!("{foreign_key}\n"), ""),
        sections,
        "{after}"
    );
    until("images_schema");
    let images = table_shape(&db, "memoir_images");
    assert!(
        images.contains(" WHERE "),
        "the partial unique indexes: {images}"
    );
    until("collect_images");
    assert_eq!(table_shape(&db, "memoir_images"), images);
    assert_ne!(db.scalar("SELECT count(*) FROM memoir_images"), "0");
}

/// The README's first command: a throwaway PostgreSQL, synthetic legacy data, the
/// memoir plan applied and every verification passing.
#[test]
fn planrun_demo_applies_and_verifies_the_memoir_plan() {
    let output = planrun(
        PLANRUN,
        &repo_root(),
        &["demo", "--chapters", "400", "--seed", "3"],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let plan = std::fs::read_to_string(repo_root().join("plans/memoir.toml")).unwrap();
    let checks =
        plan.matches("[[stage.verify]]").count() + plan.matches("[[stage.precondition]]").count();
    // Each stage's line counts its checks: `14/14 checks ok`.
    let passed: usize = stdout
        .lines()
        .filter_map(|line| line.split_once(" checks ok"))
        .filter_map(|(before, _)| before.rsplit(' ').next()?.split_once('/'))
        .map(|(passed, of)| {
            assert_eq!(passed, of, "{stdout}");
            passed.parse::<usize>().unwrap()
        })
        .sum();
    assert_eq!(
        passed, checks,
        "every precondition and verification of every stage passed:\n{stdout}"
    );
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert!(
        stdout.contains(
            "committed: sections_schema, split_chapters, images_schema, collect_images, section_image_fk"
        ),
        "{stdout}"
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("the throwaway cluster is removed")
            || stdout.contains("the throwaway cluster is removed"),
        "{}",
        describe(&output)
    );
}

/// Stage 4 checks memoir_images against the counts of covers and section images it
/// captured under its locks before the transform: losing an image and its source
/// together inside the stage, which leaves the tables consistent with each other,
/// still fails. (What the application changes before the stage starts is its right,
/// and is reported instead: tests/live_traffic.rs.)
#[test]
fn the_collect_stage_checks_against_the_counts_taken_when_it_started() {
    let db = TestDb::new();
    let mut client = db.client();
    create_legacy_schema(&mut client, ImagesType::Jsonb).unwrap();
    load_legacy(&mut client, 13, 300, ImagesType::Jsonb).unwrap();
    let damage = [
        (
            "DELETE FROM memoir_images WHERE section_id = (SELECT max(id) FROM chapter_sections WHERE image IS NOT NULL); \
             UPDATE chapter_sections SET image = NULL WHERE id = (SELECT max(id) FROM chapter_sections WHERE image IS NOT NULL)",
            "every section image found is in memoir_images",
        ),
        (
            "DELETE FROM memoir_images WHERE section_id IS NULL AND chapter_id = (SELECT min(id) FROM chapters WHERE cover_image IS NOT NULL); \
             UPDATE chapters SET cover_image = NULL WHERE id = (SELECT min(id) FROM chapters WHERE cover_image IS NOT NULL)",
            "every cover found is in memoir_images",
        ),
    ];
    let plans = memoir_plan_with(r#"on_invalid = "fail""#);
    let until_images = apply(
        plans.path(),
        "memoir.toml",
        &db,
        &["--until", "images_schema"],
    );
    assert_eq!(
        until_images.status.code(),
        Some(0),
        "{}",
        describe(&until_images)
    );
    for (sql, check) in damage {
        let plan = plans.path().join("memoir.toml");
        let text = std::fs::read_to_string(&plan).unwrap();
        let collect = "transform = \"memoir.collect_images\"\n";
        assert!(
            text.contains(collect),
            "the memoir plan's collect stage changed"
        );
        let damaged = plans.path().join("damaged.toml");
        std::fs::write(
            &damaged,
            text.replace(
                collect,
                &format!("{collect}\n[[stage.step]]\nsql = \"{sql}\"\n"),
            ),
        )
        .unwrap();
        let output = apply(
            plans.path(),
            "damaged.toml",
            &db,
            &[
                "--until",
                "collect_images",
                "--allow-drift",
                "--format",
                "json",
            ],
        );
        assert_eq!(
            output.status.code(),
            Some(exit_codes::VERIFICATION_FAILED),
            "{sql}\n{}",
            describe(&output)
        );
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let collect_stage = &report["stages"][3];
        assert_eq!(collect_stage["id"], "collect_images");
        assert_eq!(failed_checks(collect_stage), [check], "{sql}");
        assert_eq!(
            db.scalar("SELECT count(*) FROM memoir_images"),
            "0",
            "rolled back"
        );
    }
}

/// The runbook's way A: stage 1's SQL run by hand with psql. The plan sees it, records
/// stage 1 as skipped with the reason, and does the rest.
#[test]
fn a_stage_one_done_by_hand_is_skipped_with_its_reason() {
    let db = TestDb::new();
    let mut client = db.client();
    create_legacy_schema(&mut client, ImagesType::Jsonb).unwrap();
    load_legacy(&mut client, 17, 100, ImagesType::Jsonb).unwrap();
    let by_hand =
        std::fs::read_to_string(repo_root().join("plans/memoir/01_sections_schema.sql")).unwrap();
    client.batch_execute(&by_hand).unwrap();
    let output = apply(
        &repo_root(),
        "plans/memoir.toml",
        &db,
        &["--format", "json"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let statuses: Vec<&str> = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|stage| stage["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["skipped", "applied", "applied", "applied", "not_selected"]
    );
    assert!(report["stages"][0]["note"]
        .as_str()
        .unwrap()
        .contains("stage 1 was done by hand"));
    assert_eq!(
        db.scalar("SELECT status FROM planrun.stage_results WHERE stage_id = 'sections_schema'"),
        "skipped"
    );
}

/// The checks of a reported stage as `name -> status` (`passed`, `failed`,
/// `superseded`, `evaluated_after`).
fn check_statuses<'a>(stage: &'a serde_json::Value, kind: &str) -> BTreeMap<&'a str, &'a str> {
    stage[kind]
        .as_array()
        .unwrap()
        .iter()
        .map(|check| {
            (
                check["name"].as_str().unwrap(),
                check["status"].as_str().unwrap_or("(no status)"),
            )
        })
        .collect()
}

fn verify_json(db: &TestDb) -> (Option<i32>, serde_json::Value, std::process::Output) {
    let output = planrun_on(
        PLANRUN,
        &repo_root(),
        db,
        &["verify", "plans/memoir.toml", "--format", "json"],
    );
    let report = serde_json::from_slice(&output.stdout).unwrap_or_default();
    (output.status.code(), report, output)
}

fn reported_stage<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|stage| stage["id"] == id)
        .unwrap_or_else(|| panic!("stage {id} in {report:#}"))
}

/// Stage 5 drops `chapter_sections.image` on purpose, which the checks of stages 1, 2
/// and 4 read: `verify` after a complete apply runs each applied stage's checks only
/// while no later applied stage changed what they read, names the others as
/// superseded by that stage, and passes. A check nothing later touched still catches
/// damage.
#[test]
fn verify_after_a_complete_apply_passes_and_names_the_checks_later_stages_superseded() {
    let db = legacy_db(60);
    let output = apply(&repo_root(), "plans/memoir.toml", &db, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    // Stages 1 to 4: stage 2 alters both tables whose definition stage 1 checks (a
    // foreign key on chapter_sections, chapters' legacy columns dropped), so stage 1's
    // checks are superseded; every other check runs.
    let (code, report, output) = verify_json(&db);
    assert_eq!(code, Some(0), "{}", describe(&output));
    let superseded: Vec<&str> = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|stage| stage["verifications"].as_array().unwrap())
        .filter(|check| check["status"] != "passed")
        .map(|check| check["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        superseded,
        [
            "chapter_sections has the target columns",
            "chapters.cover_image is jsonb"
        ],
        "{report:#}"
    );

    let output = apply(
        &repo_root(),
        "plans/memoir.toml",
        &db,
        &["--include-optional"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));

    let text = planrun_on(
        PLANRUN,
        &repo_root(),
        &db,
        &["verify", "plans/memoir.toml", "-v"],
    );
    assert_eq!(text.status.code(), Some(0), "{}", describe(&text));
    let shown = stdout(&text);
    assert!(
        shown.contains("section positions are dense from 0: superseded by section_image_fk"),
        "{shown}"
    );
    assert!(!shown.contains("FAIL"), "{shown}");

    let (code, report, output) = verify_json(&db);
    assert_eq!(code, Some(0), "{}", describe(&output));
    let split = reported_stage(&report, "split_chapters");
    let split_checks = check_statuses(split, "verifications");
    assert_eq!(
        split_checks["section positions are dense from 0"], "superseded",
        "{split:#}"
    );
    assert_eq!(split_checks["no chapter lost"], "passed", "{split:#}");
    assert_eq!(
        split_checks["legacy columns are gone"], "passed",
        "{split:#}"
    );
    let dense = split["verifications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["name"] == "section positions are dense from 0")
        .unwrap();
    assert_eq!(
        dense["superseded_by"][0]["stage"], "section_image_fk",
        "{dense:#}"
    );
    assert_eq!(
        dense["superseded_by"][0]["relations"][0], "chapter_sections",
        "{dense:#}"
    );
    let collect = check_statuses(reported_stage(&report, "collect_images"), "verifications");
    assert!(
        collect.values().all(|status| *status == "superseded"),
        "stage 5 brings memoir_images up to date, so stage 4's counts no longer hold: {collect:?}"
    );
    for stage in ["images_schema", "section_image_fk"] {
        let checks = check_statuses(reported_stage(&report, stage), "verifications");
        assert!(
            checks.values().all(|status| *status == "passed"),
            "{stage}: {checks:?}"
        );
    }

    // Stage 3's index check reads what no later stage changes: dropping an index is
    // caught.
    db.execute("DROP INDEX memoir_images_one_cover");
    let (code, report, output) = verify_json(&db);
    assert_eq!(
        code,
        Some(exit_codes::VERIFICATION_FAILED),
        "{}",
        describe(&output)
    );
    let images_schema = check_statuses(reported_stage(&report, "images_schema"), "verifications");
    assert_eq!(
        images_schema["one-cover and one-image-per-section indexes exist"],
        "failed"
    );
    db.execute("CREATE UNIQUE INDEX memoir_images_one_cover ON memoir_images (chapter_id) WHERE section_id IS NULL");
    assert_eq!(verify_json(&db).0, Some(0));

    // Stage 5's own checks are superseded by nothing.
    db.execute(
        "UPDATE chapter_sections SET image_id = (SELECT max(id) FROM memoir_images) \
         WHERE id = (SELECT min(id) FROM chapter_sections WHERE image_id IS NOT NULL)",
    );
    let (code, report, output) = verify_json(&db);
    assert_eq!(
        code,
        Some(exit_codes::VERIFICATION_FAILED),
        "{}",
        describe(&output)
    );
    let fk = check_statuses(reported_stage(&report, "section_image_fk"), "verifications");
    assert_eq!(fk["image_id points at the section's own image"], "failed");
}

/// `planrun plan` on a healthy legacy database: stages 2 to 4 wait for stage 1, which
/// would run first, so their preconditions are not judged now; no FAIL is shown.
#[test]
fn plan_shows_the_checks_of_waiting_stages_as_evaluated_after_the_stages_they_wait_for() {
    let db = legacy_db(20);
    let output = planrun_on(
        PLANRUN,
        &repo_root(),
        &db,
        &["plan", "plans/memoir.toml", "-v"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let text = stdout(&output);
    assert!(!text.contains("FAIL"), "{text}");
    assert!(
        !text.contains("chapter_sections already holds rows"),
        "a precondition's message belongs to its own failure only: {text}"
    );
    assert!(
        text.contains("precondition chapter_sections is empty: evaluated after sections_schema"),
        "{text}"
    );

    let output = planrun_on(
        PLANRUN,
        &repo_root(),
        &db,
        &["plan", "plans/memoir.toml", "--format", "json"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    for (stage, after) in [
        ("split_chapters", "sections_schema"),
        ("images_schema", "split_chapters"),
        ("collect_images", "images_schema"),
    ] {
        let reported = reported_stage(&report, stage);
        assert_eq!(reported["status"], "waiting");
        for check in reported["preconditions"].as_array().unwrap() {
            assert_eq!(check["status"], "evaluated_after", "{check:#}");
            assert_eq!(check["evaluated_after"][0], after, "{check:#}");
            assert!(check["message"].is_null(), "{check:#}");
        }
    }
    let first = check_statuses(reported_stage(&report, "sections_schema"), "preconditions");
    assert!(
        first.values().all(|status| *status == "passed"),
        "{first:?}"
    );
}

/// A precondition whose query fails (its table does not exist) shows the SQL error, not
/// the message written for the condition it checks.
#[test]
fn a_precondition_that_cannot_run_shows_its_error_not_its_message() {
    let db = legacy_db(5);
    let output = apply(
        &repo_root(),
        "plans/memoir.toml",
        &db,
        &["--until", "sections_schema"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    db.execute("DROP TABLE chapter_sections");
    let output = planrun_on(PLANRUN, &repo_root(), &db, &["plan", "plans/memoir.toml"]);
    assert_eq!(
        output.status.code(),
        Some(exit_codes::PRECONDITION_FAILED),
        "{}",
        describe(&output)
    );
    let text = stdout(&output);
    assert!(
        text.contains("FAIL precondition chapter_sections is empty"),
        "{}",
        describe(&output)
    );
    assert!(
        text.contains("relation \"chapter_sections\" does not exist"),
        "{text}"
    );
    assert!(
        !text.contains("chapter_sections already holds rows"),
        "{text}"
    );
}

/// The spec's stage 1 (`/work/shared/memoir-spec.md`, "Target schema"), as a team runs
/// it by hand: the key to chapters is made inside `CREATE TABLE`, named by PostgreSQL.
const SPEC_STAGE_ONE: &str = "
CREATE TABLE chapter_sections (id bigserial PRIMARY KEY,
  chapter_id bigint NOT NULL REFERENCES chapters(id) ON DELETE CASCADE,
  position int NOT NULL,
  content text NOT NULL DEFAULT '',
  image jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (chapter_id, position));
ALTER TABLE chapters ADD COLUMN cover_image jsonb;";

const SPLIT_KEYS: &str = "SELECT string_agg(conname || ' ' || convalidated, ',' ORDER BY conname)
     FROM pg_constraint WHERE conrelid = 'public.chapter_sections'::regclass AND contype = 'f'";

/// The split adds its key to chapters `NOT VALID` and validates it after its commit by
/// name, in plain SQL. A stage 1 run by hand from the spec keeps its own key, and the
/// validation finds it; when PostgreSQL had to name it otherwise (a constraint of the
/// schema already had the name) the stage refuses before anything changes, and applies
/// once the key is renamed.
#[test]
fn the_specs_stage_one_by_hand_keeps_its_key_and_another_name_is_refused_until_renamed() {
    for name_taken in [false, true] {
        let db = TestDb::new();
        let mut client = db.client();
        create_legacy_schema(&mut client, ImagesType::Jsonb).unwrap();
        load_legacy(&mut client, 13, 100, ImagesType::Jsonb).unwrap();
        if name_taken {
            client
                .batch_execute(
                    "CREATE TABLE elsewhere (n int CONSTRAINT chapter_sections_chapter_id_fkey CHECK (n > 0))",
                )
                .unwrap();
        }
        client.batch_execute(SPEC_STAGE_ONE).unwrap();
        let by_hand = if name_taken {
            "chapter_sections_chapter_id_fkey1 true"
        } else {
            "chapter_sections_chapter_id_fkey true"
        };
        assert_eq!(db.scalar(SPLIT_KEYS), by_hand);
        let output = apply(
            &repo_root(),
            "plans/memoir.toml",
            &db,
            &["--until", "split_chapters"],
        );
        if name_taken {
            assert_eq!(
                output.status.code(),
                Some(exit_codes::PRECONDITION_FAILED),
                "{}",
                describe(&output)
            );
            let said = describe(&output);
            assert!(said.contains("RENAME CONSTRAINT"), "{said}");
            assert_eq!(
                db.scalar("SELECT count(*) FROM information_schema.columns WHERE table_name = 'chapters' AND column_name = 'content'"),
                "1"
            );
            assert_eq!(db.scalar("SELECT count(*) FROM chapter_sections"), "0");
            client
                .batch_execute("ALTER TABLE chapter_sections RENAME CONSTRAINT chapter_sections_chapter_id_fkey1 TO chapter_sections_chapter_id_fkey")
                .unwrap();
            let again = apply(
                &repo_root(),
                "plans/memoir.toml",
                &db,
                &["--until", "split_chapters"],
            );
            assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
        } else {
            assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
        }
        assert_eq!(
            db.scalar(SPLIT_KEYS),
            "chapter_sections_chapter_id_fkey true"
        );
        assert_eq!(
            db.scalar("SELECT status FROM planrun.stage_results WHERE stage_id = 'split_chapters' ORDER BY id DESC LIMIT 1"),
            "applied"
        );
        assert_ne!(db.scalar("SELECT count(*) FROM chapter_sections"), "0");
    }
}

/// What each deleted chapter costs the application once the plan has run, read in the
/// deleting transaction's own statistics: a chapter delete cascades to its sections
/// (by chapter_id) and its images (by chapter_id, and by section_id from each
/// section), and each image deleted sets the sections pointing at it to NULL (stage
/// 5's `ON DELETE SET NULL`). Each of those foreign key queries must find its rows
/// through an index: a sequential scan reads the whole table once per row deleted,
/// while the application's transaction holds its locks (550k sections at 100k
/// chapters). Sequential scans are disabled in the session, as the planner would
/// judge at size, so a scan here means no index can serve the query.
#[test]
fn a_chapter_deleted_after_the_migration_scans_no_table_whole() {
    let db = TestDb::new();
    let mut client = db.client();
    create_legacy_schema(&mut client, ImagesType::Jsonb).unwrap();
    load_legacy(&mut client, 11, 300, ImagesType::Jsonb).unwrap();
    let output = apply(
        &repo_root(),
        "plans/memoir.toml",
        &db,
        &["--include-optional"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));

    let mut tx = client.transaction().unwrap();
    tx.batch_execute("SET LOCAL enable_seqscan = off").unwrap();
    let chapter: i64 = tx
        .query_one(
            "SELECT s.chapter_id FROM chapter_sections s JOIN memoir_images m ON m.id = s.image_id
             GROUP BY s.chapter_id ORDER BY count(*) DESC, s.chapter_id LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    let images: i64 = tx
        .query_one(
            "SELECT count(*) FROM memoir_images WHERE chapter_id = $1",
            &[&chapter],
        )
        .unwrap()
        .get(0);
    assert!(images > 1, "chapter {chapter} has {images} images");
    let scans = |tx: &mut postgres::Transaction<'_>| -> String {
        tx.query_one(
            "SELECT string_agg(relname || '=' || seq_scan, ',' ORDER BY relname)
             FROM pg_stat_xact_user_tables
             WHERE schemaname = 'public' AND relname IN ('chapter_sections', 'memoir_images')",
            &[],
        )
        .unwrap()
        .get(0)
    };
    let before = scans(&mut tx);
    let deleted = tx
        .execute("DELETE FROM chapters WHERE id = $1", &[&chapter])
        .unwrap();
    assert_eq!(deleted, 1);
    assert_eq!(
        scans(&mut tx),
        before,
        "sequential scans of chapter_sections and memoir_images before and after deleting chapter {chapter} ({images} images)"
    );
}
