//! Authentication: who is calling, decided before the handler runs.
//!
//! Ready verifiers: `StaticTokens` (a fixed token table); `Jwt` (feature `jwt`: bearer
//! JWTs against static keys or a JWKS URL, cached and refreshed); `ClientCert` (feature
//! `mtls`: the client certificate of mutual TLS, its SPIFFE ID, DNS name or CN).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::call::Call;

#[cfg(feature = "jwt")]
mod jwt;
#[cfg(feature = "jwt")]
pub use jwt::{Algorithm, Jwt, JwtConfigError, JwtIdentity};

#[cfg(feature = "mtls")]
mod mtls;
#[cfg(feature = "mtls")]
pub use mtls::{CertInfo, CertName, ClientCert, ClientCertLayer, ClientCertService, WithPeerCerts};
#[cfg(feature = "mtls")]
pub(crate) use mtls::{PeerCerts, scope as peer_certs_scope};

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
/// use tonic_intercept::{Authenticate, Call};
/// use tonic_intercept::auth::bearer_token;
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
/// assert_eq!(tonic_intercept::auth::bearer_token(&metadata).unwrap(), "abc");
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

/// The roles of a verified identity, checked by `#[intercept(roles(..))]` and by
/// `roles: [..]` in the `.proto`.
///
/// A call passes when the identity has **at least one** of the roles the RPC requires;
/// otherwise it ends with `PERMISSION_DENIED` (the caller is known, but not allowed),
/// distinct from `UNAUTHENTICATED` (the caller is not known).
///
/// ```
/// use tonic_intercept::Roles;
/// use tonic_intercept::auth::Principal;
/// let ada = Principal::new("ada").with_roles(["admin"]);
/// assert!(ada.has_role("admin"));
/// assert!(!ada.has_role("auditor"));
/// ```
#[diagnostic::on_unimplemented(
    message = "the identity `{Self}` has no roles: it does not implement `tonic_intercept::Roles`",
    label = "`roles(..)` needs the identity's roles",
    note = "implement `tonic_intercept::Roles` for `{Self}` (the verifier's `Identity`), or use `tonic_intercept::auth::Principal`"
)]
pub trait Roles {
    /// Whether the identity holds `role`.
    fn has_role(&self, role: &str) -> bool;
}

/// A ready-made identity: a name and its roles.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Principal {
    /// Who the caller is.
    pub name: String,
    /// What the caller may do.
    pub roles: Vec<String>,
}

impl Principal {
    /// A principal without roles.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            roles: Vec::new(),
        }
    }

    /// Adds roles.
    pub fn with_roles<S: Into<String>>(mut self, roles: impl IntoIterator<Item = S>) -> Self {
        self.roles.extend(roles.into_iter().map(Into::into));
        self
    }
}

impl Roles for Principal {
    fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

impl<T: Roles + ?Sized> Roles for Arc<T> {
    fn has_role(&self, role: &str) -> bool {
        (**self).has_role(role)
    }
}

/// `PERMISSION_DENIED` unless `identity` has one of `required` (an empty list admits).
pub(crate) fn check_roles<I: Roles + ?Sized>(
    call: &Call,
    identity: &I,
    required: &[&str],
) -> Result<(), Status> {
    if required.is_empty() || required.iter().any(|r| identity.has_role(r)) {
        return Ok(());
    }
    Err(missing_role(call, required))
}

#[cold]
fn missing_role(call: &Call, required: &[&str]) -> Status {
    Status::permission_denied(format!(
        "{} requires the role {}",
        call.rpc().method,
        required
            .iter()
            .map(|r| format!("`{r}`"))
            .collect::<Vec<_>>()
            .join(" or ")
    ))
}
