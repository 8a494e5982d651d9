//! `planrun demo`: a throwaway PostgreSQL, synthetic legacy memoir data, the memoir
//! plan applied and verified, a chapter shown before and after, then everything
//! removed (unless `--keep`) and what to try next.
//!
//! The demo takes the backup `apply` takes before the first change, into its scratch
//! directory: without `--keep` that directory goes with the cluster, and the output
//! says so instead of showing the path of a file about to be deleted.

use crate::json_lines::json_lines;
use std::path::{Path, PathBuf};
use std::time::Instant;

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use planrun_engine::{exit_codes, ApplyOptions, RunReport, Runner, Source, Target};
use planrun_memoir::legacy::{create_legacy_schema, load_legacy, ImagesType};
use planrun_plan::{render_graph, Dag, GraphFormat, Plan};
use planrun_tempdb::{KeptCluster, TempCluster};
use planrun_transform::Registry;

use crate::args::DemoArgs;
use crate::live::Live;
use crate::output::count;
use crate::report::{render_run, Detail, Style};

/// The memoir plan as shipped, for when `planrun demo` runs outside the repository.
const EMBEDDED_PLAN: &[(&str, &str)] = &[
    ("memoir.toml", include_str!("../../../plans/memoir.toml")),
    (
        "memoir/session.sql",
        include_str!("../../../plans/memoir/session.sql"),
    ),
    (
        "memoir/01_sections_schema.sql",
        include_str!("../../../plans/memoir/01_sections_schema.sql"),
    ),
    (
        "memoir/02_chapter_sections_foreign_key.sql",
        include_str!("../../../plans/memoir/02_chapter_sections_foreign_key.sql"),
    ),
    (
        "memoir/02_validate_chapter_sections_fk.sql",
        include_str!("../../../plans/memoir/02_validate_chapter_sections_fk.sql"),
    ),
    (
        "memoir/02_drop_legacy_columns.sql",
        include_str!("../../../plans/memoir/02_drop_legacy_columns.sql"),
    ),
    (
        "memoir/03_images_schema.sql",
        include_str!("../../../plans/memoir/03_images_schema.sql"),
    ),
    (
        "memoir/04_keep_collected_images.sql",
        include_str!("../../../plans/memoir/04_keep_collected_images.sql"),
    ),
    (
        "memoir/05_index_collected_images.sql",
        include_str!("../../../plans/memoir/05_index_collected_images.sql"),
    ),
    (
        "memoir/05_section_image_fk.sql",
        include_str!("../../../plans/memoir/05_section_image_fk.sql"),
    ),
    (
        "memoir/05_section_image_index.sql",
        include_str!("../../../plans/memoir/05_section_image_index.sql"),
    ),
    (
        "memoir/05_validate_image_fk.sql",
        include_str!("../../../plans/memoir/05_validate_image_fk.sql"),
    ),
    (
        "memoir/05_drop_section_image.sql",
        include_str!("../../../plans/memoir/05_drop_section_image.sql"),
    ),
    (
        "memoir/01_revert_sections_schema.sql",
        include_str!("../../../plans/memoir/01_revert_sections_schema.sql"),
    ),
    (
        "memoir/02_revert_foreign_key.sql",
        include_str!("../../../plans/memoir/02_revert_foreign_key.sql"),
    ),
    (
        "memoir/03_revert_images_schema.sql",
        include_str!("../../../plans/memoir/03_revert_images_schema.sql"),
    ),
    (
        "memoir/04_revert_carry_images_back.sql",
        include_str!("../../../plans/memoir/04_revert_carry_images_back.sql"),
    ),
    (
        "memoir/05_keep_section_images.sql",
        include_str!("../../../plans/memoir/05_keep_section_images.sql"),
    ),
    (
        "memoir/05_revert_section_image_fk.sql",
        include_str!("../../../plans/memoir/05_revert_section_image_fk.sql"),
    ),
];

fn plan_path(scratch: &Path) -> Result<PathBuf, String> {
    let local = PathBuf::from("plans/memoir.toml");
    if local.is_file() {
        return Ok(local);
    }
    for (name, text) in EMBEDDED_PLAN {
        let path = scratch.join("plans").join(name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot write the demo plan: {e}"))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("cannot write the demo plan: {e}"))?;
    }
    Ok(scratch.join("plans/memoir.toml"))
}

pub(crate) fn run(args: &DemoArgs, style: Style, detail: Detail, registry: &Registry) -> i32 {
    match demo(args, style, detail, registry) {
        Ok(code) => code,
        Err(message) => {
            say_err!("error: {message}");
            exit_codes::ERROR
        }
    }
}

fn demo(args: &DemoArgs, style: Style, detail: Detail, registry: &Registry) -> Result<i32, String> {
    require_memoir_transforms(registry)?;
    let scratch = tempfile::Builder::new()
        .prefix("planrun-demo-")
        .tempdir()
        .map_err(|e| format!("cannot create a scratch directory: {e}"))?;
    let plan_file = plan_path(scratch.path())?;
    let plan = Plan::load_checked(&plan_file, registry)
        .map_err(|errors| format!("{:?}", miette::Report::new(errors)))?;
    let images: ImagesType = args.images_type.parse().map_err(|e| format!("{e}"))?;

    say!(
        "{}",
        style.bold("planrun demo: the memoir migration on a throwaway PostgreSQL")
    );
    let started = Instant::now();
    let (cluster, url) = start_cluster(started)?;
    let mut client = postgres::Client::connect(&url, postgres::NoTls)
        .map_err(|e| format!("cannot connect: {e}"))?;
    load_legacy_data(&mut client, args, images)?;
    let sample = pick_sample(&mut client)?;
    let before = sample
        .map(|id| chapter_before(&mut client, id))
        .transpose()?;

    let dag = Dag::build(&plan).map_err(|_| "the memoir plan has a cycle".to_owned())?;
    say!("\n{}", render_graph(&plan, &dag, GraphFormat::Text, None));
    let report = apply(&plan, registry, &url, scratch.path())?;
    say!();
    // The backup is said at the end, where it is kept or removed.
    let mut shown = report.clone();
    shown.backup_file = None;
    say_raw!("{}", render_run(&shown, style, detail));

    if let (Some(id), Some(before)) = (sample, before) {
        show_chapter(&mut client, id, before, style)?;
    }
    drop(client);
    let local_plan = plan_file.is_relative();
    let plan_arg = if local_plan {
        plan_file.display().to_string()
    } else {
        "plans/memoir.toml".to_owned()
    };
    say!();
    if args.keep {
        let kept = cluster.keep();
        let scratch = scratch.keep();
        say_kept(
            &kept,
            &scratch,
            &url,
            &plan_arg,
            report.backup_file.as_deref(),
        );
    } else {
        drop(cluster);
        drop(scratch);
        say_removed(started, local_plan, &plan_arg);
    }
    Ok(report.exit_code)
}

/// A binary of one's own may leave the memoir transforms out; say so rather than
/// show the shipped plan's "unknown transform" diagnostics.
fn require_memoir_transforms(registry: &Registry) -> Result<(), String> {
    let mut memoir = Registry::new();
    planrun_memoir::register(&mut memoir);
    if let Some(missing) = memoir.iter().find(|t| registry.get(t.name()).is_none()) {
        return Err(format!(
            "the demo runs the memoir plan, which needs the transform `{}`: this planrun \
             binary was built without the memoir transforms (its `Planrun` needs \
             `.with_memoir_transforms()`)",
            missing.name()
        ));
    }
    Ok(())
}

/// A throwaway cluster with the demo's database, and that database's URL.
fn start_cluster(started: Instant) -> Result<(TempCluster, String), String> {
    // Socket-only: with `--keep` it may run for a while, and no other local account
    // should be able to connect to it.
    let cluster = TempCluster::builder()
        .socket_only()
        .start()
        .map_err(|e| format!("cannot start a throwaway PostgreSQL: {e}"))?;
    let url = cluster
        .create_database("memoir_demo")
        .map_err(|e| format!("cannot create the demo database: {e}"))?;
    say!(
        "started PostgreSQL (Unix socket in {}, no TCP) in {:.1} s",
        cluster.socket_dir().display(),
        started.elapsed().as_secs_f64()
    );
    Ok((cluster, url))
}

/// The legacy schema, filled with `args.chapters` synthetic chapters.
fn load_legacy_data(
    client: &mut postgres::Client,
    args: &DemoArgs,
    images: ImagesType,
) -> Result<(), String> {
    let loading = Instant::now();
    create_legacy_schema(client, images)
        .map_err(|e| format!("cannot create the legacy schema: {e}"))?;
    let loaded = load_legacy(client, args.seed, args.chapters, images)
        .map_err(|e| format!("cannot load legacy data: {e}"))?;
    say!(
        "loaded {} legacy chapters of {} memoirs (images as {}, seed {}) in {:.1} s",
        count(loaded.chapters as u64),
        count(loaded.memoirs as u64),
        args.images_type,
        args.seed,
        loading.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The memoir plan applied to `url`, optional stages included, its backup in `scratch`.
fn apply(plan: &Plan, registry: &Registry, url: &str, scratch: &Path) -> Result<RunReport, String> {
    let target = Target::parse(url, Source::Planrun).map_err(|e| e.to_string())?;
    let runner = Runner::new(plan, registry).map_err(|e| e.to_string())?;
    let options = ApplyOptions {
        include_optional: true,
        backup_dir: Some(scratch.join("backups")),
        ..ApplyOptions::default()
    };
    let live = Live::new(true);
    runner
        .apply(&target, &options, &live)
        .map_err(|e| e.to_string())
}

/// Chapter `id` as it was before the migration and as it is now.
fn show_chapter(
    client: &mut postgres::Client,
    id: i64,
    before: Shown,
    style: Style,
) -> Result<(), String> {
    let after = chapter_after(client, id)?;
    say!("\n{}", style.bold(&format!("chapter {id} before:")));
    say_raw!("{}", before.text);
    say!("{}", style.bold(&format!("chapter {id} after:")));
    say_raw!("{}", after.text);
    let mut markers = before.markers;
    markers.extend(after.markers);
    if !markers.is_empty() {
        say!("  │ starts each line");
        for (marker, name) in &markers {
            say!("  {marker} marks {name}");
        }
    }
    Ok(())
}

/// `--keep`: where the cluster, the backup and the scratch files are, and what to try.
fn say_kept(kept: &KeptCluster, scratch: &Path, url: &str, plan_arg: &str, backup: Option<&str>) {
    say!("the cluster is still running: {url}");
    say!("data directory: {}", kept.data_dir.display());
    if let Some(file) = backup {
        say!("backup taken before the first change: {file}");
    }
    say!("stop it with: {}", kept.stop_command);
    say!(
        "the backup and the demo's scratch files stay in {}: remove it when done",
        scratch.display()
    );
    say!("next: planrun status {plan_arg} --database-url '{url}'");
    say!("next: planrun verify {plan_arg} --database-url '{url}' -v");
    say!("next: psql '{url}'    (chapters, chapter_sections, memoir_images)");
}

/// Everything removed: how long the demo took, and what to try next.
fn say_removed(started: Instant, local_plan: bool, plan_arg: &str) {
    say!(
        "the throwaway cluster is removed, and with it the backup taken before the first change ({:.1} s in all)",
        started.elapsed().as_secs_f64()
    );
    let first = if local_plan {
        (
            format!("planrun check {plan_arg}"),
            "the plan the demo ran, checked offline",
        )
    } else {
        (
            "planrun init shop".to_owned(),
            "a commented starter plan of your own",
        )
    };
    for (what, why) in [
        first,
        (
            "planrun demo --keep".to_owned(),
            "keeps the cluster, for status, verify -v and psql",
        ),
        (
            "docs/memoir.md".to_owned(),
            "the runbook this plan replaces, and how to write your own",
        ),
    ] {
        say!("next: {what:<32} ({why})");
    }
}

/// The widest line the demo prints: readable in a 120-column terminal.
const SHOWN_WIDTH: usize = 118;

/// `text` cut into pieces at most `width` columns wide (CJK characters count two).
fn wrap_to_width(text: &str, width: usize) -> Vec<String> {
    let mut pieces = vec![String::new()];
    for c in text.chars() {
        let last = pieces.last_mut().expect("one piece at least");
        if last.width() + c.width().unwrap_or(0) > width {
            pieces.push(c.to_string());
        } else {
            last.push(c);
        }
    }
    pieces
}

/// Text as it reads, one line per line behind `│`, with markers for the whitespace
/// a reader would not see: no-break and other unusual spaces, tabs, zero-width
/// characters.
struct Shown {
    text: String,
    /// Each marker used, with what it stands for.
    markers: std::collections::BTreeSet<(char, &'static str)>,
}

impl Shown {
    fn new() -> Shown {
        Shown {
            text: String::new(),
            markers: Default::default(),
        }
    }

    fn line(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
    }

    /// `text` as lines behind `indent│`; a line wider than the terminal's 120 columns
    /// goes on behind `indent┆`, so the reader can tell a wrap from a line break.
    fn block(&mut self, text: &str, indent: &str) {
        let room = SHOWN_WIDTH.saturating_sub(indent.width() + 1).max(20);
        for line in text.split('\n') {
            let marked = self.mark(line);
            let pieces = wrap_to_width(&marked, room);
            if pieces.len() > 1 {
                self.markers
                    .insert(('┆', "the rest of a line too wide for the terminal"));
            }
            for (index, piece) in pieces.iter().enumerate() {
                let bar = if index == 0 { '│' } else { '┆' };
                self.line(&format!("{indent}{bar}{piece}"));
            }
        }
    }

    /// `text` with a marker in place of each character a reader would not see; on
    /// a line of nothing but spaces, the spaces too.
    fn mark(&mut self, text: &str) -> String {
        let blank = !text.is_empty() && text.chars().all(char::is_whitespace);
        let mut shown = String::new();
        for c in text.chars() {
            let marker = match c {
                ' ' if blank => Some(('·', "a space on a line of nothing else")),
                // The ideographic space indents Chinese paragraphs: shown as it is.
                ' ' | '\u{3000}' => None,
                '\t' => Some(('→', "a tab")),
                '\r' => Some(('␍', "a carriage return")),
                '\u{200b}'..='\u{200d}' | '\u{2060}' | '\u{feff}' => {
                    Some(('¦', "a zero-width character"))
                }
                c if c.is_whitespace() => Some(('⍽', "a no-break or other unusual space")),
                c if c.is_control() => Some(('\u{fffd}', "a control character")),
                _ => None,
            };
            match marker {
                Some((marker, name)) => {
                    self.markers.insert((marker, name));
                    shown.push(marker);
                }
                None => shown.push(c),
            }
        }
        shown
    }
}

/// A chapter worth showing: several paragraphs and images.
fn pick_sample(client: &mut postgres::Client) -> Result<Option<i64>, String> {
    let row = client
        .query_opt(
            "SELECT id FROM chapters WHERE images IS NOT NULL AND length(images::text) > 40 \
             AND length(content) BETWEEN 80 AND 600 ORDER BY id LIMIT 1",
            &[],
        )
        .map_err(|e| e.to_string())?;
    Ok(row.map(|row| row.get(0)))
}

fn chapter_before(client: &mut postgres::Client, id: i64) -> Result<Shown, String> {
    let row = client
        .query_one(
            "SELECT content, images::text FROM chapters WHERE id = $1",
            &[&id],
        )
        .map_err(|e| e.to_string())?;
    let content: Option<String> = row.get(0);
    let images: Option<String> = row.get(1);
    let mut shown = Shown::new();
    match content {
        Some(content) => {
            shown.line("  content:");
            shown.block(&content, "    ");
        }
        None => shown.line("  content: NULL"),
    }
    match images
        .as_deref()
        .map(serde_json::from_str::<serde_json::Value>)
    {
        Some(Ok(serde_json::Value::Array(images))) => {
            shown.line(&format!("  images: {}", images.len()));
            for (position, image) in images.iter().enumerate() {
                for line in json_lines(&format!("    [{position}] "), image, SHOWN_WIDTH) {
                    shown.line(&line);
                }
            }
        }
        _ => shown.line(&format!(
            "  images: {}",
            images.as_deref().unwrap_or("NULL")
        )),
    }
    Ok(shown)
}

fn chapter_after(client: &mut postgres::Client, id: i64) -> Result<Shown, String> {
    let mut shown = Shown::new();
    let cover: Option<String> = client
        .query_one(
            "SELECT cover_image::text FROM chapters WHERE id = $1",
            &[&id],
        )
        .map_err(|e| e.to_string())?
        .get(0);
    match cover
        .as_deref()
        .map(serde_json::from_str::<serde_json::Value>)
    {
        Some(Ok(cover)) => {
            for line in json_lines("  cover_image: ", &cover, SHOWN_WIDTH) {
                shown.line(&line);
            }
        }
        _ => shown.line(&format!(
            "  cover_image: {}",
            cover.as_deref().unwrap_or("NULL")
        )),
    }
    let image_column = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'chapter_sections' AND column_name = 'image_id')",
            &[],
        )
        .map_err(|e| e.to_string())?
        .get::<_, bool>(0);
    let sql = if image_column {
        "SELECT s.position, s.content, m.url || coalesce(' (' || nullif(m.caption, '') || ')', '') \
         FROM chapter_sections s LEFT JOIN memoir_images m ON m.id = s.image_id WHERE s.chapter_id = $1 ORDER BY s.position"
    } else {
        "SELECT s.position, s.content, s.image->>'url' FROM chapter_sections s WHERE s.chapter_id = $1 ORDER BY s.position"
    };
    for row in client.query(sql, &[&id]).map_err(|e| e.to_string())? {
        let position: i32 = row.get(0);
        let content: String = row.get(1);
        let image: Option<String> = row.get(2);
        let head = match image {
            Some(image) => format!("  section {position}, image {}:", shown.mark(&image)),
            None => format!("  section {position}:"),
        };
        shown.line(&head);
        shown.block(&content, "    ");
    }
    Ok(shown)
}

#[cfg(test)]
mod tests {
    use super::EMBEDDED_PLAN;

    /// `planrun demo` outside the repository writes the plan from these: every file
    /// of `plans/memoir/` must be among them, or the plan it writes is invalid.
    #[test]
    fn every_file_of_the_memoir_plan_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plans/memoir");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            let path = format!("memoir/{name}");
            assert!(
                EMBEDDED_PLAN.iter().any(|(embedded, _)| *embedded == path),
                "{path} is not embedded in demo.rs"
            );
        }
    }
}
