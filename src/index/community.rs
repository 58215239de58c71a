//! Stars and comments as people use them, shared by the JSON API (`api_community`) and
//! the web UI (`web`): the rules a comment's text must follow, the per-user comment rate
//! limit, who may delete a comment, and each action behind the visibility rule (a
//! repository the caller may not pull does not exist for them, nor do its stars or
//! comments). Every function here is synchronous (callers run it on the blocking pool)
//! and takes the caller's user name from the caller: the API and the UI each decide what
//! "signed in" means for them. [`CommunityError`] says why an action did not happen;
//! each caller turns it into its own answer (a JSON error, an HTML page).

use crate::auth::Identity;
use crate::index::endpoint::EmbeddedIndex;
use crate::index::manage;
use crate::index::store::{Comment, CommentLimit, Posted, Repository, StoreError};

/// Longest comment accepted, in characters (after trimming).
pub const MAX_COMMENT_CHARS: usize = 2000;

/// Enough for a conversation, too little for a flood.
pub const COMMENT_LIMIT: CommentLimit = CommentLimit {
    max: 10,
    window_secs: 60,
};

/// Why a star or comment action did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CommunityError {
    /// No such repository, or one the caller may not pull (the two look the same).
    #[error("repository not known to the index")]
    NoRepository,
    /// No such comment in that repository.
    #[error("no such comment")]
    NoComment,
    /// The caller may not delete that comment.
    #[error(
        "only the comment's author, the repository's owners and administrators delete a comment"
    )]
    Forbidden,
    /// The comment's text breaks a rule (the message is safe to show).
    #[error("{0}")]
    Invalid(String),
    /// The caller reached [`COMMENT_LIMIT`]; the next comment is accepted in this many
    /// seconds.
    #[error(
        "at most {} comments per {} seconds; try again later",
        COMMENT_LIMIT.max,
        COMMENT_LIMIT.window_secs
    )]
    Limited { retry_after_secs: u64 },
    #[error("index store: {0}")]
    Store(#[from] StoreError),
}

/// The text to store for a posted comment: trimmed, not empty, at most
/// [`MAX_COMMENT_CHARS`] characters, and free of control characters other than newlines
/// and tabs (a carriage return, escape sequences or NUL have no place in plain text and
/// could mislead a terminal or a careless renderer). Markup is not refused: it is text
/// here, and escaping is up to whoever renders it.
pub fn check_comment(raw: &str) -> Result<&str, CommunityError> {
    let body = raw.trim();
    if body.is_empty() {
        return Err(CommunityError::Invalid("the comment is empty".to_owned()));
    }
    if body.chars().count() > MAX_COMMENT_CHARS {
        return Err(CommunityError::Invalid(format!(
            "comment longer than {MAX_COMMENT_CHARS} characters"
        )));
    }
    if body
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(CommunityError::Invalid(
            "comment contains control characters".to_owned(),
        ));
    }
    Ok(body)
}

/// `name` if `who` may pull it, else [`CommunityError::NoRepository`].
fn visible(
    index: &EmbeddedIndex,
    who: &Identity,
    name: &str,
) -> Result<Repository, CommunityError> {
    manage::visible_repository(index, who, name)?.ok_or(CommunityError::NoRepository)
}

/// `user` (signed in as `who`) stars `name`, or takes their star off; the star count
/// after. Unstarring also needs the repository to be visible: answering with the count
/// would tell someone who lost access that it still exists.
pub fn star(
    index: &EmbeddedIndex,
    who: &Identity,
    user: &str,
    name: &str,
    on: bool,
) -> Result<u64, CommunityError> {
    visible(index, who, name)?;
    if on {
        // False only if the repository was deleted since it was loaded.
        if !index.store.star(name, user, manage::unix_now())? {
            return Err(CommunityError::NoRepository);
        }
    } else {
        index.store.unstar(name, user)?;
    }
    Ok(index.store.star_count(name)?)
}

/// The repositories `user` starred that `who` (the same user) may still pull, most
/// recently starred first. Stars on repositories they lost access to stay stored (they
/// show again if access comes back) but are not listed.
pub fn starred(
    index: &EmbeddedIndex,
    who: &Identity,
    user: &str,
) -> Result<Vec<Repository>, StoreError> {
    let rules = index.auth.state();
    let policy = index.policy(&rules);
    let mut repos = Vec::new();
    for name in index.store.starred_by(user)? {
        let Some(repo) = index.store.repository(&name)? else {
            continue;
        };
        if policy.may_pull_existing(who, &repo)? {
            repos.push(repo);
        }
    }
    Ok(repos)
}

/// A page of a repository's comments, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentPage {
    pub comments: Vec<Comment>,
    /// The `before` of the following (older) page, if there is one.
    pub next: Option<i64>,
}

/// Up to `limit` comments of `name` older than comment `before` (the newest when `None`),
/// if `who` may pull it.
pub fn comments(
    index: &EmbeddedIndex,
    who: &Identity,
    name: &str,
    before: Option<i64>,
    limit: usize,
) -> Result<CommentPage, CommunityError> {
    visible(index, who, name)?;
    // One more than asked tells whether there is a next page without a count.
    let mut comments = index.store.comments(name, before, limit as u64 + 1)?;
    let more = comments.len() > limit;
    comments.truncate(limit);
    let next = comments.last().filter(|_| more).map(|c| c.id);
    Ok(CommentPage { comments, next })
}

/// `user` (signed in as `who`) comments `text` (already through [`check_comment`]) on
/// `name`, within [`COMMENT_LIMIT`].
pub fn post_comment(
    index: &EmbeddedIndex,
    who: &Identity,
    user: &str,
    name: &str,
    text: &str,
) -> Result<Comment, CommunityError> {
    visible(index, who, name)?;
    match index
        .store
        .add_comment_within(name, user, text, manage::unix_now(), COMMENT_LIMIT)?
    {
        Posted::Added(comment) => Ok(comment),
        Posted::NoRepository => Err(CommunityError::NoRepository),
        Posted::Limited { retry_after_secs } => Err(CommunityError::Limited { retry_after_secs }),
    }
}

/// Whether `user` may delete a comment written by `author`: its author may, and so may
/// whoever manages the repository (its namespace's owners and administrators).
pub fn may_delete_comment(author: &str, user: Option<&str>, manages: bool) -> bool {
    manages || user.is_some_and(|u| u == author)
}

/// `user` (signed in as `who`) deletes comment `id` of `name`; the comment deleted. The
/// deletion is audited.
pub fn delete_comment(
    index: &EmbeddedIndex,
    who: &Identity,
    user: &str,
    name: &str,
    id: i64,
) -> Result<Comment, CommunityError> {
    visible(index, who, name)?;
    let comment = index
        .store
        .comment(name, id)?
        .ok_or(CommunityError::NoComment)?;
    let rules = index.auth.state();
    let manages = index.policy(&rules).may_manage(who, name);
    if !may_delete_comment(&comment.author, Some(user), manages) {
        return Err(CommunityError::Forbidden);
    }
    if !index.store.delete_comment(name, id)? {
        // Deleted by someone else in between.
        return Err(CommunityError::NoComment);
    }
    tracing::info!(target: "audit", event = "comment_deleted", repository = %name, comment = id, author = comment.author.as_str(), user = who.display_name());
    Ok(comment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_texts() {
        assert_eq!(check_comment("  hello\n").unwrap(), "hello");
        assert!(matches!(
            check_comment(" \n "),
            Err(CommunityError::Invalid(m)) if m == "the comment is empty"
        ));
        assert!(matches!(
            check_comment("a\rb"),
            Err(CommunityError::Invalid(m)) if m.contains("control characters")
        ));
        let long = "x".repeat(MAX_COMMENT_CHARS + 1);
        assert!(matches!(
            check_comment(&long),
            Err(CommunityError::Invalid(m)) if m == "comment longer than 2000 characters"
        ));
    }

    #[test]
    fn who_deletes_comments() {
        assert!(may_delete_comment("bob", Some("bob"), false));
        assert!(may_delete_comment("bob", Some("ann"), true));
        assert!(!may_delete_comment("bob", Some("ann"), false));
        assert!(!may_delete_comment("bob", None, false));
    }

    #[test]
    fn the_limit_says_itself() {
        assert_eq!(
            CommunityError::Limited {
                retry_after_secs: 5
            }
            .to_string(),
            "at most 10 comments per 60 seconds; try again later"
        );
    }
}
