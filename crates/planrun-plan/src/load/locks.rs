//! Reading `locks = [...]`, `lock_retries = {...}` and a computed capture's `expr`.

use toml::de::{DeTable, DeValue};

use super::{type_name, Reader};
use crate::expect::{CmpOp, Expectation, Expr, Operand};
use crate::locks::{LockBudget, LockMode, LockRetries, TableLock};
use crate::model::Span;
use crate::problem::{PlanProblem, ProblemKind};
use crate::suggest::closest;

const LOCK_KEYS: &[&str] = &["table", "mode"];
const RETRY_KEYS: &[&str] = &["attempts", "delay", "max_delay"];
const BUDGET_KEYS: &[&str] = &["strongest", "blocks_reads", "blocks_writes"];
const MODE_NAMES: [&str; 8] = [
    "access share",
    "row share",
    "row exclusive",
    "share update exclusive",
    "share",
    "share row exclusive",
    "exclusive",
    "access exclusive",
];

impl Reader<'_> {
    /// `locks = [{ table = "chapters", mode = "exclusive" }, ...]`.
    pub(super) fn locks(&mut self, table: &DeTable<'_>) -> Vec<TableLock> {
        let Some(value) = table.get("locks") else {
            return Vec::new();
        };
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(
                "locks",
                "a list of { table, mode } tables",
                value.get_ref(),
                value.span(),
            );
            return Vec::new();
        };
        let mut locks = Vec::new();
        for item in items {
            let DeValue::Table(entry) = item.get_ref() else {
                self.wrong_type(
                    "locks",
                    "a list of { table, mode } tables",
                    item.get_ref(),
                    item.span(),
                );
                continue;
            };
            self.check_keys(entry, LOCK_KEYS, "a lock");
            let name = self.string(entry, "table", true, item.span());
            let mode = self.string(entry, "mode", true, item.span());
            let (Some((name, name_span)), Some((mode, mode_span))) = (name, mode) else {
                continue;
            };
            if name.trim().is_empty() {
                self.problems.push(
                    PlanProblem::new(ProblemKind::InvalidValue, "a lock names no table")
                        .label(name_span, "empty"),
                );
                continue;
            }
            let Some(parsed) = LockMode::parse(&mode) else {
                let help = match closest(&mode.to_ascii_lowercase(), MODE_NAMES.iter().copied()) {
                    Some(near) => format!("did you mean \"{near}\"?"),
                    None => format!("lock modes: {}", MODE_NAMES.join(", ")),
                };
                self.problems.push(
                    PlanProblem::new(
                        ProblemKind::InvalidValue,
                        format!("`{mode}` is not a PostgreSQL table lock mode"),
                    )
                    .label(mode_span, "unknown mode")
                    .help(help),
                );
                continue;
            };
            let mut lock = TableLock::new(&name, parsed, "stage");
            lock.span = Some(item.span());
            locks.push(lock);
        }
        locks
    }

    /// `lock_retries = { attempts = 5, delay = "1s", max_delay = "10s" }`.
    pub(super) fn lock_retries(&mut self, table: &DeTable<'_>) -> Option<LockRetries> {
        let value = table.get("lock_retries")?;
        let DeValue::Table(entry) = value.get_ref() else {
            self.wrong_type(
                "lock_retries",
                "a table such as { attempts = 5, delay = \"1s\" }",
                value.get_ref(),
                value.span(),
            );
            return None;
        };
        self.check_keys(entry, RETRY_KEYS, "lock_retries");
        let mut retries = LockRetries::default();
        if let Some(attempts) = entry.get("attempts") {
            match attempts.get_ref() {
                DeValue::Integer(int) => match int.as_str().replace('_', "").parse::<u32>() {
                    Ok(count) if (1..=1000).contains(&count) && int.radix() == 10 => {
                        retries.attempts = count
                    }
                    _ => self.problems.push(
                        PlanProblem::new(
                            ProblemKind::InvalidValue,
                            format!("`attempts = {}` is out of range", int.as_str()),
                        )
                        .label(attempts.span(), "not 1 to 1000")
                        .help("attempts counts the first try: 1 means no retry"),
                    ),
                },
                other => self.wrong_type("attempts", "an integer", other, attempts.span()),
            }
        }
        if let Some(delay) = self.duration(entry, "delay") {
            retries.delay = std::time::Duration::from_millis(delay.millis());
            retries.max_delay = retries.max_delay.max(retries.delay);
        }
        if let Some(max_delay) = self.duration(entry, "max_delay") {
            retries.max_delay = std::time::Duration::from_millis(max_delay.millis());
            if retries.max_delay < retries.delay {
                self.problems.push(
                    PlanProblem::new(
                        ProblemKind::InvalidValue,
                        "`max_delay` is shorter than `delay`",
                    )
                    .label(
                        entry.get("max_delay").map_or(value.span(), |v| v.span()),
                        "too short",
                    ),
                );
            }
        }
        Some(retries)
    }

    /// `lock_budget = { strongest = "share", blocks_reads = "1s", blocks_writes = "10s" }`.
    pub(super) fn lock_budget(&mut self, table: &DeTable<'_>) -> Option<LockBudget> {
        let value = table.get("lock_budget")?;
        let DeValue::Table(entry) = value.get_ref() else {
            self.wrong_type(
                "lock_budget",
                "a table such as { strongest = \"share\", blocks_writes = \"10s\" }",
                value.get_ref(),
                value.span(),
            );
            return None;
        };
        self.check_keys(entry, BUDGET_KEYS, "lock_budget");
        let strongest = self
            .string(entry, "strongest", false, value.span())
            .and_then(|(mode, span)| {
                let parsed = LockMode::parse(&mode);
                if parsed.is_none() {
                    self.problems.push(
                        PlanProblem::new(
                            ProblemKind::InvalidValue,
                            format!("`{mode}` is not a PostgreSQL table lock mode"),
                        )
                        .label(span, "unknown mode")
                        .help(format!("lock modes: {}", MODE_NAMES.join(", "))),
                    );
                }
                parsed
            });
        Some(LockBudget {
            strongest,
            blocks_reads: self.duration(entry, "blocks_reads"),
            blocks_writes: self.duration(entry, "blocks_writes"),
        })
    }

    /// A computed capture's `expr = "{a} - {b}"`: arithmetic on earlier captures.
    pub(super) fn capture_expr(&mut self, table: &DeTable<'_>) -> Option<(Expr, Span)> {
        let value = table.get("expr")?;
        let span = value.span();
        let DeValue::String(text) = value.get_ref() else {
            self.problems.push(
                PlanProblem::new(
                    ProblemKind::WrongType,
                    format!(
                        "`expr` must be a string, not {}",
                        type_name(value.get_ref())
                    ),
                )
                .label(span, "expected a string"),
            );
            return None;
        };
        let bare = !text.trim_start().starts_with(['=', '<', '>', '!']);
        match Expectation::parse(text) {
            Ok(Expectation::Compare {
                op: CmpOp::Eq,
                rhs: Operand::Expr(expr),
            }) if bare => Some((expr, span)),
            _ => {
                self.problems.push(
                    PlanProblem::new(
                        ProblemKind::InvalidValue,
                        format!("`{text}` is not arithmetic on captures"),
                    )
                    .label(span, "cannot compute this")
                    .help("write numbers, {capture} references, + - * and parentheses, e.g. \"{after} - {before}\""),
                );
                None
            }
        }
    }
}
