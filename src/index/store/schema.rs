//! The database schema as an ordered list of migrations. `PRAGMA user_version` records how
//! many have run; opening runs the missing ones, each in its own transaction together with
//! the version bump, so a crash leaves the database at one version or the next, never in
//! between. A database from a newer holdfast is refused untouched. To change the schema,
//! append a script to [`MIGRATIONS`]; never edit one that has shipped.

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// Migration `i` (0-based) brings the schema from version `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[V1, V2, V3, V4];

/// Repositories, what registries reported about their content, who else may use them,
/// refresh tokens, and which registry events were applied.
const V1: &str = "
CREATE TABLE repositories (
    name        TEXT PRIMARY KEY NOT NULL,
    namespace   TEXT NOT NULL,
    owner       TEXT NOT NULL,
    visibility  TEXT NOT NULL CHECK (visibility IN ('private', 'public')),
    description TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    pushed_at   INTEGER
);
CREATE INDEX repositories_namespace ON repositories (namespace);

-- The checksum of every manifest pushed, whether or not a tag points at it.
CREATE TABLE manifests (
    repository TEXT NOT NULL REFERENCES repositories (name) ON DELETE CASCADE,
    digest     TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size       INTEGER NOT NULL CHECK (size >= 0),
    pushed_at  INTEGER NOT NULL,
    pusher     TEXT,
    PRIMARY KEY (repository, digest)
);

-- A tag's media type and size come from its manifest, which must exist.
CREATE TABLE tags (
    repository TEXT NOT NULL REFERENCES repositories (name) ON DELETE CASCADE,
    tag        TEXT NOT NULL,
    digest     TEXT NOT NULL,
    pushed_at  INTEGER NOT NULL,
    pusher     TEXT,
    PRIMARY KEY (repository, tag),
    FOREIGN KEY (repository, digest) REFERENCES manifests (repository, digest) ON DELETE CASCADE
);
-- Deleting a manifest looks up the tags pointing at it.
CREATE INDEX tags_digest ON tags (repository, digest);

CREATE TABLE collaborators (
    repository TEXT NOT NULL REFERENCES repositories (name) ON DELETE CASCADE,
    user       TEXT NOT NULL,
    access     TEXT NOT NULL CHECK (access IN ('pull', 'push')),
    added_at   INTEGER NOT NULL,
    PRIMARY KEY (repository, user)
);

-- Keyed by the SHA-256 of the token: the database never holds a usable token.
CREATE TABLE refresh_tokens (
    digest     TEXT PRIMARY KEY NOT NULL,
    user       TEXT NOT NULL,
    service    TEXT NOT NULL,
    client_id  TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

-- Registries retry event delivery; an id found here was applied already.
CREATE TABLE events_applied (
    id         TEXT PRIMARY KEY NOT NULL,
    applied_at INTEGER NOT NULL
);
CREATE INDEX events_applied_at ON events_applied (applied_at);
";

/// The schema version this build writes.
pub(super) fn known_version() -> i64 {
    // A handful of migrations; the cast cannot truncate.
    MIGRATIONS.len() as i64
}

fn user_version(conn: &Connection) -> Result<i64, StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let known = known_version();
    if version < 0 {
        return Err(StoreError::BadVersion(version));
    }
    if version > known {
        return Err(StoreError::TooNew {
            found: version,
            known,
        });
    }
    Ok(version)
}

/// Fails if the database's schema is newer than this build knows.
pub(super) fn check_version(conn: &Connection) -> Result<(), StoreError> {
    user_version(conn).map(|_| ())
}

/// Runs the migrations the database has not had yet.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current = user_version(conn)?;
    let done = usize::try_from(current).map_err(|_| StoreError::BadVersion(current))?;
    for (index, script) in MIGRATIONS.iter().enumerate().skip(done) {
        let target = index as i64 + 1;
        // IMMEDIATE, and the version read again inside: another process opening the same
        // file may have run this migration since we looked.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if user_version(&tx)? >= target {
            continue;
        }
        tx.execute_batch(script)?;
        tx.pragma_update(None, "user_version", target)?;
        tx.commit()?;
    }
    Ok(())
}

/// Whole-repository deletions the index asked of registries in other processes, kept until
/// each registry confirms it (by reporting the repository deleted).
const V2: &str = "
CREATE TABLE pending_deletions (
    repository   TEXT NOT NULL,
    service      TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    PRIMARY KEY (repository, service)
);
CREATE INDEX pending_deletions_service ON pending_deletions (service);
";

/// Stars and comments: what signed-in users say about repositories they can see. Both go
/// with their repository when it is deleted, so a name pushed again starts with none.
const V3: &str = "
CREATE TABLE stars (
    repository TEXT NOT NULL REFERENCES repositories (name) ON DELETE CASCADE,
    user       TEXT NOT NULL,
    starred_at INTEGER NOT NULL,
    PRIMARY KEY (repository, user)
);
-- A user's starred list.
CREATE INDEX stars_user ON stars (user);

-- AUTOINCREMENT: an id is never reused, so a deleted comment's id cannot come to name
-- another one, and ids order comments by creation (keyset pagination relies on it).
CREATE TABLE comments (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    repository TEXT NOT NULL REFERENCES repositories (name) ON DELETE CASCADE,
    author     TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
-- A repository's comments, newest first, a page at a time.
CREATE INDEX comments_repository ON comments (repository, id);
-- The rate limit counts a user's recent comments.
CREATE INDEX comments_author ON comments (author, created_at);
";

/// Webhooks: the hooks repository owners register, and the outbox of deliveries (one per
/// event and hook, queued in the transaction that applies the event; see
/// `store/webhooks.rs`). A delivery names either a repository hook (`hook_id`, gone with the
/// hook) or a global hook from the config (`global_hook`, by name), never both. A hook's
/// `active` is 1 as created; 0 (paused: nothing queued for it) is for a later API.
const V4: &str = "
CREATE TABLE webhooks (
    id         INTEGER PRIMARY KEY,
    repository TEXT NOT NULL REFERENCES repositories (name) ON DELETE CASCADE,
    url        TEXT NOT NULL,
    secret     TEXT NOT NULL,
    events     TEXT NOT NULL,
    active     INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX webhooks_repository ON webhooks (repository);

CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY NOT NULL,
    hook_id          INTEGER REFERENCES webhooks (id) ON DELETE CASCADE,
    global_hook      TEXT,
    repository       TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    event            TEXT NOT NULL CHECK (event IN ('push', 'delete')),
    body             TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  INTEGER NOT NULL,
    last_status_code INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    delivered_at     INTEGER,
    CHECK ((hook_id IS NULL) <> (global_hook IS NULL))
);
-- A registry event is queued once per hook, however often it is applied.
CREATE UNIQUE INDEX webhook_deliveries_repository_once
    ON webhook_deliveries (event_id, hook_id) WHERE hook_id IS NOT NULL;
CREATE UNIQUE INDEX webhook_deliveries_global_once
    ON webhook_deliveries (event_id, global_hook) WHERE global_hook IS NOT NULL;
-- The worker's question: what is due?
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
-- A hook's history, newest first.
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (hook_id, created_at);
CREATE INDEX webhook_deliveries_global ON webhook_deliveries (global_hook, created_at);
";
