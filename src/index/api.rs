//! The index API, JSON under `/api/v1/`, and the search endpoint `docker search` and
//! `podman search` read (`/v1/search`). Callers authenticate like at the registry: Basic
//! credentials of the users file, or a Bearer token from this index; without either they
//! are anonymous and see public repositories only. Everything answered goes through the
//! index policy: a repository the caller may not pull does not exist for them (404, never
//! 403), so private names never leak.
//!
//! Routes (repository names contain `/`, so sub-resources follow a `/-/` separator, which
//! no repository name can contain):
//! - `GET /api/v1/repositories?q=&page=&per_page=` — list or search what the caller can pull
//! - `GET|PATCH|DELETE /api/v1/repositories/<name>` — details (tags with digests, sizes,
//!   times); set `visibility`/`description`; delete the repository everywhere
//! - `GET /api/v1/repositories/<name>/-/collaborators`,
//!   `PUT|DELETE /api/v1/repositories/<name>/-/collaborators/<user>` (`{"access":"pull"|"push"}`)
//! - stars and comments (`…/-/stars`, `…/-/comments[/<id>]`, `/api/v1/user/starred`): see
//!   `api_community`
//! - `GET|POST /api/v1/repositories/<name>/-/webhooks…`, `GET /api/v1/webhooks/global…` —
//!   webhooks and their delivery history (see `api_webhooks`)
//! - `POST /api/v1/events` — registries report pushes and deletes (shared secret)
//! - `GET /v1/search?q=&n=&page=` — Docker's search format

use std::net::IpAddr;
use std::sync::Arc;

use futures_util::StreamExt;
use http::{HeaderMap, Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{AuthError, Identity};
use crate::events::EventBatch;
use crate::index::api_community;
use crate::index::endpoint::EmbeddedIndex;
use crate::index::manage::{self, ManageError};
use crate::index::store::{CollaboratorAccess, Repository, StoreError, Visibility};
use crate::index::token::rfc3339;
use crate::registry::errors::{Code, RegistryError};
use crate::registry::Reply;
use crate::storage::BodyStream;

pub const API_PREFIX: &str = "/api/v1/";
pub const SEARCH_PATH: &str = "/v1/search";
const EVENTS_PATH: &str = "/api/v1/events";
const REPOSITORIES: &str = "/api/v1/repositories";
const SUB: &str = "/-/";

/// Largest JSON body accepted by the API (an event batch is the largest).
const MAX_BODY: usize = 1024 * 1024;
pub use crate::index::manage::MAX_DESCRIPTION;
const DEFAULT_PER_PAGE: usize = 25;
const MAX_PER_PAGE: usize = 100;

/// Whether `path` belongs to the index API or search.
pub fn is_api_path(path: &str) -> bool {
    path.starts_with(API_PREFIX) || path == SEARCH_PATH
}

pub(crate) type ApiResult = Result<Reply, RegistryError>;

pub(crate) fn not_found() -> RegistryError {
    RegistryError::new(
        StatusCode::NOT_FOUND,
        Code::NameUnknown,
        "repository not known to the index",
    )
}

pub(crate) fn bad_request(message: impl Into<String>) -> RegistryError {
    RegistryError::new(StatusCode::BAD_REQUEST, Code::Unsupported, message)
}

pub(crate) fn store_failed(e: StoreError) -> RegistryError {
    tracing::error!(error = %e, "index store failed");
    RegistryError::internal()
}

pub(crate) fn joined<T>(r: Result<T, tokio::task::JoinError>) -> Result<T, RegistryError> {
    r.map_err(|e| {
        tracing::error!(error = %e, "index task failed");
        RegistryError::internal()
    })
}

/// One API request.
pub async fn handle(
    index: &Arc<EmbeddedIndex>,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: BodyStream,
    peer: Option<IpAddr>,
) -> Reply {
    let result = route(index, method, path, query, headers, body, peer).await;
    result.unwrap_or_else(|e| Reply::error(&e))
}

#[allow(clippy::too_many_arguments)]
async fn route(
    index: &Arc<EmbeddedIndex>,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: BodyStream,
    peer: Option<IpAddr>,
) -> ApiResult {
    if path == EVENTS_PATH {
        if method != Method::POST {
            return Err(method_not_allowed("POST"));
        }
        return receive_events(index, headers, body).await;
    }
    let who = caller(index, headers, peer).await?;
    let query = parse_query(query)?;
    if path == SEARCH_PATH {
        if method != Method::GET && method != Method::HEAD {
            return Err(method_not_allowed("GET"));
        }
        return docker_search(index, who, &query).await;
    }
    if path == api_community::STARRED_PATH {
        return api_community::starred(index, who, method).await;
    }
    if path == REPOSITORIES || path == "/api/v1/repositories/" {
        if method != Method::GET && method != Method::HEAD {
            return Err(method_not_allowed("GET"));
        }
        return list(index, who, &query).await;
    }
    if let Some(rest) = path.strip_prefix(crate::index::api_webhooks::GLOBAL_PREFIX) {
        return crate::index::api_webhooks::global(index, who, method, rest, &query).await;
    }
    let Some(rest) = path.strip_prefix("/api/v1/repositories/") else {
        return Err(RegistryError::unsupported(
            StatusCode::NOT_FOUND,
            "no such API endpoint",
        ));
    };
    let (name, sub) = match rest.split_once(SUB) {
        Some((name, sub)) => (name, Some(sub)),
        None => (rest, None),
    };
    let name = crate::registry::names::RepoName::parse(name)
        .map_err(RegistryError::from)?
        .to_string();
    match (sub, method) {
        (None, &Method::GET) | (None, &Method::HEAD) => details(index, who, name).await,
        (None, &Method::PATCH) => update(index, who, name, body).await,
        (None, &Method::DELETE) => delete_repository(index, who, name).await,
        (None, _) => Err(method_not_allowed("GET, PATCH, DELETE")),
        (Some(sub), m) if sub == "webhooks" || sub.starts_with("webhooks/") => {
            crate::index::api_webhooks::repository(index, who, name, sub, m, &query, body).await
        }
        (Some(sub), m) if api_community::is_sub_resource(sub) => {
            api_community::route(index, who, name, sub, m, &query, body).await
        }
        (Some("collaborators"), &Method::GET) => collaborators(index, who, name).await,
        (Some("collaborators"), _) => Err(method_not_allowed("GET")),
        (Some(sub), m) => match sub.strip_prefix("collaborators/") {
            Some(user) if !user.is_empty() && !user.contains('/') => {
                let user = user.to_owned();
                match *m {
                    Method::PUT => set_collaborator(index, who, name, user, body).await,
                    Method::DELETE => remove_collaborator(index, who, name, user).await,
                    _ => Err(method_not_allowed("PUT, DELETE")),
                }
            }
            _ => Err(RegistryError::unsupported(
                StatusCode::NOT_FOUND,
                "no such API endpoint",
            )),
        },
    }
}

pub(crate) fn method_not_allowed(allowed: &str) -> RegistryError {
    RegistryError::unsupported(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("this endpoint answers {allowed}"),
    )
    .with_header(http::header::ALLOW, allowed.to_owned())
}

/// Who is calling: Basic credentials (checked, throttled and cached like at the registry),
/// a Bearer token from this index, or nobody (anonymous).
async fn caller(
    index: &EmbeddedIndex,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Result<Identity, RegistryError> {
    let authorization = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Some(raw) = authorization.and_then(crate::auth::bearer::parse_bearer) {
        let token = index
            .api_verifier
            .verify(raw, std::time::SystemTime::now())
            .map_err(|_| unauthorized(index, "invalid or expired token"))?;
        return Ok(match token.subject.as_deref().filter(|s| !s.is_empty()) {
            Some(user) => index
                .auth
                .state()
                .identity_of(user)
                .ok_or_else(|| unauthorized(index, "the token's user no longer exists"))?,
            None => Identity::anonymous(),
        });
    }
    match index.auth.authenticate(authorization, peer).await {
        Ok(identity) => Ok(identity),
        Err(AuthError::Throttled { retry_after_secs }) => Err(RegistryError::new(
            StatusCode::TOO_MANY_REQUESTS,
            Code::TooManyRequests,
            "too many failed logins; try again later",
        )
        .with_header(http::header::RETRY_AFTER, retry_after_secs.to_string())),
        Err(e) => Err(unauthorized(index, &e.to_string())),
    }
}

pub(super) fn unauthorized(index: &EmbeddedIndex, message: &str) -> RegistryError {
    RegistryError::new(StatusCode::UNAUTHORIZED, Code::Unauthorized, message)
        .with_header(http::header::WWW_AUTHENTICATE, index.auth.challenge())
}

/// For an action that needs a signed-in caller: 401 with a challenge for anonymous ones.
pub(crate) fn require_user(index: &EmbeddedIndex, who: &Identity) -> Result<(), RegistryError> {
    if who.is_anonymous() {
        Err(unauthorized(index, "sign in first"))
    } else {
        Ok(())
    }
}

fn parse_query(query: &str) -> Result<Vec<(String, String)>, RegistryError> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .map_err(|_| bad_request("malformed query string"))
}

pub(super) fn query_value<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

pub(crate) fn number(
    query: &[(String, String)],
    key: &str,
    default: usize,
) -> Result<usize, RegistryError> {
    match query_value(query, key) {
        None | Some("") => Ok(default),
        Some(v) => v.parse::<usize>().map_err(|_| {
            RegistryError::new(
                StatusCode::BAD_REQUEST,
                Code::PaginationNumberInvalid,
                format!("`{key}` must be a non-negative number"),
            )
        }),
    }
}

pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    mut body: BodyStream,
) -> Result<T, RegistryError> {
    let mut buf = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| bad_request("request body ended before it was complete"))?;
        if buf.len() + chunk.len() > MAX_BODY {
            return Err(RegistryError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                Code::SizeInvalid,
                format!("body exceeds the limit of {MAX_BODY} bytes"),
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&buf).map_err(|e| bad_request(format!("invalid JSON: {e}")))
}

pub(crate) fn time(t: i64) -> Value {
    json!(rfc3339(u64::try_from(t).unwrap_or(0)))
}

/// A repository as the API shows it, with its star count.
pub(super) fn repository_json(r: &Repository, star_count: u64) -> Value {
    json!({
        "name": r.name,
        "namespace": r.namespace,
        "owner": r.owner,
        "visibility": r.visibility.as_str(),
        "description": r.description,
        "created_at": time(r.created_at),
        "pushed_at": r.pushed_at.map(time),
        "star_count": star_count,
    })
}

/// The repositories `who` may pull that match `q` (name or description), by name.
fn visible(
    index: &EmbeddedIndex,
    who: &Identity,
    q: Option<&str>,
) -> Result<Vec<Repository>, StoreError> {
    let rules = index.auth.state();
    let policy = index.policy(&rules);
    let mut out = Vec::new();
    for repo in index.store.repositories(q.filter(|q| !q.is_empty()))? {
        if policy.may_pull_existing(who, &repo)? {
            out.push(repo);
        }
    }
    Ok(out)
}

/// The star counts of one page of repositories.
fn page_star_counts(
    index: &EmbeddedIndex,
    items: &[Repository],
) -> Result<std::collections::HashMap<String, u64>, StoreError> {
    let names: Vec<String> = items.iter().map(|r| r.name.clone()).collect();
    index.store.star_counts(&names)
}

/// Pages `items` (1-based `page`); the page and the number of pages.
fn page<T: Clone>(items: &[T], page: usize, per_page: usize) -> (Vec<T>, usize) {
    let pages = items.len().div_ceil(per_page).max(1);
    let start = page.saturating_sub(1).saturating_mul(per_page);
    let slice = items.iter().skip(start).take(per_page).cloned().collect();
    (slice, pages)
}

async fn list(index: &Arc<EmbeddedIndex>, who: Identity, query: &[(String, String)]) -> ApiResult {
    let q = query_value(query, "q").map(str::to_owned);
    let page_no = number(query, "page", 1)?.max(1);
    let per_page = number(query, "per_page", DEFAULT_PER_PAGE)?.clamp(1, MAX_PER_PAGE);
    let index = index.clone();
    let (total, items, pages, stars) = joined(
        tokio::task::spawn_blocking(move || {
            let repos = visible(&index, &who, q.as_deref())?;
            let (items, pages) = page(&repos, page_no, per_page);
            let stars = page_star_counts(&index, &items)?;
            Ok::<_, StoreError>((repos.len(), items, pages, stars))
        })
        .await,
    )?
    .map_err(store_failed)?;
    Ok(Reply::new(StatusCode::OK).json(&json!({
        "repositories": items
            .iter()
            .map(|r| repository_json(r, stars.get(&r.name).copied().unwrap_or(0)))
            .collect::<Vec<_>>(),
        "page": page_no,
        "per_page": per_page,
        "pages": pages,
        "total": total,
    })))
}

async fn docker_search(
    index: &Arc<EmbeddedIndex>,
    who: Identity,
    query: &[(String, String)],
) -> ApiResult {
    let q = query_value(query, "q").unwrap_or("").to_owned();
    let per_page = number(query, "n", DEFAULT_PER_PAGE)?.clamp(1, MAX_PER_PAGE);
    let page_no = number(query, "page", 1)?.max(1);
    let index = index.clone();
    let needle = q.clone();
    let (total, items, pages, stars) = joined(
        tokio::task::spawn_blocking(move || {
            let repos = visible(&index, &who, Some(needle.as_str()))?;
            let (items, pages) = page(&repos, page_no, per_page);
            let stars = page_star_counts(&index, &items)?;
            Ok::<_, StoreError>((repos.len(), items, pages, stars))
        })
        .await,
    )?
    .map_err(store_failed)?;
    let results: Vec<Value> = items
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "description": r.description,
                "star_count": stars.get(&r.name).copied().unwrap_or(0),
                "is_official": false,
                "is_automated": false,
            })
        })
        .collect();
    Ok(Reply::new(StatusCode::OK).json(&json!({
        "query": q,
        "num_results": total,
        "num_pages": pages,
        "page": page_no,
        "page_size": per_page,
        "results": results,
    })))
}

async fn details(index: &Arc<EmbeddedIndex>, who: Identity, name: String) -> ApiResult {
    let index = index.clone();
    joined(
        tokio::task::spawn_blocking(move || -> ApiResult {
            let repo = manage::visible_repository(&index, &who, &name)
                .map_err(store_failed)?
                .ok_or_else(not_found)?;
            let rules = index.auth.state();
            let policy = index.policy(&rules);
            let manage = policy.may_manage(&who, &name);
            let push = policy
                .may(&who, &name, crate::auth::Action::Push)
                .map_err(store_failed)?;
            let tags = index.store.tags(&name).map_err(store_failed)?;
            let manifests = index.store.manifests(&name).map_err(store_failed)?;
            let star_count = index.store.star_count(&name).map_err(store_failed)?;
            let mut doc = repository_json(&repo, star_count);
            if let Some(user) = who.user.as_deref() {
                doc["starred"] =
                    json!(index.store.has_starred(&name, user).map_err(store_failed)?);
            }
            doc["tags"] = json!(tags
                .iter()
                .map(|t| json!({
                    "tag": t.tag,
                    "digest": t.digest,
                    "media_type": t.media_type,
                    "size": t.size,
                    "pushed_at": time(t.pushed_at),
                    "pusher": t.pusher,
                }))
                .collect::<Vec<_>>());
            doc["manifests"] = json!(manifests
                .iter()
                .map(|m| json!({
                    "digest": m.digest,
                    "media_type": m.media_type,
                    "size": m.size,
                    "pushed_at": time(m.pushed_at),
                    "pusher": m.pusher,
                    "tags": m.tags,
                }))
                .collect::<Vec<_>>());
            doc["permissions"] = json!({ "pull": true, "push": push, "manage": manage });
            if manage {
                let collaborators = index.store.collaborators(&name).map_err(store_failed)?;
                doc["collaborators"] = collaborators_json(&collaborators);
            }
            Ok(Reply::new(StatusCode::OK).json(&doc))
        })
        .await,
    )?
}

fn collaborators_json(list: &[crate::index::store::Collaborator]) -> Value {
    json!(list
        .iter()
        .map(
            |c| json!({ "user": c.user, "access": c.access.as_str(), "added_at": time(c.added_at) })
        )
        .collect::<Vec<_>>())
}

/// A management failure as the API answers it: 404 when the caller may not even see the
/// repository, 403 when they see it but do not manage it.
fn manage_failed(e: ManageError) -> RegistryError {
    match e {
        ManageError::NotFound => not_found(),
        e @ ManageError::Forbidden => {
            RegistryError::new(StatusCode::FORBIDDEN, Code::Denied, e.to_string())
        }
        e @ (ManageError::DeletesDisabled
        | ManageError::ReadOnly
        | ManageError::NoLocalRegistry) => {
            RegistryError::unsupported(StatusCode::METHOD_NOT_ALLOWED, e.to_string())
        }
        ManageError::Invalid(message) => bad_request(message),
        ManageError::Store(e) => store_failed(e),
        e @ (ManageError::Content(_) | ManageError::Task(_)) => {
            tracing::error!(error = %e, "repository management failed");
            RegistryError::internal()
        }
    }
}

/// Loads `name` for a management action by `who` (see [`manage_failed`]).
pub(crate) fn load_managed(
    index: &EmbeddedIndex,
    who: &Identity,
    name: &str,
) -> Result<Repository, RegistryError> {
    manage::managed_repository(index, who, name).map_err(manage_failed)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Update {
    visibility: Option<Visibility>,
    description: Option<String>,
}

async fn update(
    index: &Arc<EmbeddedIndex>,
    who: Identity,
    name: String,
    body: BodyStream,
) -> ApiResult {
    require_user(index, &who)?;
    let change: Update = read_json(body).await?;
    if let Some(d) = &change.description {
        manage::check_description(d).map_err(manage_failed)?;
    }
    let index = index.clone();
    joined(
        tokio::task::spawn_blocking(move || -> ApiResult {
            load_managed(&index, &who, &name)?;
            if let Some(v) = change.visibility {
                index.store.set_visibility(&name, v).map_err(store_failed)?;
                tracing::info!(target: "audit", event = "visibility_set", repository = %name, visibility = v.as_str(), user = who.display_name());
            }
            if let Some(d) = &change.description {
                index.store.set_description(&name, d).map_err(store_failed)?;
            }
            let repo = index
                .store
                .repository(&name)
                .map_err(store_failed)?
                .ok_or_else(not_found)?;
            let star_count = index.store.star_count(&name).map_err(store_failed)?;
            Ok(Reply::new(StatusCode::OK).json(&repository_json(&repo, star_count)))
        })
        .await,
    )?
}

async fn collaborators(index: &Arc<EmbeddedIndex>, who: Identity, name: String) -> ApiResult {
    require_user(index, &who)?;
    let index = index.clone();
    joined(
        tokio::task::spawn_blocking(move || -> ApiResult {
            load_managed(&index, &who, &name)?;
            let list = index.store.collaborators(&name).map_err(store_failed)?;
            Ok(Reply::new(StatusCode::OK)
                .json(&json!({ "collaborators": collaborators_json(&list) })))
        })
        .await,
    )?
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Collaboration {
    access: CollaboratorAccess,
}

async fn set_collaborator(
    index: &Arc<EmbeddedIndex>,
    who: Identity,
    name: String,
    user: String,
    body: BodyStream,
) -> ApiResult {
    require_user(index, &who)?;
    let Collaboration { access } = read_json(body).await?;
    let index = index.clone();
    joined(
        tokio::task::spawn_blocking(move || -> ApiResult {
            load_managed(&index, &who, &name)?;
            if index.auth.state().identity_of(&user).is_none() {
                return Err(bad_request(format!("no user named {user:?}")));
            }
            let now = manage::unix_now();
            index
                .store
                .set_collaborator(&name, &user, access, now)
                .map_err(store_failed)?;
            tracing::info!(target: "audit", event = "collaborator_set", repository = %name, collaborator = %user, access = access.as_str(), user = who.display_name());
            Ok(Reply::new(StatusCode::OK).json(&json!({ "user": user, "access": access.as_str() })))
        })
        .await,
    )?
}

async fn remove_collaborator(
    index: &Arc<EmbeddedIndex>,
    who: Identity,
    name: String,
    user: String,
) -> ApiResult {
    require_user(index, &who)?;
    let index = index.clone();
    joined(
        tokio::task::spawn_blocking(move || -> ApiResult {
            load_managed(&index, &who, &name)?;
            if !index
                .store
                .remove_collaborator(&name, &user)
                .map_err(store_failed)?
            {
                return Err(RegistryError::new(
                    StatusCode::NOT_FOUND,
                    Code::Unknown,
                    format!("{user:?} is not a collaborator"),
                ));
            }
            tracing::info!(target: "audit", event = "collaborator_removed", repository = %name, collaborator = %user, user = who.display_name());
            Ok(Reply::new(StatusCode::NO_CONTENT))
        })
        .await,
    )?
}

/// Deletes the repository everywhere (see [`manage::delete_repository`]); the answer
/// names the other registries that delete its content when they next report in.
async fn delete_repository(index: &Arc<EmbeddedIndex>, who: Identity, name: String) -> ApiResult {
    require_user(index, &who)?;
    let remote = manage::delete_repository(index, &who, &name)
        .await
        .map_err(manage_failed)?;
    Ok(Reply::new(StatusCode::ACCEPTED).json(&json!({
        "deleted": name,
        "pending_registries": remote,
    })))
}

/// `POST /api/v1/events` from a registry: applies each event once, then answers with the
/// repository deletions waiting for that registry.
async fn receive_events(
    index: &Arc<EmbeddedIndex>,
    headers: &HeaderMap,
    body: BodyStream,
) -> ApiResult {
    let Some(secret) = &index.event_secret else {
        return Err(RegistryError::unsupported(
            StatusCode::NOT_FOUND,
            "this index takes no events ([index] event_secret_file is not set)",
        ));
    };
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::bearer::parse_bearer);
    if !presented.is_some_and(|p| secret.matches(p)) {
        tracing::warn!(target: "audit", event = "events_rejected", reason = "bad secret");
        return Err(RegistryError::new(
            StatusCode::UNAUTHORIZED,
            Code::Unauthorized,
            "events need the shared secret",
        ));
    }
    let batch: EventBatch = read_json(body).await?;
    let service = headers
        .get(crate::events::sender::SERVICE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    for e in &batch.events {
        if !index.services.iter().any(|s| s == &e.service) {
            return Err(bad_request(format!(
                "event {} is from service {:?}, which this index does not serve",
                e.id, e.service
            )));
        }
    }
    let index = index.clone();
    joined(
        tokio::task::spawn_blocking(move || -> ApiResult {
            let mut applied = 0usize;
            for e in &batch.events {
                if crate::index::ingest::apply(&index, e).map_err(store_failed)? {
                    applied += 1;
                }
            }
            let reporting = service.or_else(|| batch.events.first().map(|e| e.service.clone()));
            let pending = match reporting {
                Some(s) if index.services.contains(&s) => {
                    index.store.pending_deletions(&s).map_err(store_failed)?
                }
                _ => Vec::new(),
            };
            Ok(Reply::new(StatusCode::OK).json(&json!({
                "applied": applied,
                "received": batch.events.len(),
                "delete_repositories": pending,
            })))
        })
        .await,
    )?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages() {
        let items: Vec<u32> = (0..55).collect();
        assert_eq!(page(&items, 1, 25), ((0..25).collect(), 3));
        assert_eq!(page(&items, 3, 25), ((50..55).collect(), 3));
        assert_eq!(page(&items, 4, 25).0, Vec::<u32>::new());
        assert_eq!(page(&Vec::<u32>::new(), 1, 25), (vec![], 1));
    }

    #[test]
    fn api_paths() {
        assert!(is_api_path("/api/v1/repositories"));
        assert!(is_api_path("/v1/search"));
        assert!(!is_api_path("/v2/"));
        assert!(!is_api_path("/v1/searchx"));
    }
}
