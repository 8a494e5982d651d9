//! The HTML page every report is drawn on: the document shell with its inline style
//! sheet (screen, and print: each stage on a page of its own, in a type small enough
//! for a stage to fit it), and the legend of the timeline's colours.

use crate::escape::escape;
use crate::lock_class::Blocks;

const STYLE: &str = r#"
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #1d2733; background: #ffffff; margin: 0 auto; padding: 24px 32px; max-width: 1100px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 2px solid #e3e7ec; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.meta { color: #5b6b7f; margin: 2px 0; }
.outcome { display: inline-block; white-space: nowrap; padding: 2px 10px; border-radius: 12px; font-weight: 600; }
.good { background: #e3f4e1; color: #2e7d32; }
.bad { background: #fbe0e0; color: #c62828; }
.neutral { background: #eef1f5; color: #36475a; }
.warning { background: #fff1d6; color: #8a5200; }
.warnings li { color: #c62828; }
table { border-collapse: collapse; margin: 6px 0 12px; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e3e7ec; vertical-align: top; }
th { background: #f5f7fa; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num { white-space: nowrap; }
td.sql { min-width: 18em; }
code, .sql { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 12px; }
.sql { white-space: pre-wrap; word-break: break-word; }
.graph, .timeline-box { overflow-x: auto; }
svg.stage-graph, svg.timeline { max-width: 100%; height: auto; }
.legend { display: flex; flex-wrap: wrap; gap: 16px; margin: 8px 0; color: #36475a; }
.swatch { display: inline-block; width: 14px; height: 14px; border-radius: 2px; vertical-align: -2px; margin-right: 4px; }
.dash { display: inline-block; width: 22px; border-top: 2px dashed #d62728; vertical-align: 3px; margin-right: 4px; }
section.stage { margin-top: 28px; }
.over-budget li, .over { color: #c62828; font-weight: 600; }
footer { margin-top: 36px; color: #5b6b7f; font-size: 12px; }
@page { size: A4; margin: 10mm; }
@media print {
  body { padding: 0; max-width: none; font-size: 8px; line-height: 1.2; }
  h1 { font-size: 15px; }
  h2 { font-size: 13px; margin: 0 0 6px; }
  h3 { font-size: 11px; margin: 10px 0 4px; }
  th, td { padding: 1px 4px; }
  .outcome { padding: 0 6px; }
  code, .sql { font-size: 7px; }
  svg.timeline { width: 65%; }
  table { margin: 4px 0 8px; }
  section.stage { margin-top: 0; break-before: page; page-break-before: always; }
  tr, svg { break-inside: avoid; }
  .graph, .timeline-box { overflow: visible; }
  a { color: inherit; text-decoration: none; }
}
"#;

/// The whole document: `title` in the head, `body` as it is (already escaped).
pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\
         <footer>Written by planrun {}. One file, no scripts, nothing fetched: hover a bar for its statement; prints one page per stage.</footer>\n\
         </body>\n</html>\n",
        escape(title),
        env!("CARGO_PKG_VERSION"),
    )
}

/// What the timeline's colours and lines mean.
pub(crate) fn legend() -> String {
    let swatch = |blocks: Blocks| {
        format!(
            "<span><span class=\"swatch\" style=\"background:{}\"></span>{}</span>",
            blocks.colour(),
            blocks.words()
        )
    };
    format!(
        "<div class=\"legend\">{}{}{}<span><span class=\"dash\"></span>lock budget (a bar left of its line is over)</span>\
         <span>\u{27f3} table rewritten</span><span>time runs to the stage's commit at the right</span></div>\n",
        swatch(Blocks::ReadsAndWrites),
        swatch(Blocks::Writes),
        swatch(Blocks::Nothing),
    )
}
