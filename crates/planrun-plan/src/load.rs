//! Reading a plan file: TOML syntax, then the shape of every table, collecting every
//! problem instead of stopping at the first. Spans come from `toml::de::DeTable`,
//! which keeps the byte range of each key and value.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

mod allow;
mod locks;
mod revert;
mod variables;

pub use variables::is_variable_name;

use crate::duration::PgDuration;
use crate::expect::{CmpOp, Expectation, Operand, Value};
use crate::model::{
    Capture, Check, Operator, PerKeyCheck, Plan, SkipRule, Span, Stage, Step, StepKind, Timeouts,
    TransformCatalog, WatchedTable, MAX_NAME_CHARS,
};
use crate::problem::{PlanErrors, PlanProblem, ProblemKind};
use crate::suggest::closest;

const TOP_KEYS: &[&str] = &["plan", "stage"];
const PLAN_KEYS: &[&str] = &[
    "name",
    "description",
    "lock_timeout",
    "statement_timeout",
    "backup_dir",
    "max_rehearsal_age",
    "setup_sql_file",
    "lock_retries",
    "lock_budget",
    "sql_dirs",
    "variables",
];
const STAGE_KEYS: &[&str] = &[
    "id",
    "title",
    "depends_on",
    "optional",
    "transaction",
    "lock_timeout",
    "statement_timeout",
    "locks",
    "lock_retries",
    "lock_budget",
    "precondition",
    "skip_if",
    "capture",
    "step",
    "verify",
    "allow",
    "revert_precondition",
    "revert_capture",
    "revert",
    "revert_verify",
    "revert_loss",
    "rehearse_writes",
];
/// The lists of tables a stage holds, `[[stage.step]]` and the like. A key written
/// below one of their headers belongs to that table, not to the stage.
const STAGE_TABLES: &[&str] = &[
    "precondition",
    "skip_if",
    "capture",
    "step",
    "verify",
    "revert_precondition",
    "revert_capture",
    "revert",
    "revert_verify",
    "revert_loss",
    "rehearse_writes",
];
const CHECK_KEYS: &[&str] = &["name", "sql", "expect", "message"];
const REVERT_CHECK_KEYS: &[&str] = &["name", "sql", "expect", "message", "loss"];
const VERIFY_KEYS: &[&str] = &[
    "name",
    "sql",
    "expect",
    "message",
    "after_step",
    "per_key_sql",
    "per_key_watch",
];
const SKIP_KEYS: &[&str] = &["sql", "expect", "reason"];
const CAPTURE_KEYS: &[&str] = &["name", "names", "sql", "expr"];
const STEP_KEYS: &[&str] = &[
    "name",
    "sql",
    "sql_file",
    "transform",
    "params",
    "allow",
    "after_commit",
];
const STEP_KINDS: &[&str] = &["sql", "sql_file", "transform"];

impl Plan {
    /// Reads and validates the plan at `path`: syntax, shape and structure (ids,
    /// dependencies, cycles, expectations, captures), and that its SQL files lie in
    /// its directory. Missing SQL files and unknown transforms are
    /// [`Plan::load_checked`]'s to report.
    pub fn load(path: &Path) -> Result<Plan, PlanErrors> {
        Plan::load_inner(path, None, &Operator::default())
    }

    /// [`Plan::load`] with what the operator gave on the command line.
    pub fn load_allowing(path: &Path, operator: &Operator) -> Result<Plan, PlanErrors> {
        Plan::load_inner(path, None, operator)
    }

    /// [`Plan::load`] plus the environment: SQL files on disk, transforms registered
    /// in `catalog` with acceptable params. Every problem is reported together.
    pub fn load_checked(path: &Path, catalog: &dyn TransformCatalog) -> Result<Plan, PlanErrors> {
        Plan::load_inner(path, Some(catalog), &Operator::default())
    }

    /// [`Plan::load_checked`] with what the operator gave on the command line: SQL
    /// files also allowed in its directories (`--allow-sql-dir`; a plan file can never
    /// add one) and psql variables set over the plan's (`--set`).
    pub fn load_checked_allowing(
        path: &Path,
        catalog: &dyn TransformCatalog,
        operator: &Operator,
    ) -> Result<Plan, PlanErrors> {
        Plan::load_inner(path, Some(catalog), operator)
    }

    fn load_inner(
        path: &Path,
        catalog: Option<&dyn TransformCatalog>,
        operator: &Operator,
    ) -> Result<Plan, PlanErrors> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| {
            PlanErrors::new(
                display.clone(),
                Arc::new(String::new()),
                vec![PlanProblem::new(
                    ProblemKind::Syntax,
                    format!("cannot read plan file {display}: {error}"),
                )],
            )
        })?;
        Plan::parse_allowing(path, text, catalog, operator)
    }

    /// Validates plan `text` as if read from `path` (SQL files resolve against its
    /// directory); with a `catalog`, the environment too.
    pub fn parse(
        path: &Path,
        text: String,
        catalog: Option<&dyn TransformCatalog>,
    ) -> Result<Plan, PlanErrors> {
        Plan::parse_allowing(path, text, catalog, &Operator::default())
    }

    /// [`Plan::parse`] with what the operator gave on the command line.
    pub fn parse_allowing(
        path: &Path,
        text: String,
        catalog: Option<&dyn TransformCatalog>,
        operator: &Operator,
    ) -> Result<Plan, PlanErrors> {
        let source = Arc::new(text);
        let mut problems = Vec::new();
        let mut plan = read_plan(path, &source, &mut problems);
        if let Some(plan) = &mut plan {
            plan.allowed_sql_dirs = operator.sql_dirs.clone();
            plan.variables.extend(operator.variables.clone());
        }
        if let Some(plan) = &plan {
            problems.extend(crate::validate::structure(plan));
            if let Some(catalog) = catalog {
                problems.extend(plan.environment_problems(catalog));
            } else {
                // Without the environment checks too: a command that only draws the
                // plan may still build a runner, which reads every SQL file.
                problems.extend(crate::confine::confinement_problems(plan));
            }
        }
        match plan {
            Some(plan) if problems.is_empty() => Ok(plan),
            _ => {
                sort_problems(&mut problems);
                Err(PlanErrors::new(
                    path.display().to_string(),
                    source,
                    problems,
                ))
            }
        }
    }
}

fn sort_problems(problems: &mut [PlanProblem]) {
    problems.sort_by_key(|problem| problem.labels.first().map_or(0, |(span, _)| span.start));
}

/// Reads the document into a [`Plan`], or `None` when even its skeleton is unusable.
/// Problems of shape are pushed to `problems`; a plan is still returned when only
/// some fields are wrong, so that structural checks can run on the rest too.
fn read_plan(path: &Path, source: &Arc<String>, problems: &mut Vec<PlanProblem>) -> Option<Plan> {
    let (document, syntax_errors) = DeTable::parse_recoverable(source);
    if !syntax_errors.is_empty() {
        for error in syntax_errors {
            let span = error.span().unwrap_or(0..0);
            problems.push(
                PlanProblem::new(
                    ProblemKind::Syntax,
                    format!("invalid TOML: {}", error.message().trim()),
                )
                .label(span, "here"),
            );
        }
        return None;
    }
    let mut reader = Reader {
        problems,
        first_stage_table: None,
    };
    let document_span = document.span();
    let document = document.into_inner();
    reader.check_keys(&document, TOP_KEYS, "the top level");

    let mut setup_sql_file = None;
    let mut lock_retries = None;
    let mut lock_budget = None;
    let mut variables = Default::default();
    let (name, description, timeouts, backup_dir, max_rehearsal_age) = match document.get("plan") {
        Some(plan_table) => match plan_table.get_ref() {
            DeValue::Table(table) => {
                reader.check_keys(table, PLAN_KEYS, "[plan]");
                let name = reader.string(table, "name", true, plan_table.span());
                if let Some(problem) = name
                    .as_ref()
                    .and_then(|(name, span)| too_long("plan name", name, span))
                {
                    reader.problems.push(problem);
                }
                let description = reader.string(table, "description", false, 0..0);
                let timeouts = reader.timeouts(table);
                let backup_dir = reader.string(table, "backup_dir", false, 0..0);
                let max_age = reader.duration(table, "max_rehearsal_age");
                setup_sql_file = reader.string(table, "setup_sql_file", false, 0..0);
                lock_retries = reader.lock_retries(table);
                lock_budget = reader.lock_budget(table);
                reader.refuse_sql_dirs(table);
                variables = reader.variables(table);
                (name, description, timeouts, backup_dir, max_age)
            }
            other => {
                reader.wrong_type("plan", "a table", other, plan_table.span());
                return None;
            }
        },
        None => {
            reader.problems.push(
                PlanProblem::new(ProblemKind::MissingKey, "the plan has no [plan] table")
                    .label(0..0, "expected [plan] with at least `name`")
                    .help("start the file with:\n[plan]\nname = \"my-migration\""),
            );
            (None, None, Timeouts::default(), None, None)
        }
    };

    let stage_entries = reader.tables(&document, "stage", document_span.clone());
    if stage_entries.is_empty() && document.get("stage").is_none() {
        reader.problems.push(
            PlanProblem::new(ProblemKind::MissingKey, "the plan has no stages")
                .label(
                    document_span.start..document_span.start,
                    "no [[stage]] in this file",
                )
                .help("add a stage:\n[[stage]]\nid = \"first\"\n[[stage.step]]\nsql = \"...\""),
        );
    }
    let plan_dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let stages: Vec<Stage> = stage_entries
        .into_iter()
        .filter_map(|(table, span)| reader.stage(table, span, &plan_dir))
        .collect();

    Some(Plan {
        path: path.to_path_buf(),
        source: Arc::clone(source),
        name: name.map(|(name, _)| name).unwrap_or_default(),
        description: description.map(|(text, _)| text),
        timeouts,
        lock_retries,
        lock_budget,
        backup_dir: backup_dir.map(|(dir, _)| PathBuf::from(dir)),
        max_rehearsal_age,
        allowed_sql_dirs: Vec::new(),
        variables,
        setup_sql_file: setup_sql_file.map(|(file, span)| {
            let resolved = plan_dir.join(&file);
            (file, span, resolved)
        }),
        stages,
    })
}

struct Reader<'p> {
    problems: &'p mut Vec<PlanProblem>,
    /// While the tables of a stage are read: the header of its first one
    /// (`[[stage.step]]`) and where it is, above which the stage's own keys belong.
    first_stage_table: Option<(String, Span)>,
}

fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

impl Reader<'_> {
    fn check_keys(&mut self, table: &DeTable<'_>, allowed: &[&str], context: &str) {
        for (key, _) in table.iter() {
            let name: &str = key.get_ref();
            if allowed.contains(&name) {
                continue;
            }
            let suggestion = closest(name, allowed.iter().copied());
            let problem = PlanProblem::new(
                ProblemKind::UnknownKey,
                format!("unknown key `{name}` in {context}"),
            );
            let problem = match self.misplaced_stage_key(name, suggestion, context) {
                Some((stage_key, (header, header_span))) => {
                    let moved = format!(
                        "belongs to the stage; move it above the stage's first {header} table \
                         (a key below a table header belongs to that table)"
                    );
                    let (label, help) = if stage_key == name {
                        (
                            format!("a key of [[stage]], not of {context}"),
                            format!("`{name}` {moved}"),
                        )
                    } else {
                        (
                            "not a known key".to_owned(),
                            format!("did you mean `{stage_key}`? It {moved}"),
                        )
                    };
                    problem
                        .label(key.span(), label)
                        .label(header_span, "the stage's own keys go above this table")
                        .help(help)
                }
                None => problem
                    .label(key.span(), "not a known key")
                    .help(match suggestion {
                        Some(valid) => format!("did you mean `{valid}`?"),
                        None => format!("valid keys in {context}: {}", allowed.join(", ")),
                    }),
            };
            self.problems.push(problem);
        }
    }

    /// The stage key that `name`, unknown in the stage's table `context`, stands for
    /// (itself, or the nearest when `context` has no near key), with the header of the
    /// stage's first table: the key was written below a table header instead of above.
    fn misplaced_stage_key(
        &self,
        name: &str,
        suggestion: Option<&str>,
        context: &str,
    ) -> Option<(&'static str, (String, Span))> {
        let first_table = self.first_stage_table.clone()?;
        if !context.starts_with("[[stage.") {
            return None;
        }
        let stage_keys = STAGE_KEYS
            .iter()
            .copied()
            .filter(|key| !STAGE_TABLES.contains(key));
        let stage_key = match stage_keys.clone().find(|key| *key == name) {
            Some(key) => key,
            None if suggestion.is_none() => closest(name, stage_keys)?,
            None => return None,
        };
        Some((stage_key, first_table))
    }

    fn wrong_type(&mut self, key: &str, expected: &str, found: &DeValue<'_>, span: Span) {
        self.problems.push(
            PlanProblem::new(
                ProblemKind::WrongType,
                format!("`{key}` must be {expected}, not {}", type_name(found)),
            )
            .label(span, format!("expected {expected}")),
        );
    }

    fn missing(&mut self, key: &str, owner: Span, help: Option<String>) {
        self.problems.push(
            PlanProblem::new(
                ProblemKind::MissingKey,
                format!("missing required key `{key}`"),
            )
            .label(owner, format!("this needs `{key}`"))
            .help_opt(help),
        );
    }

    fn string(
        &mut self,
        table: &DeTable<'_>,
        key: &str,
        required: bool,
        owner: Span,
    ) -> Option<(String, Span)> {
        match table.get(key) {
            Some(value) => match value.get_ref() {
                DeValue::String(text) => Some((text.to_string(), value.span())),
                other => {
                    self.wrong_type(key, "a string", other, value.span());
                    None
                }
            },
            None => {
                if required {
                    self.missing(key, owner, None);
                }
                None
            }
        }
    }

    fn boolean(&mut self, table: &DeTable<'_>, key: &str) -> Option<bool> {
        let value = table.get(key)?;
        match value.get_ref() {
            DeValue::Boolean(flag) => Some(*flag),
            other => {
                self.wrong_type(key, "true or false", other, value.span());
                None
            }
        }
    }

    fn duration(&mut self, table: &DeTable<'_>, key: &str) -> Option<PgDuration> {
        let value = table.get(key)?;
        let parsed = match value.get_ref() {
            DeValue::String(text) => PgDuration::parse(text),
            DeValue::Integer(int) => int
                .as_str()
                .replace('_', "")
                .parse::<u64>()
                .map(PgDuration::from_millis)
                .map_err(|_| format!("`{}` is not a number of milliseconds", int.as_str())),
            other => {
                self.wrong_type(key, "a duration such as \"5s\"", other, value.span());
                return None;
            }
        };
        match parsed {
            Ok(duration) => Some(duration),
            Err(message) => {
                self.problems.push(
                    PlanProblem::new(
                        ProblemKind::InvalidValue,
                        format!("invalid `{key}`: {message}"),
                    )
                    .label(value.span(), "not a duration")
                    .help("use a whole number with ms, s, min, h or d, e.g. \"5s\" or \"10min\""),
                );
                None
            }
        }
    }

    fn timeouts(&mut self, table: &DeTable<'_>) -> Timeouts {
        Timeouts {
            lock_timeout: self.duration(table, "lock_timeout"),
            statement_timeout: self.duration(table, "statement_timeout"),
        }
    }

    /// The tables of an array of tables (`[[stage]]`, `[[stage.step]]`).
    fn tables<'t, 'i>(
        &mut self,
        table: &'t DeTable<'i>,
        key: &str,
        _owner: Span,
    ) -> Vec<(&'t DeTable<'i>, Span)> {
        let Some(value) = table.get(key) else {
            return Vec::new();
        };
        match value.get_ref() {
            DeValue::Array(items) => items
                .iter()
                .filter_map(|item| match item.get_ref() {
                    DeValue::Table(inner) => Some((inner, item.span())),
                    other => {
                        self.wrong_type(key, "a list of tables", other, item.span());
                        None
                    }
                })
                .collect(),
            DeValue::Table(inner) => {
                self.problems.push(
                    PlanProblem::new(
                        ProblemKind::WrongType,
                        format!("`{key}` must be written as [[...{key}]], a list of tables"),
                    )
                    .label(value.span(), "a single table")
                    .help(format!(
                        "write `[[{key}]]` (double brackets) for each entry"
                    )),
                );
                vec![(inner, value.span())]
            }
            other => {
                self.wrong_type(key, "a list of tables", other, value.span());
                Vec::new()
            }
        }
    }

    fn expectation(
        &mut self,
        table: &DeTable<'_>,
        default: Option<Expectation>,
        owner: Span,
    ) -> Option<(Expectation, Span)> {
        let Some(value) = table.get("expect") else {
            return match default {
                Some(default) => Some((default, owner)),
                None => {
                    self.missing(
                        "expect",
                        owner,
                        Some("e.g. expect = \"> 0\", expect = 42, expect = \"no rows\"".into()),
                    );
                    None
                }
            };
        };
        let span = value.span();
        let compare = |rhs| Some((Expectation::Compare { op: CmpOp::Eq, rhs }, span.clone()));
        match value.get_ref() {
            DeValue::Boolean(flag) => compare(Operand::Bool(*flag)),
            DeValue::Integer(int) => match int.as_str().replace('_', "").parse::<i128>() {
                Ok(number) if int.radix() == 10 => compare(Operand::Expr(
                    crate::expect::Expr::Number(Value::Int(number)),
                )),
                _ => {
                    self.malformed(
                        span,
                        format!("`{}` must be a decimal integer", int.as_str()),
                    );
                    None
                }
            },
            DeValue::Float(float) => match Value::parse(float.as_str()) {
                Some(number) => compare(Operand::Expr(crate::expect::Expr::Number(number))),
                None => {
                    self.malformed(span, format!("`{}` is not a finite number", float.as_str()));
                    None
                }
            },
            DeValue::String(text) => match Expectation::parse(text) {
                Ok(expect) => Some((expect, span)),
                Err(message) => {
                    self.malformed(span, message);
                    None
                }
            },
            other => {
                self.wrong_type(
                    "expect",
                    "a number, boolean or expectation string",
                    other,
                    span,
                );
                None
            }
        }
    }

    fn malformed(&mut self, span: Span, message: String) {
        self.problems.push(
            PlanProblem::new(ProblemKind::MalformedExpectation, format!("malformed expectation: {message}"))
                .label(span, "cannot read this expectation")
                .help("write a number (42), a boolean (true), \"no rows\", \"null\", a comparison (\"> 0\", \"<= 10\", \"= 'text'\") or arithmetic on captures (\"= {a} + {b}\")"),
        );
    }

    fn stage(&mut self, table: &DeTable<'_>, span: Span, plan_dir: &Path) -> Option<Stage> {
        self.check_keys(table, STAGE_KEYS, "[[stage]]");
        let header = span.start..span.start + 9.min(span.len());
        let id = self.string(table, "id", true, header.clone());
        let title = self
            .string(table, "title", false, 0..0)
            .map(|(title, _)| title);
        let depends_on = self.string_list(table, "depends_on");
        let optional = self.boolean(table, "optional").unwrap_or(false);
        let transaction = self.boolean(table, "transaction").unwrap_or(true);
        let timeouts = self.timeouts(table);
        let locks = self.locks(table);
        let lock_retries = self.lock_retries(table);
        let lock_budget = self.lock_budget(table);
        let allow = self.allow(table);

        self.first_stage_table = STAGE_TABLES
            .iter()
            .flat_map(|key| {
                let spans: Vec<Span> = match table.get(*key) {
                    Some(value) => match value.get_ref() {
                        DeValue::Array(items) => items.iter().map(|item| item.span()).collect(),
                        DeValue::Table(_) => vec![value.span()],
                        _ => Vec::new(),
                    },
                    None => Vec::new(),
                };
                spans.into_iter().map(move |span| (span, *key))
            })
            .min_by_key(|(span, _)| span.start)
            .map(|(span, key)| {
                let header = format!("[[stage.{key}]]");
                let end = span.start + header.len().min(span.len());
                (header, span.start..end)
            });
        let preconditions = self
            .tables(table, "precondition", span.clone())
            .into_iter()
            .filter_map(|(check, span)| {
                self.check(
                    check,
                    span,
                    "[[stage.precondition]]",
                    Some(true_expectation()),
                )
            })
            .collect();
        let verify = self
            .tables(table, "verify", span.clone())
            .into_iter()
            .filter_map(|(check, span)| self.check(check, span, "[[stage.verify]]", None))
            .collect();
        let skip_if = self
            .tables(table, "skip_if", span.clone())
            .into_iter()
            .filter_map(|(rule, span)| self.skip_rule(rule, span))
            .collect();
        let captures = self
            .tables(table, "capture", span.clone())
            .into_iter()
            .filter_map(|(capture, span)| self.capture(capture, span))
            .collect();
        if !table.contains_key("step") {
            self.problems.push(
                PlanProblem::new(ProblemKind::NoSteps, "this stage has no step")
                    .label(header.clone(), "a stage needs at least one [[stage.step]]")
                    .help("add a step:\n[[stage.step]]\nsql_file = \"stage.sql\"   # or sql = \"...\" or transform = \"name\""),
            );
        }
        let steps = self
            .tables(table, "step", span.clone())
            .into_iter()
            .enumerate()
            .filter_map(|(index, (step, span))| {
                self.step(step, span, (index, "[[stage.step]]"), plan_dir)
            })
            .collect();
        let revert = self.revert(table, span.clone(), plan_dir);
        self.first_stage_table = None;

        let (id, id_span) = id?;
        if !is_identifier(&id) {
            self.problems.push(
                PlanProblem::new(
                    ProblemKind::InvalidValue,
                    format!("stage id `{id}` is not a plain identifier"),
                )
                .label(id_span.clone(), "invalid id")
                .help("use letters, digits, `_`, `-` and `.`, starting with a letter"),
            );
        } else if let Some(problem) = too_long("stage id", &id, &id_span) {
            self.problems.push(problem);
        }
        Some(Stage {
            id,
            id_span,
            title,
            depends_on,
            optional,
            transaction,
            timeouts,
            locks,
            lock_retries,
            lock_budget,
            allow,
            preconditions,
            skip_if,
            captures,
            steps,
            verify,
            revert,
            span,
        })
    }

    fn string_list(&mut self, table: &DeTable<'_>, key: &str) -> Vec<(String, Span)> {
        let Some(value) = table.get(key) else {
            return Vec::new();
        };
        let what = match key {
            "depends_on" => "a list of stage ids",
            _ => "a list of names",
        };
        match value.get_ref() {
            DeValue::Array(items) => items
                .iter()
                .filter_map(|item| match item.get_ref() {
                    DeValue::String(text) => Some((text.to_string(), item.span())),
                    other => {
                        self.wrong_type(key, what, other, item.span());
                        None
                    }
                })
                .collect(),
            DeValue::String(text) => vec![(text.to_string(), value.span())],
            other => {
                self.wrong_type(key, what, other, value.span());
                Vec::new()
            }
        }
    }

    /// `sql_dirs` let a plan widen where its SQL files may live, to `/` even, and so
    /// read any file the operator can; only the operator widens it now.
    fn refuse_sql_dirs(&mut self, table: &DeTable<'_>) {
        let Some(value) = table.get("sql_dirs") else {
            return;
        };
        self.problems.push(
            PlanProblem::new(
                ProblemKind::SqlFileOutsidePlan,
                "a plan cannot allow SQL files outside its own directory (`sql_dirs`)",
            )
            .label(value.span(), "refused: the plan widening its own confinement")
            .help("remove `sql_dirs`; whoever runs the plan allows a directory with `--allow-sql-dir DIR` on the command line"),
        );
    }

    fn check(
        &mut self,
        table: &DeTable<'_>,
        span: Span,
        context: &str,
        default: Option<Expectation>,
    ) -> Option<Check> {
        let is_verification = default.is_none();
        let is_revert_precondition = context == "[[stage.revert_precondition]]";
        let keys = if is_verification {
            VERIFY_KEYS
        } else if is_revert_precondition {
            REVERT_CHECK_KEYS
        } else {
            CHECK_KEYS
        };
        self.check_keys(table, keys, context);
        let header = span.start..span.start;
        let name = self.string(table, "name", true, header.clone());
        let sql = self.string(table, "sql", true, header.clone());
        let message = self.string(table, "message", false, 0..0).map(|(m, _)| m);
        let after_step = if is_verification {
            self.string(table, "after_step", false, 0..0)
        } else {
            None
        };
        let loss = is_revert_precondition && self.boolean(table, "loss").unwrap_or(false);
        let per_key = if is_verification {
            self.per_key(table)
        } else {
            None
        };
        let expect = self.expectation(table, default, header);
        let ((name, _), (sql, _), (expect, expect_span)) = (name?, sql?, expect?);
        Some(Check {
            name,
            sql,
            expect,
            expect_span,
            message,
            after_step,
            loss,
            per_key,
            span,
        })
    }

    /// A verification's `per_key_sql` and the tables it watches (`per_key_watch`),
    /// which mean nothing without it.
    fn per_key(&mut self, table: &DeTable<'_>) -> Option<PerKeyCheck> {
        let sql = self.string(table, "per_key_sql", false, 0..0);
        let watch: Vec<(WatchedTable, Span)> = self
            .string_list(table, "per_key_watch")
            .into_iter()
            .filter_map(|(text, span)| match WatchedTable::parse(&text) {
                Some(watched) => Some((watched, span)),
                None => {
                    self.problems.push(
                        PlanProblem::new(
                            ProblemKind::InvalidValue,
                            format!("`per_key_watch` entry `{text}` is not `table(key_column)`"),
                        )
                        .label(
                            span,
                            "expected e.g. \"public.chapter_sections(chapter_id)\"",
                        ),
                    );
                    None
                }
            })
            .collect();
        match sql {
            Some((sql, _)) => Some(PerKeyCheck { sql, watch }),
            None => {
                if let Some((_, span)) = watch.first() {
                    self.problems.push(
                        PlanProblem::new(
                            ProblemKind::MissingKey,
                            "`per_key_watch` without `per_key_sql`",
                        )
                        .label(span.clone(), "watched for a per-key check this verification does not have")
                        .help("add `per_key_sql`, the check's form for the keys in `$1`, or remove `per_key_watch`"),
                    );
                }
                None
            }
        }
    }

    fn skip_rule(&mut self, table: &DeTable<'_>, span: Span) -> Option<SkipRule> {
        self.check_keys(table, SKIP_KEYS, "[[stage.skip_if]]");
        let header = span.start..span.start;
        let sql = self.string(table, "sql", true, header.clone());
        let reason = self.string(table, "reason", true, header.clone());
        let expect = self.expectation(table, Some(true_expectation()), header);
        let ((sql, _), (reason, _), (expect, expect_span)) = (sql?, reason?, expect?);
        Some(SkipRule {
            sql,
            expect,
            expect_span,
            reason,
            span,
        })
    }

    fn capture(&mut self, table: &DeTable<'_>, span: Span) -> Option<Capture> {
        self.capture_in(table, span, "[[stage.capture]]")
    }

    fn capture_in(&mut self, table: &DeTable<'_>, span: Span, context: &str) -> Option<Capture> {
        self.check_keys(table, CAPTURE_KEYS, context);
        let header = span.start..span.start;
        let expr = self.capture_expr(table);
        let sql = if expr.is_some() {
            if let Some(value) = table.get("sql") {
                self.problems.push(
                    PlanProblem::new(
                        ProblemKind::InvalidValue,
                        "a capture has either `sql` or `expr`, not both",
                    )
                    .label(value.span(), "remove this or `expr`"),
                );
            }
            Some((String::new(), header.clone()))
        } else {
            self.string(table, "sql", true, header.clone())
        };
        let names = match (table.contains_key("name"), table.contains_key("names")) {
            (true, false) => self
                .string(table, "name", true, header)
                .into_iter()
                .collect(),
            (false, true) => {
                let names = self.string_list(table, "names");
                if names.is_empty() {
                    self.problems.push(
                        PlanProblem::new(ProblemKind::InvalidValue, "`names` lists no capture")
                            .label(table.get("names").map_or(header, |v| v.span()), "empty")
                            .help("list one name per column of the query's row"),
                    );
                }
                names
            }
            (has_name, _) => {
                self.problems.push(
                    PlanProblem::new(
                        ProblemKind::MissingKey,
                        if has_name {
                            "a capture has either `name` or `names`, not both"
                        } else {
                            "a capture needs `name` (one value) or `names` (one per column)"
                        },
                    )
                    .label(header, "this capture"),
                );
                Vec::new()
            }
        };
        for (name, name_span) in &names {
            if !is_identifier(name) || name.contains(['-', '.']) {
                self.problems.push(
                    PlanProblem::new(
                        ProblemKind::InvalidValue,
                        format!("capture name `{name}` is not an identifier"),
                    )
                    .label(name_span.clone(), "invalid name")
                    .help("use letters, digits and `_`, so that expectations can write {name}"),
                );
            }
        }
        let (sql, _) = sql?;
        if names.is_empty() {
            return None;
        }
        if let (Some((_, expr_span)), true) = (&expr, names.len() > 1) {
            self.problems.push(
                PlanProblem::new(
                    ProblemKind::InvalidValue,
                    "a capture computed with `expr` has one `name`",
                )
                .label(expr_span.clone(), "one value"),
            );
        }
        Some(Capture { names, sql, expr })
    }

    fn step(
        &mut self,
        table: &DeTable<'_>,
        span: Span,
        (index, context): (usize, &str),
        plan_dir: &Path,
    ) -> Option<Step> {
        self.check_keys(table, STEP_KEYS, context);
        let header = span.start..span.start;
        let name = self.string(table, "name", false, 0..0).map(|(n, _)| n);
        let allow = self.allow(table);
        let after_commit = table.get("after_commit").map(|value| value.span());
        let after_commit =
            after_commit.filter(|_| self.boolean(table, "after_commit") == Some(true));
        if let (Some(span), false) = (&after_commit, context == "[[stage.step]]") {
            self.problems.push(
                PlanProblem::new(
                    ProblemKind::UnknownKey,
                    format!("`after_commit` only applies to [[stage.step]], not {context}"),
                )
                .label(span.clone(), "not a stage's step"),
            );
        }
        let sql = self.string(table, "sql", false, 0..0);
        let sql_file = self.string(table, "sql_file", false, 0..0);
        let transform = self.string(table, "transform", false, 0..0);
        let given = [sql.is_some(), sql_file.is_some(), transform.is_some()]
            .iter()
            .filter(|given| **given)
            .count();
        let any_present = STEP_KINDS.iter().any(|key| table.contains_key(*key));
        // A misspelling of one of them (`sql_flie`) is reported as an unknown key with
        // the key it stands for; saying the step lacks one too would mislead.
        let misspelt = table.iter().any(|(key, _)| {
            let name: &str = key.get_ref();
            !STEP_KEYS.contains(&name)
                && closest(name, STEP_KEYS.iter().copied())
                    .is_some_and(|near| STEP_KINDS.contains(&near))
        });
        if given > 1 {
            self.problems.push(
                PlanProblem::new(
                    ProblemKind::MissingKey,
                    "a step must have exactly one of `sql`, `sql_file` or `transform`, not several",
                )
                .label(header, "this step")
                .help(format!("split it into one {context} per piece of work")),
            );
            return None;
        }
        if given == 0 {
            if !any_present && !misspelt {
                self.problems.push(
                    PlanProblem::new(
                        ProblemKind::MissingKey,
                        "a step needs one of `sql`, `sql_file` or `transform`",
                    )
                    .label(header, "this step")
                    .help("add what it runs: sql = \"...\", sql_file = \"file.sql\" or transform = \"name\""),
                );
            }
            return None;
        }
        let params = table.get("params");
        if params.is_some() && transform.is_none() {
            self.problems.push(
                PlanProblem::new(
                    ProblemKind::UnknownKey,
                    "`params` only applies to transform steps",
                )
                .label(
                    params.map(|p| p.span()).unwrap_or(header),
                    "not used by a SQL step",
                ),
            );
        }
        let (kind, default_name) = if let Some((sql, _)) = sql {
            (StepKind::Sql { sql }, format!("sql#{}", index + 1))
        } else if let Some((path, path_span)) = sql_file {
            let resolved = plan_dir.join(&path);
            let default_name = path.clone();
            (
                StepKind::SqlFile {
                    path,
                    path_span,
                    resolved,
                },
                default_name,
            )
        } else {
            let (name, name_span) = transform?;
            let (params, params_span) = match params {
                Some(value) => match value.get_ref() {
                    DeValue::Table(table) => (to_toml_table(table), value.span()),
                    other => {
                        self.wrong_type("params", "a table", other, value.span());
                        (toml::Table::new(), value.span())
                    }
                },
                None => (toml::Table::new(), name_span.clone()),
            };
            let default_name = name.clone();
            (
                StepKind::Transform {
                    name,
                    name_span,
                    params,
                    params_span,
                },
                default_name,
            )
        };
        Some(Step {
            name: name.unwrap_or(default_name),
            kind,
            allow,
            after_commit,
            span,
        })
    }
}

pub(super) fn true_expectation() -> Expectation {
    Expectation::Compare {
        op: CmpOp::Eq,
        rhs: Operand::Bool(true),
    }
}

/// A plan name or stage id longer than [`MAX_NAME_CHARS`]: the ledger indexes both
/// together, and PostgreSQL refuses a b-tree entry over a third of a page (2,704
/// bytes of 8 kB), which `apply` would only learn when it records the stage.
fn too_long(what: &str, text: &str, span: &Span) -> Option<PlanProblem> {
    let chars = text.chars().count();
    (chars > MAX_NAME_CHARS).then(|| {
        PlanProblem::new(
            ProblemKind::InvalidValue,
            format!("{what} is {chars} characters long, over the {MAX_NAME_CHARS} planrun allows"),
        )
        .label(span.clone(), format!("{chars} characters"))
        .help(format!(
            "the ledger keys its rows on the plan name and stage id: shorten it to {MAX_NAME_CHARS} characters or fewer"
        ))
    })
}

fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn to_toml_table(table: &DeTable<'_>) -> toml::Table {
    table
        .iter()
        .map(|(key, value)| (key.get_ref().to_string(), to_toml_value(value)))
        .collect()
}

fn to_toml_value(value: &Spanned<DeValue<'_>>) -> toml::Value {
    match value.get_ref() {
        DeValue::String(text) => toml::Value::String(text.to_string()),
        DeValue::Integer(int) => {
            let digits = int.as_str().replace('_', "");
            let digits = digits
                .trim_start_matches("0x")
                .trim_start_matches("0o")
                .trim_start_matches("0b");
            i64::from_str_radix(digits, int.radix())
                .map(toml::Value::Integer)
                .unwrap_or_else(|_| toml::Value::String(int.as_str().to_owned()))
        }
        DeValue::Float(float) => {
            let text: Cow<str> = float.as_str().replace('_', "").into();
            let parsed = match text.trim_start_matches('+') {
                "inf" => f64::INFINITY,
                "-inf" => f64::NEG_INFINITY,
                "nan" | "-nan" => f64::NAN,
                other => other.parse().unwrap_or(f64::NAN),
            };
            toml::Value::Float(parsed)
        }
        DeValue::Boolean(flag) => toml::Value::Boolean(*flag),
        DeValue::Datetime(datetime) => toml::Value::Datetime(*datetime),
        DeValue::Array(items) => toml::Value::Array(items.iter().map(to_toml_value).collect()),
        DeValue::Table(table) => toml::Value::Table(to_toml_table(table)),
    }
}
