//! Properties of the chapter splitter over generated chapters, checked against a naive
//! re-derivation of the spec's rules written independently of the library's code.

use planrun_memoir::{joined_paragraphs, paragraphs, split_chapter, SplitChapter};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Rule 1 the slow, obvious way: normalise with two replaces, split on `\n`, group.
fn naive_paragraphs(content: Option<&str>) -> Vec<String> {
    let text = content
        .unwrap_or("")
        .replace("\r\n", "\n")
        .replace('\r', "\n");
    let mut out = Vec::new();
    let mut run: Vec<&str> = Vec::new();
    for line in text.split('\n') {
        if line.chars().all(char::is_whitespace) {
            if !run.is_empty() {
                out.push(run.join("\n"));
                run.clear();
            }
        } else {
            run.push(line);
        }
    }
    if !run.is_empty() {
        out.push(run.join("\n"));
    }
    out
}

/// Rule 3 the slow, obvious way: the url of the image each section holds.
fn naive_placement(paragraphs: usize, elements: &[Value]) -> Vec<Option<usize>> {
    let mut sections: Vec<Option<usize>> = vec![None; paragraphs];
    let mut placed = vec![false; elements.len()];
    for (i, element) in elements.iter().enumerate() {
        if let Some(k) = element.get("paragraph").and_then(Value::as_u64) {
            if (k as usize) < paragraphs && sections[k as usize].is_none() {
                sections[k as usize] = Some(i);
                placed[i] = true;
            }
        }
    }
    for (i, _) in placed.iter().enumerate().filter(|(_, placed)| !**placed) {
        match sections.iter().position(Option::is_none) {
            Some(free) => sections[free] = Some(i),
            None => sections.push(Some(i)),
        }
    }
    sections
}

fn as_object(element: &Value) -> Value {
    match element {
        Value::String(url) => json!({ "url": url }),
        other => other.clone(),
    }
}

fn content_strategy() -> impl Strategy<Value = Option<String>> {
    let piece = prop::sample::select(vec![
        "a", "Bc", "中文", "。", " ", "  ", "\t", "\u{3000}", "\u{a0}", "\u{200b}", "\u{2028}",
    ]);
    let line = prop::collection::vec(piece, 0..5).prop_map(|p| p.concat());
    let ending = prop::sample::select(vec!["\n", "\n", "\n", "\r\n", "\r"]);
    let lines = prop::collection::vec((line, ending), 0..14).prop_map(|lines| {
        lines
            .into_iter()
            .map(|(line, ending)| line + ending)
            .collect::<String>()
    });
    prop::option::weighted(0.9, lines)
}

fn element_strategy() -> impl Strategy<Value = Value> {
    let anchor = prop_oneof![
        4 => (0u64..8).prop_map(|k| json!(k)),
        1 => Just(Value::Number(serde_json::from_str("18446744073709551616").unwrap_or(0.into()))),
    ];
    let caption = prop_oneof![Just(json!("说明")), Just(Value::Null)];
    prop_oneof![
        1 => "[a-z]{1,3}\\.jpg".prop_map(Value::String),
        3 => (
            "[a-z]{1,3}\\.png",
            prop::option::of(caption),
            prop::option::of(anchor),
            prop::option::of(0i64..5),
        )
            .prop_map(|(url, caption, anchor, extra)| {
                let mut object = Map::new();
                if let Some(extra) = extra {
                    object.insert("extra".into(), json!({ "n": extra }));
                }
                object.insert("url".into(), Value::String(url));
                if let Some(caption) = caption {
                    object.insert("caption".into(), caption);
                }
                if let Some(anchor) = anchor {
                    object.insert("paragraph".into(), anchor);
                }
                Value::Object(object)
            }),
    ]
}

fn split(content: Option<&str>, elements: &[Value]) -> SplitChapter {
    let text = Value::Array(elements.to_vec()).to_string();
    match split_chapter(content, Some(&text)) {
        Ok(chapter) => chapter,
        Err(e) => panic!("generated chapter rejected: {e}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_image_is_lost(
        content in content_strategy(),
        elements in prop::collection::vec(element_strategy(), 0..12),
    ) {
        let chapter = split(content.as_deref(), &elements);
        let mut placed: Vec<String> =
            chapter.sections.iter().filter_map(|s| s.image.as_ref()).map(Value::to_string).collect();
        let mut expected: Vec<String> = elements.iter().map(|e| as_object(e).to_string()).collect();
        placed.sort();
        expected.sort();
        prop_assert_eq!(placed, expected);
        prop_assert_eq!(chapter.image_count, elements.len());
        prop_assert_eq!(chapter.cover_image, elements.first().map(as_object));
    }

    #[test]
    fn positions_are_dense_from_zero(
        content in content_strategy(),
        elements in prop::collection::vec(element_strategy(), 0..12),
    ) {
        let chapter = split(content.as_deref(), &elements);
        let positions: Vec<i32> = chapter.sections.iter().map(|s| s.position).collect();
        let expected: Vec<i32> = (0..).take(positions.len()).collect();
        prop_assert_eq!(positions, expected);
    }

    #[test]
    fn section_contents_are_the_paragraphs(
        content in content_strategy(),
        elements in prop::collection::vec(element_strategy(), 0..12),
    ) {
        let chapter = split(content.as_deref(), &elements);
        let naive = naive_paragraphs(content.as_deref());
        let library: Vec<String> =
            paragraphs(content.as_deref()).into_iter().map(|p| p.into_owned()).collect();
        prop_assert_eq!(&library, &naive);

        let non_empty: Vec<&str> = chapter
            .sections
            .iter()
            .map(|s| s.content.as_str())
            .filter(|c| !c.is_empty())
            .collect();
        prop_assert_eq!(non_empty.join("\n\n"), naive.join("\n\n"));
        prop_assert_eq!(joined_paragraphs(content.as_deref()), naive.join("\n\n"));

        let (paragraph_sections, appended) = chapter.sections.split_at(naive.len().min(chapter.sections.len()));
        let contents: Vec<&str> = paragraph_sections.iter().map(|s| s.content.as_str()).collect();
        prop_assert_eq!(contents, naive.iter().map(String::as_str).collect::<Vec<_>>());
        prop_assert!(appended.iter().all(|s| s.content.is_empty() && s.image.is_some()));
        prop_assert_eq!(chapter.sections.len(), naive.len().max(elements.len()));
    }

    #[test]
    fn a_free_in_range_anchor_is_honoured(
        content in content_strategy(),
        elements in prop::collection::vec(element_strategy(), 0..12),
    ) {
        let chapter = split(content.as_deref(), &elements);
        let paragraph_count = naive_paragraphs(content.as_deref()).len();
        let mut claimed = std::collections::HashSet::new();
        for element in &elements {
            let Some(k) = element.get("paragraph").and_then(Value::as_u64) else { continue };
            if (k as usize) < paragraph_count && claimed.insert(k) {
                prop_assert_eq!(chapter.sections[k as usize].image.as_ref(), Some(element));
            }
        }
    }

    #[test]
    fn placement_matches_a_naive_rederivation(
        content in content_strategy(),
        elements in prop::collection::vec(element_strategy(), 0..12),
    ) {
        let chapter = split(content.as_deref(), &elements);
        let expected: Vec<Option<Value>> =
            naive_placement(naive_paragraphs(content.as_deref()).len(), &elements)
                .into_iter()
                .map(|slot| slot.map(|i| as_object(&elements[i])))
                .collect();
        let actual: Vec<Option<Value>> = chapter.sections.into_iter().map(|s| s.image).collect();
        prop_assert_eq!(actual, expected);
    }
}

#[test]
fn a_chapter_with_ten_thousand_images_and_a_hundred_thousand_paragraphs_splits() {
    let content: String = (0..100_000).map(|i| format!("p{i}\n\n")).collect();
    let elements: Vec<Value> = (0..10_000u64)
        .map(|i| {
            if i % 3 == 0 {
                json!({ "url": format!("{i}.jpg"), "paragraph": 99_999 - i })
            } else {
                json!(format!("{i}.jpg"))
            }
        })
        .collect();
    let chapter = split(Some(&content), &elements);
    assert_eq!(chapter.sections.len(), 100_000);
    assert_eq!(
        chapter
            .sections
            .iter()
            .filter(|s| s.image.is_some())
            .count(),
        10_000
    );
    assert_eq!(
        chapter.sections[99_999].image,
        Some(json!({"url": "0.jpg", "paragraph": 99_999}))
    );
    assert_eq!(chapter.sections[0].image, Some(json!({"url": "1.jpg"})));
}
