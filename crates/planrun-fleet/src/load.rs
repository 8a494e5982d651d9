//! Reading a fleet file: every problem collected with its span (unknown keys, wrong
//! types, duplicate names, a password in a url, a wave pattern that takes nothing, a
//! target in no wave) instead of stopping at the first, as the plan loader does.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use miette::NamedSource;
use toml::de::{DeTable, DeValue};

use crate::model::{Connection, Fleet, FleetTarget, Gate, OnDrift, Wave};
use crate::problem::{FleetError, FleetErrors, FleetProblem};
use crate::select::{matches, Pattern};

type Span = Range<usize>;

const TOP_KEYS: &[&str] = &["fleet", "target", "wave"];
const FLEET_KEYS: &[&str] = &["max_parallel", "max_parallel_per_host", "on_drift"];
const TARGET_KEYS: &[&str] = &["name", "url", "url_env", "labels"];
const WAVE_KEYS: &[&str] = &["name", "targets", "gate"];
const GATE_KEYS: &[&str] = &["max_lock_wait", "max_duration_factor", "max_replica_lag"];

/// Reads and validates the fleet file at `path`; nothing connects.
pub fn load(path: &Path) -> Result<Fleet, FleetError> {
    let source = std::fs::read_to_string(path).map_err(|error| FleetError::Unreadable {
        file: path.display().to_string(),
        reason: error.to_string(),
    })?;
    Ok(parse(path, source)?)
}

/// Validates `source`, the text of the fleet file `path`.
pub fn parse(path: &Path, source: String) -> Result<Fleet, FleetErrors> {
    let source = Arc::new(source);
    let mut reader = Reader {
        named: NamedSource::new(path.display().to_string(), Arc::clone(&source)),
        problems: Vec::new(),
        secrets: Vec::new(),
    };
    let fleet = reader.read(path, &source);
    let mut problems = reader.problems;
    if !reader.secrets.is_empty() {
        // The diagnostics quote the file: never with the password in it.
        let masked = Arc::new(mask(&source, &reader.secrets));
        for problem in &mut problems {
            problem.source_code = NamedSource::new(path.display().to_string(), Arc::clone(&masked));
        }
    }
    match fleet {
        Some(fleet) if problems.is_empty() => Ok(fleet),
        _ => {
            problems.sort_by_key(|problem| problem.span.offset());
            Err(FleetErrors {
                file: path.display().to_string(),
                problems,
            })
        }
    }
}

struct Reader {
    named: NamedSource<Arc<String>>,
    problems: Vec<FleetProblem>,
    /// Where the file holds passwords, masked in what the diagnostics quote.
    secrets: Vec<Span>,
}

/// `source` with the bytes of `secrets` replaced by `*`: the same length, so every
/// span still points where it did.
fn mask(source: &str, secrets: &[Span]) -> String {
    let mut bytes = source.as_bytes().to_vec();
    for secret in secrets {
        for byte in bytes.get_mut(secret.clone()).into_iter().flatten() {
            *byte = b'*';
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Where the password is in a connection string `url` (a URI's `user:PASSWORD@`, a
/// key=value string's `password=VALUE`), as a byte range of `url`.
fn password_range(url: &str) -> Option<Span> {
    if let Some(scheme_end) = url.find("://") {
        let start = scheme_end + 3;
        let authority_end = url[start..]
            .find(['/', '?'])
            .map_or(url.len(), |i| start + i);
        let at = start + url[start..authority_end].rfind('@')?;
        let colon = start + url[start..at].find(':')?;
        return Some(colon + 1..at);
    }
    let key = url.find("password")?;
    let after = key + "password".len();
    let equals = after + url[after..].find('=')?;
    let value_start = equals + 1 + (url[equals + 1..].len() - url[equals + 1..].trim_start().len());
    let value_end = url[value_start..]
        .find(char::is_whitespace)
        .map_or(url.len(), |i| value_start + i);
    Some(value_start..value_end)
}

impl Reader {
    fn problem(&mut self, message: String, span: Span, label: &str, help: Option<String>) {
        self.problems.push(FleetProblem {
            message,
            source_code: self.named.clone(),
            span: span.into(),
            label: label.to_owned(),
            help,
        });
    }

    fn read(&mut self, path: &Path, source: &str) -> Option<Fleet> {
        let (document, syntax_errors) = DeTable::parse_recoverable(source);
        if !syntax_errors.is_empty() {
            for error in syntax_errors {
                let span = error.span().unwrap_or(0..0);
                let message = format!("invalid TOML: {}", error.message().trim());
                self.problem(message, span, "here", None);
            }
            return None;
        }
        let document = document.into_inner();
        self.check_keys(&document, TOP_KEYS, "the top level");
        let mut fleet = Fleet {
            path: path.to_path_buf(),
            max_parallel: 4,
            max_parallel_per_host: 0,
            on_drift: OnDrift::Halt,
            targets: Vec::new(),
            waves: Vec::new(),
        };
        if let Some(table) = self.table(&document, "fleet") {
            self.check_keys(table, FLEET_KEYS, "[fleet]");
            fleet.max_parallel = self.count(table, "max_parallel").unwrap_or(4);
            fleet.max_parallel_per_host = self.count(table, "max_parallel_per_host").unwrap_or(0);
            fleet.on_drift = self.on_drift(table);
        }
        if fleet.max_parallel_per_host == 0 {
            fleet.max_parallel_per_host = fleet.max_parallel;
        }
        let targets = self.targets(&document);
        fleet.targets = targets.iter().map(|(target, _)| target.clone()).collect();
        fleet.waves = self.waves(&document, &targets);
        Some(fleet)
    }

    fn check_keys(&mut self, table: &DeTable<'_>, allowed: &[&str], context: &str) {
        for (key, _) in table.iter() {
            if !allowed.contains(&key.get_ref().as_ref()) {
                let help = format!("{context} takes: {}", allowed.join(", "));
                self.problem(
                    format!("unknown key `{}` in {context}", key.get_ref()),
                    key.span(),
                    "unknown key",
                    Some(help),
                );
            }
        }
    }

    fn table<'t, 'i>(&mut self, table: &'t DeTable<'i>, key: &str) -> Option<&'t DeTable<'i>> {
        let value = table.get(key)?;
        match value.get_ref() {
            DeValue::Table(inner) => Some(inner),
            _ => {
                self.problem(
                    format!("`{key}` must be a table"),
                    value.span(),
                    "not a table",
                    None,
                );
                None
            }
        }
    }

    /// The tables of `[[key]]`.
    fn tables<'t, 'i>(
        &mut self,
        table: &'t DeTable<'i>,
        key: &str,
    ) -> Vec<(&'t DeTable<'i>, Span)> {
        let Some(value) = table.get(key) else {
            return Vec::new();
        };
        match value.get_ref() {
            DeValue::Array(items) => items
                .iter()
                .filter_map(|item| match item.get_ref() {
                    DeValue::Table(inner) => Some((inner, item.span())),
                    _ => None,
                })
                .collect(),
            _ => {
                let help = Some(format!(
                    "write `[[{key}]]` (double brackets) for each entry"
                ));
                self.problem(
                    format!("`{key}` must be a list of tables"),
                    value.span(),
                    "here",
                    help,
                );
                Vec::new()
            }
        }
    }

    fn string(&mut self, table: &DeTable<'_>, key: &str) -> Option<(String, Span)> {
        let value = table.get(key)?;
        match value.get_ref() {
            DeValue::String(text) => Some((text.to_string(), value.span())),
            _ => {
                self.problem(
                    format!("`{key}` must be a string"),
                    value.span(),
                    "not a string",
                    None,
                );
                None
            }
        }
    }

    fn strings(&mut self, table: &DeTable<'_>, key: &str) -> Vec<(String, Span)> {
        let Some(value) = table.get(key) else {
            return Vec::new();
        };
        let items = match value.get_ref() {
            DeValue::Array(items) => items,
            _ => {
                let message = format!("`{key}` must be a list of strings");
                self.problem(message, value.span(), "not a list", None);
                return Vec::new();
            }
        };
        let mut strings = Vec::new();
        for item in items {
            match item.get_ref() {
                DeValue::String(text) => strings.push((text.to_string(), item.span())),
                _ => self.problem(
                    format!("`{key}` must hold strings"),
                    item.span(),
                    "not a string",
                    None,
                ),
            }
        }
        strings
    }

    fn count(&mut self, table: &DeTable<'_>, key: &str) -> Option<usize> {
        let value = table.get(key)?;
        let parsed = match value.get_ref() {
            DeValue::Integer(int) => int.as_str().replace('_', "").parse::<usize>().ok(),
            _ => None,
        };
        match parsed {
            Some(count) if count >= 1 => Some(count),
            _ => {
                self.problem(
                    format!("`{key}` must be a whole number, 1 or more"),
                    value.span(),
                    "here",
                    None,
                );
                None
            }
        }
    }

    fn on_drift(&mut self, table: &DeTable<'_>) -> OnDrift {
        match self.string(table, "on_drift") {
            None => OnDrift::Halt,
            Some((text, _)) if text == "halt" => OnDrift::Halt,
            Some((text, _)) if text == "skip" => OnDrift::Skip,
            Some((text, span)) => {
                let help = Some("\"halt\" (the default) stops the rollout at the wave; \"skip\" names the target and goes on".into());
                self.problem(
                    format!("`on_drift` is \"halt\" or \"skip\", not \"{text}\""),
                    span,
                    "here",
                    help,
                );
                OnDrift::Halt
            }
        }
    }
}

impl Reader {
    fn targets(&mut self, document: &DeTable<'_>) -> Vec<(FleetTarget, Span)> {
        let mut targets: Vec<(FleetTarget, Span)> = Vec::new();
        let mut seen: Vec<(String, Span)> = Vec::new();
        for (table, span) in self.tables(document, "target") {
            self.check_keys(table, TARGET_KEYS, "[[target]]");
            let Some((name, name_span)) = self.string(table, "name") else {
                if table.get("name").is_none() {
                    self.problem(
                        "a target needs a `name`".into(),
                        span,
                        "this [[target]]",
                        None,
                    );
                }
                continue;
            };
            if !valid_name(&name) {
                let help = Some(
                    "letters, digits, `_`, `-` and `.`, starting with a letter or digit".into(),
                );
                self.problem(
                    format!("`{name}` is not a target name"),
                    name_span.clone(),
                    "here",
                    help,
                );
            }
            if seen.iter().any(|(seen, _)| *seen == name) {
                let message = format!("target `{name}` is declared twice");
                self.problem(message, name_span.clone(), "again here", None);
            }
            seen.push((name.clone(), name_span.clone()));
            let Some(connection) = self.connection(table, &name, span.clone()) else {
                continue;
            };
            let labels = self
                .strings(table, "labels")
                .into_iter()
                .map(|(label, _)| label)
                .collect();
            targets.push((
                FleetTarget {
                    name,
                    connection,
                    labels,
                },
                name_span,
            ));
        }
        if targets.is_empty() && self.problems.is_empty() {
            let help = Some(
                "[[target]]\nname = \"tenant-a\"\nurl = \"postgresql://app@db1/tenant_a\"".into(),
            );
            self.problem(
                "the fleet has no targets".into(),
                0..0,
                "no [[target]] in this file",
                help,
            );
        }
        targets
    }

    fn connection(&mut self, table: &DeTable<'_>, name: &str, span: Span) -> Option<Connection> {
        match (self.string(table, "url"), self.string(table, "url_env")) {
            (Some(_), Some((_, env_span))) => {
                let message = format!("target `{name}` has both `url` and `url_env`");
                self.problem(message, env_span, "one or the other", None);
                None
            }
            (Some((url, url_span)), None) => {
                self.refuse_password(name, &url, url_span)?;
                Some(Connection::Url(url))
            }
            (None, Some((variable, _))) => Some(Connection::UrlEnv(variable)),
            (None, None) => {
                let help = Some(
                    "url = \"postgresql://app@db1:5432/tenant_a\", or url_env = \"TENANT_A_URL\""
                        .into(),
                );
                self.problem(
                    format!("target `{name}` needs `url` or `url_env`"),
                    span,
                    "this [[target]]",
                    help,
                );
                None
            }
        }
    }

    /// A fleet file is read, copied and committed more than a secret should be.
    fn refuse_password(&mut self, name: &str, url: &str, span: Span) -> Option<()> {
        match planrun_conninfo::parse(url) {
            Ok(settings) if settings.contains("password") => {
                // The span is the quoted string; the url starts after its quote.
                if let Some(range) = password_range(url) {
                    let start = span.start + 1;
                    self.secrets.push(start + range.start..start + range.end);
                }
                let help = Some(
                    "leave the password out: PGPASSWORD, the password file (~/.pgpass, PGPASSFILE) or a variable named by url_env give it"
                        .into(),
                );
                let message =
                    format!("target `{name}`: the url holds a password; a fleet file never does");
                self.problem(message, span, "a password here", help);
                None
            }
            Ok(_) => Some(()),
            Err(error) => {
                let message = format!(
                    "target `{name}`: invalid connection string: {}",
                    planrun_conninfo::redact(&error.to_string())
                );
                self.problem(message, span, "here", None);
                None
            }
        }
    }

    fn waves(&mut self, document: &DeTable<'_>, targets: &[(FleetTarget, Span)]) -> Vec<Wave> {
        let entries = self.tables(document, "wave");
        let all: Vec<&FleetTarget> = targets.iter().map(|(target, _)| target).collect();
        if entries.is_empty() {
            let gate = Gate::default();
            return vec![Wave {
                name: "all".into(),
                targets: (0..all.len()).collect(),
                gate,
            }];
        }
        let mut taken = vec![false; all.len()];
        let mut waves: Vec<Wave> = Vec::new();
        for (table, span) in entries {
            self.check_keys(table, WAVE_KEYS, "[[wave]]");
            let name = match self.string(table, "name") {
                Some((name, name_span)) => {
                    if waves.iter().any(|wave| wave.name == name) {
                        self.problem(
                            format!("wave `{name}` is declared twice"),
                            name_span,
                            "again here",
                            None,
                        );
                    }
                    name
                }
                None => {
                    self.problem(
                        "a wave needs a `name`".into(),
                        span.clone(),
                        "this [[wave]]",
                        None,
                    );
                    continue;
                }
            };
            let gate = self.gate(table);
            let mut members = Vec::new();
            for (text, pattern_span) in self.strings(table, "targets") {
                let pattern = Pattern::parse(&text);
                let matched: Vec<usize> = (0..all.len())
                    .filter(|&i| matches(&pattern, all[i]))
                    .collect();
                if matched.is_empty() {
                    let help = Some("a name, a glob such as \"eu-*\", or \"label:NAME\"".into());
                    self.problem(
                        format!("wave `{name}`: `{text}` matches no target"),
                        pattern_span,
                        "matches nothing",
                        help,
                    );
                }
                for index in matched {
                    if !taken[index] {
                        taken[index] = true;
                        members.push(index);
                    }
                }
            }
            if table.get("targets").is_none() {
                self.problem(
                    format!("wave `{name}` needs `targets`"),
                    span,
                    "this [[wave]]",
                    None,
                );
            }
            members.sort_unstable();
            waves.push(Wave {
                name,
                targets: members,
                gate,
            });
        }
        for (index, (target, name_span)) in targets.iter().enumerate() {
            if !taken[index] {
                let help = Some(
                    "add it to a wave, or end with a wave of targets = [\"*\"] (the rest)".into(),
                );
                self.problem(
                    format!("target `{}` is in no wave", target.name),
                    name_span.clone(),
                    "never applied",
                    help,
                );
            }
        }
        waves
    }

    fn gate(&mut self, wave: &DeTable<'_>) -> Gate {
        let Some(table) = self.table(wave, "gate") else {
            return Gate::default();
        };
        self.check_keys(table, GATE_KEYS, "[wave.gate]");
        let max_lock_wait = self.duration(table, "max_lock_wait");
        let max_replica_lag = self.duration(table, "max_replica_lag");
        let max_duration_factor = table.get("max_duration_factor").and_then(|value| {
            let factor = match value.get_ref() {
                DeValue::Float(float) => float.as_str().parse::<f64>().ok(),
                DeValue::Integer(int) => int.as_str().parse::<f64>().ok(),
                _ => None,
            };
            match factor {
                Some(factor) if factor >= 1.0 && factor.is_finite() => Some(factor),
                _ => {
                    let message = "`max_duration_factor` must be a number, 1 or more".to_owned();
                    self.problem(message, value.span(), "here", None);
                    None
                }
            }
        });
        Gate {
            max_lock_wait,
            max_duration_factor,
            max_replica_lag,
        }
    }

    /// The duration `key` of `table` ("2s", "500ms"), if given and valid.
    fn duration(&mut self, table: &DeTable<'_>, key: &str) -> Option<Duration> {
        let (text, span) = self.string(table, key)?;
        match planrun_plan::PgDuration::parse(&text) {
            Ok(duration) => Some(duration.as_duration()),
            Err(message) => {
                let message = format!("invalid `{key}`: {message}");
                self.problem(message, span, "not a duration", None);
                None
            }
        }
    }
}

fn valid_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}
