//! planrun-tempdb
