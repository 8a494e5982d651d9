//! The rehearsal's report: what was rehearsed, on what, and how it went, as the
//! JSON file `planrun rehearse` writes. Plain data with no database code: the engine
//! fills it in (and reads the file back), the CLI and `planrun-html` render it.

use planrun_contract::{Document, Envelope};
use schemars::JsonSchema;
use serde::Serialize;

use crate::run::RunBody;
use crate::stage::StageStatus;

/// What was rehearsed, on what, and how it went; written to
/// `rehearsals/<plan>-<YYYYmmdd_HHMMSS>.json` (fields in `docs/exit-codes.md`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RehearsalReport {
    /// `planrun.rehearsal`, from the rehearsal's start to the report; `outcome` and
    /// `exit_code` are the apply's on the copy, or `over_budget`.
    #[serde(flatten)]
    pub envelope: Envelope,
    pub plan: String,
    pub plan_file: String,
    pub plan_checksum: String,
    /// The target, password redacted.
    pub target: String,
    /// Where the target came from: `--database-url`, `DATABASE_URL` (the
    /// environment), `./.env`, `the PG* variables`, or `planrun's throwaway cluster` (one
    /// planrun made). Absent from documents written before it was added.
    #[serde(default)]
    pub target_source: String,
    pub target_identity: Identity,
    pub copy: CopyInfo,
    /// What the rehearsal could not make safe on this machine, one sentence each;
    /// empty when nothing. Today: an applying role that is a superuser, or a member
    /// of a role that reaches the server's files or programs (`copy.roles`).
    pub warnings: Vec<String>,
    pub selection: Selection,
    pub estimate: Estimate,
    pub stages: Vec<RehearsedStage>,
    /// The full `planrun.apply` document of the apply on the copy.
    pub run: Document<RunBody>,
    /// The revert proved on the copy, per stage: what `revert --require-rehearsal`
    /// reads. Absent unless `rehearse --revert`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub revert: Option<RehearsedRevert>,
}

/// The revert the rehearsal ran on the copy after the apply and the plan's
/// `[[stage.rehearse_writes]]`: one stage at a time, newest first, each in a fresh
/// session, compared with the copy as it was before that stage was applied.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RehearsedRevert {
    /// Every stage whose revert ran, newest first.
    pub stages: Vec<RevertProof>,
}

/// Whether one stage's revert was proved exact on the copy.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RevertProof {
    pub id: String,
    /// Its revert committed (its `revert_verify`, which checks the writes made in
    /// the new shape are there in the old, passed), and the schema and every row are
    /// as before the stage, except the rows the writes of this stage or a later one
    /// touched.
    pub proved: bool,
    /// Why not, one line each: the revert's failed checks, or the first differing
    /// statements of the dump (`- ` before the stage, `+ ` after the revert), each
    /// naming its table.
    pub differences: Vec<String>,
}

/// A database as the rehearsal saw it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Identity {
    pub server_version: String,
    pub server_version_num: i32,
    pub database: String,
    pub size_bytes: i64,
    /// `count(*)` of every table whose name the plan mentions (`plan_words`).
    pub tables: Vec<TableRows>,
    pub rows_total: i64,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TableRows {
    pub schema: String,
    pub table: String,
    pub rows: i64,
}

/// The throwaway copy.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CopyInfo {
    /// Where the copy ran (gone afterwards unless `kept`).
    pub url: String,
    /// The copy before the plan ran: same tables, counted again.
    pub identity: Identity,
    /// The target's roles in the copy, and the one the plan ran as.
    pub roles: CopyRoles,
    pub pg_dump: String,
    pub pg_restore: String,
    pub dump_bytes: u64,
    pub dump_ms: u64,
    pub restore_ms: u64,
    pub restore_jobs: usize,
    pub kept: Option<Kept>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Kept {
    pub url: String,
    pub stop_command: String,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Selection {
    pub include_optional: bool,
    pub stages: Vec<String>,
    pub until: Option<String>,
}

/// How the per-stage estimates were made.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Estimate {
    pub model: String,
    /// Target rows / copy rows over the tables the plan names (1.0 when the copy has none).
    pub scale: f64,
}

/// One stage of the rehearsal, with what the engine report does not have.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RehearsedStage {
    pub id: String,
    pub status: StageStatus,
    pub duration_ms: u64,
    pub rows_affected: u64,
    pub rows_quarantined: u64,
    /// `still waiting for` lines the copy's server logged while the stage ran.
    pub lock_waits: u64,
    pub lock_wait_samples: Vec<String>,
    pub verifications_passed: usize,
    pub verifications_failed: usize,
    /// `duration_ms` times the estimate's scale, for stages that ran.
    pub estimated_target_ms: Option<u64>,
    /// What was over the stage's `lock_budget` (the stage's, else the plan's), judged
    /// on the estimates for the target; any makes the rehearsal fail.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub over_budget: Vec<String>,
    /// The table locks planrun's session really held during the stage, sampled every
    /// 10 ms (`lock_trace/`), with rewrites; the estimates on the target scale the
    /// blocked times like `estimated_target_ms`.
    pub locks: Vec<RehearsedLock>,
    /// The statements planrun's session ran during the stage, as sampled: each with
    /// how long it ran and the table locks first taken while it ran.
    pub statements: Vec<MeasuredStatement>,
}

/// A table lock measured on the copy, and its estimate on the target.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RehearsedLock {
    #[serde(flatten)]
    pub measured: MeasuredLock,
    pub estimated_blocked_reads_ms: u64,
    pub estimated_blocked_writes_ms: u64,
}

/// The roles of the copy, as the report shows them.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CopyRoles {
    /// The role the plan ran as in the copy: the target's `current_user`, with its
    /// attributes and memberships there.
    pub applying_role: String,
    /// Whether the applying role is a superuser (on the target, and so in the copy).
    pub superuser: bool,
    /// Which of `pg_execute_server_program`, `pg_read_server_files` and
    /// `pg_write_server_files` the applying role is a member of, on the target and so
    /// in the copy (a superuser is a member of every role).
    pub server_access: Vec<String>,
    /// The operating-system account the copy's server runs as: what a superuser's
    /// `COPY ... PROGRAM` would run as on this machine.
    pub os_user: String,
    /// How many roles were copied from the target; all but the applying one without
    /// LOGIN in the copy.
    pub copied: usize,
    /// Superusers on the target other than the applying role, which are not in the
    /// copy: what runs as them may fail in the rehearsal and not in production.
    pub demoted: Vec<String>,
}

impl CopyRoles {
    /// What the rehearsal could not make safe, one sentence each.
    pub fn warnings(&self) -> Vec<String> {
        let role = &self.applying_role;
        let os = &self.os_user;
        if self.superuser {
            return vec![format!(
                "applied as a superuser, as on the target: code restored from the target \
                 (triggers, functions, defaults the plan sets off) can run programs as OS \
                 user {os} on this machine, and read and write its files; rehearse as the \
                 role production migrations run as, with only the privileges they need"
            )];
        }
        if self.server_access.is_empty() {
            return Vec::new();
        }
        vec![format!(
            "applied as {role}, a member of {} as on the target: code restored from the \
             target can reach files or programs as OS user {os} on this machine",
            self.server_access.join(", ")
        )]
    }
}

/// One table's locks during one stage, as measured.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct MeasuredLock {
    pub table: String,
    /// The strongest mode seen, as `pg_locks` names it (`AccessExclusiveLock`), or
    /// `not sampled` for a table rewritten by a statement outside a transaction that
    /// took and released its lock between two samples.
    pub strongest: String,
    /// How long a lock that blocks the application's reads (ACCESS EXCLUSIVE) was held.
    pub blocked_reads_ms: u64,
    /// How long a lock that blocks its writes (SHARE and stronger) was held.
    pub blocked_writes_ms: u64,
    /// The table's storage was replaced (`relfilenode` changed): a rewrite.
    pub rewritten: bool,
    /// The statement running when the strongest lock was first seen (shortened).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taken_by: Option<String>,
}

/// One statement of a stage as the trace saw it run, with the table locks that first
/// appeared while it ran.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct MeasuredStatement {
    /// The statement's text, shortened in the middle.
    pub statement: String,
    /// How long it was seen running (active), over all its executions.
    pub running_ms: u64,
    /// How many separate times it was seen starting (a batch statement runs many).
    pub executions: u64,
    /// `table mode` of each lock first taken while it ran, strongest first.
    pub locks_taken: Vec<String>,
}
