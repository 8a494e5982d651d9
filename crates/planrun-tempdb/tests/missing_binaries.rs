//! Without PostgreSQL binaries the caller gets a typed error saying how to fix it.
//!
//! Alone in its own test binary because it sets `PG_BIN` for the whole process.

use planrun_tempdb::{find_bin_dir, TempCluster, TempDbError};

#[test]
fn pg_bin_without_binaries_is_a_typed_error() {
    let empty = tempfile::tempdir().unwrap();
    std::env::set_var("PG_BIN", empty.path());

    let err = find_bin_dir().unwrap_err();
    match &err {
        TempDbError::BinariesNotFound { searched } => assert_eq!(searched, &[empty.path()]),
        other => panic!("unexpected error {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("apt-get install -y postgresql"), "{msg}");
    assert!(msg.contains("PG_BIN"), "{msg}");

    let err = TempCluster::start().unwrap_err();
    assert!(
        matches!(err, TempDbError::BinariesNotFound { .. }),
        "{err:?}"
    );
}
