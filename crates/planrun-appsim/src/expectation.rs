//! What a writer remembers about each chapter it wrote: the state its last committed
//! write left, and the alternatives in-doubt writes since then may have left instead.

use crate::new_shape::SectionsState;

/// A chapter's legacy columns as a committed write left them: `(content, images as JSON
/// text)`, `None` for SQL NULL.
pub type LegacyState = (Option<String>, Option<String>);

/// What a chapter holds after a write.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Fate {
    Present(LegacyState),
    Deleted,
    /// A write in the new shape left the chapter with these sections and cover.
    Sections(SectionsState),
}

impl Fate {
    pub(crate) fn as_present(&self) -> Option<&LegacyState> {
        match self {
            Fate::Present(state) => Some(state),
            Fate::Deleted | Fate::Sections(_) => None,
        }
    }
}

/// What one chapter may hold now, as far as its writer knows.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Expectation {
    /// What the last committed write left; `None` before any committed write.
    pub(crate) committed: Option<Fate>,
    /// What in-doubt writes since then attempted, each an alternative to `committed`.
    pub(crate) in_doubt: Vec<Fate>,
    /// An in-doubt write since then attempted something the writer cannot know whole.
    pub(crate) unknown: bool,
}

impl Expectation {
    /// The states the chapter may be in now, last committed first; `None` when there
    /// is nothing to check.
    pub(crate) fn acceptable(&self) -> Option<Vec<&Fate>> {
        let committed = self.committed.as_ref()?;
        if self.unknown {
            return None;
        }
        Some(std::iter::once(committed).chain(&self.in_doubt).collect())
    }
}
