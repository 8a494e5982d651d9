//! Batched mode: step params the engine reads itself (`mode`, `batch_size`, `pause`
//! and the throttles) rather than the transform. In batched mode the engine commits each batch in key
//! order with its checkpoint, so a table too big for one transaction can be migrated
//! and a crashed run resumes after the last committed batch.

use std::time::Duration;

/// Step params that belong to the engine, not to the transform.
pub const ENGINE_PARAMS: [&str; 8] = [
    "mode",
    "batch_size",
    "pause",
    "batch_target",
    "max_replica_lag",
    "max_transaction_age",
    "pause_while",
    "on_replica_gone",
];

/// The engine params that say how fast a batched stage goes, not what it does: every
/// one but `mode`. They are tunable on a half-done stage, so a stage's checksum leaves
/// them out. `batch_size` among them: a batch resumes after the checkpoint's key,
/// whatever the size of the batches before it.
pub const TUNABLE_PARAMS: [&str; 7] = [
    "batch_size",
    "pause",
    "batch_target",
    "max_replica_lag",
    "max_transaction_age",
    "pause_while",
    "on_replica_gone",
];

/// What `max_replica_lag` makes of a replication slot whose standby is not connected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReplicaGone {
    /// It counts as lagging: the stage waits until the standby is back (the default).
    #[default]
    Wait,
    /// The stage goes on without it, and says so.
    Continue,
}

/// How a batched transform step runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSettings {
    /// Source rows per committed batch.
    pub batch_size: u64,
    /// Wait between batches, to leave the server room for other work.
    pub pause: Duration,
    /// Adapt the batch size so that a batch takes about this long (`batch_size` is
    /// then the first size).
    pub target: Option<Duration>,
    /// Wait while a streaming replica's replay lags more than this.
    pub max_replica_lag: Option<Duration>,
    /// Wait while another session's transaction has been open longer than this.
    pub max_transaction_age: Option<Duration>,
    /// A query; wait while it returns true.
    pub pause_while: Option<String>,
    /// What a replication slot without its standby means for `max_replica_lag`.
    pub on_replica_gone: ReplicaGone,
}

impl BatchSettings {
    pub fn new(batch_size: u64) -> BatchSettings {
        BatchSettings {
            batch_size,
            pause: Duration::ZERO,
            target: None,
            max_replica_lag: None,
            max_transaction_age: None,
            pause_while: None,
            on_replica_gone: ReplicaGone::Wait,
        }
    }
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
    let pause = duration(params, "pause")?.unwrap_or(Duration::ZERO);
    let pause_while = match params.get("pause_while") {
        None => None,
        Some(toml::Value::String(sql)) if !sql.trim().is_empty() => Some(sql.clone()),
        Some(other) => {
            return Err(format!(
            "`pause_while` must be a query returning true while planrun should wait, found {other}"
        ))
        }
    };
    let settings = BatchSettings {
        batch_size,
        pause,
        target: duration(params, "batch_target")?,
        max_replica_lag: duration(params, "max_replica_lag")?,
        max_transaction_age: duration(params, "max_transaction_age")?,
        pause_while,
        on_replica_gone: replica_gone(params)?,
    };
    match mode {
        "atomic" => {
            if let Some(key) = ENGINE_PARAMS[1..]
                .iter()
                .find(|key| params.contains_key(**key))
            {
                return Err(format!("`{key}` applies only with mode = \"batched\""));
            }
            Ok(None)
        }
        "batched" => Ok(Some(settings)),
        other => Err(format!(
            "`mode` must be \"atomic\" or \"batched\", found \"{other}\""
        )),
    }
}

fn replica_gone(params: &toml::Table) -> Result<ReplicaGone, String> {
    match params.get("on_replica_gone") {
        None => Ok(ReplicaGone::Wait),
        Some(toml::Value::String(value)) if value == "wait" => Ok(ReplicaGone::Wait),
        Some(toml::Value::String(value)) if value == "continue" => Ok(ReplicaGone::Continue),
        Some(other) => Err(format!(
            "`on_replica_gone` must be \"wait\" or \"continue\", found {other}"
        )),
    }
}

/// `params` without the tunable ones ([`TUNABLE_PARAMS`]): what a stage's checksum
/// covers.
pub fn untuned_params(params: &toml::Table) -> toml::Table {
    params
        .iter()
        .filter(|(key, _)| !TUNABLE_PARAMS.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// The duration under `key`: `"200ms"`, `"5s"`, `"2min"`, or milliseconds.
fn duration(params: &toml::Table, key: &str) -> Result<Option<Duration>, String> {
    match params.get(key) {
        None => Ok(None),
        Some(toml::Value::String(text)) => parse_duration(key, text).map(Some),
        Some(toml::Value::Integer(ms)) if *ms >= 0 => Ok(Some(Duration::from_millis(*ms as u64))),
        Some(other) => Err(format!(
            "`{key}` must be a duration such as \"200ms\", found {other}"
        )),
    }
}

fn parse_duration(key: &str, text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let wrong =
        || format!("`{key}` \"{text}\" is not a duration such as \"200ms\", \"5s\" or \"2min\"");
    let number: u64 = number.parse().map_err(|_| wrong())?;
    match unit.trim() {
        "ms" | "" => Ok(Duration::from_millis(number)),
        "s" => Ok(Duration::from_secs(number)),
        "min" => Ok(Duration::from_secs(number * 60)),
        _ => Err(wrong()),
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
                pause: Duration::from_millis(20),
                ..BatchSettings::new(500)
            })
        );
        assert!(batch_settings(&table("mode = \"sometimes\"")).is_err());
        assert!(batch_settings(&table("batch_size = 5")).is_err());
        assert!(batch_settings(&table("max_replica_lag = \"5s\"")).is_err());
        let online = batch_settings(&table(
            "mode = \"batched\"\nbatch_target = \"500ms\"\nmax_replica_lag = \"5s\"\nmax_transaction_age = \"2min\"\npause_while = \"SELECT false\"",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(online.target, Some(Duration::from_millis(500)));
        assert_eq!(online.max_replica_lag, Some(Duration::from_secs(5)));
        assert_eq!(online.max_transaction_age, Some(Duration::from_secs(120)));
        assert_eq!(online.pause_while.as_deref(), Some("SELECT false"));
        assert!(batch_settings(&table("mode = \"batched\"\nmax_replica_lag = \"soon\"")).is_err());
        assert!(batch_settings(&table("mode = \"batched\"\nbatch_size = 0")).is_err());
        assert_eq!(online.on_replica_gone, ReplicaGone::Wait);
        let going_on = batch_settings(&table(
            "mode = \"batched\"\nmax_replica_lag = \"5s\"\non_replica_gone = \"continue\"",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(going_on.on_replica_gone, ReplicaGone::Continue);
        assert!(batch_settings(&table("mode = \"batched\"\non_replica_gone = \"maybe\"")).is_err());
        assert!(batch_settings(&table("on_replica_gone = \"wait\"")).is_err());
        assert_eq!(
            transform_params(&table("mode = \"batched\"\non_invalid = \"fail\"")),
            table("on_invalid = \"fail\"")
        );
    }
}
