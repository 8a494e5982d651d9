//! The command a report is of. Compared as a type, not as a string; written in JSON
//! (and on a terminal) as the command's name, as before it was typed.

use std::fmt;

use serde::Serialize;

/// `apply` (a dry run included), `plan`, `verify`, `rehearse` or `revert`, whose outcome is
/// told with the same codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    Apply,
    Plan,
    Verify,
    Rehearse,
    /// `revert`, and `plan --revert` (a dry run of it).
    Revert,
}

impl Command {
    /// The command's name, as typed after `planrun`.
    pub fn name(self) -> &'static str {
        match self {
            Command::Apply => "apply",
            Command::Plan => "plan",
            Command::Verify => "verify",
            Command::Rehearse => "rehearse",
            Command::Revert => "revert",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_as_the_name_it_displays() {
        for command in [
            Command::Apply,
            Command::Plan,
            Command::Verify,
            Command::Rehearse,
            Command::Revert,
        ] {
            assert_eq!(
                serde_json::to_value(command).unwrap(),
                serde_json::Value::String(command.to_string())
            );
        }
    }
}
