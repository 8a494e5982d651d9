//! The envelope: the fields every JSON document begins with, flattened into it by
//! [`Document`], so that a script can tell what it reads (`format`,
//! `format_version`), who wrote it (`planrun_version`), when, and how it ended
//! (`outcome`, `exit_code`) before reading anything else.

use std::borrow::Cow;

use chrono::{DateTime, Local, SecondsFormat, TimeZone};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use crate::format::{Format, Timing};
use crate::{OutcomeCode, PLANRUN_VERSION};

/// An RFC 3339 time with its offset, e.g. `2025-03-01T14:05:09.120+01:00`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(String);

impl Timestamp {
    /// Now, in local time.
    pub fn now() -> Timestamp {
        Timestamp::of(&Local::now())
    }

    pub fn of<Tz: TimeZone>(time: &DateTime<Tz>) -> Timestamp
    where
        Tz::Offset: std::fmt::Display,
    {
        Timestamp(time.to_rfc3339_opts(SecondsFormat::Millis, false))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for Timestamp {
    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "RFC 3339, with the offset",
            "type": "string",
            "format": "date-time",
        })
    }
}

/// The fields every document begins with.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Envelope {
    /// What this document is, `planrun.<document>`: see `docs/exit-codes.md`.
    pub format: String,
    /// Moves only when a field is removed, renamed or changes meaning.
    pub format_version: u32,
    /// The planrun that printed it.
    pub planrun_version: String,
    /// When the command started (documents of commands that take time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// When it finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// From `started_at` to `finished_at`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// When the snapshot was taken (`status`, `check`, errors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generated_at: Option<Timestamp>,
    /// How the command ended, in one word; it names the exit code.
    pub outcome: OutcomeCode,
    /// The process's exit code (`docs/exit-codes.md`).
    pub exit_code: i32,
}

impl Envelope {
    fn bare(format: &Format, outcome: OutcomeCode) -> Envelope {
        debug_assert!(
            format.outcomes.contains(&outcome),
            "{} cannot end {outcome}",
            format.name
        );
        Envelope {
            format: format.name.to_owned(),
            format_version: format.version,
            planrun_version: PLANRUN_VERSION.to_owned(),
            started_at: None,
            finished_at: None,
            duration_ms: None,
            generated_at: None,
            outcome,
            exit_code: outcome.exit_code(),
        }
    }

    /// The envelope of a document with no time ([`Timing::Timeless`]).
    pub fn timeless(format: &Format, outcome: OutcomeCode) -> Envelope {
        debug_assert_eq!(format.timing, Timing::Timeless, "{}", format.name);
        Envelope::bare(format, outcome)
    }

    /// The envelope of a snapshot taken now ([`Timing::Instant`]).
    pub fn generated_now(format: &Format, outcome: OutcomeCode) -> Envelope {
        debug_assert_eq!(format.timing, Timing::Instant, "{}", format.name);
        Envelope {
            generated_at: Some(Timestamp::now()),
            ..Envelope::bare(format, outcome)
        }
    }

    /// The envelope of a command that started at `started` and finishes now
    /// ([`Timing::Span`]).
    pub fn finished_now(
        format: &Format,
        outcome: OutcomeCode,
        started: DateTime<Local>,
    ) -> Envelope {
        debug_assert_eq!(format.timing, Timing::Span, "{}", format.name);
        let finished = Local::now();
        Envelope {
            started_at: Some(Timestamp::of(&started)),
            finished_at: Some(Timestamp::of(&finished)),
            duration_ms: Some(
                (finished - started)
                    .num_milliseconds()
                    .try_into()
                    .unwrap_or(0),
            ),
            ..Envelope::bare(format, outcome)
        }
    }
}

/// A JSON document as planrun prints it: the envelope's fields, then the body's.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Document<B> {
    #[serde(flatten)]
    pub envelope: Envelope,
    #[serde(flatten)]
    pub body: B,
}

impl<B> Document<B> {
    pub fn new(envelope: Envelope, body: B) -> Document<B> {
        Document { envelope, body }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format;

    #[derive(Serialize, JsonSchema)]
    struct Body {
        plan: String,
    }

    #[test]
    fn the_envelope_comes_first_then_the_body() {
        let started = Local::now() - chrono::Duration::milliseconds(1500);
        let document = Document::new(
            Envelope::finished_now(&format::APPLY, OutcomeCode::Applied, started),
            Body {
                plan: "shop".into(),
            },
        );
        let value = serde_json::to_value(&document).unwrap();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "format",
                "format_version",
                "planrun_version",
                "started_at",
                "finished_at",
                "duration_ms",
                "outcome",
                "exit_code",
                "plan"
            ]
        );
        assert_eq!(value["format"], "planrun.apply");
        assert_eq!(value["outcome"], "applied");
        assert_eq!(value["exit_code"], 0);
        assert!(value["duration_ms"].as_u64().unwrap() >= 1500);
        for key in ["started_at", "finished_at"] {
            let text = value[key].as_str().unwrap();
            assert!(DateTime::parse_from_rfc3339(text).is_ok(), "{key}: {text}");
        }
    }

    #[test]
    fn a_timeless_document_has_no_time() {
        let value =
            serde_json::to_value(Envelope::timeless(&format::GRAPH, OutcomeCode::Ok)).unwrap();
        for key in ["started_at", "finished_at", "duration_ms", "generated_at"] {
            assert!(value.get(key).is_none(), "{key}");
        }
        assert_eq!(value["planrun_version"], PLANRUN_VERSION);
    }
}
