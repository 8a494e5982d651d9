//! Batched mode: step params the engine reads itself (`mode`, `batch_size`, `pause`)
//! rather than the transform. In batched mode the engine commits each batch in key
//! order with its checkpoint, so a table too big for one transaction can be migrated
//! and a crashed run resumes after the last committed batch.

use std::time::Duration;

/// Step params that belong to the engine, not to the transform.
pub const ENGINE_PARAMS: [&str; 3] = ["mode", "batch_size", "pause"];

/// How a batched transform step runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSettings {
    /// Source rows per committed batch.
    pub batch_size: u64,
    /// Wait between batches, to leave the server room for other work.
    pub pause: Duration,
}

const DEFAULT_BATCH_SIZE: u64 = 10_000;

/// The step's batch settings: `None` for the default atomic mode.
pub fn batch_settings(params: &toml::Table) -> Result<Option<BatchSettings>, String> {
    let mode = match params.get("mode") {
        None => "atomic",
        Some(toml::Value::String(mode)) => mode.as_str(),
        Some(other) => {
            return Err(format!(
                "`mode` must be \"atomic\" or \"batched\", found {other}"
            ))
        }
    };
    let batch_size = match params.get("batch_size") {
        None => DEFAULT_BATCH_SIZE,
        Some(toml::Value::Integer(size)) if *size > 0 => *size as u64,
        Some(other) => {
            return Err(format!(
                "`batch_size` must be a positive integer, found {other}"
            ))
        }
    };
    let pause = match params.get("pause") {
        None => Duration::ZERO,
        Some(toml::Value::String(text)) => parse_pause(text)?,
        Some(toml::Value::Integer(ms)) if *ms >= 0 => Duration::from_millis(*ms as u64),
        Some(other) => {
            return Err(format!(
                "`pause` must be a duration such as \"200ms\", found {other}"
            ))
        }
    };
    match mode {
        "atomic" => {
            if params.contains_key("batch_size") || params.contains_key("pause") {
                return Err("`batch_size` and `pause` apply only with mode = \"batched\"".into());
            }
            Ok(None)
        }
        "batched" => Ok(Some(BatchSettings { batch_size, pause })),
        other => Err(format!(
            "`mode` must be \"atomic\" or \"batched\", found \"{other}\""
        )),
    }
}

fn parse_pause(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`pause` \"{text}\" is not a duration such as \"200ms\" or \"1s\""))?;
    match unit.trim() {
        "ms" | "" => Ok(Duration::from_millis(number)),
        "s" => Ok(Duration::from_secs(number)),
        _ => Err(format!(
            "`pause` \"{text}\" is not a duration such as \"200ms\" or \"1s\""
        )),
    }
}

/// `params` without the engine's own keys: what the transform sees.
pub fn transform_params(params: &toml::Table) -> toml::Table {
    params
        .iter()
        .filter(|(key, _)| !ENGINE_PARAMS.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn atomic_by_default_and_batched_on_request() {
        assert_eq!(batch_settings(&table("")).unwrap(), None);
        assert_eq!(
            batch_settings(&table(
                "mode = \"batched\"\nbatch_size = 500\npause = \"20ms\""
            ))
            .unwrap(),
            Some(BatchSettings {
                batch_size: 500,
                pause: Duration::from_millis(20)
            })
        );
        assert!(batch_settings(&table("mode = \"sometimes\"")).is_err());
        assert!(batch_settings(&table("batch_size = 5")).is_err());
        assert!(batch_settings(&table("mode = \"batched\"\nbatch_size = 0")).is_err());
        assert_eq!(
            transform_params(&table("mode = \"batched\"\non_invalid = \"fail\"")),
            table("on_invalid = \"fail\"")
        );
    }
}
