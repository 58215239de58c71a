//! Repositories as the index knows them: who owns each, whether anyone may pull it
//! (visibility), its description, and when it was created and last pushed. Creating,
//! changing, deleting and searching them lives here; their content (manifests, tags) is in
//! `tags`, and who else may use them in `collaborators`.

use std::str::FromStr;

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// Who may pull a repository besides its owner and collaborators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Only the owner, collaborators and administrators (the default).
    #[default]
    Private,
    /// Everyone, including anonymous callers.
    Public,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Private => "private",
            Visibility::Public => "public",
        }
    }
}

/// A word that is neither `private` nor `public`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown visibility {0:?} (expected private or public)")]
pub struct UnknownVisibility(pub String);

impl FromStr for Visibility {
    type Err = UnknownVisibility;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "private" => Ok(Visibility::Private),
            "public" => Ok(Visibility::Public),
            other => Err(UnknownVisibility(other.to_owned())),
        }
    }
}

stored_as_word!(Visibility);

/// A repository's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Repository {
    pub name: String,
    /// The part of the name before the first `/` (see [`namespace_of`]).
    pub namespace: String,
    pub owner: String,
    pub visibility: Visibility,
    pub description: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the latest push, if any was reported.
    pub pushed_at: Option<i64>,
}

/// The namespace of a repository name: the part before the first `/`, or `""` for a name
/// without one.
pub fn namespace_of(name: &str) -> &str {
    name.split_once('/').map_or("", |(namespace, _)| namespace)
}

const COLUMNS: &str = "name, namespace, owner, visibility, description, created_at, pushed_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Repository> {
    Ok(Repository {
        name: row.get(0)?,
        namespace: row.get(1)?,
        owner: row.get(2)?,
        visibility: row.get(3)?,
        description: row.get(4)?,
        created_at: row.get(5)?,
        pushed_at: row.get(6)?,
    })
}

pub(super) fn get(conn: &Connection, name: &str) -> Result<Option<Repository>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM repositories WHERE name = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([name], from_row)
        .optional()?)
}

/// Inserts the repository unless one of that name exists; whether it was inserted.
pub(super) fn insert_if_missing(
    conn: &Connection,
    name: &str,
    owner: &str,
    visibility: Visibility,
    now: i64,
) -> Result<bool, StoreError> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO repositories (name, namespace, owner, visibility, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (name) DO NOTHING",
        )?
        .execute(params![name, namespace_of(name), owner, visibility, now])?;
    Ok(inserted > 0)
}

/// `text` as a LIKE pattern matching any string containing it, with `\` as the escape.
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

impl Store {
    /// The repository called `name`, if the index knows it.
    pub fn repository(&self, name: &str) -> Result<Option<Repository>, StoreError> {
        self.with_conn(|conn| get(conn, name))
    }

    /// Creates the repository `name` owned by `owner` unless it exists. Returns the
    /// repository (the existing one unchanged if there was one) and whether it was created
    /// by this call. Two callers racing for the same name get one creation between them.
    pub fn create_repository(
        &self,
        name: &str,
        owner: &str,
        visibility: Visibility,
        now: i64,
    ) -> Result<(Repository, bool), StoreError> {
        self.write(|tx| {
            let created = insert_if_missing(tx, name, owner, visibility, now)?;
            let repository = get(tx, name)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            Ok(((repository, created), true))
        })
    }

    /// Sets the visibility; false if there is no such repository.
    pub fn set_visibility(&self, name: &str, visibility: Visibility) -> Result<bool, StoreError> {
        self.with_conn(|conn| {
            let changed = conn
                .prepare_cached("UPDATE repositories SET visibility = ?2 WHERE name = ?1")?
                .execute(params![name, visibility])?;
            Ok(changed > 0)
        })
    }

    /// Sets the description; false if there is no such repository.
    pub fn set_description(&self, name: &str, description: &str) -> Result<bool, StoreError> {
        self.with_conn(|conn| {
            let changed = conn
                .prepare_cached("UPDATE repositories SET description = ?2 WHERE name = ?1")?
                .execute(params![name, description])?;
            Ok(changed > 0)
        })
    }

    /// Forgets the repository with its manifests, tags and collaborators (the foreign keys
    /// cascade); false if there was no such repository.
    pub fn delete_repository(&self, name: &str) -> Result<bool, StoreError> {
        self.with_conn(|conn| delete(conn, name))
    }

    /// Every repository ordered by name, or with `query` those whose name or description
    /// contains it, ignoring case. SQLite folds ASCII letters only; repository names are
    /// lower-case ASCII anyway, so this matters only for other letters in descriptions.
    /// The caller decides which of them the asker may see.
    pub fn repositories(&self, query: Option<&str>) -> Result<Vec<Repository>, StoreError> {
        self.with_conn(|conn| {
            let rows = match query {
                None => {
                    let sql = format!("SELECT {COLUMNS} FROM repositories ORDER BY name");
                    let mut statement = conn.prepare_cached(&sql)?;
                    let rows = statement.query_map([], from_row)?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()?
                }
                Some(query) => {
                    let sql = format!(
                        "SELECT {COLUMNS} FROM repositories
                         WHERE name LIKE ?1 ESCAPE '\\' OR description LIKE ?1 ESCAPE '\\'
                         ORDER BY name"
                    );
                    let mut statement = conn.prepare_cached(&sql)?;
                    let rows = statement.query_map([contains_pattern(query)], from_row)?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()?
                }
            };
            Ok(rows)
        })
    }
}

/// Deletes the repository row (cascading to everything under it); whether there was one.
pub(super) fn delete(conn: &Connection, name: &str) -> Result<bool, StoreError> {
    let deleted = conn
        .prepare_cached("DELETE FROM repositories WHERE name = ?1")?
        .execute([name])?;
    Ok(deleted > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces() {
        assert_eq!(namespace_of("ann/app"), "ann");
        assert_eq!(namespace_of("ann/team/app"), "ann");
        assert_eq!(namespace_of("app"), "");
        assert_eq!(namespace_of(""), "");
    }

    #[test]
    fn like_patterns() {
        assert_eq!(contains_pattern("a"), "%a%");
        assert_eq!(contains_pattern("50%_\\x"), "%50\\%\\_\\\\x%");
        assert_eq!(contains_pattern(""), "%%");
    }

    #[test]
    fn visibility_words() {
        for v in [Visibility::Private, Visibility::Public] {
            assert_eq!(v.as_str().parse::<Visibility>(), Ok(v));
            assert_eq!(
                serde_json::to_value(v).unwrap(),
                serde_json::json!(v.as_str())
            );
        }
        assert!("Public".parse::<Visibility>().is_err());
        assert!("".parse::<Visibility>().is_err());
    }
}
