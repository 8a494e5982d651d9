//! Reading `[plan.variables]`: the psql variables the plan's SQL sees, as `psql -v`
//! would set them.

use std::collections::BTreeMap;

use toml::de::{DeTable, DeValue};

use super::Reader;
use crate::problem::{PlanProblem, ProblemKind};

impl Reader<'_> {
    pub(super) fn variables(&mut self, table: &DeTable<'_>) -> BTreeMap<String, String> {
        let mut variables = BTreeMap::new();
        let Some(value) = table.get("variables") else {
            return variables;
        };
        let DeValue::Table(entries) = value.get_ref() else {
            self.wrong_type(
                "variables",
                "a table such as { schema = \"app\" }",
                value.get_ref(),
                value.span(),
            );
            return variables;
        };
        for (name, entry) in entries {
            let text = match entry.get_ref() {
                DeValue::String(text) => text.to_string(),
                DeValue::Integer(number) => number.as_str().replace('_', ""),
                DeValue::Boolean(flag) => if *flag { "on" } else { "off" }.to_owned(),
                other => {
                    self.wrong_type(name.get_ref(), "a string", other, entry.span());
                    continue;
                }
            };
            if !is_variable_name(name.get_ref()) {
                self.problems.push(
                    PlanProblem::new(
                        ProblemKind::InvalidValue,
                        format!("`{}` is not a psql variable name", name.get_ref()),
                    )
                    .label(name.span(), "letters, digits and underscores only"),
                );
                continue;
            }
            variables.insert(name.get_ref().to_string(), text);
        }
        variables
    }
}

/// psql's variable names: letters, digits and underscores.
pub fn is_variable_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte >= 0x80)
}
