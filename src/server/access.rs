//! The bridge from authentication to the registry: turns the request's `Authorization`
//! header into an identity (via `auth::Authenticator`) and that identity into the
//! `AccessPolicy` the registry consults. Authentication failures become the spec's 401 or
//! 429 answers here, before any handler runs.

use std::net::IpAddr;
use std::sync::Arc;

use http::StatusCode;

use crate::auth::{Action, AuthError, Authenticator, Identity};
use crate::registry::errors::{Code, RegistryError};
use crate::registry::{AccessPolicy, OpenAccess};

/// How the server authenticates: not at all, or with the authenticator.
#[derive(Clone)]
pub enum Gate {
    Open { deletes_enabled: bool },
    Basic(Arc<Authenticator>),
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
    fn challenge(&self) -> Option<String> {
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
    /// Authenticates a request. `Ok` carries the caller's name for logs (`None` when
    /// authentication is off) and its access policy.
    pub async fn admit(
        &self,
        authorization: Option<&str>,
        peer: Option<IpAddr>,
    ) -> Result<(Option<String>, Arc<dyn AccessPolicy>), RegistryError> {
        match self {
            Gate::Open { deletes_enabled } => Ok((
                None,
                Arc::new(OpenAccess {
                    deletes_enabled: *deletes_enabled,
                }),
            )),
            Gate::Basic(auth) => match auth.authenticate(authorization, peer).await {
                Ok(identity) => Ok((
                    Some(identity.display_name().to_owned()),
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
