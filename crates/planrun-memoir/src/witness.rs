//! The split's witness: counts and digests of the very rows `memoir.split_chapters`
//! hands to COPY, taken as it writes them, so that the plan's verification of an
//! atomic split need not read `chapter_sections` back (docs/memoir.md, "Verification,
//! beyond the runbook").
//!
//! The witness describes the output only. The legacy side it is compared with is
//! computed by SQL from the legacy columns (the plan's capture, `plans/memoir/session.sql`),
//! never by this crate's splitter, so a wrong split still disagrees. The digests are
//! sums of 60-bit terms, the first 15 hex digits of an MD5, the same term the SQL side
//! computes (`pg_temp.memoir_term`): a sum does not depend on order, so the witness
//! adds chapters as they stream by and the verification adds the quarantined chapters,
//! computed by SQL, to it.
//!
//! The witness goes to the one-row temporary table `pg_temp.memoir_split_witness`
//! (`ON COMMIT DELETE ROWS`, so it describes only the transaction that wrote it), which
//! the plan's verifications read; what could change the table behind the transform (a
//! trigger, a rule, another session, a later statement) is the subject of a
//! verification of its own, which reads the catalog and counts the rows.

use md5::{Digest, Md5};
use postgres::Transaction;

use crate::jsonb_text::jsonb_text;
use crate::split::Section;

/// The witness table, created by the plan's session SQL on every connection and by
/// the transform when a plan without it runs the split.
pub(crate) const CREATE_WITNESS_TABLE: &str = "
CREATE TEMP TABLE IF NOT EXISTS memoir_split_witness (
    sections_written       bigint  NOT NULL,
    sections_with_image    bigint  NOT NULL,
    chapters_with_sections bigint  NOT NULL,
    content_digest         numeric NOT NULL,
    images_digest          numeric NOT NULL,
    chapters_with_gaps     bigint  NOT NULL,
    images_not_objects     bigint  NOT NULL,
    updated_before         bigint  NOT NULL DEFAULT 0,
    deleted_before         bigint  NOT NULL DEFAULT 0
) ON COMMIT DELETE ROWS;";

/// How many rows of `chapter_sections` this transaction had updated and deleted
/// before the split began (planrun removing an abandoned attempt deletes some): the
/// plan's guard check refuses any update or delete beyond these.
pub(crate) fn changes_before(
    transaction: &mut Transaction<'_>,
) -> Result<(i64, i64), postgres::Error> {
    let row = transaction.query_opt(
        "SELECT n_tup_upd, n_tup_del FROM pg_catalog.pg_stat_xact_user_tables
         WHERE relid OPERATOR(pg_catalog.=) 'public.chapter_sections'::pg_catalog.regclass::pg_catalog.oid",
        &[],
    )?;
    Ok(row.map_or((0, 0), |row| (row.get(0), row.get(1))))
}

/// What the split wrote to `chapter_sections`, so far.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SplitWitness {
    sections_written: u64,
    sections_with_image: u64,
    chapters_with_sections: u64,
    /// Over chapters with a non-empty section: the term of `id:md5(contents)`, the
    /// non-empty contents in position order joined with a blank line.
    content_digest: u128,
    /// Over sections with an image: the term of `chapter_id:image`, the image as
    /// `jsonb` prints it.
    images_digest: u128,
    /// Chapters whose positions, in the order written, are not 0, 1, 2, ...
    chapters_with_gaps: u64,
    /// Section images that are not an object with a string `url`.
    images_not_objects: u64,
}

impl SplitWitness {
    /// Adds one chapter's sections, exactly as they are written.
    pub(crate) fn add(&mut self, chapter_id: i64, sections: &[Section]) {
        if sections.is_empty() {
            return;
        }
        self.chapters_with_sections += 1;
        self.sections_written += sections.len() as u64;
        let mut content = Md5::new();
        let mut any_content = false;
        let mut dense = true;
        for (expected, section) in (0i64..).zip(sections) {
            dense &= i64::from(section.position) == expected;
            if !section.content.is_empty() {
                if any_content {
                    content.update(b"\n\n");
                }
                content.update(section.content.as_bytes());
                any_content = true;
            }
            if let Some(image) = &section.image {
                self.sections_with_image += 1;
                let is_object = image
                    .as_object()
                    .is_some_and(|object| object.get("url").is_some_and(|url| url.is_string()));
                self.images_not_objects += u64::from(!is_object);
                self.images_digest +=
                    u128::from(term(&format!("{chapter_id}:{}", jsonb_text(image))));
            }
        }
        self.chapters_with_gaps += u64::from(!dense);
        if any_content {
            let digest = hex(&content.finalize());
            self.content_digest += u128::from(term(&format!("{chapter_id}:{digest}")));
        }
    }

    /// Replaces the witness row of this transaction with this one.
    pub(crate) fn record(
        &self,
        transaction: &mut Transaction<'_>,
        (updated_before, deleted_before): (i64, i64),
    ) -> Result<(), postgres::Error> {
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        transaction.batch_execute(CREATE_WITNESS_TABLE)?;
        transaction.batch_execute("DELETE FROM pg_temp.memoir_split_witness")?;
        transaction.execute(
            "INSERT INTO pg_temp.memoir_split_witness VALUES ($1, $2, $3, $4::text::numeric, $5::text::numeric, $6, $7, $8, $9)",
            &[
                &count(self.sections_written),
                &count(self.sections_with_image),
                &count(self.chapters_with_sections),
                &self.content_digest.to_string(),
                &self.images_digest.to_string(),
                &count(self.chapters_with_gaps),
                &count(self.images_not_objects),
                &updated_before,
                &deleted_before,
            ],
        )?;
        Ok(())
    }
}

/// `('x' || left(md5(text), 15))::bit(60)::bigint`: the first 60 bits of the MD5.
fn term(text: &str) -> u64 {
    let digest = Md5::digest(text.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) >> 4
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_term_is_the_first_fifteen_hex_digits_of_the_md5() {
        // md5('') = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(term(""), 0xd41d8cd98f00b20);
        assert_eq!(hex(&Md5::digest(b"")), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn the_witness_does_not_depend_on_the_order_of_chapters() {
        let section = |position, content: &str| Section {
            position,
            content: content.to_owned(),
            image: Some(serde_json::json!({"url": "a.jpg"})),
        };
        let (one, two) = (vec![section(0, "A")], vec![section(0, ""), section(2, "B")]);
        let (mut forward, mut backward) = (SplitWitness::default(), SplitWitness::default());
        forward.add(1, &one);
        forward.add(2, &two);
        backward.add(2, &two);
        backward.add(1, &one);
        assert_eq!(forward, backward);
        assert_eq!(forward.chapters_with_gaps, 1);
        assert_eq!(forward.sections_with_image, 3);
    }
}
