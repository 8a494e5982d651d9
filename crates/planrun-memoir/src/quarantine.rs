//! `planrun.memoir_quarantine`: where `split_chapters` with `on_invalid = "quarantine"`
//! sets aside the chapters it cannot split.
//!
//! Each row keeps the chapter's raw `content` and `images` exactly as `::text` gave them,
//! because stage 2 then drops those columns: the quarantine table becomes the only copy,
//! and the plan's conservation checks count the quarantined images from it. The table
//! lives in the engine's `planrun` schema, not the application's.

use postgres::Transaction;

/// The quarantine table's DDL. The split transform runs it first even in `fail` mode:
/// the plan's verification queries read the table whichever mode ran.
pub const CREATE_QUARANTINE_TABLE: &str = "
CREATE SCHEMA IF NOT EXISTS planrun;
CREATE TABLE IF NOT EXISTS planrun.memoir_quarantine (
    chapter_id     bigint PRIMARY KEY,
    content        text,
    images         text,
    images_type    text NOT NULL,
    path           text NOT NULL,
    reason         text NOT NULL,
    run_id         bigint NOT NULL,
    stage_id       text NOT NULL,
    quarantined_at timestamptz NOT NULL DEFAULT now()
);";

/// One chapter set aside, with its raw legacy values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QuarantinedChapter {
    pub chapter_id: i64,
    pub content: Option<String>,
    pub images: Option<String>,
    pub path: String,
    pub reason: String,
}

/// Writes a batch of quarantined chapters in one round trip.
///
/// A chapter already in the table (from an earlier run whose chapters were restored from
/// a backup, say) is overwritten: the legacy columns being read now are the source of
/// truth, and a stale row would make the plan's conservation counts disagree.
pub(crate) fn insert(
    transaction: &mut Transaction<'_>,
    rows: &[QuarantinedChapter],
    images_type: &str,
    run_id: i64,
    stage_id: &str,
) -> Result<u64, postgres::Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.chapter_id).collect();
    let contents: Vec<Option<&str>> = rows.iter().map(|r| r.content.as_deref()).collect();
    let images: Vec<Option<&str>> = rows.iter().map(|r| r.images.as_deref()).collect();
    let paths: Vec<&str> = rows.iter().map(|r| r.path.as_str()).collect();
    let reasons: Vec<&str> = rows.iter().map(|r| r.reason.as_str()).collect();
    transaction.execute(
        "INSERT INTO planrun.memoir_quarantine
             (chapter_id, content, images, images_type, path, reason, run_id, stage_id)
         SELECT q.chapter_id, q.content, q.images, $6, q.path, q.reason, $7, $8
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[])
              AS q (chapter_id, content, images, path, reason)
         ON CONFLICT (chapter_id) DO UPDATE SET
             content = excluded.content, images = excluded.images,
             images_type = excluded.images_type, path = excluded.path,
             reason = excluded.reason, run_id = excluded.run_id,
             stage_id = excluded.stage_id, quarantined_at = excluded.quarantined_at",
        &[
            &ids,
            &contents,
            &images,
            &paths,
            &reasons,
            &images_type,
            &run_id,
            &stage_id,
        ],
    )
}
