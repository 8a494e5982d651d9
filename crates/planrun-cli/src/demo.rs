//! `planrun demo`: a throwaway PostgreSQL, synthetic legacy memoir data, the memoir
//! plan applied and verified, a chapter shown before and after, then everything
//! removed (unless `--keep`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use planrun_engine::{exit_codes, ApplyOptions, Runner, Source, Target};
use planrun_memoir::legacy::{create_legacy_schema, load_legacy, ImagesType};
use planrun_plan::{render_graph, Dag, GraphFormat, Plan};
use planrun_tempdb::TempCluster;
use planrun_transform::Registry;

use crate::args::DemoArgs;
use crate::live::Live;
use crate::report::{render_run, Style};

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
        "memoir/02_drop_legacy_columns.sql",
        include_str!("../../../plans/memoir/02_drop_legacy_columns.sql"),
    ),
    (
        "memoir/03_images_schema.sql",
        include_str!("../../../plans/memoir/03_images_schema.sql"),
    ),
    (
        "memoir/05_section_image_fk.sql",
        include_str!("../../../plans/memoir/05_section_image_fk.sql"),
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

pub fn run(args: &DemoArgs, style: Style, _no_colour: bool, registry: &Registry) -> i32 {
    match demo(args, style, registry) {
        Ok(code) => code,
        Err(message) => {
            say_err!("error: {message}");
            exit_codes::ERROR
        }
    }
}

fn demo(args: &DemoArgs, style: Style, registry: &Registry) -> Result<i32, String> {
    // A binary of one's own may leave the memoir transforms out; say so rather than
    // show the shipped plan's "unknown transform" diagnostics.
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

    let mut client = postgres::Client::connect(&url, postgres::NoTls)
        .map_err(|e| format!("cannot connect: {e}"))?;
    let loading = Instant::now();
    create_legacy_schema(&mut client, images)
        .map_err(|e| format!("cannot create the legacy schema: {e}"))?;
    let loaded = load_legacy(&mut client, args.seed, args.chapters, images)
        .map_err(|e| format!("cannot load legacy data: {e}"))?;
    say!(
        "loaded {} legacy chapters of {} memoirs (images as {}, seed {}) in {:.1} s",
        loaded.chapters,
        loaded.memoirs,
        args.images_type,
        args.seed,
        loading.elapsed().as_secs_f64()
    );
    let sample = pick_sample(&mut client)?;
    let before = sample
        .map(|id| chapter_before(&mut client, id))
        .transpose()?;

    let dag = Dag::build(&plan).map_err(|_| "the memoir plan has a cycle".to_owned())?;
    say!("\n{}", render_graph(&plan, &dag, GraphFormat::Text, None));

    let target = Target::parse(&url, Source::Flag).map_err(|e| e.to_string())?;
    let runner = Runner::new(&plan, registry).map_err(|e| e.to_string())?;
    let options = ApplyOptions {
        include_optional: true,
        backup_dir: Some(scratch.path().join("backups")),
        ..ApplyOptions::default()
    };
    let live = Live::new(true);
    let report = runner
        .apply(&target, &options, &live)
        .map_err(|e| e.to_string())?;
    say!();
    say_raw!("{}", render_run(&report, style));

    if let (Some(id), Some(before)) = (sample, before) {
        say!("\n{}", style.bold(&format!("chapter {id} before:")));
        say!("{before}");
        say!("{}", style.bold(&format!("chapter {id} after:")));
        say!("{}", chapter_after(&mut client, id)?);
    }
    drop(client);
    if args.keep {
        let kept = cluster.keep();
        say!("\nthe cluster is still running: {url}");
        say!("data directory: {}", kept.data_dir.display());
        say!("stop it with: {}", kept.stop_command);
    } else {
        drop(cluster);
        say!(
            "\nthe throwaway cluster is removed ({:.1} s in all)",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(report.exit_code)
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

fn chapter_before(client: &mut postgres::Client, id: i64) -> Result<String, String> {
    let row = client
        .query_one("SELECT coalesce(content, '<NULL>'), coalesce(images::text, '<NULL>') FROM chapters WHERE id = $1", &[&id])
        .map_err(|e| e.to_string())?;
    let content: String = row.get(0);
    let images: String = row.get(1);
    Ok(format!("  content: {content:?}\n  images:  {images}"))
}

fn chapter_after(client: &mut postgres::Client, id: i64) -> Result<String, String> {
    let mut out = String::new();
    let cover: Option<String> = client
        .query_one(
            "SELECT cover_image::text FROM chapters WHERE id = $1",
            &[&id],
        )
        .map_err(|e| e.to_string())?
        .get(0);
    out.push_str(&format!(
        "  cover_image: {}\n",
        cover.unwrap_or_else(|| "NULL".into())
    ));
    let image_column = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'chapter_sections' AND column_name = 'image_id')",
            &[],
        )
        .map_err(|e| e.to_string())?
        .get::<_, bool>(0);
    let sql = if image_column {
        "SELECT s.position, s.content, coalesce(m.url || coalesce(' (' || m.caption || ')', ''), '-') \
         FROM chapter_sections s LEFT JOIN memoir_images m ON m.id = s.image_id WHERE s.chapter_id = $1 ORDER BY s.position"
    } else {
        "SELECT s.position, s.content, coalesce(s.image->>'url', '-') FROM chapter_sections s WHERE s.chapter_id = $1 ORDER BY s.position"
    };
    for row in client.query(sql, &[&id]).map_err(|e| e.to_string())? {
        let position: i32 = row.get(0);
        let content: String = row.get(1);
        let image: String = row.get(2);
        out.push_str(&format!(
            "  section {position}: {content:?}  image: {image}\n"
        ));
    }
    Ok(out)
}
