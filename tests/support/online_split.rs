//! What an online (batched) split must leave, checked the same way by every test that
//! drives one: each chapter's sections and cover equal the spec's split of its legacy
//! row as the cutover saw it, and nothing of the change capture or the checkpoint is
//! left.

use crate::TestDb;

/// The table the cutover's test step fills with the legacy rows it sees.
pub const LEGACY_AT_CUTOVER: &str = "public.legacy_at_cutover";

/// The memoir plan with the split batched with `params` added and, at the cutover
/// (right after the split, before the legacy columns are dropped), `cutover_sql` (none
/// when empty) and then a step that keeps the legacy rows as the cutover sees them in
/// [`LEGACY_AT_CUTOVER`].
pub fn batched_plan_keeping_the_cutover_rows(params: &str, cutover_sql: &str) -> tempfile::TempDir {
    let batched = format!(r#"params = {{ on_invalid = "fail", mode = "batched", {params} }}"#);
    let at_cutover = if cutover_sql.is_empty() {
        String::new()
    } else {
        format!("\n\n[[stage.step]]\nname = \"test: at the cutover\"\nsql = \"{cutover_sql}\"")
    };
    crate::memoir_plan_edited(|text| {
        text.replace(
            r#"params = { on_invalid = "fail" }"#,
            &format!(
                "{batched}{at_cutover}\n\n\
                 [[stage.step]]\nname = \"test: the legacy rows as the cutover sees them\"\n\
                 sql = \"CREATE TABLE {LEGACY_AT_CUTOVER} AS SELECT id, content::text AS content, images::text AS images FROM public.chapters\""
            ),
        )
    })
}

type Section = (i64, i32, String, Option<serde_json::Value>);

/// Every chapter's sections and cover are exactly what the spec's rules
/// (`planrun_memoir::split_chapter`) make of its legacy row at the cutover; `context`
/// (a seed, a run's output) goes into the failure message.
pub fn assert_exactly_the_split_at_the_cutover(db: &TestDb, context: &str) {
    let mut client = db.client();
    let legacy = client
        .query(
            // The application goes on after the cutover: its deletes still work (and
            // cascade to the sections); its writes naming the dropped columns fail.
            &format!(
                "SELECT l.id, l.content, l.images FROM {LEGACY_AT_CUTOVER} l
                 WHERE EXISTS (SELECT 1 FROM chapters c WHERE c.id = l.id) ORDER BY l.id"
            ),
            &[],
        )
        .unwrap();
    let mut expected: Vec<Section> = Vec::new();
    let mut covers = Vec::new();
    for row in &legacy {
        let id: i64 = row.get(0);
        let split = planrun_memoir::split_chapter(row.get(1), row.get(2))
            .unwrap_or_else(|invalid| panic!("chapter {id} is invalid: {invalid:?}; {context}"));
        for section in split.sections {
            expected.push((id, section.position, section.content, section.image));
        }
        covers.push((id, split.cover_image));
    }
    let actual: Vec<Section> = client
        .query(
            "SELECT chapter_id, position, content, image FROM chapter_sections ORDER BY chapter_id, position",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect();
    let off = chapters_off_the_split(&actual, &expected);
    assert!(
        off.is_empty(),
        "{} chapters differ from the spec's split: {off:?}; {context}",
        off.len()
    );
    let actual_covers: Vec<(i64, Option<serde_json::Value>)> = client
        .query("SELECT id, cover_image FROM chapters ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert!(
        actual_covers == covers,
        "covers differ from the spec's split; {context}"
    );
}

/// The chapters whose sections differ, with what they have and what the spec says.
fn chapters_off_the_split(actual: &[Section], expected: &[Section]) -> Vec<String> {
    let by_chapter = |rows: &[Section]| {
        let mut map = std::collections::BTreeMap::<i64, Vec<Section>>::new();
        for row in rows {
            map.entry(row.0).or_default().push(row.clone());
        }
        map
    };
    let (a, e) = (by_chapter(actual), by_chapter(expected));
    let mut ids: Vec<&i64> = a.keys().chain(e.keys()).collect();
    ids.sort();
    ids.dedup();
    ids.into_iter()
        .filter(|id| a.get(id) != e.get(id))
        .map(|id| {
            let count = |map: &std::collections::BTreeMap<i64, Vec<Section>>| {
                map.get(id).map_or(0, Vec::len)
            };
            format!("{id}: {} sections, spec {}", count(&a), count(&e))
        })
        .collect()
}

/// Nothing of the capture (triggers, functions, recorded changes) and no checkpoint
/// is left once the stage is done.
pub fn assert_nothing_left_behind(db: &TestDb, context: &str) {
    let left = db.scalar(
        "SELECT (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'planrun_capture_%') || ' triggers, '
             || (SELECT count(*) FROM pg_proc WHERE pronamespace = 'planrun'::regnamespace AND proname LIKE 'capture\\_%') || ' functions, '
             || (SELECT count(*) FROM planrun.changed_keys) || ' changes, '
             || (SELECT count(*) FROM planrun.checkpoints) || ' checkpoints'",
    );
    assert_eq!(
        left, "0 triggers, 0 functions, 0 changes, 0 checkpoints",
        "left behind; {context}"
    );
}
