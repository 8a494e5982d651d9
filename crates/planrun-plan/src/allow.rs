//! A lock-impact rule a stage or step accepts (`allow = [{ rule, reason }]`): its
//! findings are still shown by `planrun check`, as accepted, with the reason.

use serde::Serialize;

use crate::model::{Span, Stage, Step};

/// One accepted rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Allowance {
    /// A rule id of `planrun_sql::Rule`, checked when the plan is loaded.
    pub rule: String,
    pub reason: String,
    #[serde(skip)]
    pub span: Span,
}

/// The reason `step` (or else its `stage`) gives for accepting `rule`, if it does.
pub(crate) fn allowed<'a>(stage: &'a Stage, step: Option<&'a Step>, rule: &str) -> Option<&'a str> {
    step.into_iter()
        .flat_map(|step| &step.allow)
        .chain(&stage.allow)
        .find(|allowance| allowance.rule == rule)
        .map(|allowance| allowance.reason.as_str())
}
