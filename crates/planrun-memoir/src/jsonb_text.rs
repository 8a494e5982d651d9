//! A JSON value as PostgreSQL prints it back from a `jsonb` column (`value::text`),
//! so that the split's witness can digest the images it writes exactly as a query
//! over the table would read them.
//!
//! `jsonb` keeps one value per key (the last written), orders an object's keys by
//! length and then bytewise, separates with `", "` and `": "`, escapes in strings only
//! `"`, `\`, the five short control escapes and other characters below U+0020 (as
//! `\u00XX`), and stores numbers as `numeric`, printed without an exponent with as
//! many decimals as the literal had after the exponent is applied (`1.50e1` -> `15.0`,
//! `1e2` -> `100`, `-0` -> `0`). A difference from the server's own text can only
//! make the witness disagree with the legacy side computed by SQL, so the stage fails
//! closed; `tests/hostile_data.rs` compares the two on every hostile value.

use serde_json::Value;

/// `value` as PostgreSQL's `jsonb` output function prints it.
pub(crate) fn jsonb_text(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => write_number(out, &number.to_string()),
        Value::String(text) => write_string(out, text),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|(a, _), (b, _)| {
                a.len()
                    .cmp(&b.len())
                    .then_with(|| a.as_bytes().cmp(b.as_bytes()))
            });
            out.push('{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                write_string(out, key);
                out.push_str(": ");
                write_value(out, item);
            }
            out.push('}');
        }
    }
}

fn write_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A JSON number literal as `numeric_out` prints the `numeric` it parses to.
fn write_number(out: &mut String, literal: &str) {
    let (negative, unsigned) = match literal.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, literal),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (
            &unsigned[..at],
            unsigned[at + 1..].parse::<i64>().unwrap_or(0),
        ),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: String = format!("{whole}{fraction}");
    let mut scale = fraction.len() as i64 - exponent;
    if scale < 0 {
        digits.push_str(&"0".repeat((-scale) as usize));
        scale = 0;
    }
    let scale = scale as usize;
    if digits.len() <= scale {
        let pad = scale + 1 - digits.len();
        digits.insert_str(0, &"0".repeat(pad));
    }
    let (integer, decimals) = digits.split_at(digits.len() - scale);
    let integer = integer.trim_start_matches('0');
    let integer = if integer.is_empty() { "0" } else { integer };
    let zero = integer == "0" && decimals.bytes().all(|b| b == b'0');
    if negative && !zero {
        out.push('-');
    }
    out.push_str(integer);
    if !decimals.is_empty() {
        out.push('.');
        out.push_str(decimals);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(json: &str) -> String {
        jsonb_text(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn objects_sort_keys_by_length_then_bytes_and_keep_the_last_duplicate() {
        assert_eq!(
            text(r#"{"url":"a","w":1,"caption":null,"ab":2,"w":3}"#),
            r#"{"w": 3, "ab": 2, "url": "a", "caption": null}"#
        );
        assert_eq!(text("[]"), "[]");
        assert_eq!(text("{}"), "{}");
        assert_eq!(
            text(r#"[1, {"b": [true, false]}]"#),
            r#"[1, {"b": [true, false]}]"#
        );
    }

    #[test]
    fn numbers_print_as_numeric_does() {
        for (literal, printed) in [
            ("0", "0"),
            ("-0", "0"),
            ("-0.0", "0.0"),
            ("1.50", "1.50"),
            ("1e2", "100"),
            ("1E+2", "100"),
            ("1.50e1", "15.0"),
            ("15e-1", "1.5"),
            ("1e-3", "0.001"),
            ("-12.5e-3", "-0.0125"),
            (
                "123456789012345678901234567890",
                "123456789012345678901234567890",
            ),
        ] {
            assert_eq!(text(literal), printed, "{literal}");
        }
    }

    #[test]
    fn strings_escape_what_jsonb_escapes_and_nothing_else() {
        assert_eq!(
            text(r#""a\"b\\c\/d\u0001\b\f\n\r\t\u3000é""#),
            "\"a\\\"b\\\\c/d\\u0001\\b\\f\\n\\r\\t\u{3000}é\""
        );
    }
}
