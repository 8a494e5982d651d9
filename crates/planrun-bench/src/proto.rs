//! In-process prototypes of split_chapters' loop, with the time of each phase, to show
//! where the transform's time goes and what the proposals in `docs/performance.md` gain.
//!
//! `PlanrunLike` follows `split_transform.rs` statement for statement (a portal over
//! `chapters ORDER BY id`, `batch_rows` chapters per fetch, one binary COPY of sections
//! and one of covers per batch, one `UPDATE ... FROM` at the end), so its total should
//! match the transform step of (a); the other variants change one thing each. None of
//! this is the transform: quarantine, progress and schema checks are left out, as they
//! cost nothing measurable here.

use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::{Duration, Instant};

use planrun_memoir::{split_chapter, SplitChapter};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;
use postgres::{Row, Transaction};
use serde_json::Value;

use crate::data::{connect, db_error};
use crate::floor::{read_sql, ADD_CONSTRAINTS, SECTIONS_WITHOUT_CONSTRAINTS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Variant {
    /// What split_chapters does today.
    PlanrunLike,
    /// Ten times the default batch: fewer round trips and COPY statements.
    BigBatches,
    /// chapter_sections created bare, constraints added after the load.
    ConstraintsAfter,
    /// Constraints after, and split_chapter on a second thread while the connection
    /// fetches and writes.
    ConstraintsAfterPipelined,
}

impl Variant {
    pub(crate) const ALL: [Variant; 4] = [
        Variant::PlanrunLike,
        Variant::BigBatches,
        Variant::ConstraintsAfter,
        Variant::ConstraintsAfterPipelined,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Variant::PlanrunLike => "as split_chapters (batch 5000)",
            Variant::BigBatches => "as split_chapters, batch 50000",
            Variant::ConstraintsAfter => "constraints after load",
            Variant::ConstraintsAfterPipelined => "constraints after + split thread",
        }
    }

    pub(crate) fn database(self) -> &'static str {
        match self {
            Variant::PlanrunLike => "proto_planrun_like",
            Variant::BigBatches => "proto_big_batches",
            Variant::ConstraintsAfter => "proto_constraints_after",
            Variant::ConstraintsAfterPipelined => "proto_pipelined",
        }
    }

    fn batch_rows(self) -> i32 {
        match self {
            Variant::BigBatches => 50_000,
            _ => 5_000,
        }
    }

    fn constraints_after(self) -> bool {
        matches!(
            self,
            Variant::ConstraintsAfter | Variant::ConstraintsAfterPipelined
        )
    }
}

/// Where one prototype run spent its time. Phases of the serial loop add up to its
/// total; in the pipelined one `split` is the time the connection waited for the worker.
#[derive(Debug, Default)]
pub(crate) struct Phases {
    pub variant: Option<Variant>,
    pub fetch: Duration,
    pub split: Duration,
    pub write_sections: Duration,
    pub write_covers: Duration,
    pub update_covers: Duration,
    pub constraints: Option<Duration>,
    pub total: Duration,
    pub sections: u64,
}

pub(crate) fn run(url: &str, plan_dir: &Path, variant: Variant) -> Result<Phases, String> {
    let mut client = connect(url)?;
    client
        .batch_execute("CHECKPOINT")
        .map_err(db_error("checkpoint"))?;
    let schema = if variant.constraints_after() {
        SECTIONS_WITHOUT_CONSTRAINTS.to_owned()
    } else {
        read_sql(plan_dir, "memoir/01_sections_schema.sql")?
    };
    let mut phases = Phases {
        variant: Some(variant),
        ..Phases::default()
    };
    let started = Instant::now();
    let mut tx = client.transaction().map_err(db_error("begin"))?;
    tx.batch_execute(&schema).map_err(db_error("schema"))?;
    tx.batch_execute(
        "CREATE TEMP TABLE memoir_split_covers (chapter_id bigint NOT NULL, cover jsonb NOT NULL)
             ON COMMIT DROP;",
    )
    .map_err(db_error("covers table"))?;

    if variant == Variant::ConstraintsAfterPipelined {
        pipelined(&mut tx, variant.batch_rows(), &mut phases)?;
    } else {
        serial(&mut tx, variant.batch_rows(), &mut phases)?;
    }

    let t = Instant::now();
    tx.batch_execute(
        "ANALYZE pg_temp.memoir_split_covers;
         UPDATE public.chapters c SET cover_image = v.cover
         FROM pg_temp.memoir_split_covers v
         WHERE c.id = v.chapter_id AND c.cover_image IS DISTINCT FROM v.cover;",
    )
    .map_err(db_error("update covers"))?;
    phases.update_covers = t.elapsed();
    if variant.constraints_after() {
        let t = Instant::now();
        tx.batch_execute(ADD_CONSTRAINTS)
            .map_err(db_error("add constraints"))?;
        phases.constraints = Some(t.elapsed());
    }
    tx.commit().map_err(db_error("commit"))?;
    phases.total = started.elapsed();
    Ok(phases)
}

const READ: &str =
    "SELECT id::bigint, content::text, images::text FROM public.chapters ORDER BY id";

type Batch = Vec<(i64, SplitChapter)>;

fn serial(tx: &mut Transaction<'_>, batch_rows: i32, phases: &mut Phases) -> Result<(), String> {
    let portal = tx.bind(READ, &[]).map_err(db_error("bind"))?;
    loop {
        let t = Instant::now();
        let rows = tx
            .query_portal(&portal, batch_rows)
            .map_err(db_error("fetch"))?;
        phases.fetch += t.elapsed();
        if rows.is_empty() {
            return Ok(());
        }
        let t = Instant::now();
        let batch = split_rows(&rows)?;
        drop(rows);
        phases.split += t.elapsed();
        write(tx, &batch, phases)?;
    }
}

/// The connection alternates fetch and write as before, but while it does either, a
/// worker splits the batch fetched last: with two cores the Rust CPU time hides behind
/// the server's.
fn pipelined(tx: &mut Transaction<'_>, batch_rows: i32, phases: &mut Phases) -> Result<(), String> {
    let portal = tx.bind(READ, &[]).map_err(db_error("bind"))?;
    let (to_worker, worker_in): (SyncSender<Vec<Row>>, Receiver<Vec<Row>>) = sync_channel(1);
    let (worker_out, from_worker) = sync_channel::<Result<Batch, String>>(1);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for rows in worker_in {
                if worker_out.send(split_rows(&rows)).is_err() {
                    return;
                }
            }
        });
        let mut in_flight = 0;
        loop {
            let t = Instant::now();
            let rows = tx
                .query_portal(&portal, batch_rows)
                .map_err(db_error("fetch"))?;
            phases.fetch += t.elapsed();
            if rows.is_empty() {
                break;
            }
            to_worker.send(rows).map_err(|_| "the split worker died")?;
            in_flight += 1;
            // Keep one batch in the worker while the previous one is written.
            if in_flight == 2 {
                receive_and_write(tx, &from_worker, phases)?;
                in_flight -= 1;
            }
        }
        drop(to_worker);
        for _ in 0..in_flight {
            receive_and_write(tx, &from_worker, phases)?;
        }
        Ok(())
    })
}

fn receive_and_write(
    tx: &mut Transaction<'_>,
    from_worker: &Receiver<Result<Batch, String>>,
    phases: &mut Phases,
) -> Result<(), String> {
    let t = Instant::now();
    let batch = from_worker.recv().map_err(|_| "the split worker died")??;
    phases.split += t.elapsed();
    write(tx, &batch, phases)
}

fn split_rows(rows: &[Row]) -> Result<Batch, String> {
    rows.iter()
        .map(|row| {
            let id: i64 = row.get(0);
            split_chapter(row.get(1), row.get(2))
                .map(|split| (id, split))
                .map_err(|e| format!("chapter {id} is invalid: {e}"))
        })
        .collect()
}

fn write(tx: &mut Transaction<'_>, batch: &Batch, phases: &mut Phases) -> Result<(), String> {
    let t = Instant::now();
    let sink = tx
        .copy_in(
            "COPY public.chapter_sections (chapter_id, position, content, image) FROM STDIN (FORMAT binary)",
        )
        .map_err(db_error("copy sections"))?;
    let mut writer =
        BinaryCopyInWriter::new(sink, &[Type::INT8, Type::INT4, Type::TEXT, Type::JSONB]);
    for (id, split) in batch {
        for section in &split.sections {
            writer
                .write(&[id, &section.position, &section.content, &section.image])
                .map_err(db_error("copy sections"))?;
        }
    }
    phases.sections += writer.finish().map_err(db_error("copy sections"))?;
    phases.write_sections += t.elapsed();

    let t = Instant::now();
    let sink = tx
        .copy_in("COPY pg_temp.memoir_split_covers (chapter_id, cover) FROM STDIN (FORMAT binary)")
        .map_err(db_error("copy covers"))?;
    let mut writer = BinaryCopyInWriter::new(sink, &[Type::INT8, Type::JSONB]);
    for (id, split) in batch {
        if let Some(cover) = &split.cover_image {
            let cover: &Value = cover;
            writer
                .write(&[id, cover])
                .map_err(db_error("copy covers"))?;
        }
    }
    writer.finish().map_err(db_error("copy covers"))?;
    phases.write_covers += t.elapsed();
    Ok(())
}
