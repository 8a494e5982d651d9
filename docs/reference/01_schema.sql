-- Referenced by docs/reference-plan.toml (a SQL file step).
CREATE TABLE IF NOT EXISTS accounts_archive (LIKE accounts INCLUDING ALL);
