//! Which JSON numbers PostgreSQL's `numeric`, and so `jsonb`, can store.
//!
//! A `json` or `text` images column holds any number JSON's grammar allows, but `jsonb`
//! stores each number as a `numeric`, whose input function refuses three kinds of literal
//! with "value overflows numeric format". Measured on PostgreSQL 15.18 and compared
//! literal by literal by `tests/jsonb_limits.rs`:
//!
//! - a nonzero value whose leading digit stands at 10^131072 or above: the weight of its
//!   first base-10000 digit is an int16, so at most 131072 digits come before the point
//!   (`1e131071` and `0.0001e131075` fit, `1e131072` and `10e131071` do not);
//! - a display scale above 16383, the scale being the digits written after the point
//!   minus the exponent (at least 0), trailing zeros and zero values included: `1e-16383`
//!   fits, `1e-16384`, `1.50e-16382` and `0e-16384` do not;
//! - an exponent of magnitude `INT_MAX / 2` (1073741823) or more, refused before the
//!   digits are looked at: `0e999999` and `0e1073741822` are stored as `0`,
//!   `0e1073741823` is refused.
//!
//! Nothing else limits a number: a value below 10^-16383 already needs a larger scale.

/// The highest power of ten a nonzero `numeric`'s leading digit may stand at.
const MAX_LEADING_POWER: i64 = 131_071;

/// `numeric`'s largest display scale (`NUMERIC_DSCALE_MAX`).
const MAX_SCALE: i64 = 16_383;

/// The exponent magnitude from which `numeric_in` refuses a literal (`INT_MAX / 2`).
const EXPONENT_LIMIT: i64 = 1_073_741_823;

/// Whether PostgreSQL can store the JSON number `literal` (as serde_json spells it:
/// `-?digits(.digits)?(e[+-]digits)?`) in `jsonb`.
///
/// Only literals with an exponent or more than 16383 characters are looked at closely:
/// anything shorter has fewer than 16383 digits on either side of the point.
pub(crate) fn fits_numeric(literal: &str) -> bool {
    let unsigned = literal.strip_prefix('-').unwrap_or(literal);
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => match exponent_value(&unsigned[at + 1..]) {
            Some(exponent) => (&unsigned[..at], exponent),
            None => return false,
        },
        None if unsigned.len() <= MAX_SCALE as usize => return true,
        None => (unsigned, 0),
    };
    let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let scale = (fraction.len() as i64 - exponent).max(0);
    if scale > MAX_SCALE {
        return false;
    }
    let leading_zeros = integer
        .bytes()
        .chain(fraction.bytes())
        .position(|d| d != b'0');
    match leading_zeros {
        None => true,
        Some(zeros) => integer.len() as i64 - 1 - zeros as i64 + exponent <= MAX_LEADING_POWER,
    }
}

/// The value of an exponent's text (`+5`, `-0007`, `12`), or `None` when its magnitude
/// reaches [`EXPONENT_LIMIT`] (or the text is not an exponent).
fn exponent_value(text: &str) -> Option<i64> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = digits.trim_start_matches('0');
    if significant.len() > 10 {
        return None;
    }
    let magnitude: i64 = if significant.is_empty() {
        0
    } else {
        significant.parse().ok()?
    };
    (magnitude < EXPONENT_LIMIT).then_some(if negative { -magnitude } else { magnitude })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The same boundaries against a real server: tests/jsonb_limits.rs.
    #[test]
    fn boundaries_on_both_sides() {
        let fits = [
            "0",
            "-0",
            "1e131071",
            "-9.9999e+131071",
            "0.0001e131075",
            "1e+0000000000000000000000131071",
            "1e-16383",
            "0.1e-16382",
            "1.5e-16382",
            "0e-16383",
            "0e999999",
            "0e1073741822",
            "-0e-0",
            "1E400",
        ];
        let refused = [
            "1e131072",
            "10e131071",
            "-1e131072",
            "0.0001e131076",
            "1e200000",
            "1e-16384",
            "0.1e-16383",
            "1.50e-16382",
            "0e-16384",
            "-0.0e-16383",
            "1e-20000",
            "0e1073741823",
            "0e99999999999999999999",
            "1e-1073741822",
        ];
        for literal in fits {
            assert!(fits_numeric(literal), "{literal} fits");
        }
        for literal in refused {
            assert!(!fits_numeric(literal), "{literal} is refused");
        }
    }

    #[test]
    fn long_literals_without_an_exponent_count_digits_on_each_side() {
        assert!(fits_numeric(&"9".repeat(131_072)));
        assert!(!fits_numeric(&format!("1{}", "0".repeat(131_072))));
        assert!(fits_numeric(&format!("0.{}1", "0".repeat(16_382))));
        assert!(!fits_numeric(&format!("0.{}1", "0".repeat(16_383))));
        assert!(!fits_numeric(&format!("0.{}", "0".repeat(16_384))));
        assert!(fits_numeric(&format!(
            "{}.{}",
            "9".repeat(131_072),
            "9".repeat(16_383)
        )));
    }
}
