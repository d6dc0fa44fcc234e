//! Who may call: the demo's two users, their bearer tokens, and what the auth step
//! knows of each.

use tonic_intercept::{Roles, StaticTokens};

/// The bearer token of the demo user `ada`.
pub const ADA_TOKEN: &str = "ada-s3cret";

/// The bearer token of the demo user `bob`.
pub const BOB_TOKEN: &str = "bob-s3cret";

/// The role that may cancel orders (`roles: ["barista"]` in `coffee/v1/orders.proto`).
pub const BARISTA: &str = "barista";

/// Who is calling: what the auth step puts in the request extensions.
///
/// `Hash`, because `calls_per_second_per_identity` keeps one rate per caller; [`Roles`],
/// because `roles(..)` checks what the caller may do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Caller {
    /// The caller's user name.
    pub name: String,
    /// What the caller may do, e.g. [`BARISTA`].
    pub roles: Vec<String>,
}

impl Caller {
    fn named(name: &str) -> Self {
        Self {
            name: name.into(),
            roles: Vec::new(),
        }
    }

    fn with_role(mut self, role: &str) -> Self {
        self.roles.push(role.into());
        self
    }
}

/// The caller's name: how a shared backend keys the caller's call rate
/// (`limit(.., shared = ..)` with a per-identity rate), the same on every replica.
impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl Roles for Caller {
    fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// The tokens the demo server accepts: [`ADA_TOKEN`] (ada, a customer) and
/// [`BOB_TOKEN`] (bob, a [`BARISTA`]).
pub fn demo_tokens() -> StaticTokens<Caller> {
    StaticTokens::new([
        (ADA_TOKEN, Caller::named("ada")),
        (BOB_TOKEN, Caller::named("bob").with_role(BARISTA)),
    ])
}
