//! Expectations: what a precondition, skip rule or verification query must return.
//!
//! Written in the plan as a TOML integer, float or boolean (equality), or as a string:
//! `"no rows"`, `"null"`, `"> 0"`, `"<= 10"`, `"= 'text'"`, `"!= null"`,
//! `"= {legacy_images} - {quarantined}"`. Arithmetic (`+ - *`, parentheses) works on
//! numbers and `{capture}` references. A bare expression means `=`.

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq)]
pub enum Expectation {
    /// The query returns no rows at all.
    NoRows,
    /// The query returns one row whose first column compares as given.
    Compare { op: CmpOp, rhs: Operand },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CmpOp {
    #[serde(rename = "=")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Null,
    Bool(bool),
    Text(String),
    Expr(Expr),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Number(Value),
    Capture(String),
    Neg(Box<Expr>),
    Binary(Box<Expr>, char, Box<Expr>),
}

/// A number from a query result, a literal or arithmetic: exact while integral.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(i128),
    Float(f64),
}

impl Value {
    pub fn parse(text: &str) -> Option<Value> {
        let text = text.trim();
        if let Ok(int) = text.parse::<i128>() {
            return Some(Value::Int(int));
        }
        text.parse::<f64>()
            .ok()
            .filter(|float| float.is_finite())
            .map(Value::Float)
    }

    fn as_f64(self) -> f64 {
        match self {
            Value::Int(int) => int as f64,
            Value::Float(float) => float,
        }
    }

    fn apply(self, op: char, other: Value) -> Option<Value> {
        if let (Value::Int(a), Value::Int(b)) = (self, other) {
            let exact = match op {
                '+' => a.checked_add(b),
                '-' => a.checked_sub(b),
                _ => a.checked_mul(b),
            };
            if let Some(exact) = exact {
                return Some(Value::Int(exact));
            }
        }
        let (a, b) = (self.as_f64(), other.as_f64());
        Some(Value::Float(match op {
            '+' => a + b,
            '-' => a - b,
            _ => a * b,
        }))
    }

    fn compare(self, other: Value) -> Option<std::cmp::Ordering> {
        match (self, other) {
            (Value::Int(a), Value::Int(b)) => Some(a.cmp(&b)),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(int) => write!(f, "{int}"),
            Value::Float(float) => write!(f, "{float}"),
        }
    }
}

impl CmpOp {
    fn holds(self, ordering: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            CmpOp::Eq => ordering == Equal,
            CmpOp::Ne => ordering != Equal,
            CmpOp::Lt => ordering == Less,
            CmpOp::Le => ordering != Greater,
            CmpOp::Gt => ordering == Greater,
            CmpOp::Ge => ordering != Less,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// The result of comparing a query's rows with an expectation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub passed: bool,
    /// What the query returned, as shown to the user.
    pub actual: String,
    /// The expectation with captures substituted.
    pub expected: String,
    /// Why the check could not be decided (wrong shape, missing capture), if so.
    pub problem: Option<String>,
}

impl Expectation {
    /// Parses the string form; the error says what is wrong and is shown at the span.
    pub fn parse(text: &str) -> Result<Expectation, String> {
        let trimmed = text.trim();
        let lowered = trimmed.to_ascii_lowercase();
        if lowered == "no rows" {
            return Ok(Expectation::NoRows);
        }
        let (op, rest) = split_operator(trimmed);
        let rest = rest.trim();
        if rest.is_empty() {
            return Err(format!(
                "`{text}` has no value to compare with: write e.g. \"> 0\", \"= 'ok'\", \"null\" or \"no rows\""
            ));
        }
        let rhs = parse_operand(rest)?;
        if matches!(rhs, Operand::Null | Operand::Bool(_)) && !matches!(op, CmpOp::Eq | CmpOp::Ne) {
            return Err(format!(
                "`{text}`: only = and != compare with null, true or false"
            ));
        }
        Ok(Expectation::Compare { op, rhs })
    }

    /// Every `{capture}` this expectation reads.
    pub fn captures(&self) -> impl Iterator<Item = &str> {
        let mut names = Vec::new();
        if let Expectation::Compare {
            rhs: Operand::Expr(expr),
            ..
        } = self
        {
            expr.collect_captures(&mut names);
        }
        names.into_iter()
    }

    /// Compares rows (each a list of nullable text values, as PostgreSQL sends them)
    /// with this expectation, reading captures through `capture`.
    pub fn evaluate(
        &self,
        rows: &[Vec<Option<String>>],
        capture: &dyn Fn(&str) -> Option<Option<String>>,
    ) -> Outcome {
        let (op, rhs) = match self {
            Expectation::NoRows => {
                return Outcome {
                    passed: rows.is_empty(),
                    actual: describe_rows(rows),
                    expected: "no rows".into(),
                    problem: None,
                }
            }
            Expectation::Compare { op, rhs } => (*op, rhs),
        };
        // A lone `{capture}` holding text (a digest, a name) compares as text.
        if let Operand::Expr(Expr::Capture(name)) = rhs {
            if let Some(Some(text)) = capture(name) {
                if Value::parse(&text).is_none() {
                    return Expectation::Compare {
                        op,
                        rhs: Operand::Text(text),
                    }
                    .evaluate(rows, capture);
                }
            }
        }
        let undecided = |expected: String, actual: String, problem: String| Outcome {
            passed: false,
            actual,
            expected,
            problem: Some(problem),
        };
        let expected_text = |rhs: String| format!("{} {rhs}", op.symbol());
        let rhs_value = match rhs {
            Operand::Expr(expr) => match expr.evaluate(capture) {
                Ok(value) => Some(value),
                Err(problem) => {
                    return undecided(
                        expected_text(expr.to_string()),
                        describe_rows(rows),
                        problem,
                    )
                }
            },
            _ => None,
        };
        let expected = match (rhs, rhs_value) {
            (_, Some(value)) => expected_text(value.to_string()),
            (Operand::Null, _) => expected_text("null".into()),
            (Operand::Bool(b), _) => expected_text(b.to_string()),
            (Operand::Text(t), _) => expected_text(format!("'{t}'")),
            (Operand::Expr(_), None) => unreachable!("an expression evaluates or returns early"),
        };
        if rows.len() != 1 || rows[0].is_empty() {
            let actual = describe_rows(rows);
            return undecided(
                expected,
                actual,
                format!("expected exactly one row, got {}", rows.len()),
            );
        }
        let actual = rows[0][0].as_deref();
        let shown = actual.map_or_else(|| "null".to_owned(), str::to_owned);
        let passed = match (rhs, actual) {
            (Operand::Null, value) => (value.is_none()) == (op == CmpOp::Eq),
            (_, None) => op == CmpOp::Ne,
            (Operand::Bool(expected), Some(value)) => match parse_bool(value) {
                Some(actual) => (actual == *expected) == (op == CmpOp::Eq),
                None => {
                    return undecided(
                        expected_text(expected.to_string()),
                        shown,
                        "the query did not return a boolean".into(),
                    )
                }
            },
            (Operand::Text(expected), Some(value)) => op.holds(value.cmp(expected.as_str())),
            (Operand::Expr(_), Some(value)) => {
                let Some(rhs) = rhs_value else {
                    unreachable!("an expression evaluates or returns early")
                };
                match Value::parse(value).and_then(|actual| actual.compare(rhs)) {
                    Some(ordering) => op.holds(ordering),
                    None => {
                        return undecided(
                            expected,
                            shown,
                            "the query did not return a number".into(),
                        )
                    }
                }
            }
        };
        Outcome {
            passed,
            actual: shown,
            expected,
            problem: None,
        }
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "t" | "true" => Some(true),
        "f" | "false" => Some(false),
        _ => None,
    }
}

fn describe_rows(rows: &[Vec<Option<String>>]) -> String {
    match rows {
        [] => "no rows".into(),
        [row] if row.len() == 1 => row[0].clone().unwrap_or_else(|| "null".into()),
        rows => format!("{} rows", rows.len()),
    }
}

fn split_operator(text: &str) -> (CmpOp, &str) {
    for (symbol, op) in [
        ("==", CmpOp::Eq),
        ("!=", CmpOp::Ne),
        ("<>", CmpOp::Ne),
        ("<=", CmpOp::Le),
        (">=", CmpOp::Ge),
        ("=", CmpOp::Eq),
        ("<", CmpOp::Lt),
        (">", CmpOp::Gt),
    ] {
        if let Some(rest) = text.strip_prefix(symbol) {
            return (op, rest);
        }
    }
    (CmpOp::Eq, text)
}

fn parse_operand(text: &str) -> Result<Operand, String> {
    match text.to_ascii_lowercase().as_str() {
        "null" => return Ok(Operand::Null),
        "true" => return Ok(Operand::Bool(true)),
        "false" => return Ok(Operand::Bool(false)),
        _ => {}
    }
    if let Some(inner) = text.strip_prefix('\'') {
        return match inner.strip_suffix('\'') {
            Some(body) if !body.replace("''", "").contains('\'') => {
                Ok(Operand::Text(body.replace("''", "'")))
            }
            _ => Err(format!(
                "`{text}` is not a closed text literal: write 'text', doubling any ' inside"
            )),
        };
    }
    let mut parser = ExprParser {
        chars: text.char_indices().peekable(),
        text,
    };
    let expr = parser.sum()?;
    parser.skip_space();
    if let Some((at, c)) = parser.chars.peek() {
        return Err(format!(
            "unexpected `{c}` at column {} of `{text}`; text must be quoted as '...'",
            at + 1
        ));
    }
    Ok(Operand::Expr(expr))
}

struct ExprParser<'a> {
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
    text: &'a str,
}

impl ExprParser<'_> {
    fn skip_space(&mut self) {
        while self.chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
    }

    fn sum(&mut self) -> Result<Expr, String> {
        let mut left = self.product()?;
        loop {
            self.skip_space();
            match self.chars.next_if(|(_, c)| *c == '+' || *c == '-') {
                Some((_, op)) => left = Expr::Binary(Box::new(left), op, Box::new(self.product()?)),
                None => return Ok(left),
            }
        }
    }

    fn product(&mut self) -> Result<Expr, String> {
        let mut left = self.factor()?;
        loop {
            self.skip_space();
            match self.chars.next_if(|(_, c)| *c == '*') {
                Some((_, op)) => left = Expr::Binary(Box::new(left), op, Box::new(self.factor()?)),
                None => return Ok(left),
            }
        }
    }

    fn factor(&mut self) -> Result<Expr, String> {
        self.skip_space();
        let text = self.text;
        match self.chars.next() {
            None => Err(format!(
                "`{text}` ends where a number or {{capture}} was expected"
            )),
            Some((_, '-')) => Ok(Expr::Neg(Box::new(self.factor()?))),
            Some((_, '(')) => {
                let inner = self.sum()?;
                self.skip_space();
                match self.chars.next() {
                    Some((_, ')')) => Ok(inner),
                    _ => Err(format!("`{text}` has an unclosed parenthesis")),
                }
            }
            Some((start, '{')) => {
                let mut name = String::new();
                loop {
                    match self.chars.next() {
                        Some((_, '}')) => break,
                        Some((_, c)) if c.is_alphanumeric() || c == '_' => name.push(c),
                        _ => {
                            return Err(format!(
                                "`{text}`: the capture reference at column {} must be {{name}} with letters, digits and _",
                                start + 1
                            ))
                        }
                    }
                }
                if name.is_empty() {
                    return Err(format!("`{text}` has an empty capture reference {{}}"));
                }
                Ok(Expr::Capture(name))
            }
            Some((start, c)) if c.is_ascii_digit() || c == '.' => {
                let mut end = start + c.len_utf8();
                while let Some((at, c)) =
                    self.chars.next_if(|(_, c)| c.is_ascii_digit() || *c == '.')
                {
                    end = at + c.len_utf8();
                }
                let literal = &text[start..end];
                Value::parse(literal)
                    .map(Expr::Number)
                    .ok_or_else(|| format!("`{literal}` is not a number"))
            }
            Some((at, c)) => Err(format!(
                "unexpected `{c}` at column {} of `{text}`; text must be quoted as '...'",
                at + 1
            )),
        }
    }
}

impl Expr {
    /// Every `{capture}` this expression reads.
    pub fn captures(&self) -> Vec<&str> {
        let mut names = Vec::new();
        self.collect_captures(&mut names);
        names
    }

    fn collect_captures<'a>(&'a self, names: &mut Vec<&'a str>) {
        match self {
            Expr::Number(_) => {}
            Expr::Capture(name) => names.push(name),
            Expr::Neg(inner) => inner.collect_captures(names),
            Expr::Binary(left, _, right) => {
                left.collect_captures(names);
                right.collect_captures(names);
            }
        }
    }

    /// The value, with captures read through `capture`; the error names what is missing.
    pub fn evaluate(
        &self,
        capture: &dyn Fn(&str) -> Option<Option<String>>,
    ) -> Result<Value, String> {
        match self {
            Expr::Number(value) => Ok(*value),
            Expr::Capture(name) => match capture(name) {
                None => Err(format!(
                    "capture `{name}` has no value in this run or the ledger"
                )),
                Some(None) => Err(format!("capture `{name}` is null")),
                Some(Some(text)) => Value::parse(&text)
                    .ok_or_else(|| format!("capture `{name}` is `{text}`, not a number")),
            },
            Expr::Neg(inner) => Ok(Value::Int(0)
                .apply('-', inner.evaluate(capture)?)
                .expect("subtraction always yields a value")),
            Expr::Binary(left, op, right) => Ok(left
                .evaluate(capture)?
                .apply(*op, right.evaluate(capture)?)
                .expect("arithmetic always yields a value")),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Number(value) => write!(f, "{value}"),
            Expr::Capture(name) => write!(f, "{{{name}}}"),
            Expr::Neg(inner) => write!(f, "-{inner}"),
            Expr::Binary(left, op, right) => write!(f, "({left} {op} {right})"),
        }
    }
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expectation::NoRows => f.write_str("no rows"),
            Expectation::Compare { op, rhs } => {
                write!(f, "{} ", op.symbol())?;
                match rhs {
                    Operand::Null => f.write_str("null"),
                    Operand::Bool(b) => write!(f, "{b}"),
                    Operand::Text(t) => write!(f, "'{}'", t.replace('\'', "''")),
                    Operand::Expr(expr) => write!(f, "{expr}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(value: &str) -> Vec<Vec<Option<String>>> {
        vec![vec![Some(value.to_owned())]]
    }

    fn no_captures(_: &str) -> Option<Option<String>> {
        None
    }

    #[test]
    fn comparisons_against_literals() {
        let gt = Expectation::parse("> 0").unwrap();
        assert!(gt.evaluate(&one("3"), &no_captures).passed);
        assert!(!gt.evaluate(&one("0"), &no_captures).passed);
        let le = Expectation::parse("<= 10").unwrap();
        assert!(le.evaluate(&one("10"), &no_captures).passed);
        assert!(!le.evaluate(&one("10.5"), &no_captures).passed);
        let text = Expectation::parse("= 'it''s'").unwrap();
        assert!(text.evaluate(&one("it's"), &no_captures).passed);
        let null = Expectation::parse("null").unwrap();
        assert!(null.evaluate(&[vec![None]], &no_captures).passed);
        assert!(!null.evaluate(&one("1"), &no_captures).passed);
        let yes = Expectation::parse("true").unwrap();
        assert!(yes.evaluate(&one("t"), &no_captures).passed);
        assert!(!yes.evaluate(&one("f"), &no_captures).passed);
    }

    #[test]
    fn no_rows_means_exactly_that() {
        let none = Expectation::parse("no rows").unwrap();
        assert!(none.evaluate(&[], &no_captures).passed);
        let outcome = none.evaluate(&one("content"), &no_captures);
        assert!(!outcome.passed);
        assert_eq!(outcome.actual, "content");
    }

    #[test]
    fn arithmetic_between_captures() {
        let expect = Expectation::parse("= {a} + {b} * 2 - (1)").unwrap();
        assert_eq!(expect.captures().collect::<Vec<_>>(), ["a", "b"]);
        let captures = |name: &str| match name {
            "a" => Some(Some("10".to_owned())),
            "b" => Some(Some("4".to_owned())),
            _ => None,
        };
        let outcome = expect.evaluate(&one("17"), &captures);
        assert!(outcome.passed, "{outcome:?}");
        assert_eq!(outcome.expected, "= 17");
        assert!(!expect.evaluate(&one("18"), &captures).passed);
    }

    #[test]
    fn a_text_capture_compares_as_text() {
        let expect = Expectation::parse("{digest}").unwrap();
        let captures = |_: &str| Some(Some("9f86d08".to_owned()));
        assert!(expect.evaluate(&one("9f86d08"), &captures).passed);
        assert!(!expect.evaluate(&one("9f86d09"), &captures).passed);
    }

    #[test]
    fn a_missing_capture_fails_the_check_and_says_why() {
        let expect = Expectation::parse("{gone}").unwrap();
        let outcome = expect.evaluate(&one("1"), &no_captures);
        assert!(!outcome.passed);
        assert!(outcome.problem.unwrap().contains("gone"));
    }

    #[test]
    fn malformed_expectations_are_rejected_with_a_reason() {
        for bad in ["", ">", "= 'open", "ok", "> null", "{a", "{}", "1 +", "(1"] {
            assert!(
                Expectation::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn several_rows_are_not_one_value() {
        let expect = Expectation::parse("= 1").unwrap();
        let rows = vec![vec![Some("1".to_owned())], vec![Some("1".to_owned())]];
        let outcome = expect.evaluate(&rows, &no_captures);
        assert!(!outcome.passed);
        assert!(outcome.problem.unwrap().contains("one row"));
    }
}
