//! The index's metadata store: one SQLite database holding repositories (owner, visibility,
//! description), the manifests and tags registries report, collaborators, stars and
//! comments, refresh tokens, which registry events were already applied, and webhooks with
//! their delivery outbox. This module owns opening the database (file permissions,
//! durability settings, migrations) and the [`Store`] handle and its errors; each kind of
//! record has its own file with its queries.
//!
//! Every method is synchronous and short: async callers run them in
//! `tokio::task::spawn_blocking`. One connection behind a mutex is enough for the index's
//! load and keeps every call trivially serialised within the process; SQLite's own locking
//! (WAL, busy timeout) covers other processes opening the same file.

/// `Display`, `ToSql` and `FromSql` for an enum stored as one of its words: its `as_str`
/// and `FromStr` define the words, so the text in the database and in messages is one.
macro_rules! stored_as_word {
    ($t:ty) => {
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl rusqlite::types::ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
            }
        }

        impl rusqlite::types::FromSql for $t {
            fn column_result(
                value: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                value
                    .as_str()?
                    .parse()
                    .map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
            }
        }
    };
}

mod collaborators;
mod community;
mod deletions;
mod refresh;
mod repositories;
mod schema;
mod tags;
mod webhooks;

#[cfg(test)]
mod tests;

use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

pub use collaborators::{Collaborator, CollaboratorAccess};
pub use community::{Comment, CommentLimit, Posted};
pub use repositories::{namespace_of, Repository, Visibility};
pub use tags::{DeleteNotice, DeleteRef, ManifestRecord, PushRecord, TagRecord};
pub use webhooks::{
    AttemptOutcome, Delivery, DeliveryStatus, DueDelivery, Fanout, GlobalSubscription, HookRef,
    NewWebhook, Webhook, WebhookEvent, WebhookSecret,
};

/// How long a call waits for another process's write lock before giving up with "busy".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database file: {0}")]
    Io(#[from] std::io::Error),
    /// The database was written by a newer holdfast; running on it could corrupt it.
    #[error("database schema version {found} is newer than this holdfast knows ({known}); refusing to open it")]
    TooNew { found: i64, known: i64 },
    /// `PRAGMA user_version` holds something no holdfast writes.
    #[error("database schema version {0} is not valid")]
    BadVersion(i64),
    /// SQLite would not switch the file to write-ahead logging (e.g. a file system
    /// without shared memory); without it readers would block writers.
    #[error("database journal mode is {0:?}, not wal")]
    JournalMode(String),
    /// A number does not fit the database's signed 64-bit integers.
    #[error("{what} {value} is too large to store")]
    TooLarge { what: &'static str, value: u64 },
    /// A call panicked while holding the connection; the store refuses further use.
    #[error("database connection poisoned by an earlier panic")]
    Poisoned,
    /// The system's random number generator failed (webhook delivery ids).
    #[error("random number generator: {0}")]
    Random(String),
    /// A record could not be encoded (a webhook payload).
    #[error("encoding: {0}")]
    Encode(String),
}

impl From<StoreError> for crate::index::token::RefreshError {
    fn from(e: StoreError) -> Self {
        crate::index::token::RefreshError::Store(e.to_string())
    }
}

/// The index's database. `Send + Sync`; share it in an `Arc`.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, brings its schema up to date and
    /// returns the store. Missing parent directories are created with mode 0700 and a new
    /// file with mode 0600: it holds who may see what and refresh-token digests.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)?;
        }
        // Created here rather than by SQLite so that it never exists, even for a moment,
        // with the wider default mode. SQLite gives its -wal and -shm files the mode of the
        // database file, so they inherit this too.
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        // No SQLITE_OPEN_CREATE: the file exists now, and if it vanished in between, failing
        // is better than silently making one with the default mode. No URI parsing, so a
        // path starting with "file:" means that file.
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        Store::setup(conn, true)
    }

    /// A private database in memory, gone when the store is dropped (tests).
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Store::setup(Connection::open_in_memory()?, false)
    }

    fn setup(mut conn: Connection, file: bool) -> Result<Store, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Refuse a newer schema before anything below writes to the file (switching to WAL
        // rewrites its header).
        schema::check_version(&conn)?;
        // Per connection and not allowed inside a transaction, so set before migrating;
        // the cascades from repositories to their tags, manifests and collaborators need it.
        conn.pragma_update(None, "foreign_keys", true)?;
        if file {
            let mode: String =
                conn.pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::JournalMode(mode));
            }
        }
        // In WAL mode NORMAL may lose the last commits on power loss; FULL syncs the log on
        // every commit, so an acknowledged write (a push event, a revoked token) survives.
        conn.pragma_update(None, "synchronous", "FULL")?;
        schema::migrate(&mut conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }

    /// Runs `f` on the connection (reads and single-statement writes).
    fn with_conn<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.lock()?;
        f(&conn)
    }

    /// Runs `f` in a write transaction, committed if `f` returns `Ok((value, true))` and
    /// rolled back otherwise. The transaction takes the write lock up front (IMMEDIATE):
    /// a deferred one that reads first and writes later can fail with "busy" at the write
    /// without the busy timeout helping, when another process wrote in between.
    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<(T, bool), StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (value, commit) = f(&tx)?;
        if commit {
            tx.commit()?;
        }
        Ok(value)
    }

    /// Runs `f` in a read transaction, so that several queries see one snapshot.
    fn read<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        f(&tx)
    }
}

/// `value` as SQLite's signed integer.
fn to_sql_int(what: &'static str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::TooLarge { what, value })
}

/// Reads column `index` as a non-negative integer.
fn get_u64(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<u64> {
    let value: i64 = row.get(index)?;
    u64::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(index, value))
}

/// The current time in unix seconds (for bookkeeping the callers do not pass a time for).
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
