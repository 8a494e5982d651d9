//! Running a plan against PostgreSQL: connection, ledger, lock, backup, checks and
//! the stage runner. Everything that touches a database lives here, behind the
//! offline model of `planrun-plan`.

pub mod exit_codes;
