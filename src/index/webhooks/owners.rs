//! What a repository's managers do with its hooks, shared by the JSON API
//! (`api_webhooks`) and the web UI (`web`): checking a registration (URL, secret,
//! events), registering a hook within the per-repository limit, removing one and sending
//! one of its deliveries again, each with its audit line. The callers check first that
//! webhooks are on and that the caller manages the repository (`manage`), and run these
//! on the blocking pool; the decisions and the audit lines live here once.

use reqwest::Url;

use super::{check_secret, config, Webhooks};
use crate::auth::Identity;
use crate::index::endpoint::EmbeddedIndex;
use crate::index::manage;
use crate::index::store::{
    Delivery, HookRef, NewWebhook, StoreError, Webhook, WebhookEvent, WebhookSecret,
};

/// Most hooks one repository may have.
pub const MAX_HOOKS_PER_REPOSITORY: usize = 20;

/// Why a hook was not registered.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The registration breaks a rule, or the repository has
    /// [`MAX_HOOKS_PER_REPOSITORY`] already (the message is safe to show and never
    /// quotes the secret).
    #[error("{0}")]
    Invalid(String),
    #[error("index store: {0}")]
    Store(#[from] StoreError),
}

/// Checks a registration: the URL as `[index.webhooks]` allows (scheme, no credentials,
/// `allowed_hosts`), the secret's length and characters, and the events (at least one,
/// each once). Returns the parsed URL.
pub fn check_registration(
    hooks: &Webhooks,
    url: &str,
    secret: &str,
    events: &[WebhookEvent],
) -> Result<Url, RegisterError> {
    let url = config::check_url(url, hooks.allow_http(), hooks.allowed_hosts())
        .map_err(|e| RegisterError::Invalid(format!("url: {e}")))?;
    check_secret(secret).map_err(RegisterError::Invalid)?;
    config::check_events(events).map_err(|e| RegisterError::Invalid(format!("events: {e}")))?;
    Ok(url)
}

/// Registers a hook on `name` for `who` (who manages it: the caller checked), with a
/// `url` from [`check_registration`].
pub fn register(
    index: &EmbeddedIndex,
    who: &Identity,
    name: &str,
    url: &Url,
    secret: String,
    events: Vec<WebhookEvent>,
) -> Result<Webhook, RegisterError> {
    let new = NewWebhook {
        repository: name.to_owned(),
        url: url.to_string(),
        secret: WebhookSecret::new(secret),
        events,
        created_by: who.display_name().to_owned(),
        created_at: manage::unix_now(),
    };
    let hook = index
        .store
        .create_webhook(&new, MAX_HOOKS_PER_REPOSITORY)?
        .ok_or_else(|| {
            RegisterError::Invalid(format!(
                "a repository has at most {MAX_HOOKS_PER_REPOSITORY} webhooks"
            ))
        })?;
    // The host only: a URL's path or query may carry a receiver's token.
    tracing::info!(target: "audit", event = "webhook_created", repository = %name, hook = hook.id, host = url.host_str().unwrap_or(""), user = who.display_name());
    Ok(hook)
}

/// Removes hook `id` of `name` (managed by `who`: the caller checked) with its delivery
/// history; false if the repository has no such hook.
pub fn remove(
    index: &EmbeddedIndex,
    who: &Identity,
    name: &str,
    id: i64,
) -> Result<bool, StoreError> {
    if !index.store.delete_webhook(name, id)? {
        return Ok(false);
    }
    tracing::info!(target: "audit", event = "webhook_deleted", repository = %name, hook = id, user = who.display_name());
    Ok(true)
}

/// Sets `delivery` of `hook` pending again, due now (same id, same body), and wakes the
/// worker; the delivery as it is now, or `None` if the hook has no such delivery. The
/// caller has checked that `who` may manage `hook`.
pub fn redeliver(
    index: &EmbeddedIndex,
    hooks: &Webhooks,
    who: &Identity,
    hook: &HookRef,
    delivery: &str,
) -> Result<Option<Delivery>, StoreError> {
    if !index.store.redeliver(hook, delivery, manage::unix_now())? {
        return Ok(None);
    }
    let Some(found) = index.store.delivery(delivery)? else {
        return Ok(None);
    };
    hooks.wake();
    tracing::info!(target: "audit", event = "webhook_redelivered", delivery = %delivery, repository = %found.repository, user = who.display_name());
    Ok(Some(found))
}
