//! Durations as PostgreSQL understands them for `lock_timeout` and
//! `statement_timeout`: `"5s"`, `"250ms"`, `"10min"`, `"2h"`, `"1d"`, or an integer
//! number of milliseconds.

use std::fmt;
use std::time::Duration;

/// A validated duration, kept in the spelling the plan used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgDuration {
    text: String,
    millis: u64,
}

const UNITS: [(&str, u64); 5] = [
    ("ms", 1),
    ("s", 1_000),
    ("min", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

impl PgDuration {
    /// Parses `"5s"`-style text; the error says what is accepted.
    pub fn parse(text: &str) -> Result<PgDuration, String> {
        let trimmed = text.trim();
        let digits_end = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(digits_end);
        let unit = unit.trim();
        let invalid = || {
            format!("`{text}` is not a duration: write a whole number and a unit (ms, s, min, h, d), e.g. \"5s\"")
        };
        let number: u64 = number.parse().map_err(|_| invalid())?;
        if unit == "m" {
            return Err(format!(
                "`{text}` is not a duration: PostgreSQL writes minutes as min, e.g. \"{number}min\""
            ));
        }
        let factor = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, factor)| *factor)
            .ok_or_else(invalid)?;
        let millis = number.checked_mul(factor).ok_or_else(invalid)?;
        if millis > i32::MAX as u64 {
            return Err(format!(
                "`{text}` is longer than PostgreSQL accepts (about 24 days)"
            ));
        }
        Ok(PgDuration {
            text: format!("{number}{unit}"),
            millis,
        })
    }

    pub fn from_millis(millis: u64) -> PgDuration {
        PgDuration {
            text: format!("{millis}ms"),
            millis,
        }
    }

    pub fn millis(&self) -> u64 {
        self.millis
    }

    pub fn as_duration(&self) -> Duration {
        Duration::from_millis(self.millis)
    }

    /// The value as written for `SET lock_timeout = '...'`.
    pub fn as_setting(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for PgDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::PgDuration;

    #[test]
    fn accepts_postgres_units_and_rejects_the_rest() {
        assert_eq!(PgDuration::parse("5s").unwrap().millis(), 5_000);
        assert_eq!(PgDuration::parse("10min").unwrap().millis(), 600_000);
        assert_eq!(PgDuration::parse("250 ms").unwrap().as_setting(), "250ms");
        assert!(PgDuration::parse("5 seconds").is_err());
        assert!(PgDuration::parse("-1s").is_err());
        assert!(PgDuration::parse("30d").is_err());
        assert!(PgDuration::parse("2m").unwrap_err().contains("\"2min\""));
    }
}
