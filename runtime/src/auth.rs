//! Authentication: who is calling, decided before the handler runs.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::call::Call;

/// An async verifier of the caller's credentials.
///
/// `#[intercept(auth(self.verifier))]` runs it before every RPC that is not listed in
/// `public(...)`. On `Ok(identity)` the identity is inserted into the request's
/// extensions, where the handler reads it with
/// `request.extensions().get::<Identity>()`; on `Err(status)` the call ends with that
/// status and the handler never runs. Return [`Status::unauthenticated`] for missing or
/// bad credentials.
///
/// ```
/// use tonic::{Status, metadata::MetadataMap};
/// use tonic_intercept::{Authenticate, Call, bearer_token};
///
/// #[derive(Clone, Debug)]
/// struct User { name: String }
///
/// struct Tokens;
///
/// impl Authenticate for Tokens {
///     type Identity = User;
///     async fn authenticate(&self, _call: &Call, metadata: &MetadataMap) -> Result<User, Status> {
///         match bearer_token(metadata)? {
///             "s3cret" => Ok(User { name: "ada".into() }),
///             _ => Err(Status::unauthenticated("invalid token")),
///         }
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot authenticate calls: it does not implement `tonic_intercept::Authenticate`",
    label = "used as `auth(...)` here",
    note = "implement `tonic_intercept::Authenticate` for `{Self}`, or use `tonic_intercept::StaticTokens`"
)]
pub trait Authenticate: Send + Sync {
    /// What a successful verification yields; handlers find it in the request extensions.
    type Identity: Clone + Send + Sync + 'static;

    /// Verifies the caller from the call's metadata.
    fn authenticate(
        &self,
        call: &Call,
        metadata: &MetadataMap,
    ) -> impl Future<Output = Result<Self::Identity, Status>> + Send;
}

impl<A: Authenticate + ?Sized> Authenticate for Arc<A> {
    type Identity = A::Identity;

    fn authenticate(
        &self,
        call: &Call,
        metadata: &MetadataMap,
    ) -> impl Future<Output = Result<Self::Identity, Status>> + Send {
        (**self).authenticate(call, metadata)
    }
}

/// Reads `authorization: Bearer <token>` from the metadata.
///
/// Missing or malformed credentials are `UNAUTHENTICATED`, so a verifier can use `?`.
///
/// ```
/// let mut metadata = tonic::metadata::MetadataMap::new();
/// metadata.insert("authorization", "Bearer abc".parse().unwrap());
/// assert_eq!(tonic_intercept::bearer_token(&metadata).unwrap(), "abc");
/// ```
pub fn bearer_token(metadata: &MetadataMap) -> Result<&str, Status> {
    let value = metadata.get("authorization").ok_or_else(|| {
        Status::unauthenticated("missing `authorization: Bearer <token>` metadata")
    })?;
    let value = value
        .to_str()
        .map_err(|_| Status::unauthenticated("malformed `authorization` metadata"))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(Status::unauthenticated(
            "`authorization` metadata must be `Bearer <token>`",
        )),
    }
}

/// A fixed table of bearer tokens and the identity each one stands for.
///
/// Good for tests, demos and internal services with provisioned tokens; for anything
/// else implement [`Authenticate`] against your identity provider.
///
/// ```
/// let tokens = tonic_intercept::StaticTokens::new([("s3cret", "ada")]);
/// # let _ = tokens;
/// ```
#[derive(Debug, Clone)]
pub struct StaticTokens<I> {
    tokens: Arc<HashMap<String, I>>,
}

impl<I> StaticTokens<I> {
    /// Builds the table from `(token, identity)` pairs.
    pub fn new<T: Into<String>>(pairs: impl IntoIterator<Item = (T, I)>) -> Self {
        Self {
            tokens: Arc::new(pairs.into_iter().map(|(t, i)| (t.into(), i)).collect()),
        }
    }
}

impl<I: Clone + Send + Sync + 'static> Authenticate for StaticTokens<I> {
    type Identity = I;

    async fn authenticate(&self, _call: &Call, metadata: &MetadataMap) -> Result<I, Status> {
        let token = bearer_token(metadata)?;
        self.tokens
            .get(token)
            .cloned()
            .ok_or_else(|| Status::unauthenticated("invalid bearer token"))
    }
}
