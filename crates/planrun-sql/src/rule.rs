//! The lock-impact rules: a stable id for each, the one-line reason it matters on a
//! live database and the safe way to do the same work. `docs/lock-analysis.md`
//! documents every rule; plans accept one with `allow = [{ rule = "...", reason = "..." }]`.

use std::fmt;

use serde::Serialize;

/// One thing a migration statement may do to a live table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Rule {
    RequireConcurrentIndexCreation,
    RequireConcurrentIndexDeletion,
    RequireConcurrentReindex,
    RequireConcurrentRefresh,
    AddingForeignKeyConstraint,
    ConstraintMissingNotValid,
    ValidateInSameTransaction,
    ChangingColumnType,
    AddingNotNullableField,
    AddingRequiredField,
    AddingFieldWithVolatileDefault,
    AddingStoredGeneratedField,
    DisallowedUniqueConstraint,
    AddingPrimaryKeyConstraint,
    TableRewrite,
    BanDropColumn,
    BanDropTable,
    BanDropDatabase,
    RenamingColumn,
    RenamingTable,
    BanTruncateCascade,
    RequireLockTimeout,
    PreferBigintPrimaryKey,
    BanCharField,
    PreferTimestamptz,
}

impl Rule {
    pub const ALL: [Rule; 25] = [
        Rule::RequireConcurrentIndexCreation,
        Rule::RequireConcurrentIndexDeletion,
        Rule::RequireConcurrentReindex,
        Rule::RequireConcurrentRefresh,
        Rule::AddingForeignKeyConstraint,
        Rule::ConstraintMissingNotValid,
        Rule::ValidateInSameTransaction,
        Rule::ChangingColumnType,
        Rule::AddingNotNullableField,
        Rule::AddingRequiredField,
        Rule::AddingFieldWithVolatileDefault,
        Rule::AddingStoredGeneratedField,
        Rule::DisallowedUniqueConstraint,
        Rule::AddingPrimaryKeyConstraint,
        Rule::TableRewrite,
        Rule::BanDropColumn,
        Rule::BanDropTable,
        Rule::BanDropDatabase,
        Rule::RenamingColumn,
        Rule::RenamingTable,
        Rule::BanTruncateCascade,
        Rule::RequireLockTimeout,
        Rule::PreferBigintPrimaryKey,
        Rule::BanCharField,
        Rule::PreferTimestamptz,
    ];

    /// The stable id plans and JSON consumers use (squawk's where the meaning is the same).
    pub fn id(self) -> &'static str {
        self.describe().0
    }

    /// Why it matters, in one line.
    pub fn explanation(self) -> &'static str {
        self.describe().1
    }

    /// What to do instead.
    pub fn alternative(self) -> &'static str {
        self.describe().2
    }

    /// The rule with this id.
    pub fn from_id(id: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|rule| rule.id() == id)
    }

    /// Whether the rule is about a column's type, which matters on a new table too
    /// (that is where the type is chosen), rather than about a lock on a live one.
    pub fn applies_to_new_tables(self) -> bool {
        matches!(
            self,
            Rule::PreferBigintPrimaryKey
                | Rule::BanCharField
                | Rule::PreferTimestamptz
                | Rule::BanDropDatabase
                | Rule::BanTruncateCascade
        )
    }

    fn describe(self) -> (&'static str, &'static str, &'static str) {
        use Rule::*;
        match self {
            RequireConcurrentIndexCreation => (
                "require-concurrent-index-creation",
                "CREATE INDEX takes SHARE on the table: every write waits until the index is built",
                "CREATE INDEX CONCURRENTLY, in a stage with `transaction = false`",
            ),
            RequireConcurrentIndexDeletion => (
                "require-concurrent-index-deletion",
                "DROP INDEX takes ACCESS EXCLUSIVE on the index's table: reads and writes wait",
                "DROP INDEX CONCURRENTLY, in a stage with `transaction = false`",
            ),
            RequireConcurrentReindex => (
                "require-concurrent-reindex",
                "REINDEX blocks writes to the table, and reads that use the index, until it is rebuilt",
                "REINDEX ... CONCURRENTLY, in a stage with `transaction = false`",
            ),
            RequireConcurrentRefresh => (
                "require-concurrent-refresh",
                "REFRESH MATERIALIZED VIEW takes ACCESS EXCLUSIVE: reads of the view wait for the whole query",
                "REFRESH MATERIALIZED VIEW CONCURRENTLY (needs a unique index on the view)",
            ),
            AddingForeignKeyConstraint => (
                "adding-foreign-key-constraint",
                "adding a foreign key checks every row under SHARE ROW EXCLUSIVE on both tables: writes to them wait",
                "ADD CONSTRAINT ... NOT VALID, then VALIDATE CONSTRAINT in a later stage (SHARE UPDATE EXCLUSIVE)",
            ),
            ConstraintMissingNotValid => (
                "constraint-missing-not-valid",
                "adding a CHECK constraint scans the whole table under ACCESS EXCLUSIVE: reads and writes wait",
                "ADD CONSTRAINT ... NOT VALID, then VALIDATE CONSTRAINT in a later stage (SHARE UPDATE EXCLUSIVE)",
            ),
            ValidateInSameTransaction => (
                "validate-constraint-in-same-transaction",
                "VALIDATE CONSTRAINT in the transaction that added it NOT VALID scans while the ADD's ACCESS EXCLUSIVE is still held",
                "validate in a later stage, so the ADD commits first and the scan runs under SHARE UPDATE EXCLUSIVE",
            ),
            ChangingColumnType => (
                "changing-column-type",
                "this ALTER COLUMN TYPE rewrites the table and its indexes under ACCESS EXCLUSIVE: reads and writes wait",
                "add a new column, backfill it in batches, switch the application, drop the old column",
            ),
            AddingNotNullableField => (
                "adding-not-nullable-field",
                "SET NOT NULL scans the whole table under ACCESS EXCLUSIVE: reads and writes wait",
                "ADD CONSTRAINT ... CHECK (col IS NOT NULL) NOT VALID, VALIDATE it in a later stage, then SET NOT NULL (no scan)",
            ),
            AddingRequiredField => (
                "adding-required-field",
                "ADD COLUMN ... NOT NULL without a default fails on a table that has rows",
                "give the column a non-volatile DEFAULT, or add it nullable, backfill, then SET NOT NULL safely",
            ),
            AddingFieldWithVolatileDefault => (
                "adding-field-with-volatile-default",
                "ADD COLUMN with a volatile default (or serial, identity) rewrites the table under ACCESS EXCLUSIVE",
                "add the column without the default (or with a constant one), set the default, backfill in batches",
            ),
            AddingStoredGeneratedField => (
                "adding-stored-generated-field",
                "ADD COLUMN ... GENERATED ALWAYS AS (...) STORED rewrites the table under ACCESS EXCLUSIVE",
                "add a plain column, fill it in batches and keep it current with a trigger",
            ),
            DisallowedUniqueConstraint => (
                "disallowed-unique-constraint",
                "ADD UNIQUE builds its index under ACCESS EXCLUSIVE: reads and writes wait for the build",
                "CREATE UNIQUE INDEX CONCURRENTLY (transaction = false), then ADD CONSTRAINT ... UNIQUE USING INDEX",
            ),
            AddingPrimaryKeyConstraint => (
                "adding-primary-key-constraint",
                "ADD PRIMARY KEY builds its index (and checks NOT NULL) under ACCESS EXCLUSIVE: reads and writes wait",
                "CREATE UNIQUE INDEX CONCURRENTLY (transaction = false), then ADD CONSTRAINT ... PRIMARY KEY USING INDEX",
            ),
            TableRewrite => (
                "table-rewrite",
                "this rewrites the whole table under ACCESS EXCLUSIVE: reads and writes wait until it is done",
                "avoid it on a live table: pg_repack, or a new table filled in batches and swapped in",
            ),
            BanDropColumn => (
                "ban-drop-column",
                "an application that still reads or writes the column fails as soon as the drop commits",
                "stop using the column in the application first (deploy), then drop it",
            ),
            BanDropTable => (
                "ban-drop-table",
                "an application that still uses the table fails, and its data is gone",
                "stop using the table in the application first, keep a backup, then drop it",
            ),
            BanDropDatabase => (
                "ban-drop-database",
                "drops a whole database",
                "do it by hand, outside a migration",
            ),
            RenamingColumn => (
                "renaming-column",
                "the application's queries that name the old column fail as soon as the rename commits",
                "add the new column, write both, switch reads, then drop the old one (or a view in between)",
            ),
            RenamingTable => (
                "renaming-table",
                "the application's queries that name the old table fail as soon as the rename commits",
                "rename and leave an updatable view under the old name until the application has switched",
            ),
            BanTruncateCascade => (
                "ban-truncate-cascade",
                "TRUNCATE ... CASCADE also empties every table with a foreign key to it, recursively",
                "name every table to truncate, without CASCADE",
            ),
            RequireLockTimeout => (
                "require-lock-timeout",
                "without lock_timeout, a statement queued behind a long query makes every later query on the table queue behind it",
                "set `lock_timeout` on the plan or stage (planrun retries on its `lock_retries` schedule)",
            ),
            PreferBigintPrimaryKey => (
                "prefer-bigint-primary-key",
                "a 32-bit (or 16-bit) key runs out, and widening it later rewrites the table",
                "bigint (bigint GENERATED ... AS IDENTITY, or bigserial)",
            ),
            BanCharField => (
                "ban-char-field",
                "char(n) pads with spaces and is no faster than text; changing it later rewrites the table",
                "text, or varchar, with a CHECK on the length if one is needed",
            ),
            PreferTimestamptz => (
                "prefer-timestamptz",
                "timestamp without time zone loses the offset; converting it later rewrites the table",
                "timestamptz",
            ),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.id())
    }
}

/// A rule is its id in JSON, one of [`Rule::ALL`]'s.
impl schemars::JsonSchema for Rule {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Rule".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let ids: Vec<&str> = Rule::ALL.iter().map(|rule| rule.id()).collect();
        schemars::json_schema!({
            "description": "A lock-impact rule's id (docs/lock-analysis.md)",
            "type": "string",
            "enum": ids,
        })
    }
}

/// What one statement does that a rule warns about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: Rule,
    /// The relation it endangers, as written.
    pub relation: Option<String>,
    /// This statement's case, in one line.
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_read_back() {
        for rule in Rule::ALL {
            assert_eq!(Rule::from_id(rule.id()), Some(rule));
            assert_eq!(
                Rule::ALL
                    .iter()
                    .filter(|other| other.id() == rule.id())
                    .count(),
                1
            );
        }
    }
}
