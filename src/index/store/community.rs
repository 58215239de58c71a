//! Stars and comments: what signed-in users say about repositories. A star is one user's
//! mark on one repository (counted in listings and search); a comment is a short plain-text
//! message under a repository. Both belong to their repository and go with it when it is
//! deleted. Who may star, comment or delete a comment is the API's decision, not this
//! file's; here are the records, the counts and the rate-limit bookkeeping.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use super::{get_u64, to_sql_int, Store, StoreError};

/// One comment as stored: the body exactly as posted (plain text; whoever renders it
/// escapes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Comment {
    /// Increases with every comment ever posted, never reused.
    pub id: i64,
    pub repository: String,
    pub author: String,
    pub body: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// How many comments one user may post within a sliding window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommentLimit {
    pub max: u64,
    pub window_secs: u64,
}

/// What [`Store::add_comment_within`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Posted {
    Added(Comment),
    /// There is no such repository.
    NoRepository,
    /// The author reached the limit; the next comment is accepted in this many seconds.
    Limited {
        retry_after_secs: u64,
    },
}

const COLUMNS: &str = "id, repository, author, body, created_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Comment> {
    Ok(Comment {
        id: row.get(0)?,
        repository: row.get(1)?,
        author: row.get(2)?,
        body: row.get(3)?,
        created_at: row.get(4)?,
    })
}

/// Inserts the comment unless the repository does not exist.
fn insert_comment(
    conn: &Connection,
    repository: &str,
    author: &str,
    body: &str,
    now: i64,
) -> Result<Option<Comment>, StoreError> {
    // Selecting from repositories makes a missing repository insert nothing instead of
    // failing the foreign key.
    let sql = format!(
        "INSERT INTO comments (repository, author, body, created_at)
         SELECT name, ?2, ?3, ?4 FROM repositories WHERE name = ?1
         RETURNING {COLUMNS}"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![repository, author, body, now], from_row)
        .optional()?)
}

fn count_since(conn: &Connection, author: &str, since: i64) -> Result<u64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM comments WHERE author = ?1 AND created_at >= ?2")?
        .query_row(params![author, since], |row| get_u64(row, 0))?)
}

impl Store {
    /// `user` stars `repository`; starring again changes nothing (the first time is kept).
    /// False if there is no such repository.
    pub fn star(&self, repository: &str, user: &str, now: i64) -> Result<bool, StoreError> {
        // A transaction, so that "no such repository" and "already starred" (both insert
        // nothing) are told apart on one snapshot.
        self.write(|tx| {
            let exists = tx
                .prepare_cached("SELECT 1 FROM repositories WHERE name = ?1")?
                .query_row([repository], |_| Ok(()))
                .optional()?
                .is_some();
            if !exists {
                return Ok((false, false));
            }
            tx.prepare_cached(
                "INSERT INTO stars (repository, user, starred_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (repository, user) DO NOTHING",
            )?
            .execute(params![repository, user, now])?;
            Ok((true, true))
        })
    }

    /// Takes `user`'s star off `repository`; false if there was none.
    pub fn unstar(&self, repository: &str, user: &str) -> Result<bool, StoreError> {
        self.with_conn(|conn| {
            let removed = conn
                .prepare_cached("DELETE FROM stars WHERE repository = ?1 AND user = ?2")?
                .execute([repository, user])?;
            Ok(removed > 0)
        })
    }

    /// The star count of each of `repositories` (0 for those without stars or unknown), in
    /// one query: listings show a page of repositories at once.
    pub fn star_counts(&self, repositories: &[String]) -> Result<HashMap<String, u64>, StoreError> {
        let mut counts: HashMap<String, u64> =
            repositories.iter().map(|name| (name.clone(), 0)).collect();
        if repositories.is_empty() {
            return Ok(counts);
        }
        // The names go in as one JSON array parameter: one cached statement whatever the
        // number of names, and no limit on bound variables to run into.
        let names = serde_json::Value::from(repositories).to_string();
        self.with_conn(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT repository, count(*) FROM stars
                 WHERE repository IN (SELECT value FROM json_each(?1))
                 GROUP BY repository",
            )?;
            let rows = statement.query_map([names], |row| {
                Ok((row.get::<_, String>(0)?, get_u64(row, 1)?))
            })?;
            for row in rows {
                let (name, count) = row?;
                counts.insert(name, count);
            }
            Ok(())
        })?;
        Ok(counts)
    }

    /// How many users starred `repository`.
    pub fn star_count(&self, repository: &str) -> Result<u64, StoreError> {
        self.with_conn(|conn| {
            Ok(conn
                .prepare_cached("SELECT count(*) FROM stars WHERE repository = ?1")?
                .query_row([repository], |row| get_u64(row, 0))?)
        })
    }

    /// The repositories `user` starred, most recently starred first (then by name). The
    /// caller filters out those the user may no longer see.
    pub fn starred_by(&self, user: &str) -> Result<Vec<String>, StoreError> {
        self.with_conn(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT repository FROM stars WHERE user = ?1
                 ORDER BY starred_at DESC, repository",
            )?;
            let rows = statement.query_map([user], |row| row.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
    }

    /// Whether `user` starred `repository`.
    pub fn has_starred(&self, repository: &str, user: &str) -> Result<bool, StoreError> {
        self.with_conn(|conn| {
            Ok(conn
                .prepare_cached("SELECT 1 FROM stars WHERE repository = ?1 AND user = ?2")?
                .query_row([repository, user], |_| Ok(()))
                .optional()?
                .is_some())
        })
    }

    /// Adds a comment by `author`; `None` if there is no such repository.
    pub fn add_comment(
        &self,
        repository: &str,
        author: &str,
        body: &str,
        now: i64,
    ) -> Result<Option<Comment>, StoreError> {
        self.with_conn(|conn| insert_comment(conn, repository, author, body, now))
    }

    /// Adds a comment by `author` unless they already posted `limit.max` comments in the
    /// last `limit.window_secs` seconds (counted as [`comments_since`](Self::comments_since)
    /// does). Counting and inserting share one write transaction, so concurrent posts by
    /// the same user cannot all slip under the limit together.
    pub fn add_comment_within(
        &self,
        repository: &str,
        author: &str,
        body: &str,
        now: i64,
        limit: CommentLimit,
    ) -> Result<Posted, StoreError> {
        let window = to_sql_int("comment window", limit.window_secs)?;
        // A comment made at t counts while now < t + window.
        let since = now.saturating_sub(window).saturating_add(1);
        self.write(|tx| {
            let recent = count_since(tx, author, since)?;
            if recent >= limit.max {
                // Enough of the recent ones must age out to get below the limit: the
                // (recent - max + 1)-th oldest is the last of those.
                let offset = to_sql_int("comment count", recent - limit.max)?;
                let oldest: i64 = tx
                    .prepare_cached(
                        "SELECT created_at FROM comments WHERE author = ?1 AND created_at >= ?2
                         ORDER BY created_at LIMIT 1 OFFSET ?3",
                    )?
                    .query_row(params![author, since, offset], |row| row.get(0))?;
                let wait = oldest.saturating_add(window).saturating_sub(now).max(1);
                let retry_after_secs = u64::try_from(wait).unwrap_or(1);
                return Ok((Posted::Limited { retry_after_secs }, false));
            }
            Ok(match insert_comment(tx, repository, author, body, now)? {
                Some(comment) => (Posted::Added(comment), true),
                None => (Posted::NoRepository, false),
            })
        })
    }

    /// Up to `limit` of the repository's comments, newest first, older than comment
    /// `before` if given: the next page starts before the last id of this one, which stays
    /// right while comments are added or deleted in between.
    pub fn comments(
        &self,
        repository: &str,
        before: Option<i64>,
        limit: u64,
    ) -> Result<Vec<Comment>, StoreError> {
        let limit = to_sql_int("comment page size", limit)?;
        // No id reaches i64::MAX (AUTOINCREMENT fails first), so it stands for "no bound"
        // and one statement serves both cases.
        let before = before.unwrap_or(i64::MAX);
        self.with_conn(|conn| {
            let sql = format!(
                "SELECT {COLUMNS} FROM comments WHERE repository = ?1 AND id < ?2
                 ORDER BY id DESC LIMIT ?3"
            );
            let mut statement = conn.prepare_cached(&sql)?;
            let rows = statement.query_map(params![repository, before, limit], from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Comment `id` if it belongs to `repository`.
    pub fn comment(&self, repository: &str, id: i64) -> Result<Option<Comment>, StoreError> {
        self.with_conn(|conn| {
            let sql = format!("SELECT {COLUMNS} FROM comments WHERE repository = ?1 AND id = ?2");
            Ok(conn
                .prepare_cached(&sql)?
                .query_row(params![repository, id], from_row)
                .optional()?)
        })
    }

    /// Deletes comment `id` of `repository`; false if there was no such comment there.
    pub fn delete_comment(&self, repository: &str, id: i64) -> Result<bool, StoreError> {
        self.with_conn(|conn| {
            let deleted = conn
                .prepare_cached("DELETE FROM comments WHERE repository = ?1 AND id = ?2")?
                .execute(params![repository, id])?;
            Ok(deleted > 0)
        })
    }

    /// How many comments `author` posted at or after `since` (unix seconds), in any
    /// repository, counting only those still there.
    pub fn comments_since(&self, author: &str, since: i64) -> Result<u64, StoreError> {
        self.with_conn(|conn| count_since(conn, author, since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::store::Visibility;

    fn store_with(repositories: &[&str]) -> Store {
        let store = Store::open_in_memory().unwrap();
        for name in repositories {
            store
                .create_repository(name, "ann", Visibility::Public, 1)
                .unwrap();
        }
        store
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn stars_are_idempotent_and_counted() {
        let store = store_with(&["ann/app", "ann/web"]);
        assert!(!store.star("nope", "bob", 10).unwrap());
        assert!(store.star("ann/app", "bob", 10).unwrap());
        // Again: still true, still one star, the first time kept.
        assert!(store.star("ann/app", "bob", 20).unwrap());
        assert!(store.star("ann/app", "cat", 15).unwrap());
        assert!(store.star("ann/web", "bob", 12).unwrap());
        assert_eq!(store.star_count("ann/app").unwrap(), 2);
        assert_eq!(store.star_count("nope").unwrap(), 0);
        assert!(store.has_starred("ann/app", "bob").unwrap());
        assert!(!store.has_starred("ann/app", "dan").unwrap());
        // Most recently starred first: ann/web at 12, ann/app at 10 (not 20).
        assert_eq!(store.starred_by("bob").unwrap(), ["ann/web", "ann/app"]);
        assert!(store.starred_by("dan").unwrap().is_empty());

        let counts = store
            .star_counts(&names(&["ann/app", "ann/web", "nope"]))
            .unwrap();
        assert_eq!(counts.len(), 3);
        assert_eq!(counts["ann/app"], 2);
        assert_eq!(counts["ann/web"], 1);
        assert_eq!(counts["nope"], 0);
        assert!(store.star_counts(&[]).unwrap().is_empty());
        // Names are data, not SQL or JSON syntax.
        let odd = store.star_counts(&names(&["a\"]", "' OR 1=1 --"])).unwrap();
        assert_eq!(odd.values().sum::<u64>(), 0);

        assert!(store.unstar("ann/app", "bob").unwrap());
        assert!(!store.unstar("ann/app", "bob").unwrap());
        assert_eq!(store.star_count("ann/app").unwrap(), 1);
        assert_eq!(store.starred_by("bob").unwrap(), ["ann/web"]);
    }

    #[test]
    fn comments_page_newest_first() {
        let store = store_with(&["ann/app", "ann/web"]);
        assert_eq!(store.add_comment("nope", "bob", "hi", 1).unwrap(), None);
        let mut ids = Vec::new();
        for i in 0..5 {
            let c = store
                .add_comment("ann/app", "bob", &format!("c{i}"), 100 + i)
                .unwrap()
                .unwrap();
            assert_eq!(c.repository, "ann/app");
            assert_eq!(c.author, "bob");
            assert_eq!(c.body, format!("c{i}"));
            assert_eq!(c.created_at, 100 + i);
            ids.push(c.id);
        }
        store.add_comment("ann/web", "bob", "other", 200).unwrap();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));

        let first = store.comments("ann/app", None, 2).unwrap();
        assert_eq!(
            first.iter().map(|c| c.body.as_str()).collect::<Vec<_>>(),
            ["c4", "c3"]
        );
        let second = store.comments("ann/app", Some(first[1].id), 2).unwrap();
        assert_eq!(
            second.iter().map(|c| c.body.as_str()).collect::<Vec<_>>(),
            ["c2", "c1"]
        );
        // Deleting one in between does not shift the next page.
        assert!(store.delete_comment("ann/app", ids[0]).unwrap());
        assert!(store
            .comments("ann/app", Some(second[1].id), 2)
            .unwrap()
            .is_empty());

        assert_eq!(
            store.comment("ann/app", ids[1]).unwrap().unwrap().body,
            "c1"
        );
        // An id of another repository is not found through this one.
        assert_eq!(store.comment("ann/web", ids[1]).unwrap(), None);
        assert!(!store.delete_comment("ann/web", ids[1]).unwrap());
        assert!(!store.delete_comment("ann/app", ids[0]).unwrap());

        // Ids are not reused after the newest is deleted.
        assert!(store.delete_comment("ann/app", ids[4]).unwrap());
        let next = store
            .add_comment("ann/app", "bob", "c5", 300)
            .unwrap()
            .unwrap();
        assert!(next.id > ids[4]);
    }

    #[test]
    fn comments_since_counts_one_author() {
        let store = store_with(&["ann/app", "ann/web"]);
        for (repo, author, at) in [
            ("ann/app", "bob", 10),
            ("ann/web", "bob", 20),
            ("ann/app", "cat", 20),
            ("ann/app", "bob", 30),
        ] {
            store.add_comment(repo, author, "x", at).unwrap().unwrap();
        }
        assert_eq!(store.comments_since("bob", 0).unwrap(), 3);
        assert_eq!(store.comments_since("bob", 20).unwrap(), 2);
        assert_eq!(store.comments_since("bob", 31).unwrap(), 0);
        assert_eq!(store.comments_since("cat", 0).unwrap(), 1);
    }

    #[test]
    fn rate_limit_counts_the_window_and_says_when_to_retry() {
        let store = store_with(&["ann/app"]);
        let limit = CommentLimit {
            max: 3,
            window_secs: 60,
        };
        for at in [100, 110, 120] {
            let posted = store
                .add_comment_within("ann/app", "bob", "x", at, limit)
                .unwrap();
            assert!(matches!(posted, Posted::Added(_)), "{posted:?}");
        }
        // The one from 100 counts until 160.
        assert_eq!(
            store
                .add_comment_within("ann/app", "bob", "x", 130, limit)
                .unwrap(),
            Posted::Limited {
                retry_after_secs: 30
            }
        );
        assert_eq!(
            store
                .add_comment_within("ann/app", "bob", "x", 159, limit)
                .unwrap(),
            Posted::Limited {
                retry_after_secs: 1
            }
        );
        // Refused posts were not stored; others are not limited by bob's.
        assert_eq!(store.comments_since("bob", 0).unwrap(), 3);
        assert!(matches!(
            store
                .add_comment_within("ann/app", "cat", "x", 130, limit)
                .unwrap(),
            Posted::Added(_)
        ));
        assert!(matches!(
            store
                .add_comment_within("ann/app", "bob", "x", 160, limit)
                .unwrap(),
            Posted::Added(_)
        ));
        assert_eq!(
            store
                .add_comment_within("nope", "dan", "x", 160, limit)
                .unwrap(),
            Posted::NoRepository
        );
    }

    #[test]
    fn deleting_a_repository_takes_its_stars_and_comments() {
        let store = store_with(&["ann/app", "ann/web"]);
        store.star("ann/app", "bob", 1).unwrap();
        store.star("ann/web", "bob", 1).unwrap();
        store
            .add_comment("ann/app", "bob", "x", 1)
            .unwrap()
            .unwrap();
        store
            .add_comment("ann/web", "bob", "y", 1)
            .unwrap()
            .unwrap();
        assert!(store.delete_repository("ann/app").unwrap());
        assert_eq!(store.starred_by("bob").unwrap(), ["ann/web"]);
        assert_eq!(store.comments_since("bob", 0).unwrap(), 1);
        // Created again: starts with nothing.
        store
            .create_repository("ann/app", "ann", Visibility::Public, 2)
            .unwrap();
        assert_eq!(store.star_count("ann/app").unwrap(), 0);
        assert!(store.comments("ann/app", None, 10).unwrap().is_empty());
        assert_eq!(store.star_count("ann/web").unwrap(), 1);
    }
}
