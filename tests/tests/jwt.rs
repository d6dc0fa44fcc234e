//! `auth::Jwt` (feature `jwt`): tokens signed at test time with every algorithm family,
//! keys served as a JWKS by a small hyper server on 127.0.0.1 that counts its requests,
//! rotated mid-test; every failure's status and message; and the verifier behind
//! `#[intercept(auth(self.jwt))]` on a real server with a tonic client.

mod common_serve;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common_serve::{channel, start_echo};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::Mutex;
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ED25519};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_intercept::auth::{Jwt, JwtIdentity};
use tonic_intercept::server::Server;
use tonic_intercept_tests::pb::echo_service_client::EchoServiceClient;
use tonic_intercept_tests::pb::echo_service_server::EchoServiceServer;
use tonic_intercept_tests::pb::{EchoReply, EchoRequest, StreamRequest, Summary};

/// A 2048-bit RSA test key, fixed: ring (rcgen's backend here) cannot generate RSA keys,
/// and generating one in a debug build takes long. It signs nothing outside these tests.
const RSA_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQC5eSy26ixkOA52
/oPyoLG/wWNb0PoUuQrNVdflYZ2TSfI0r035pRhV1N5m4TqIocgPV0sgES3gPr2S
fUe0ndYQgKiCBAWIrgVxUn6SqQHKTCKrXPKtLaha7lr8WDS8dPon4NjRBpQ7/fwt
EqYMtsnXble5U1wGcY+Lp4R7IE6cbF8scgKtN5E5LJqYgeEHOD3uptWxDRDhUzOs
TZYeCGgL0yDuwYakh60QH3fFnbBahtZde1kLt7bjVMszcxZu/Kq1usgsrEA9atIC
IDMUZ6LVmm0dgGixLJjv9yNt4/yRn40TLcPciuNTZ03eg4izjzYMxB90QRPYoBgR
taRpoAWNAgMBAAECggEAXElki+FKVFWmMORkgDogJ7NQvpNllCEctF4V7m9bajnd
mARwbpsM2Exym0tPhkPFmYiMe3jA1Hczeav3nXH53T0/W24n2MIKOEBddZk9qEyo
5Y56u9vfjNtUD4LOPsWP4X7aM2usH4u5yi2gzOu41AZ2BONrA1PHIqyoWWGSa/cR
mw4SRZyeRxDdsRRw4qp8yVf1osckWKbn+nmGa7GLmw9bhNqphumKh00sn+6YwfK8
ZSYgPTWAs8C3uYnGOEhTZ1H2BoN9haJXwihe466CGuKPLP+nyfPfi2E4AWeQtosr
4omO8poxHokGCu86J2FZyDNoqmt0doLuNqK2iuMtqwKBgQDfi45CanF9VHFFjZF5
4WHtftGKvIATIWBvjwdh9BtK1yCarkhS0LNfgs4pI9CPGgpN5LJy5IKwsEbegqiU
jZ1DpdoHN8/G/dHMllKy4Kx1/6Kl0On1E+Dneh8N/qY4yLZf2SfcWLrPspJcEoAw
JeHc77o3pemX/wUAEL7dZbrSMwKBgQDUZp08Sf07aUwy6ckVh46SsjgBOshnEcaW
JZd/CTOo9oui8JLm42h1IKNTV2uVFNN7c+TM7UzV3LAjmkahD97jjb3hFLDbKplJ
965zqRi2FiLolbBPDs/vN8++ViSLUcXhqgm5RjuLQoPePuMNY2L4sIkqqHdXiLQg
jWrYYjOJPwKBgCRR8FMqKDZMufqq/a/nxplnuXPpHIX/LkPx4SkxGB4Yxdtb5bRO
5FXoUsasYv5dJL9zIOs55WH/wgP1Bp7cQ2jyUXJKxx91rdins9gMWPjzB+IZB2oi
SLBTTyhe73LaaYc5KRjL8c49HTqIZvtrrD7RVFgmRMXFUXKpRdmC5c+xAoGADUPf
XA2O6C/6V0+shFC0ActpngIK1A0TJvtwC7oKZOoI7IMz2YGoW3BPYvwZtvTXBGXH
i1jirJSc14xiDtsL45BNpIoDRZzSeAEk/wo3hd+6DGaU3Usih2En804z+BOCVUam
VtDhFSBxVeb9jS+A1eFIn8ZntarO/R13582yREcCgYBZ+0T6Bg3JFwmSnG51rNFx
u5cSGHVIs0kRCrx0of555mzE1ZR0v5z2YVf51sm7xb2kk20rMlK3TPvEKO8AoLiX
W13kHRGypK5uExf6brtuAHVuRRtQZJB6SdHn/EQ5cLZtbqjmujBYspfu/TK6jnsI
THtiQwcENDgZphntEUsUZg==
-----END PRIVATE KEY-----";

const ISSUER: &str = "https://issuer.test/";
const AUDIENCE: &str = "echo-api";

/// A signing key and its public JWK (with `kid`, without `alg` unless `pin_alg`).
struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Jwk,
}

impl SigningKey {
    fn new(kid: &str, encoding: EncodingKey, family_alg: Algorithm) -> Self {
        let mut jwk = Jwk::from_encoding_key(&encoding, family_alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        jwk.common.key_algorithm = None;
        Self {
            kid: kid.to_owned(),
            encoding,
            jwk,
        }
    }

    fn rsa(kid: &str) -> Self {
        Self::new(
            kid,
            EncodingKey::from_rsa_pem(RSA_PEM.as_bytes()).unwrap(),
            Algorithm::RS256,
        )
    }

    fn ec256(kid: &str) -> Self {
        let pem = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem();
        Self::new(
            kid,
            EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
            Algorithm::ES256,
        )
    }

    fn ec384(kid: &str) -> Self {
        let pem = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
            .unwrap()
            .serialize_pem();
        Self::new(
            kid,
            EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
            Algorithm::ES384,
        )
    }

    fn ed25519(kid: &str) -> Self {
        let pair = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        // jsonwebtoken derives no Ed25519 JWK from ring's PKCS#8 v2 private key: the JWK
        // is made from the raw public key instead.
        let public = jsonwebtoken::DecodingKey::from_ed_der(pair.public_key_raw());
        let mut jwk = Jwk::from_decoding_key(&public, None).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        Self {
            kid: kid.to_owned(),
            encoding: EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).unwrap(),
            jwk,
        }
    }

    /// A token signed with `alg`, naming this key's `kid`.
    fn sign(&self, alg: Algorithm, claims: &Value) -> String {
        self.sign_as(alg, Some(&self.kid), claims)
    }

    fn sign_as(&self, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

fn jwks(keys: &[&SigningKey]) -> String {
    serde_json::to_string(&JwkSet {
        keys: keys.iter().map(|k| k.jwk.clone()).collect(),
    })
    .unwrap()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Valid claims for `sub`, with `roles` in Keycloak's place.
fn claims(sub: &str, roles: &[&str]) -> Value {
    json!({
        "sub": sub,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": now() + 600,
        "iat": now(),
        "realm_access": {"roles": roles},
    })
}

/// A JWKS endpoint on 127.0.0.1: answers `GET /jwks` with the current document (or
/// `status`), counting requests.
#[derive(Clone)]
struct JwksServer {
    addr: SocketAddr,
    body: Arc<Mutex<String>>,
    status: Arc<Mutex<u16>>,
    cache_control: Arc<Mutex<Option<String>>>,
    /// How long each answer waits, so concurrent callers overlap a fetch.
    delay: Arc<Mutex<Duration>>,
    requests: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(body: String) -> Self {
        Self::start_with(body, None).await
    }

    /// Over TLS with `tls` (https), else plaintext.
    async fn start_with(body: String, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Self {
            addr: listener.local_addr().unwrap(),
            body: Arc::new(Mutex::new(body)),
            status: Arc::new(Mutex::new(200)),
            cache_control: Arc::new(Mutex::new(None)),
            delay: Arc::new(Mutex::new(Duration::ZERO)),
            requests: Arc::new(AtomicUsize::new(0)),
        };
        let state = server.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let state = state.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                            let state = state.clone();
                            async move {
                                state.requests.fetch_add(1, Ordering::SeqCst);
                                assert_eq!(request.uri().path(), "/jwks");
                                let delay = *state.delay.lock();
                                tokio::time::sleep(delay).await;
                                let mut response = hyper::Response::builder()
                                    .status(*state.status.lock())
                                    .header("content-type", "application/json");
                                if let Some(cc) = state.cache_control.lock().clone() {
                                    response = response.header("cache-control", cc);
                                }
                                let body = state.body.lock().clone();
                                Ok::<_, Infallible>(
                                    response.body(Full::new(Bytes::from(body))).unwrap(),
                                )
                            }
                        });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(tls) => {
                            let Ok(stream) =
                                tokio_rustls::TlsAcceptor::from(tls).accept(stream).await
                            else {
                                return;
                            };
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        server
    }

    fn url(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    fn https_url(&self) -> String {
        format!("https://localhost:{}/jwks", self.addr.port())
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn serve(&self, body: String) {
        *self.body.lock() = body;
    }
}

fn verifier(url: &str) -> Jwt {
    Jwt::jwks_url(url)
        .unwrap()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .roles_claim("realm_access.roles")
}

async fn refused(jwt: &Jwt, token: &str) -> (Code, String) {
    let status = jwt.verify(token).await.unwrap_err();
    (status.code(), status.message().to_owned())
}

fn unauthenticated(message: &str) -> (Code, String) {
    (Code::Unauthenticated, message.to_owned())
}

#[tokio::test]
async fn every_algorithm_verifies_against_one_fetched_key_set() {
    let (rsa, ec256, ec384, ed) = (
        SigningKey::rsa("rsa"),
        SigningKey::ec256("p256"),
        SigningKey::ec384("p384"),
        SigningKey::ed25519("ed"),
    );
    let server = JwksServer::start(jwks(&[&rsa, &ec256, &ec384, &ed])).await;
    let jwt = verifier(&server.url());
    let cases = [
        (&rsa, Algorithm::RS256),
        (&rsa, Algorithm::RS384),
        (&rsa, Algorithm::RS512),
        (&rsa, Algorithm::PS256),
        (&rsa, Algorithm::PS384),
        (&rsa, Algorithm::PS512),
        (&ec256, Algorithm::ES256),
        (&ec384, Algorithm::ES384),
        (&ed, Algorithm::EdDSA),
    ];
    for (key, alg) in cases {
        let name = format!("{alg:?}");
        let identity = jwt
            .verify(&key.sign(alg, &claims(&name, &["reader", "writer"])))
            .await
            .unwrap_or_else(|s| panic!("{alg:?}: {s:?}"));
        assert_eq!(identity.name, name);
        assert_eq!(identity.roles, ["reader", "writer"]);
        assert_eq!(identity.claim("iss"), Some(&json!(ISSUER)));
    }
    // One fetch served all nine.
    assert_eq!(server.requests(), 1);

    // HS256/384/512 with a shared secret; `scope` as a space-separated roles claim.
    let secret = b"a shared secret of at least thirty-two bytes";
    let jwt = Jwt::secret(secret)
        .unwrap()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .roles_claim("scope");
    let key = SigningKey {
        kid: "hs".into(),
        encoding: EncodingKey::from_secret(secret).unwrap(),
        jwk: Jwk::from_encoding_key(&EncodingKey::from_secret(secret).unwrap(), Algorithm::HS256)
            .unwrap(),
    };
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let mut c = claims("hmac", &[]);
        c["scope"] = json!("orders:read orders:write");
        let identity = jwt.verify(&key.sign(alg, &c)).await.unwrap();
        assert_eq!(identity.name, "hmac");
        assert_eq!(identity.roles, ["orders:read", "orders:write"]);
    }
    // A public key in PEM, without a JWKS.
    let ec = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let jwt = Jwt::public_key_pem(ec.public_key_pem().as_bytes())
        .unwrap()
        .audience(AUDIENCE)
        .issuer(ISSUER);
    let key = SigningKey::new(
        "pem",
        EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).unwrap(),
        Algorithm::ES256,
    );
    let identity = jwt
        .verify(&key.sign_as(Algorithm::ES256, None, &claims("pem", &[])))
        .await
        .unwrap();
    assert_eq!((identity.name.as_str(), identity.roles.len()), ("pem", 0));
    assert_eq!(
        refused(
            &jwt,
            &SigningKey::ec384("x").sign_as(Algorithm::ES384, None, &claims("pem", &[]))
        )
        .await,
        unauthenticated("JWT algorithm `ES384` is not allowed")
    );
}

#[tokio::test]
async fn each_failure_is_unauthenticated_with_its_message() {
    let (rsa, ec, stranger) = (
        SigningKey::rsa("rsa"),
        SigningKey::ec256("ec"),
        SigningKey::ec256("ec"),
    );
    let mut pinned = SigningKey::rsa("pinned");
    pinned.jwk.common.key_algorithm = Some(Algorithm::RS256.into());
    let jwt = Jwt::jwks(&jwks(&[&rsa, &ec, &pinned]))
        .unwrap()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .leeway(Duration::from_secs(60));
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = claims("ada", &[]);
        change(&mut c);
        c
    };
    let ok = ec.sign(Algorithm::ES256, &claims("ada", &[]));
    assert_eq!(jwt.verify(&ok).await.unwrap().name, "ada");

    let hmac = EncodingKey::from_secret(b"a shared secret of at least thirty-two bytes").unwrap();
    let hs =
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims("ada", &[]), &hmac).unwrap();
    let cases: Vec<(String, &str)> = vec![
        ("not-a-jwt".into(), "malformed JWT"),
        ("a.b.c".into(), "malformed JWT"),
        (hs, "JWT algorithm `HS256` is not allowed"),
        (
            ec.sign_as(Algorithm::ES256, Some("nope"), &claims("ada", &[])),
            "unknown JWT key id `nope`",
        ),
        (
            ec.sign_as(Algorithm::ES256, None, &claims("ada", &[])),
            "JWT has no `kid`",
        ),
        (
            stranger.sign(Algorithm::ES256, &claims("ada", &[])),
            "invalid JWT signature",
        ),
        (
            ec.sign_as(Algorithm::ES256, Some("rsa"), &claims("ada", &[])),
            "JWT algorithm `ES256` does not match its key",
        ),
        (
            pinned.sign(Algorithm::RS384, &claims("ada", &[])),
            "JWT algorithm `RS384` does not match its key",
        ),
        (
            ec.sign(Algorithm::ES256, &with(&|c| c["exp"] = json!(now() - 120))),
            "JWT expired",
        ),
        (
            ec.sign(Algorithm::ES256, &with(&|c| c["nbf"] = json!(now() + 120))),
            "JWT not yet valid",
        ),
        (
            ec.sign(Algorithm::ES256, &with(&|c| c["aud"] = json!("other-api"))),
            "JWT audience not accepted",
        ),
        (
            ec.sign(
                Algorithm::ES256,
                &with(&|c| c["iss"] = json!("https://evil.test/")),
            ),
            "JWT issuer not accepted",
        ),
        (
            ec.sign(
                Algorithm::ES256,
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
            ),
            "JWT lacks the `exp` claim",
        ),
        (
            ec.sign(
                Algorithm::ES256,
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("sub");
                }),
            ),
            "JWT lacks the `sub` claim",
        ),
    ];
    for (token, message) in cases {
        assert_eq!(
            refused(&jwt, &token).await,
            unauthenticated(message),
            "{message}"
        );
    }

    // Within the 60 s leeway: expired 30 s ago, valid from 30 s on, both accepted.
    for claims in [
        with(&|c| c["exp"] = json!(now() - 30)),
        with(&|c| c["nbf"] = json!(now() + 30)),
    ] {
        assert_eq!(
            jwt.verify(&ec.sign(Algorithm::ES256, &claims))
                .await
                .unwrap()
                .name,
            "ada"
        );
    }

    // `algorithms` narrows what is accepted.
    let only_rs = Jwt::jwks(&jwks(&[&rsa, &ec]))
        .unwrap()
        .algorithms([Algorithm::RS256]);
    assert_eq!(
        refused(&only_rs, &ok).await,
        unauthenticated("JWT algorithm `ES256` is not allowed")
    );
}

#[tokio::test]
async fn rotated_keys_are_fetched_once_and_an_outage_keeps_the_keys_known() {
    let (old, new) = (SigningKey::ec256("2026-01"), SigningKey::ed25519("2026-02"));
    let server = JwksServer::start(jwks(&[&old])).await;
    let jwt = verifier(&server.url()).min_refresh_interval(Duration::ZERO);

    assert_eq!(
        jwt.verify(&old.sign(Algorithm::ES256, &claims("a", &[])))
            .await
            .unwrap()
            .name,
        "a"
    );
    assert_eq!(server.requests(), 1);
    // Cached: no fetch for a known key.
    jwt.verify(&old.sign(Algorithm::ES256, &claims("a", &[])))
        .await
        .unwrap();
    assert_eq!(server.requests(), 1);

    // The issuer rotates: the new kid is unknown, fetched once, then accepted.
    server.serve(jwks(&[&new]));
    let token = new.sign(Algorithm::EdDSA, &claims("b", &[]));
    assert_eq!(jwt.verify(&token).await.unwrap().name, "b");
    assert_eq!(server.requests(), 2);
    jwt.verify(&token).await.unwrap();
    assert_eq!(server.requests(), 2);
    // The old key is gone from the set: its tokens are refused after one more fetch.
    assert_eq!(
        refused(&jwt, &old.sign(Algorithm::ES256, &claims("a", &[]))).await,
        unauthenticated("unknown JWT key id `2026-01`")
    );
    assert_eq!(server.requests(), 3);

    // The issuer fails: the keys already known still verify.
    *server.status.lock() = 500;
    assert_eq!(
        refused(&jwt, &old.sign(Algorithm::ES256, &claims("a", &[]))).await,
        unauthenticated("unknown JWT key id `2026-01`")
    );
    assert_eq!(server.requests(), 4);
    assert_eq!(jwt.verify(&token).await.unwrap().name, "b");

    // A verifier that never got the keys says so.
    let fresh = verifier(&server.url());
    assert_eq!(
        refused(&fresh, &token).await,
        unauthenticated("JWT signing keys are unavailable")
    );
    assert_eq!(server.requests(), 5);
    // Within the refresh interval it does not ask again.
    assert_eq!(
        refused(&fresh, &token).await,
        unauthenticated("JWT signing keys are unavailable")
    );
    assert_eq!(server.requests(), 5);
}

#[tokio::test]
async fn a_burst_of_unknown_kids_fetches_once() {
    let known = SigningKey::ec256("known");
    let server = JwksServer::start(jwks(&[&known])).await;
    // Each answer waits, so the burst's callers pile up behind one fetch.
    *server.delay.lock() = Duration::from_millis(200);
    let jwt = verifier(&server.url());

    let burst = |from: usize| {
        (from..from + 50)
            .map(|i| {
                let jwt = jwt.clone();
                let token = known.sign_as(
                    Algorithm::ES256,
                    Some(&format!("made-up-{i}")),
                    &claims("x", &[]),
                );
                tokio::spawn(async move { jwt.verify(&token).await.unwrap_err() })
            })
            .collect::<Vec<_>>()
    };
    for (i, task) in burst(0).into_iter().enumerate() {
        let status = task.await.unwrap();
        assert_eq!(
            (status.code(), status.message()),
            (
                Code::Unauthenticated,
                format!("unknown JWT key id `made-up-{i}`").as_str()
            )
        );
    }
    // One fetch for 50 callers (single flight, and the rate bound).
    assert_eq!(server.requests(), 1);
    // A second burst within the refresh interval (30 s): none.
    for task in burst(50) {
        task.await.unwrap();
    }
    assert_eq!(server.requests(), 1);
    // The known key is served from the cache all along.
    jwt.verify(&known.sign(Algorithm::ES256, &claims("x", &[])))
        .await
        .unwrap();
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn cache_control_max_age_sets_the_cache_lifetime() {
    let key = SigningKey::ec256("k");
    let server = JwksServer::start(jwks(&[&key])).await;
    let token = key.sign(Algorithm::ES256, &claims("a", &[]));

    // `max-age=0`: every call fetches again (the refresh interval allowing).
    *server.cache_control.lock() = Some("public, max-age=0".into());
    let jwt = verifier(&server.url()).min_refresh_interval(Duration::ZERO);
    for _ in 0..3 {
        jwt.verify(&token).await.unwrap();
    }
    assert_eq!(server.requests(), 3);

    // `max-age=3600` outlives the (zero) default ttl given here.
    *server.cache_control.lock() = Some("max-age=3600".into());
    let jwt = verifier(&server.url())
        .min_refresh_interval(Duration::ZERO)
        .cache_ttl(Duration::ZERO);
    for _ in 0..3 {
        jwt.verify(&token).await.unwrap();
    }
    assert_eq!(server.requests(), 4);
}

/// `EchoService` behind a JWT: `Unary` answers who called, `ClientStream` needs `admin`.
struct Secured {
    jwt: Jwt,
}

type Empty = tokio_stream::Empty<Result<EchoReply, Status>>;

#[tonic_intercept::intercept(auth(self.jwt), roles("admin", ClientStream))]
#[tonic::async_trait]
impl tonic_intercept_tests::pb::echo_service_server::EchoService for Secured {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let who = request.extensions().get::<JwtIdentity>().unwrap();
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

fn bearer<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

#[tokio::test]
async fn a_real_server_authenticates_with_jwt_and_enforces_roles() {
    let key = SigningKey::rsa("rsa-1");
    let jwks_server = JwksServer::start(jwks(&[&key])).await;
    let service = Secured {
        jwt: verifier(&jwks_server.url()),
    };
    let server = start_echo(Server::builder().add_service(EchoServiceServer::new(service))).await;
    let mut client = EchoServiceClient::new(channel(server.addr).await);
    let hello = || EchoRequest { text: "hi".into() };

    let ada = key.sign(Algorithm::RS256, &claims("ada", &["admin", "user"]));
    let reply = client
        .unary(bearer(hello(), &ada))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.text, "ada admin,user");
    let summary = client
        .client_stream(bearer(tokio_stream::iter([hello()]), &ada))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.received, 0);

    let bob = key.sign(Algorithm::RS256, &claims("bob", &["user"]));
    assert_eq!(
        client
            .unary(bearer(hello(), &bob))
            .await
            .unwrap()
            .into_inner()
            .text,
        "bob user"
    );
    let denied = client
        .client_stream(bearer(tokio_stream::iter([hello()]), &bob))
        .await
        .unwrap_err();
    assert_eq!(
        (denied.code(), denied.message()),
        (
            Code::PermissionDenied,
            "ClientStream requires the role `admin`"
        )
    );

    let missing = client.unary(hello()).await.unwrap_err();
    assert_eq!(
        (missing.code(), missing.message()),
        (
            Code::Unauthenticated,
            "missing `authorization: Bearer <token>` metadata"
        )
    );
    let expired = key.sign(Algorithm::RS256, &{
        let mut c = claims("ada", &["admin"]);
        c["exp"] = json!(now() - 3600);
        c
    });
    let status = client.unary(bearer(hello(), &expired)).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unauthenticated, "JWT expired")
    );
    let status = client.unary(bearer(hello(), "garbage")).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unauthenticated, "malformed JWT")
    );
    assert_eq!(jwks_server.requests(), 1);
    server.stop().await;
}

#[tokio::test]
async fn keys_are_fetched_over_https_trusting_the_roots_given() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let server_config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let signing = SigningKey::ec256("tls");
    let server = JwksServer::start_with(jwks(&[&signing]), Some(Arc::new(server_config))).await;
    let token = signing.sign(Algorithm::ES256, &claims("over-tls", &[]));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let client_config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let jwt = verifier(&server.https_url()).tls_config(client_config);
    assert_eq!(jwt.verify(&token).await.unwrap().name, "over-tls");
    assert_eq!(server.requests(), 1);

    // The default roots (Mozilla's) do not know this CA: the fetch fails, no key is known.
    let untrusted = verifier(&server.https_url());
    assert_eq!(
        refused(&untrusted, &token).await,
        unauthenticated("JWT signing keys are unavailable")
    );
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn without_cache_control_the_cache_ttl_applies() {
    let key = SigningKey::ec256("k");
    let server = JwksServer::start(jwks(&[&key])).await;
    let token = key.sign(Algorithm::ES256, &claims("a", &[]));
    let jwt = verifier(&server.url())
        .min_refresh_interval(Duration::ZERO)
        .cache_ttl(Duration::ZERO);
    for _ in 0..3 {
        jwt.verify(&token).await.unwrap();
    }
    assert_eq!(server.requests(), 3);
    let jwt = verifier(&server.url()).min_refresh_interval(Duration::ZERO);
    for _ in 0..3 {
        jwt.verify(&token).await.unwrap();
    }
    assert_eq!(server.requests(), 4);
}

#[tokio::test]
async fn a_fetch_whose_caller_went_away_still_counts_against_the_rate() {
    let key = SigningKey::ec256("k");
    let server = JwksServer::start(jwks(&[&key])).await;
    // The issuer hangs: the first caller's fetch never ends, and the caller goes away.
    *server.delay.lock() = Duration::from_secs(3600);
    let jwt = verifier(&server.url());
    let token = key.sign(Algorithm::ES256, &claims("a", &[]));
    let first = tokio::spawn({
        let (jwt, token) = (jwt.clone(), token.clone());
        async move { jwt.verify(&token).await }
    });
    for _ in 0..1000 {
        if server.requests() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.requests(), 1);
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());

    // Within the refresh interval no caller starts another fetch.
    for _ in 0..5 {
        assert_eq!(
            refused(&jwt, &token).await,
            unauthenticated("JWT signing keys are unavailable")
        );
    }
    assert_eq!(server.requests(), 1);
}
