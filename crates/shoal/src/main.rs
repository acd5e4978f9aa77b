//! Shoal binary (in progress).
fn main() {}
