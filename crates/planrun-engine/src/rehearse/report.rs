//! The rehearsal's report: what was rehearsed, on what, and how it went, as the
//! JSON file `planrun rehearse` writes and `apply --require-rehearsal` and `plan` read
//! back. The types are the report model's (`planrun_report::rehearsal`), so that the
//! CLI and `planrun-html` render them without the engine; here are the format and
//! what reads and writes it.

use planrun_contract::format;

pub use planrun_report::rehearsal::{
    CopyInfo, CopyRoles, Estimate, Identity, Kept, MeasuredLock, MeasuredStatement,
    RehearsalReport, RehearsedLock, RehearsedRevert, RehearsedStage, RevertProof, Selection,
    TableRows,
};

/// The `format` of a rehearsal report; its `format_version` is
/// [`format::REHEARSAL`]'s, which moves only if a field changes meaning.
pub const FORMAT: &str = format::REHEARSAL.name;

/// What rehearsal reports were called before every document had the common
/// envelope; their fields are the ones [`RehearsalEvidence`] reads, so they are
/// still read.
pub const LEGACY_FORMAT: &str = "planrun-rehearsal/1";

/// Whether a report whose envelope says `format` and `format_version` is one this
/// planrun reads.
pub fn readable_format(format: &str, format_version: Option<u32>) -> bool {
    format == LEGACY_FORMAT
        || (format == FORMAT && format_version == Some(format::REHEARSAL.version))
}

/// `12.3 MB`, for messages.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024 / 2), "1.5 MB");
    }
}
