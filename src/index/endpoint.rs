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
use futures_util::StreamExt;
use http::{HeaderMap, Method, StatusCode};
use serde_json::json;

use crate::auth::scope::Scope;
use crate::auth::{AuthError, Authenticator, Identity};
use crate::index::token::{
    grant, token_response, GrantType, MemoryRefreshStore, OAuthError, RefreshTokens, TokenForm,
    TokenIssuer, TokenQuery,
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
    pub refresh: RefreshTokens<MemoryRefreshStore>,
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
    pub async fn handle(
        &self,
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

    /// Signs the token for `identity` and answers with it (and a refresh token when asked
    /// for offline access by a signed-in caller).
    fn answer(
        &self,
        service: &str,
        identity: &Identity,
        scopes: &[Scope],
        offline: bool,
        client_id: Option<&str>,
        keep_refresh: Option<&str>,
    ) -> Reply {
        let granted = grant(scopes, identity, |repo, action| {
            self.auth.allowed(identity, repo, action)
        });
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

    async fn get(&self, query: &str, headers: &HeaderMap, peer: Option<IpAddr>) -> Reply {
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
    }

    async fn post(&self, mut body: BodyStream, peer: Option<IpAddr>) -> Reply {
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
                    Ok(identity) if !identity.is_anonymous() => self.answer(
                        &service,
                        &identity,
                        &scopes,
                        f.offline,
                        f.client_id.as_deref(),
                        None,
                    ),
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
                    Some(identity) => self.answer(
                        &service,
                        &identity,
                        &scopes,
                        false,
                        f.client_id.as_deref(),
                        Some(token),
                    ),
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
