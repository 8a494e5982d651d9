//! The throwaway cluster and the legacy data every measurement starts from.
//!
//! The data is generated once into a `legacy` database and copied with `CREATE DATABASE
//! ... TEMPLATE legacy STRATEGY FILE_COPY` for each measurement: a file copy is much
//! faster than generating again, and every copy starts physically identical (same pages,
//! hint bits set, statistics gathered), so no measurement pays for another's leftovers.

use std::time::{Duration, Instant};

use planrun_memoir::legacy::{create_legacy_schema, load_legacy, ImagesType};
use planrun_tempdb::TempCluster;
use postgres::{Client, NoTls};

/// What [`load_template`] made.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub chapters: u64,
    /// `pg_total_relation_size` of chapters.
    pub bytes: i64,
    pub duration: Duration,
}

pub(crate) fn start_cluster() -> Result<TempCluster, String> {
    TempCluster::builder()
        .start()
        .map_err(|e| format!("cannot start a throwaway PostgreSQL: {e}"))
}

pub(crate) fn connect(url: &str) -> Result<Client, String> {
    Client::connect(url, NoTls).map_err(|e| format!("cannot connect to {url}: {e}"))
}

pub(crate) fn db_error(what: &str) -> impl Fn(postgres::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Generates and loads the legacy data into database `legacy`.
pub(crate) fn load_template(
    cluster: &TempCluster,
    chapters: usize,
    seed: u64,
    images: ImagesType,
) -> Result<Loaded, String> {
    let started = Instant::now();
    let url = cluster
        .create_database("legacy")
        .map_err(|e| format!("cannot create the legacy database: {e}"))?;
    let mut client = connect(&url)?;
    create_legacy_schema(&mut client, images).map_err(db_error("create the legacy schema"))?;
    let report = load_legacy(&mut client, seed, chapters, images)
        .map_err(db_error("load the legacy data"))?;
    // Set hint bits and the visibility map now: otherwise the first reader of each copy
    // pays for them, and that is whichever measurement happens to read first.
    client
        .batch_execute("VACUUM (FREEZE, ANALYZE) memoirs, chapters")
        .map_err(db_error("vacuum the legacy data"))?;
    let bytes: i64 = client
        .query_one("SELECT pg_total_relation_size('chapters')", &[])
        .map_err(db_error("measure the legacy data"))?
        .get(0);
    Ok(Loaded {
        chapters: report.chapters,
        bytes,
        duration: started.elapsed(),
    })
}

/// A fresh copy of `legacy` named `name`; returns its URL. Ends with a checkpoint so the
/// copy's own writes are not flushed during the measurement that follows.
pub(crate) fn clone_database(cluster: &TempCluster, name: &str) -> Result<String, String> {
    copy_database(cluster, "legacy", name)
}

/// A fresh copy of database `template` (no one connected to it) named `name`; returns
/// its URL, after a checkpoint as [`clone_database`].
pub(crate) fn copy_database(
    cluster: &TempCluster,
    template: &str,
    name: &str,
) -> Result<String, String> {
    cluster
        .psql(
            "postgres",
            &format!("CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY"),
        )
        .map_err(|e| format!("cannot copy the {template} database to {name}: {e}"))?;
    checkpoint(cluster)?;
    Ok(cluster.url(name))
}

pub(crate) fn checkpoint(cluster: &TempCluster) -> Result<(), String> {
    cluster
        .psql("postgres", "CHECKPOINT")
        .map(drop)
        .map_err(|e| format!("checkpoint failed: {e}"))
}
