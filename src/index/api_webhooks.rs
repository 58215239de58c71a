//! The webhook part of the index API: repository owners (and admins) register, list and
//! remove their repository's hooks, read each hook's delivery history and redeliver a
//! delivery; admins read the global hooks and their deliveries. `api` routes here; the
//! access rules are the other management actions': a repository the caller may not see
//! is 404, one they see but do not manage is 403. Secrets are write-only: no answer ever
//! contains one. While `[index.webhooks] enabled = false`, every route answers 404 saying
//! so. The registration rules, the hook limit and the audited changes are
//! `webhooks::owners`', shared with the web UI.
//!
//! Routes (`<name>` is the repository, `<id>` a hook id, `<delivery>` a delivery id):
//! - `GET /api/v1/repositories/<name>/-/webhooks` — the hooks
//! - `POST /api/v1/repositories/<name>/-/webhooks` — `{"url", "secret", "events"}`
//!   (`events` defaults to `["push"]`; `https://` unless `allow_http`)
//! - `GET|DELETE /api/v1/repositories/<name>/-/webhooks/<id>`
//! - `GET /api/v1/repositories/<name>/-/webhooks/<id>/deliveries?limit=` — newest first
//! - `POST /api/v1/repositories/<name>/-/webhooks/<id>/deliveries/<delivery>/redeliver`
//! - `GET /api/v1/webhooks/global` and `GET /api/v1/webhooks/global/deliveries?limit=`,
//!   `POST /api/v1/webhooks/global/deliveries/<delivery>/redeliver` — admins only

use std::sync::Arc;

use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Identity;
use crate::index::api::{
    bad_request, joined, load_managed, method_not_allowed, number, read_json, require_user,
    store_failed, time, ApiResult,
};
use crate::index::endpoint::EmbeddedIndex;
use crate::index::store::{Delivery, DeliveryStatus, HookRef, Webhook, WebhookEvent};
use crate::index::webhooks::owners::{self, RegisterError};
use crate::index::webhooks::Webhooks;
use crate::registry::errors::{Code, RegistryError};
use crate::storage::BodyStream;

/// The global hooks' routes live under this prefix.
pub const GLOBAL_PREFIX: &str = "/api/v1/webhooks/";
pub use owners::MAX_HOOKS_PER_REPOSITORY;
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

fn no_such_endpoint() -> RegistryError {
    RegistryError::unsupported(StatusCode::NOT_FOUND, "no such API endpoint")
}

/// The webhooks, or the 404 saying they are off.
fn enabled(index: &EmbeddedIndex) -> Result<Arc<Webhooks>, RegistryError> {
    index.webhooks.clone().ok_or_else(|| {
        RegistryError::unsupported(
            StatusCode::NOT_FOUND,
            "webhooks are disabled on this index ([index.webhooks] enabled = false)",
        )
    })
}

fn hook_not_found() -> RegistryError {
    RegistryError::new(StatusCode::NOT_FOUND, Code::Unknown, "no such webhook")
}

fn delivery_not_found() -> RegistryError {
    RegistryError::new(StatusCode::NOT_FOUND, Code::Unknown, "no such delivery")
}

fn webhook_json(hook: &Webhook) -> Value {
    json!({
        "id": hook.id,
        "url": hook.url,
        "events": hook.events.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
        "active": hook.active,
        "created_by": hook.created_by,
        "created_at": time(hook.created_at),
    })
}

fn delivery_json(d: &Delivery) -> Value {
    let mut doc = json!({
        "id": d.id,
        "event": d.event.as_str(),
        "repository": d.repository,
        "status": d.status.as_str(),
        "attempts": d.attempts,
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "created_at": time(d.created_at),
        "delivered_at": d.delivered_at.map(time),
        "next_attempt_at": (d.status == DeliveryStatus::Pending).then(|| time(d.next_attempt_at)),
    });
    match &d.hook {
        HookRef::Repository(id) => doc["hook_id"] = json!(id),
        HookRef::Global(name) => doc["hook"] = json!(name),
    }
    doc
}

fn limit(query: &[(String, String)]) -> Result<usize, RegistryError> {
    Ok(number(query, "limit", DEFAULT_LIMIT)?.clamp(1, MAX_LIMIT))
}

/// `/api/v1/repositories/<name>/-/<sub>` where `sub` starts with `webhooks`.
pub async fn repository(
    index: &Arc<EmbeddedIndex>,
    who: Identity,
    name: String,
    sub: &str,
    method: &Method,
    query: &[(String, String)],
    body: BodyStream,
) -> ApiResult {
    let hooks = enabled(index)?;
    require_user(index, &who)?;
    let parts: Vec<&str> = sub.split('/').collect();
    match parts.as_slice() {
        ["webhooks"] | ["webhooks", ""] => match *method {
            Method::GET | Method::HEAD => list(index, who, name).await,
            Method::POST => create(index, &hooks, who, name, body).await,
            _ => Err(method_not_allowed("GET, POST")),
        },
        ["webhooks", id] => {
            let id = hook_id(id)?;
            match *method {
                Method::GET | Method::HEAD => show(index, who, name, id).await,
                Method::DELETE => remove(index, who, name, id).await,
                _ => Err(method_not_allowed("GET, DELETE")),
            }
        }
        ["webhooks", id, "deliveries"] => {
            let id = hook_id(id)?;
            if *method != Method::GET && *method != Method::HEAD {
                return Err(method_not_allowed("GET"));
            }
            deliveries(index, who, name, id, limit(query)?).await
        }
        ["webhooks", id, "deliveries", delivery, "redeliver"] => {
            let id = hook_id(id)?;
            if *method != Method::POST {
                return Err(method_not_allowed("POST"));
            }
            let delivery = (*delivery).to_owned();
            let index2 = index.clone();
            let (who2, name2) = (who.clone(), name.clone());
            // The hook must be this repository's, and the caller its manager.
            joined(
                tokio::task::spawn_blocking(move || -> Result<(), RegistryError> {
                    load_managed(&index2, &who2, &name2)?;
                    index2
                        .store
                        .webhook(&name2, id)
                        .map_err(store_failed)?
                        .map(|_| ())
                        .ok_or_else(hook_not_found)
                })
                .await,
            )??;
            redeliver(index, &hooks, &who, HookRef::Repository(id), delivery).await
        }
        _ => Err(no_such_endpoint()),
    }
}

fn hook_id(text: &str) -> Result<i64, RegistryError> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(hook_not_found)
}

async fn list(index: &Arc<EmbeddedIndex>, who: Identity, name: String) -> ApiResult {
    let index = index.clone();
    joined(
        tokio::task::spawn_blocking(move || -> ApiResult {
            load_managed(&index, &who, &name)?;
            let hooks = index.store.webhooks(&name).map_err(store_failed)?;
            Ok(crate::registry::Reply::new(StatusCode::OK).json(&json!({
                "webhooks": hooks.iter().map(webhook_json).collect::<Vec<_>>(),
            })))
        })
        .await,
    )?
}

async fn show(index: &Arc<EmbeddedIndex>, who: Identity, name: String, id: i64) -> ApiResult {
    let index = index.clone();
    joined(
        tokio::task::spawn_blocking(move || -> ApiResult {
            load_managed(&index, &who, &name)?;
            let hook = index
                .store
                .webhook(&name, id)
                .map_err(store_failed)?
                .ok_or_else(hook_not_found)?;
            Ok(crate::registry::Reply::new(StatusCode::OK).json(&webhook_json(&hook)))
        })
        .await,
    )?
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Registration {
    url: String,
    secret: String,
    #[serde(default = "push_only")]
    events: Vec<WebhookEvent>,
}

fn push_only() -> Vec<WebhookEvent> {
    vec![WebhookEvent::Push]
}

async fn create(
    index: &Arc<EmbeddedIndex>,
    hooks: &Webhooks,
    who: Identity,
    name: String,
    body: BodyStream,
) -> ApiResult {
    let registration: Registration = read_json(body).await?;
    let url = owners::check_registration(
        hooks,
        &registration.url,
        &registration.secret,
        &registration.events,
    )
    .map_err(register_failed)?;
    let index = index.clone();
    joined(
        tokio::task::spawn_blocking(move || -> ApiResult {
            load_managed(&index, &who, &name)?;
            let hook = owners::register(
                &index,
                &who,
                &name,
                &url,
                registration.secret,
                registration.events,
            )
            .map_err(register_failed)?;
            Ok(crate::registry::Reply::new(StatusCode::CREATED).json(&webhook_json(&hook)))
        })
        .await,
    )?
}

fn register_failed(e: RegisterError) -> RegistryError {
    match e {
        RegisterError::Invalid(message) => bad_request(message),
        RegisterError::Store(e) => store_failed(e),
    }
}

async fn remove(index: &Arc<EmbeddedIndex>, who: Identity, name: String, id: i64) -> ApiResult {
    let index = index.clone();
    joined(
        tokio::task::spawn_blocking(move || -> ApiResult {
            load_managed(&index, &who, &name)?;
            if !owners::remove(&index, &who, &name, id).map_err(store_failed)? {
                return Err(hook_not_found());
            }
            Ok(crate::registry::Reply::new(StatusCode::NO_CONTENT))
        })
        .await,
    )?
}

async fn deliveries(
    index: &Arc<EmbeddedIndex>,
    who: Identity,
    name: String,
    id: i64,
    limit: usize,
) -> ApiResult {
    let index = index.clone();
    joined(
        tokio::task::spawn_blocking(move || -> ApiResult {
            load_managed(&index, &who, &name)?;
            index
                .store
                .webhook(&name, id)
                .map_err(store_failed)?
                .ok_or_else(hook_not_found)?;
            let list = index
                .store
                .deliveries(&HookRef::Repository(id), limit)
                .map_err(store_failed)?;
            Ok(crate::registry::Reply::new(StatusCode::OK).json(&json!({
                "deliveries": list.iter().map(delivery_json).collect::<Vec<_>>(),
            })))
        })
        .await,
    )?
}

/// Sends `delivery` of `hook` again (see [`owners::redeliver`]). The caller has checked
/// the caller may manage `hook`.
async fn redeliver(
    index: &Arc<EmbeddedIndex>,
    hooks: &Arc<Webhooks>,
    who: &Identity,
    hook: HookRef,
    delivery: String,
) -> ApiResult {
    let (index, hooks, who) = (index.clone(), hooks.clone(), who.clone());
    let found = joined(
        tokio::task::spawn_blocking(move || {
            owners::redeliver(&index, &hooks, &who, &hook, &delivery)
        })
        .await,
    )?
    .map_err(store_failed)?
    .ok_or_else(delivery_not_found)?;
    Ok(crate::registry::Reply::new(StatusCode::ACCEPTED).json(&delivery_json(&found)))
}

/// `/api/v1/webhooks/<rest>`: the global hooks, for admins.
pub async fn global(
    index: &Arc<EmbeddedIndex>,
    who: Identity,
    method: &Method,
    rest: &str,
    query: &[(String, String)],
) -> ApiResult {
    let hooks = enabled(index)?;
    require_user(index, &who)?;
    if !who.admin {
        return Err(RegistryError::new(
            StatusCode::FORBIDDEN,
            Code::Denied,
            "only administrators see the global webhooks",
        ));
    }
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        ["global"] => {
            if *method != Method::GET && *method != Method::HEAD {
                return Err(method_not_allowed("GET"));
            }
            let list: Vec<Value> = hooks
                .global_hooks()
                .iter()
                .map(|g| {
                    json!({
                        "name": g.name,
                        "url": g.url.as_str(),
                        "events": g.events.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
                    })
                })
                .collect();
            Ok(crate::registry::Reply::new(StatusCode::OK).json(&json!({ "webhooks": list })))
        }
        ["global", "deliveries"] => {
            if *method != Method::GET && *method != Method::HEAD {
                return Err(method_not_allowed("GET"));
            }
            let limit = limit(query)?;
            let index = index.clone();
            let list = joined(
                tokio::task::spawn_blocking(move || index.store.global_deliveries(limit)).await,
            )?
            .map_err(store_failed)?;
            Ok(crate::registry::Reply::new(StatusCode::OK).json(&json!({
                "deliveries": list.iter().map(delivery_json).collect::<Vec<_>>(),
            })))
        }
        ["global", "deliveries", delivery, "redeliver"] => {
            if *method != Method::POST {
                return Err(method_not_allowed("POST"));
            }
            let (store_index, d) = (index.clone(), (*delivery).to_owned());
            let found =
                joined(tokio::task::spawn_blocking(move || store_index.store.delivery(&d)).await)?
                    .map_err(store_failed)?;
            match found.map(|d| d.hook) {
                Some(hook @ HookRef::Global(_)) => {
                    redeliver(index, &hooks, &who, hook, (*delivery).to_owned()).await
                }
                _ => Err(delivery_not_found()),
            }
        }
        _ => Err(no_such_endpoint()),
    }
}
