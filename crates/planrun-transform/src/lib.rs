//! planrun-transform
