//! [`ClientCert`]: the verified client certificate of mutual TLS as the caller's identity.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio_rustls::rustls::pki_types::CertificateDer;
use tonic::Status;
use tonic::codegen::http;
use tonic::metadata::MetadataMap;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::{Authenticate, Principal};
use crate::call::Call;

/// The certificates a TLS client presented, as rustls verified them (leaf first).
pub(crate) type PeerCerts = Arc<Vec<CertificateDer<'static>>>;

thread_local! {
    /// The peer certificates of the call being polled: `None` outside a scope (a server
    /// that does not set it), `Some(None)` for a connection without client certificate.
    static PEER_CERTS: RefCell<Option<Option<PeerCerts>>> = const { RefCell::new(None) };
}

/// Runs `poll` with `certs` as the current call's peer certificates, restoring the
/// previous ones after (also when `poll` unwinds). The hardened server wraps every poll
/// of a request's future in it; moving the `Arc` in and out costs no reference count.
pub(crate) fn scope<T>(certs: &mut Option<PeerCerts>, poll: impl FnOnce() -> T) -> T {
    struct Restore<'a> {
        previous: Option<Option<PeerCerts>>,
        certs: &'a mut Option<PeerCerts>,
    }
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            let mine = PEER_CERTS.replace(self.previous.take());
            *self.certs = mine.flatten();
        }
    }
    let previous = PEER_CERTS.replace(Some(certs.take()));
    let _restore = Restore { previous, certs };
    poll()
}

/// The peer certificates of the call being polled, if the server makes them known.
fn current() -> Option<Option<PeerCerts>> {
    PEER_CERTS.with_borrow(|c| c.clone())
}

/// Where [`ClientCert`] reads the caller's name, tried in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CertName {
    /// The first URI subject alternative name (a SPIFFE ID: `spiffe://domain/path`),
    /// among those with the [`uri_prefix`](ClientCert::uri_prefix) if one is set.
    UriSan,
    /// The first DNS subject alternative name.
    DnsSan,
    /// The subject's common name (CN).
    CommonName,
}

/// What [`ClientCert`] read from the client's certificate, for mapping it to roles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertInfo {
    /// The URI subject alternative names.
    pub uri_sans: Vec<String>,
    /// The DNS subject alternative names.
    pub dns_sans: Vec<String>,
    /// The subject's common names (CN).
    pub common_names: Vec<String>,
    /// The subject's organizational units (OU).
    pub organizational_units: Vec<String>,
    /// The subject, as RFC 4514 text (`CN=client,OU=ops`).
    pub subject: String,
}

impl CertInfo {
    /// Parses a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, Status> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|_| Status::unauthenticated("malformed client certificate"))?;
        let mut info = Self {
            subject: cert.subject().to_string(),
            ..Self::default()
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(uri) => info.uri_sans.push((*uri).to_owned()),
                    GeneralName::DNSName(dns) => info.dns_sans.push((*dns).to_owned()),
                    _ => {}
                }
            }
        }
        let text = |attr: &x509_parser::x509::AttributeTypeAndValue<'_>| {
            attr.as_str().ok().map(str::to_owned)
        };
        info.common_names = cert.subject().iter_common_name().filter_map(text).collect();
        info.organizational_units = cert
            .subject()
            .iter_organizational_unit()
            .filter_map(text)
            .collect();
        Ok(info)
    }
}

type RoleFn = dyn Fn(&str, &CertInfo) -> Vec<String> + Send + Sync;

/// Authenticates the caller by the client certificate of mutual TLS (feature `mtls`).
///
/// The TLS handshake has already verified the certificate chain: serve with
/// [`Server::tls`](crate::server::Server::tls) and a `rustls::ServerConfig` whose client
/// certificate verifier trusts your client CA (`WebPkiClientVerifier`; its
/// `allow_unauthenticated()` lets clients without certificate reach the public RPCs).
/// `ClientCert` maps the leaf certificate to a [`Principal`]:
///
/// - **name**: by default the first URI SAN (a SPIFFE ID), else the first DNS SAN, else
///   the subject's CN; [`name_from`](ClientCert::name_from) changes the order,
///   [`uri_prefix`](ClientCert::uri_prefix) accepts only URI SANs of one trust domain.
/// - **roles**: none unless told: [`roles_from_ou`](ClientCert::roles_from_ou) (the
///   subject's OUs), [`grant`](ClientCert::grant) (a fixed table by name), or
///   [`roles_with`](ClientCert::roles_with) (a closure).
///
/// Failures are `UNAUTHENTICATED`: `no client certificate` (a connection without one),
/// `client certificate names no identity` (none of the sources found),
/// `malformed client certificate`, and, when the server does not make client
/// certificates known to it (tonic's own `transport::Server` without
/// [`ClientCertLayer`]),
/// `client certificates are not available: serve with tonic_intercept::server::Server`.
///
/// [`Server`](crate::server::Server) makes each call's certificates known to
/// `ClientCert`; with tonic's `transport::Server`, add `.layer(ClientCertLayer)`.
///
/// ```
/// use tonic_intercept::auth::{CertName, ClientCert};
///
/// let mtls = ClientCert::new()
///     .uri_prefix("spiffe://example.org/")
///     .name_from([CertName::UriSan, CertName::CommonName])
///     .grant("spiffe://example.org/ns/prod/sa/billing", ["billing"]);
/// # let _ = mtls;
/// ```
#[derive(Clone)]
pub struct ClientCert {
    name_from: Vec<CertName>,
    uri_prefix: Option<String>,
    roles_from_ou: bool,
    grants: Arc<HashMap<String, Vec<String>>>,
    roles_with: Option<Arc<RoleFn>>,
}

impl fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCert")
            .field("name_from", &self.name_from)
            .field("uri_prefix", &self.uri_prefix)
            .field("roles_from_ou", &self.roles_from_ou)
            .field("grants", &self.grants)
            .field("roles_with", &self.roles_with.is_some())
            .finish()
    }
}

impl Default for ClientCert {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientCert {
    /// The name from the URI SAN, else the DNS SAN, else the CN; no roles.
    pub fn new() -> Self {
        Self {
            name_from: vec![CertName::UriSan, CertName::DnsSan, CertName::CommonName],
            uri_prefix: None,
            roles_from_ou: false,
            grants: Arc::new(HashMap::new()),
            roles_with: None,
        }
    }

    /// Where the name is read, first found wins.
    pub fn name_from(mut self, sources: impl IntoIterator<Item = CertName>) -> Self {
        self.name_from = sources.into_iter().collect();
        self
    }

    /// Only URI SANs starting with `prefix` name the caller (`spiffe://example.org/`).
    pub fn uri_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.uri_prefix = Some(prefix.into());
        self
    }

    /// The subject's organizational units (OU) are roles.
    pub fn roles_from_ou(mut self) -> Self {
        self.roles_from_ou = true;
        self
    }

    /// The caller named `name` holds `roles`.
    pub fn grant<S: Into<String>>(
        mut self,
        name: impl Into<String>,
        roles: impl IntoIterator<Item = S>,
    ) -> Self {
        Arc::make_mut(&mut self.grants)
            .entry(name.into())
            .or_default()
            .extend(roles.into_iter().map(Into::into));
        self
    }

    /// Roles computed from the name and the certificate, added to the others.
    pub fn roles_with(
        mut self,
        roles: impl Fn(&str, &CertInfo) -> Vec<String> + Send + Sync + 'static,
    ) -> Self {
        self.roles_with = Some(Arc::new(roles));
        self
    }

    /// The principal of a client that presented `certs` (leaf first): what
    /// [`authenticate`](Authenticate::authenticate) does with the connection's
    /// certificates, for tests and for servers that obtain them otherwise.
    pub fn identify(&self, certs: &[CertificateDer<'_>]) -> Result<Principal, Status> {
        let leaf = certs
            .first()
            .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
        let info = CertInfo::from_der(leaf)?;
        let name = self
            .name_from
            .iter()
            .find_map(|source| match source {
                CertName::UriSan => info
                    .uri_sans
                    .iter()
                    .find(|u| self.uri_prefix.as_ref().is_none_or(|p| u.starts_with(p))),
                CertName::DnsSan => info.dns_sans.first(),
                CertName::CommonName => info.common_names.first(),
            })
            .cloned()
            .ok_or_else(|| Status::unauthenticated("client certificate names no identity"))?;
        let mut roles = Vec::new();
        if self.roles_from_ou {
            roles.extend(info.organizational_units.iter().cloned());
        }
        if let Some(granted) = self.grants.get(&name) {
            roles.extend(granted.iter().cloned());
        }
        if let Some(f) = &self.roles_with {
            roles.extend(f(&name, &info));
        }
        Ok(Principal { name, roles })
    }
}

impl Authenticate for ClientCert {
    type Identity = Principal;

    async fn authenticate(
        &self,
        _call: &Call,
        _metadata: &MetadataMap,
    ) -> Result<Principal, Status> {
        match current() {
            None => Err(Status::unauthenticated(
                "client certificates are not available: serve with tonic_intercept::server::Server",
            )),
            Some(None) => Err(Status::unauthenticated("no client certificate")),
            Some(Some(certs)) => self.identify(&certs),
        }
    }
}

/// Makes the client certificates of tonic's own `transport::Server` (with TLS) known to
/// [`ClientCert`]: `tonic::transport::Server::builder().tls_config(..)?.layer(ClientCertLayer)`.
/// [`Server`](crate::server::Server) needs no layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientCertLayer;

impl<S> tower_layer::Layer<S> for ClientCertLayer {
    type Service = ClientCertService<S>;

    fn layer(&self, inner: S) -> ClientCertService<S> {
        ClientCertService { inner }
    }
}

/// The service [`ClientCertLayer`] makes: reads the request's `TlsConnectInfo` and makes
/// its certificates current while the call is polled.
#[derive(Debug, Clone)]
pub struct ClientCertService<S> {
    inner: S,
}

impl<S, B> tonic::codegen::Service<http::Request<B>> for ClientCertService<S>
where
    S: tonic::codegen::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = WithPeerCerts<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let certs = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs);
        WithPeerCerts {
            inner: self.inner.call(request),
            certs,
        }
    }
}

pin_project_lite::pin_project! {
    /// A call's future polled with its client certificates current (see [`ClientCertLayer`]).
    #[derive(Debug)]
    pub struct WithPeerCerts<F> {
        #[pin]
        inner: F,
        certs: Option<PeerCerts>,
    }
}

impl<F: Future> Future for WithPeerCerts<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        scope(this.certs, || this.inner.poll(cx))
    }
}
