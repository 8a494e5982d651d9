//! Plan diagnostics: one [`PlanProblem`] per thing wrong with a plan, collected into
//! [`PlanErrors`] so that a user sees every problem in one run, each with spans into
//! the TOML and a help line where the fix is known.

use std::fmt;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceSpan};
use schemars::JsonSchema;
use serde::Serialize;

use crate::model::Span;

/// What kind of problem a diagnostic reports; stable, so tests and JSON consumers can
/// match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProblemKind {
    Syntax,
    UnknownKey,
    WrongType,
    MissingKey,
    InvalidValue,
    DuplicateId,
    UnknownDependency,
    Cycle,
    RequiredDependsOnOptional,
    NoSteps,
    MissingSqlFile,
    UnknownTransform,
    InvalidParams,
    MalformedExpectation,
    UndefinedCapture,
    DuplicateCapture,
    DuplicateCheck,
    SqlSyntax,
    SqlTransactionControl,
    SqlOutsideTransaction,
    SqlEnumValueUsed,
    SqlClientSide,
    SqlFileOutsidePlan,
    UnknownRule,
    SqlNotUtf8,
    /// An `after_commit` step that is not SQL, or takes a lock that blocks the
    /// application's readers or writers.
    AfterCommitLock,
}

impl ProblemKind {
    /// The diagnostic code shown next to the message, e.g. `plan::cycle`.
    pub fn code(self) -> &'static str {
        match self {
            ProblemKind::Syntax => "plan::syntax",
            ProblemKind::UnknownKey => "plan::unknown_key",
            ProblemKind::WrongType => "plan::wrong_type",
            ProblemKind::MissingKey => "plan::missing_key",
            ProblemKind::InvalidValue => "plan::invalid_value",
            ProblemKind::DuplicateId => "plan::duplicate_id",
            ProblemKind::UnknownDependency => "plan::unknown_dependency",
            ProblemKind::Cycle => "plan::cycle",
            ProblemKind::RequiredDependsOnOptional => "plan::required_depends_on_optional",
            ProblemKind::NoSteps => "plan::no_steps",
            ProblemKind::MissingSqlFile => "plan::missing_sql_file",
            ProblemKind::UnknownTransform => "plan::unknown_transform",
            ProblemKind::InvalidParams => "plan::invalid_params",
            ProblemKind::MalformedExpectation => "plan::malformed_expectation",
            ProblemKind::UndefinedCapture => "plan::undefined_capture",
            ProblemKind::DuplicateCapture => "plan::duplicate_capture",
            ProblemKind::DuplicateCheck => "plan::duplicate_check",
            ProblemKind::SqlSyntax => "plan::sql_syntax",
            ProblemKind::SqlTransactionControl => "plan::sql_transaction_control",
            ProblemKind::SqlOutsideTransaction => "plan::sql_outside_transaction",
            ProblemKind::SqlEnumValueUsed => "plan::sql_enum_value_used",
            ProblemKind::SqlClientSide => "plan::sql_client_side",
            ProblemKind::SqlFileOutsidePlan => "plan::sql_file_outside_plan",
            ProblemKind::UnknownRule => "plan::unknown_rule",
            ProblemKind::SqlNotUtf8 => "plan::sql_not_utf8",
            ProblemKind::AfterCommitLock => "plan::after_commit_lock",
        }
    }
}

/// One problem in a plan.
#[derive(Debug, Clone)]
pub struct PlanProblem {
    pub kind: ProblemKind,
    pub message: String,
    pub labels: Vec<(Span, String)>,
    pub help: Option<String>,
}

impl PlanProblem {
    pub(crate) fn new(kind: ProblemKind, message: impl Into<String>) -> Self {
        PlanProblem {
            kind,
            message: message.into(),
            labels: Vec::new(),
            help: None,
        }
    }

    pub(crate) fn label(mut self, span: Span, text: impl Into<String>) -> Self {
        self.labels.push((span, text.into()));
        self
    }

    pub(crate) fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub(crate) fn help_opt(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }
}

impl fmt::Display for PlanProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PlanProblem {}

impl Diagnostic for PlanProblem {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.kind.code()))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|help| Box::new(help) as Box<dyn fmt::Display>)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            return None;
        }
        Some(Box::new(self.labels.iter().map(|(span, text)| {
            LabeledSpan::new_with_span(Some(text.clone()), SourceSpan::from(span.clone()))
        })))
    }
}

/// A label resolved to a 1-based line and column, for tests and JSON output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct LabelInfo {
    pub line: usize,
    pub column: usize,
    pub text: String,
}

/// Every problem found in one plan file.
#[derive(Debug, Clone)]
pub struct PlanErrors {
    pub path: String,
    pub source: Arc<String>,
    pub problems: Vec<PlanProblem>,
    named: NamedSource<Arc<String>>,
}

impl PlanErrors {
    pub(crate) fn new(path: String, source: Arc<String>, problems: Vec<PlanProblem>) -> Self {
        let named = NamedSource::new(&path, Arc::clone(&source));
        PlanErrors {
            path,
            source,
            problems,
            named,
        }
    }

    /// The labels of `problem` as line/column pairs into the plan file.
    pub fn label_positions(&self, problem: &PlanProblem) -> Vec<LabelInfo> {
        problem
            .labels
            .iter()
            .map(|(span, text)| {
                let (line, column) = line_column(&self.source, span.start);
                LabelInfo {
                    line,
                    column,
                    text: text.clone(),
                }
            })
            .collect()
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..floor_char_boundary(source, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(s: &str, mut offset: usize) -> usize {
    while !s.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

impl fmt::Display for PlanErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        write!(
            f,
            "plan {} is invalid: {count} problem{}",
            self.path,
            if count == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for PlanErrors {}

impl Diagnostic for PlanErrors {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new("plan::invalid"))
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.named)
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        Some(Box::new(
            self.problems
                .iter()
                .map(|problem| problem as &dyn Diagnostic),
        ))
    }
}
