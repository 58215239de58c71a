//! Collaborators: users other than the owner whom a repository's owner let pull, or pull
//! and push, that repository. They go with the repository when it is deleted.

use std::str::FromStr;

use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// What a collaborator may do. `Push` implies pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CollaboratorAccess {
    Pull,
    Push,
}

impl CollaboratorAccess {
    pub fn as_str(self) -> &'static str {
        match self {
            CollaboratorAccess::Pull => "pull",
            CollaboratorAccess::Push => "push",
        }
    }

    /// Whether this access lets the collaborator push.
    pub fn may_push(self) -> bool {
        self == CollaboratorAccess::Push
    }
}

/// A word that is neither `pull` nor `push`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown collaborator access {0:?} (expected pull or push)")]
pub struct UnknownAccess(pub String);

impl FromStr for CollaboratorAccess {
    type Err = UnknownAccess;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pull" => Ok(CollaboratorAccess::Pull),
            "push" => Ok(CollaboratorAccess::Push),
            other => Err(UnknownAccess(other.to_owned())),
        }
    }
}

stored_as_word!(CollaboratorAccess);

/// A user's access to one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Collaborator {
    pub user: String,
    pub access: CollaboratorAccess,
    /// Unix seconds when the user was first added.
    pub added_at: i64,
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<Collaborator> {
    Ok(Collaborator {
        user: row.get(0)?,
        access: row.get(1)?,
        added_at: row.get(2)?,
    })
}

impl Store {
    /// Gives `user` `access` to `repository`, or changes the access they have (keeping when
    /// they were first added). False if there is no such repository.
    pub fn set_collaborator(
        &self,
        repository: &str,
        user: &str,
        access: CollaboratorAccess,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.with_conn(|conn| {
            // Selecting from repositories makes a missing repository insert nothing instead
            // of failing the foreign key. (The WHERE also keeps SQLite's parser from reading
            // ON CONFLICT as a join constraint.)
            let changed = conn
                .prepare_cached(
                    "INSERT INTO collaborators (repository, user, access, added_at)
                     SELECT name, ?2, ?3, ?4 FROM repositories WHERE name = ?1
                     ON CONFLICT (repository, user) DO UPDATE SET access = excluded.access",
                )?
                .execute(params![repository, user, access, now])?;
            Ok(changed > 0)
        })
    }

    /// Takes `user`'s access to `repository` away; false if they had none.
    pub fn remove_collaborator(&self, repository: &str, user: &str) -> Result<bool, StoreError> {
        self.with_conn(|conn| {
            let removed = conn
                .prepare_cached("DELETE FROM collaborators WHERE repository = ?1 AND user = ?2")?
                .execute([repository, user])?;
            Ok(removed > 0)
        })
    }

    /// The repository's collaborators ordered by user name.
    pub fn collaborators(&self, repository: &str) -> Result<Vec<Collaborator>, StoreError> {
        self.with_conn(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT user, access, added_at FROM collaborators
                 WHERE repository = ?1 ORDER BY user",
            )?;
            let rows = statement.query_map([repository], from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// The access `user` has to `repository` as a collaborator, if any.
    pub fn collaboration(
        &self,
        repository: &str,
        user: &str,
    ) -> Result<Option<CollaboratorAccess>, StoreError> {
        self.with_conn(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT access FROM collaborators WHERE repository = ?1 AND user = ?2",
                )?
                .query_row([repository, user], |row| row.get(0))
                .optional()?)
        })
    }
}
