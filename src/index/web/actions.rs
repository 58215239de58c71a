//! The UI's POST actions: signing in and out; what signed-in viewers do on a repository
//! they may pull (star it, comment, delete a comment they may delete); and what a
//! repository's managers do (visibility, description, collaborators, webhooks, deleting a
//! tag or the whole repository). The router has checked the CSRF token before any of
//! these runs (sign-in checks its own double-submit token), so every one has a session. A
//! success answers `303 See Other` to the page to show next, with a fixed `?done=` notice;
//! a refused input shows its page again with the message (the repository page for a
//! comment, the settings page otherwise). The rules are the JSON API's own (`manage`,
//! `community`, `webhooks::owners`), and so are the audit lines.

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine as _;
use http::{HeaderMap, StatusCode};

use super::pages::{self, CommentState, SettingsState};
use super::session::{self, Session, SESSION_COOKIE, SIGNIN_COOKIE};
use super::{check_origin, redirect, Form, PageError, PageResult, Viewer};
use crate::auth::AuthError;
use crate::index::community::{self, CommunityError};
use crate::index::endpoint::EmbeddedIndex;
use crate::index::manage::{self, ManageError};
use crate::index::store::{CollaboratorAccess, HookRef, Visibility, WebhookEvent};
use crate::index::webhooks::owners::{self, RegisterError};
use crate::index::webhooks::Webhooks;
use crate::registry::Reply;

/// The one message for every failed sign-in: it says nothing about which part was wrong.
const SIGNIN_FAILED: &str = "Wrong user name or password.";
const SIGNIN_THROTTLED: &str = "Too many failed sign-ins. Try again later.";

/// `POST /-/signin`: checks the double-submit token, then the password exactly as `/token`
/// and Basic auth do (throttling, verification cache, audit), and starts a session.
pub(super) async fn signin(
    index: &Arc<EmbeddedIndex>,
    viewer: &Viewer,
    headers: &HeaderMap,
    form: &Form,
    peer: Option<IpAddr>,
) -> PageResult {
    check_origin(headers)?;
    let cookie = session::cookie(headers, SIGNIN_COOKIE).unwrap_or("");
    if !session::tokens_match(cookie, form.get("csrf").unwrap_or("")) {
        return Err(PageError::Csrf);
    }
    let user = form.get("username").unwrap_or("").trim();
    let password = form.get("password").unwrap_or("");
    let failed =
        |status, message| pages::signin_page(index, viewer, headers, status, Some(message), user);
    // An empty pair would read as the anonymous caller, and a name with ':' cannot be put
    // in a Basic credential (nor is it a valid user name).
    if user.is_empty() || password.is_empty() || user.contains(':') {
        return failed(StatusCode::FORBIDDEN, SIGNIN_FAILED);
    }
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    );
    match index.auth.authenticate(Some(&basic), peer).await {
        Ok(identity) if !identity.is_anonymous() => {
            let name = identity.user.clone().unwrap_or_default();
            // Always a new session: an id from before sign-in (fixation) is never kept.
            if let Some(old) = &viewer.session {
                index.web_sessions.remove(old);
            }
            let (id, _) = index
                .web_sessions
                .create(&name)
                .map_err(|e| PageError::Internal(e.to_string()))?;
            tracing::info!(target: "audit", event = "web_signin", user = %name, peer = %peer.map(|p| p.to_string()).unwrap_or_default());
            Ok(redirect("/")
                .header(
                    http::header::SET_COOKIE,
                    session::set_cookie(SESSION_COOKIE, &id, None),
                )
                .header(
                    http::header::SET_COOKIE,
                    session::clear_cookie(SIGNIN_COOKIE),
                ))
        }
        Ok(_) => failed(StatusCode::FORBIDDEN, SIGNIN_FAILED),
        Err(AuthError::Throttled { retry_after_secs }) => {
            Ok(failed(StatusCode::TOO_MANY_REQUESTS, SIGNIN_THROTTLED)?
                .header(http::header::RETRY_AFTER, retry_after_secs.to_string()))
        }
        Err(_) => failed(StatusCode::FORBIDDEN, SIGNIN_FAILED),
    }
}

/// `POST /-/signout`.
pub(super) fn signout(index: &EmbeddedIndex, session: &Session) -> Reply {
    index.web_sessions.remove(session);
    tracing::info!(target: "audit", event = "web_signout", user = %session.user);
    redirect("/?done=signed-out").header(
        http::header::SET_COOKIE,
        session::clear_cookie(SESSION_COOKIE),
    )
}

fn settings_done(name: &str, done: &str) -> PageResult {
    Ok(redirect(&format!("/r/{name}/-/settings?done={done}")))
}

/// Shows the settings page again with `error` (status 400).
async fn refused(
    index: &Arc<EmbeddedIndex>,
    viewer: &Viewer,
    name: &str,
    state: SettingsState,
) -> PageResult {
    pages::settings_page(index, viewer, name, 1, None, StatusCode::BAD_REQUEST, state).await
}

/// Runs `f` on the blocking pool after checking that the viewer manages `name`.
async fn managed<T: Send + 'static>(
    index: &Arc<EmbeddedIndex>,
    viewer: &Viewer,
    name: &str,
    f: impl FnOnce(&EmbeddedIndex) -> Result<T, ManageError> + Send + 'static,
) -> Result<T, PageError> {
    let (index, who, name) = (index.clone(), viewer.identity.clone(), name.to_owned());
    Ok(tokio::task::spawn_blocking(move || {
        manage::managed_repository(&index, &who, &name)?;
        f(&index)
    })
    .await??)
}

/// `POST /r/<name>/-/visibility` (`visibility=private|public`).
pub(super) async fn visibility(
    index: &Arc<EmbeddedIndex>,
    viewer: &Viewer,
    name: &str,
    form: &Form,
) -> PageResult {
    let Ok(visibility) = form.get("visibility").unwrap_or("").parse::<Visibility>() else {
        return Err(PageError::BadRequest(
            "visibility is private or public".to_owned(),
        ));
    };
    let n = name.to_owned();
    managed(index, viewer, name, move |index| {
        Ok(index.store.set_visibility(&n, visibility)?)
    })
    .await?;
    tracing::info!(target: "audit", event = "visibility_set", repository = %name, visibility = visibility.as_str(), user = viewer.identity.display_name());
    settings_done(name, "visibility")
}

/// A textarea's text as stored: browsers send its line breaks as CRLF, kept as `\n` (a
/// lone `\r` is a control character descriptions and comments refuse).
fn textarea_text(raw: &str) -> String {
    raw.replace("\r\n", "\n").replace('\r', "\n")
}

/// `POST /r/<name>/-/description`.
pub(super) async fn description(
    index: &Arc<EmbeddedIndex>,
    viewer: &Viewer,
    name: &str,
    form: &Form,
) -> PageResult {
    let text = textarea_text(form.get("description").unwrap_or(""));
    if let Err(e) = manage::check_description(&text) {
        // Only a manager may see why (and the page); others get 403/404 from it.
        return refused(
            index,
            viewer,
            name,
            SettingsState {
                error: Some(e.to_string()),
                description: Some(text),
                ..SettingsState::default()
            },
        )
        .await;
    }
    let (n, d) = (name.to_owned(), text);
    managed(index, viewer, name, move |index| {
        Ok(index.store.set_description(&n, &d)?)
    })
    .await?;
    tracing::info!(target: "audit", event = "description_set", repository = %name, user = viewer.identity.display_name());
    settings_done(name, "description")
}

/// `POST /r/<name>/-/collaborators` (`user`, `access=pull|push`): adds the user, or
/// changes their access. An unknown user is refused with a message.
pub(super) async fn add_collaborator(
    index: &Arc<EmbeddedIndex>,
    viewer: &Viewer,
    name: &str,
    form: &Form,
) -> PageResult {
    let user = form.get("user").unwrap_or("").trim().to_owned();
    let Ok(access) = form
        .get("access")
        .unwrap_or("")
        .parse::<CollaboratorAccess>()
    else {
        return Err(PageError::BadRequest("access is pull or push".to_owned()));
    };
    if index.auth.state().identity_of(&user).is_none() {
        return refused(
            index,
            viewer,
            name,
            SettingsState {
                error: Some(format!("There is no user named “{user}”.")),
                collaborator: user,
                ..SettingsState::default()
            },
        )
        .await;
    }
    let (n, u) = (name.to_owned(), user.clone());
    managed(index, viewer, name, move |index| {
        Ok(index
            .store
            .set_collaborator(&n, &u, access, manage::unix_now())?)
    })
    .await?;
    tracing::info!(target: "audit", event = "collaborator_set", repository = %name, collaborator = %user, access = access.as_str(), user = viewer.identity.display_name());
    settings_done(name, "collaborator-added")
}

/// `POST /r/<name>/-/collaborators/remove` (`user`).
pub(super) async fn remove_collaborator(
    index: &Arc<EmbeddedIndex>,
    viewer: &Viewer,
    name: &str,
    form: &Form,
) -> PageResult {
    let user = form.get("user").unwrap_or("").to_owned();
    let (n, u) = (name.to_owned(), user.clone());
    let removed = managed(index, viewer, name, move |index| {
        Ok(index.store.remove_collaborator(&n, &u)?)
    })
    .await?;
    if !removed {
        return refused(
            index,
            viewer,
            name,
            SettingsState {
                error: Some(format!("“{user}” is not a collaborator.")),
                ..SettingsState::default()
            },
        )
        .await;
    }
    tracing::info!(target: "audit", event = "collaborator_removed", repository = %name, collaborator = %user, user = viewer.identity.display_name());
    settings_done(name, "collaborator-removed")
}

/// `POST /r/<name>/-/delete` (`confirm` = the repository's name): deletes it everywhere,
/// as `DELETE /api/v1/repositories/<name>` does.
pub(super) async fn delete_repository(
    index: &Arc<EmbeddedIndex>,
    viewer: &Viewer,
    name: &str,
    form: &Form,
) -> PageResult {
    if form.get("confirm").map(str::trim) != Some(name) {
        return refused(
            index,
            viewer,
            name,
            SettingsState {
                error: Some(format!(
                    "Type the repository's name, {name}, to confirm deleting it."
                )),
                ..SettingsState::default()
            },
        )
        .await;
    }
    manage::delete_repository(index, &viewer.identity, name).await?;
    Ok(redirect("/?done=repository-deleted"))
}

/// `POST /r/<name>/-/tags/<tag>/delete` (after the confirmation page).
pub(super) async fn delete_tag(
    index: &Arc<EmbeddedIndex>,
    viewer: &Viewer,
    name: &str,
    tag: &str,
) -> PageResult {
    manage::delete_tag(index, &viewer.identity, name, tag).await?;
    Ok(redirect(&format!("/r/{name}?done=tag-deleted")))
}

/// The signed-in viewer's user name. Every action here runs after the CSRF check, which
/// needs a session; without one the form is refused like a forged one.
fn user_of(viewer: &Viewer) -> Result<String, PageError> {
    match (&viewer.session, &viewer.identity.user) {
        (Some(_), Some(user)) => Ok(user.clone()),
        _ => Err(PageError::Csrf),
    }
}

/// Runs `f` with the viewer's identity and user name on the blocking pool.
async fn as_viewer<T: Send + 'static>(
    index: &Arc<EmbeddedIndex>,
    viewer: &Viewer,
    name: &str,
    f: impl FnOnce(&EmbeddedIndex, &crate::auth::Identity, &str, &str) -> T + Send + 'static,
) -> Result<T, PageError> {
    let user = user_of(viewer)?;
    let (index, who, name) = (index.clone(), viewer.identity.clone(), name.to_owned());
    Ok(tokio::task::spawn_blocking(move || f(&index, &who, &user, &name)).await?)
}

/// `POST /r/<name>/-/star` and `…/-/unstar`.
pub(super) async fn star(
    index: &Arc<EmbeddedIndex>,
    viewer: &Viewer,
    name: &str,
    on: bool,
) -> PageResult {
    as_viewer(index, viewer, name, move |index, who, user, name| {
        community::star(index, who, user, name, on)
    })
    .await??;
    let done = if on { "starred" } else { "unstarred" };
    Ok(redirect(&format!("/r/{name}?done={done}")))
}

/// Shows the repository page again with the refused comment and why (status `status`).
async fn comment_refused(
    index: &Arc<EmbeddedIndex>,
    viewer: &Viewer,
    name: &str,
    status: StatusCode,
    why: &str,
    draft: String,
) -> PageResult {
    let state = CommentState {
        error: Some(format!(
            "Your comment was not posted: {why}{}",
            if why.ends_with('.') { "" } else { "." }
        )),
        draft,
    };
    pages::repository_page(index, viewer, name, &[], status, state).await
}

/// `POST /r/<name>/-/comments` (`body`): the API's rules and rate limit; a refused comment
/// shows the repository page again with the text kept and the reason (400, or 429 with
/// `Retry-After`).
pub(super) async fn post_comment(
    index: &Arc<EmbeddedIndex>,
    viewer: &Viewer,
    name: &str,
    form: &Form,
) -> PageResult {
    let draft = textarea_text(form.get("body").unwrap_or(""));
    let text = match community::check_comment(&draft) {
        Ok(text) => text.to_owned(),
        Err(e) => {
            // Only a viewer who may pull sees why (and the page); others get 404 from it.
            return comment_refused(
                index,
                viewer,
                name,
                StatusCode::BAD_REQUEST,
                &e.to_string(),
                draft,
            )
            .await;
        }
    };
    let posted = as_viewer(index, viewer, name, move |index, who, user, name| {
        community::post_comment(index, who, user, name, &text)
    })
    .await?;
    match posted {
        Ok(comment) => Ok(redirect(&format!(
            "/r/{name}?done=comment-posted#comment-{}",
            comment.id
        ))),
        Err(e @ CommunityError::Limited { retry_after_secs }) => {
            let why = format!("{e} (in {retry_after_secs} seconds)");
            Ok(comment_refused(
                index,
                viewer,
                name,
                StatusCode::TOO_MANY_REQUESTS,
                &why,
                draft,
            )
            .await?
            .header(http::header::RETRY_AFTER, retry_after_secs.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /r/<name>/-/comments/<id>/delete`: by its author, the repository's managers and
/// admins.
pub(super) async fn delete_comment(
    index: &Arc<EmbeddedIndex>,
    viewer: &Viewer,
    name: &str,
    id: i64,
) -> PageResult {
    as_viewer(index, viewer, name, move |index, who, user, name| {
        community::delete_comment(index, who, user, name, id)
    })
    .await??;
    Ok(redirect(&format!(
        "/r/{name}?done=comment-deleted#comments-heading"
    )))
}

/// The webhooks, for a viewer who manages `name` (403/404 otherwise, checked first so the
/// answer about a repository does not depend on the registry's settings); 403 while
/// webhooks are off.
async fn managed_webhooks(
    index: &Arc<EmbeddedIndex>,
    viewer: &Viewer,
    name: &str,
) -> Result<Arc<Webhooks>, PageError> {
    managed(index, viewer, name, |index| Ok(index.webhooks.clone()))
        .await?
        .ok_or(PageError::Forbidden(
            "Webhooks are turned off on this registry; an administrator can enable them \
             ([index.webhooks] enabled = true).",
        ))
}

/// `POST /r/<name>/-/webhooks` (`url`, `secret`, `events` once per event): registers a
/// hook under the API's rules. A refused one shows the settings page again with the URL
/// and events kept (the secret is typed again: it is never sent back).
pub(super) async fn add_webhook(
    index: &Arc<EmbeddedIndex>,
    viewer: &Viewer,
    name: &str,
    form: &Form,
) -> PageResult {
    let hooks = managed_webhooks(index, viewer, name).await?;
    let url = form.get("url").unwrap_or("").trim().to_owned();
    let secret = form.get("secret").unwrap_or("").to_owned();
    // A word that names no event is no event; an empty list is refused below.
    let events: Vec<WebhookEvent> = form.all("events").filter_map(WebhookEvent::parse).collect();
    let refused_with = |why: String, url: String, events: Vec<WebhookEvent>| SettingsState {
        error: Some(format!("The webhook was not added: {why}.")),
        webhook: Some((url, events)),
        ..SettingsState::default()
    };
    let parsed = match owners::check_registration(&hooks, &url, &secret, &events) {
        Ok(parsed) => parsed,
        Err(e) => {
            return refused(
                index,
                viewer,
                name,
                refused_with(e.to_string(), url, events),
            )
            .await
        }
    };
    let (who, n, ev) = (viewer.identity.clone(), name.to_owned(), events.clone());
    let registered = managed(index, viewer, name, move |index| {
        Ok(owners::register(index, &who, &n, &parsed, secret, ev))
    })
    .await?;
    match registered {
        Ok(hook) => Ok(redirect(&format!(
            "/r/{name}/-/settings?done=webhook-added#hook-{}",
            hook.id
        ))),
        Err(RegisterError::Invalid(why)) => {
            refused(index, viewer, name, refused_with(why, url, events)).await
        }
        Err(RegisterError::Store(e)) => Err(e.into()),
    }
}

/// `POST /r/<name>/-/webhooks/<id>/delete`: removes the hook and its delivery history.
pub(super) async fn remove_webhook(
    index: &Arc<EmbeddedIndex>,
    viewer: &Viewer,
    name: &str,
    id: i64,
) -> PageResult {
    managed_webhooks(index, viewer, name).await?;
    let (who, n) = (viewer.identity.clone(), name.to_owned());
    let removed = managed(index, viewer, name, move |index| {
        Ok(owners::remove(index, &who, &n, id)?)
    })
    .await?;
    if !removed {
        return Err(PageError::NoSuch("There is no such webhook."));
    }
    Ok(redirect(&format!(
        "/r/{name}/-/settings?done=webhook-removed#webhooks-heading"
    )))
}

/// `POST /r/<name>/-/webhooks/<id>/deliveries/<delivery>/redeliver`: sends the delivery
/// again (same id, same body).
pub(super) async fn redeliver(
    index: &Arc<EmbeddedIndex>,
    viewer: &Viewer,
    name: &str,
    id: i64,
    delivery: &str,
) -> PageResult {
    let hooks = managed_webhooks(index, viewer, name).await?;
    let (who, n, d) = (
        viewer.identity.clone(),
        name.to_owned(),
        delivery.to_owned(),
    );
    let found = managed(index, viewer, name, move |index| {
        // The hook must be this repository's.
        if index.store.webhook(&n, id)?.is_none() {
            return Ok(None);
        }
        Ok(owners::redeliver(
            index,
            &hooks,
            &who,
            &HookRef::Repository(id),
            &d,
        )?)
    })
    .await?;
    if found.is_none() {
        return Err(PageError::NoSuch(
            "There is no such delivery; it may be older than the history kept.",
        ));
    }
    Ok(redirect(&format!(
        "/r/{name}/-/settings?done=redelivered#hook-{id}"
    )))
}
