//! The registry's side of token authentication: checking a `Bearer` token offline
//! against the public keys it trusts ([`TokenVerifier`]), and the `WWW-Authenticate:
//! Bearer …` challenge that sends clients to the token service ([`challenge`]). A token is
//! accepted only when its `kid` names a trusted key, its `alg` is the one that key's type
//! signs with (so `none`, HMAC with a public key as secret and other substitutions fail
//! before any signature check), the signature holds, `iss` and `aud` are the ones
//! configured, and the time lies within `nbf`/`iat` and `exp` give or take a small leeway.
//! What it then allows is exactly its `access` claim ([`VerifiedToken::allows`]).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::Validation;
use serde::Deserialize;

use super::scope::{GrantedAccess, ALL_ACTIONS, CATALOG, REGISTRY, REPOSITORY};
use super::Action;
use crate::index::keys::PublicKey;

/// Clock difference tolerated between the token service and the registry.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// Longest token considered at all (a token lists every granted resource, so it can be a
/// few kilobytes; the HTTP layer's header limit applies first).
pub const MAX_TOKEN_LEN: usize = 64 * 1024;
/// The `error` of a challenge answering a token that was refused.
pub const INVALID_TOKEN: &str = "invalid_token";
/// The `error` of a challenge answering a valid token that lacks the needed access.
pub const INSUFFICIENT_SCOPE: &str = "insufficient_scope";

/// Why a token was refused. Every case is answered with 401 and `error="invalid_token"`;
/// the messages are safe to show to clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    #[error("malformed token")]
    Malformed,
    #[error("token does not name its signing key")]
    MissingKeyId,
    #[error("token signed by an untrusted key")]
    UnknownKey,
    #[error("token algorithm does not match its key")]
    AlgorithmMismatch,
    #[error("invalid token signature")]
    BadSignature,
    #[error("token from an untrusted issuer")]
    WrongIssuer,
    #[error("token intended for another service")]
    WrongAudience,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The user it was issued to; `None` for an anonymous token (`sub` empty or absent).
    pub subject: Option<String>,
    pub access: Vec<GrantedAccess>,
    /// `exp`, Unix seconds.
    pub expires_at: u64,
    /// `jti`, for audit logs.
    pub id: Option<String>,
}

impl VerifiedToken {
    /// Whether the token grants `action` on `repository` (by name, exactly).
    pub fn allows(&self, repository: &str, action: Action) -> bool {
        self.access
            .iter()
            .any(|a| a.allows(REPOSITORY, repository, action.as_str()))
    }

    /// Whether the token grants `registry:catalog:*`.
    pub fn allows_catalog(&self) -> bool {
        self.access
            .iter()
            .any(|a| a.allows(REGISTRY, CATALOG, ALL_ACTIONS))
    }
}

/// Checks tokens against a set of trusted keys (more than one during a key rotation).
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    keys: HashMap<String, PublicKey>,
    issuer: String,
    audience: String,
    leeway: Duration,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// One `access` entry as other issuers may write it: Go writes an empty list as `null`,
/// and the deprecated `class` is ignored.
#[derive(Deserialize)]
struct RawAccess {
    #[serde(rename = "type")]
    resource_type: String,
    name: String,
    actions: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RawClaims {
    iss: String,
    #[serde(default)]
    sub: Option<String>,
    aud: Audience,
    exp: f64,
    #[serde(default)]
    nbf: Option<f64>,
    #[serde(default)]
    iat: Option<f64>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    access: Option<Vec<RawAccess>>,
}

impl TokenVerifier {
    /// A verifier accepting tokens from `issuer` (the `iss` claim) for `audience` (this
    /// registry's service name, the `aud` claim) signed by any of `keys`.
    pub fn new(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        keys: impl IntoIterator<Item = PublicKey>,
    ) -> Self {
        TokenVerifier {
            keys: keys.into_iter().map(|k| (k.kid().to_owned(), k)).collect(),
            issuer: issuer.into(),
            audience: audience.into(),
            leeway: DEFAULT_LEEWAY,
        }
    }

    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Trusts one more key.
    pub fn add_key(&mut self, key: PublicKey) {
        self.keys.insert(key.kid().to_owned(), key);
    }

    /// Stops trusting the key `kid`; its tokens fail from now on.
    pub fn remove_key(&mut self, kid: &str) -> Option<PublicKey> {
        self.keys.remove(kid)
    }

    /// The ids of the trusted keys.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Verifies a compact JWT (the part after `Bearer `) at time `now`.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<VerifiedToken, BearerError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(BearerError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| BearerError::Malformed)?;
        if header
            .typ
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("JWT"))
        {
            return Err(BearerError::Malformed);
        }
        let kid = header.kid.as_deref().ok_or(BearerError::MissingKeyId)?;
        let key = self.keys.get(kid).ok_or(BearerError::UnknownKey)?;
        let alg = key.algorithm().jwt_algorithm();
        if header.alg != alg {
            return Err(BearerError::AlgorithmMismatch);
        }
        // The library checks the signature (with exactly this algorithm); the claims are
        // checked below against `now`.
        let mut validation = Validation::new(alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<RawClaims>(token, key.decoding_key(), &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => BearerError::BadSignature,
                ErrorKind::InvalidAlgorithm => BearerError::AlgorithmMismatch,
                _ => BearerError::Malformed,
            })?
            .claims;

        if claims.iss != self.issuer {
            return Err(BearerError::WrongIssuer);
        }
        let for_us = match &claims.aud {
            Audience::One(aud) => *aud == self.audience,
            Audience::Many(auds) => auds.contains(&self.audience),
        };
        if !for_us {
            return Err(BearerError::WrongAudience);
        }
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let leeway = self.leeway.as_secs();
        let exp = numeric_date(claims.exp)?;
        if now >= exp.saturating_add(leeway) {
            return Err(BearerError::Expired);
        }
        for not_before in [claims.nbf, claims.iat].into_iter().flatten() {
            if now.saturating_add(leeway) < numeric_date(not_before)? {
                return Err(BearerError::NotYetValid);
            }
        }
        let access = claims
            .access
            .unwrap_or_default()
            .into_iter()
            .map(|a| GrantedAccess {
                resource_type: a.resource_type,
                name: a.name,
                actions: a.actions.unwrap_or_default(),
            })
            .collect();
        Ok(VerifiedToken {
            subject: claims.sub.filter(|s| !s.is_empty()),
            access,
            expires_at: exp,
            id: claims.jti,
        })
    }
}

/// A JWT NumericDate as whole Unix seconds (fractions are allowed, negatives are not).
fn numeric_date(value: f64) -> Result<u64, BearerError> {
    if value.is_finite() && value >= 0.0 {
        // Saturates at u64::MAX, which only makes a token expire never; fine for a signed
        // claim from a trusted issuer.
        Ok(value as u64)
    } else {
        Err(BearerError::Malformed)
    }
}

/// The token of a `Bearer` Authorization header (scheme matched without regard to
/// case), or `None` for any other scheme. The token is not checked here.
pub fn parse_bearer(authorization: &str) -> Option<&str> {
    let (scheme, rest) = authorization.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// The `WWW-Authenticate` value sending a client to the token service:
/// `Bearer realm="…",service="…"`, then `scope="…"` when a scope is known and `error="…"`
/// ([`INVALID_TOKEN`] for a refused token, [`INSUFFICIENT_SCOPE`] for too little access).
/// Quotes and backslashes are escaped and control characters dropped.
pub fn challenge(realm: &str, service: &str, scope: Option<&str>, error: Option<&str>) -> String {
    let mut value = format!(
        "Bearer realm=\"{}\",service=\"{}\"",
        quote(realm),
        quote(service)
    );
    if let Some(scope) = scope.filter(|s| !s.is_empty()) {
        value.push_str(&format!(",scope=\"{}\"", quote(scope)));
    }
    if let Some(error) = error.filter(|e| !e.is_empty()) {
        value.push_str(&format!(",error=\"{}\"", quote(error)));
    }
    value
}

/// `repository:NAME:a,b` for a challenge's scope (actions in the order given, once each).
pub fn scope_for(repository: &str, actions: &[Action]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for action in actions {
        if !names.contains(&action.as_str()) {
            names.push(action.as_str());
        }
    }
    format!("{REPOSITORY}:{repository}:{}", names.join(","))
}

fn quote(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::scope::parse_scopes;
    use crate::auth::Identity;
    use crate::index::keys::{KeyAlgorithm, SigningKey};
    use crate::index::token::{grant, TokenIssuer};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use std::sync::Arc;

    const T0: u64 = 1_700_000_000;
    const ISSUER: &str = "holdfast-index";
    const SERVICE: &str = "registry.example";

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn ann() -> Identity {
        Identity {
            user: Some("ann".into()),
            ..Identity::default()
        }
    }

    struct Fixture {
        key: Arc<SigningKey>,
        issuer: TokenIssuer,
        verifier: TokenVerifier,
    }

    fn fixture(alg: KeyAlgorithm) -> Fixture {
        let key = Arc::new(SigningKey::generate(alg).unwrap());
        Fixture {
            issuer: TokenIssuer::new(key.clone(), ISSUER),
            verifier: TokenVerifier::new(ISSUER, SERVICE, [key.public_key().clone()]),
            key,
        }
    }

    fn issue(issuer: &TokenIssuer, scopes: &str) -> String {
        let granted = grant(&parse_scopes([scopes]), &ann(), |_, _| true);
        issuer
            .issue(Some("ann"), SERVICE, &granted, at(T0))
            .unwrap()
            .token
    }

    /// Signs arbitrary claims with the fixture's key and header.
    fn sign_raw(key: &SigningKey, claims: &serde_json::Value) -> String {
        let mut header = jsonwebtoken::Header::new(key.algorithm().jwt_algorithm());
        header.kid = Some(key.kid().to_owned());
        jsonwebtoken::encode(&header, claims, key.encoding_key()).unwrap()
    }

    fn claims() -> serde_json::Value {
        serde_json::json!({
            "iss": ISSUER, "sub": "ann", "aud": SERVICE,
            "exp": T0 + 300, "nbf": T0, "iat": T0, "jti": "x",
            "access": [{"type": "repository", "name": "a/b", "actions": ["pull"]}],
        })
    }

    fn b64(json: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(json.to_string())
    }

    #[test]
    fn round_trip_both_algorithms() {
        for alg in [KeyAlgorithm::Ed25519, KeyAlgorithm::EcdsaP256] {
            let f = fixture(alg);
            let token = issue(&f.issuer, "repository:a/b:pull,push registry:catalog:*");
            let v = f.verifier.verify(&token, at(T0 + 1)).unwrap();
            assert_eq!(v.subject.as_deref(), Some("ann"));
            assert_eq!(v.expires_at, T0 + 300);
            assert!(v.id.is_some());
            assert!(v.allows("a/b", Action::Pull));
            assert!(v.allows("a/b", Action::Push));
            assert!(!v.allows("a/b", Action::Delete));
            assert!(!v.allows("a/bc", Action::Pull));
            assert!(!v.allows("a", Action::Pull));
            assert!(v.allows_catalog());
        }
    }

    #[test]
    fn anonymous_token() {
        let f = fixture(KeyAlgorithm::Ed25519);
        let granted = grant(
            &parse_scopes(["repository:pub:pull registry:catalog:*"]),
            &Identity::anonymous(),
            |_, a| a == Action::Pull,
        );
        let token = f
            .issuer
            .issue(None, SERVICE, &granted, at(T0))
            .unwrap()
            .token;
        let v = f.verifier.verify(&token, at(T0)).unwrap();
        assert_eq!(v.subject, None);
        assert!(v.allows("pub", Action::Pull));
        assert!(!v.allows_catalog());
    }

    #[test]
    fn time_window_with_leeway() {
        let f = fixture(KeyAlgorithm::Ed25519);
        let token = issue(&f.issuer, "repository:a/b:pull");
        let v = &f.verifier;
        assert!(v.verify(&token, at(T0 + 300 + 29)).is_ok());
        assert_eq!(
            v.verify(&token, at(T0 + 300 + 30)),
            Err(BearerError::Expired)
        );
        assert_eq!(
            v.verify(&token, at(T0 + 100_000)),
            Err(BearerError::Expired)
        );
        assert!(v.verify(&token, at(T0 - 30)).is_ok());
        assert_eq!(v.verify(&token, at(T0 - 31)), Err(BearerError::NotYetValid));
        let strict = v.clone().with_leeway(Duration::ZERO);
        assert_eq!(
            strict.verify(&token, at(T0 + 300)),
            Err(BearerError::Expired)
        );
        assert_eq!(
            strict.verify(&token, at(T0 - 1)),
            Err(BearerError::NotYetValid)
        );
        // An `iat` in the future counts like `nbf`.
        let mut c = claims();
        c.as_object_mut().unwrap().remove("nbf");
        c["iat"] = (T0 + 1000).into();
        let token = sign_raw(&f.key, &c);
        assert_eq!(v.verify(&token, at(T0)), Err(BearerError::NotYetValid));
    }

    #[test]
    fn tampering_is_caught() {
        let f = fixture(KeyAlgorithm::Ed25519);
        let token = issue(&f.issuer, "repository:a/b:pull");
        let parts: Vec<&str> = token.split('.').collect();
        // Payload re-encoded with more access.
        let mut payload: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        payload["access"][0]["actions"] = serde_json::json!(["pull", "push", "delete"]);
        let forged = format!("{}.{}.{}", parts[0], b64(&payload), parts[2]);
        assert_eq!(
            f.verifier.verify(&forged, at(T0)),
            Err(BearerError::BadSignature)
        );
        // Every single character of the payload flipped in turn.
        for i in 0..parts[1].len() {
            let mut bytes = parts[1].as_bytes().to_vec();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let flipped = format!(
                "{}.{}.{}",
                parts[0],
                String::from_utf8(bytes).unwrap(),
                parts[2]
            );
            assert!(f.verifier.verify(&flipped, at(T0)).is_err(), "byte {i}");
        }
        // Signature cut short, dropped, or the whole thing truncated.
        let cut = &token[..token.len() - 4];
        assert!(f.verifier.verify(cut, at(T0)).is_err());
        let unsigned = format!("{}.{}.", parts[0], parts[1]);
        assert!(f.verifier.verify(&unsigned, at(T0)).is_err());
        let two_parts = format!("{}.{}", parts[0], parts[1]);
        assert_eq!(
            f.verifier.verify(&two_parts, at(T0)),
            Err(BearerError::Malformed)
        );
        let extra = format!("{token}.x");
        assert!(f.verifier.verify(&extra, at(T0)).is_err());
    }

    #[test]
    fn wrong_or_unknown_key() {
        let f = fixture(KeyAlgorithm::Ed25519);
        let other = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
        // Signed by an untrusted key that names itself.
        let stranger = TokenIssuer::new(other, ISSUER);
        let token = issue(&stranger, "repository:a/b:pull");
        assert_eq!(
            f.verifier.verify(&token, at(T0)),
            Err(BearerError::UnknownKey)
        );
        // Signed by an untrusted key but naming the trusted one.
        let imposter = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(f.key.kid().to_owned());
        let token = jsonwebtoken::encode(&header, &claims(), imposter.encoding_key()).unwrap();
        assert_eq!(
            f.verifier.verify(&token, at(T0)),
            Err(BearerError::BadSignature)
        );
        // No kid at all.
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        let token = jsonwebtoken::encode(&header, &claims(), f.key.encoding_key()).unwrap();
        assert_eq!(
            f.verifier.verify(&token, at(T0)),
            Err(BearerError::MissingKeyId)
        );
    }

    #[test]
    fn algorithm_substitution() {
        for alg in [KeyAlgorithm::Ed25519, KeyAlgorithm::EcdsaP256] {
            let f = fixture(alg);
            let public = f.key.public_key();
            // HS256 keyed with the public key (PEM, DER and raw forms): the classic
            // confusion attack.
            for secret in [
                public.to_pem().into_bytes(),
                public.spki_der(),
                public.raw().to_vec(),
            ] {
                let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
                header.kid = Some(public.kid().to_owned());
                // Signed by hand: holdfast's JWT provider refuses HMAC altogether.
                let signing_input = format!(
                    "{}.{}",
                    b64(&serde_json::to_value(&header).unwrap()),
                    b64(&claims())
                );
                let hs256 = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
                let tag = ring::hmac::sign(&hs256, signing_input.as_bytes());
                let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag));
                assert_eq!(
                    f.verifier.verify(&token, at(T0)),
                    Err(BearerError::AlgorithmMismatch)
                );
            }
            // `alg: none` with an empty signature, and `alg` relabelled on a real token.
            let none = serde_json::json!({"alg": "none", "typ": "JWT", "kid": public.kid()});
            let token = format!("{}.{}.", b64(&none), b64(&claims()));
            assert_eq!(
                f.verifier.verify(&token, at(T0)),
                Err(BearerError::Malformed)
            );
            let real = issue(&f.issuer, "repository:a/b:pull");
            let parts: Vec<&str> = real.split('.').collect();
            let other_alg = match alg {
                KeyAlgorithm::Ed25519 => "ES256",
                KeyAlgorithm::EcdsaP256 => "EdDSA",
            };
            let relabelled =
                serde_json::json!({"alg": other_alg, "typ": "JWT", "kid": public.kid()});
            let token = format!("{}.{}.{}", b64(&relabelled), parts[1], parts[2]);
            assert_eq!(
                f.verifier.verify(&token, at(T0)),
                Err(BearerError::AlgorithmMismatch)
            );
        }
    }

    #[test]
    fn issuer_and_audience() {
        let f = fixture(KeyAlgorithm::Ed25519);
        let token = issue(&f.issuer, "repository:a/b:pull");
        let elsewhere = TokenVerifier::new(ISSUER, "other.example", [f.key.public_key().clone()]);
        assert_eq!(
            elsewhere.verify(&token, at(T0)),
            Err(BearerError::WrongAudience)
        );
        let other_issuer =
            TokenVerifier::new("someone-else", SERVICE, [f.key.public_key().clone()]);
        assert_eq!(
            other_issuer.verify(&token, at(T0)),
            Err(BearerError::WrongIssuer)
        );
        // `aud` as a list containing us is fine; a list without us is not.
        let mut c = claims();
        c["aud"] = serde_json::json!(["x", SERVICE]);
        assert!(f.verifier.verify(&sign_raw(&f.key, &c), at(T0)).is_ok());
        c["aud"] = serde_json::json!(["x"]);
        assert_eq!(
            f.verifier.verify(&sign_raw(&f.key, &c), at(T0)),
            Err(BearerError::WrongAudience)
        );
        c["aud"] = serde_json::json!([]);
        assert_eq!(
            f.verifier.verify(&sign_raw(&f.key, &c), at(T0)),
            Err(BearerError::WrongAudience)
        );
    }

    #[test]
    fn claim_structure() {
        let f = fixture(KeyAlgorithm::Ed25519);
        let check = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut c = claims();
            edit(&mut c);
            f.verifier.verify(&sign_raw(&f.key, &c), at(T0))
        };
        // Missing or mistyped required claims.
        for field in ["iss", "aud", "exp"] {
            assert_eq!(
                check(&|c| {
                    c.as_object_mut().unwrap().remove(field);
                }),
                Err(BearerError::Malformed),
                "{field}"
            );
        }
        assert_eq!(
            check(&|c| c["exp"] = "soon".into()),
            Err(BearerError::Malformed)
        );
        assert_eq!(
            check(&|c| c["exp"] = (-1).into()),
            Err(BearerError::Malformed)
        );
        assert_eq!(
            check(&|c| c["nbf"] = serde_json::json!({})),
            Err(BearerError::Malformed)
        );
        assert_eq!(
            check(&|c| c["access"] = serde_json::json!([{"type": "repository"}])),
            Err(BearerError::Malformed)
        );
        assert_eq!(
            check(&|c| c["access"] =
                serde_json::json!([{"type": "repository", "name": "a", "actions": "pull"}])),
            Err(BearerError::Malformed)
        );
        assert_eq!(
            check(&|c| c["access"] = serde_json::json!({"type": "repository"})),
            Err(BearerError::Malformed)
        );
        // What Go issuers write: null lists, a `class`, fractional dates, no nbf/iat/sub.
        let v = check(&|c| {
            c["access"] = serde_json::json!([
                {"type": "repository", "class": "image", "name": "a/b", "actions": ["pull"]},
                {"type": "repository", "name": "c", "actions": null},
            ]);
            c["exp"] = serde_json::json!((T0 + 300) as f64 + 0.5);
            let m = c.as_object_mut().unwrap();
            m.remove("nbf");
            m.remove("iat");
            m.remove("sub");
        })
        .unwrap();
        assert!(v.allows("a/b", Action::Pull));
        assert!(!v.allows("c", Action::Pull));
        assert_eq!(v.subject, None);
        let v = check(&|c| c["access"] = serde_json::Value::Null).unwrap();
        assert!(v.access.is_empty());
        // `*` in a token grants every action (as distribution reads it).
        let v = check(&|c| {
            c["access"] = serde_json::json!([{"type": "repository", "name": "a", "actions": ["*"]}])
        })
        .unwrap();
        assert!(v.allows("a", Action::Delete));
        // A `typ` other than JWT is refused.
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(f.key.kid().to_owned());
        header.typ = Some("refresh+jwt".into());
        let token = jsonwebtoken::encode(&header, &claims(), f.key.encoding_key()).unwrap();
        assert_eq!(
            f.verifier.verify(&token, at(T0)),
            Err(BearerError::Malformed)
        );
    }

    #[test]
    fn key_rotation() {
        let old = fixture(KeyAlgorithm::Ed25519);
        let new = fixture(KeyAlgorithm::EcdsaP256);
        let mut verifier = TokenVerifier::new(
            ISSUER,
            SERVICE,
            [old.key.public_key().clone(), new.key.public_key().clone()],
        );
        let mut kids: Vec<&str> = verifier.kids().collect();
        kids.sort_unstable();
        assert_eq!(kids.len(), 2);
        let from_old = issue(&old.issuer, "repository:a:pull");
        let from_new = issue(&new.issuer, "repository:a:pull");
        assert!(verifier.verify(&from_old, at(T0)).is_ok());
        assert!(verifier.verify(&from_new, at(T0)).is_ok());
        assert!(verifier.remove_key(old.key.kid()).is_some());
        assert_eq!(
            verifier.verify(&from_old, at(T0)),
            Err(BearerError::UnknownKey)
        );
        assert!(verifier.verify(&from_new, at(T0)).is_ok());
        verifier.add_key(old.key.public_key().clone());
        assert!(verifier.verify(&from_old, at(T0)).is_ok());
    }

    #[test]
    fn garbage_never_panics() {
        let f = fixture(KeyAlgorithm::Ed25519);
        let big = "a".repeat(MAX_TOKEN_LEN + 1);
        for junk in [
            "",
            ".",
            "..",
            "...",
            "a.b.c",
            "e30.e30.",
            "e30.e30.e30",
            "!!!.???.***",
            "eyJhbGciOiJFZERTQSJ9..",
            big.as_str(),
            "\u{0}.\u{0}.\u{0}",
        ] {
            assert!(f.verifier.verify(junk, at(T0)).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn bearer_header() {
        assert_eq!(parse_bearer("Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(parse_bearer("bearer   abc "), Some("abc"));
        assert_eq!(parse_bearer("Basic YTpi"), None);
        assert_eq!(parse_bearer("Bearer"), None);
        assert_eq!(parse_bearer(""), None);
    }

    #[test]
    fn challenges() {
        assert_eq!(
            challenge(
                "https://auth.example/token",
                SERVICE,
                Some(&scope_for("samalba/my-app", &[Action::Pull, Action::Push])),
                None
            ),
            "Bearer realm=\"https://auth.example/token\",service=\"registry.example\",\
             scope=\"repository:samalba/my-app:pull,push\""
        );
        assert_eq!(
            challenge("r", "s", None, Some(INVALID_TOKEN)),
            "Bearer realm=\"r\",service=\"s\",error=\"invalid_token\""
        );
        assert_eq!(
            challenge("a\"b\\c\r\n", "s", Some(""), None),
            "Bearer realm=\"a\\\"b\\\\c\",service=\"s\""
        );
        assert_eq!(
            scope_for("a", &[Action::Push, Action::Pull, Action::Push]),
            "repository:a:push,pull"
        );
    }
}
