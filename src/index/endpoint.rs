//! The token service's HTTP endpoint, `/token` (Docker Registry v2 token authentication):
//! `GET` with optional Basic credentials and repeated `scope=`, and the OAuth2 `POST` form
//! (`grant_type=password` or `refresh_token`). It authenticates the caller against the
//! users, grants the intersection of what is asked and what the rules allow (a partial or
//! empty grant is not an error; anonymous callers get what anonymous may do) and signs a
//! short-lived token for the requested service.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, Method, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::auth::bearer::TokenVerifier;
use crate::auth::scope::Scope;
use crate::auth::Action;
use crate::auth::AuthState;
use crate::auth::{AuthError, Authenticator, Identity};
use crate::index::namespaces::Namespaces;
use crate::index::policy::Policy;
use crate::index::store::Store;
use crate::index::token::{
    grant, token_response, GrantType, OAuthError, RefreshTokens, TokenForm, TokenIssuer, TokenQuery,
};
use crate::registry::errors::{Code, RegistryError};
use crate::registry::Reply;
use crate::storage::BodyStream;

pub const TOKEN_PATH: &str = "/token";

/// Largest `POST /token` form accepted.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The index's token service, embedded in the server process.
pub struct EmbeddedIndex {
    pub auth: Arc<Authenticator>,
    pub issuer: TokenIssuer,
    /// The services (registries) this index issues tokens for; the first is the default
    /// when a request names none. Each token's audience is the one service it was asked for.
    pub services: Vec<String>,
    /// `host:port` names clients use for this registry: a scope naming a repository with
    /// one of them as prefix (`localhost:5000/team/app`) means our `team/app`.
    pub own_hosts: Vec<String>,
    pub refresh: RefreshTokens<Arc<Store>>,
    /// Repositories, tags, collaborators, refresh tokens (`<data>/index/index.db`).
    pub store: Arc<Store>,
    pub namespaces: Namespaces,
    /// The registry served by this same process, if any: its catalog is filtered per
    /// caller, and whole-repository deletes reach its storage directly.
    pub local_registry: Option<Arc<dyn LocalRegistry>>,
    /// What registries present to report events (`[index] event_secret_file`).
    pub event_secret: Option<EventSecret>,
    /// Checks this index's own tokens presented to the index API.
    pub api_verifier: TokenVerifier,
    /// The `host[:port]` clients use for the registry (`docker pull HOST/NAME:TAG`).
    pub public_host: String,
    /// Webhooks (`[index.webhooks]`); `None` when disabled: nothing is queued or sent.
    pub webhooks: Option<Arc<crate::index::webhooks::Webhooks>>,
    /// The web UI's signed-in sessions (in memory: a restart signs everyone out).
    pub web_sessions: crate::index::web::session::Sessions,
}

/// A boxed future, as the object-safe [`LocalRegistry`] returns them.
pub type LocalFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, String>> + Send + 'a>>;

/// The registry in the same process, as the index needs it.
pub trait LocalRegistry: Send + Sync {
    /// Its service name (`aud` of its tokens).
    fn service(&self) -> &str;
    /// Removes a whole repository's tags, manifests and links; `Ok(false)` when it had none.
    fn delete_repository<'a>(&'a self, name: &'a str) -> LocalFuture<'a, bool>;
    /// The bytes of manifest `digest` when repository `name` holds it (the web UI shows
    /// platforms, config and layers from them); `Ok(None)` when it does not, or when the
    /// name or digest is malformed.
    fn manifest<'a>(&'a self, name: &'a str, digest: &'a str) -> LocalFuture<'a, Option<Bytes>>;
    /// The bytes of blob `digest` (an image config) when repository `name` links it and it
    /// is at most `max_len` bytes; `Ok(None)` otherwise.
    fn blob<'a>(
        &'a self,
        name: &'a str,
        digest: &'a str,
        max_len: u64,
    ) -> LocalFuture<'a, Option<Bytes>>;
    /// Removes tag `tag` of `name` (the manifest stays); `Ok(false)` when there was no such
    /// tag. The caller records the delete in the index.
    fn delete_tag<'a>(&'a self, name: &'a str, tag: &'a str) -> LocalFuture<'a, bool>;
    /// `[storage] read_only`: the registry refuses every change, deletes included.
    fn read_only(&self) -> bool;
}

/// The shared secret registries present with their events; compared in constant time and
/// never printed.
pub struct EventSecret(String);

impl EventSecret {
    /// Reads the secret from `path` (trailing whitespace dropped; empty is refused).
    pub fn load(path: &std::path::Path) -> Result<EventSecret, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let secret = text.trim_end().to_owned();
        if secret.len() < 16 {
            return Err(format!(
                "{}: the event secret must be at least 16 characters",
                path.display()
            ));
        }
        Ok(EventSecret(secret))
    }

    pub fn matches(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq;
        let a = Sha256::digest(self.0.as_bytes());
        let b = Sha256::digest(presented.as_bytes());
        a.ct_eq(&b).into()
    }
}

impl std::fmt::Debug for EventSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventSecret(<redacted>)")
    }
}

fn oauth_error(status: StatusCode, e: &OAuthError) -> Reply {
    Reply::new(status).json(&e.json())
}

fn auth_error(auth: &Authenticator, e: AuthError) -> Reply {
    match e {
        AuthError::Throttled { retry_after_secs } => Reply::error(
            &RegistryError::new(
                StatusCode::TOO_MANY_REQUESTS,
                Code::TooManyRequests,
                "too many failed logins; try again later",
            )
            .with_header(http::header::RETRY_AFTER, retry_after_secs.to_string()),
        ),
        other => Reply::error(
            &RegistryError::new(
                StatusCode::UNAUTHORIZED,
                Code::Unauthorized,
                other.to_string(),
            )
            .with_header(http::header::WWW_AUTHENTICATE, auth.challenge()),
        ),
    }
}

impl EmbeddedIndex {
    /// The access decision under `rules` (a snapshot of today's users and rules).
    pub fn policy<'a>(&'a self, rules: &'a AuthState) -> Policy<'a> {
        Policy {
            rules,
            store: &self.store,
            namespaces: &self.namespaces,
        }
    }

    /// Whether `service` is the registry in this process.
    fn is_local(&self, service: &str) -> bool {
        self.local_registry
            .as_ref()
            .is_some_and(|l| l.service() == service)
    }

    pub async fn handle(
        self: &Arc<Self>,
        method: &Method,
        query: &str,
        headers: &HeaderMap,
        body: BodyStream,
        peer: Option<IpAddr>,
    ) -> Reply {
        match *method {
            Method::GET => self.get(query, headers, peer).await,
            Method::POST => self.post(body, peer).await,
            _ => Reply::error(&RegistryError::unsupported(
                StatusCode::METHOD_NOT_ALLOWED,
                "the token endpoint answers GET and POST",
            )),
        }
    }

    /// The service a request is for: the one it names (if this index serves it), or the
    /// default. `Err` is the refusal for a service this index does not serve.
    fn service_for(&self, asked: Option<&str>) -> Result<String, Box<Reply>> {
        match asked {
            Some(s) if self.services.iter().any(|x| x == s) => Ok(s.to_owned()),
            Some(s) => Err(Box::new(oauth_error(
                StatusCode::BAD_REQUEST,
                &OAuthError::invalid_request(format!("unknown service {s:?}")),
            ))),
            None => self
                .services
                .first()
                .cloned()
                .ok_or_else(|| Box::new(Reply::error(&RegistryError::internal()))),
        }
    }

    fn local_scopes(&self, mut scopes: Vec<Scope>) -> Vec<Scope> {
        let hosts: Vec<&str> = self.own_hosts.iter().map(String::as_str).collect();
        for s in &mut scopes {
            s.strip_host(&hosts);
        }
        scopes
    }

    /// What `identity` gets of `scopes` for `service`: the intersection of what is asked and
    /// what the policy allows. A granted push into a repository the index does not know
    /// yet creates it (owner and visibility from its namespace): the index allocates the
    /// name when it grants the first push. The catalog is granted for the registry in this
    /// process (which filters it per caller) and, for other registries, to administrators
    /// only: those list every repository they hold.
    fn decide(
        &self,
        service: &str,
        identity: &Identity,
        scopes: &[Scope],
    ) -> Vec<crate::auth::scope::GrantedAccess> {
        let rules = self.auth.state();
        let policy = self.policy(&rules);
        let mut granted = grant(scopes, identity, |repo, action| {
            match policy.may(identity, repo, action) {
                Ok(allowed) => allowed,
                Err(e) => {
                    tracing::error!(error = %e, "index store failed; refusing");
                    false
                }
            }
        });
        if !self.is_local(service) && !identity.admin {
            granted.retain(|g| g.resource_type != crate::auth::scope::REGISTRY);
        }
        let now = crate::index::token::unix_seconds(SystemTime::now()) as i64;
        for g in &granted {
            if g.resource_type == crate::auth::scope::REPOSITORY
                && g.actions.iter().any(|a| a == Action::Push.as_str())
            {
                let ns = crate::index::store::namespace_of(&g.name);
                let owner = self.namespaces.owner_for_new(identity, &g.name);
                match self.store.create_repository(
                    &g.name,
                    &owner,
                    self.namespaces.visibility_for(ns),
                    now,
                ) {
                    Ok((_, true)) => {
                        tracing::info!(target: "audit", event = "repository_created", repository = %g.name, owner = %owner, user = identity.display_name())
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "recording a new repository failed"),
                }
            }
        }
        granted
    }

    /// Signs the token for `identity` and answers with it (and a refresh token when asked
    /// for offline access by a signed-in caller).
    async fn answer(
        self: &Arc<Self>,
        service: &str,
        identity: &Identity,
        scopes: &[Scope],
        offline: bool,
        client_id: Option<&str>,
        keep_refresh: Option<&str>,
    ) -> Reply {
        let granted = {
            let (index, service, identity, scopes) = (
                self.clone(),
                service.to_owned(),
                identity.clone(),
                scopes.to_vec(),
            );
            match tokio::task::spawn_blocking(move || index.decide(&service, &identity, &scopes))
                .await
            {
                Ok(g) => g,
                Err(e) => {
                    tracing::error!(error = %e, "token decision failed");
                    return Reply::error(&RegistryError::internal());
                }
            }
        };
        let now = SystemTime::now();
        let token = match self
            .issuer
            .issue(identity.user.as_deref(), service, &granted, now)
        {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "signing a token failed");
                return Reply::error(&RegistryError::internal());
            }
        };
        let refresh = match (keep_refresh, offline, identity.user.as_deref()) {
            (Some(kept), _, _) => Some(kept.to_owned()),
            (None, true, Some(user)) => match self.refresh.issue(user, service, client_id, now) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::error!(error = %e, "making a refresh token failed");
                    None
                }
            },
            _ => None,
        };
        tracing::info!(
            target: "audit",
            event = "token_issued",
            user = identity.display_name(),
            scopes = granted.len(),
        );
        Reply::new(StatusCode::OK).json(&token_response(&token, &granted, refresh.as_deref()))
    }

    async fn get(
        self: &Arc<Self>,
        query: &str,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Reply {
        let q = match TokenQuery::parse(query) {
            Ok(q) => q,
            Err(e) => return oauth_error(StatusCode::BAD_REQUEST, &e),
        };
        let service = match self.service_for(q.service.as_deref()) {
            Ok(s) => s,
            Err(r) => return *r,
        };
        let authorization = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let identity = match self.auth.authenticate(authorization, peer).await {
            Ok(i) => i,
            Err(e) => return auth_error(&self.auth, e),
        };
        let scopes = self.local_scopes(q.scopes);
        self.answer(
            &service,
            &identity,
            &scopes,
            q.offline,
            q.client_id.as_deref(),
            None,
        )
        .await
    }

    async fn post(self: &Arc<Self>, mut body: BodyStream, peer: Option<IpAddr>) -> Reply {
        let mut form = Vec::new();
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(c) if form.len() + c.len() <= MAX_FORM_BYTES => form.extend_from_slice(&c),
                Ok(_) => {
                    return oauth_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &OAuthError::invalid_request("form too large"),
                    )
                }
                Err(_) => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        &OAuthError::invalid_request("body ended early"),
                    )
                }
            }
        }
        let f = match TokenForm::parse(&form) {
            Ok(f) => f,
            Err(e) => return oauth_error(StatusCode::BAD_REQUEST, &e),
        };
        let service = match self.service_for(Some(&f.service)) {
            Ok(s) => s,
            Err(r) => return *r,
        };
        let scopes = self.local_scopes(f.scopes.clone());
        match f.grant_type {
            GrantType::Password => {
                let (Some(user), Some(password)) = (&f.username, &f.password) else {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        &OAuthError::invalid_request("username and password are required"),
                    );
                };
                // The same checks (throttling, cache, audit) as a Basic header.
                let basic = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
                );
                match self.auth.authenticate(Some(&basic), peer).await {
                    Ok(identity) if !identity.is_anonymous() => {
                        self.answer(
                            &service,
                            &identity,
                            &scopes,
                            f.offline,
                            f.client_id.as_deref(),
                            None,
                        )
                        .await
                    }
                    Ok(_) => oauth_error(StatusCode::BAD_REQUEST, &OAuthError::invalid_grant()),
                    Err(e) => auth_error(&self.auth, e),
                }
            }
            GrantType::RefreshToken => {
                let Some(token) = &f.refresh_token else {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        &OAuthError::invalid_request("refresh_token is required"),
                    );
                };
                let record = match self.refresh.redeem(token, &service, SystemTime::now()) {
                    Ok(r) => r,
                    Err(_) => {
                        return oauth_error(StatusCode::BAD_REQUEST, &OAuthError::invalid_grant())
                    }
                };
                // The user must still exist; their groups and rules are today's.
                match self.auth.state().identity_of(&record.user) {
                    Some(identity) => {
                        self.answer(
                            &service,
                            &identity,
                            &scopes,
                            false,
                            f.client_id.as_deref(),
                            Some(token),
                        )
                        .await
                    }
                    None => {
                        let _ = self.refresh.revoke_user(&record.user);
                        oauth_error(StatusCode::BAD_REQUEST, &OAuthError::invalid_grant())
                    }
                }
            }
        }
    }
}

/// The JSON document describing this index's public keys (for operators wiring other
/// registries to trust it).
pub fn jwks(index: &EmbeddedIndex) -> Reply {
    let keys = crate::index::keys::jwks(std::slice::from_ref(index.issuer.key().public_key()));
    Reply::new(StatusCode::OK).json(&json!(keys))
}
