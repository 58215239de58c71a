//! The token service's core, free of HTTP: reading token requests (the GET query of the
//! distribution token spec and the OAuth2 POST form), deciding what to grant (the
//! intersection of what was asked and what the caller may do), signing the access token
//! (a JWT with the distribution spec's claims, `EdDSA` or `ES256`, named by `kid`),
//! writing the JSON answer, and refresh tokens for `docker login`'s offline access.
//!
//! Refresh tokens are opaque random strings (`hfrt_` + 256 bits, base64url) bound to a user
//! and a service with an expiry, kept in a [`RefreshStore`] under the SHA-256 of the token
//! (the store never holds a usable token). Unlike self-contained signed refresh tokens,
//! these can be revoked one by one or per user (password change, user removed) and need
//! no key to check; the price is a store, which the index has anyway.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::keys::SigningKey;
use crate::auth::scope::{self, GrantedAccess, Scope, ALL_ACTIONS, CATALOG, REGISTRY, REPOSITORY};
use crate::auth::{Action, Identity};

/// How long an access token lives unless configured otherwise.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// The shortest lifetime handed out: the spec asks for at least 60 s, since older clients
/// assume that much when `expires_in` is missing.
pub const MIN_LIFETIME: Duration = Duration::from_secs(60);
/// The longest lifetime handed out: an access token cannot be revoked, so it stays short.
pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// How long a refresh token lives unless configured otherwise.
pub const DEFAULT_REFRESH_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// Every refresh token starts with this, so secret scanners and people can tell one.
pub const REFRESH_TOKEN_PREFIX: &str = "hfrt_";
/// Largest token request body (form) accepted.
pub const MAX_FORM_LEN: usize = 64 * 1024;

/// Why a token could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("signing the token failed: {0}")]
    Sign(String),
    #[error("no randomness for the token id: {0}")]
    Random(String),
}

/// A signed access token and what the answer says about it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The compact JWT.
    pub token: String,
    /// Seconds from `issued_at` until it expires.
    pub expires_in: u64,
    /// RFC 3339 UTC time of issue.
    pub issued_at: String,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a bearer credential: never in logs.
        f.debug_struct("Token")
            .field("token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .field("issued_at", &self.issued_at)
            .finish()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    access: &'a [GrantedAccess],
}

/// Signs access tokens with the index's key.
#[derive(Debug, Clone)]
pub struct TokenIssuer {
    key: Arc<SigningKey>,
    issuer: String,
    lifetime: Duration,
}

impl TokenIssuer {
    /// An issuer named `issuer` (the `iss` claim registries expect) signing with `key`,
    /// with the default lifetime.
    pub fn new(key: impl Into<Arc<SigningKey>>, issuer: impl Into<String>) -> Self {
        TokenIssuer {
            key: key.into(),
            issuer: issuer.into(),
            lifetime: DEFAULT_LIFETIME,
        }
    }

    /// Sets the lifetime, held between [`MIN_LIFETIME`] and [`MAX_LIFETIME`] (whole seconds).
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = Duration::from_secs(lifetime.as_secs()).clamp(MIN_LIFETIME, MAX_LIFETIME);
        self
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn key(&self) -> &Arc<SigningKey> {
        &self.key
    }

    /// Signs a token for `subject` (`None`: anonymous, `sub` is `""`) to present to the
    /// service `audience`, carrying exactly `granted` (see [`grant`]).
    pub fn issue(
        &self,
        subject: Option<&str>,
        audience: &str,
        granted: &[GrantedAccess],
        now: SystemTime,
    ) -> Result<Token, TokenError> {
        let iat = unix_seconds(now);
        let expires_in = self.lifetime.as_secs();
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| TokenError::Random(e.to_string()))?;
        let claims = Claims {
            iss: &self.issuer,
            sub: subject.unwrap_or(""),
            aud: audience,
            exp: iat.saturating_add(expires_in),
            nbf: iat,
            iat,
            jti: URL_SAFE_NO_PAD.encode(nonce),
            access: granted,
        };
        let mut header = jsonwebtoken::Header::new(self.key.algorithm().jwt_algorithm());
        header.typ = Some("JWT".to_owned());
        header.kid = Some(self.key.kid().to_owned());
        let token = jsonwebtoken::encode(&header, &claims, self.key.encoding_key())
            .map_err(|e| TokenError::Sign(e.to_string()))?;
        Ok(Token {
            token,
            expires_in,
            issued_at: rfc3339(iat),
        })
    }
}

/// What to put in a token: for each requested scope, the requested actions the caller may
/// do. `may(repository, action)` answers for the caller (the access rules); a repository
/// scope's `*` stands for every action among pull, push and delete that `may` allows.
/// `registry:catalog:*` is granted to signed-in callers (the catalog still lists only what
/// they may pull). Resource classes (`repository(plugin)`) are ignored, unknown types and
/// actions dropped, the same repository asked for twice merged, and resources with nothing
/// granted left out: a partial grant is not an error, the registry refuses what is missing.
pub fn grant(
    requested: &[Scope],
    caller: &Identity,
    may: impl Fn(&str, Action) -> bool,
) -> Vec<GrantedAccess> {
    let mut repositories: Vec<(&str, BTreeSet<Action>)> = Vec::new();
    let mut catalog = false;
    for scope in requested.iter().take(scope::MAX_SCOPES) {
        let wants_all = scope.actions.iter().any(|a| a == ALL_ACTIONS);
        match scope.resource_type.as_str() {
            REPOSITORY => {
                let wanted: Vec<Action> = if wants_all {
                    Action::ALL.to_vec()
                } else {
                    scope
                        .actions
                        .iter()
                        .filter_map(|a| a.parse().ok())
                        .collect()
                };
                let name = scope.name.as_str();
                let index = match repositories.iter().position(|(n, _)| *n == name) {
                    Some(i) => i,
                    None => {
                        repositories.push((name, BTreeSet::new()));
                        repositories.len() - 1
                    }
                };
                let set = &mut repositories[index].1;
                for action in wanted {
                    if !set.contains(&action) && may(name, action) {
                        set.insert(action);
                    }
                }
            }
            REGISTRY if scope.name == CATALOG && wants_all && !caller.is_anonymous() => {
                catalog = true;
            }
            _ => {}
        }
    }
    let mut granted: Vec<GrantedAccess> = repositories
        .into_iter()
        .filter(|(_, actions)| !actions.is_empty())
        .map(|(name, actions)| GrantedAccess {
            resource_type: REPOSITORY.to_owned(),
            name: name.to_owned(),
            actions: actions.iter().map(|a| a.as_str().to_owned()).collect(),
        })
        .collect();
    if catalog {
        granted.push(GrantedAccess {
            resource_type: REGISTRY.to_owned(),
            name: CATALOG.to_owned(),
            actions: vec![ALL_ACTIONS.to_owned()],
        });
    }
    granted
}

/// The JSON answer to a token request: `token` and `access_token` (the same JWT, for old
/// and OAuth clients), `expires_in`, `issued_at`, `scope` (what was granted, space
/// separated, as OAuth answers require) and `refresh_token` when one was made.
pub fn token_response(
    token: &Token,
    granted: &[GrantedAccess],
    refresh_token: Option<&str>,
) -> serde_json::Value {
    let scope: Vec<String> = granted.iter().map(GrantedAccess::scope_string).collect();
    let mut answer = serde_json::json!({
        "token": token.token,
        "access_token": token.token,
        "expires_in": token.expires_in,
        "issued_at": token.issued_at,
        "scope": scope.join(" "),
    });
    if let (Some(refresh), Some(map)) = (refresh_token, answer.as_object_mut()) {
        map.insert("refresh_token".into(), refresh.into());
    }
    answer
}

/// An OAuth2 error answer (RFC 6749 §5.2), sent with status 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}: {description}")]
pub struct OAuthError {
    /// `invalid_request`, `unsupported_grant_type` or `invalid_grant`.
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    pub fn invalid_request(description: impl Into<String>) -> Self {
        OAuthError {
            error: "invalid_request",
            description: description.into(),
        }
    }

    pub fn unsupported_grant_type() -> Self {
        OAuthError {
            error: "unsupported_grant_type",
            description: "grant_type must be password or refresh_token".to_owned(),
        }
    }

    /// A wrong password or an unknown, expired or foreign refresh token.
    pub fn invalid_grant() -> Self {
        OAuthError {
            error: "invalid_grant",
            description: "invalid credentials or refresh token".to_owned(),
        }
    }

    /// `{"error":…,"error_description":…}`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({ "error": self.error, "error_description": self.description })
    }
}

/// How an OAuth2 POST asks for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    /// `username` and `password` in the form.
    Password,
    /// A refresh token from an earlier `access_type=offline` request.
    RefreshToken,
}

/// A parsed OAuth2 token request (`POST /token`, `application/x-www-form-urlencoded`).
/// `Debug` leaves the password and refresh token out.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenForm {
    pub grant_type: GrantType,
    /// The audience of the token (required).
    pub service: String,
    pub client_id: Option<String>,
    /// `access_type=offline`: answer with a refresh token too.
    pub offline: bool,
    pub scopes: Vec<Scope>,
    /// Set (non-empty) for [`GrantType::Password`].
    pub username: Option<String>,
    /// Set for [`GrantType::Password`].
    pub password: Option<String>,
    /// Set for [`GrantType::RefreshToken`].
    pub refresh_token: Option<String>,
}

impl fmt::Debug for TokenForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenForm")
            .field("grant_type", &self.grant_type)
            .field("service", &self.service)
            .field("client_id", &self.client_id)
            .field("offline", &self.offline)
            .field("scopes", &self.scopes)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl TokenForm {
    /// Parses the form body. Each parameter but `scope` may appear once (RFC 6749 §3.2);
    /// `scope` may hold several scopes separated by spaces, and is also accepted repeated.
    pub fn parse(body: &[u8]) -> Result<TokenForm, OAuthError> {
        if body.len() > MAX_FORM_LEN {
            return Err(OAuthError::invalid_request("request too large"));
        }
        let pairs = form_pairs(body)?;
        let mut single: HashMap<&str, &str> = HashMap::new();
        let mut scope_values: Vec<&str> = Vec::new();
        for (key, value) in &pairs {
            let key = key.as_str();
            if key == "scope" {
                scope_values.push(value);
            } else if FORM_FIELDS.contains(&key) && single.insert(key, value).is_some() {
                return Err(OAuthError::invalid_request(format!(
                    "{key} given more than once"
                )));
            }
        }
        let grant_type = match single.get("grant_type").copied() {
            Some("password") => GrantType::Password,
            Some("refresh_token") => GrantType::RefreshToken,
            Some(_) => return Err(OAuthError::unsupported_grant_type()),
            None => return Err(OAuthError::invalid_request("grant_type is required")),
        };
        let service = match single.get("service") {
            Some(s) if !s.is_empty() => (*s).to_owned(),
            _ => return Err(OAuthError::invalid_request("service is required")),
        };
        let owned = |k: &str| single.get(k).map(|v| (*v).to_owned());
        let form = TokenForm {
            grant_type,
            service,
            client_id: owned("client_id").filter(|c| !c.is_empty()),
            offline: single.get("access_type") == Some(&"offline"),
            scopes: scope::parse_scopes(scope_values),
            username: owned("username"),
            password: owned("password"),
            refresh_token: owned("refresh_token"),
        };
        match grant_type {
            GrantType::Password
                if form.username.as_deref().is_none_or(str::is_empty)
                    || form.password.is_none() =>
            {
                Err(OAuthError::invalid_request(
                    "username and password are required",
                ))
            }
            GrantType::RefreshToken if form.refresh_token.as_deref().is_none_or(str::is_empty) => {
                Err(OAuthError::invalid_request("refresh_token is required"))
            }
            _ => Ok(form),
        }
    }
}

/// A parsed `GET /token?…` query (credentials, if any, come in a Basic header).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenQuery {
    pub service: Option<String>,
    /// Every `scope=` value, each possibly holding several scopes separated by spaces.
    pub scopes: Vec<Scope>,
    /// `offline_token=true`: answer with a refresh token too.
    pub offline: bool,
    pub client_id: Option<String>,
    /// The user name docker sends along (informational; the Basic header decides).
    pub account: Option<String>,
}

impl TokenQuery {
    /// Parses the raw query string (without `?`). Unknown parameters are ignored; for the
    /// single-valued ones the first occurrence counts.
    pub fn parse(query: &str) -> Result<TokenQuery, OAuthError> {
        if query.len() > MAX_FORM_LEN {
            return Err(OAuthError::invalid_request("request too large"));
        }
        let pairs = form_pairs(query.as_bytes())?;
        let first = |name: &str| {
            pairs
                .iter()
                .find(|(k, v)| k == name && !v.is_empty())
                .map(|(_, v)| v.clone())
        };
        let offline =
            first("offline_token").is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
        Ok(TokenQuery {
            service: first("service"),
            scopes: scope::parse_scopes(
                pairs
                    .iter()
                    .filter(|(k, _)| k == "scope")
                    .map(|(_, v)| v.as_str()),
            ),
            offline,
            client_id: first("client_id"),
            account: first("account"),
        })
    }
}

/// The single-valued parameters of the OAuth2 form.
const FORM_FIELDS: [&str; 7] = [
    "grant_type",
    "service",
    "client_id",
    "access_type",
    "username",
    "password",
    "refresh_token",
];

fn form_pairs(input: &[u8]) -> Result<Vec<(String, String)>, OAuthError> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(input)
        .map_err(|_| OAuthError::invalid_request("malformed form encoding"))
}

/// What a refresh token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    pub user: String,
    /// The only service (audience) it gets tokens for.
    pub service: String,
    pub client_id: Option<String>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds; the token is refused from then on.
    pub expires_at: u64,
}

/// Why a refresh token was not accepted or kept.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// Unknown, expired, revoked or for another service: answer `invalid_grant`.
    #[error("invalid refresh token")]
    Invalid,
    #[error("refresh token store: {0}")]
    Store(String),
    #[error("no randomness for a refresh token: {0}")]
    Random(String),
}

/// Where refresh tokens live, keyed by the hex SHA-256 of the token (so the store never
/// holds a token that works). Implementations: [`MemoryRefreshStore`] for tests, the
/// index's database in production. Calls may block (run them off the async runtime).
pub trait RefreshStore: Send + Sync {
    fn put(&self, digest: &str, record: RefreshRecord) -> Result<(), RefreshError>;
    fn get(&self, digest: &str) -> Result<Option<RefreshRecord>, RefreshError>;
    /// Whether there was such a record.
    fn remove(&self, digest: &str) -> Result<bool, RefreshError>;
    /// Removes every record of `user`; how many there were.
    fn remove_user(&self, user: &str) -> Result<usize, RefreshError>;
    /// Removes every record expired at `now` (unix seconds); how many there were.
    fn purge_expired(&self, now: u64) -> Result<usize, RefreshError>;
}

/// Refresh records in memory, at most `capacity` of them (when full, the one that expires
/// first makes room).
#[derive(Debug)]
pub struct MemoryRefreshStore {
    records: Mutex<HashMap<String, RefreshRecord>>,
    capacity: usize,
}

impl MemoryRefreshStore {
    pub fn new(capacity: usize) -> Self {
        MemoryRefreshStore {
            records: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, RefreshRecord>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for MemoryRefreshStore {
    fn default() -> Self {
        MemoryRefreshStore::new(10_000)
    }
}

impl RefreshStore for MemoryRefreshStore {
    fn put(&self, digest: &str, record: RefreshRecord) -> Result<(), RefreshError> {
        let mut records = self.lock();
        if records.len() >= self.capacity && !records.contains_key(digest) {
            let first = records
                .iter()
                .min_by_key(|(_, r)| r.expires_at)
                .map(|(k, _)| k.clone());
            if let Some(first) = first {
                records.remove(&first);
            }
        }
        records.insert(digest.to_owned(), record);
        Ok(())
    }

    fn get(&self, digest: &str) -> Result<Option<RefreshRecord>, RefreshError> {
        Ok(self.lock().get(digest).cloned())
    }

    fn remove(&self, digest: &str) -> Result<bool, RefreshError> {
        Ok(self.lock().remove(digest).is_some())
    }

    fn remove_user(&self, user: &str) -> Result<usize, RefreshError> {
        let mut records = self.lock();
        let before = records.len();
        records.retain(|_, r| r.user != user);
        Ok(before - records.len())
    }

    fn purge_expired(&self, now: u64) -> Result<usize, RefreshError> {
        let mut records = self.lock();
        let before = records.len();
        records.retain(|_, r| r.expires_at > now);
        Ok(before - records.len())
    }
}

/// Makes and checks refresh tokens on top of a [`RefreshStore`]. Redeeming says who the
/// token stands for; the caller must still check that this user exists and build their
/// identity from the current users before granting anything.
#[derive(Debug)]
pub struct RefreshTokens<S: RefreshStore> {
    store: S,
    lifetime: Duration,
}

impl<S: RefreshStore> RefreshTokens<S> {
    pub fn new(store: S) -> Self {
        RefreshTokens {
            store,
            lifetime: DEFAULT_REFRESH_LIFETIME,
        }
    }

    /// Sets the lifetime (at least one minute).
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime.max(MIN_LIFETIME);
        self
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// A new refresh token for `user` at `service`.
    pub fn issue(
        &self,
        user: &str,
        service: &str,
        client_id: Option<&str>,
        now: SystemTime,
    ) -> Result<String, RefreshError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| RefreshError::Random(e.to_string()))?;
        let token = format!("{REFRESH_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(secret));
        let created_at = unix_seconds(now);
        self.store.put(
            &refresh_digest(&token),
            RefreshRecord {
                user: user.to_owned(),
                service: service.to_owned(),
                client_id: client_id.map(str::to_owned),
                created_at,
                expires_at: created_at.saturating_add(self.lifetime.as_secs()),
            },
        )?;
        Ok(token)
    }

    /// Checks `token` for `service`: unknown, expired (then also forgotten) or bound to
    /// another service are all [`RefreshError::Invalid`].
    pub fn redeem(
        &self,
        token: &str,
        service: &str,
        now: SystemTime,
    ) -> Result<RefreshRecord, RefreshError> {
        if !looks_like_refresh_token(token) {
            return Err(RefreshError::Invalid);
        }
        let digest = refresh_digest(token);
        let record = self.store.get(&digest)?.ok_or(RefreshError::Invalid)?;
        if unix_seconds(now) >= record.expires_at {
            self.store.remove(&digest)?;
            return Err(RefreshError::Invalid);
        }
        if record.service != service {
            return Err(RefreshError::Invalid);
        }
        Ok(record)
    }

    /// Forgets one token; whether it was known.
    pub fn revoke(&self, token: &str) -> Result<bool, RefreshError> {
        if !looks_like_refresh_token(token) {
            return Ok(false);
        }
        self.store.remove(&refresh_digest(token))
    }

    /// Forgets every token of `user` (after a password change or removal).
    pub fn revoke_user(&self, user: &str) -> Result<usize, RefreshError> {
        self.store.remove_user(user)
    }
}

fn looks_like_refresh_token(token: &str) -> bool {
    token.len() <= 128
        && token
            .strip_prefix(REFRESH_TOKEN_PREFIX)
            .is_some_and(|rest| {
                !rest.is_empty()
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
}

/// The store key of a refresh token: hex SHA-256.
pub fn refresh_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Seconds since the Unix epoch (0 for a clock before it).
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `YYYY-MM-DDTHH:MM:SSZ` for Unix seconds (proleptic Gregorian calendar, UTC).
pub fn rfc3339(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (non-negative here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::keys::KeyAlgorithm;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn user(name: &str) -> Identity {
        Identity {
            user: Some(name.to_owned()),
            ..Identity::default()
        }
    }

    fn scopes(text: &str) -> Vec<Scope> {
        scope::parse_scopes([text])
    }

    fn payload(jwt: &str) -> serde_json::Value {
        let part = jwt.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    fn header(jwt: &str) -> serde_json::Value {
        let part = jwt.split('.').next().unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_415_387_015), "2014-11-07T19:03:35Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
    }

    #[test]
    fn claims_and_header() {
        for alg in [KeyAlgorithm::Ed25519, KeyAlgorithm::EcdsaP256] {
            let key = SigningKey::generate(alg).unwrap();
            let kid = key.kid().to_owned();
            let issuer = TokenIssuer::new(key, "holdfast-index");
            let granted = grant(&scopes("repository:a/b:pull,push"), &user("ann"), |_, _| {
                true
            });
            let token = issuer
                .issue(Some("ann"), "registry.example", &granted, at(1_415_387_015))
                .unwrap();
            assert_eq!(token.expires_in, 300);
            assert_eq!(token.issued_at, "2014-11-07T19:03:35Z");
            let h = header(&token.token);
            assert_eq!(h["alg"], alg.jws_name());
            assert_eq!(h["typ"], "JWT");
            assert_eq!(h["kid"], kid.as_str());
            let c = payload(&token.token);
            assert_eq!(c["iss"], "holdfast-index");
            assert_eq!(c["sub"], "ann");
            assert_eq!(c["aud"], "registry.example");
            assert_eq!(c["iat"], 1_415_387_015u64);
            assert_eq!(c["nbf"], 1_415_387_015u64);
            assert_eq!(c["exp"], 1_415_387_315u64);
            assert_eq!(c["jti"].as_str().unwrap().len(), 22);
            assert_eq!(
                c["access"],
                serde_json::json!([{"type":"repository","name":"a/b","actions":["pull","push"]}])
            );
            assert!(!format!("{token:?}").contains(&token.token));
        }
    }

    #[test]
    fn anonymous_subject_and_unique_jti() {
        let issuer = TokenIssuer::new(SigningKey::generate(KeyAlgorithm::Ed25519).unwrap(), "i");
        let a = issuer.issue(None, "svc", &[], at(100)).unwrap();
        let b = issuer.issue(None, "svc", &[], at(100)).unwrap();
        assert_eq!(payload(&a.token)["sub"], "");
        assert_eq!(payload(&a.token)["access"], serde_json::json!([]));
        assert_ne!(payload(&a.token)["jti"], payload(&b.token)["jti"]);
    }

    #[test]
    fn lifetime_bounds() {
        let issuer = TokenIssuer::new(SigningKey::generate(KeyAlgorithm::Ed25519).unwrap(), "i");
        assert_eq!(issuer.lifetime(), DEFAULT_LIFETIME);
        let short = issuer.clone().with_lifetime(Duration::from_secs(5));
        assert_eq!(short.lifetime(), MIN_LIFETIME);
        let t = short.issue(None, "svc", &[], at(1000)).unwrap();
        assert_eq!(t.expires_in, 60);
        assert_eq!(payload(&t.token)["exp"], 1060u64);
        let long = issuer
            .clone()
            .with_lifetime(Duration::from_secs(10 * 24 * 3600));
        assert_eq!(long.lifetime(), MAX_LIFETIME);
        let sub_second = issuer.with_lifetime(Duration::from_millis(60_900));
        assert_eq!(sub_second.lifetime(), Duration::from_secs(60));
    }

    #[test]
    fn grant_is_the_intersection() {
        // ann may pull everything and push only under ann/.
        let may = |repo: &str, action: Action| match action {
            Action::Pull => true,
            Action::Push => repo.starts_with("ann/"),
            Action::Delete => false,
        };
        let ann = user("ann");
        let got = grant(
            &scopes(
                "repository:ann/app:pull,push repository:bob/app:pull,push repository:ann/x:delete",
            ),
            &ann,
            may,
        );
        assert_eq!(
            got,
            vec![
                GrantedAccess {
                    resource_type: "repository".into(),
                    name: "ann/app".into(),
                    actions: vec!["pull".into(), "push".into()],
                },
                GrantedAccess {
                    resource_type: "repository".into(),
                    name: "bob/app".into(),
                    actions: vec!["pull".into()],
                },
            ]
        );
        // `*` is every allowed action; duplicates merge; canonical order.
        let got = grant(
            &scopes("repository:ann/app:push repository:ann/app:* repository(plugin):ann/p:pull"),
            &ann,
            may,
        );
        assert_eq!(got[0].actions, ["pull", "push"]);
        assert_eq!(got[1].resource_type, "repository");
        assert_eq!(got[1].name, "ann/p");
        assert_eq!(got.len(), 2);
        // Unknown types and actions are dropped; nothing allowed is an empty grant.
        assert!(grant(
            &scopes("repository:a:frob thing:a:pull registry:other:*"),
            &ann,
            may
        )
        .is_empty());
        assert!(grant(&scopes("repository:a:delete"), &ann, may).is_empty());
        assert!(grant(&[], &ann, may).is_empty());
    }

    #[test]
    fn may_is_asked_only_for_what_was_requested() {
        let asked = std::cell::RefCell::new(Vec::new());
        grant(
            &scopes("repository:a:pull,pull repository:a:pull"),
            &user("u"),
            |r, a| {
                asked.borrow_mut().push((r.to_owned(), a));
                true
            },
        );
        assert_eq!(asked.into_inner(), vec![("a".to_owned(), Action::Pull)]);
    }

    #[test]
    fn catalog_for_signed_in_only() {
        let catalog = scopes("registry:catalog:*");
        let got = grant(&catalog, &user("ann"), |_, _| false);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].scope_string(), "registry:catalog:*");
        assert!(grant(&catalog, &Identity::anonymous(), |_, _| true).is_empty());
        assert!(grant(&scopes("registry:catalog:pull"), &user("ann"), |_, _| true).is_empty());
    }

    #[test]
    fn post_form() {
        let form = TokenForm::parse(
            b"grant_type=password&username=johndoe&password=A3ddj3w&service=hub.docker.io\
              &client_id=dockerengine&access_type=offline\
              &scope=repository%3Asamalba%2Fmy-app%3Apull%2Cpush+repository%3Ab%3Apull",
        )
        .unwrap();
        assert_eq!(form.grant_type, GrantType::Password);
        assert_eq!(form.service, "hub.docker.io");
        assert_eq!(form.client_id.as_deref(), Some("dockerengine"));
        assert!(form.offline);
        assert_eq!(form.username.as_deref(), Some("johndoe"));
        assert_eq!(form.password.as_deref(), Some("A3ddj3w"));
        assert_eq!(form.scopes.len(), 2);
        assert_eq!(form.scopes[0].name, "samalba/my-app");
        let shown = format!("{form:?}");
        assert!(!shown.contains("A3ddj3w"), "{shown}");

        let refresh = TokenForm::parse(
            b"grant_type=refresh_token&refresh_token=hfrt_abc&service=s&scope=repository:a:pull",
        )
        .unwrap();
        assert_eq!(refresh.grant_type, GrantType::RefreshToken);
        assert_eq!(refresh.refresh_token.as_deref(), Some("hfrt_abc"));
        assert!(!refresh.offline);
        assert!(!format!("{refresh:?}").contains("hfrt_abc"));
    }

    #[test]
    fn bad_post_forms() {
        let err = |body: &[u8]| TokenForm::parse(body).unwrap_err().error;
        assert_eq!(err(b"service=s"), "invalid_request");
        assert_eq!(
            err(b"grant_type=authorization_code&service=s"),
            "unsupported_grant_type"
        );
        assert_eq!(
            err(b"grant_type=password&username=a&password=b"),
            "invalid_request"
        );
        assert_eq!(
            err(b"grant_type=password&service=s&password=b"),
            "invalid_request"
        );
        assert_eq!(
            err(b"grant_type=password&service=s&username=&password=b"),
            "invalid_request"
        );
        assert_eq!(
            err(b"grant_type=password&service=s&username=a"),
            "invalid_request"
        );
        assert_eq!(
            err(b"grant_type=refresh_token&service=s"),
            "invalid_request"
        );
        assert_eq!(
            err(b"grant_type=password&service=s&username=a&username=b&password=c"),
            "invalid_request"
        );
        assert_eq!(err(&vec![b'a'; MAX_FORM_LEN + 1]), "invalid_request");
        // Junk never panics.
        for body in [&b"%"[..], b"=&=&", b"\xff\xfe", b"scope=%FF", b"grant_type"] {
            let _ = TokenForm::parse(body);
        }
        let e = OAuthError::invalid_grant();
        assert_eq!(e.json()["error"], "invalid_grant");
    }

    #[test]
    fn get_query() {
        let q = TokenQuery::parse(
            "account=ann&client_id=docker&offline_token=true&service=registry.example\
             &scope=repository%3Aa%2Fb%3Apull&scope=repository:localhost:5000/c:push,pull",
        )
        .unwrap();
        assert_eq!(q.service.as_deref(), Some("registry.example"));
        assert_eq!(q.account.as_deref(), Some("ann"));
        assert_eq!(q.client_id.as_deref(), Some("docker"));
        assert!(q.offline);
        let names: Vec<&str> = q.scopes.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a/b", "localhost:5000/c"]);
        let empty = TokenQuery::parse("").unwrap();
        assert_eq!(empty, TokenQuery::default());
        assert!(!TokenQuery::parse("offline_token=false").unwrap().offline);
    }

    #[test]
    fn json_answer() {
        let token = Token {
            token: "a.b.c".into(),
            expires_in: 300,
            issued_at: "2014-11-07T19:03:35Z".into(),
        };
        let granted = grant(&scopes("repository:a:pull,push"), &user("u"), |_, _| true);
        let v = token_response(&token, &granted, None);
        assert_eq!(v["token"], "a.b.c");
        assert_eq!(v["access_token"], "a.b.c");
        assert_eq!(v["expires_in"], 300);
        assert_eq!(v["issued_at"], "2014-11-07T19:03:35Z");
        assert_eq!(v["scope"], "repository:a:pull,push");
        assert!(v.get("refresh_token").is_none());
        let v = token_response(&token, &[], Some("hfrt_x"));
        assert_eq!(v["refresh_token"], "hfrt_x");
        assert_eq!(v["scope"], "");
    }

    #[test]
    fn refresh_tokens() {
        let tokens = RefreshTokens::new(MemoryRefreshStore::default());
        let t = tokens
            .issue("ann", "svc", Some("docker"), at(1000))
            .unwrap();
        assert!(t.starts_with(REFRESH_TOKEN_PREFIX));
        assert_eq!(t.len(), REFRESH_TOKEN_PREFIX.len() + 43);
        // The store holds the digest, never the token.
        assert!(tokens.store().get(&t).unwrap().is_none());
        let record = tokens.redeem(&t, "svc", at(2000)).unwrap();
        assert_eq!(record.user, "ann");
        assert_eq!(record.client_id.as_deref(), Some("docker"));
        assert_eq!(record.expires_at, 1000 + DEFAULT_REFRESH_LIFETIME.as_secs());
        // Bound to its service.
        assert!(matches!(
            tokens.redeem(&t, "other", at(2000)),
            Err(RefreshError::Invalid)
        ));
        // Unknown and malformed ones.
        assert!(matches!(
            tokens.redeem("hfrt_nope", "svc", at(2000)),
            Err(RefreshError::Invalid)
        ));
        assert!(matches!(
            tokens.redeem("", "svc", at(2000)),
            Err(RefreshError::Invalid)
        ));
        // The last character changed (to one it is not).
        let last = if t.ends_with('A') { 'B' } else { 'A' };
        let tampered = format!("{}{last}", &t[..t.len() - 1]);
        assert!(matches!(
            tokens.redeem(&tampered, "svc", at(2000)),
            Err(RefreshError::Invalid)
        ));
        // Expired: refused and forgotten.
        let late = at(1000 + DEFAULT_REFRESH_LIFETIME.as_secs());
        assert!(matches!(
            tokens.redeem(&t, "svc", late),
            Err(RefreshError::Invalid)
        ));
        assert!(tokens.store().is_empty());
    }

    #[test]
    fn refresh_revocation() {
        let tokens = RefreshTokens::new(MemoryRefreshStore::default())
            .with_lifetime(Duration::from_secs(3600));
        let a1 = tokens.issue("ann", "svc", None, at(0)).unwrap();
        let a2 = tokens.issue("ann", "svc", None, at(0)).unwrap();
        let b = tokens.issue("bob", "svc", None, at(0)).unwrap();
        assert_ne!(a1, a2);
        assert!(tokens.revoke(&a1).unwrap());
        assert!(!tokens.revoke(&a1).unwrap());
        assert!(tokens.redeem(&a1, "svc", at(1)).is_err());
        assert!(tokens.redeem(&a2, "svc", at(1)).is_ok());
        assert_eq!(tokens.revoke_user("ann").unwrap(), 1);
        assert!(tokens.redeem(&a2, "svc", at(1)).is_err());
        assert!(tokens.redeem(&b, "svc", at(1)).is_ok());
        assert!(tokens.redeem(&b, "svc", at(3600)).is_err());
        let _ = tokens.issue("carl", "svc", None, at(0)).unwrap();
        assert_eq!(tokens.store().purge_expired(3600).unwrap(), 1);
        assert_eq!(tokens.store().len(), 0);
    }

    #[test]
    fn memory_store_is_bounded() {
        let store = MemoryRefreshStore::new(2);
        let record = |user: &str, expires_at| RefreshRecord {
            user: user.into(),
            service: "s".into(),
            client_id: None,
            created_at: 0,
            expires_at,
        };
        store.put("a", record("a", 30)).unwrap();
        store.put("b", record("b", 10)).unwrap();
        store.put("c", record("c", 20)).unwrap();
        assert_eq!(store.len(), 2);
        assert!(store.get("b").unwrap().is_none());
        assert!(store.get("a").unwrap().is_some());
    }
}
