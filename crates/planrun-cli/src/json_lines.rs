//! A JSON value shown in a terminal: on one line when it fits, else an object's
//! members wrapped under its opening brace, so that no line is wider than a 120-column
//! terminal because of one long document.

use unicode_width::UnicodeWidthStr;

/// `prefix` then `value`, wrapped into lines at most `width` columns wide where the
/// value's members allow it (a single member wider than that keeps its own line).
pub(crate) fn json_lines(prefix: &str, value: &serde_json::Value, width: usize) -> Vec<String> {
    let whole = format!("{prefix}{value}");
    let serde_json::Value::Object(members) = value else {
        return vec![whole];
    };
    if whole.width() <= width || members.is_empty() {
        return vec![whole];
    }
    let indent = " ".repeat(prefix.width() + 1);
    let count = members.len();
    let mut lines = Vec::new();
    let mut line = format!("{prefix}{{");
    let mut line_has_member = false;
    for (index, (key, member)) in members.iter().enumerate() {
        let end = if index + 1 == count { "}" } else { "," };
        let piece = format!("{}:{member}{end}", serde_json::Value::String(key.clone()));
        if line_has_member && line.width() + piece.width() > width {
            lines.push(std::mem::replace(&mut line, indent.clone()));
        }
        line.push_str(&piece);
        line_has_member = true;
    }
    lines.push(line);
    lines
}

#[cfg(test)]
mod tests {
    use super::json_lines;

    #[test]
    fn a_long_object_wraps_under_its_brace_and_a_short_one_does_not() {
        let value: serde_json::Value = serde_json::from_str(
            r#"{"id":15460724158665672388,"url":"https://img.example.com/memoirs/1/1/3.jpg","scale":0.75,"height":799,"caption":"Back: C:\\scans\\box 3","paragraph":1}"#,
        )
        .unwrap();
        let lines = json_lines("    [3] ", &value, 80);
        assert!(lines.len() > 1, "{lines:?}");
        assert!(
            lines.iter().all(|line| line.chars().count() <= 80),
            "{lines:?}"
        );
        assert!(lines[1].starts_with("         \""), "{lines:?}");
        let joined: String = lines.iter().map(|line| line.trim_start()).collect();
        assert_eq!(joined, format!("[3] {value}"));
        assert_eq!(
            json_lines("[0] ", &serde_json::json!({"a": 1}), 80),
            [r#"[0] {"a":1}"#]
        );
    }
}
