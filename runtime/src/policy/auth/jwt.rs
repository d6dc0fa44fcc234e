//! [`Jwt`]: bearer JSON Web Tokens verified against static keys or a JWKS URL.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use parking_lot::RwLock;
use serde_json::Value;
use tokio::time::Instant;
use tokio_rustls::rustls;
use tonic::Status;
use tonic::codegen::Bytes;
use tonic::codegen::http::{Request, StatusCode, Uri, header};
use tonic::metadata::MetadataMap;

use super::{Authenticate, Roles, bearer_token};
use crate::call::Call;

/// The JWT signature algorithms (`alg`), as [`Jwt::algorithms`] takes them.
pub use jsonwebtoken::Algorithm;

/// Every asymmetric algorithm: the default of a JWKS or a PEM key (of its family).
const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// A PEM parser of jsonwebtoken's `DecodingKey`.
type KeyParser = fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>;

/// The largest JWKS document read (real ones are a few KiB).
const MAX_JWKS_BYTES: usize = 1 << 20;

/// An error in a [`Jwt`]'s configuration: a key or URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfigError(String);

impl fmt::Display for JwtConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for JwtConfigError {}

/// The caller a [`Jwt`] verified: the identity claim, the roles, and every claim.
///
/// It is what handlers find in the request extensions
/// (`request.extensions().get::<JwtIdentity>()`); [`Roles`] checks `roles`, and
/// `Display` and `Hash` use `name`, so per-identity call rates key on it.
#[derive(Debug, Clone)]
pub struct JwtIdentity {
    /// The identity claim ([`Jwt::identity_claim`], `sub` unless told).
    pub name: String,
    /// The roles claim ([`Jwt::roles_claim`], `roles` unless told).
    pub roles: Vec<String>,
    /// The token's claims, a JSON object.
    pub claims: Arc<Value>,
}

impl JwtIdentity {
    /// A claim by name or dotted path (see [`Jwt::roles_claim`]).
    pub fn claim(&self, path: &str) -> Option<&Value> {
        claim_path(&self.claims, path)
    }
}

impl PartialEq for JwtIdentity {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.roles == other.roles
    }
}

impl Eq for JwtIdentity {}

impl Hash for JwtIdentity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl fmt::Display for JwtIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl Roles for JwtIdentity {
    fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// Verifies `authorization: Bearer <JWT>` (feature `jwt`), built on `jsonwebtoken`.
///
/// - **Signature**: RS256/384/512, PS256/384/512, ES256/384, EdDSA (Ed25519) and
///   HS256/384/512; the algorithms allowed default to the key source's (every asymmetric
///   one for a JWKS, the key's family for a PEM key, HS* for a secret) and
///   [`algorithms`](Jwt::algorithms) narrows them. A key's own `alg` (JWK) must match the
///   token's.
/// - **Claims**: `exp` is required; `exp` and `nbf` are checked with a clock-skew
///   [`leeway`](Jwt::leeway) (60 s unless told); `aud` and `iss` when
///   [`audience`](Jwt::audience) and [`issuer`](Jwt::issuer) are set (set both).
/// - **Keys**: static ([`secret`](Jwt::secret), [`public_key_pem`](Jwt::public_key_pem),
///   [`jwks`](Jwt::jwks)) or fetched from a JWKS URL ([`jwks_url`](Jwt::jwks_url), http or
///   https) and cached: refetched when the cache expires (the response's
///   `Cache-Control: max-age`, else [`cache_ttl`](Jwt::cache_ttl), 5 min), or when a
///   token names an unknown `kid` (keys rotated). One fetch at a time: concurrent callers
///   wait for it. At most one fetch per [`min_refresh_interval`](Jwt::min_refresh_interval)
///   (30 s), so tokens with made-up `kid`s cannot hammer the issuer; a failed fetch keeps
///   the keys already known.
/// - **Identity**: [`JwtIdentity`], its name from [`identity_claim`](Jwt::identity_claim)
///   (`sub`), its roles from [`roles_claim`](Jwt::roles_claim) (`roles`).
///
/// Every failure is `UNAUTHENTICATED`, with one of these messages:
///
/// | failure | message |
/// |---|---|
/// | no token | ``missing `authorization: Bearer <token>` metadata`` |
/// | not a JWT | `malformed JWT` |
/// | `alg` not allowed | ``JWT algorithm `HS256` is not allowed`` |
/// | `alg` not the key's | ``JWT algorithm `RS384` does not match its key`` |
/// | no `kid`, several keys | ``JWT has no `kid` `` |
/// | `kid` unknown | ``unknown JWT key id `k9` `` |
/// | keys never fetched | `JWT signing keys are unavailable` |
/// | bad signature | `invalid JWT signature` |
/// | `exp` passed | `JWT expired` |
/// | `nbf` ahead | `JWT not yet valid` |
/// | wrong `aud` | `JWT audience not accepted` |
/// | wrong `iss` | `JWT issuer not accepted` |
/// | claim missing | ``JWT lacks the `exp` claim`` |
///
/// ```
/// use std::time::Duration;
/// use tonic_intercept::auth::Jwt;
///
/// let jwt = Jwt::jwks_url("https://issuer.example/.well-known/jwks.json")
///     .unwrap()
///     .issuer("https://issuer.example/")
///     .audience("orders-api")
///     .roles_claim("realm_access.roles")
///     .leeway(Duration::from_secs(30));
/// # let _ = jwt;
/// ```
///
/// `Jwt` is cheap to clone (the key cache is shared) and is used as
/// `#[intercept(auth(self.jwt))]`.
#[derive(Clone)]
pub struct Jwt {
    config: Arc<Config>,
    keys: Arc<Source>,
}

impl fmt::Debug for Jwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &*self.keys {
            Source::Static(_) => "static".to_owned(),
            Source::Remote(remote) => remote.url.to_string(),
        };
        f.debug_struct("Jwt")
            .field("keys", &source)
            .field("algorithms", &self.config.algorithms)
            .field("audience", &self.config.audience)
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
struct Config {
    algorithms: Vec<Algorithm>,
    audience: Vec<String>,
    issuer: Vec<String>,
    leeway: Duration,
    identity_claim: String,
    roles_claim: Option<String>,
    /// One `Validation` per allowed algorithm (jsonwebtoken wants one family per check).
    validations: Vec<(Algorithm, Validation)>,
    fetch: Fetch,
}

/// How a JWKS URL is fetched; kept with the settings (not the shared cache), so a
/// setting changed on a clone applies to that clone.
#[derive(Debug, Clone)]
struct Fetch {
    timeout: Duration,
    min_refresh: Duration,
    ttl: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Config {
    fn new(algorithms: &[Algorithm]) -> Self {
        let mut config = Self {
            algorithms: algorithms.to_vec(),
            audience: Vec::new(),
            issuer: Vec::new(),
            leeway: Jwt::DEFAULT_LEEWAY,
            identity_claim: "sub".to_owned(),
            roles_claim: Some("roles".to_owned()),
            validations: Vec::new(),
            fetch: Fetch {
                timeout: Jwt::DEFAULT_FETCH_TIMEOUT,
                min_refresh: Jwt::DEFAULT_MIN_REFRESH_INTERVAL,
                ttl: Jwt::DEFAULT_CACHE_TTL,
                tls: None,
            },
        };
        config.rebuild();
        config
    }

    fn rebuild(&mut self) {
        self.validations = self
            .algorithms
            .iter()
            .map(|&alg| {
                let mut v = Validation::new(alg);
                v.leeway = self.leeway.as_secs();
                v.validate_nbf = true;
                v.validate_exp = true;
                v.set_required_spec_claims(&["exp"]);
                if self.audience.is_empty() {
                    v.validate_aud = false;
                } else {
                    v.set_audience(&self.audience);
                }
                if !self.issuer.is_empty() {
                    v.set_issuer(&self.issuer);
                }
                (alg, v)
            })
            .collect();
    }
}

/// One verification key.
struct Key {
    key: DecodingKey,
    /// The JWK's `alg`, if it names one.
    alg: Option<Algorithm>,
}

/// A key set: by `kid`, and those without one.
#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, Arc<Key>>,
    anonymous: Vec<Arc<Key>>,
}

impl Keys {
    fn single(key: DecodingKey) -> Self {
        let alg = ec_alg(&key);
        Self {
            by_kid: HashMap::new(),
            anonymous: vec![Arc::new(Key { key, alg })],
        }
    }

    /// Every usable key of `set` (keys of unknown types or without `use: sig` are left out).
    fn from_set(set: &JwkSet) -> Self {
        let mut keys = Self::default();
        for jwk in &set.keys {
            if let Some(jsonwebtoken::jwk::PublicKeyUse::Encryption) = jwk.common.public_key_use {
                continue;
            }
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| Algorithm::try_from(a).ok())
                .or_else(|| ec_alg(&key));
            let key = Arc::new(Key { key, alg });
            match &jwk.common.key_id {
                Some(kid) => {
                    keys.by_kid.insert(kid.clone(), key);
                }
                None => keys.anonymous.push(key),
            }
        }
        keys
    }

    fn len(&self) -> usize {
        self.by_kid.len() + self.anonymous.len()
    }

    /// The key for `kid`: by id, or the only key there is when the token names none (or
    /// the set has a single key without an id).
    fn find(&self, kid: Option<&str>) -> Result<Arc<Key>, Miss> {
        match kid {
            Some(kid) => match self.by_kid.get(kid) {
                Some(key) => Ok(key.clone()),
                None if self.by_kid.is_empty() && self.anonymous.len() == 1 => {
                    Ok(self.anonymous[0].clone())
                }
                None => Err(Miss::UnknownKid),
            },
            None if self.len() == 1 => Ok(self
                .anonymous
                .first()
                .or_else(|| self.by_kid.values().next())
                .expect("one key")
                .clone()),
            None => Err(Miss::NoKid),
        }
    }
}

enum Miss {
    UnknownKid,
    NoKid,
}

enum Source {
    Static(Keys),
    Remote(Remote),
}

/// A JWKS URL and its cache.
struct Remote {
    url: Uri,
    cache: RwLock<Cache>,
    /// Held while a fetch is in flight: the single flight.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Cache {
    keys: Option<Arc<Keys>>,
    /// Bumped by every fetch attempt, so callers that waited for one do not start another.
    generation: u64,
    expires: Option<Instant>,
    /// When the last fetch ended (succeeded or failed).
    last_attempt: Option<Instant>,
    /// When the last fetch started: the rate bound, also when its caller went away and
    /// dropped it half-way.
    last_start: Option<Instant>,
}

impl Jwt {
    /// The clock-skew allowance on `exp` and `nbf` unless told: 60 s.
    pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
    /// The least time between two JWKS fetches unless told: 30 s.
    pub const DEFAULT_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
    /// How long fetched keys are used without `Cache-Control: max-age`: 5 min.
    pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);
    /// The longest a JWKS fetch may take (connect, TLS, response) unless told: 10 s.
    pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

    fn with(keys: Source, algorithms: &[Algorithm]) -> Self {
        install_crypto_provider();
        Self {
            config: Arc::new(Config::new(algorithms)),
            keys: Arc::new(keys),
        }
    }

    /// Keys fetched from a JWKS URL (`http://` or `https://`), on the first call and
    /// whenever needed (see the type's docs). https trusts Mozilla's roots
    /// (`webpki-roots`) unless [`tls_config`](Jwt::tls_config) says otherwise.
    pub fn jwks_url(url: &str) -> Result<Self, JwtConfigError> {
        let uri: Uri = url
            .parse()
            .map_err(|e| JwtConfigError(format!("invalid JWKS URL `{url}`: {e}")))?;
        match (uri.scheme_str(), uri.host()) {
            (Some("http" | "https"), Some(_)) => {}
            _ => {
                return Err(JwtConfigError(format!(
                    "invalid JWKS URL `{url}`: needs http:// or https:// and a host"
                )));
            }
        }
        let remote = Remote {
            url: uri,
            cache: RwLock::new(Cache::default()),
            fetching: tokio::sync::Mutex::new(()),
        };
        Ok(Self::with(Source::Remote(remote), &ASYMMETRIC))
    }

    /// Static keys from a JWKS document (`{"keys": [..]}`), never fetched.
    pub fn jwks(json: &str) -> Result<Self, JwtConfigError> {
        let set: JwkSet =
            serde_json::from_str(json).map_err(|e| JwtConfigError(format!("invalid JWKS: {e}")))?;
        let keys = Keys::from_set(&set);
        if keys.len() == 0 {
            return Err(JwtConfigError("the JWKS has no usable key".to_owned()));
        }
        let mut algorithms = ASYMMETRIC.to_vec();
        if set.keys.iter().any(|k| {
            matches!(
                k.algorithm,
                jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)
            )
        }) {
            algorithms.extend([Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]);
        }
        Ok(Self::with(Source::Static(keys), &algorithms))
    }

    /// One shared secret for HS256, HS384 and HS512.
    pub fn secret(secret: &[u8]) -> Result<Self, JwtConfigError> {
        let key = DecodingKey::from_secret(secret)
            .map_err(|e| JwtConfigError(format!("invalid secret: {e}")))?;
        Ok(Self::with(
            Source::Static(Keys::single(key)),
            &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
        ))
    }

    /// One public key in PEM (`PUBLIC KEY` or `RSA PUBLIC KEY`): RSA, EC (P-256, P-384)
    /// or Ed25519; the algorithms allowed are its family's.
    pub fn public_key_pem(pem: &[u8]) -> Result<Self, JwtConfigError> {
        let tries: [(KeyParser, &[Algorithm]); 3] = [
            (DecodingKey::from_rsa_pem, &ASYMMETRIC[..6]),
            (DecodingKey::from_ec_pem, &ASYMMETRIC[6..8]),
            (DecodingKey::from_ed_pem, &ASYMMETRIC[8..]),
        ];
        for (parse, algorithms) in tries {
            if let Ok(key) = parse(pem) {
                // An EC key allows its curve's algorithm only.
                let curve = ec_alg(&key).map(|a| [a]);
                let algorithms = curve.as_ref().map_or(algorithms, |a| &a[..]);
                return Ok(Self::with(Source::Static(Keys::single(key)), algorithms));
            }
        }
        Err(JwtConfigError(
            "not an RSA, EC or Ed25519 public key in PEM".to_owned(),
        ))
    }

    fn config(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// Only these algorithms (`alg`) are accepted.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        let config = self.config();
        config.algorithms = algorithms.into_iter().collect();
        config.rebuild();
        self
    }

    /// The audience this service is: a token's `aud` must name it (call again to accept
    /// several).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        let config = self.config();
        config.audience.push(audience.into());
        config.rebuild();
        self
    }

    /// The issuer trusted: a token's `iss` must be it (call again to accept several).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        let config = self.config();
        config.issuer.push(issuer.into());
        config.rebuild();
        self
    }

    /// The clock-skew allowance on `exp` and `nbf` (whole seconds), 60 s unless told.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        let config = self.config();
        config.leeway = leeway;
        config.rebuild();
        self
    }

    /// The claim naming the caller, `sub` unless told; a string, or a dotted path as in
    /// [`roles_claim`](Jwt::roles_claim). A token without it is refused.
    pub fn identity_claim(mut self, claim: impl Into<String>) -> Self {
        self.config().identity_claim = claim.into();
        self
    }

    /// The claim holding the caller's roles, `roles` unless told: an array of strings or
    /// a space-separated string (`scope`). A dotted path reaches into objects
    /// (`realm_access.roles`, Keycloak's) when no claim has the whole name (as
    /// `https://example.com/roles` does). A token without it has no roles.
    pub fn roles_claim(mut self, claim: impl Into<String>) -> Self {
        self.config().roles_claim = Some(claim.into());
        self
    }

    /// Read no roles from the token.
    pub fn no_roles(mut self) -> Self {
        self.config().roles_claim = None;
        self
    }

    /// The least time between two JWKS fetches (30 s unless told): a token with an
    /// unknown `kid` fetches the keys again only after it, and after a failed fetch the
    /// keys known serve that long. Without effect on static keys.
    pub fn min_refresh_interval(mut self, interval: Duration) -> Self {
        self.config().fetch.min_refresh = interval;
        self
    }

    /// How long fetched keys are used when the response has no `Cache-Control: max-age`
    /// (5 min unless told). Without effect on static keys.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.config().fetch.ttl = ttl;
        self
    }

    /// The longest a JWKS fetch may take (10 s unless told). Without effect on static keys.
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.config().fetch.timeout = timeout;
        self
    }

    /// The TLS client configuration for an `https` JWKS URL (a private CA, say).
    pub fn tls_config(mut self, config: rustls::ClientConfig) -> Self {
        self.config().fetch.tls = Some(Arc::new(config));
        self
    }

    /// Verifies `token` (the JWT itself, without `Bearer`).
    pub async fn verify(&self, token: &str) -> Result<JwtIdentity, Status> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| unauthenticated("malformed JWT"))?;
        let alg = header.alg;
        let Some((_, validation)) = self.config.validations.iter().find(|(a, _)| *a == alg) else {
            return Err(unauthenticated(format!(
                "JWT algorithm `{alg:?}` is not allowed"
            )));
        };
        let kid = header.kid.as_deref();
        let key = match &*self.keys {
            Source::Static(keys) => keys.find(kid).map_err(|miss| miss_status(miss, kid))?,
            Source::Remote(remote) => remote.key(&self.config.fetch, kid).await?,
        };
        if key.alg.is_some_and(|a| a != alg) || key.key.family() != alg.family() {
            return Err(unauthenticated(format!(
                "JWT algorithm `{alg:?}` does not match its key"
            )));
        }
        let data = jsonwebtoken::decode::<Value>(token, &key.key, validation)
            .map_err(|e| decode_status(e.kind()))?;
        self.identity(data.claims)
    }

    fn identity(&self, claims: Value) -> Result<JwtIdentity, Status> {
        let config = &self.config;
        let name = match claim_path(&claims, &config.identity_claim) {
            Some(Value::String(s)) => s.clone(),
            _ => {
                return Err(unauthenticated(format!(
                    "JWT lacks the `{}` claim",
                    config.identity_claim
                )));
            }
        };
        let roles = match config
            .roles_claim
            .as_deref()
            .and_then(|c| claim_path(&claims, c))
        {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        Ok(JwtIdentity {
            name,
            roles,
            claims: Arc::new(claims),
        })
    }
}

impl Authenticate for Jwt {
    type Identity = JwtIdentity;

    async fn authenticate(
        &self,
        _call: &Call,
        metadata: &MetadataMap,
    ) -> Result<JwtIdentity, Status> {
        self.verify(bearer_token(metadata)?).await
    }
}

/// jsonwebtoken picks its crypto backend from its features, or fails when a build enables
/// both (a user's `aws_lc_rs` beside our `rust_crypto`): then ours is installed, once.
fn install_crypto_provider() {
    if jsonwebtoken::crypto::CryptoProvider::try_get_default().is_none() {
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    }
}

/// The one algorithm of an EC key, by its curve (its SEC1 point's length): ES256 for
/// P-256, ES384 for P-384.
fn ec_alg(key: &DecodingKey) -> Option<Algorithm> {
    if key.family() != jsonwebtoken::AlgorithmFamily::Ec {
        return None;
    }
    match key.try_get_as_bytes().ok()?.len() {
        65 => Some(Algorithm::ES256),
        97 => Some(Algorithm::ES384),
        _ => None,
    }
}

/// `claims[path]`: the claim named `path`, else the dotted path through objects.
fn claim_path<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    if !path.contains('.') {
        return None;
    }
    path.split('.').try_fold(claims, |v, part| v.get(part))
}

fn unauthenticated(message: impl Into<String>) -> Status {
    Status::unauthenticated(message)
}

fn miss_status(miss: Miss, kid: Option<&str>) -> Status {
    match miss {
        Miss::NoKid => unauthenticated("JWT has no `kid`"),
        Miss::UnknownKid => {
            let kid: String = kid.unwrap_or_default().chars().take(64).collect();
            unauthenticated(format!("unknown JWT key id `{kid}`"))
        }
    }
}

fn decode_status(kind: &ErrorKind) -> Status {
    match kind {
        ErrorKind::InvalidSignature => unauthenticated("invalid JWT signature"),
        ErrorKind::ExpiredSignature => unauthenticated("JWT expired"),
        ErrorKind::ImmatureSignature => unauthenticated("JWT not yet valid"),
        ErrorKind::InvalidAudience => unauthenticated("JWT audience not accepted"),
        ErrorKind::InvalidIssuer => unauthenticated("JWT issuer not accepted"),
        ErrorKind::MissingRequiredClaim(claim) => {
            unauthenticated(format!("JWT lacks the `{claim}` claim"))
        }
        ErrorKind::InvalidClaimFormat(claim) => {
            unauthenticated(format!("malformed JWT claim `{claim}`"))
        }
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => unauthenticated("JWT algorithm does not match its key"),
        _ => unauthenticated("malformed JWT"),
    }
}

impl Remote {
    /// The key for `kid`, fetching the key set when it is missing, expired, or lacks
    /// `kid`: one fetch in flight at a time, at most one per `min_refresh`.
    async fn key(&self, settings: &Fetch, kid: Option<&str>) -> Result<Arc<Key>, Status> {
        let generation = {
            let cache = self.cache.read();
            let now = Instant::now();
            let fresh = cache.expires.is_some_and(|e| now < e);
            let recent = cache
                .last_attempt
                .is_some_and(|t| now.duration_since(t) < settings.min_refresh);
            // Never fetched, and the last attempt failed within the refresh interval.
            if cache.keys.is_none() && recent {
                return Err(unauthenticated("JWT signing keys are unavailable"));
            }
            if let (Some(keys), true) = (&cache.keys, fresh) {
                match keys.find(kid) {
                    Ok(key) => return Ok(key),
                    // No `kid` and several keys: fetching again would not help.
                    Err(Miss::NoKid) => return Err(miss_status(Miss::NoKid, kid)),
                    // Asked within the refresh interval: no fetch, and no waiting.
                    Err(Miss::UnknownKid) if recent => {
                        return Err(miss_status(Miss::UnknownKid, kid));
                    }
                    Err(Miss::UnknownKid) => {}
                }
            }
            cache.generation
        };
        let _flight = self.fetching.lock().await;
        {
            let cache = self.cache.read();
            // Another caller fetched while this one waited: use its result.
            let attempted = cache.generation != generation;
            let recent = cache
                .last_start
                .is_some_and(|t| Instant::now().duration_since(t) < settings.min_refresh);
            if attempted || recent {
                return find_or_status(cache.keys.as_deref(), kid);
            }
        }
        self.cache.write().last_start = Some(Instant::now());
        let fetched = tokio::time::timeout(settings.timeout, self.fetch(settings)).await;
        let now = Instant::now();
        let mut cache = self.cache.write();
        cache.generation += 1;
        cache.last_attempt = Some(now);
        match fetched {
            Ok(Ok((set, max_age))) => {
                let ttl = max_age.unwrap_or(settings.ttl).max(settings.min_refresh);
                cache.keys = Some(Arc::new(Keys::from_set(&set)));
                cache.expires = Some(now + ttl);
            }
            Ok(Err(error)) => {
                tracing::warn!(url = %self.url, %error, "JWKS fetch failed; keeping the keys known");
                // The keys known serve at least until the next attempt is allowed.
                cache.expires = cache.expires.max(Some(now + settings.min_refresh));
            }
            Err(_) => {
                tracing::warn!(url = %self.url, timeout = ?settings.timeout, "JWKS fetch timed out; keeping the keys known");
                cache.expires = cache.expires.max(Some(now + settings.min_refresh));
            }
        }
        find_or_status(cache.keys.as_deref(), kid)
    }

    /// One GET of the JWKS URL: the key set and the response's `max-age`.
    async fn fetch(&self, settings: &Fetch) -> Result<(JwkSet, Option<Duration>), String> {
        let url = &self.url;
        let https = url.scheme_str() == Some("https");
        let host = url.host().ok_or("no host")?;
        let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp_host = host.trim_start_matches('[').trim_end_matches(']');
        let tcp = tokio::net::TcpStream::connect((tcp_host, port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let path = url.path_and_query().map_or("/", |p| p.as_str());
        let request = Request::get(path)
            .header(header::HOST, url.authority().map_or(host, |a| a.as_str()))
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, "tonic-intercept")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        if https {
            let config = settings.tls.clone().unwrap_or_else(default_tls);
            let name = rustls::pki_types::ServerName::try_from(tcp_host.to_owned())
                .map_err(|e| format!("server name: {e}"))?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            get(hyper_util::rt::TokioIo::new(tls), request).await
        } else {
            get(hyper_util::rt::TokioIo::new(tcp), request).await
        }
    }
}

/// The keys found for `kid` in `keys`, or why not.
fn find_or_status(keys: Option<&Keys>, kid: Option<&str>) -> Result<Arc<Key>, Status> {
    match keys {
        Some(keys) => keys.find(kid).map_err(|miss| miss_status(miss, kid)),
        None => Err(unauthenticated("JWT signing keys are unavailable")),
    }
}

/// Sends `request` over one HTTP/1.1 connection on `io`.
async fn get<IO>(
    io: IO,
    request: Request<Empty<Bytes>>,
) -> Result<(JwkSet, Option<Duration>), String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let connection = AbortOnDrop(tokio::spawn(connection));
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    if response.status() != StatusCode::OK {
        return Err(format!("HTTP status {}", response.status()));
    }
    let max_age = response
        .headers()
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(max_age);
    let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    drop(connection);
    let set = serde_json::from_slice(&body).map_err(|e| format!("JWKS: {e}"))?;
    Ok((set, max_age))
}

/// Ends the connection's task when the fetch ends, or is dropped (timed out, cancelled).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `max-age` of a `Cache-Control` value, unless `no-cache`/`no-store` say not to keep it.
fn max_age(value: &str) -> Option<Duration> {
    let mut age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return Some(Duration::ZERO);
        }
        if let Some(secs) = lower.strip_prefix("max-age=") {
            age = secs.trim_matches('"').parse().ok().map(Duration::from_secs);
        }
    }
    age
}

/// rustls with ring (the provider in the tree) and Mozilla's roots.
fn default_tls() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            // The process's provider if one is installed, else ring (tonic's `tls-ring`,
            // the one in the tree; deprecated in rustls only for lacking post-quantum key
            // exchange, which a JWKS fetch does not need).
            let provider = rustls::crypto::CryptoProvider::get_default()
                .cloned()
                .unwrap_or_else(|| {
                    #[allow(deprecated)]
                    Arc::new(rustls::crypto::ring::default_provider())
                });
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports TLS 1.2 and 1.3")
                .with_root_certificates(roots)
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_reads_cache_control() {
        assert_eq!(
            max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
    }

    #[test]
    fn claims_by_name_then_by_path() {
        let claims = serde_json::json!({
            "https://example.com/roles": ["a"],
            "realm_access": {"roles": ["admin", "user"]},
        });
        assert_eq!(
            claim_path(&claims, "https://example.com/roles"),
            Some(&serde_json::json!(["a"]))
        );
        assert_eq!(
            claim_path(&claims, "realm_access.roles"),
            Some(&serde_json::json!(["admin", "user"]))
        );
        assert_eq!(claim_path(&claims, "realm_access.groups"), None);
    }
}
