//! What a batched stage that stopped part-way leaves behind: its committed batches,
//! its checkpoint and its change capture, and the commands that resume or abandon it.

use schemars::JsonSchema;
use serde::Serialize;

/// A half-done batched stage: what of it remains, and the commands that go on.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct LeftBehind {
    /// Batches committed (by this run and earlier ones); they stay.
    pub batches: i64,
    pub rows_read: i64,
    /// Rows the committed batches wrote; they stay.
    pub rows_written: i64,
    pub rows_quarantined: i64,
    /// The checkpoint: the key of the last source row a committed batch processed;
    /// a re-run resumes after it.
    pub last_key: Option<i64>,
    /// The tables the change capture is installed on (`schema.table`): it goes on
    /// recording the application's writes until the stage finishes or is reset.
    pub capture_on: Vec<String>,
    /// Changes it recorded that are not redone yet.
    pub pending_changes: i64,
    /// The command that resumes the stage after the checkpoint.
    pub resume: String,
    /// The command that abandons it, undoing the committed batches.
    pub abandon: String,
}

impl LeftBehind {
    /// In words, for the stage's note.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "{} batches committed ({} rows written), checkpoint after key {}",
            self.batches,
            self.rows_written,
            self.last_key.map_or("-".into(), |key| key.to_string())
        );
        if !self.capture_on.is_empty() {
            text.push_str(&format!(
                ", change capture installed on {} ({} changes by the application to redo)",
                self.capture_on.join(", "),
                self.pending_changes
            ));
        }
        text
    }

    /// The next command, in words.
    pub fn next(&self, stage: &str) -> String {
        format!(
            "run `{}` again to resume {stage}, or `{}` to abandon it",
            self.resume, self.abandon
        )
    }
}
