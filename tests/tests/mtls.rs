//! `auth::ClientCert` (feature `mtls`): certificates made by rcgen at test time, the
//! hardened server with client authentication on loopback, and the verifier behind
//! `#[intercept(auth(self.certs))]`: a SPIFFE ID and its roles, a DNS name with roles
//! from its OUs, a client without certificate, and `roles(..)` enforced.

mod common_serve;

use std::net::SocketAddr;
use std::sync::Arc;

use common_serve::start_echo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_intercept::auth::{CertName, ClientCert, Principal};
use tonic_intercept::server::Server;
use tonic_intercept_tests::pb::echo_service_client::EchoServiceClient;
use tonic_intercept_tests::pb::echo_service_server::EchoServiceServer;
use tonic_intercept_tests::pb::{EchoReply, EchoRequest, StreamRequest, Summary};

type Ca = CertifiedIssuer<'static, KeyPair>;

const BILLING: &str = "spiffe://example.org/ns/prod/sa/billing";

fn ca() -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A client certificate from `ca` with `sans`, subject `cn` and `ous`; cert and key PEM.
fn client_cert(ca: &Ca, sans: Vec<SanType>, cn: &str, ous: &[&str]) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = sans;
    params.distinguished_name.push(DnType::CommonName, cn);
    for ou in ous {
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, *ou);
    }
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn uri(value: &str) -> SanType {
    SanType::URI(value.try_into().unwrap())
}

fn dns(value: &str) -> SanType {
    SanType::DnsName(value.try_into().unwrap())
}

/// A `localhost` server certificate from `server_ca`; client certificates from
/// `client_ca` verified, clients without one let through (to be refused by auth).
fn server_config(server_ca: &Ca, client_ca: &Ca) -> rustls::ServerConfig {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, server_ca)
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut roots = RootCertStore::empty();
    roots.add(client_ca.der().clone()).unwrap();
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .allow_unauthenticated()
        .build()
        .unwrap();
    rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![CertificateDer::from(cert.der().to_vec())], key)
        .unwrap()
}

async fn tls_client(
    addr: SocketAddr,
    server_ca: &Ca,
    identity: Option<(String, String)>,
) -> EchoServiceClient<Channel> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(server_ca.pem()))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    EchoServiceClient::new(channel)
}

/// `EchoService` behind client certificates: `Unary` answers who called,
/// `ClientStream` needs `admin`.
struct Secured {
    certs: ClientCert,
}

type Empty = tokio_stream::Empty<Result<EchoReply, Status>>;

#[tonic_intercept::intercept(auth(self.certs), roles("admin", ClientStream))]
#[tonic::async_trait]
impl tonic_intercept_tests::pb::echo_service_server::EchoService for Secured {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let who = request.extensions().get::<Principal>().unwrap();
        let text = format!("{} {}", who.name, who.roles.join(","));
        Ok(Response::new(EchoReply { text, seq: 0 }))
    }

    type ServerStreamStream = Empty;

    async fn server_stream(
        &self,
        _request: Request<StreamRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        Ok(Response::new(tokio_stream::empty()))
    }

    async fn client_stream(
        &self,
        _request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Summary>, Status> {
        Ok(Response::new(Summary::default()))
    }

    type BidiStream = Empty;

    async fn bidi(
        &self,
        _request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::BidiStream>, Status> {
        Ok(Response::new(tokio_stream::empty()))
    }
}

fn verifier() -> ClientCert {
    ClientCert::new()
        .uri_prefix("spiffe://example.org/")
        .roles_from_ou()
        .grant(BILLING, ["admin", "billing"])
}

fn hello() -> EchoRequest {
    EchoRequest { text: "hi".into() }
}

#[tokio::test]
async fn client_certificates_name_the_caller_and_carry_roles() {
    let (server_ca, client_ca) = (ca(), ca());
    let service = Secured { certs: verifier() };
    let server = start_echo(
        Server::builder()
            .tls(server_config(&server_ca, &client_ca))
            .add_service(EchoServiceServer::new(service)),
    )
    .await;

    // A SPIFFE ID (URI SAN) names the caller before its DNS SAN and CN; its roles are
    // granted by name.
    let billing = client_cert(
        &client_ca,
        vec![dns("billing.prod.svc"), uri(BILLING)],
        "billing",
        &[],
    );
    let mut client = tls_client(server.addr, &server_ca, Some(billing)).await;
    let reply = client.unary(hello()).await.unwrap().into_inner();
    assert_eq!(reply.text, format!("{BILLING} admin,billing"));
    client
        .client_stream(tokio_stream::iter([hello()]))
        .await
        .unwrap();

    // A URI SAN of another trust domain is passed over: the DNS SAN names the caller,
    // its OU is its role, and `roles("admin", ..)` refuses it.
    let worker = client_cert(
        &client_ca,
        vec![uri("spiffe://other.org/worker"), dns("worker.example.org")],
        "worker",
        &["ops"],
    );
    let mut client = tls_client(server.addr, &server_ca, Some(worker)).await;
    let reply = client.unary(hello()).await.unwrap().into_inner();
    assert_eq!(reply.text, "worker.example.org ops");
    let denied = client
        .client_stream(tokio_stream::iter([hello()]))
        .await
        .unwrap_err();
    assert_eq!(
        (denied.code(), denied.message()),
        (
            Code::PermissionDenied,
            "ClientStream requires the role `admin`"
        )
    );

    // No SAN: the subject's CN.
    // (rcgen keeps one value per attribute type: one OU.)
    let plain = client_cert(&client_ca, vec![], "legacy-client", &["audit"]);
    let mut client = tls_client(server.addr, &server_ca, Some(plain)).await;
    let reply = client.unary(hello()).await.unwrap().into_inner();
    assert_eq!(reply.text, "legacy-client audit");

    // No certificate: the handshake passes (the verifier allows it), the call does not.
    let mut client = tls_client(server.addr, &server_ca, None).await;
    let status = client.unary(hello()).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unauthenticated, "no client certificate")
    );
    server.stop().await;
}

#[tokio::test]
async fn without_tls_there_is_no_client_certificate() {
    let service = Secured { certs: verifier() };
    let server = start_echo(Server::builder().add_service(EchoServiceServer::new(service))).await;
    let mut client = EchoServiceClient::new(common_serve::channel(server.addr).await);
    let status = client.unary(hello()).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unauthenticated, "no client certificate")
    );
    server.stop().await;
}

#[test]
fn identify_maps_a_certificate_without_a_server() {
    let ca = ca();
    let der = |sans, cn, ous: &[&str]| {
        let (pem, _) = client_cert(&ca, sans, cn, ous);
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes()).unwrap();
        vec![CertificateDer::clone(&der)]
    };
    let both = der(vec![dns("a.example.org"), uri(BILLING)], "cn-a", &[]);

    let principal = verifier().identify(&both).unwrap();
    assert_eq!(principal.name, BILLING);
    assert_eq!(principal.roles, ["admin", "billing"]);

    // The order of the sources is the caller's.
    let cn_first = ClientCert::new().name_from([CertName::CommonName, CertName::UriSan]);
    assert_eq!(cn_first.identify(&both).unwrap().name, "cn-a");
    let dns_only = ClientCert::new().name_from([CertName::DnsSan]);
    assert_eq!(dns_only.identify(&both).unwrap().name, "a.example.org");

    // A closure computes roles from the name and the certificate.
    let by_closure = ClientCert::new()
        .roles_with(|name, info| vec![format!("{}:{}", name.len(), info.dns_sans.len())]);
    assert_eq!(
        by_closure.identify(&both).unwrap().roles,
        [format!("{}:1", BILLING.len())]
    );

    // Nothing to name the caller by, no certificate, garbage.
    let uri_only = ClientCert::new().name_from([CertName::UriSan]);
    let status = uri_only.identify(&der(vec![], "cn", &[])).unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (
            Code::Unauthenticated,
            "client certificate names no identity"
        )
    );
    let status = verifier().identify(&[]).unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unauthenticated, "no client certificate")
    );
    let status = verifier()
        .identify(&[CertificateDer::from(vec![1u8, 2, 3])])
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unauthenticated, "malformed client certificate")
    );
}

/// Serves `Secured` with tonic's own `transport::Server` over TLS (client certificates
/// optional), with or without `ClientCertLayer`.
async fn tonic_server(
    server_ca: &Ca,
    client_ca: &Ca,
    layer: bool,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    use tonic::transport::ServerTlsConfig;
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, server_ca)
        .unwrap();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(cert.pem(), key.serialize_pem()))
        .client_ca_root(Certificate::from_pem(client_ca.pem()))
        .client_auth_optional(true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = EchoServiceServer::new(Secured { certs: verifier() });
    let mut builder = tonic::transport::Server::builder().tls_config(tls).unwrap();
    let shutdown = async {
        let _ = stopped.await;
    };
    if layer {
        let server = builder
            .layer(tonic_intercept::auth::ClientCertLayer)
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, shutdown);
        tokio::spawn(server);
    } else {
        let server = builder
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, shutdown);
        tokio::spawn(server);
    }
    (addr, stop)
}

#[tokio::test]
async fn tonic_transport_server_needs_the_layer() {
    let (server_ca, client_ca) = (ca(), ca());
    let billing = || client_cert(&client_ca, vec![uri(BILLING)], "billing", &[]);

    let (addr, stop) = tonic_server(&server_ca, &client_ca, true).await;
    let mut client = tls_client(addr, &server_ca, Some(billing())).await;
    let reply = client.unary(hello()).await.unwrap().into_inner();
    assert_eq!(reply.text, format!("{BILLING} admin,billing"));
    let mut anonymous = tls_client(addr, &server_ca, None).await;
    let status = anonymous.unary(hello()).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unauthenticated, "no client certificate")
    );
    let _ = stop.send(());

    let (addr, stop) = tonic_server(&server_ca, &client_ca, false).await;
    let mut client = tls_client(addr, &server_ca, Some(billing())).await;
    let status = client.unary(hello()).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (
            Code::Unauthenticated,
            "client certificates are not available: serve with tonic_intercept::server::Server"
        )
    );
    let _ = stop.send(());
}
