//! A writer thread: updates, inserts and deletes of the chapters it owns, each one
//! autocommit statement, and the state every committed write left behind. A writer
//! that follows the shape writes sections once the legacy columns are gone
//! (`new_shape.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::types::{ToSql, Type};
use postgres::{Client, Row};
use rand::seq::IndexedRandom;
use rand::Rng;

use crate::expectation::{Expectation, Fate};
use crate::generated;
use crate::new_shape::{section_write_sql, SectionWrite, SectionsState};
use crate::shape::{SectionImage, Shape};
use crate::thread_context::{error_text, keep_error, ThreadContext};
use crate::{LegacyState, WriteKind};

/// What one writer did, absorbed into the [`AppLog`](crate::AppLog) when it stops.
#[derive(Default)]
pub(crate) struct WriterLog {
    pub(crate) committed: BTreeMap<WriteKind, u64>,
    pub(crate) committed_in_new_shape: u64,
    pub(crate) failed: BTreeMap<WriteKind, u64>,
    pub(crate) in_doubt: u64,
    pub(crate) without_effect: u64,
    pub(crate) longest_wait: Duration,
    pub(crate) first_errors: Vec<String>,
    pub(crate) chapters: BTreeMap<i64, Expectation>,
}

/// How one write statement ended.
enum Outcome {
    /// It committed and returned these rows.
    Committed(Vec<Row>),
    /// The server rejected it: nothing committed.
    Failed,
    /// The connection broke first: it may have committed.
    InDoubt,
    /// A writer following the shape named a table or column that is gone: nothing
    /// committed, and the write is tried again in the database's shape.
    WrongShape,
}

/// One writer thread, named `app-writer-N` for writer `N`.
pub(crate) struct Writer {
    context: ThreadContext,
    index: usize,
    client: Option<Client>,
    /// The chapters only this writer writes.
    owned: Vec<i64>,
    memoir_ids: Arc<Vec<i64>>,
    /// The SQL type of `chapters.images`, which the images parameter is cast to.
    images_type: String,
    /// Numbers every generated value, so that each write's content is distinct.
    serial: u64,
    /// The shape this writer writes, when it follows the database's; `None`: legacy only.
    shape: Option<Shape>,
    log: WriterLog,
}

impl Writer {
    /// A writer that owns the chapters `owned` and inserts into the memoirs
    /// `memoir_ids`; it connects when it runs.
    pub(crate) fn new(
        context: ThreadContext,
        index: usize,
        owned: Vec<i64>,
        memoir_ids: Arc<Vec<i64>>,
        images_type: String,
        follow_shape: bool,
    ) -> Writer {
        Writer {
            context,
            index,
            client: None,
            owned,
            memoir_ids,
            images_type,
            serial: 0,
            shape: follow_shape.then_some(Shape::Legacy),
            log: WriterLog::default(),
        }
    }

    pub(crate) fn run(mut self) -> WriterLog {
        while !self.context.should_stop() {
            if self.client.as_ref().is_none_or(Client::is_closed) {
                self.client = self.context.connect(&mut self.log.first_errors);
                self.follow_shape();
                continue;
            }
            let roll = self.context.rng.random_range(0..100);
            let chapter = self.owned.choose(&mut self.context.rng).copied();
            if chapter.is_none() && self.memoir_ids.is_empty() {
                break;
            }
            // A write the shape changed under is tried again in the new one; a shape
            // changes a few times in a run, so three tries are plenty.
            for _ in 0..3 {
                let outcome = match (self.shape, chapter) {
                    (Some(Shape::Migrated { image }), Some(id)) if roll < 90 => {
                        let write = match roll < 45 {
                            true => SectionWrite::Content,
                            false => SectionWrite::Image,
                        };
                        self.update_section(id, write, image)
                    }
                    (Some(Shape::Migrated { .. }), None) => break,
                    (_, Some(id)) if roll < 40 => self.update_content(id),
                    (_, Some(id)) if roll < 75 => self.update_images(id),
                    (_, Some(id)) if roll >= 90 => self.delete_chapter(id),
                    _ => self.insert_chapter(),
                };
                if !outcome {
                    break;
                }
                self.follow_shape();
            }
            self.context.pause();
        }
        self.log
    }

    /// Reads the database's shape, when this writer follows it.
    fn follow_shape(&mut self) {
        if let (Some(shape), Some(client)) = (self.shape.as_mut(), self.client.as_mut()) {
            if let Ok(now) = Shape::of(client) {
                *shape = now;
            }
        }
    }

    /// One write in the new shape: `write` to one of the chapter's sections; true when
    /// the shape changed under it.
    fn update_section(&mut self, id: i64, write: SectionWrite, image: SectionImage) -> bool {
        self.serial += 1;
        let value = match write {
            SectionWrite::Content => format!(
                "Rewritten in the new shape by app-writer-{} #{}.",
                self.index, self.serial
            ),
            SectionWrite::Image => format!(
                r#"{{"url": "https://img.example/w{}/s{}.jpg", "caption": "replaced in the new shape", "width": {}}}"#,
                self.index,
                self.serial,
                self.context.rng.random_range(100..2000)
            ),
        };
        let pick = self.serial.to_string();
        let kind = match write {
            SectionWrite::Content => WriteKind::UpdateContent,
            SectionWrite::Image => WriteKind::UpdateImages,
        };
        let sql = section_write_sql(write, image);
        let params: [(&(dyn ToSql + Sync), Type); 3] =
            [(&value, Type::TEXT), (&id, Type::INT8), (&pick, Type::TEXT)];
        match self.write(kind, id, &sql, &params) {
            Outcome::Committed(rows) => match SectionsState::from_rows(&rows) {
                Some(state) => {
                    self.log.committed_in_new_shape += 1;
                    self.context
                        .progress
                        .update(|p| p.committed_in_new_shape += 1);
                    self.record(kind, id, Fate::Sections(state));
                    false
                }
                // No eligible section, or the sections went back into chapters.
                None => {
                    let before = self.shape;
                    self.follow_shape();
                    let moved = self.shape != before;
                    if !moved {
                        self.log.without_effect += 1;
                    }
                    moved
                }
            },
            Outcome::Failed => false,
            Outcome::WrongShape => true,
            Outcome::InDoubt => {
                self.in_doubt(id, None);
                false
            }
        }
    }

    fn update_content(&mut self, id: i64) -> bool {
        let content = self.content();
        let sql = "UPDATE chapters SET content = $1, updated_at = now() WHERE id = $2 \
                   RETURNING images::text";
        let outcome = self.write(
            WriteKind::UpdateContent,
            id,
            sql,
            &[(&content, Type::TEXT), (&id, Type::INT8)],
        );
        match outcome {
            Outcome::Committed(rows) => match rows.first() {
                Some(row) => self.committed(WriteKind::UpdateContent, id, (content, row.get(0))),
                None => self.vanished(id),
            },
            Outcome::Failed => {}
            Outcome::WrongShape => return true,
            Outcome::InDoubt => {
                let attempted = self
                    .known_state(id)
                    .map(|(_, images)| Fate::Present((content, images)));
                self.in_doubt(id, attempted);
            }
        }
        false
    }

    fn update_images(&mut self, id: i64) -> bool {
        let images = self.images();
        let sql = format!(
            "UPDATE chapters SET images = $1::text::{}, updated_at = now() WHERE id = $2 \
             RETURNING content, images::text",
            self.images_type
        );
        match self.write(
            WriteKind::UpdateImages,
            id,
            &sql,
            &[(&images, Type::TEXT), (&id, Type::INT8)],
        ) {
            Outcome::Committed(rows) => match rows.first() {
                Some(row) => self.committed(WriteKind::UpdateImages, id, (row.get(0), row.get(1))),
                None => self.vanished(id),
            },
            Outcome::Failed => {}
            Outcome::WrongShape => return true,
            Outcome::InDoubt => {
                // The images as the column would print them are not known without the
                // RETURNING row, so an in-doubt images update leaves the chapter unknown.
                self.in_doubt(id, None);
            }
        }
        false
    }

    fn insert_chapter(&mut self) -> bool {
        let memoir_id = *self
            .memoir_ids
            .choose(&mut self.context.rng)
            .expect("the caller checked there are memoirs");
        let content = self.content();
        let images = self.images();
        let title = format!("Chapter by app-writer-{} #{}", self.index, self.serial);
        let sql = format!(
            "INSERT INTO chapters (memoir_id, position, title, content, images)
             SELECT $1, coalesce(max(position), 0) + 1, $2, $3, $4::text::{}
             FROM chapters WHERE memoir_id = $1
             RETURNING id, content, images::text",
            self.images_type
        );
        let params: [(&(dyn ToSql + Sync), Type); 4] = [
            (&memoir_id, Type::INT8),
            (&title, Type::TEXT),
            (&content, Type::TEXT),
            (&images, Type::TEXT),
        ];
        // An insert has no chapter id until it returns one; 0 labels its errors.
        match self.write(WriteKind::InsertChapter, 0, &sql, &params) {
            Outcome::Committed(rows) => {
                let row = rows
                    .first()
                    .expect("INSERT ... SELECT with max() inserts a row");
                let id: i64 = row.get(0);
                self.owned.push(id);
                self.committed(WriteKind::InsertChapter, id, (row.get(1), row.get(2)));
            }
            Outcome::Failed => {}
            Outcome::WrongShape => return true,
            // An in-doubt insert has no id to check; its chapter is not this writer's.
            Outcome::InDoubt => self.log.in_doubt += 1,
        }
        false
    }

    fn delete_chapter(&mut self, id: i64) -> bool {
        let sql = "DELETE FROM chapters WHERE id = $1 RETURNING id";
        match self.write(WriteKind::DeleteChapter, id, sql, &[(&id, Type::INT8)]) {
            Outcome::Committed(rows) if rows.is_empty() => self.vanished(id),
            Outcome::Committed(_) => {
                self.disown(id);
                self.record(WriteKind::DeleteChapter, id, Fate::Deleted);
            }
            Outcome::Failed => {}
            Outcome::WrongShape => return true,
            Outcome::InDoubt => self.in_doubt(id, Some(Fate::Deleted)),
        }
        false
    }

    /// Runs one autocommit write statement, timing it and counting failures.
    /// `query_typed` sends it as one unnamed statement, as an application behind a
    /// transaction-mode pooler must: a named one prepared in one transaction may be
    /// on another server connection in the next.
    fn write(
        &mut self,
        kind: WriteKind,
        chapter: i64,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Outcome {
        let client = self
            .client
            .as_mut()
            .expect("the writer connects before writing");
        let sent = Instant::now();
        let result = client.query_typed(sql, params);
        self.log.longest_wait = self.log.longest_wait.max(sent.elapsed());
        match result {
            Ok(rows) => Outcome::Committed(rows),
            Err(error) => {
                let message = format!(
                    "{} {} (chapter {chapter}): {}",
                    self.context.name,
                    kind.name(),
                    error_text(&error)
                );
                keep_error(&mut self.log.first_errors, message);
                if may_have_committed(&error) {
                    return Outcome::InDoubt;
                }
                *self.log.failed.entry(kind).or_default() += 1;
                self.context.progress.update(|p| p.failed += 1);
                if self.shape.is_some() && names_what_is_gone(&error) {
                    Outcome::WrongShape
                } else {
                    Outcome::Failed
                }
            }
        }
    }

    fn committed(&mut self, kind: WriteKind, id: i64, state: LegacyState) {
        self.record(kind, id, Fate::Present(state));
    }

    fn record(&mut self, kind: WriteKind, id: i64, fate: Fate) {
        self.log.chapters.insert(
            id,
            Expectation {
                committed: Some(fate),
                ..Expectation::default()
            },
        );
        *self.log.committed.entry(kind).or_default() += 1;
        self.context
            .progress
            .update(|p| *p.committed.entry(kind).or_default() += 1);
    }

    /// An update or delete found no row: the chapter is gone, and no longer written.
    fn vanished(&mut self, id: i64) {
        self.log.without_effect += 1;
        self.disown(id);
    }

    /// A write to `id` may or may not have committed `attempted` (`None`: a state the
    /// writer cannot know). The chapter is left alone from now on, so that it stays
    /// either as it was or as attempted.
    fn in_doubt(&mut self, id: i64, attempted: Option<Fate>) {
        self.log.in_doubt += 1;
        self.context.progress.update(|p| p.failed += 1);
        self.disown(id);
        let expectation = self.log.chapters.entry(id).or_default();
        match attempted {
            Some(fate) => expectation.in_doubt.push(fate),
            None => expectation.unknown = true,
        }
    }

    fn disown(&mut self, id: i64) {
        self.owned.retain(|owned| *owned != id);
    }

    /// The chapter's whole state when a committed write of this writer established it.
    fn known_state(&self, id: i64) -> Option<LegacyState> {
        let expectation = self.log.chapters.get(&id)?;
        match (&expectation.committed, expectation.in_doubt.is_empty()) {
            (Some(Fate::Present(state)), true) => Some(state.clone()),
            _ => None,
        }
    }

    fn content(&mut self) -> Option<String> {
        self.serial += 1;
        generated::content(&mut self.context.rng, self.index, self.serial)
    }

    fn images(&mut self) -> Option<String> {
        self.serial += 1;
        generated::images(&mut self.context.rng, self.index, self.serial)
    }
}

/// Whether `error` says the statement named a table or column that does not exist: the
/// shape changed under a writer that follows it.
fn names_what_is_gone(error: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    error.code().is_some_and(|code| {
        *code == SqlState::UNDEFINED_COLUMN || *code == SqlState::UNDEFINED_TABLE
    })
}

/// Whether a write that returned `error` may still have committed: the connection
/// broke, or the server ended the session (FATAL), without a definite answer.
fn may_have_committed(error: &postgres::Error) -> bool {
    match error.as_db_error() {
        Some(db) => matches!(db.severity(), "FATAL" | "PANIC"),
        None => true,
    }
}
