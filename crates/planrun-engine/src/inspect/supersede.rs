//! What `planrun verify` runs now. A stage's checks describe the database as the stage
//! left it when it committed; a stage applied after it may change on purpose what they
//! read (the memoir plan's stage 5 drops `chapter_sections.image`, which stage 2's
//! checks read; a stage that archives rows breaks the count an earlier stage checked).
//! Such a check no longer applies: it is superseded by that stage, reported with the
//! stage and the relations, and not run. Every other check runs and must pass.
//!
//! What a check reads comes from its SQL ([`planrun_sql::relations_read`]): the
//! relations whose rows it reads, and the relations it names in string constants,
//! whose definition a catalog query reads. What a stage changes comes from its SQL
//! steps ([`planrun_sql::relations_changed`]) and its transforms'
//! [`Transform::writes`](planrun_transform::Transform::writes), taken to change rows.
//! A check is superseded by a later stage that changes the rows or the definition of
//! a relation whose rows it reads, or the definition of a relation it names.
//!
//! Whatever cannot be seen counts as not changed, so that the check runs: a check whose
//! SQL does not parse, a read hidden in a function or a view, a step that changes
//! tables out of sight (a function call, `EXECUTE` in a `DO` block). Failing there is
//! a failure to read and fix, never a check skipped in silence.

use planrun_plan::{Check, Stage, StepKind};
use planrun_report::Supersession;
use planrun_sql::{relations_changed, relations_read, Change, QueryReads};
use planrun_transform::{transform_params, Registry};

use crate::checksum::StageDefinition;

/// A relation name as written, compared as PostgreSQL would most likely resolve it:
/// case and double quotes ignored, and a name without a schema matching that name in
/// any schema (the search path is the server's to know).
#[derive(Debug, Clone, PartialEq, Eq)]
struct RelationName {
    schema: Option<String>,
    name: String,
}

impl RelationName {
    fn parse(text: &str) -> RelationName {
        let plain = text.replace('"', "").to_lowercase();
        match plain.rsplit_once('.') {
            Some((schema, name)) => RelationName {
                schema: Some(schema.to_owned()),
                name: name.to_owned(),
            },
            None => RelationName {
                schema: None,
                name: plain,
            },
        }
    }

    fn matches(&self, other: &RelationName) -> bool {
        self.name == other.name
            && match (&self.schema, &other.schema) {
                (Some(mine), Some(theirs)) => mine == theirs,
                _ => true,
            }
    }
}

/// The relations one stage changes.
#[derive(Debug, Clone, Default)]
pub(crate) struct StageChanges {
    changes: Vec<(RelationName, Change)>,
}

impl StageChanges {
    /// What `stage` changes, its SQL as `definition` holds it.
    pub(crate) fn of(
        stage: &Stage,
        definition: &StageDefinition,
        registry: &Registry,
    ) -> StageChanges {
        let mut changes = Vec::new();
        for (position, step) in stage.steps.iter().enumerate() {
            match &step.kind {
                StepKind::Transform { name, params, .. } => {
                    let writes = registry
                        .get(name)
                        .map(|transform| transform.writes(&transform_params(params)))
                        .unwrap_or_default();
                    changes.extend(
                        writes
                            .iter()
                            .map(|table| (RelationName::parse(table), Change::Rows)),
                    );
                }
                StepKind::Sql { .. } | StepKind::SqlFile { .. } => {
                    let Some(sql) = definition.step_sql(position, &step.name) else {
                        continue;
                    };
                    // SQL that does not parse did not run either.
                    let Ok(changed) = relations_changed(sql) else {
                        continue;
                    };
                    changes.extend(
                        changed
                            .into_iter()
                            .map(|change| (RelationName::parse(&change.relation), change.change)),
                    );
                }
            }
        }
        StageChanges { changes }
    }

    fn changes_rows_of(&self, relation: &RelationName) -> bool {
        self.changes
            .iter()
            .any(|(changed, _)| changed.matches(relation))
    }

    fn changes_definition_of(&self, relation: &RelationName) -> bool {
        self.changes
            .iter()
            .any(|(changed, how)| *how == Change::Definition && changed.matches(relation))
    }
}

/// What `check` reads; `None` when its SQL cannot be analysed, and then it runs.
pub(crate) fn reads(check: &Check) -> Option<QueryReads> {
    relations_read(&check.sql).ok()
}

/// The stages of `later` (applied after the check's stage, in the order they were
/// applied) that changed what `reads` reads, each with those relations as the check
/// names them. Empty: the check still applies.
pub(crate) fn superseded_by(
    reads: Option<&QueryReads>,
    later: &[(&str, &StageChanges)],
) -> Vec<Supersession> {
    let Some(reads) = reads else {
        return Vec::new();
    };
    later
        .iter()
        .filter_map(|(stage, changes)| {
            let rows = reads
                .rows
                .iter()
                .filter(|relation| changes.changes_rows_of(&RelationName::parse(relation)));
            let named = reads
                .named
                .iter()
                .filter(|relation| changes.changes_definition_of(&RelationName::parse(relation)));
            let mut relations: Vec<String> = Vec::new();
            for relation in rows.chain(named) {
                if !relations.contains(relation) {
                    relations.push(relation.clone());
                }
            }
            (!relations.is_empty()).then(|| Supersession {
                stage: (*stage).to_owned(),
                relations,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(sql: &str) -> StageChanges {
        StageChanges {
            changes: relations_changed(sql)
                .unwrap()
                .into_iter()
                .map(|change| (RelationName::parse(&change.relation), change.change))
                .collect(),
        }
    }

    fn superseding(check_sql: &str, later_sql: &str) -> Vec<String> {
        let later = changes(later_sql);
        superseded_by(
            relations_read(check_sql).ok().as_ref(),
            &[("later", &later)],
        )
        .into_iter()
        .flat_map(|supersession| supersession.relations)
        .collect()
    }

    #[test]
    fn a_check_reading_rows_a_later_stage_writes_or_alters_is_superseded() {
        assert_eq!(
            superseding(
                "SELECT count(*) FROM orders",
                "WITH moved AS (DELETE FROM public.orders RETURNING *) INSERT INTO archive SELECT * FROM moved"
            ),
            ["orders"]
        );
        assert_eq!(
            superseding(
                "SELECT chapter_id FROM chapter_sections WHERE image IS NOT NULL",
                "ALTER TABLE public.chapter_sections DROP COLUMN image"
            ),
            ["chapter_sections"]
        );
        assert!(superseding(
            "SELECT count(*) FROM shop.orders",
            "DELETE FROM archive.orders"
        )
        .is_empty());
    }

    #[test]
    fn a_catalog_check_is_superseded_by_a_change_to_the_definition_it_names_only() {
        let columns = "SELECT string_agg(column_name, ',') FROM information_schema.columns
                       WHERE table_schema = 'public' AND table_name = 'chapter_sections'";
        assert_eq!(
            superseding(
                columns,
                "ALTER TABLE chapter_sections ADD COLUMN image_id bigint"
            ),
            ["chapter_sections"]
        );
        assert!(superseding(columns, "UPDATE chapter_sections SET content = ''").is_empty());
        assert!(superseding(
            columns,
            "CREATE TABLE memoir_images (section_id bigint REFERENCES chapter_sections (id))"
        )
        .is_empty());
    }

    #[test]
    fn a_check_that_cannot_be_analysed_or_whose_reads_are_hidden_still_runs() {
        assert!(superseding("SELECT count(* FROM orders", "DELETE FROM orders").is_empty());
        assert!(superseding("SELECT count_orders()", "DELETE FROM orders").is_empty());
        assert!(superseding(
            "SELECT count(*) FROM orders",
            "DO $$ BEGIN EXECUTE 'DELETE FROM orders'; END $$"
        )
        .is_empty());
    }

    #[test]
    fn names_compare_without_case_quotes_or_a_missing_schema() {
        let bare = RelationName::parse("Chapters");
        assert!(bare.matches(&RelationName::parse("public.chapters")));
        assert!(RelationName::parse("\"public\".\"chapters\"").matches(&bare));
        assert!(!RelationName::parse("archive.chapters")
            .matches(&RelationName::parse("public.chapters")));
    }
}
