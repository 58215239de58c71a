//! Stars and comments in the index API, the part of `/api/v1/` where users (rather than
//! owners) say something about a repository. This module owns those routes, the rules a
//! comment's text must follow and the per-user comment rate limit; `api` routes here and
//! lends its helpers (caller authentication, errors, JSON bodies). Everything goes through
//! the same visibility rule as the rest of the API: a repository the caller may not pull
//! does not exist for them (404), nor do its stars or comments. The rules themselves
//! (comment text, rate limit, who deletes) are `community`'s, shared with the web UI.
//!
//! Routes:
//! - `PUT|DELETE /api/v1/repositories/<name>/-/stars` — star or unstar (signed in);
//!   answers `{"starred": bool, "star_count": n}`
//! - `GET /api/v1/user/starred` — the caller's starred repositories they can still pull
//! - `GET /api/v1/repositories/<name>/-/comments?before=<id>&limit=<n>` — newest first,
//!   `next` is the `before` of the following page
//! - `POST /api/v1/repositories/<name>/-/comments` (`{"body": "..."}`) — 201 with the comment
//! - `DELETE /api/v1/repositories/<name>/-/comments/<id>` — by its author, the repository's
//!   managers or an administrator

use std::sync::Arc;

use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Identity;
use crate::index::api::{
    bad_request, joined, method_not_allowed, not_found, number, query_value, read_json,
    repository_json, store_failed, time, unauthorized, ApiResult,
};
use crate::index::community::{self, CommunityError};
use crate::index::endpoint::EmbeddedIndex;
use crate::index::store::Comment;
use crate::registry::errors::{Code, RegistryError};
use crate::registry::Reply;
use crate::storage::BodyStream;

pub const STARRED_PATH: &str = "/api/v1/user/starred";
const STARS: &str = "stars";
const COMMENTS: &str = "comments";

pub use community::MAX_COMMENT_CHARS;
const DEFAULT_COMMENTS_PER_PAGE: usize = 25;
const MAX_COMMENTS_PER_PAGE: usize = 100;

/// Whether `sub` (what follows `/-/` in a repository path) is served here.
pub fn is_sub_resource(sub: &str) -> bool {
    sub == STARS || sub == COMMENTS || sub.starts_with("comments/")
}

/// A request for one of [`is_sub_resource`]'s sub-resources of repository `name`.
pub(super) async fn route(
    index: &Arc<EmbeddedIndex>,
    who: Identity,
    name: String,
    sub: &str,
    method: &Method,
    query: &[(String, String)],
    body: BodyStream,
) -> ApiResult {
    match (sub, method) {
        (STARS, &Method::PUT) => star(index, who, name, true).await,
        (STARS, &Method::DELETE) => star(index, who, name, false).await,
        (STARS, _) => Err(method_not_allowed("PUT, DELETE")),
        (COMMENTS, &Method::GET) | (COMMENTS, &Method::HEAD) => {
            list_comments(index, who, name, query).await
        }
        (COMMENTS, &Method::POST) => post_comment(index, who, name, body).await,
        (COMMENTS, _) => Err(method_not_allowed("GET, POST")),
        (sub, m) => {
            // Anything after `comments/` that is not a comment id names no comment.
            let id = sub
                .strip_prefix("comments/")
                .and_then(|id| id.parse::<i64>().ok())
                .filter(|id| *id > 0)
                .ok_or_else(comment_not_found)?;
            if *m != Method::DELETE {
                return Err(method_not_allowed("DELETE"));
            }
            delete_comment(index, who, name, id).await
        }
    }
}

fn comment_not_found() -> RegistryError {
    RegistryError::new(StatusCode::NOT_FOUND, Code::Unknown, "no such comment")
}

/// A star or comment action's failure as the API answers it.
fn community_failed(e: CommunityError) -> RegistryError {
    match e {
        CommunityError::NoRepository => not_found(),
        CommunityError::NoComment => comment_not_found(),
        e @ CommunityError::Forbidden => {
            RegistryError::new(StatusCode::FORBIDDEN, Code::Denied, e.to_string())
        }
        CommunityError::Invalid(message) => bad_request(message),
        e @ CommunityError::Limited { retry_after_secs } => RegistryError::new(
            StatusCode::TOO_MANY_REQUESTS,
            Code::TooManyRequests,
            e.to_string(),
        )
        .with_header(http::header::RETRY_AFTER, retry_after_secs.to_string()),
        CommunityError::Store(e) => store_failed(e),
    }
}

/// The signed-in caller's user name; 401 with a challenge for anonymous callers.
fn signed_in(index: &EmbeddedIndex, who: &Identity) -> Result<String, RegistryError> {
    match who.user.as_deref() {
        Some(user) => Ok(user.to_owned()),
        None => Err(unauthorized(index, "sign in first")),
    }
}

async fn star(index: &Arc<EmbeddedIndex>, who: Identity, name: String, on: bool) -> ApiResult {
    let user = signed_in(index, &who)?;
    let index = index.clone();
    joined(
        tokio::task::spawn_blocking(move || -> ApiResult {
            let star_count =
                community::star(&index, &who, &user, &name, on).map_err(community_failed)?;
            Ok(Reply::new(StatusCode::OK).json(&json!({
                "starred": on,
                "star_count": star_count,
            })))
        })
        .await,
    )?
}

/// `GET /api/v1/user/starred`: what the caller starred and may still pull. Stars on
/// repositories they lost access to stay stored (they show again if access comes back)
/// but are not shown.
pub(super) async fn starred(
    index: &Arc<EmbeddedIndex>,
    who: Identity,
    method: &Method,
) -> ApiResult {
    if method != Method::GET && method != Method::HEAD {
        return Err(method_not_allowed("GET"));
    }
    let user = signed_in(index, &who)?;
    let index = index.clone();
    joined(
        tokio::task::spawn_blocking(move || -> ApiResult {
            let repos = community::starred(&index, &who, &user).map_err(store_failed)?;
            let names: Vec<String> = repos.iter().map(|r| r.name.clone()).collect();
            let stars = index.store.star_counts(&names).map_err(store_failed)?;
            Ok(Reply::new(StatusCode::OK).json(&json!({
                "repositories": repos
                    .iter()
                    .map(|r| repository_json(r, stars.get(&r.name).copied().unwrap_or(0)))
                    .collect::<Vec<_>>(),
            })))
        })
        .await,
    )?
}

fn comment_json(c: &Comment) -> Value {
    json!({
        "id": c.id,
        "author": c.author,
        "body": c.body,
        "created_at": time(c.created_at),
    })
}

async fn list_comments(
    index: &Arc<EmbeddedIndex>,
    who: Identity,
    name: String,
    query: &[(String, String)],
) -> ApiResult {
    let before = match query_value(query, "before") {
        None | Some("") => None,
        Some(v) => Some(v.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
            RegistryError::new(
                StatusCode::BAD_REQUEST,
                Code::PaginationNumberInvalid,
                "`before` must be a comment id",
            )
        })?),
    };
    let limit = number(query, "limit", DEFAULT_COMMENTS_PER_PAGE)?.clamp(1, MAX_COMMENTS_PER_PAGE);
    let index = index.clone();
    joined(
        tokio::task::spawn_blocking(move || -> ApiResult {
            let page = community::comments(&index, &who, &name, before, limit)
                .map_err(community_failed)?;
            Ok(Reply::new(StatusCode::OK).json(&json!({
                "comments": page.comments.iter().map(comment_json).collect::<Vec<_>>(),
                "next": page.next,
            })))
        })
        .await,
    )?
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewComment {
    body: String,
}

/// The text to store for a posted comment (see [`community::check_comment`]), or the
/// 400 saying what is wrong with it.
pub fn comment_body(raw: &str) -> Result<&str, RegistryError> {
    community::check_comment(raw).map_err(community_failed)
}

async fn post_comment(
    index: &Arc<EmbeddedIndex>,
    who: Identity,
    name: String,
    body: BodyStream,
) -> ApiResult {
    let user = signed_in(index, &who)?;
    let NewComment { body } = read_json(body).await?;
    let text = comment_body(&body)?.to_owned();
    let index = index.clone();
    joined(
        tokio::task::spawn_blocking(move || -> ApiResult {
            let comment = community::post_comment(&index, &who, &user, &name, &text)
                .map_err(community_failed)?;
            Ok(Reply::new(StatusCode::CREATED).json(&comment_json(&comment)))
        })
        .await,
    )?
}

async fn delete_comment(
    index: &Arc<EmbeddedIndex>,
    who: Identity,
    name: String,
    id: i64,
) -> ApiResult {
    let user = signed_in(index, &who)?;
    let index = index.clone();
    joined(
        tokio::task::spawn_blocking(move || -> ApiResult {
            community::delete_comment(&index, &who, &user, &name, id).map_err(community_failed)?;
            Ok(Reply::new(StatusCode::NO_CONTENT))
        })
        .await,
    )?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_bodies() {
        assert_eq!(comment_body("  hello\n").unwrap(), "hello");
        assert_eq!(comment_body("a\n\tb").unwrap(), "a\n\tb");
        assert_eq!(
            comment_body("<script>alert(1)</script>").unwrap(),
            "<script>alert(1)</script>"
        );
        assert!(comment_body("").is_err());
        assert!(comment_body(" \n\t ").is_err());
        assert!(comment_body("a\rb").is_err());
        assert!(comment_body("a\u{1b}[2Jb").is_err());
        assert!(comment_body("a\0b").is_err());
        assert!(comment_body("a\u{85}b").is_err());
        // Characters, not bytes, and counted after trimming.
        let long = "é".repeat(MAX_COMMENT_CHARS);
        assert_eq!(comment_body(&format!(" {long} ")).unwrap(), long);
        assert!(comment_body(&format!("{long}x")).is_err());
        let err = comment_body("a\u{7}").unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn sub_resources() {
        for sub in ["stars", "comments", "comments/1", "comments/x"] {
            assert!(is_sub_resource(sub), "{sub}");
        }
        for sub in [
            "collaborators",
            "collaborators/bob",
            "star",
            "commentsx",
            "",
        ] {
            assert!(!is_sub_resource(sub), "{sub}");
        }
    }
}
