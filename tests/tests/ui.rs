//! Compile-fail and compile-pass cases of `#[intercept]`: every misuse must be refused
//! with a message on the offending token; every valid policy must compile.
//!
//! Refresh the snapshots with `TRYBUILD=overwrite cargo test --workspace --test ui`, then
//! review each changed `.stderr`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/fail/*.rs");
    t.pass("ui/pass/*.rs");
}

/// The client's retry rule is a type error, so `cargo check` reports it, not only
/// `cargo build`. trybuild runs `cargo check` for a set of cases only when none of them
/// is a `pass` case (trybuild's `src/cargo.rs`: `if project.has_pass { "build" } else
/// { "check" }`), so these cases run again here on their own, against the same
/// `.stderr`; `ui()` above builds them.
#[test]
fn client_retry_rule_is_reported_by_cargo_check() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/fail/client-retry-*.rs");
}
