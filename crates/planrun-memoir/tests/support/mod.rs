//! Shared helpers for the database tests: a throwaway cluster per test, the plan's SQL
//! steps, running a transform the way the engine does, and the expected rows computed
//! with the pure rules.

#![allow(dead_code)]

use planrun_memoir::legacy::{create_legacy_schema, ImagesType};
use planrun_memoir::{image_row, split_chapter, LinkSectionImages};
use planrun_tempdb::TempCluster;
use planrun_transform::{NoProgress, Transform, TransformContext, TransformError, TransformReport};
use postgres::{Client, NoTls};
use serde_json::Value;

pub(crate) const SECTIONS_SCHEMA: &str =
    include_str!("../../../../plans/memoir/01_sections_schema.sql");
pub(crate) const DROP_LEGACY: &str =
    include_str!("../../../../plans/memoir/02_drop_legacy_columns.sql");
pub(crate) const IMAGES_SCHEMA: &str =
    include_str!("../../../../plans/memoir/03_images_schema.sql");
pub(crate) const SECTION_IMAGE_FK: &str =
    include_str!("../../../../plans/memoir/05_section_image_fk.sql");
pub(crate) const VALIDATE_IMAGE_FK: &str =
    include_str!("../../../../plans/memoir/05_validate_image_fk.sql");
pub(crate) const DROP_SECTION_IMAGE: &str =
    include_str!("../../../../plans/memoir/05_drop_section_image.sql");
pub(crate) const SESSION: &str = include_str!("../../../../plans/memoir/session.sql");
pub(crate) const KEEP_COLLECTED_IMAGES: &str =
    include_str!("../../../../plans/memoir/04_keep_collected_images.sql");
pub(crate) const INDEX_COLLECTED_IMAGES: &str =
    include_str!("../../../../plans/memoir/05_index_collected_images.sql");

pub(crate) const SEED: u64 = 20_240_601;
pub(crate) const RUN_ID: i64 = 42;

/// A database with the legacy schema. The client is declared first so it disconnects
/// before the cluster stops.
pub(crate) struct Db {
    pub client: Client,
    _cluster: TempCluster,
}

impl Db {
    /// Stage 4's digests, then stage 5's steps as the plan runs them in atomic mode: `image_id`,
    /// `memoir.link_section_images`, the key added NOT VALID and `image` dropped, then
    /// (after the commit, in the plan) the key validated.
    pub(crate) fn stage_five(&mut self) {
        // The plan's session functions, and the digests stage 4 keeps of what it
        // collected, which memoir.link_section_images judges the rows by.
        self.client
            .batch_execute(&format!(
                "{SESSION}\n{KEEP_COLLECTED_IMAGES}\n{INDEX_COLLECTED_IMAGES}\n{SECTION_IMAGE_FK}"
            ))
            .expect("image_id");
        self.run(&LinkSectionImages, "")
            .expect("link section images");
        self.client
            .batch_execute(&format!("{DROP_SECTION_IMAGE}\n{VALIDATE_IMAGE_FK}"))
            .expect("validate the key, drop image");
    }

    pub(crate) fn legacy(images: ImagesType) -> Db {
        let cluster = TempCluster::start().expect("start a temporary cluster");
        let url = cluster.create_database("memoir").expect("create database");
        let mut client = Client::connect(&url, NoTls).expect("connect");
        create_legacy_schema(&mut client, images).expect("legacy schema");
        Db {
            client,
            _cluster: cluster,
        }
    }

    /// Stage 1, plus the `planrun` schema the engine creates before any stage.
    pub(crate) fn stage_one(&mut self) {
        self.client
            .batch_execute(SECTIONS_SCHEMA)
            .expect("01_sections_schema.sql");
        self.client
            .batch_execute("CREATE SCHEMA planrun")
            .expect("planrun schema");
    }

    /// Runs `transform` in a transaction, committing on success and rolling back on
    /// error, as the engine does.
    pub(crate) fn run(
        &mut self,
        transform: &dyn Transform,
        params: &str,
    ) -> Result<TransformReport, TransformError> {
        let params: toml::Table = toml::from_str(params).expect("params TOML");
        let mut transaction = self.client.transaction().expect("begin");
        let result = transform.run(&mut TransformContext {
            transaction: &mut transaction,
            params: &params,
            stage_id: "test_stage",
            run_id: RUN_ID,
            progress: &NoProgress,
        });
        match &result {
            Ok(_) => transaction.commit().expect("commit"),
            Err(_) => transaction.rollback().expect("rollback"),
        }
        result
    }

    pub(crate) fn count(&mut self, sql: &str) -> i64 {
        self.client.query_one(sql, &[]).expect(sql).get(0)
    }

    /// `(id, content, images::text)` of every chapter, read back as the transform sees it.
    pub(crate) fn legacy_rows(&mut self) -> Vec<LegacyRow> {
        self.client
            .query(
                "SELECT id, content, images::text FROM chapters ORDER BY id",
                &[],
            )
            .expect("read chapters")
            .iter()
            .map(|row| LegacyRow {
                id: row.get(0),
                content: row.get(1),
                images: row.get(2),
            })
            .collect()
    }

    /// JSON texts as `jsonb` prints them, in one round trip: how the pure rules' output
    /// looks once stored (numbers spelled the way `jsonb` spells them).
    pub(crate) fn through_jsonb(&mut self, values: &[Value]) -> Vec<Value> {
        let texts: Vec<String> = values.iter().map(Value::to_string).collect();
        self.client
            .query(
                "SELECT j::jsonb::text FROM unnest($1::text[]) WITH ORDINALITY AS u (j, n) ORDER BY n",
                &[&texts],
            )
            .expect("normalise through jsonb")
            .iter()
            .map(|row| parse(row.get(0)))
            .collect()
    }

    /// Every `chapter_sections` row as `(chapter_id, position, content, image)`.
    pub(crate) fn sections(&mut self) -> Vec<SectionRow> {
        self.client
            .query(
                "SELECT chapter_id, position, content, image::text FROM chapter_sections
                 ORDER BY chapter_id, position",
                &[],
            )
            .expect("read sections")
            .iter()
            .map(|row| {
                let image: Option<&str> = row.get(3);
                (row.get(0), row.get(1), row.get(2), image.map(parse))
            })
            .collect()
    }

    /// `(id, cover_image)` of every chapter.
    pub(crate) fn covers(&mut self) -> Vec<(i64, Option<Value>)> {
        self.client
            .query(
                "SELECT id, cover_image::text FROM chapters ORDER BY id",
                &[],
            )
            .expect("read covers")
            .iter()
            .map(|row| {
                let cover: Option<&str> = row.get(1);
                (row.get(0), cover.map(parse))
            })
            .collect()
    }

    /// Every `memoir_images` row as `(chapter_id, section_id, url, caption, meta)`.
    pub(crate) fn memoir_images(&mut self) -> Vec<ImageRowTuple> {
        let mut rows: Vec<ImageRowTuple> = self
            .client
            .query(
                "SELECT chapter_id, section_id, url, caption, meta::text FROM memoir_images",
                &[],
            )
            .expect("read memoir_images")
            .iter()
            .map(|row| {
                (
                    row.get(0),
                    row.get(1),
                    row.get(2),
                    row.get(3),
                    parse(row.get(4)),
                )
            })
            .collect();
        rows.sort_by_key(|r| (r.0, r.1));
        rows
    }

    /// The `memoir_images` rows the pure `image_row` derives from the stored covers and
    /// section images.
    pub(crate) fn expected_memoir_images(&mut self) -> Vec<ImageRowTuple> {
        let mut rows: Vec<ImageRowTuple> = self
            .client
            .query(
                "SELECT id, NULL::bigint, cover_image::text FROM chapters WHERE cover_image IS NOT NULL
                 UNION ALL
                 SELECT chapter_id, id, image::text FROM chapter_sections WHERE image IS NOT NULL",
                &[],
            )
            .expect("read image sources")
            .iter()
            .map(|row| {
                let image = parse(row.get(2));
                let r = image_row(&image).expect("stored images are valid");
                (row.get(0), row.get(1), r.url, r.caption, Value::Object(r.meta))
            })
            .collect();
        rows.sort_by_key(|r| (r.0, r.1));
        rows
    }
}

pub(crate) type SectionRow = (i64, i32, String, Option<Value>);
pub(crate) type ImageRowTuple = (i64, Option<i64>, String, Option<String>, Value);

#[derive(Debug, Clone)]
pub(crate) struct LegacyRow {
    pub id: i64,
    pub content: Option<String>,
    pub images: Option<String>,
}

pub(crate) fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("valid JSON from the database")
}

/// What the pure rules say the database must hold after `split_chapters`: every section
/// and every chapter's cover, with image objects normalised through `jsonb`. `skip` lists
/// chapters that were quarantined (no sections, no cover).
pub(crate) fn expected_split(
    db: &mut Db,
    legacy: &[LegacyRow],
    skip: &[i64],
) -> (Vec<SectionRow>, Vec<(i64, Option<Value>)>) {
    let mut sections = Vec::new();
    let mut covers = Vec::new();
    for row in legacy {
        if skip.contains(&row.id) {
            covers.push((row.id, None));
            continue;
        }
        let split = split_chapter(row.content.as_deref(), row.images.as_deref())
            .unwrap_or_else(|e| panic!("chapter {} is invalid: {e}", row.id));
        for section in split.sections {
            sections.push((row.id, section.position, section.content, section.image));
        }
        covers.push((row.id, split.cover_image));
    }
    let images: Vec<Value> = sections.iter().filter_map(|s| s.3.clone()).collect();
    let mut normalised = db.through_jsonb(&images).into_iter();
    for section in sections.iter_mut().filter(|s| s.3.is_some()) {
        section.3 = normalised.next();
    }
    let images: Vec<Value> = covers.iter().filter_map(|c| c.1.clone()).collect();
    let mut normalised = db.through_jsonb(&images).into_iter();
    for cover in covers.iter_mut().filter(|c| c.1.is_some()) {
        cover.1 = normalised.next();
    }
    (sections, covers)
}

/// Asserts equality row by row, so a failure names the first differing row instead of
/// printing two huge vectors.
pub(crate) fn assert_rows_eq<T: PartialEq + std::fmt::Debug>(
    actual: &[T],
    expected: &[T],
    what: &str,
) {
    for (index, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert_eq!(a, e, "{what}: row {index} differs");
    }
    assert_eq!(actual.len(), expected.len(), "{what}: row counts differ");
}
