//! `PLANRUN_TEMPDB_DIR` moves clusters elsewhere, e.g. to a tmpfs.
//!
//! Alone in its own test binary because it sets the variable for the whole process.

use planrun_tempdb::{TempCluster, DIR_ENV};

#[test]
fn clusters_live_under_the_configured_directory() {
    let parent = tempfile::tempdir().unwrap();
    std::env::set_var(DIR_ENV, parent.path());
    let cluster = TempCluster::start().unwrap();
    assert!(
        cluster.data_dir().starts_with(parent.path()),
        "{}",
        cluster.data_dir().display()
    );
    assert_eq!(cluster.psql("postgres", "SELECT 1").unwrap().trim(), "1");
    let root = cluster.data_dir().parent().unwrap().to_path_buf();
    drop(cluster);
    assert!(!root.exists());
}
