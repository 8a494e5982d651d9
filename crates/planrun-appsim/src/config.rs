//! What the test chooses about the simulated application: how many threads, how fast,
//! which seed ([`AppConfig`]), and the kinds of write it makes ([`WriteKind`]).

use std::time::Duration;

/// How many threads the simulated application runs and how fast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppConfig {
    /// Writer threads; each owns the chapters with `id % writers == index`.
    pub writers: usize,
    /// Reader threads doing primary-key reads of random chapters.
    pub readers: usize,
    /// Time each thread waits between two operations.
    pub pause: Duration,
    /// Seed of the random operations: thread `i` uses `seed + i` (writers first).
    pub seed: u64,
    /// Safety limit: every thread stops by itself after this long.
    pub max_duration: Duration,
    /// Writers follow the database's shape, as an application deployed beside the
    /// migration and its revert would: legacy `chapters` columns while they exist,
    /// `chapter_sections` (its `image`, or `memoir_images` through `image_id`) once
    /// they are gone. A write that fails because a column or table it names vanished
    /// mid-flight, or an update that finds its sections gone, is tried again in the
    /// shape the database is in then. Off: writers write the legacy shape only, and
    /// those writes fail once it is gone.
    pub follow_shape: bool,
    /// Writers own only the chapters with an id below this one (and those they
    /// insert), so that a test can compare the others before and after; `None`: all.
    pub chapter_ids_below: Option<i64>,
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            writers: 2,
            readers: 2,
            pause: Duration::from_millis(2),
            seed: 1,
            max_duration: Duration::from_secs(600),
            follow_shape: false,
            chapter_ids_below: None,
        }
    }
}

/// The kinds of write the old application version makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WriteKind {
    /// `UPDATE chapters SET content = ...` of one of the writer's chapters.
    UpdateContent,
    /// `UPDATE chapters SET images = ...` with a valid images value (or NULL, `null`, `[]`).
    UpdateImages,
    /// `INSERT INTO chapters` into an existing memoir; the chapter becomes the writer's.
    InsertChapter,
    /// `DELETE FROM chapters` of one of the writer's chapters.
    DeleteChapter,
}

impl WriteKind {
    /// Every kind, in a fixed order.
    pub const ALL: [WriteKind; 4] = [
        WriteKind::UpdateContent,
        WriteKind::UpdateImages,
        WriteKind::InsertChapter,
        WriteKind::DeleteChapter,
    ];

    /// A short lowercase name for reports.
    pub fn name(self) -> &'static str {
        match self {
            WriteKind::UpdateContent => "update content",
            WriteKind::UpdateImages => "update images",
            WriteKind::InsertChapter => "insert chapter",
            WriteKind::DeleteChapter => "delete chapter",
        }
    }
}
