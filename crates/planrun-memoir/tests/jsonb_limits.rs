//! What a `json` or `text` images column can hold but `jsonb` cannot store, judged by
//! the Rust rules exactly as a real PostgreSQL judges it: a number beyond `numeric`'s
//! range, and a lone surrogate escape. For every literal, `parse_images` accepts the
//! images value if and only if PostgreSQL's `$1::jsonb` does. Also what a `jsonb`
//! column's normalisation does to a `paragraph` anchor, as `docs/memoir.md` states it.

use planrun_memoir::{parse_images, Image};
use planrun_tempdb::TempCluster;
use postgres::error::SqlState;
use postgres::{Client, NoTls};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A server and a connection to it. The client is declared first so it disconnects
/// before the cluster stops.
struct Server {
    client: Client,
    _cluster: TempCluster,
}

fn server() -> Server {
    let cluster = TempCluster::start().expect("start a temporary cluster");
    let url = cluster.create_database("limits").expect("create database");
    let client = Client::connect(&url, NoTls).expect("connect");
    Server {
        client,
        _cluster: cluster,
    }
}

/// Whether PostgreSQL stores `images` as `jsonb`; any refusal other than `expected`
/// fails the test, so a typo in a literal cannot pass as a range verdict.
fn jsonb_accepts(client: &mut Client, images: &str, expected: &SqlState) -> bool {
    match client.query_one("SELECT $1::text::jsonb IS NOT NULL", &[&images]) {
        Ok(_) => true,
        Err(e) => {
            let code = e.code().unwrap_or_else(|| panic!("{images:.80}: {e}"));
            assert_eq!(code, expected, "{images:.80}: {e}");
            false
        }
    }
}

/// Number literals on both sides of every limit `numeric` has.
fn boundary_literals() -> Vec<String> {
    let mut literals: Vec<String> = [
        "0",
        "-0",
        "1e400",
        "1E+2",
        "-2.5E-400",
        "0e999999",
        "0e-0",
        "-0e5",
        "0e1073741822",
        "0e+01073741822",
        "0e1073741823",
        "0e-1073741822",
        "1e-1073741822",
        "1e1073741823",
        "0e99999999999999999999",
        "0e-99999999999999999999",
        "1e+0000000000000000000000000131071",
        "1e+0000000000000000000000000131072",
        "1e200000",
        "1e-20000",
    ]
    .map(str::to_owned)
    .to_vec();
    for mantissa in [
        "1", "-9.9999", "10", "0.0001", "0.00010", "123.456", "0.0", "-5",
    ] {
        for exponent in 131_066..=131_080 {
            literals.push(format!("{mantissa}e{exponent}"));
        }
    }
    for mantissa in ["1", "1.5", "1.50", "-0.1", "0", "-0.0", "12.345", "100"] {
        for exponent in -16_392..=-16_376 {
            literals.push(format!("{mantissa}e{exponent}"));
        }
    }
    literals.extend([
        "9".repeat(131_072),
        format!("-1{}", "0".repeat(131_071)),
        format!("1{}", "0".repeat(131_072)),
        format!("1{}.5", "0".repeat(131_070)),
        format!("0.{}1", "0".repeat(16_382)),
        format!("0.{}1", "0".repeat(16_383)),
        format!("0.{}", "0".repeat(16_383)),
        format!("0.{}", "0".repeat(16_384)),
        format!("{}.{}", "9".repeat(131_072), "9".repeat(16_383)),
        format!("{}.{}", "9".repeat(131_072), "9".repeat(16_384)),
        format!("0.{}1e1", "0".repeat(16_383)),
        format!("1.{}e2", "0".repeat(16_385)),
        format!("1.{}e2", "0".repeat(16_386)),
    ]);
    literals
}

/// Random literals near the limits: mantissas with leading and trailing zeros, and
/// exponents where the leading digit or the scale crosses its bound.
fn random_literals(count: usize) -> Vec<String> {
    fn digits(rng: &mut ChaCha8Rng, max: usize) -> String {
        let len = rng.random_range(0..=max);
        (0..len)
            .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
            .collect()
    }
    let mut rng = ChaCha8Rng::seed_from_u64(20_240_601);
    (0..count)
        .map(|_| {
            let integer = match rng.random_range(0..3) {
                0 => "0".to_owned(),
                _ => format!("{}{}", rng.random_range(1..10), digits(&mut rng, 4)),
            };
            let fraction = digits(&mut rng, 6);
            let exponent: i64 = if rng.random_bool(0.5) {
                rng.random_range(131_060..=131_082)
            } else {
                rng.random_range(-16_395..=-16_370)
            };
            let sign = if rng.random_bool(0.3) { "-" } else { "" };
            let point = if fraction.is_empty() { "" } else { "." };
            format!("{sign}{integer}{point}{fraction}e{exponent}")
        })
        .collect()
}

#[test]
fn numbers_are_refused_exactly_where_postgresql_refuses_them() {
    let mut server = server();
    let literals: Vec<String> = boundary_literals()
        .into_iter()
        .chain(random_literals(300))
        .collect();
    let (mut accepted, mut refused) = (0, 0);
    for literal in &literals {
        let images = format!(r#"["a.jpg", {{"url": "b.jpg", "meta": {{"n": [1, {literal}]}}}}]"#);
        let postgres = jsonb_accepts(
            &mut server.client,
            &images,
            &SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
        );
        let rust = parse_images(Some(&images));
        match (&rust, postgres) {
            (Ok(_), true) => accepted += 1,
            (Err(e), false) => {
                assert_eq!(e.path, "images[1].meta.n[1]", "{literal:.80}");
                assert!(
                    e.reason
                        .contains("outside the range PostgreSQL's numeric can store"),
                    "{literal:.80}: {e}"
                );
                refused += 1;
            }
            _ => panic!(
                "{literal:.80}: PostgreSQL {} it, the Rust rules say {rust:?}",
                if postgres { "stores" } else { "refuses" }
            ),
        }
    }
    assert!(
        accepted > 100 && refused > 100,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn a_lone_surrogate_is_json_but_not_jsonb_and_named_by_path() {
    let mut server = server();
    let refused = [
        (
            r#"[{"url": "a.jpg", "caption": "\ud800"}]"#,
            "images[0].caption",
        ),
        (r#"["a.jpg", "b\udc00.jpg"]"#, "images[1]"),
        (
            r#"[{"url": "a.jpg", "t": ["\ud800\u0041"]}]"#,
            "images[0].t[0]",
        ),
        (
            r#"[{"url": "a.jpg", "t": {"x": "\ud800\ud800"}}]"#,
            "images[0].t.x",
        ),
        (r#"[{"url": "a.jpg", "k\udbff": 1}]"#, "images[0]"),
    ];
    for (images, path) in refused {
        let json_ok = server
            .client
            .query_one("SELECT $1::text::json IS NOT NULL", &[&images])
            .is_ok();
        assert!(json_ok, "{images}: PostgreSQL's json type accepts it");
        assert!(
            !jsonb_accepts(
                &mut server.client,
                images,
                &SqlState::INVALID_TEXT_REPRESENTATION
            ),
            "{images}"
        );
        let e = parse_images(Some(images)).expect_err(images);
        assert_eq!(e.path, path, "{images}");
        assert!(e.reason.contains("lone surrogate"), "{images}: {e}");
    }
    let paired = r#"[{"url": "\ud83d\ude00.jpg", "caption": "\\ud800"}]"#;
    assert!(jsonb_accepts(
        &mut server.client,
        paired,
        &SqlState::INVALID_TEXT_REPRESENTATION
    ));
    assert!(parse_images(Some(paired)).is_ok());
}

#[test]
fn a_paragraph_anchor_is_judged_on_what_the_column_holds() {
    let mut server = server();
    let anchor = |images: &str| -> Option<u64> {
        parse_images(Some(images))
            .ok()
            .and_then(|images: Vec<Image>| images[0].paragraph)
    };
    // (literal, anchor read from a json or text column, anchor read from a jsonb column)
    let cases = [
        ("2", Some(2), Some(2)),
        ("-0", Some(0), Some(0)),
        ("1e2", None, Some(100)),
        ("1E+2", None, Some(100)),
        ("1.5e1", None, Some(15)),
        ("0e5", None, Some(0)),
        ("1.0", None, None),
        ("100e-2", None, None),
        ("-1", None, None),
    ];
    for (literal, as_written, as_jsonb) in cases {
        let images = format!(r#"[{{"url": "a.jpg", "paragraph": {literal}}}]"#);
        let stored: String = server
            .client
            .query_one("SELECT $1::text::jsonb::text", &[&images])
            .expect("jsonb stores it")
            .get(0);
        assert_eq!(anchor(&images), as_written, "{literal} in json or text");
        assert_eq!(anchor(&stored), as_jsonb, "{literal} in jsonb: {stored}");
    }
}
