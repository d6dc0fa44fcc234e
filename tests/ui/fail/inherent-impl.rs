// `#[intercept]` on an inherent impl: it needs the impl of a tonic service trait.

struct Echo;

#[tonic_intercept::intercept(public(*))]
impl Echo {
    async fn unary(&self) {}
}

fn main() {}
