//! TLS and mutual TLS with `tonic_intercept::server::Server`, certificates made by
//! `rcgen` at test time: the example served over TLS, a plaintext client refused, an
//! unknown client certificate refused, and the client's certificate and address seen by
//! the handler.

mod common_serve;

use std::sync::Arc;
use std::time::Duration;

use common_serve::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_intercept::server::Server;
use tonic_intercept::tonic_health::pb::HealthCheckRequest;
use tonic_intercept::tonic_health::pb::health_check_response::ServingStatus;
use tonic_intercept::tonic_health::pb::health_client::HealthClient;
use tonic_intercept_examples::pb::CreateUserRequest;
use tonic_intercept_examples::pb::user_service_client::UserServiceClient;
use tonic_intercept_examples::{Services, demo_tokens};
use tonic_intercept_tests::pb::EchoRequest;
use tonic_intercept_tests::pb::echo_service_client::EchoServiceClient;

type Ca = CertifiedIssuer<'static, KeyPair>;

fn ca() -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A certificate for `name` signed by `ca`, and its key, in PEM.
fn leaf(ca: &Ca, name: &str) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

/// The server's config: a `localhost` certificate from `ca`; with `clients`, mutual TLS
/// trusting that CA's client certificates.
fn server_config(ca: &Ca, clients: Option<&Ca>) -> rustls::ServerConfig {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    // rustls' default provider: ring, the only one compiled in (tonic's `tls-ring`).
    let builder = rustls::ServerConfig::builder();
    let builder = match clients {
        None => builder.with_no_client_auth(),
        Some(clients) => {
            let mut roots = RootCertStore::empty();
            roots.add(clients.der().clone()).unwrap();
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder
        .with_single_cert(vec![CertificateDer::from(cert.der().to_vec())], key)
        .unwrap()
}

/// A TLS channel to `localhost` at `addr` trusting `ca`, presenting `identity`.
async fn tls_channel(
    addr: std::net::SocketAddr,
    ca: &Ca,
    identity: Option<(String, String)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem()))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

/// Whether a health check over `channel` (made by `connect`) fails, bounded by 20 s.
async fn refused(connect: impl Future<Output = Result<Channel, tonic::transport::Error>>) -> bool {
    let attempt = async {
        let channel = connect.await.map_err(|e| e.to_string())?;
        HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(Duration::from_secs(20), attempt)
        .await
        .expect("answered within 20 s")
        .is_err()
}

#[tokio::test]
async fn the_example_is_served_over_tls_and_a_plaintext_client_is_refused() {
    let ca = ca();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let services = Services::new(demo_tokens());
    let health = services.health().await;
    let (stop, stopped) = oneshot::channel::<()>();
    let orders = services.orders.clone();
    let server = tonic_intercept_examples::server(services, health)
        .tls(server_config(&ca, None))
        .serve_with_shutdown(listener, async move {
            let _ = stopped.await;
            orders.feed().close();
        });
    let server = tokio::spawn(server);

    let channel = tls_channel(addr, &ca, None).await.unwrap();
    let user = UserServiceClient::new(channel.clone())
        .create_user(CreateUserRequest {
            name: "Ada Lovelace".into(),
            email: "ada@example.com".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(user.name, "Ada Lovelace");
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);

    // Plaintext HTTP/2 against the TLS port: the TLS handshake fails, the call too.
    assert!(
        refused(async {
            Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
        })
        .await
    );

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(40), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn mutual_tls_serves_known_client_certificates_only() {
    let server_ca = ca();
    let client_ca = ca();
    let stranger_ca = ca();
    let server = start(Server::builder().tls(server_config(&server_ca, Some(&client_ca)))).await;

    // A certificate from the trusted CA: served, and the handler sees it and the peer.
    let known = tls_channel(server.addr, &server_ca, Some(leaf(&client_ca, "client")))
        .await
        .unwrap();
    let who = EchoServiceClient::new(known)
        .unary(EchoRequest { text: "who".into() })
        .await
        .unwrap()
        .into_inner()
        .text;
    assert!(who.starts_with("peer=127.0.0.1:"), "{who}");
    assert!(who.ends_with(" certs=1"), "{who}");

    // A certificate from another CA, or none: refused.
    assert!(
        refused(tls_channel(
            server.addr,
            &server_ca,
            Some(leaf(&stranger_ca, "client"))
        ))
        .await
    );
    assert!(refused(tls_channel(server.addr, &server_ca, None)).await);

    // And the known client is still served afterwards.
    let again = tls_channel(server.addr, &server_ca, Some(leaf(&client_ca, "client")))
        .await
        .unwrap();
    let reply = EchoServiceClient::new(again)
        .unary(EchoRequest {
            text: "again".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.text, "again");
    server.stop().await;
}

/// A client that opens TCP to the TLS port and never starts the TLS handshake is closed
/// after the handshake timeout.
#[tokio::test]
async fn a_silent_client_on_the_tls_port_is_closed_after_the_handshake_timeout() {
    use tokio::io::AsyncReadExt;

    let ca = ca();
    let server = start(
        Server::builder()
            .tls(server_config(&ca, None))
            .handshake_timeout(Duration::from_millis(300)),
    )
    .await;
    let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(20), silent.read(&mut buf))
        .await
        .expect("closed by the server");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let channel = tls_channel(server.addr, &ca, None).await.unwrap();
    let reply = EchoServiceClient::new(channel)
        .unary(EchoRequest { text: "ok".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.text, "ok");
    server.stop().await;
}
