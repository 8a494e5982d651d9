//! Measurement (b): the floor. The rows split_chapters writes are computed in Rust
//! beforehand (untimed) into COPY text files the server reads itself, so what is timed is
//! only what no client can avoid: reading the legacy columns, the COPY into
//! `chapter_sections` with its constraints, and the cover UPDATE. collect_images' floor is
//! pure SQL, since its rows are a projection of rows already in the database.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use planrun_memoir::split_chapter;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;

use crate::data::{connect, db_error};

/// chapter_sections as stage 1 makes it, minus PRIMARY KEY, UNIQUE and REFERENCES, which
/// [`ADD_CONSTRAINTS`] adds back under the names the inline definitions would get.
pub(crate) const SECTIONS_WITHOUT_CONSTRAINTS: &str = "
CREATE TABLE chapter_sections (
    id         bigserial,
    chapter_id bigint NOT NULL,
    position   int NOT NULL,
    content    text NOT NULL DEFAULT '',
    image      jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE chapters ADD COLUMN IF NOT EXISTS cover_image jsonb;";

/// The spec's stage-1 table with every constraint in place during the load (the plan
/// itself adds the foreign key after its load; see plans/memoir/01_sections_schema.sql).
pub(crate) const SECTIONS_WITH_CONSTRAINTS: &str = "
CREATE TABLE chapter_sections (
    id         bigserial PRIMARY KEY,
    chapter_id bigint NOT NULL REFERENCES chapters(id) ON DELETE CASCADE,
    position   int NOT NULL,
    content    text NOT NULL DEFAULT '',
    image      jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (chapter_id, position)
);
ALTER TABLE chapters ADD COLUMN IF NOT EXISTS cover_image jsonb;";

/// One ALTER, so PostgreSQL builds the two indexes and validates the foreign key in a
/// single statement.
pub(crate) const ADD_CONSTRAINTS: &str = "
ALTER TABLE chapter_sections
    ADD PRIMARY KEY (id),
    ADD UNIQUE (chapter_id, position),
    ADD FOREIGN KEY (chapter_id) REFERENCES chapters(id) ON DELETE CASCADE;";

/// The split's result rows as files the server can read, and what computing them cost.
#[derive(Debug)]
pub(crate) struct ResultFiles {
    // Kept for its Drop, which removes the files.
    _dir: tempfile::TempDir,
    pub sections: PathBuf,
    pub covers: PathBuf,
    pub section_rows: u64,
    pub cover_rows: u64,
    pub section_images: u64,
    /// Client side, one query streaming every chapter: receiving and decoding rows.
    pub fetch: Duration,
    /// `split_chapter` alone: the pure Rust CPU cost of the transform.
    pub split: Duration,
    /// Serialising the results as COPY text, JSON included.
    pub encode: Duration,
}

impl ResultFiles {
    /// Reads every chapter of the database at `url` and writes its sections and covers.
    pub(crate) fn compute(url: &str) -> Result<ResultFiles, String> {
        // The server runs as another OS user (postgres) when we are root: it needs to
        // traverse the directory and read the files, which tempfile makes private.
        let parent = std::env::var_os("PLANRUN_TEMPDB_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = tempfile::Builder::new()
            .prefix("planrun-bench-")
            .tempdir_in(&parent)
            .map_err(|e| format!("cannot create a directory in {}: {e}", parent.display()))?;
        set_mode(dir.path(), 0o755)?;
        let sections_path = dir.path().join("sections.copy");
        let covers_path = dir.path().join("covers.copy");
        let mut sections = BufWriter::with_capacity(1 << 20, create(&sections_path)?);
        let mut covers = BufWriter::with_capacity(1 << 20, create(&covers_path)?);

        let mut client = connect(url)?;
        let started = Instant::now();
        let (mut split_time, mut encode_time) = (Duration::ZERO, Duration::ZERO);
        let (mut section_rows, mut cover_rows, mut section_images) = (0, 0, 0);
        let mut rows = client
            .query_raw(
                "SELECT id::bigint, content::text, images::text FROM public.chapters ORDER BY id",
                std::iter::empty::<&dyn ToSql>(),
            )
            .map_err(db_error("read the legacy chapters"))?;
        let mut line = Vec::new();
        while let Some(row) = rows.next().map_err(db_error("read the legacy chapters"))? {
            let id: i64 = row.get(0);
            let t = Instant::now();
            let split = split_chapter(row.get(1), row.get(2))
                .map_err(|e| format!("chapter {id} is invalid: {e}"))?;
            let t2 = Instant::now();
            split_time += t2 - t;

            let id_text = id.to_string();
            for section in &split.sections {
                line.clear();
                line.extend_from_slice(id_text.as_bytes());
                line.push(b'\t');
                line.extend_from_slice(section.position.to_string().as_bytes());
                line.push(b'\t');
                copy_field(&mut line, Some(&section.content));
                line.push(b'\t');
                let image = section.image.as_ref().map(|v| v.to_string());
                copy_field(&mut line, image.as_deref());
                line.push(b'\n');
                sections.write_all(&line).map_err(write_error)?;
                section_rows += 1;
                section_images += u64::from(section.image.is_some());
            }
            if let Some(cover) = &split.cover_image {
                line.clear();
                line.extend_from_slice(id_text.as_bytes());
                line.push(b'\t');
                copy_field(&mut line, Some(&cover.to_string()));
                line.push(b'\n');
                covers.write_all(&line).map_err(write_error)?;
                cover_rows += 1;
            }
            encode_time += t2.elapsed();
        }
        let total = started.elapsed();
        for (file, path) in [(sections, &sections_path), (covers, &covers_path)] {
            file.into_inner()
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?
                .sync_all()
                .map_err(write_error)?;
            set_mode(path, 0o644)?;
        }
        Ok(ResultFiles {
            _dir: dir,
            sections: sections_path,
            covers: covers_path,
            section_rows,
            cover_rows,
            section_images,
            fetch: total.saturating_sub(split_time + encode_time),
            split: split_time,
            encode: encode_time,
        })
    }
}

/// Timings of one floor run of split_chapters.
#[derive(Debug, Default)]
pub(crate) struct SplitFloor {
    pub read: Duration,
    pub sections: Duration,
    pub covers_copy: Duration,
    pub covers_update: Duration,
    /// Only when the constraints were added after the load.
    pub constraints: Option<Duration>,
    /// Schema, read, sections, covers, constraints and commit: the comparable whole.
    pub total: Duration,
    pub rows: u64,
}

/// Stage 1's schema, then split_chapters' writes from the files, in one transaction.
pub(crate) fn split_floor(
    url: &str,
    files: &ResultFiles,
    constraints_after: bool,
) -> Result<SplitFloor, String> {
    let schema = if constraints_after {
        SECTIONS_WITHOUT_CONSTRAINTS
    } else {
        SECTIONS_WITH_CONSTRAINTS
    };
    let mut client = connect(url)?;
    client
        .batch_execute("CHECKPOINT")
        .map_err(db_error("checkpoint"))?;
    let mut floor = SplitFloor::default();
    let started = Instant::now();
    let mut tx = client.transaction().map_err(db_error("begin"))?;
    tx.batch_execute(schema)
        .map_err(db_error("create chapter_sections"))?;

    let t = Instant::now();
    tx.execute(
        "COPY (SELECT id, content, images::text FROM public.chapters ORDER BY id) TO '/dev/null'",
        &[],
    )
    .map_err(db_error("read the legacy columns"))?;
    floor.read = t.elapsed();

    let t = Instant::now();
    floor.rows = tx
        .execute(
            &format!(
                "COPY public.chapter_sections (chapter_id, position, content, image) FROM {}",
                literal(&files.sections)
            ),
            &[],
        )
        .map_err(db_error("copy the sections"))?;
    floor.sections = t.elapsed();

    let t = Instant::now();
    tx.batch_execute(
        "CREATE TEMP TABLE floor_covers (chapter_id bigint NOT NULL, cover jsonb NOT NULL) ON COMMIT DROP",
    )
    .map_err(db_error("create the covers table"))?;
    tx.execute(
        &format!(
            "COPY floor_covers (chapter_id, cover) FROM {}",
            literal(&files.covers)
        ),
        &[],
    )
    .map_err(db_error("copy the covers"))?;
    floor.covers_copy = t.elapsed();
    let t = Instant::now();
    // The same statement split_chapters ends with, so the two differ only in how the
    // covers reached the temporary table.
    tx.batch_execute(
        "ANALYZE floor_covers;
         UPDATE public.chapters c SET cover_image = v.cover
         FROM floor_covers v
         WHERE c.id = v.chapter_id AND c.cover_image IS DISTINCT FROM v.cover;",
    )
    .map_err(db_error("update the covers"))?;
    floor.covers_update = t.elapsed();

    if constraints_after {
        let t = Instant::now();
        tx.batch_execute(ADD_CONSTRAINTS)
            .map_err(db_error("add the constraints"))?;
        floor.constraints = Some(t.elapsed());
    }
    tx.commit().map_err(db_error("commit"))?;
    floor.total = started.elapsed();
    Ok(floor)
}

/// collect_images' floor.
#[derive(Debug)]
pub(crate) struct CollectFloor {
    pub total: Duration,
    pub rows: u64,
}

/// On a database where [`split_floor`] ran: stages 2 and 3's SQL untimed, then every
/// cover and section image into memoir_images with INSERT ... SELECT, timed.
pub(crate) fn collect_floor(url: &str, plan_dir: &Path) -> Result<CollectFloor, String> {
    let mut client = connect(url)?;
    for file in [
        "memoir/02_drop_legacy_columns.sql",
        "memoir/03_images_schema.sql",
    ] {
        client
            .batch_execute(&read_sql(plan_dir, file)?)
            .map_err(db_error(file))?;
    }
    // No VACUUM: planrun's collect_images also reads tables just rewritten by stage 2.
    client
        .batch_execute("CHECKPOINT")
        .map_err(db_error("checkpoint"))?;
    let started = Instant::now();
    let mut tx = client.transaction().map_err(db_error("begin"))?;
    // Covers first, then section images, each in id order: the order collect_images
    // inserts in, so both build memoir_images' indexes from the same sequence.
    let covers = tx
        .execute(
            "INSERT INTO public.memoir_images (chapter_id, section_id, url, caption, meta)
             SELECT id, NULL, cover_image->>'url', cover_image->>'caption',
                    cover_image - 'url' - 'caption'
             FROM public.chapters WHERE cover_image IS NOT NULL ORDER BY id",
            &[],
        )
        .map_err(db_error("insert the covers"))?;
    let sections = tx
        .execute(
            "INSERT INTO public.memoir_images (chapter_id, section_id, url, caption, meta)
             SELECT chapter_id, id, image->>'url', image->>'caption', image - 'url' - 'caption'
             FROM public.chapter_sections WHERE image IS NOT NULL ORDER BY id",
            &[],
        )
        .map_err(db_error("insert the section images"))?;
    tx.commit().map_err(db_error("commit"))?;
    Ok(CollectFloor {
        total: started.elapsed(),
        rows: covers + sections,
    })
}

pub(crate) fn read_sql(plan_dir: &Path, file: &str) -> Result<String, String> {
    let path = plan_dir.join(file);
    fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// A SQL string literal.
fn literal(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', "''"))
}

fn create(path: &Path) -> Result<File, String> {
    File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))
}

fn write_error(e: std::io::Error) -> String {
    format!("cannot write the result files: {e}")
}

/// One field in COPY's text format: `\N` for NULL, and the four bytes the format reserves
/// escaped.
fn copy_field(out: &mut Vec<u8>, value: Option<&str>) {
    let Some(value) = value else {
        out.extend_from_slice(b"\\N");
        return;
    };
    for byte in value.bytes() {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            other => out.push(other),
        }
    }
}
