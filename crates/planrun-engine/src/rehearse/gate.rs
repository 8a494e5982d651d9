//! The gate of `apply --require-rehearsal`: the fields of a rehearsal report it
//! reads ([`RehearsalEvidence`]) and every reason ([`Refusal`]) the report does not
//! allow this apply: another plan or plan version, another database, stages it left
//! out, a failed or over-budget rehearsal, or one older than `max_rehearsal_age`.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Local};
use planrun_report::StageStatus;
use serde::Deserialize;

use crate::exit_codes;
use planrun_contract::format;

use crate::rehearse::report::{readable_format, FORMAT};

/// How old a rehearsal may be when the plan sets no `max_rehearsal_age`.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// The fields of a rehearsal report that `apply --require-rehearsal` reads; the
/// rest of the file is for people.
#[derive(Debug, Clone, Deserialize)]
pub struct RehearsalEvidence {
    pub format: String,
    /// Absent from reports of [`LEGACY_FORMAT`](crate::rehearse::LEGACY_FORMAT).
    #[serde(default)]
    pub format_version: Option<u32>,
    pub plan: String,
    pub plan_checksum: String,
    pub finished_at: String,
    pub outcome: String,
    pub exit_code: i32,
    pub target_identity: EvidenceTarget,
    pub stages: Vec<EvidenceStage>,
    /// The revert the rehearsal proved, if it reverted (`revert --require-rehearsal`).
    #[serde(default)]
    pub revert: Option<EvidenceRevert>,
}

/// What `revert --require-rehearsal` reads of a rehearsal's `revert` section.
#[derive(Debug, Clone, Deserialize)]
pub struct EvidenceRevert {
    pub stages: Vec<EvidenceRevertStage>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EvidenceRevertStage {
    pub id: String,
    pub proved: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EvidenceStage {
    pub id: String,
    pub status: StageStatus,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EvidenceTarget {
    pub database: String,
}

/// Why `apply --require-rehearsal` refuses; each says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("cannot use {file} as a rehearsal report: {reason}; run `planrun rehearse` and pass the report it writes")]
    Unreadable { file: String, reason: String },
    #[error("mismatched: the plan changed since it was rehearsed ({what}); rehearse this version: `planrun rehearse`")]
    Mismatched { what: String },
    #[error("mismatched: the rehearsal copied database `{rehearsed}`, this apply targets `{target}`; rehearse against this target")]
    OtherDatabase { rehearsed: String, target: String },
    #[error("unrehearsed: this apply runs {stages}, which the rehearsal left out (optional, or outside its --stage/--until); rehearse with the selection this apply uses")]
    Unrehearsed { stages: String },
    #[error("failed: the rehearsal ended {outcome} (exit {exit_code}); fix the plan, then rehearse again until it passes")]
    Failed { outcome: String, exit_code: i32 },
    #[error("unproved: the rehearsal did not prove the revert of {stages}; rehearse a plan whose reverts the rehearsal proves exact")]
    RevertUnproved { stages: String },
    #[error("stale: cannot tell when the rehearsal finished (finished_at `{finished_at}`: {reason}); rehearse again")]
    NoTimestamp { finished_at: String, reason: String },
    #[error("stale: the rehearsal finished {age} ago ({finished_at}), longer ago than max_rehearsal_age {max}; rehearse again")]
    Stale {
        age: String,
        finished_at: String,
        max: String,
    },
}

/// What `apply --require-rehearsal` needs to know of the plan and target.
#[derive(Debug, Clone)]
pub struct RehearsalRequirement<'a> {
    pub plan: &'a str,
    pub plan_checksum: &'a str,
    pub database: &'a str,
    /// The stages this apply selects ([`Runner::selected_stages`]); each must have been
    /// selected by the rehearsal too.
    pub stages: &'a [&'a str],
    /// The plan's `max_rehearsal_age`, else [`DEFAULT_MAX_AGE`].
    pub max_age: Duration,
    pub now: DateTime<FixedOffset>,
}

/// The current local time, for [`RehearsalRequirement::now`].
pub fn now() -> DateTime<FixedOffset> {
    Local::now().fixed_offset()
}

/// Every reason the rehearsal report in `file` does not allow this apply; empty when
/// it does.
pub fn check_rehearsal(file: &Path, need: &RehearsalRequirement<'_>) -> Vec<Refusal> {
    let unreadable = |reason: String| {
        vec![Refusal::Unreadable {
            file: file.display().to_string(),
            reason,
        }]
    };
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(error) => return unreadable(error.to_string()),
    };
    let evidence: RehearsalEvidence = match serde_json::from_str(&text) {
        Ok(evidence) => evidence,
        Err(error) => return unreadable(format!("not a rehearsal report: {error}")),
    };
    if !readable_format(&evidence.format, evidence.format_version) {
        return unreadable(format!(
            "its format is `{}` version {}, this planrun reads `{FORMAT}` version {}",
            evidence.format,
            evidence
                .format_version
                .map_or_else(|| "-".to_owned(), |version| version.to_string()),
            format::REHEARSAL.version
        ));
    }
    refusals(&evidence, need)
}

/// Every reason the rehearsal report in `file` does not allow a revert of
/// `reverted` (the stages it may undo): those of [`check_rehearsal`], and any of them
/// whose revert the report does not record as proved.
pub fn check_revert_rehearsal(
    file: &Path,
    need: &RehearsalRequirement<'_>,
    reverted: &[&str],
) -> Vec<Refusal> {
    let mut found = check_rehearsal(file, need);
    if matches!(found.first(), Some(Refusal::Unreadable { .. })) {
        return found;
    }
    let proved: Vec<String> = std::fs::read_to_string(file)
        .ok()
        .and_then(|text| serde_json::from_str::<RehearsalEvidence>(&text).ok())
        .and_then(|evidence| evidence.revert)
        .map(|revert| {
            revert
                .stages
                .into_iter()
                .filter(|stage| stage.proved)
                .map(|stage| stage.id)
                .collect()
        })
        .unwrap_or_default();
    let unproved: Vec<&str> = reverted
        .iter()
        .copied()
        .filter(|id| !proved.iter().any(|proved| proved == id))
        .collect();
    if !unproved.is_empty() {
        found.push(Refusal::RevertUnproved {
            stages: unproved.join(", "),
        });
    }
    found
}

/// [`check_rehearsal`] on a report already read.
pub fn refusals(evidence: &RehearsalEvidence, need: &RehearsalRequirement<'_>) -> Vec<Refusal> {
    let mut refusals = Vec::new();
    if evidence.plan != need.plan {
        refusals.push(Refusal::Mismatched {
            what: format!(
                "the report is of plan `{}`, not `{}`",
                evidence.plan, need.plan
            ),
        });
    } else if evidence.plan_checksum != need.plan_checksum {
        refusals.push(Refusal::Mismatched {
            what: format!(
                "rehearsed checksum {}, now {}",
                short(&evidence.plan_checksum),
                short(need.plan_checksum)
            ),
        });
    }
    let left_out: Vec<&str> = need
        .stages
        .iter()
        .copied()
        .filter(|id| {
            !evidence
                .stages
                .iter()
                .any(|stage| stage.id == *id && stage.status != StageStatus::NotSelected)
        })
        .collect();
    if !left_out.is_empty() {
        refusals.push(Refusal::Unrehearsed {
            stages: left_out.join(", "),
        });
    }
    if evidence.target_identity.database != need.database {
        refusals.push(Refusal::OtherDatabase {
            rehearsed: evidence.target_identity.database.clone(),
            target: need.database.to_owned(),
        });
    }
    if evidence.exit_code != exit_codes::SUCCESS {
        refusals.push(Refusal::Failed {
            outcome: evidence.outcome.clone(),
            exit_code: evidence.exit_code,
        });
    }
    match DateTime::parse_from_rfc3339(&evidence.finished_at) {
        Ok(finished) => {
            // A clock behind the report's reads as age zero, not as an error.
            let age = (need.now - finished).to_std().unwrap_or(Duration::ZERO);
            if age > need.max_age {
                refusals.push(Refusal::Stale {
                    age: human(age),
                    finished_at: evidence.finished_at.clone(),
                    max: human(need.max_age),
                });
            }
        }
        Err(error) => refusals.push(Refusal::NoTimestamp {
            finished_at: evidence.finished_at.clone(),
            reason: error.to_string(),
        }),
    }
    refusals
}

fn short(checksum: &str) -> &str {
    checksum.get(..12).unwrap_or(checksum)
}

/// `3 d 4 h`, `5 h 2 min`, `40 s`.
fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, _) => format!("{m} min {s} s"),
        (0, _, _) => format!("{h} h {m} min"),
        _ => format!("{d} d {h} h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence(exit_code: i32, finished_at: &str) -> RehearsalEvidence {
        RehearsalEvidence {
            format: FORMAT.into(),
            format_version: Some(format::REHEARSAL.version),
            plan: "shop".into(),
            plan_checksum: "abc".into(),
            finished_at: finished_at.into(),
            outcome: "success".into(),
            exit_code,
            target_identity: EvidenceTarget {
                database: "app".into(),
            },
            stages: [
                ("create", StageStatus::AlreadyApplied),
                ("load", StageStatus::Applied),
                ("cleanup", StageStatus::NotSelected),
            ]
            .into_iter()
            .map(|(id, status)| EvidenceStage {
                id: id.into(),
                status,
            })
            .collect(),
            revert: None,
        }
    }

    #[test]
    fn reports_of_this_format_and_of_the_one_before_the_envelope_are_read() {
        assert!(readable_format("planrun.rehearsal", Some(1)));
        assert!(readable_format("planrun-rehearsal/1", None));
        assert!(!readable_format("planrun.rehearsal", None));
        assert!(!readable_format("planrun.rehearsal", Some(2)));
        assert!(!readable_format("planrun.apply", Some(1)));
    }

    fn need(now: &str) -> RehearsalRequirement<'static> {
        RehearsalRequirement {
            plan: "shop",
            plan_checksum: "abc",
            database: "app",
            stages: &["create", "load"],
            max_age: DEFAULT_MAX_AGE,
            now: DateTime::parse_from_rfc3339(now).expect("a valid timestamp"),
        }
    }

    #[test]
    fn a_fresh_passing_matching_rehearsal_is_accepted() {
        let ok = evidence(0, "2024-05-01T10:00:00+02:00");
        assert!(refusals(&ok, &need("2024-05-03T10:00:00+00:00")).is_empty());
        // A report from a clock ahead of ours is not stale.
        assert!(refusals(&ok, &need("2024-04-30T10:00:00+00:00")).is_empty());
    }

    #[test]
    fn each_reason_is_reported() {
        let old_and_failed = evidence(13, "2024-01-01T00:00:00+00:00");
        let found = refusals(&old_and_failed, &need("2024-05-03T00:00:00+00:00"));
        assert!(matches!(found[0], Refusal::Failed { exit_code: 13, .. }));
        assert!(matches!(&found[1], Refusal::Stale { age, .. } if age.starts_with("123 d")));
        let mut other = evidence(0, "2024-05-01T00:00:00+00:00");
        other.plan_checksum = "def".into();
        other.target_identity.database = "staging".into();
        let found = refusals(&other, &need("2024-05-01T01:00:00+00:00"));
        assert_eq!(found.len(), 2);
        assert!(found[0]
            .to_string()
            .starts_with("mismatched: the plan changed"));
        assert!(found[1].to_string().contains("`staging`"));
    }

    #[test]
    fn a_stage_the_rehearsal_left_out_is_refused() {
        let ok = evidence(0, "2024-05-01T10:00:00+00:00");
        let mut wider = need("2024-05-01T11:00:00+00:00");
        wider.stages = &["create", "load", "cleanup"];
        let found = refusals(&ok, &wider);
        assert_eq!(
            found,
            [Refusal::Unrehearsed {
                stages: "cleanup".into()
            }]
        );
        assert!(found[0]
            .to_string()
            .starts_with("unrehearsed: this apply runs cleanup,"));
        // Fewer stages than the rehearsal ran is fine.
        let mut narrower = need("2024-05-01T11:00:00+00:00");
        narrower.stages = &["create"];
        assert!(refusals(&ok, &narrower).is_empty());
    }

    #[test]
    fn ages_read_well() {
        assert_eq!(human(Duration::from_secs(90)), "1 min 30 s");
    }
}
