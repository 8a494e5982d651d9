//! One test per rule of the memoir spec (`shared/memoir-spec.md`), named after the rule,
//! plus the spec's worked example exactly.

use planrun_memoir::generate::{invalid_images_cases, tricky_valid_images_cases};
use planrun_memoir::{
    image_row, paragraphs, parse_images, split_chapter, InvalidChapter, Section, SplitChapter,
};
use serde_json::{json, Value};

fn split(content: Option<&str>, images: Option<&str>) -> SplitChapter {
    split_chapter(content, images)
        .unwrap_or_else(|e| panic!("{content:?} / {images:?} should split: {e}"))
}

fn paras(content: &str) -> Vec<String> {
    paragraphs(Some(content))
        .into_iter()
        .map(|p| p.into_owned())
        .collect()
}

fn section(position: i32, content: &str, image: Option<Value>) -> Section {
    Section {
        position,
        content: content.to_owned(),
        image,
    }
}

/// Section contents and image urls, compactly, for placement tests.
fn layout(chapter: &SplitChapter) -> Vec<(String, Option<String>)> {
    chapter
        .sections
        .iter()
        .map(|s| {
            let url = s
                .image
                .as_ref()
                .map(|i| i["url"].as_str().unwrap_or("?").to_owned());
            (s.content.clone(), url)
        })
        .collect()
}

fn owned(pairs: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
    pairs
        .iter()
        .map(|(c, u)| ((*c).to_owned(), u.map(str::to_owned)))
        .collect()
}

fn error(content: Option<&str>, images: &str) -> InvalidChapter {
    match split_chapter(content, Some(images)) {
        Ok(chapter) => panic!("{images} should be invalid, split into {chapter:?}"),
        Err(e) => e,
    }
}

#[test]
fn worked_example() {
    let chapter = split(
        Some("A\n\n\u{3000}\u{3000}B1\nB2\r\n \r\nC"),
        Some(
            r#"["x.jpg", {"url":"y.jpg","paragraph":0,"w":3}, {"url":"z.jpg","paragraph":0}, "q.jpg", "r.jpg"]"#,
        ),
    );
    assert_eq!(
        chapter.sections,
        [
            section(
                0,
                "A",
                Some(json!({"url": "y.jpg", "paragraph": 0, "w": 3}))
            ),
            section(1, "\u{3000}\u{3000}B1\nB2", Some(json!({"url": "x.jpg"}))),
            section(2, "C", Some(json!({"url": "z.jpg", "paragraph": 0}))),
            section(3, "", Some(json!({"url": "q.jpg"}))),
            section(4, "", Some(json!({"url": "r.jpg"}))),
        ]
    );
    assert_eq!(chapter.cover_image, Some(json!({"url": "x.jpg"})));
    assert_eq!(chapter.image_count, 5);
    let y = chapter.sections[0]
        .image
        .as_ref()
        .and_then(Value::as_object);
    let keys: Vec<&str> = y
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(keys, ["url", "paragraph", "w"]);
}

// Rule 1: paragraphs.

#[test]
fn rule1_null_content_is_the_empty_string() {
    assert!(paragraphs(None).is_empty());
    assert_eq!(split(None, None), split(Some(""), None));
}

#[test]
fn rule1_crlf_becomes_lf() {
    assert_eq!(paras("a\r\nb\r\n\r\nc\r\n"), ["a\nb", "c"]);
}

#[test]
fn rule1_lone_cr_becomes_lf() {
    assert_eq!(paras("a\rb\r\rc\r"), ["a\nb", "c"]);
}

#[test]
fn rule1_crlf_is_one_break_and_a_cr_before_it_is_another() {
    assert_eq!(paras("a\r\r\nb"), ["a", "b"]);
    assert_eq!(paras("a\n\rb"), ["a", "b"]);
    assert_eq!(paras("a\r\n\nb"), ["a", "b"]);
}

#[test]
fn rule1_empty_line_is_blank() {
    assert_eq!(paras("a\n\nb"), ["a", "b"]);
    assert_eq!(paras("\n\na\n\n\n\nb\n\n"), ["a", "b"]);
}

#[test]
fn rule1_whitespace_only_lines_are_blank() {
    for blank in [
        " ",
        "\t",
        "\u{3000}",
        "\u{a0}",
        " \t\u{3000}\u{a0}",
        "\u{2028}",
        "\u{0b}\u{0c}\u{85}",
    ] {
        assert_eq!(
            paras(&format!("a\n{blank}\nb")),
            ["a", "b"],
            "blank {blank:?}"
        );
    }
}

#[test]
fn rule1_invisible_characters_that_are_not_white_space_make_a_line_non_blank() {
    assert_eq!(paras("a\n\u{200b}\nb"), ["a\n\u{200b}\nb"]);
    assert_eq!(paras("\u{feff}"), ["\u{feff}"]);
}

#[test]
fn rule1_only_lf_separates_lines_after_normalisation() {
    assert_eq!(paras("a\u{2028}\u{2028}b"), ["a\u{2028}\u{2028}b"]);
    assert_eq!(paras("a\u{85}\u{85}b"), ["a\u{85}\u{85}b"]);
}

#[test]
fn rule1_paragraph_is_its_lines_joined_with_lf_without_trimming() {
    assert_eq!(
        paras("  a  \n\tb\t\n\nc \u{a0}"),
        ["  a  \n\tb\t", "c \u{a0}"]
    );
}

#[test]
fn rule1_u3000_indentation_survives() {
    let content = "\u{3000}\u{3000}第一段。\n\u{3000}\n\u{3000}\u{3000}第二段，\n接着写。";
    assert_eq!(
        paras(content),
        [
            "\u{3000}\u{3000}第一段。",
            "\u{3000}\u{3000}第二段，\n接着写。"
        ]
    );
}

#[test]
fn rule1_whitespace_only_content_has_no_paragraphs() {
    assert!(paras(" \r\n\t\r\u{3000}\n\u{a0}").is_empty());
}

// Rule 2: images.

#[test]
fn rule2_sql_null_json_null_and_empty_array_mean_no_images() {
    for images in [
        None,
        Some("null"),
        Some("[]"),
        Some(" [ ]\n"),
        Some(" null "),
    ] {
        assert!(
            parse_images(images).map(|i| i.is_empty()).unwrap_or(false),
            "{images:?}"
        );
        let chapter = split(Some("a"), images);
        assert_eq!(chapter.cover_image, None);
        assert_eq!(chapter.image_count, 0);
        assert_eq!(chapter.sections, [section(0, "a", None)]);
    }
}

#[test]
fn rule2_string_element_is_shorthand_for_url_object() {
    let images = parse_images(Some(r#"["a.jpg"]"#)).expect("valid");
    assert_eq!(images[0].clone().into_value(), json!({"url": "a.jpg"}));
    assert_eq!(images[0].paragraph, None);
}

#[test]
fn rule2_object_with_caption_string_null_or_absent() {
    for element in [
        json!({"url": "a.jpg"}),
        json!({"url": "a.jpg", "caption": "说明"}),
        json!({"url": "a.jpg", "caption": ""}),
        json!({"url": "a.jpg", "caption": null}),
    ] {
        let text = Value::Array(vec![element.clone()]).to_string();
        let images = parse_images(Some(&text)).expect("valid");
        assert_eq!(images[0].clone().into_value(), element);
    }
}

#[test]
fn rule2_paragraph_is_any_non_negative_integer_literal() {
    for (literal, anchor) in [
        ("0", 0),
        ("7", 7),
        ("-0", 0),
        ("18446744073709551615", u64::MAX),
        ("18446744073709551616", u64::MAX),
        (
            "1000000000000000000000000000000000000000000000000000000000000",
            u64::MAX,
        ),
    ] {
        let text = format!(r#"[{{"url": "a.jpg", "paragraph": {literal}}}]"#);
        let images = parse_images(Some(&text)).unwrap_or_else(|e| panic!("{literal}: {e}"));
        assert_eq!(images[0].paragraph, Some(anchor), "{literal}");
        assert_eq!(
            images[0].object["paragraph"].to_string(),
            literal,
            "kept as written"
        );
    }
}

#[test]
fn rule2_paragraph_must_be_a_non_negative_integer() {
    for (literal, found) in [
        ("-1", "-1"),
        ("1.0", "1.0"),
        // serde_json keeps a number's digits but writes every exponent as `e+N`/`e-N`.
        ("1e2", "1e+2"),
        ("1E2", "1e+2"),
        ("-0.0", "-0.0"),
        ("0.5", "0.5"),
        (r#""1""#, r#""1""#),
        (r#""x""#, r#""x""#),
        ("null", "null"),
        ("true", "true"),
        ("[0]", "[0]"),
    ] {
        let text = format!(r#"["ok.jpg", {{"url": "a.jpg", "paragraph": {literal}}}]"#);
        let e = error(Some("a"), &text);
        assert_eq!(e.path, "images[1].paragraph", "{literal}");
        assert_eq!(
            e.reason,
            format!("expected a non-negative integer, found {found}")
        );
    }
}

#[test]
fn rule2_error_displays_path_then_reason() {
    let e = error(None, r#"[{"url": "a.jpg", "paragraph": "x"}]"#);
    assert_eq!(
        e.to_string(),
        r#"images[0].paragraph: expected a non-negative integer, found "x""#
    );
}

/// Digits are kept exactly; only an exponent's spelling is normalised (`1e400` is written
/// back as `1e+400`), which is the same JSON number.
#[test]
fn rule2_other_keys_are_kept_in_order_with_exact_values() {
    let text = r#"[{"z": 1, "url": "a.jpg", "exif": {"b": [1, {"c": null}], "a": true}, "id": 12345678901234567890, "scale": 1.10, "big": 1e400, "":"", "paragraph": 2}]"#;
    let chapter = split(Some("p"), Some(text));
    let image = chapter.sections.last().and_then(|s| s.image.clone());
    assert_eq!(
        image.map(|i| i.to_string()),
        Some(
            r#"{"z":1,"url":"a.jpg","exif":{"b":[1,{"c":null}],"a":true},"id":12345678901234567890,"scale":1.10,"big":1e+400,"":"","paragraph":2}"#
                .to_owned()
        )
    );
}

#[test]
fn rule2_every_invalid_shape_is_rejected_at_its_path() {
    for (images, path) in invalid_images_cases() {
        let e = error(Some("a\n\nb"), images);
        assert_eq!(e.path, path, "{images}: {e}");
        assert!(!e.reason.is_empty());
        assert!(
            e.reason.starts_with(|c: char| c.is_lowercase()),
            "reasons are lowercase phrases: {e}"
        );
    }
}

#[test]
fn rule2_rejection_reasons() {
    let reason = |images: &str| error(None, images).reason;
    assert!(reason("[").starts_with("not valid JSON: "));
    assert_eq!(
        reason(r#"{"url":"a"}"#),
        r#"expected an array or null, found {"url":"a"}"#
    );
    assert_eq!(
        reason(r#"[""]"#),
        r#"expected a non-empty string or an object, found """#
    );
    assert_eq!(
        reason("[42]"),
        "expected a non-empty string or an object, found 42"
    );
    assert_eq!(reason("[{}]"), "missing");
    assert_eq!(
        reason(r#"[{"url":""}]"#),
        r#"expected a non-empty string, found """#
    );
    assert_eq!(
        reason(r#"[{"url":"a","caption":5}]"#),
        "expected a string or null, found 5"
    );
    assert_eq!(
        reason(r#"["\u0000"]"#),
        "contains U+0000, which PostgreSQL cannot store"
    );
    let long = format!(r#"[{{"url": "{}"}}, 1]"#, "x".repeat(500));
    assert_eq!(
        reason(&format!(r#"{{"k": {long}}}"#)).len(),
        "expected an array or null, found ...".len() + 40
    );
}

#[test]
fn rule2_first_invalid_element_is_reported_even_after_valid_ones() {
    let e = error(
        Some("a"),
        r#"["a.jpg", {"url": "b.jpg", "paragraph": 0}, {"url": 1}, 7]"#,
    );
    assert_eq!(e.path, "images[2].url");
}

#[test]
fn rule2_tricky_but_valid_values_are_accepted() {
    for images in tricky_valid_images_cases() {
        split(Some("a\n\nb"), Some(images));
    }
}

#[test]
fn rule2_nesting_deeper_than_the_json_parser_allows_is_invalid() {
    let deep = format!(
        r#"[{{"url": "a", "x": {}0{}}}]"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let e = error(None, &deep);
    assert_eq!(e.path, "images[0].x");
    assert!(e.reason.contains("nested more than 127 deep"), "{e}");
}

// Rule 3: placement.

#[test]
fn rule3_pass1_anchored_image_goes_to_its_paragraph() {
    let chapter = split(
        Some("a\n\nb\n\nc"),
        Some(r#"[{"url": "i", "paragraph": 2}]"#),
    );
    assert_eq!(
        layout(&chapter),
        owned(&[("a", None), ("b", None), ("c", Some("i"))])
    );
}

#[test]
fn rule3_pass1_collision_first_in_array_order_wins_and_the_other_goes_to_pass2() {
    let chapter = split(
        Some("a\n\nb\n\nc"),
        Some(r#"[{"url": "first", "paragraph": 1}, {"url": "second", "paragraph": 1}]"#),
    );
    assert_eq!(
        layout(&chapter),
        owned(&[("a", Some("second")), ("b", Some("first")), ("c", None)])
    );
}

#[test]
fn rule3_pass1_out_of_range_anchor_goes_to_pass2() {
    for anchor in ["2", "3", "18446744073709551616"] {
        let text = format!(r#"["s", {{"url": "far", "paragraph": {anchor}}}]"#);
        let chapter = split(Some("a\n\nb"), Some(&text));
        assert_eq!(
            layout(&chapter),
            owned(&[("a", Some("s")), ("b", Some("far"))])
        );
    }
}

#[test]
fn rule3_pass1_anchor_counts_paragraphs_not_appended_sections() {
    let chapter = split(
        Some("a"),
        Some(r#"[{"url": "p2", "paragraph": 2}, "b", "c", "d"]"#),
    );
    assert_eq!(
        layout(&chapter),
        owned(&[
            ("a", Some("p2")),
            ("", Some("b")),
            ("", Some("c")),
            ("", Some("d"))
        ])
    );
}

#[test]
fn rule3_pass2_in_array_order_to_the_lowest_free_section() {
    let chapter = split(
        Some("a\n\nb\n\nc\n\nd"),
        Some(r#"["u1", {"url": "p0", "paragraph": 0}, "u2", {"url": "p2", "paragraph": 2}, "u3"]"#),
    );
    assert_eq!(
        layout(&chapter),
        owned(&[
            ("a", Some("p0")),
            ("b", Some("u1")),
            ("c", Some("p2")),
            ("d", Some("u2")),
            ("", Some("u3"))
        ])
    );
}

#[test]
fn rule3_pass2_appends_sections_with_empty_content_when_none_is_free() {
    let chapter = split(Some("only"), Some(r#"["a", "b", "c"]"#));
    assert_eq!(
        layout(&chapter),
        owned(&[("only", Some("a")), ("", Some("b")), ("", Some("c"))])
    );
}

#[test]
fn rule3_no_image_is_dropped_and_each_section_holds_at_most_one() {
    let chapter = split(
        Some("a\n\nb"),
        Some(
            r#"[{"url": "1", "paragraph": 0}, {"url": "2", "paragraph": 0}, {"url": "3", "paragraph": 0}, "4"]"#,
        ),
    );
    let urls: Vec<_> = layout(&chapter)
        .into_iter()
        .filter_map(|(_, u)| u)
        .collect();
    assert_eq!(urls, ["1", "2", "3", "4"]);
    assert_eq!(chapter.sections.len(), 4);
}

#[test]
fn rule3_section_image_is_the_object_and_a_string_becomes_url_object() {
    let chapter = split(
        Some("a\n\nb"),
        Some(r#"["s.jpg", {"url": "o.jpg", "caption": null, "paragraph": 0, "k": {"n": 1}}]"#),
    );
    assert_eq!(
        chapter.sections[0].image,
        Some(json!({"url": "o.jpg", "caption": null, "paragraph": 0, "k": {"n": 1}}))
    );
    assert_eq!(chapter.sections[1].image, Some(json!({"url": "s.jpg"})));
}

// Rule 4: cover.

#[test]
fn rule4_cover_of_a_string_element_is_url_object() {
    let chapter = split(Some("a"), Some(r#"["c.jpg", "d.jpg"]"#));
    assert_eq!(chapter.cover_image, Some(json!({"url": "c.jpg"})));
}

#[test]
fn rule4_cover_of_an_object_element_is_the_whole_object() {
    let chapter = split(
        Some("a\n\nb"),
        Some(r#"[{"url": "c.jpg", "caption": "封面", "paragraph": 1, "w": 3}, "d.jpg"]"#),
    );
    let cover = json!({"url": "c.jpg", "caption": "封面", "paragraph": 1, "w": 3});
    assert_eq!(chapter.cover_image, Some(cover.clone()));
    assert_eq!(
        chapter.sections[1].image,
        Some(cover),
        "the cover is also a section image"
    );
}

#[test]
fn rule4_cover_is_the_first_element_even_when_placed_later() {
    let chapter = split(
        Some("a\n\nb"),
        Some(r#"[{"url": "first", "paragraph": 1}, {"url": "second", "paragraph": 0}]"#),
    );
    assert_eq!(
        chapter.cover_image,
        Some(json!({"url": "first", "paragraph": 1}))
    );
}

#[test]
fn rule4_cover_is_null_without_images() {
    for images in [None, Some("null"), Some("[]")] {
        assert_eq!(split(Some("a"), images).cover_image, None);
        assert_eq!(split(None, images).cover_image, None);
    }
}

// Rule 5: positions.

#[test]
fn rule5_positions_are_dense_from_zero() {
    let chapter = split(
        Some("a\n\n\n\nb\n \nc"),
        Some(r#"["1", "2", "3", "4", "5"]"#),
    );
    let positions: Vec<i32> = chapter.sections.iter().map(|s| s.position).collect();
    assert_eq!(positions, [0, 1, 2, 3, 4]);
}

#[test]
fn rule5_empty_content_and_no_images_give_no_sections() {
    for content in [None, Some(""), Some(" \r\n\t\u{3000}\n")] {
        for images in [None, Some("null"), Some("[]")] {
            let chapter = split(content, images);
            assert!(chapter.sections.is_empty(), "{content:?} {images:?}");
            assert_eq!(chapter.cover_image, None);
        }
    }
}

#[test]
fn rule5_empty_content_with_images_gives_one_empty_section_per_image() {
    let chapter = split(None, Some(r#"[{"url": "a", "paragraph": 0}, "b"]"#));
    assert_eq!(
        chapter.sections,
        [
            section(0, "", Some(json!({"url": "a", "paragraph": 0}))),
            section(1, "", Some(json!({"url": "b"}))),
        ]
    );
    assert_eq!(
        chapter.cover_image,
        Some(json!({"url": "a", "paragraph": 0}))
    );
}

// Stage 4: image rows.

#[test]
fn stage4_url_caption_and_meta() {
    let row = image_row(
        &json!({"w": 3, "url": "a.jpg", "caption": "说明", "paragraph": 0, "exif": {"iso": 200}}),
    )
    .expect("valid");
    assert_eq!(row.url, "a.jpg");
    assert_eq!(row.caption.as_deref(), Some("说明"));
    assert_eq!(
        Value::Object(row.meta).to_string(),
        r#"{"w":3,"paragraph":0,"exif":{"iso":200}}"#
    );
}

#[test]
fn stage4_null_or_absent_caption_is_null_and_meta_may_be_empty() {
    for image in [
        json!({"url": "a.jpg"}),
        json!({"url": "a.jpg", "caption": null}),
    ] {
        let row = image_row(&image).expect("valid");
        assert_eq!(row.caption, None);
        assert!(row.meta.is_empty());
    }
}

#[test]
fn stage4_rejects_objects_stage2_would_not_have_written() {
    let path = |image: Value| image_row(&image).map(|_| ()).unwrap_err().path;
    assert_eq!(path(json!("a.jpg")), "image");
    assert_eq!(path(json!({})), "image.url");
    assert_eq!(path(json!({"url": ""})), "image.url");
    assert_eq!(path(json!({"url": "a", "caption": 1})), "image.caption");
    assert_eq!(
        image_row(&json!({"url": 5}))
            .map(|_| ())
            .unwrap_err()
            .to_string(),
        "image.url: expected a non-empty string, found 5"
    );
}

#[test]
fn stage4_every_split_image_makes_a_row() {
    let chapter = split(
        Some("a\n\nb"),
        Some(
            r#"["x.jpg", {"url":"y.jpg","caption":null,"paragraph":0,"w":3}, {"url":"z.jpg","caption":"c"}]"#,
        ),
    );
    let images = chapter
        .cover_image
        .iter()
        .chain(chapter.sections.iter().filter_map(|s| s.image.as_ref()));
    let rows: Vec<_> = images.map(|i| image_row(i).expect("valid")).collect();
    let urls: Vec<&str> = rows.iter().map(|r| r.url.as_str()).collect();
    assert_eq!(urls, ["x.jpg", "y.jpg", "x.jpg", "z.jpg"]);
    assert_eq!(
        Value::Object(rows[1].meta.clone()),
        json!({"paragraph": 0, "w": 3})
    );
}
