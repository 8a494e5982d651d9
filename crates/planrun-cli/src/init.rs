//! `planrun init [NAME]`: a commented starter plan, `plans/NAME.toml`, with one SQL
//! stage, a precondition and a verification, and its SQL file. It never overwrites a
//! file.

use std::io::Write as _;
use std::path::Path;

use planrun_engine::exit_codes;

use crate::args::InitArgs;

/// The name when none is given and the current directory's is not a valid one.
const FALLBACK_NAME: &str = "migration";

const PLAN: &str = r#"# The plan {name}, written by `planrun init`: edit it into your migration.
#
# A plan is a list of stages. `planrun apply` runs them in order (after the stages
# each names in `depends_on`), each in its own transaction: the stage's locks, its
# preconditions, its steps, then its verifications, and it commits only when every
# verification passes. A ledger in the database (schema `planrun`) records what ran,
# so a second apply does nothing twice.
#
#   planrun check plans/{name}.toml                      validate offline, every problem at once
#   planrun plan plans/{name}.toml --database-url URL    what apply would do now; writes nothing
#   planrun apply plans/{name}.toml --database-url URL --dry-run
#                                                        all of it, then rolled back
#   planrun apply plans/{name}.toml --database-url URL   a pg_dump backup, then the stages
#
# Every key is described in docs/plan-format.md in planrun's repository.

[plan]
name = "{name}"               # names the ledger rows, the plan's lock and its backups
description = "A starter plan: one table, created and checked"
lock_timeout = "5s"           # how long a statement waits for a lock (then retried)
statement_timeout = "5min"    # how long one statement may run

[[stage]]
id = "create_feature_flags"   # unique: letters, digits, _ - .
title = "Create the feature_flags table"
# A later stage runs after this one with: depends_on = ["create_feature_flags"]

# Checked before the stage changes anything: when one does not hold, nothing of the
# stage runs and apply stops (exit 11). `expect` defaults to true.
[[stage.precondition]]
name = "feature_flags does not exist yet"
sql = "SELECT to_regclass('public.feature_flags') IS NULL"
message = "public.feature_flags exists already: drop it, or change the table this plan creates"

# The work. A SQL file, relative to this plan; or inline SQL, `sql = "..."`; or native
# code, `transform = "name"` (`planrun transforms` lists those this binary has).
[[stage.step]]
sql_file = "{name}/01_create_feature_flags.sql"

# Run after the steps, in the stage's transaction: when one fails, the stage rolls
# back and apply stops (exit 12). `expect` takes a number, true or false, "no rows",
# a comparison ("> 0") or arithmetic on captured values (docs/plan-format.md).
[[stage.verify]]
name = "the new_checkout flag is there, and off"
sql = "SELECT enabled FROM public.feature_flags WHERE name = 'new_checkout'"
expect = false
"#;

const SQL: &str = r#"-- Stage create_feature_flags of the plan {name}. Plain SQL, run one statement at a
-- time inside the stage's transaction: no BEGIN or COMMIT (planrun commits after the
-- verifications pass) and no psql commands (\set, \i, ...); `planrun check` says so.

CREATE TABLE public.feature_flags (
    name text PRIMARY KEY,
    enabled boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO public.feature_flags (name) VALUES ('new_checkout');
"#;

/// The SQL file's name, inside the plan's own directory `plans/NAME/`.
const SQL_FILE: &str = "01_create_feature_flags.sql";

pub(crate) fn run(args: &InitArgs) -> i32 {
    let name = match &args.name {
        Some(name) if is_plan_name(name) => name.clone(),
        Some(name) => {
            say_err!(
                "error: `{name}` cannot name a plan: use letters, digits, _ and -, starting with a letter"
            );
            return exit_codes::USAGE;
        }
        None => default_name(),
    };
    let plan = Path::new("plans").join(format!("{name}.toml"));
    let sql = Path::new("plans").join(&name).join(SQL_FILE);
    let files = [
        (plan.clone(), PLAN.replace("{name}", &name)),
        (sql, SQL.replace("{name}", &name)),
    ];
    if let Some((existing, _)) = files.iter().find(|(path, _)| path.exists()) {
        say_err!(
            "error: {} already exists, and planrun init never overwrites a file: give the plan another name (`planrun init NAME`) or edit the existing one",
            existing.display()
        );
        return exit_codes::ERROR;
    }
    for (path, text) in &files {
        if let Err(error) = write_new(path, text) {
            say_err!("error: cannot write {}: {error}", path.display());
            return exit_codes::ERROR;
        }
    }
    say!(
        "wrote {}: one stage with a precondition, a SQL step and a verification",
        files[0].0.display()
    );
    say!("wrote {}: the stage's SQL", files[1].0.display());
    say!("next: planrun check {}", plan.display());
    exit_codes::SUCCESS
}

/// The current directory's name when it can name a plan (`planrun init` in `~/shop`
/// starts the plan `shop`), else [`FALLBACK_NAME`].
fn default_name() -> String {
    std::env::current_dir()
        .ok()
        .and_then(|dir| {
            dir.file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .filter(|name| is_plan_name(name))
        .unwrap_or_else(|| FALLBACK_NAME.to_owned())
}

/// Letters, digits, `_` and `-`, starting with a letter: a name that is also a safe
/// file name, with no path in it.
fn is_plan_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Creates `path` (and its directory) with `text`; fails if it exists, even when it
/// appeared after the check above.
fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::is_plan_name;

    #[test]
    fn a_plan_name_is_a_file_name_without_a_path() {
        for good in ["shop", "shop_2024", "add-orders", "A1"] {
            assert!(is_plan_name(good), "{good}");
        }
        for bad in [
            "",
            "1shop",
            "../etc",
            "shop/orders",
            "shop.toml",
            ".tmp",
            "my plan",
        ] {
            assert!(!is_plan_name(bad), "{bad}");
        }
    }
}
