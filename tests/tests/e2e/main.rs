//! End-to-end tests: one binary, the real server per test.

mod smoke;
mod support;
