//! planrun's reports drawn for people: one self-contained HTML file per rehearsal or
//! apply (the stage graph, a lock timeline per stage, checks, rows, quarantine and
//! waits; for a fleet, its targets by wave and each wave's gate), and the stage graph
//! as SVG for `planrun graph --format svg`.
//!
//! Plain strings, every value escaped on its way in (`escape.rs`); inline CSS and
//! SVG only, no script and nothing fetched, so the file opens anywhere, offline,
//! the same in every browser. Hover text is SVG `<title>`. No database code: the
//! input is the report model (`planrun-report`) and the plan.

mod escape;
mod fleet_page;
mod graph_svg;
mod lock_class;
mod page;
mod rehearsal_page;
mod run_page;
mod sections;
mod timeline;
mod units;

pub use fleet_page::fleet_html;
pub use graph_svg::{graph_svg, NodeMark, Tone};
pub use rehearsal_page::rehearsal_html;
pub use run_page::run_html;

#[cfg(test)]
mod tests;
