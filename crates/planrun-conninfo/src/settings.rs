//! [`Settings`]: connection keywords and their values, each with where it came from.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::keywords::{keyword, Keyword};
use crate::ConnInfoError;

/// Where a value came from, for messages ("sslmode=verify-full from PGSSLMODE").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The connection string.
    Given,
    /// A `PG*` environment variable.
    Environment(&'static str),
    /// libpq's built-in default.
    Default,
    /// A line of the password file.
    PassFile(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Given => f.write_str("the connection string"),
            Origin::Environment(var) => f.write_str(var),
            Origin::Default => f.write_str("libpq's default"),
            Origin::PassFile(path) => write!(f, "password file {}", path.display()),
        }
    }
}

/// Keyword values, at most one per keyword (a later one replaces an earlier one, as
/// in libpq).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    values: BTreeMap<&'static str, (String, Origin)>,
}

impl Settings {
    /// Sets `name` from the connection string; an unknown keyword is an error, as in
    /// libpq. `requiressl`, libpq's old spelling, sets `sslmode` where it stands:
    /// `require` for a value starting with 1, else `prefer`.
    pub fn set_given(&mut self, name: &str, value: String) -> Result<(), ConnInfoError> {
        if name == "requiressl" {
            let sslmode = if value.starts_with('1') {
                "require"
            } else {
                "prefer"
            };
            return self.set_given("sslmode", sslmode.into());
        }
        let keyword = known(name)?;
        self.values.insert(keyword.name, (value, Origin::Given));
        Ok(())
    }

    pub(crate) fn set(&mut self, keyword: &'static str, value: String, origin: Origin) {
        self.values.insert(keyword, (value, origin));
    }

    /// The value of `keyword`; an empty value reads as none (for most keywords libpq
    /// then takes its default; [`Settings::contains`] tells it from a missing one).
    pub fn get(&self, keyword: &str) -> Option<&str> {
        self.values
            .get(keyword)
            .map(|(value, _)| value.as_str())
            .filter(|value| !value.is_empty())
    }

    /// Whether `keyword` was set at all, if only to an empty value: the environment
    /// then does not fill it, as in libpq.
    pub fn contains(&self, keyword: &str) -> bool {
        self.values.contains_key(keyword)
    }

    /// Every keyword that was set, empty values included, in keyword order.
    pub(crate) fn iter_set(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.values
            .iter()
            .map(|(name, (value, _))| (*name, value.as_str()))
    }

    pub fn origin(&self, keyword: &str) -> Option<&Origin> {
        self.values.get(keyword).map(|(_, origin)| origin)
    }

    /// Every keyword with a non-empty value, in keyword order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.values
            .iter()
            .filter(|(_, (value, _))| !value.is_empty())
            .map(|(name, (value, _))| (*name, value.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

fn known(name: &str) -> Result<&'static Keyword, ConnInfoError> {
    keyword(name).ok_or_else(|| ConnInfoError::UnknownKeyword(name.to_owned()))
}
