//! Step parameters shared by the memoir transforms, checked offline by `planrun check`
//! and again at run time (a plan may be run without being checked first).

use planrun_transform::TransformError;

/// Chapters (or images) read per round trip when a plan does not say.
pub(crate) const DEFAULT_BATCH_ROWS: i64 = 5_000;
// A batch is held in memory whole, with its output: beyond this a typo (an extra zero or
// three) would turn streaming into reading the table at once.
const MAX_BATCH_ROWS: i64 = 1_000_000;

/// Problems with `batch_rows`, as `(key, message)`.
pub(crate) fn check_batch_rows(params: &toml::Table) -> Vec<(String, String)> {
    batch_rows(params)
        .err()
        .map(|message| ("batch_rows".to_owned(), message))
        .into_iter()
        .collect()
}

/// `batch_rows`, defaulted.
pub(crate) fn batch_rows(params: &toml::Table) -> Result<i32, String> {
    match params.get("batch_rows") {
        None => Ok(DEFAULT_BATCH_ROWS as i32),
        Some(toml::Value::Integer(n)) if (1..=MAX_BATCH_ROWS).contains(n) => Ok(*n as i32),
        Some(other) => Err(format!(
            "expected an integer from 1 to {MAX_BATCH_ROWS}, found {other}"
        )),
    }
}

/// `(key, message)` for every key not in `known`.
pub(crate) fn unknown_keys(params: &toml::Table, known: &[&str]) -> Vec<(String, String)> {
    params
        .keys()
        .filter(|key| !known.contains(&key.as_str()))
        .map(|key| {
            (
                key.clone(),
                format!("unknown parameter; expected one of: {}", known.join(", ")),
            )
        })
        .collect()
}

/// Turns offline problems into the run-time error.
pub(crate) fn into_error(problems: Vec<(String, String)>) -> Result<(), TransformError> {
    if problems.is_empty() {
        return Ok(());
    }
    let text = problems
        .iter()
        .map(|(key, message)| format!("{key}: {message}"))
        .collect::<Vec<_>>()
        .join("; ");
    Err(TransformError::Params(text))
}
