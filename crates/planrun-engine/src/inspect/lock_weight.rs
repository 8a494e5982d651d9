//! `planrun plan`'s lock impact on the target: the offline analysis of every stage's
//! locks and findings (`planrun-plan`'s `lock_impact`), weighed by what each locked
//! table holds on the target now (`pg_class`) and how often the application writes
//! it (`pg_stat_user_tables`, two samples a second apart), so that a finding on an
//! empty or new table is not a warning and one on a big, busy table stands out. The
//! analysis runs again knowing the tables' column types (`column_types.rs`), so that
//! a type change the offline analysis could only flag is decided.

use std::collections::BTreeMap;
use std::time::Duration;

use planrun_report::{StageLockWeight, TableNow, Weight};
use postgres::GenericClient;

use crate::apply::run::Runner;
use crate::db::connect::Target;
use crate::error::EngineError;
use crate::inspect::column_types::column_types;

impl Runner<'_> {
    /// The plan's lock impact weighed on `target` (read-only).
    pub fn lock_weight(&self, target: &Target) -> Result<Vec<StageLockWeight>, EngineError> {
        let offline = self.plan().lock_impact(self.dag(), self.registry());
        let mut relations: Vec<String> = offline
            .iter()
            .flat_map(|stage| stage.locks.iter().map(|lock| lock.relation.clone()))
            .collect();
        relations.sort();
        relations.dedup();
        // The plan's names resolve with the session's search_path, as when the plan
        // runs; every function, operator and cast is named with pg_catalog.
        let mut client = target.connect(&format!("planrun plan {}", self.plan().name))?;
        let known = column_types(&mut client, &relations).map_err(EngineError::database(
            "cannot read the column types of the locked tables",
        ))?;
        let impact = self
            .plan()
            .lock_impact_knowing(self.dag(), self.registry(), known);
        let measured = measure(&mut client, &relations).map_err(EngineError::database(
            "cannot read the sizes of the locked tables",
        ))?;
        Ok(impact
            .into_iter()
            .map(|stage| {
                let tables: Vec<TableNow> = stage
                    .locks
                    .iter()
                    .filter_map(|lock| measured.get(&lock.relation).cloned())
                    .collect();
                let weights = stage
                    .findings
                    .iter()
                    .map(|finding| {
                        let new = finding.relation.as_ref().is_some_and(|relation| {
                            stage
                                .locks
                                .iter()
                                .any(|lock| &lock.relation == relation && lock.new)
                        });
                        finding
                            .relation
                            .as_ref()
                            .and_then(|relation| measured.get(relation))
                            .map_or(Weight::Live, |table| table.weight(new))
                    })
                    .collect();
                StageLockWeight {
                    impact: stage,
                    tables,
                    weights,
                }
            })
            .collect())
    }
}

/// Size, rows and write rate of each relation, by the name the analysis gave it.
fn measure<C: GenericClient>(
    conn: &mut C,
    relations: &[String],
) -> Result<BTreeMap<String, TableNow>, postgres::Error> {
    const SAMPLE: &str = "SELECT coalesce((SELECT s.n_tup_ins OPERATOR(pg_catalog.+) s.n_tup_upd \
             OPERATOR(pg_catalog.+) s.n_tup_del FROM pg_catalog.pg_stat_user_tables s \
         WHERE s.relid OPERATOR(pg_catalog.=) \
             pg_catalog.to_regclass($1::pg_catalog.text)::pg_catalog.oid), 0)::pg_catalog.float8";
    let mut first = Vec::with_capacity(relations.len());
    for relation in relations {
        first.push(conn.query_one(SAMPLE, &[relation])?.get::<_, f64>(0));
    }
    let started = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let mut measured = BTreeMap::new();
    for (relation, before) in relations.iter().zip(first) {
        let after: f64 = conn.query_one(SAMPLE, &[relation])?.get(0);
        let row = conn.query_one(
            "SELECT c.oid IS NOT NULL, coalesce(pg_catalog.pg_total_relation_size(c.oid), 0),
                    coalesce(c.reltuples, 0)::pg_catalog.int8
             FROM (SELECT pg_catalog.to_regclass($1::pg_catalog.text)::pg_catalog.oid AS oid) r
             LEFT JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) r.oid",
            &[relation],
        )?;
        let exists: bool = row.get(0);
        let mut rows: i64 = row.get(2);
        let bytes: i64 = row.get(1);
        if exists && rows < 0 {
            // Never analysed: count, when that is cheap.
            rows = if bytes < 64 << 20 {
                let name: String = conn
                    .query_one(
                        "SELECT pg_catalog.to_regclass($1::pg_catalog.text)::pg_catalog.text",
                        &[relation],
                    )?
                    .get(0);
                conn.query_one(&format!("SELECT pg_catalog.count(*) FROM {name}"), &[])?
                    .get(0)
            } else {
                -1
            };
        }
        measured.insert(
            relation.clone(),
            TableNow {
                relation: relation.clone(),
                exists,
                bytes,
                rows,
                writes_per_second: (after - before).max(0.0) / started.elapsed().as_secs_f64(),
            },
        );
    }
    Ok(measured)
}
