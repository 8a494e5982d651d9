//! Static lock-impact analysis: from each statement's parse tree, the relations it
//! locks and in which mode (PostgreSQL's documented lock levels), whether it rewrites
//! a table or scans one to validate, whether it must run outside a transaction, and
//! the [`Finding`]s of the rules it breaks. Tables the same transaction created, or
//! that the plan created and has not filled since, are new: a lock on them endangers
//! no one, so they raise no lock finding (see [`AnalysisContext`]).

use pg_query::protobuf::{DropBehavior, ObjectType, RangeVar, ReindexObjectType};
use pg_query::NodeEnum;
use serde::Serialize;

use crate::analysis_context::AnalysisContext;
use crate::error::SqlError;
use crate::lock_mode::LockMode;
use crate::rule::{Finding, Rule};
use crate::script::parse_script;

/// A lock one statement takes on one relation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RelationLock {
    /// As written: `orders` or `shop.orders`.
    pub relation: String,
    pub mode: LockMode,
    /// Created earlier in the transaction, or by the plan and not filled since.
    pub new: bool,
}

/// What one statement does to the relations it touches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LockImpact {
    pub locks: Vec<RelationLock>,
    /// Relations rewritten whole (a new file, every index rebuilt).
    pub rewrites: Vec<String>,
    /// Relations read whole to validate a constraint or build an index.
    pub scans: Vec<String>,
    /// Why the statement cannot run in a transaction block, if it cannot.
    pub outside_transaction: Option<String>,
    pub findings: Vec<Finding>,
}

/// One statement of a script with its impact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnalyzedStatement {
    /// Byte offset of the statement in the script.
    pub offset: usize,
    /// 1-based line of the script where it starts.
    pub line: usize,
    pub impact: LockImpact,
}

/// Analyses every statement of `text` in order, carrying `context` from one to the
/// next (and, for a plan, from one stage to the next).
pub fn analyze_script(
    text: &str,
    context: &mut AnalysisContext,
) -> Result<Vec<AnalyzedStatement>, SqlError> {
    let mut analyzed = Vec::new();
    for statement in parse_script(text)? {
        let mut analyzer = Analyzer {
            context: &mut *context,
            impact: LockImpact {
                outside_transaction: statement.kind.outside_transaction_only(),
                ..LockImpact::default()
            },
        };
        if let Ok(parsed) = pg_query::parse(statement.text, 0) {
            for raw in &parsed.protobuf.stmts {
                if let Some(node) = raw.stmt.as_ref().and_then(|node| node.node.as_ref()) {
                    analyzer.statement(node);
                }
            }
        }
        analyzer.require_lock_timeout();
        analyzed.push(AnalyzedStatement {
            offset: statement.offset,
            line: statement.line(text),
            impact: analyzer.impact,
        });
    }
    Ok(analyzed)
}

/// The name of a relation as written, schema-qualified when it was.
pub(crate) fn qualified(relation: &RangeVar) -> String {
    if relation.schemaname.is_empty() {
        relation.relname.clone()
    } else {
        format!("{}.{}", relation.schemaname, relation.relname)
    }
}

/// Builds one statement's [`LockImpact`].
pub(crate) struct Analyzer<'c> {
    pub(crate) context: &'c mut AnalysisContext,
    pub(crate) impact: LockImpact,
}

impl Analyzer<'_> {
    /// Records a lock, combined with any this statement already takes on `relation`.
    pub(crate) fn lock(&mut self, relation: &str, mode: LockMode) {
        let new = self.context.is_new(relation);
        match self
            .impact
            .locks
            .iter_mut()
            .find(|lock| lock.relation == relation)
        {
            Some(lock) => lock.mode = lock.mode.combine(mode),
            None => self.impact.locks.push(RelationLock {
                relation: relation.to_owned(),
                mode,
                new,
            }),
        }
    }

    pub(crate) fn rewrite(&mut self, relation: &str) {
        if !self.impact.rewrites.iter().any(|r| r == relation) {
            self.impact.rewrites.push(relation.to_owned());
        }
    }

    pub(crate) fn scan(&mut self, relation: &str) {
        if !self.impact.scans.iter().any(|r| r == relation) {
            self.impact.scans.push(relation.to_owned());
        }
    }

    /// A finding, unless `relation` is new and the rule is about locks.
    pub(crate) fn finding(&mut self, rule: Rule, relation: Option<&str>, detail: String) {
        let new = relation.is_some_and(|relation| self.context.is_new(relation));
        if new && !rule.applies_to_new_tables() {
            return;
        }
        self.impact.findings.push(Finding {
            rule,
            relation: relation.map(str::to_owned),
            detail,
        });
    }

    /// One finding per stage when a lock that blocks writes is taken on a live table
    /// with no `lock_timeout`.
    fn require_lock_timeout(&mut self) {
        if self.context.lock_timeout() {
            return;
        }
        let Some(lock) = self
            .impact
            .locks
            .iter()
            .find(|lock| !lock.new && lock.mode.blocks_writes())
            .cloned()
        else {
            return;
        };
        if self.context.first_missing_lock_timeout() {
            self.finding(
                Rule::RequireLockTimeout,
                Some(&lock.relation),
                format!(
                    "{} on `{}` with no lock_timeout: while it waits, everything else on the table waits behind it",
                    lock.mode, lock.relation
                ),
            );
        }
    }

    pub(crate) fn statement(&mut self, node: &NodeEnum) {
        match node {
            NodeEnum::CreateStmt(stmt) => self.create_table(stmt),
            NodeEnum::CreateTableAsStmt(stmt) if !stmt.if_not_exists => {
                if let Some(relation) = stmt.into.as_ref().and_then(|into| into.rel.as_ref()) {
                    self.context.note_created(&qualified(relation));
                }
            }
            NodeEnum::AlterTableStmt(stmt) => self.alter_table(stmt),
            NodeEnum::IndexStmt(stmt) => self.create_index(stmt),
            NodeEnum::DropStmt(stmt) => self.drop(stmt),
            NodeEnum::DropdbStmt(stmt) => self.finding(
                Rule::BanDropDatabase,
                None,
                format!("DROP DATABASE {}", stmt.dbname),
            ),
            NodeEnum::TruncateStmt(stmt) => self.truncate(stmt),
            NodeEnum::VacuumStmt(stmt) => self.vacuum(stmt),
            NodeEnum::ClusterStmt(stmt) => self.cluster(stmt),
            NodeEnum::ReindexStmt(stmt) => self.reindex(stmt),
            NodeEnum::RefreshMatViewStmt(stmt) => self.refresh(stmt),
            NodeEnum::CreateTrigStmt(stmt) => {
                if let Some(relation) = &stmt.relation {
                    self.lock(&qualified(relation), LockMode::ShareRowExclusive);
                }
            }
            NodeEnum::RenameStmt(stmt) => self.rename(stmt),
            NodeEnum::DoStmt(stmt) => self.do_block(stmt),
            NodeEnum::LockStmt(stmt) => {
                let mode = usize::try_from(stmt.mode - 1)
                    .ok()
                    .and_then(|index| LockMode::ALL.get(index).copied())
                    .unwrap_or(LockMode::AccessExclusive);
                for relation in range_vars(&stmt.relations) {
                    self.lock(&relation, mode);
                }
            }
            NodeEnum::InsertStmt(stmt) => self.writes(stmt.relation.as_ref(), true),
            NodeEnum::MergeStmt(stmt) => self.writes(stmt.relation.as_ref(), true),
            NodeEnum::UpdateStmt(stmt) => self.writes(stmt.relation.as_ref(), true),
            NodeEnum::DeleteStmt(stmt) => self.writes(stmt.relation.as_ref(), false),
            NodeEnum::CopyStmt(stmt) if stmt.is_from => self.writes(stmt.relation.as_ref(), true),
            NodeEnum::VariableSetStmt(stmt) if stmt.name == "lock_timeout" => {
                self.context.set_lock_timeout(!disables_timeout(stmt));
            }
            _ => {}
        }
    }

    fn truncate(&mut self, stmt: &pg_query::protobuf::TruncateStmt) {
        let cascade = stmt.behavior() == DropBehavior::DropCascade;
        for relation in range_vars(&stmt.relations) {
            self.lock(&relation, LockMode::AccessExclusive);
            if cascade {
                self.finding(
                    Rule::BanTruncateCascade,
                    Some(&relation),
                    format!(
                        "TRUNCATE `{relation}` CASCADE empties the tables that reference it too"
                    ),
                );
            }
        }
    }

    fn cluster(&mut self, stmt: &pg_query::protobuf::ClusterStmt) {
        let relation = stmt.relation.as_ref().map(qualified);
        if let Some(relation) = &relation {
            self.lock(relation, LockMode::AccessExclusive);
            self.rewrite(relation);
        }
        let what = relation
            .as_deref()
            .map_or("every clustered table".into(), |r| format!("`{r}`"));
        self.finding(
            Rule::TableRewrite,
            relation.as_deref(),
            format!("CLUSTER rewrites {what} in index order"),
        );
    }

    fn refresh(&mut self, stmt: &pg_query::protobuf::RefreshMatViewStmt) {
        let Some(view) = stmt.relation.as_ref().map(qualified) else {
            return;
        };
        if stmt.concurrent {
            self.lock(&view, LockMode::Exclusive);
        } else {
            self.lock(&view, LockMode::AccessExclusive);
            self.finding(
                Rule::RequireConcurrentRefresh,
                Some(&view),
                format!("REFRESH MATERIALIZED VIEW `{view}` blocks its readers until the query finishes"),
            );
        }
    }

    /// INSERT, UPDATE, DELETE, MERGE, COPY FROM: ROW EXCLUSIVE on the target.
    fn writes(&mut self, relation: Option<&RangeVar>, fills: bool) {
        if let Some(relation) = relation.map(qualified) {
            self.lock(&relation, LockMode::RowExclusive);
            if fills {
                self.context.note_written(&relation);
            }
        }
    }

    fn create_index(&mut self, stmt: &pg_query::protobuf::IndexStmt) {
        let Some(table) = stmt.relation.as_ref().map(qualified) else {
            return;
        };
        let new_table = self.context.is_new(&table);
        if stmt.concurrent {
            self.lock(&table, LockMode::ShareUpdateExclusive);
        } else {
            self.lock(&table, LockMode::Share);
            self.scan(&table);
            self.finding(
                Rule::RequireConcurrentIndexCreation,
                Some(&table),
                format!("CREATE INDEX on `{table}` without CONCURRENTLY blocks writes to it while the index is built"),
            );
        }
        if new_table && !stmt.idxname.is_empty() {
            let index = match &stmt.relation {
                Some(relation) if !relation.schemaname.is_empty() => {
                    format!("{}.{}", relation.schemaname, stmt.idxname)
                }
                _ => stmt.idxname.clone(),
            };
            self.context.note_created(&index);
        }
    }

    fn drop(&mut self, stmt: &pg_query::protobuf::DropStmt) {
        let kind = stmt.remove_type();
        for name in object_names(&stmt.objects) {
            match kind {
                ObjectType::ObjectTable | ObjectType::ObjectView | ObjectType::ObjectMatview => {
                    self.lock(&name, LockMode::AccessExclusive);
                    if kind == ObjectType::ObjectTable {
                        self.finding(
                            Rule::BanDropTable,
                            Some(&name),
                            format!("DROP TABLE `{name}`"),
                        );
                    }
                    self.context.note_dropped(&name);
                }
                ObjectType::ObjectIndex if stmt.concurrent => {
                    self.lock(&name, LockMode::ShareUpdateExclusive);
                }
                ObjectType::ObjectIndex => {
                    self.lock(&name, LockMode::AccessExclusive);
                    self.finding(
                        Rule::RequireConcurrentIndexDeletion,
                        Some(&name),
                        format!("DROP INDEX `{name}` without CONCURRENTLY blocks reads and writes of its table"),
                    );
                    self.context.note_dropped(&name);
                }
                _ => {}
            }
        }
    }

    fn vacuum(&mut self, stmt: &pg_query::protobuf::VacuumStmt) {
        let full = stmt.is_vacuumcmd
            && stmt.options.iter().any(|option| {
                matches!(&option.node, Some(NodeEnum::DefElem(def)) if def.defname == "full")
            });
        let relations: Vec<String> = stmt
            .rels
            .iter()
            .filter_map(|rel| match &rel.node {
                Some(NodeEnum::VacuumRelation(rel)) => rel.relation.as_ref().map(qualified),
                _ => None,
            })
            .collect();
        if !full {
            for relation in &relations {
                self.lock(relation, LockMode::ShareUpdateExclusive);
            }
            return;
        }
        if relations.is_empty() {
            self.finding(
                Rule::TableRewrite,
                None,
                "VACUUM FULL rewrites every table of the database".into(),
            );
        }
        for relation in &relations {
            self.lock(relation, LockMode::AccessExclusive);
            self.rewrite(relation);
            self.finding(
                Rule::TableRewrite,
                Some(relation),
                format!("VACUUM FULL rewrites `{relation}`"),
            );
        }
    }

    fn reindex(&mut self, stmt: &pg_query::protobuf::ReindexStmt) {
        let concurrently = stmt.params.iter().any(|param| {
            matches!(&param.node, Some(NodeEnum::DefElem(def)) if def.defname == "concurrently")
        });
        let name = stmt.relation.as_ref().map_or(stmt.name.clone(), qualified);
        let mode = match (concurrently, stmt.kind()) {
            (true, _) => LockMode::ShareUpdateExclusive,
            (false, ReindexObjectType::ReindexObjectIndex) => LockMode::AccessExclusive,
            (false, _) => LockMode::Share,
        };
        if !name.is_empty() {
            self.lock(&name, mode);
        }
        if !concurrently {
            self.finding(
                Rule::RequireConcurrentReindex,
                Some(&name)
                    .filter(|name| !name.is_empty())
                    .map(String::as_str),
                format!("REINDEX of `{name}` without CONCURRENTLY blocks writes while it rebuilds"),
            );
        }
    }

    fn rename(&mut self, stmt: &pg_query::protobuf::RenameStmt) {
        let Some(relation) = stmt.relation.as_ref().map(qualified) else {
            return;
        };
        match stmt.rename_type() {
            ObjectType::ObjectTable => {
                self.lock(&relation, LockMode::AccessExclusive);
                self.finding(
                    Rule::RenamingTable,
                    Some(&relation),
                    format!("RENAME `{relation}` to `{}`", stmt.newname),
                );
                if self.context.is_new(&relation) {
                    self.context.note_dropped(&relation);
                    let renamed = match relation.rsplit_once('.') {
                        Some((schema, _)) => format!("{schema}.{}", stmt.newname),
                        None => stmt.newname.clone(),
                    };
                    self.context.note_created(&renamed);
                }
            }
            ObjectType::ObjectColumn => {
                self.lock(&relation, LockMode::AccessExclusive);
                self.finding(
                    Rule::RenamingColumn,
                    Some(&relation),
                    format!(
                        "RENAME COLUMN `{}` of `{relation}` to `{}`",
                        stmt.subname, stmt.newname
                    ),
                );
            }
            ObjectType::ObjectIndex => self.lock(&relation, LockMode::ShareUpdateExclusive),
            _ => self.lock(&relation, LockMode::AccessExclusive),
        }
    }
}

/// Whether `SET lock_timeout` (or `RESET`) turns the timeout off: `0`, `'0s'`, `DEFAULT`.
fn disables_timeout(stmt: &pg_query::protobuf::VariableSetStmt) -> bool {
    use pg_query::protobuf::a_const::Val;
    let value = stmt.args.first().and_then(|arg| match &arg.node {
        Some(NodeEnum::AConst(constant)) => constant.val.as_ref().map(|val| match val {
            Val::Ival(int) => int.ival.to_string(),
            Val::Sval(text) => text.sval.clone(),
            _ => String::new(),
        }),
        _ => None,
    });
    value
        .as_deref()
        .is_none_or(|value| value.trim().trim_end_matches(|c: char| c.is_alphabetic()) == "0")
}

/// The relations of a list of `RangeVar` nodes.
pub(crate) fn range_vars(nodes: &[pg_query::protobuf::Node]) -> Vec<String> {
    nodes
        .iter()
        .filter_map(|node| match &node.node {
            Some(NodeEnum::RangeVar(relation)) => Some(qualified(relation)),
            _ => None,
        })
        .collect()
}

/// The dotted names of a DROP's objects.
pub(crate) fn object_names(objects: &[pg_query::protobuf::Node]) -> Vec<String> {
    objects
        .iter()
        .filter_map(|object| match &object.node {
            Some(NodeEnum::List(list)) => Some(
                list.items
                    .iter()
                    .filter_map(|item| match &item.node {
                        Some(NodeEnum::String(text)) => Some(text.sval.clone()),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join("."),
            ),
            _ => None,
        })
        .collect()
}
