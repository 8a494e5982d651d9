//! Wall-clock timing of the transforms on a larger generated data set; ignored by default.
//! `MEMOIR_TIMING_CHAPTERS=200000 cargo test --release -p planrun-memoir --test timing -- --ignored --nocapture`

mod support;

use std::time::Instant;

use planrun_memoir::legacy::{load_legacy, ImagesType};
use planrun_memoir::{CollectImages, SplitChapters};
use support::*;

#[test]
#[ignore = "slow: a timing run, not a check"]
fn time_split_and_collect() {
    let chapters: usize = std::env::var("MEMOIR_TIMING_CHAPTERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50_000);
    let mut db = Db::legacy(ImagesType::Jsonb);
    let start = Instant::now();
    load_legacy(&mut db.client, SEED, chapters, ImagesType::Jsonb).expect("load");
    println!("load {chapters} chapters: {:?}", start.elapsed());
    db.stage_one();

    let start = Instant::now();
    let report = db.run(&SplitChapters, "").expect("split");
    println!(
        "split_chapters: {:?} ({} chapters -> {} sections)",
        start.elapsed(),
        report.rows_read,
        report.rows_written
    );

    db.client
        .batch_execute(IMAGES_SCHEMA)
        .expect("images schema");
    let start = Instant::now();
    let report = db.run(&CollectImages, "").expect("collect");
    println!(
        "collect_images: {:?} ({} rows)",
        start.elapsed(),
        report.rows_written
    );
    let start = Instant::now();
    let report = db.run(&CollectImages, "").expect("collect again");
    assert_eq!(report.rows_written, 0);
    println!("collect_images again: {:?}", start.elapsed());
}
