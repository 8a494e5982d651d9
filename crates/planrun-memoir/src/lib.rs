//! planrun-memoir
