//! The bridge from authentication to the registry: turns the request's `Authorization`
//! header into an identity (via `auth::Authenticator`) and that identity into the
//! `AccessPolicy` the registry consults. Authentication failures become the spec's 401 or
//! 429 answers here, before any handler runs.

use std::net::IpAddr;
use std::sync::Arc;

use http::StatusCode;

use crate::auth::bearer::{self, TokenVerifier, VerifiedToken};
use crate::auth::{Action, AuthError, Authenticator, Identity};
use crate::index::endpoint::EmbeddedIndex;
use crate::registry::errors::{Code, RegistryError};
use crate::registry::{AccessPolicy, OpenAccess};

/// Who a request comes from, as far as authentication tells.
pub struct Caller {
    /// The signed-in user; `None` for an anonymous caller.
    pub user: Option<String>,
}

impl Caller {
    /// The name for access logs.
    pub fn log_name(&self) -> &str {
        self.user.as_deref().unwrap_or("anonymous")
    }
}

/// How the server authenticates: not at all, or with the authenticator.
#[derive(Clone)]
pub enum Gate {
    Open { deletes_enabled: bool },
    Basic(Arc<Authenticator>),
    Token(Arc<TokenGate>),
}

/// Token mode: tokens are verified offline; the embedded index (if any) issues them.
pub struct TokenGate {
    pub verifier: TokenVerifier,
    pub realm: String,
    pub service: String,
    pub index: Option<Arc<EmbeddedIndex>>,
}

impl TokenGate {
    fn challenge(&self, scope: Option<&str>, error: Option<&str>) -> String {
        bearer::challenge(&self.realm, &self.service, scope, error)
    }
}

/// A caller under token authentication: what its token grants, nothing more.
struct TokenAccess {
    gate: Arc<TokenGate>,
    token: Option<VerifiedToken>,
}

impl AccessPolicy for TokenAccess {
    fn allowed(&self, repository: &str, action: Action) -> bool {
        self.token
            .as_ref()
            .is_some_and(|t| t.allows(repository, action))
    }
    fn challenge(&self, need: Option<(&str, Action)>) -> Option<String> {
        // `GET /v2/` (no scope needed) with any valid token: signed in, no challenge. This
        // is how clients check a login.
        if need.is_none() && self.token.is_some() {
            return None;
        }
        // Docker asks for pull and push together when it pushes.
        let scope = need.map(|(repo, action)| match action {
            Action::Push => bearer::scope_for(repo, &[Action::Pull, Action::Push]),
            other => bearer::scope_for(repo, &[other]),
        });
        let error = match (&self.token, &scope) {
            (Some(_), Some(_)) => Some(bearer::INSUFFICIENT_SCOPE),
            _ => None,
        };
        Some(self.gate.challenge(scope.as_deref(), error))
    }
    fn catalog_challenge(&self) -> Option<String> {
        if self.token.as_ref().is_some_and(|t| t.allows_catalog()) {
            return None;
        }
        let error = self.token.as_ref().map(|_| bearer::INSUFFICIENT_SCOPE);
        Some(self.gate.challenge(Some("registry:catalog:*"), error))
    }
    fn lists(&self, repository: &str) -> bool {
        let Some(token) = self.token.as_ref().filter(|t| t.allows_catalog()) else {
            return false;
        };
        match &self.gate.index {
            // The embedded index's rules are at hand: show what the token's subject may
            // pull, as in Basic mode.
            Some(index) => {
                let state = index.auth.state();
                let identity = match token.subject.as_deref().filter(|s| !s.is_empty()) {
                    Some(user) => match state.identity_of(user) {
                        Some(i) => i,
                        None => return false,
                    },
                    None => Identity::anonymous(),
                };
                // Private repositories stay invisible to those who cannot pull them.
                index
                    .policy(&state)
                    .may(&identity, repository, Action::Pull)
                    .unwrap_or_else(|e| {
                        tracing::error!(error = %e, "index store failed; hiding the repository");
                        false
                    })
            }
            // A remote index grants the catalog to administrators only: list everything.
            None => true,
        }
    }
    fn deletes_enabled(&self) -> bool {
        // The index decides: it grants `delete` only where deletes are allowed.
        true
    }
}

/// A signed-in (or anonymous) caller under the current users and rules. Rules are read at
/// each decision, so a reload applies to requests already past authentication too.
struct IdentityAccess {
    auth: Arc<Authenticator>,
    identity: Identity,
}

impl AccessPolicy for IdentityAccess {
    fn allowed(&self, repository: &str, action: Action) -> bool {
        self.auth.allowed(&self.identity, repository, action)
    }
    fn challenge(&self, _need: Option<(&str, Action)>) -> Option<String> {
        self.identity.is_anonymous().then(|| self.auth.challenge())
    }
    fn deletes_enabled(&self) -> bool {
        self.auth.state().deletes_allowed()
    }
    fn is_admin(&self) -> bool {
        self.identity.admin && !self.identity.is_anonymous()
    }
}

impl Gate {
    /// The embedded token service, when this process runs one.
    pub fn index(&self) -> Option<&Arc<EmbeddedIndex>> {
        match self {
            Gate::Token(g) => g.index.as_ref(),
            _ => None,
        }
    }

    /// Authenticates a request. `Ok` carries the caller (`None` when authentication is
    /// off) and its access policy.
    pub async fn admit(
        &self,
        authorization: Option<&str>,
        peer: Option<IpAddr>,
    ) -> Result<(Option<Caller>, Arc<dyn AccessPolicy>), RegistryError> {
        match self {
            Gate::Open { deletes_enabled } => Ok((
                None,
                Arc::new(OpenAccess {
                    deletes_enabled: *deletes_enabled,
                }),
            )),
            Gate::Token(gate) => {
                let token = match authorization.and_then(bearer::parse_bearer) {
                    // No token (or Basic credentials): the caller is asked to get one.
                    None => None,
                    Some(raw) => match gate.verifier.verify(raw, std::time::SystemTime::now()) {
                        Ok(t) => Some(t),
                        Err(e) => {
                            tracing::info!(target: "audit", event = "token_rejected", reason = %e);
                            return Err(RegistryError::new(
                                StatusCode::UNAUTHORIZED,
                                Code::Unauthorized,
                                "invalid or expired token",
                            )
                            .with_header(
                                http::header::WWW_AUTHENTICATE,
                                gate.challenge(None, Some(bearer::INVALID_TOKEN)),
                            ));
                        }
                    },
                };
                let caller = token.as_ref().map(|t| Caller {
                    user: t.subject.clone().filter(|s| !s.is_empty()),
                });
                Ok((
                    caller,
                    Arc::new(TokenAccess {
                        gate: gate.clone(),
                        token,
                    }),
                ))
            }
            Gate::Basic(auth) => match auth.authenticate(authorization, peer).await {
                Ok(identity) => Ok((
                    Some(Caller {
                        user: identity.user.clone().filter(|_| !identity.is_anonymous()),
                    }),
                    Arc::new(IdentityAccess {
                        auth: auth.clone(),
                        identity,
                    }),
                )),
                Err(AuthError::Throttled { retry_after_secs }) => Err(RegistryError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    Code::TooManyRequests,
                    "too many failed logins; try again later",
                )
                .with_header(http::header::RETRY_AFTER, retry_after_secs.to_string())),
                Err(e) => Err(RegistryError::new(
                    StatusCode::UNAUTHORIZED,
                    Code::Unauthorized,
                    e.to_string(),
                )
                .with_header(http::header::WWW_AUTHENTICATE, auth.challenge())),
            },
        }
    }
}
