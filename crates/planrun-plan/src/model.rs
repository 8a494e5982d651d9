//! The validated plan: what `planrun` runs. Every field that validation may reject
//! keeps its byte span into the plan file so that later checks can point at it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::allow::Allowance;
use crate::duration::PgDuration;
use crate::expect::{Expectation, Expr};
use crate::locks::{LockRetries, TableLock};

/// A byte range into the plan file.
pub type Span = std::ops::Range<usize>;

/// The longest plan name or stage id, in characters: the ledger indexes the two
/// together, and a b-tree entry holds at most 2,704 bytes (`docs/plan-format.md`).
pub const MAX_NAME_CHARS: usize = 200;

/// A loaded plan whose structure is valid: ids unique, dependencies known, no cycle,
/// expectations well formed. Environment problems (missing SQL files, unknown
/// transforms) are [`Plan::check_environment`]'s to report.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The plan file as given on the command line.
    pub path: PathBuf,
    /// The plan file's text, for diagnostics raised after loading.
    pub source: Arc<String>,
    pub name: String,
    pub description: Option<String>,
    /// Plan-wide defaults, overridden per stage.
    pub timeouts: Timeouts,
    /// How stages retry a lock that `lock_timeout` cut short; a stage may override it.
    pub lock_retries: Option<LockRetries>,
    /// The plan's (or the stage's) lock budget; not part of any checksum.
    pub lock_budget: Option<crate::locks::LockBudget>,
    /// Where `apply` writes its `pg_dump` backup, relative to the working directory.
    pub backup_dir: Option<PathBuf>,
    /// How old a rehearsal report may be for `apply --require-rehearsal`.
    pub max_rehearsal_age: Option<PgDuration>,
    /// SQL run on every connection before anything else, e.g. `pg_temp` helper
    /// functions for checks; as written and resolved against the plan's directory.
    pub setup_sql_file: Option<(String, Span, PathBuf)>,
    /// Directories besides the plan's own that SQL files may live in: the operator's
    /// `--allow-sql-dir`, never anything from the plan file.
    pub allowed_sql_dirs: Vec<PathBuf>,
    /// The psql variables the SQL sees (`:NAME`, `:'NAME'`): `[plan.variables]`,
    /// then the operator's `--set NAME=VALUE` over them. Not part of any checksum.
    pub variables: BTreeMap<String, String>,
    pub stages: Vec<Stage>,
}

/// What whoever runs a plan adds to it on the command line; a plan file cannot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Operator {
    /// Directories besides the plan's own that its SQL files may live in
    /// (`--allow-sql-dir`).
    pub sql_dirs: Vec<PathBuf>,
    /// psql variables set over the plan's `[plan.variables]` (`--set NAME=VALUE`).
    pub variables: BTreeMap<String, String>,
}

/// Per-session timeouts set before a stage runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeouts {
    pub lock_timeout: Option<PgDuration>,
    pub statement_timeout: Option<PgDuration>,
}

impl Timeouts {
    /// These timeouts, falling back to `defaults` where unset.
    pub fn or(&self, defaults: &Timeouts) -> Timeouts {
        Timeouts {
            lock_timeout: self
                .lock_timeout
                .clone()
                .or_else(|| defaults.lock_timeout.clone()),
            statement_timeout: self
                .statement_timeout
                .clone()
                .or_else(|| defaults.statement_timeout.clone()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub id: String,
    pub id_span: Span,
    pub title: Option<String>,
    pub depends_on: Vec<(String, Span)>,
    pub optional: bool,
    /// `false` for work that cannot run inside a transaction, such as
    /// `CREATE INDEX CONCURRENTLY`.
    pub transaction: bool,
    pub timeouts: Timeouts,
    /// Tables locked at the stage's start, before its checks and steps, held to its
    /// commit (the transforms' own declarations are added by the engine).
    pub locks: Vec<TableLock>,
    pub lock_retries: Option<LockRetries>,
    /// The plan's (or the stage's) lock budget; not part of any checksum.
    pub lock_budget: Option<crate::locks::LockBudget>,
    /// Lock-impact rules the whole stage accepts, with their reasons.
    pub allow: Vec<Allowance>,
    pub preconditions: Vec<Check>,
    pub skip_if: Vec<SkipRule>,
    pub captures: Vec<Capture>,
    pub steps: Vec<Step>,
    pub verify: Vec<Check>,
    /// The way back (`planrun revert`); empty for a stage with no `[[stage.revert]]`.
    pub revert: Revert,
    pub span: Span,
}

/// How `planrun revert` undoes a stage, in the stage's own transaction under its
/// locks: preconditions (a failing one refuses the revert before anything changes),
/// captures, steps, then the verifications as the gate before commit. Not part of
/// the stage's checksum: giving an applied stage a way back is not drift.
#[derive(Debug, Clone, Default)]
pub struct Revert {
    /// `[[stage.revert_precondition]]`: a failing one refuses the revert, naming the
    /// rows it returned; one marked `loss = true` only warns when the stage declares
    /// `[stage.revert_loss]`.
    pub preconditions: Vec<Check>,
    /// `[[stage.revert_capture]]`, read after the preconditions, before the steps.
    pub captures: Vec<Capture>,
    /// `[[stage.revert]]`: none makes the stage irreversible.
    pub steps: Vec<Step>,
    /// `[[stage.revert_verify]]`, the gate before the revert commits.
    pub verify: Vec<Check>,
    /// `[stage.revert_loss]`: what the plan accepts the revert may lose.
    pub loss: Option<RevertLoss>,
    /// `[[stage.rehearse_writes]]` (SQL only): what the application would write once
    /// the stage is applied; `rehearse --revert` runs them on the copy before it
    /// reverts the stage, and the revert must carry them back.
    pub rehearse_writes: Vec<Step>,
}

/// `[stage.revert_loss]`: the plan's word that the revert may lose data, and why.
#[derive(Debug, Clone)]
pub struct RevertLoss {
    pub reason: String,
    pub span: Span,
}

/// Whether a stage can be reverted, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reversibility {
    /// It declares `[[stage.revert]]` steps.
    Declared,
    /// It cannot be reverted; the reason, for `check` and the refusal.
    Irreversible(String),
}

impl Stage {
    /// Whether `planrun revert` can undo this stage. planrun derives no inverse of its
    /// own: only declared `[[stage.revert]]` steps undo a stage (`docs/plan-format.md`).
    pub fn reversibility(&self) -> Reversibility {
        if !self.revert.steps.is_empty() {
            Reversibility::Declared
        } else if !self.transaction {
            Reversibility::Irreversible(
                "it declares no [[stage.revert]] steps (and runs outside a transaction)".into(),
            )
        } else {
            Reversibility::Irreversible("it declares no [[stage.revert]] steps".into())
        }
    }

    /// The stage as its revert runs it: the same id, locks, timeouts and retries, with
    /// the revert's preconditions, captures, steps and verifications in place of the
    /// forward ones, no skip rules, and only the declared loss kept of its revert.
    /// `None` for an irreversible stage.
    pub fn revert_view(&self) -> Option<Stage> {
        if self.revert.steps.is_empty() {
            return None;
        }
        Some(Stage {
            preconditions: self.revert.preconditions.clone(),
            skip_if: Vec::new(),
            captures: self.revert.captures.clone(),
            steps: self.revert.steps.clone(),
            verify: self.revert.verify.clone(),
            revert: Revert {
                loss: self.revert.loss.clone(),
                ..Revert::default()
            },
            ..self.clone()
        })
    }

    /// The stage's `[[stage.rehearse_writes]]` as the steps of a stage of their own
    /// (no checks, no revert), validated offline like steps and run by the
    /// rehearsal. `None` when it declares none.
    pub fn rehearse_writes_view(&self) -> Option<Stage> {
        if self.revert.rehearse_writes.is_empty() {
            return None;
        }
        Some(Stage {
            preconditions: Vec::new(),
            skip_if: Vec::new(),
            captures: Vec::new(),
            steps: self.revert.rehearse_writes.clone(),
            verify: Vec::new(),
            revert: Revert::default(),
            ..self.clone()
        })
    }
}

impl Stage {
    /// The stage's title, or its id when it has none.
    pub fn display_title(&self) -> &str {
        self.title.as_deref().unwrap_or(&self.id)
    }

    /// "SQL", the transform names, or both, for graph listings.
    pub fn kind_label(&self) -> String {
        let mut kinds: Vec<&str> = Vec::new();
        for step in &self.steps {
            let kind = match &step.kind {
                StepKind::Sql { .. } | StepKind::SqlFile { .. } => "SQL",
                StepKind::Transform { name, .. } => name.as_str(),
            };
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        kinds.join(" + ")
    }
}

/// A named SQL query with an expected result: a precondition or a verification.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub sql: String,
    pub expect: Expectation,
    pub expect_span: Span,
    /// Said when the check fails, e.g. what to do about it.
    pub message: Option<String>,
    /// A verification that runs right after this step of its stage instead of after
    /// the last one, so that a later step (brief DDL under a strong lock) does not
    /// hold its lock while the check reads.
    pub after_step: Option<(String, Span)>,
    /// A revert precondition whose failure means data the old shape cannot hold
    /// (`loss = true`): with `[stage.revert_loss]` it warns instead of refusing.
    pub loss: bool,
    /// The check's per-key form, for a batched stage's cutover (`per_key_sql`).
    pub per_key: Option<PerKeyCheck>,
    pub span: Span,
}

/// A verification's per-key form: `sql` is given the keys as `$1` (`bigint[]`) and
/// returns a row for each of them on which the check fails. In a batched stage it
/// lets the cutover check only the keys changed since the whole table was checked
/// outside its locks.
#[derive(Debug, Clone)]
pub struct PerKeyCheck {
    pub sql: String,
    /// Tables besides the transform's sources whose changes make a key checked
    /// again, each with the column holding the key: `public.chapter_sections(chapter_id)`.
    pub watch: Vec<(WatchedTable, Span)>,
}

/// A table whose changes a per-key check watches, and its key column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedTable {
    pub table: String,
    pub key: String,
}

impl WatchedTable {
    /// Reads `table(key_column)`.
    pub fn parse(text: &str) -> Option<WatchedTable> {
        let (table, rest) = text.trim().split_once('(')?;
        let key = rest.strip_suffix(')')?.trim();
        let table = table.trim();
        (!table.is_empty() && !key.is_empty() && !key.contains(['(', ')', ','])).then(|| {
            WatchedTable {
                table: table.to_owned(),
                key: key.to_owned(),
            }
        })
    }
}

/// SQL that, when its expectation holds, marks the stage done without running it.
#[derive(Debug, Clone)]
pub struct SkipRule {
    pub sql: String,
    pub expect: Expectation,
    pub expect_span: Span,
    pub reason: String,
    pub span: Span,
}

/// Named values read by SQL before the stage runs: the columns of the query's first
/// row, in order (`name` gives one, `names` several from one query); or one value
/// computed from earlier captures (`expr`), with no SQL.
#[derive(Debug, Clone)]
pub struct Capture {
    pub names: Vec<(String, Span)>,
    /// Empty for a computed capture.
    pub sql: String,
    pub expr: Option<(Expr, Span)>,
}

impl Capture {
    /// The names, for messages and ledger keys.
    pub fn label(&self) -> String {
        self.names
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    /// The step's name in reports: given, or derived from its kind.
    pub name: String,
    pub kind: StepKind,
    /// Lock-impact rules this step accepts, with their reasons.
    pub allow: Vec<Allowance>,
    /// Runs after the stage commits, in a transaction of its own (`after_commit =
    /// true`): a `VALIDATE CONSTRAINT` of a key the stage added `NOT VALID`. Such steps
    /// come last and take no lock that blocks readers or writers; the span is the key's.
    pub after_commit: Option<Span>,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub enum StepKind {
    /// Inline SQL.
    Sql { sql: String },
    /// A SQL file; `path` as written, `resolved` relative to the plan's directory.
    SqlFile {
        path: String,
        path_span: Span,
        resolved: PathBuf,
    },
    /// A native transform, looked up by name in the registry.
    Transform {
        name: String,
        name_span: Span,
        params: toml::Table,
        params_span: Span,
    },
}

impl Plan {
    /// The directory SQL file paths are relative to.
    pub fn dir(&self) -> &Path {
        self.path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    }

    pub fn stage(&self, id: &str) -> Option<&Stage> {
        self.stages.iter().find(|stage| stage.id == id)
    }

    /// The budget `stage`'s locks are held against: the stage's own, else the plan's.
    pub fn lock_budget_of<'p>(&'p self, stage: &'p Stage) -> Option<&'p crate::locks::LockBudget> {
        stage.lock_budget.as_ref().or(self.lock_budget.as_ref())
    }

    pub fn stage_position(&self, id: &str) -> Option<usize> {
        self.stages.iter().position(|stage| stage.id == id)
    }

    /// Each stage id's position, the first for an id used twice, as
    /// [`Plan::stage_position`] finds it: for the checks that look up every
    /// dependency, which a scan per lookup would make quadratic.
    pub fn stage_positions(&self) -> HashMap<&str, usize> {
        let mut positions = HashMap::with_capacity(self.stages.len());
        for (index, stage) in self.stages.iter().enumerate() {
            positions.entry(stage.id.as_str()).or_insert(index);
        }
        positions
    }
}

/// What the plan needs to know of the transform registry to validate steps offline.
pub trait TransformCatalog {
    /// Every registered transform name.
    fn names(&self) -> Vec<String>;
    /// Problems with `params` for transform `name`, as `(key or "", message)`.
    fn check_params(&self, name: &str, params: &toml::Table) -> Vec<(String, String)>;
    /// The table locks transform `name` declares with `params`.
    fn locks(&self, _name: &str, _params: &toml::Table) -> Vec<TableLock> {
        Vec::new()
    }
}

impl Stage {
    /// How many steps run before the stage commits: all but its `after_commit` ones,
    /// which come last.
    pub fn steps_before_commit(&self) -> usize {
        self.steps
            .iter()
            .position(|step| step.after_commit.is_some())
            .unwrap_or(self.steps.len())
    }

    /// Whether the stage has steps that run after it commits: a stage recorded
    /// `validation pending` until they have.
    pub fn has_after_commit(&self) -> bool {
        self.steps_before_commit() < self.steps.len()
    }

    /// Every lock the stage runs under: its own `locks`, then its transforms'
    /// declarations, one per table in the combined mode.
    pub fn all_locks(&self, catalog: &dyn TransformCatalog) -> Vec<TableLock> {
        let declared = self.steps.iter().flat_map(|step| match &step.kind {
            StepKind::Transform { name, params, .. } => catalog.locks(name, params),
            _ => Vec::new(),
        });
        crate::locks::merge_locks(self.locks.iter().cloned().chain(declared))
    }
}
