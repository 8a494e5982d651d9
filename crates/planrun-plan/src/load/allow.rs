//! Reading `allow = [{ rule = "...", reason = "..." }]`: a lock-impact rule a stage or
//! step accepts, with the reason a reviewer reads.

use toml::de::{DeTable, DeValue};

use super::Reader;
use crate::allow::Allowance;
use crate::problem::{PlanProblem, ProblemKind};
use crate::suggest::closest;

const ALLOW_KEYS: &[&str] = &["rule", "reason"];
const SHAPE: &str = "a list of { rule, reason } tables";

impl Reader<'_> {
    pub(super) fn allow(&mut self, table: &DeTable<'_>) -> Vec<Allowance> {
        let Some(value) = table.get("allow") else {
            return Vec::new();
        };
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type("allow", SHAPE, value.get_ref(), value.span());
            return Vec::new();
        };
        let mut allowed = Vec::new();
        for item in items {
            let DeValue::Table(entry) = item.get_ref() else {
                self.wrong_type("allow", SHAPE, item.get_ref(), item.span());
                continue;
            };
            self.check_keys(entry, ALLOW_KEYS, "an allow entry");
            let rule = self.string(entry, "rule", true, item.span());
            let reason = self.string(entry, "reason", true, item.span());
            let (Some((rule, rule_span)), Some((reason, reason_span))) = (rule, reason) else {
                continue;
            };
            if planrun_sql::Rule::from_id(&rule).is_none() {
                let ids = planrun_sql::Rule::ALL.map(|rule| rule.id());
                let help = match closest(&rule, ids) {
                    Some(near) => format!("did you mean \"{near}\"?"),
                    None => "the rules are listed in docs/lock-analysis.md".to_owned(),
                };
                self.problems.push(
                    PlanProblem::new(
                        ProblemKind::UnknownRule,
                        format!("`{rule}` is not a lock-impact rule"),
                    )
                    .label(rule_span, "unknown rule")
                    .help(help),
                );
                continue;
            }
            if reason.trim().is_empty() {
                self.problems.push(
                    PlanProblem::new(
                        ProblemKind::InvalidValue,
                        format!("allowing `{rule}` needs a reason"),
                    )
                    .label(reason_span, "empty")
                    .help("say why the finding does not endanger the live database, e.g. \"the table is empty in production\""),
                );
                continue;
            }
            allowed.push(Allowance {
                rule,
                reason,
                span: item.span(),
            });
        }
        allowed
    }
}
