//! The HTML report as a person sees it: a real rehearsal of the memoir plan writes
//! `--report`, headless Chromium opens the file, and the test looks at what it drew
//! (a screenshot that is not blank and shows a timeline bar's colour, the stage names
//! and the bars in the rendered page, no console errors). Also `apply --report`:
//! written 0600, a link planted at its name replaced and never followed.
//!
//! The same page in Firefox: drawn, and as long as in Chromium. And a fleet's page.
//!
//! Without Chromium (or Firefox) the browser tests say so loudly and pass, except in
//! CI (`CI` set), where `.ci/install` installs both and an absence fails the test.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use planrun_memoir::legacy::{create_legacy_schema, load_legacy, ImagesType};
use planrun_plan::Plan;
use planrun_tests::{
    describe, planrun, planrun_on, repo_path, repo_root, scenario, TestDb, CUSTOMERS,
};

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

/// The timeline's colours for a lock that blocks reads and writes, writes, neither.
const LOCK_COLOURS: [[u8; 3]; 3] = [[0xd6, 0x27, 0x28], [0xff, 0x9f, 0x1c], [0x2c, 0xa0, 0x2c]];

/// Chromium, or `None` (said loudly) where it may be missing: outside CI.
fn chromium() -> Option<PathBuf> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "Chromium is not installed, and CI is set: .ci/install installs it (apt-get install chromium)"
        );
        eprintln!(
            "\n!!!!!!!!\nSKIPPED: the HTML report was not checked in a browser: Chromium is not \
             installed (bash .ci/install, or apt-get install chromium)\n!!!!!!!!\n"
        );
    }
    found
}

/// Runs headless Chromium on `page` with `args` (a screenshot, the DOM), with a
/// profile of its own and nothing fetched from the network, bounded by `timeout`.
fn run_chromium(chromium: &Path, page: &Path, args: &[&str]) -> Output {
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new("timeout")
        .arg("120")
        .arg(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert_eq!(
        output.status.code(),
        Some(0),
        "chromium failed\n{}",
        describe(&output)
    );
    output
}

/// Firefox ESR, or `None` (said loudly) where it may be missing: outside CI.
fn firefox() -> Option<PathBuf> {
    let found = ["/usr/bin/firefox-esr", "/usr/bin/firefox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "Firefox is not installed, and CI is set: .ci/install installs it (apt-get install firefox-esr)"
        );
        eprintln!(
            "\n!!!!!!!!\nSKIPPED: the HTML report was not checked in Firefox: it is not \
             installed (bash .ci/install, or apt-get install firefox-esr)\n!!!!!!!!\n"
        );
    }
    found
}

/// What a fresh Firefox profile must not do: fetch anything. Every proxy is a closed
/// local port (localhost included), and the services that call home are off.
const FIREFOX_OFFLINE: &str = r#"
user_pref("network.proxy.type", 1);
user_pref("network.proxy.http", "127.0.0.1");
user_pref("network.proxy.http_port", 9);
user_pref("network.proxy.ssl", "127.0.0.1");
user_pref("network.proxy.ssl_port", 9);
user_pref("network.proxy.socks", "127.0.0.1");
user_pref("network.proxy.socks_port", 9);
user_pref("network.proxy.no_proxies_on", "");
user_pref("network.proxy.allow_hijacking_localhost", true);
user_pref("app.update.enabled", false);
user_pref("app.normandy.enabled", false);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("toolkit.telemetry.enabled", false);
user_pref("browser.safebrowsing.update.enabled", false);
user_pref("network.captive-portal-service.enabled", false);
user_pref("network.connectivity-service.enabled", false);
user_pref("extensions.update.enabled", false);
user_pref("browser.shell.checkDefaultBrowser", false);
"#;

/// Headless Firefox's screenshot of `page` in a window of `size` (`W,H`) to `shot`,
/// with a fresh offline profile, bounded in time.
fn firefox_screenshot(firefox: &Path, page: &Path, shot: &Path, size: &str) {
    let profile = tempfile::tempdir().unwrap();
    std::fs::write(profile.path().join("user.js"), FIREFOX_OFFLINE).unwrap();
    let output = Command::new("timeout")
        .arg("120")
        .arg(firefox)
        .args(["--headless", "--no-remote", "-profile"])
        .arg(profile.path())
        .arg(format!("--window-size={size}"))
        .arg("--screenshot")
        .arg(shot)
        .arg(format!("file://{}", page.display()))
        .env("MOZ_CRASHREPORTER_DISABLE", "1")
        .output()
        .expect("firefox runs");
    assert!(
        output.status.success() && shot.exists(),
        "firefox drew no screenshot\n{}",
        describe(&output)
    );
}

/// The console lines Chromium logged for the page (errors of a script, a refused
/// fetch, a style the page's policy blocked).
fn console_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|line| line.contains("CONSOLE"))
        .map(str::to_owned)
        .collect()
}

/// What a person sees in the PNG: how many colours, how much is not white, and
/// whether a timeline bar's colour is there.
struct Seen {
    colours: usize,
    inked_share: f64,
    lock_colour: bool,
    /// Where the drawing ends: the last row with ink, plus one.
    drawn_height: usize,
    height: usize,
}

fn look_at(png_file: &Path) -> Seen {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_file).unwrap(),
    ));
    let mut reader = decoder.read_info().expect("the screenshot is a PNG");
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).expect("the PNG decodes");
    let channels = info.color_type.samples();
    assert!(
        channels >= 3 && info.bit_depth == png::BitDepth::Eight,
        "{info:?}"
    );
    let mut colours = HashSet::new();
    let mut inked = 0usize;
    let mut lock_colour = false;
    let mut drawn_height = 0;
    let total = (info.width * info.height) as usize;
    let pixels = pixels[..info.buffer_size()].chunks_exact(channels);
    for (at, pixel) in pixels.enumerate() {
        let rgb = [pixel[0], pixel[1], pixel[2]];
        colours.insert(rgb);
        if rgb.iter().any(|&c| c < 240) {
            inked += 1;
            drawn_height = at / info.width as usize + 1;
        }
        lock_colour |= LOCK_COLOURS.contains(&rgb);
    }
    Seen {
        colours: colours.len(),
        inked_share: inked as f64 / total as f64,
        lock_colour,
        drawn_height,
        height: info.height as usize,
    }
}

/// How many pages a PDF has: its `/Type /Page` objects (`/Pages` is their tree).
fn pdf_pages(pdf: &[u8]) -> usize {
    let text = String::from_utf8_lossy(pdf).replace("/Type /Page", "/Type/Page");
    text.match_indices("/Type/Page")
        .filter(|(at, found)| !text[at + found.len()..].starts_with('s'))
        .count()
}

/// Rehearses the memoir plan on a small generated database with `--revert` and
/// `--report`; the page, written 0600 under `out`.
fn rehearsed_memoir_page(out: &Path) -> PathBuf {
    let db = TestDb::new();
    let mut client = db.client();
    create_legacy_schema(&mut client, ImagesType::Jsonb).unwrap();
    load_legacy(&mut client, 11, 300, ImagesType::Jsonb).unwrap();
    drop(client);
    let page = out.join("html/memoir.html");
    let reports = out.join("json").display().to_string();
    let page_arg = page.display().to_string();
    let output = planrun_on(
        PLANRUN,
        &repo_root(),
        &db,
        &[
            "rehearse",
            "plans/memoir.toml",
            "--revert",
            "--report-dir",
            &reports,
            "--report",
            &page_arg,
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("HTML report written to"));
    let mode = std::fs::metadata(&page).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o600,
        "the page holds production values: its owner's alone"
    );
    page
}

#[test]
fn the_memoir_rehearsal_report_shows_in_chromium() {
    let out = tempfile::tempdir().unwrap();
    let page = rehearsed_memoir_page(out.path());
    let Some(chromium) = chromium() else {
        return;
    };
    let shot = out.path().join("shot.png");
    let drawn = run_chromium(
        &chromium,
        &page,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,2000",
        ],
    );
    let seen = look_at(&shot);
    assert!(
        seen.colours >= 16,
        "a blank page has few colours: {}",
        seen.colours
    );
    assert!(
        seen.inked_share > 0.03,
        "mostly white: {:.3} inked",
        seen.inked_share
    );
    assert!(seen.lock_colour, "no timeline bar's colour on screen");

    let dom = run_chromium(&chromium, &page, &["--dump-dom"]);
    let rendered = String::from_utf8_lossy(&dom.stdout);
    let plan = Plan::load(&repo_path("plans/memoir.toml")).expect("the memoir plan loads");
    for stage in &plan.stages {
        assert!(
            rendered.contains(&format!("data-stage=\"{}\"", stage.id)),
            "stage {} is not in the rendered page",
            stage.id
        );
    }
    assert!(
        rendered.contains("class=\"bar lock-bar"),
        "no lock bar in the rendered page"
    );
    assert!(
        rendered.contains("class=\"bar stage-bar"),
        "no stage bar in the rendered page"
    );
    for stage in ["split_chapters", "sections_schema"] {
        let row = rendered
            .split("<tr ")
            .find(|row| row.starts_with(&format!("data-revert=\"{stage}\"")))
            .unwrap_or_else(|| panic!("no revert of {stage} in the way back"));
        assert!(row.contains("good\">proved<"), "{row}");
    }
    let pdf = out.path().join("printed.pdf");
    let printed = run_chromium(
        &chromium,
        &page,
        &[
            "--no-pdf-header-footer",
            &format!("--print-to-pdf={}", pdf.display()),
        ],
    );
    let pages = pdf_pages(&std::fs::read(&pdf).expect("Chromium printed the page"));
    let sections = rendered.matches("<section class=\"stage\"").count();
    assert_eq!(sections, plan.stages.len(), "a section per stage");
    assert_eq!(
        pages,
        sections + 1,
        "printed: the header on a page, then each of the {sections} stages on one page of its own"
    );
    for run in [&drawn, &dom, &printed] {
        let console = console_lines(run);
        assert!(console.is_empty(), "console messages: {console:#?}");
    }
}

/// The same rehearsal page in Firefox: drawn (not blank, a timeline bar's colour on
/// screen) and as long as Chromium draws it, within 2 %: a layout that broke in one
/// browser (a table overflowing, a section collapsed, an SVG without its size) changes
/// the page's height. Both windows are tall enough to hold the whole page.
#[test]
fn the_rehearsal_report_draws_the_same_in_firefox_as_in_chromium() {
    let out = tempfile::tempdir().unwrap();
    let page = rehearsed_memoir_page(out.path());
    let (Some(chromium), Some(firefox)) = (chromium(), firefox()) else {
        return;
    };
    let size = "1280,16000";
    let in_chromium = out.path().join("chromium.png");
    let drawn = run_chromium(
        &chromium,
        &page,
        &[
            &format!("--screenshot={}", in_chromium.display()),
            &format!("--window-size={size}"),
        ],
    );
    assert!(console_lines(&drawn).is_empty(), "{}", describe(&drawn));
    let in_firefox = out.path().join("firefox.png");
    firefox_screenshot(&firefox, &page, &in_firefox, size);
    let (chromium, firefox) = (look_at(&in_chromium), look_at(&in_firefox));
    for (browser, seen) in [("Chromium", &chromium), ("Firefox", &firefox)] {
        assert!(
            seen.colours >= 16 && seen.inked_share > 0.01,
            "{browser} drew a blank page: {} colours, {:.3} inked",
            seen.colours,
            seen.inked_share
        );
        assert!(seen.lock_colour, "{browser}: no timeline bar's colour");
        assert!(
            seen.drawn_height + 100 < seen.height,
            "{browser}: the page ({} px) does not fit the window ({} px)",
            seen.drawn_height,
            seen.height
        );
    }
    let ratio = firefox.drawn_height as f64 / chromium.drawn_height as f64;
    eprintln!(
        "the page is {} px long in Firefox, {} px in Chromium ({ratio:.3})",
        firefox.drawn_height, chromium.drawn_height
    );
    assert!(
        (0.98..=1.02).contains(&ratio),
        "the page is {} px long in Firefox, {} px in Chromium",
        firefox.drawn_height,
        chromium.drawn_height
    );
}

/// A fleet of three shop databases on one cluster, one at a time: the canary
/// applies, the second target lacks the table the plan starts from and fails, so the
/// rollout halts and the third never starts. The page shows each wave, each target
/// and its state as a person reads it, and the failed target's own stages.
#[test]
fn the_fleet_report_shows_waves_and_a_failed_target_in_chromium() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let broken = db.cluster.create_database("shop_broken").unwrap();
    let untouched = db.cluster.create_database("shop_later").unwrap();
    postgres::Client::connect(&untouched, postgres::NoTls)
        .unwrap()
        .batch_execute(CUSTOMERS)
        .unwrap();
    let dir = scenario("shop");
    let targets = [
        ("shop-a", &db.url),
        ("shop-b", &broken),
        ("shop-c", &untouched),
    ];
    let mut fleet = String::from("[fleet]\nmax_parallel = 1\n\n");
    for (name, url) in targets {
        fleet.push_str(&format!(
            "[[target]]\nname = \"{name}\"\nurl = \"{url}\"\n\n"
        ));
    }
    fleet.push_str(
        "[[wave]]\nname = \"canary\"\ntargets = [\"shop-a\"]\n\n\
         [[wave]]\nname = \"the-rest\"\ntargets = [\"*\"]\n[wave.gate]\nmax_lock_wait = \"5s\"\n",
    );
    std::fs::write(dir.path().join("fleet.toml"), fleet).unwrap();
    let page = dir.path().join("out/fleet.html");
    let page_arg = page.display().to_string();
    let output = planrun(
        PLANRUN,
        dir.path(),
        &[
            "apply",
            "plan.toml",
            "--fleet",
            "fleet.toml",
            "--report",
            &page_arg,
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(21), "{}", describe(&output));
    let mode = std::fs::metadata(&page).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", describe(&output));

    let Some(chromium) = chromium() else {
        return;
    };
    let shot = dir.path().join("shot.png");
    let drawn = run_chromium(
        &chromium,
        &page,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,1600",
        ],
    );
    let seen = look_at(&shot);
    assert!(
        seen.colours >= 16 && seen.inked_share > 0.03,
        "a blank page"
    );
    let dom = run_chromium(&chromium, &page, &["--dump-dom"]);
    let rendered = String::from_utf8_lossy(&dom.stdout);
    for (index, wave) in ["canary", "the-rest"].into_iter().enumerate() {
        assert!(
            rendered.contains(&format!(
                "id=\"wave-{index}\" data-wave=\"{wave}\">\n<h2>Wave {wave} "
            )),
            "wave {wave} is not in the rendered page"
        );
    }
    for (name, state, shown) in [
        ("shop-a", "applied", "good\">applied<"),
        ("shop-b", "failed", "bad\">failed<"),
        ("shop-c", "not_started", "neutral\">not started<"),
    ] {
        let row = rendered
            .split("<tr ")
            .find(|row| row.starts_with(&format!("data-target=\"{name}\"")))
            .unwrap_or_else(|| panic!("no row of target {name} in the rendered page"));
        assert!(
            row.contains(&format!("data-state=\"{state}\"")) && row.contains(shown),
            "{name} is not shown {state}: {row}"
        );
    }
    let failed = rendered
        .split("<section class=\"target\"")
        .find(|section| section.contains("data-target=\"shop-b\""))
        .expect("the failed target's own stages have a section");
    assert!(
        failed.contains("data-stage=\"create_orders\"") && failed.contains("customers exists"),
        "the failed target's section shows the stage that stopped it and its check"
    );
    assert!(rendered.contains("What failed the gate"));
    for run in [&drawn, &dom] {
        let console = console_lines(run);
        assert!(console.is_empty(), "console messages: {console:#?}");
    }
}

#[test]
fn apply_report_is_private_and_replaces_a_planted_link() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let out = tempfile::tempdir().unwrap();
    let victim = out.path().join("victim");
    std::fs::write(&victim, "untouched").unwrap();
    let page = out.path().join("apply.html");
    std::os::unix::fs::symlink(&victim, &page).unwrap();
    let page_arg = page.display().to_string();
    let output = planrun_on(
        PLANRUN,
        dir.path(),
        &db,
        &["apply", "plan.toml", "--report", &page_arg],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
    let meta = std::fs::symlink_metadata(&page).unwrap();
    assert!(meta.is_file(), "the link was replaced by the page");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("class=\"bar lock-bar") || html.contains("class=\"bar stage-bar"));
}

#[test]
fn a_report_directory_others_can_write_is_refused_before_anything_runs() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let out = tempfile::tempdir().unwrap();
    let shared = out.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let page_arg = shared.join("apply.html").display().to_string();
    let output = planrun_on(
        PLANRUN,
        dir.path(),
        &db,
        &["apply", "plan.toml", "--report", &page_arg],
    );
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("writable by other accounts"));
    assert_eq!(
        db.scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'planrun'"),
        "0",
        "nothing ran"
    );
}

/// The picture in the README: the memoir rehearsal's report at 100k chapters, with
/// the optional stage and `--revert` as its caption says, as Chromium draws it,
/// written to `docs/images/rehearsal-report.png`. Not part of the suite (it takes
/// minutes); run it with
/// `cargo test -p planrun-tests --test html_report -- --ignored screenshot`
/// (`PLANRUN_SCREENSHOT_CHAPTERS` sets another scale, to try it quickly).
#[test]
#[ignore = "makes the README's screenshot; minutes at 100k chapters"]
fn screenshot_of_the_memoir_rehearsal_at_100k_chapters() {
    let chromium = chromium().expect("Chromium draws the screenshot");
    let db = TestDb::new();
    let mut client = db.client();
    create_legacy_schema(&mut client, ImagesType::Jsonb).unwrap();
    let chapters = std::env::var("PLANRUN_SCREENSHOT_CHAPTERS")
        .map_or(100_000, |n| n.parse().expect("a number of chapters"));
    load_legacy(&mut client, 42, chapters, ImagesType::Jsonb).unwrap();
    drop(client);
    let out = tempfile::tempdir().unwrap();
    let page = out.path().join("memoir.html");
    let reports = out.path().join("json").display().to_string();
    let page_arg = page.display().to_string();
    let output = planrun_on(
        PLANRUN,
        &repo_root(),
        &db,
        &[
            "rehearse",
            "plans/memoir.toml",
            "--include-optional",
            "--revert",
            "--report-dir",
            &reports,
            "--report",
            &page_arg,
        ],
    );
    // Over the budget (19) is a report worth drawing too (a debug build is slower),
    // and so is a revert that committed but is not proved (22): the caption says which.
    assert!(
        matches!(output.status.code(), Some(0 | 19 | 22)),
        "{}",
        describe(&output)
    );
    let shot = repo_path("docs/images/rehearsal-report.png");
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    run_chromium(
        &chromium,
        &page,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1100,2200",
        ],
    );
    if let Ok(keep) = std::env::var("PLANRUN_KEEP_REPORT") {
        std::fs::copy(&page, keep).unwrap();
    }
    assert!(look_at(&shot).lock_colour);
}
