//! The atomic split's loop over every chapter: a portal over `chapters ORDER BY id`
//! fetched `batch_rows` chapters at a time, each batch's sections written with one
//! binary COPY before the next fetch (one connection cannot interleave a COPY OUT with
//! a COPY IN, so the reader is a portal, which stays open across the writes).
//!
//! The splitting and the witness run on a thread of their own, one batch ahead of the
//! connection: while the server reads the next batch or takes in this one's COPY, the
//! worker splits the batch before it, so the client's CPU (the spec's rules, the
//! witness's digests) hides behind the server's work instead of adding to it. The
//! batches still go in in id order, one at a time, and the first invalid chapter stops
//! the loop before its batch is written, as before.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use planrun_transform::{TransformContext, TransformError};
use postgres::Row;

use crate::quarantine::{self, QuarantinedChapter};
use crate::split::SplitChapter;
use crate::split_transform::{split_rows, write_covers, write_sections, OnInvalid};
use crate::witness::SplitWitness;

/// What the loop did.
#[derive(Debug, Default)]
pub(crate) struct Streamed {
    pub rows_read: u64,
    pub sections_written: u64,
    pub covers_written: u64,
    pub quarantined: u64,
    pub witness: SplitWitness,
}

/// One batch, split.
struct SplitBatch {
    chapters: Vec<(i64, SplitChapter)>,
    set_aside: Vec<QuarantinedChapter>,
    fetched: u64,
}

/// Reads, splits and writes every chapter; the covers go to `pg_temp.memoir_split_covers`.
pub(crate) fn stream_chapters(
    context: &mut TransformContext<'_, '_>,
    on_invalid: OnInvalid,
    batch_rows: i32,
    images_type: &str,
) -> Result<Streamed, TransformError> {
    std::thread::scope(|scope| {
        let (to_worker, rows_in) = sync_channel::<Vec<Row>>(1);
        let (split_out, from_worker) = sync_channel::<Result<SplitBatch, TransformError>>(1);
        let worker = scope.spawn(move || split_batches(&rows_in, &split_out, on_invalid));
        let streamed = write_batches(context, &to_worker, &from_worker, batch_rows, images_type);
        drop((to_worker, from_worker));
        let witness = worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        streamed.map(|streamed| Streamed {
            witness,
            ..streamed
        })
    })
}

/// The worker: splits each batch it is given, adding what will be written to the witness.
fn split_batches(
    rows_in: &Receiver<Vec<Row>>,
    split_out: &SyncSender<Result<SplitBatch, TransformError>>,
    on_invalid: OnInvalid,
) -> SplitWitness {
    let mut witness = SplitWitness::default();
    for rows in rows_in {
        let split = split_rows(&rows, on_invalid).map(|(chapters, set_aside)| {
            for (id, chapter) in &chapters {
                witness.add(*id, &chapter.sections);
            }
            SplitBatch {
                chapters,
                set_aside,
                fetched: rows.len() as u64,
            }
        });
        drop(rows);
        let failed = split.is_err();
        if split_out.send(split).is_err() || failed {
            break;
        }
    }
    witness
}

/// The connection's side: fetches batch n+1 and hands it over before writing batch n.
fn write_batches(
    context: &mut TransformContext<'_, '_>,
    to_worker: &SyncSender<Vec<Row>>,
    from_worker: &Receiver<Result<SplitBatch, TransformError>>,
    batch_rows: i32,
    images_type: &str,
) -> Result<Streamed, TransformError> {
    let mut streamed = Streamed::default();
    let transaction = &mut *context.transaction;
    let portal = transaction.bind(
        "SELECT id::bigint, content::text, images::text FROM public.chapters ORDER BY id",
        &[],
    )?;
    let mut in_flight = false;
    loop {
        let rows = transaction.query_portal(&portal, batch_rows)?;
        // A worker that stopped has sent why (the first invalid chapter) for the batch
        // in flight: that error is received below, before anything of it is written.
        let last = rows.is_empty() || to_worker.send(rows).is_err();
        if in_flight {
            let Ok(batch) = from_worker.recv() else {
                break;
            };
            let batch = batch?;
            streamed.rows_read += batch.fetched;
            streamed.sections_written += write_sections(transaction, &batch.chapters)?;
            streamed.covers_written += write_covers(transaction, &batch.chapters)?;
            streamed.quarantined += quarantine::insert(
                transaction,
                &batch.set_aside,
                images_type,
                context.run_id,
                context.stage_id,
            )?;
            context.progress.advance(batch.fetched);
        }
        if last {
            break;
        }
        in_flight = true;
    }
    Ok(streamed)
}
