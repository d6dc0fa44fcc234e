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
