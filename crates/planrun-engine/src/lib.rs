//! planrun-engine
