//! Refresh tokens in the database: the [`RefreshStore`] the token service uses in
//! production, so that `docker login`'s offline tokens survive a restart and revoking one
//! (or all of a user's) is permanent. Rows are keyed by the token's SHA-256; the token
//! itself is never stored.

use std::sync::Arc;

use rusqlite::{params, OptionalExtension, Row};

use super::{get_u64, Store, StoreError};
use crate::index::token::{RefreshError, RefreshRecord, RefreshStore};

/// Unix seconds as SQLite's integer. Later than year 292 billion is "never" anyway, so
/// saturating beats refusing the token.
fn seconds(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<RefreshRecord> {
    Ok(RefreshRecord {
        user: row.get(0)?,
        service: row.get(1)?,
        client_id: row.get(2)?,
        created_at: get_u64(row, 3)?,
        expires_at: get_u64(row, 4)?,
    })
}

impl Store {
    fn put_refresh(&self, digest: &str, record: &RefreshRecord) -> Result<(), StoreError> {
        self.with_conn(|conn| {
            conn.prepare_cached(
                "INSERT INTO refresh_tokens (digest, user, service, client_id, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (digest) DO UPDATE SET
                     user = excluded.user,
                     service = excluded.service,
                     client_id = excluded.client_id,
                     created_at = excluded.created_at,
                     expires_at = excluded.expires_at",
            )?
            .execute(params![
                digest,
                record.user,
                record.service,
                record.client_id,
                seconds(record.created_at),
                seconds(record.expires_at)
            ])?;
            Ok(())
        })
    }

    fn get_refresh(&self, digest: &str) -> Result<Option<RefreshRecord>, StoreError> {
        self.with_conn(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT user, service, client_id, created_at, expires_at
                     FROM refresh_tokens WHERE digest = ?1",
                )?
                .query_row([digest], from_row)
                .optional()?)
        })
    }

    fn delete_refresh(&self, sql: &str, key: &str) -> Result<usize, StoreError> {
        self.with_conn(|conn| Ok(conn.prepare_cached(sql)?.execute([key])?))
    }

    fn purge_refresh(&self, now: u64) -> Result<usize, StoreError> {
        // Expired at `now` means `expires_at <= now`, as the token service checks it.
        let now = seconds(now);
        self.with_conn(|conn| {
            Ok(conn
                .prepare_cached("DELETE FROM refresh_tokens WHERE expires_at <= ?1")?
                .execute([now])?)
        })
    }
}

impl RefreshStore for Store {
    fn put(&self, digest: &str, record: RefreshRecord) -> Result<(), RefreshError> {
        Ok(self.put_refresh(digest, &record)?)
    }

    fn get(&self, digest: &str) -> Result<Option<RefreshRecord>, RefreshError> {
        Ok(self.get_refresh(digest)?)
    }

    fn remove(&self, digest: &str) -> Result<bool, RefreshError> {
        let removed =
            self.delete_refresh("DELETE FROM refresh_tokens WHERE digest = ?1", digest)?;
        Ok(removed > 0)
    }

    fn remove_user(&self, user: &str) -> Result<usize, RefreshError> {
        Ok(self.delete_refresh("DELETE FROM refresh_tokens WHERE user = ?1", user)?)
    }

    fn purge_expired(&self, now: u64) -> Result<usize, RefreshError> {
        Ok(self.purge_refresh(now)?)
    }
}

/// The server shares one store between the token service and everything else.
impl RefreshStore for Arc<Store> {
    fn put(&self, digest: &str, record: RefreshRecord) -> Result<(), RefreshError> {
        <Store as RefreshStore>::put(self, digest, record)
    }

    fn get(&self, digest: &str) -> Result<Option<RefreshRecord>, RefreshError> {
        <Store as RefreshStore>::get(self, digest)
    }

    fn remove(&self, digest: &str) -> Result<bool, RefreshError> {
        <Store as RefreshStore>::remove(self, digest)
    }

    fn remove_user(&self, user: &str) -> Result<usize, RefreshError> {
        <Store as RefreshStore>::remove_user(self, user)
    }

    fn purge_expired(&self, now: u64) -> Result<usize, RefreshError> {
        <Store as RefreshStore>::purge_expired(self, now)
    }
}
