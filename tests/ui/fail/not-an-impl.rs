// `#[intercept]` goes on the impl of a tonic service trait, not on a struct.

#[tonic_intercept::intercept(public(*))]
struct Echo;

fn main() {}
