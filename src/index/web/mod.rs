//! The web UI, served by the index at `/`: server-rendered HTML pages (askama templates
//! compiled into the binary, see `views`), one small stylesheet, no JavaScript at all.
//! This module owns the routes, who the viewer is (a session cookie, see `session`), the
//! CSRF check every POST passes, and the security headers every answer carries. `pages`
//! answers the GETs, `actions` the POSTs; both go through the index policy, so a
//! repository the viewer may not pull does not exist for them anywhere in the UI (the
//! same 404 page as a missing one), and owner actions need `may_manage` (403 otherwise).
//!
//! Routes (repository names contain `/`; what follows a name comes after `/-/`, which no
//! name can contain, as in the JSON API):
//! - `GET /?q=&page=&spage=` — repositories the viewer may pull, or those matching `q`
//!   (name or description), with star counts; the viewer's stars (`spage`)
//! - `GET|POST /-/signin`, `POST /-/signout`; `GET /-/static/style.css`
//! - `GET /r/<name>?page=&mpage=&before=` — the repository: description, stars, tags,
//!   manifests, comments (newest first; `before` is a comment id, as in the API)
//! - `POST /r/<name>/-/star`, `…/-/unstar`, `…/-/comments` (`body`),
//!   `…/-/comments/<id>/delete` — any signed-in viewer who may pull (a comment is
//!   deleted by its author, the repository's managers and admins)
//! - `GET /r/<name>/-/manifests/<digest>` — a manifest: config and layers, or the
//!   platforms of an index
//! - `GET /r/<name>/-/settings?page=` — owner settings; `POST /r/<name>/-/visibility`,
//!   `…/-/description`, `…/-/collaborators`, `…/-/collaborators/remove`, `…/-/delete`,
//!   and while webhooks are on `…/-/webhooks` (`url`, `secret`, `events`),
//!   `…/-/webhooks/<id>/delete`, `…/-/webhooks/<id>/deliveries/<delivery>/redeliver`
//! - `GET|POST /r/<name>/-/tags/<tag>/delete` — confirm, then delete a tag

mod actions;
pub mod manifest;
mod pages;
pub mod session;
pub mod views;

use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{HeaderName, CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE};
use http::{HeaderMap, Method, StatusCode};
use sha2::{Digest as _, Sha256};

use crate::auth::Identity;
use crate::index::community::CommunityError;
use crate::index::endpoint::EmbeddedIndex;
use crate::index::manage::ManageError;
use crate::index::store::StoreError;
use crate::registry::Reply;
use crate::storage::BodyStream;

use session::{Session, SESSION_COOKIE};
use views::{ErrorPage, Layout};

/// The stylesheet's fixed address.
pub const STYLE_PATH: &str = "/-/static/style.css";
const STYLE: &str = include_str!("static/style.css");
/// Pages link the stylesheet with its content's hash appended, so the year-long cache
/// lifetime never serves an old stylesheet after an upgrade.
static STYLE_HREF: LazyLock<String> = LazyLock::new(|| {
    let hash = hex::encode(Sha256::digest(STYLE.as_bytes()));
    format!("{STYLE_PATH}?v={}", &hash[..16])
});

/// The policy every page is served under: only this origin's stylesheet, images and form
/// targets; no scripts, no frames, no plugins.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// Largest form body accepted (a description of 4096 characters, percent-encoded, fits
/// several times).
const MAX_FORM_BYTES: usize = 128 * 1024;

/// Whether `path` is the UI's: `/`, `/r/…` and `/-/…`. None of these can be a registry,
/// token, API, search, metrics or health path.
pub fn is_ui_path(path: &str) -> bool {
    path == "/" || path.starts_with("/r/") || path.starts_with("/-/")
}

/// Who is looking: their identity as of today's users file, and their session if signed
/// in.
pub(crate) struct Viewer {
    pub identity: Identity,
    pub session: Option<Session>,
}

impl Viewer {
    fn anonymous() -> Viewer {
        Viewer {
            identity: Identity::anonymous(),
            session: None,
        }
    }

    /// The frame of a page for this viewer.
    pub fn layout(
        &self,
        index: &EmbeddedIndex,
        query: &str,
        notice: Option<&'static str>,
    ) -> Layout {
        Layout {
            user: self.session.as_ref().map(|s| s.user.clone()),
            csrf: self
                .session
                .as_ref()
                .map(|s| s.csrf.clone())
                .unwrap_or_default(),
            query: query.to_owned(),
            notice,
            style: STYLE_HREF.as_str(),
            registry_host: index.public_host.clone(),
        }
    }
}

/// Why a page is not shown; each becomes an error page.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PageError {
    /// No such page or repository, or one the viewer may not see (indistinguishable).
    #[error("not found")]
    NotFound,
    /// No such thing within a repository the viewer sees (a comment, a webhook, a
    /// delivery): saying which is safe.
    #[error("not found: {0}")]
    NoSuch(&'static str),
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// A POST without the right CSRF token (or from another site).
    #[error("missing or wrong CSRF token")]
    Csrf,
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    #[error("form too large")]
    TooLarge,
    /// Too many of something in too short a time.
    #[error("too many requests: {message}")]
    Limited {
        message: String,
        retry_after_secs: u64,
    },
    #[error("internal: {0}")]
    Internal(String),
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        PageError::Internal(format!("index store: {e}"))
    }
}

impl From<tokio::task::JoinError> for PageError {
    fn from(e: tokio::task::JoinError) -> Self {
        PageError::Internal(format!("index task: {e}"))
    }
}

impl From<ManageError> for PageError {
    fn from(e: ManageError) -> Self {
        match e {
            ManageError::NotFound => PageError::NotFound,
            ManageError::Forbidden => PageError::Forbidden(
                "Only the namespace's owners and administrators manage this repository.",
            ),
            ManageError::DeletesDisabled => {
                PageError::Forbidden("Deleting is turned off on this registry.")
            }
            ManageError::ReadOnly => PageError::Forbidden(
                "The registry is in read-only maintenance mode: nothing can be deleted now.",
            ),
            ManageError::NoLocalRegistry => PageError::BadRequest(
                "This index holds no image content; tags are deleted on the registries.".to_owned(),
            ),
            ManageError::Invalid(message) => PageError::BadRequest(message),
            e @ (ManageError::Store(_) | ManageError::Content(_) | ManageError::Task(_)) => {
                PageError::Internal(e.to_string())
            }
        }
    }
}

impl From<CommunityError> for PageError {
    fn from(e: CommunityError) -> Self {
        match e {
            CommunityError::NoRepository => PageError::NotFound,
            CommunityError::NoComment => {
                PageError::NoSuch("There is no such comment; it may have been deleted already.")
            }
            CommunityError::Forbidden => PageError::Forbidden(
                "Only the comment's author, the repository's owners and administrators delete a \
                 comment.",
            ),
            CommunityError::Invalid(message) => PageError::BadRequest(message),
            e @ CommunityError::Limited { retry_after_secs } => PageError::Limited {
                message: e.to_string(),
                retry_after_secs,
            },
            CommunityError::Store(e) => e.into(),
        }
    }
}

pub(crate) type PageResult = Result<Reply, PageError>;

/// One request for a UI path (already percent-decoded).
pub async fn handle(
    index: &Arc<EmbeddedIndex>,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: BodyStream,
    peer: Option<IpAddr>,
) -> Reply {
    if path == STYLE_PATH {
        return stylesheet(method);
    }
    let (viewer, stale_cookie) = resolve_viewer(index, headers);
    if let Some(user) = &viewer.identity.user {
        tracing::Span::current().record("user", user.as_str());
    }
    let result = match serde_urlencoded::from_str::<Vec<(String, String)>>(query) {
        Ok(q) => route(index, &viewer, method, path, &q, headers, body, peer).await,
        Err(_) => Err(PageError::BadRequest("malformed query string".to_owned())),
    };
    let mut reply = result.unwrap_or_else(|e| error_reply(index, &viewer, e));
    if stale_cookie && !sets_cookie(&reply, SESSION_COOKIE) {
        reply = reply.header(SET_COOKIE, session::clear_cookie(SESSION_COOKIE));
    }
    secure(reply, "no-store")
}

/// The viewer of a request, and whether its session cookie is stale (expired, unknown, or
/// its user gone) and should be cleared.
fn resolve_viewer(index: &EmbeddedIndex, headers: &HeaderMap) -> (Viewer, bool) {
    let Some(id) = session::cookie(headers, SESSION_COOKIE) else {
        return (Viewer::anonymous(), false);
    };
    let Some(session) = index.web_sessions.lookup(id) else {
        return (Viewer::anonymous(), true);
    };
    match index.auth.state().identity_of(&session.user) {
        Some(identity) => (
            Viewer {
                identity,
                session: Some(session),
            },
            false,
        ),
        None => {
            // Removed from the users file: signed out now.
            index.web_sessions.remove(&session);
            tracing::info!(target: "audit", event = "web_session_ended", user = %session.user, reason = "user removed");
            (Viewer::anonymous(), true)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn route(
    index: &Arc<EmbeddedIndex>,
    viewer: &Viewer,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
    body: BodyStream,
    peer: Option<IpAddr>,
) -> PageResult {
    let get = *method == Method::GET || *method == Method::HEAD;
    let post = *method == Method::POST;
    match path {
        "/" if get => return pages::home(index, viewer, query).await,
        "/" => return Err(PageError::MethodNotAllowed("GET")),
        "/-/signin" if get => return pages::signin_form(index, viewer, headers),
        "/-/signin" if post => {
            let form = read_form(headers, body).await?;
            return actions::signin(index, viewer, headers, &form, peer).await;
        }
        "/-/signin" => return Err(PageError::MethodNotAllowed("GET, POST")),
        "/-/signout" if post => {
            let form = read_form(headers, body).await?;
            let session = check_csrf(viewer, headers, &form)?;
            return Ok(actions::signout(index, session));
        }
        "/-/signout" => return Err(PageError::MethodNotAllowed("POST")),
        _ => {}
    }
    let Some(rest) = path.strip_prefix("/r/") else {
        return Err(PageError::NotFound);
    };
    let (name, sub) = match rest.split_once("/-/") {
        Some((name, sub)) => (name, Some(sub)),
        None => (rest, None),
    };
    let Ok(name) = crate::registry::names::RepoName::parse(name) else {
        return Err(PageError::NotFound);
    };
    let name = name.to_string();
    // GET pages.
    if get {
        return match sub {
            None => pages::repository(index, viewer, &name, query).await,
            Some("settings") => pages::settings(index, viewer, &name, query).await,
            Some(sub) => {
                if let Some(digest) = sub.strip_prefix("manifests/") {
                    pages::manifest(index, viewer, &name, digest).await
                } else if let Some(tag) = tag_delete_path(sub) {
                    pages::delete_tag_confirm(index, viewer, &name, tag).await
                } else {
                    Err(PageError::NotFound)
                }
            }
        };
    }
    if !post {
        return Err(match sub {
            None | Some("settings") => PageError::MethodNotAllowed("GET"),
            Some(s) if s.starts_with("manifests/") => PageError::MethodNotAllowed("GET"),
            Some(s) if tag_delete_path(s).is_some() => PageError::MethodNotAllowed("GET, POST"),
            Some(_) => PageError::MethodNotAllowed("POST"),
        });
    }
    // POST actions: every one needs the session's CSRF token.
    let Some(sub) = sub else {
        return Err(PageError::MethodNotAllowed("GET"));
    };
    let form = read_form(headers, body).await?;
    check_csrf(viewer, headers, &form)?;
    match sub {
        "visibility" => actions::visibility(index, viewer, &name, &form).await,
        "description" => actions::description(index, viewer, &name, &form).await,
        "collaborators" => actions::add_collaborator(index, viewer, &name, &form).await,
        "collaborators/remove" => actions::remove_collaborator(index, viewer, &name, &form).await,
        "delete" => actions::delete_repository(index, viewer, &name, &form).await,
        "star" => actions::star(index, viewer, &name, true).await,
        "unstar" => actions::star(index, viewer, &name, false).await,
        "comments" => actions::post_comment(index, viewer, &name, &form).await,
        "webhooks" => actions::add_webhook(index, viewer, &name, &form).await,
        sub => {
            if let Some(tag) = tag_delete_path(sub) {
                actions::delete_tag(index, viewer, &name, tag).await
            } else if let Some(id) = id_path(sub, "comments/", "/delete") {
                actions::delete_comment(index, viewer, &name, id).await
            } else if let Some(id) = id_path(sub, "webhooks/", "/delete") {
                actions::remove_webhook(index, viewer, &name, id).await
            } else if let Some((id, delivery)) = redeliver_path(sub) {
                actions::redeliver(index, viewer, &name, id, delivery).await
            } else {
                Err(PageError::NotFound)
            }
        }
    }
}

/// The id of a `<prefix><id><suffix>` sub-path (`comments/7/delete`); ids are positive.
fn id_path(sub: &str, prefix: &str, suffix: &str) -> Option<i64> {
    sub.strip_prefix(prefix)?
        .strip_suffix(suffix)?
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
}

/// The hook id and delivery id of a `webhooks/<id>/deliveries/<delivery>/redeliver`
/// sub-path.
fn redeliver_path(sub: &str) -> Option<(i64, &str)> {
    let rest = sub.strip_prefix("webhooks/")?.strip_suffix("/redeliver")?;
    let (id, delivery) = rest.split_once("/deliveries/")?;
    let id = id.parse::<i64>().ok().filter(|id| *id > 0)?;
    // Delivery ids are hex; anything else names none.
    (!delivery.is_empty() && delivery.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some((id, delivery))
}

/// The tag of a `tags/<tag>/delete` sub-path.
fn tag_delete_path(sub: &str) -> Option<&str> {
    let tag = sub.strip_prefix("tags/")?.strip_suffix("/delete")?;
    crate::registry::names::Tag::parse(tag).ok().map(|_| tag)
}

/// A submitted form's fields.
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key` (checkboxes sharing a name), in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

async fn read_form(headers: &HeaderMap, mut body: BodyStream) -> Result<Form, PageError> {
    let form_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Err(PageError::BadRequest(
            "forms are sent as application/x-www-form-urlencoded".to_owned(),
        ));
    }
    let mut buf = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk
            .map_err(|_| PageError::BadRequest("the form ended before it was complete".into()))?;
        if buf.len() + chunk.len() > MAX_FORM_BYTES {
            return Err(PageError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(&buf)
        .map(Form)
        .map_err(|_| PageError::BadRequest("malformed form".to_owned()))
}

/// Refuses a POST another site made a browser send: with `Sec-Fetch-Site`, browsers say
/// where a request comes from; anything but this origin (or the user themselves) is
/// refused before the token is even looked at.
fn check_origin(headers: &HeaderMap) -> Result<(), PageError> {
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        None | Some("same-origin") | Some("none") => Ok(()),
        Some(_) => Err(PageError::Csrf),
    }
}

/// The POST's session, when the form carries that session's CSRF token.
fn check_csrf<'a>(
    viewer: &'a Viewer,
    headers: &HeaderMap,
    form: &Form,
) -> Result<&'a Session, PageError> {
    check_origin(headers)?;
    let session = viewer.session.as_ref().ok_or(PageError::Csrf)?;
    let presented = form.get("csrf").unwrap_or("");
    if session::tokens_match(&session.csrf, presented) {
        Ok(session)
    } else {
        Err(PageError::Csrf)
    }
}

/// Renders `page` as the answer with `status`.
pub(crate) fn html(status: StatusCode, page: &impl askama::Template) -> Reply {
    match page.render() {
        Ok(text) => Reply::new(status).bytes("text/html; charset=utf-8", Bytes::from(text)),
        Err(e) => {
            tracing::error!(error = %e, "rendering a page failed");
            Reply::new(StatusCode::INTERNAL_SERVER_ERROR).bytes(
                "text/plain; charset=utf-8",
                Bytes::from_static(b"Internal error: the page could not be rendered."),
            )
        }
    }
}

/// `303 See Other` to `location` (after a POST, so reloading does not repeat it).
pub(crate) fn redirect(location: &str) -> Reply {
    Reply::new(StatusCode::SEE_OTHER).header(http::header::LOCATION, location)
}

fn error_reply(index: &EmbeddedIndex, viewer: &Viewer, e: PageError) -> Reply {
    let (status, title, message) = match &e {
        PageError::NotFound => (
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such page or repository, or you may not see it.".to_owned(),
        ),
        PageError::NoSuch(why) => (StatusCode::NOT_FOUND, "Not found", (*why).to_owned()),
        PageError::Forbidden(why) => (StatusCode::FORBIDDEN, "Not allowed", (*why).to_owned()),
        PageError::Csrf => (
            StatusCode::FORBIDDEN,
            "Form refused",
            "The form was not sent from a page of this site, or it has expired (for example \
             after signing out). Go back, reload the page and try again."
                .to_owned(),
        ),
        PageError::BadRequest(why) => (StatusCode::BAD_REQUEST, "Bad request", why.clone()),
        PageError::MethodNotAllowed(_) => (
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
            "This page does not answer that kind of request.".to_owned(),
        ),
        PageError::TooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "Form too large",
            "The form was larger than this site accepts.".to_owned(),
        ),
        PageError::Limited { message, .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            format!("{}.", capitalized(message)),
        ),
        PageError::Internal(why) => {
            tracing::error!(error = %why, "web UI request failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The server could not complete this request; it has been logged.".to_owned(),
            )
        }
    };
    if matches!(e, PageError::Csrf) {
        tracing::warn!(target: "audit", event = "web_csrf_refused", user = viewer.identity.display_name());
    }
    let page = ErrorPage {
        layout: viewer.layout(index, "", None),
        title,
        message,
    };
    let reply = html(status, &page);
    match e {
        PageError::MethodNotAllowed(allow) => reply.header(http::header::ALLOW, allow),
        PageError::Limited {
            retry_after_secs, ..
        } => reply.header(http::header::RETRY_AFTER, retry_after_secs.to_string()),
        _ => reply,
    }
}

/// `text` with its first letter in upper case: the shared rules' messages are written to
/// follow a colon.
pub(crate) fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Whether `reply` already sets cookie `name`.
fn sets_cookie(reply: &Reply, name: &str) -> bool {
    reply
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.starts_with(name) && v[name.len()..].starts_with('='))
}

/// Adds the headers every UI answer carries.
fn secure(mut reply: Reply, cache: &'static str) -> Reply {
    let fixed: [(HeaderName, &'static str); 5] = [
        (HeaderName::from_static("content-security-policy"), CSP),
        (HeaderName::from_static("x-content-type-options"), "nosniff"),
        (HeaderName::from_static("referrer-policy"), "same-origin"),
        (HeaderName::from_static("x-frame-options"), "DENY"),
        (CACHE_CONTROL, cache),
    ];
    for (name, value) in fixed {
        reply
            .headers
            .insert(name, http::HeaderValue::from_static(value));
    }
    reply
}

fn stylesheet(method: &Method) -> Reply {
    if *method != Method::GET && *method != Method::HEAD {
        return secure(
            Reply::new(StatusCode::METHOD_NOT_ALLOWED).header(http::header::ALLOW, "GET"),
            "no-store",
        );
    }
    secure(
        Reply::new(StatusCode::OK).bytes(
            "text/css; charset=utf-8",
            Bytes::from_static(STYLE.as_bytes()),
        ),
        "public, max-age=31536000, immutable",
    )
}

/// The value of query parameter `key`.
pub(crate) fn query_value<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A 1-based page number from the query (1 when absent or not a number).
pub(crate) fn page_number(query: &[(String, String)], key: &str) -> usize {
    query_value(query, key)
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1)
}

/// The fixed notice a `?done=` after a redirect stands for (never text from the URL).
pub(crate) fn notice(query: &[(String, String)]) -> Option<&'static str> {
    Some(match query_value(query, "done")? {
        "visibility" => "Visibility saved.",
        "description" => "Description saved.",
        "collaborator-added" => "Collaborator saved.",
        "collaborator-removed" => "Collaborator removed.",
        "tag-deleted" => "Tag deleted.",
        "repository-deleted" => "Repository deleted.",
        "starred" => "Starred.",
        "unstarred" => "Star removed.",
        "comment-posted" => "Comment posted.",
        "comment-deleted" => "Comment deleted.",
        "webhook-added" => "Webhook added.",
        "webhook-removed" => "Webhook removed.",
        "redelivered" => "The delivery will be sent again shortly.",
        "signed-out" => "You are signed out.",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ui_paths_never_shadow_other_roles() {
        for p in ["/", "/r/alice/app", "/-/signin", "/-/static/style.css"] {
            assert!(is_ui_path(p), "{p}");
        }
        for p in [
            "/v2/",
            "/v2/alice/app/manifests/v1",
            "/token",
            "/api/v1/repositories",
            "/v1/search",
            "/metrics",
            "/healthz",
            "/readyz",
            "/favicon.ico",
            "/r",
        ] {
            assert!(!is_ui_path(p), "{p}");
        }
    }

    #[test]
    fn tag_delete_paths() {
        assert_eq!(tag_delete_path("tags/v1.0/delete"), Some("v1.0"));
        assert_eq!(tag_delete_path("tags/../delete"), None);
        assert_eq!(tag_delete_path("tags//delete"), None);
        assert_eq!(tag_delete_path("tags/v1"), None);
    }

    #[test]
    fn community_and_webhook_paths() {
        assert_eq!(
            id_path("comments/7/delete", "comments/", "/delete"),
            Some(7)
        );
        assert_eq!(id_path("comments/0/delete", "comments/", "/delete"), None);
        assert_eq!(id_path("comments/-1/delete", "comments/", "/delete"), None);
        assert_eq!(id_path("comments/x/delete", "comments/", "/delete"), None);
        assert_eq!(
            id_path("webhooks/3/delete", "webhooks/", "/delete"),
            Some(3)
        );
        assert_eq!(id_path("webhooks/3", "webhooks/", "/delete"), None);
        assert_eq!(
            redeliver_path("webhooks/3/deliveries/0af9/redeliver"),
            Some((3, "0af9"))
        );
        for bad in [
            "webhooks/3/deliveries//redeliver",
            "webhooks/3/deliveries/../redeliver",
            "webhooks/x/deliveries/0af9/redeliver",
            "webhooks/3/deliveries/0af9",
        ] {
            assert_eq!(redeliver_path(bad), None, "{bad}");
        }
        assert_eq!(capitalized("the comment is empty"), "The comment is empty");
        assert_eq!(capitalized(""), "");
    }

    #[test]
    fn notices_are_fixed_text() {
        let q = |v: &str| vec![("done".to_owned(), v.to_owned())];
        assert_eq!(notice(&q("tag-deleted")), Some("Tag deleted."));
        assert_eq!(notice(&q("<script>")), None);
        assert_eq!(notice(&[]), None);
    }

    #[test]
    fn pages_carry_the_security_headers() {
        let r = secure(Reply::new(StatusCode::OK), "no-store");
        let h = |n: &str| r.headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(h("content-security-policy").contains("default-src 'none'"));
        assert!(h("content-security-policy").contains("frame-ancestors 'none'"));
        assert_eq!(h("x-content-type-options"), "nosniff");
        assert_eq!(h("referrer-policy"), "same-origin");
        assert_eq!(h("cache-control"), "no-store");
        let css = stylesheet(&Method::GET);
        assert!(css
            .headers
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("max-age=31536000")));
        assert!(STYLE_HREF.starts_with("/-/static/style.css?v="));
    }
}
