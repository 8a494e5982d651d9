//! The legacy memoir schema and synthetic data in a real database, for tests, benchmarks
//! and `planrun demo`.
//!
//! Loading streams the [`generate`](crate::generate) iterator through text-format COPY,
//! which hands every value to the server as text: a `json` or `text` images column gets the
//! generator's JSON byte for byte (its spacing, escapes and number spellings are what the
//! split transform must cope with), and a `jsonb` column parses it just as an application's
//! INSERT would have.

use std::fmt;
use std::io::Write;
use std::str::FromStr;

use postgres::GenericClient;

use crate::generate::{generate, memoirs};

/// The type of the legacy `chapters.images` column: documented `jsonb`, or the drift
/// real databases show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ImagesType {
    #[default]
    Jsonb,
    Json,
    Text,
}

impl ImagesType {
    /// Every variant, for tests that cover them all.
    pub const ALL: [ImagesType; 3] = [ImagesType::Jsonb, ImagesType::Json, ImagesType::Text];

    /// The SQL type name.
    pub fn sql(self) -> &'static str {
        match self {
            ImagesType::Jsonb => "jsonb",
            ImagesType::Json => "json",
            ImagesType::Text => "text",
        }
    }
}

impl fmt::Display for ImagesType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sql())
    }
}

/// An images type name that is not `jsonb`, `json` or `text`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown images column type {0:?}: expected jsonb, json or text")]
pub struct UnknownImagesType(pub String);

impl FromStr for ImagesType {
    type Err = UnknownImagesType;

    fn from_str(s: &str) -> Result<ImagesType, UnknownImagesType> {
        match s {
            "jsonb" => Ok(ImagesType::Jsonb),
            "json" => Ok(ImagesType::Json),
            "text" => Ok(ImagesType::Text),
            other => Err(UnknownImagesType(other.to_owned())),
        }
    }
}

/// What [`load_legacy`] inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadReport {
    pub memoirs: u64,
    pub chapters: u64,
}

/// Creates the spec's legacy `memoirs` and `chapters` tables in the current schema, with
/// `chapters.images` of the given type.
pub fn create_legacy_schema(
    client: &mut impl GenericClient,
    images: ImagesType,
) -> Result<(), postgres::Error> {
    client.batch_execute(&format!(
        "CREATE TABLE memoirs (
             id         bigserial PRIMARY KEY,
             title      text NOT NULL,
             created_at timestamptz NOT NULL DEFAULT now());
         CREATE TABLE chapters (
             id         bigserial PRIMARY KEY,
             memoir_id  bigint NOT NULL REFERENCES memoirs(id) ON DELETE CASCADE,
             position   int NOT NULL,
             title      text NOT NULL,
             content    text,
             images     {images},
             created_at timestamptz NOT NULL DEFAULT now(),
             updated_at timestamptz NOT NULL DEFAULT now());",
        images = images.sql()
    ))
}

/// Streams the generator's first `chapters` chapters (and their memoirs) for `seed` into
/// the tables [`create_legacy_schema`] made, then moves the id sequences past them.
///
/// `images` must be the column's type; it only decides whether rows are sent at all:
/// every type receives the generator's JSON text unchanged.
pub fn load_legacy(
    client: &mut impl GenericClient,
    seed: u64,
    chapters: usize,
    images: ImagesType,
) -> Result<LoadReport, postgres::Error> {
    // Every images type takes the same text; the parameter documents the caller's intent
    // and keeps the signature stable should a type ever need a different encoding.
    let _ = images;
    let mut line = Vec::new();

    let mut sink = client.copy_in("COPY memoirs (id, title) FROM STDIN")?;
    for memoir in memoirs(seed, chapters) {
        line.clear();
        field(&mut line, Some(&memoir.id.to_string()));
        line.push(b'\t');
        field(&mut line, Some(&memoir.title));
        line.push(b'\n');
        sink.write_all(&line).map_err(copy_error)?;
    }
    let memoir_rows = sink.finish()?;

    let mut sink = client
        .copy_in("COPY chapters (id, memoir_id, position, title, content, images) FROM STDIN")?;
    for chapter in generate(seed, chapters) {
        line.clear();
        field(&mut line, Some(&chapter.id.to_string()));
        line.push(b'\t');
        field(&mut line, Some(&chapter.memoir_id.to_string()));
        line.push(b'\t');
        field(&mut line, Some(&chapter.position.to_string()));
        line.push(b'\t');
        field(&mut line, Some(&chapter.title));
        line.push(b'\t');
        field(&mut line, chapter.content.as_deref());
        line.push(b'\t');
        field(&mut line, chapter.images.as_deref());
        line.push(b'\n');
        sink.write_all(&line).map_err(copy_error)?;
    }
    let chapter_rows = sink.finish()?;

    reset_sequences(client)?;
    Ok(LoadReport {
        memoirs: memoir_rows,
        chapters: chapter_rows,
    })
}

/// Inserts one chapter with exactly these raw values (`images_json` is cast from text to
/// whatever type `chapters.images` has), creating memoir `memoir_id` if it is missing;
/// for tests of specific rows. The chapter goes last in its memoir.
pub fn insert_chapter(
    client: &mut impl GenericClient,
    memoir_id: i64,
    id: i64,
    content: Option<&str>,
    images_json: Option<&str>,
) -> Result<(), postgres::Error> {
    let images_type: String = client
        .query_one(
            "SELECT format_type(atttypid, atttypmod) FROM pg_catalog.pg_attribute
             WHERE attrelid = 'chapters'::regclass AND attname = 'images'",
            &[],
        )?
        .get(0);
    client.execute(
        "INSERT INTO memoirs (id, title) VALUES ($1::bigint, 'Memoir ' || $1::bigint) ON CONFLICT (id) DO NOTHING",
        &[&memoir_id],
    )?;
    client.execute(
        &format!(
            "INSERT INTO chapters (id, memoir_id, position, title, content, images)
             SELECT $1::bigint, $2::bigint, coalesce(max(position), 0) + 1, 'Chapter ' || $1::bigint,
                    $3::text, $4::text::{images_type}
             FROM chapters WHERE memoir_id = $2::bigint"
        ),
        &[&id, &memoir_id, &content, &images_json],
    )?;
    reset_sequences(client)
}

fn reset_sequences(client: &mut impl GenericClient) -> Result<(), postgres::Error> {
    // is_called = false when a table is empty, so its first id stays 1.
    client.batch_execute(
        "SELECT setval(pg_get_serial_sequence('memoirs', 'id'),
                       coalesce((SELECT max(id) FROM memoirs), 1),
                       (SELECT max(id) FROM memoirs) IS NOT NULL);
         SELECT setval(pg_get_serial_sequence('chapters', 'id'),
                       coalesce((SELECT max(id) FROM chapters), 1),
                       (SELECT max(id) FROM chapters) IS NOT NULL);",
    )
}

/// Appends one field in COPY's text format: `\N` for NULL, and the four characters the
/// format gives meaning to (backslash, tab, newline, carriage return) escaped.
fn field(out: &mut Vec<u8>, value: Option<&str>) {
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

// CopyInWriter reports a failed write as an io::Error wrapping the postgres::Error that
// caused it (the connection is gone); unwrap it so callers see one error type.
fn copy_error(error: std::io::Error) -> postgres::Error {
    match error
        .into_inner()
        .map(|inner| inner.downcast::<postgres::Error>())
    {
        Some(Ok(e)) => *e,
        Some(Err(other)) => panic!("COPY write failed without a postgres::Error: {other}"),
        None => panic!("COPY write failed without a postgres::Error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_fields_escape_what_the_format_reserves() {
        let mut out = Vec::new();
        field(&mut out, Some("a\\b\tc\nd\re\u{3000}"));
        assert_eq!(out, b"a\\\\b\\tc\\nd\\re\xe3\x80\x80");
        out.clear();
        field(&mut out, None);
        assert_eq!(out, b"\\N");
    }

    #[test]
    fn images_type_parses_its_sql_names() {
        for t in ImagesType::ALL {
            assert_eq!(t.sql().parse::<ImagesType>(), Ok(t));
        }
        assert!("varchar".parse::<ImagesType>().is_err());
    }
}
