//! Tests of the store against real SQLite databases, in memory and in files.

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, UNIX_EPOCH};

use rusqlite::Connection;

use super::schema::known_version;
use super::*;
use crate::index::token::{RefreshError, RefreshRecord, RefreshStore, RefreshTokens};

fn memory() -> Store {
    Store::open_in_memory().unwrap()
}

fn count(store: &Store, table: &str) -> i64 {
    store
        .lock()
        .unwrap()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
            row.get(0)
        })
        .unwrap()
}

fn user_version(conn: &Connection) -> i64 {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap()
}

fn push(id: &str, repository: &str, tag: Option<&str>, digest: &str, at: i64) -> PushRecord {
    PushRecord {
        event_id: id.to_owned(),
        repository: repository.to_owned(),
        tag: tag.map(str::to_owned),
        digest: digest.to_owned(),
        media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
        size: 1234,
        pusher: Some("ann".to_owned()),
        at,
        default_owner: "ann".to_owned(),
        default_visibility: Visibility::Private,
        webhooks: None,
    }
}

/// Everything a repository's content consists of, to compare before and after.
fn snapshot(
    store: &Store,
    repository: &str,
) -> (Option<Repository>, Vec<TagRecord>, Vec<ManifestRecord>) {
    (
        store.repository(repository).unwrap(),
        store.tags(repository).unwrap(),
        store.manifests(repository).unwrap(),
    )
}

#[test]
fn store_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
    assert_send_sync::<Arc<Store>>();
}

#[test]
fn fresh_database_has_the_latest_schema() {
    let store = memory();
    let conn = store.lock().unwrap();
    assert_eq!(user_version(&conn), known_version());
    assert_eq!(known_version(), schema::MIGRATIONS.len() as i64);
    for table in [
        "repositories",
        "manifests",
        "tags",
        "collaborators",
        "refresh_tokens",
        "events_applied",
    ] {
        let found: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
                [table],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(found, 1, "{table}");
    }
    let fk: i64 = conn
        .pragma_query_value(None, "foreign_keys", |row| row.get(0))
        .unwrap();
    assert_eq!(fk, 1);
}

#[test]
fn file_database_settings_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.db");
    {
        let store = Store::open(&path).unwrap();
        let conn = store.lock().unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        // 2 = FULL.
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |row| row.get(0))
            .unwrap();
        assert_eq!(sync, 2);
        let busy: i64 = conn
            .pragma_query_value(None, "busy_timeout", |row| row.get(0))
            .unwrap();
        assert_eq!(busy, 5000);
    }
    store_repo(&path, "ann/app");
    // Reopening twice runs no migration again and keeps the data.
    for _ in 0..2 {
        let store = Store::open(&path).unwrap();
        assert_eq!(user_version(&store.lock().unwrap()), known_version());
        assert_eq!(store.repositories(None).unwrap().len(), 1);
    }
}

fn store_repo(path: &Path, name: &str) {
    let store = Store::open(path).unwrap();
    store
        .create_repository(name, "ann", Visibility::Public, 10)
        .unwrap();
}

#[test]
fn newer_schema_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE future (x INTEGER);")
            .unwrap();
        conn.pragma_update(None, "user_version", known_version() + 1)
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    match Store::open(&path) {
        Err(StoreError::TooNew { found, known }) => {
            assert_eq!(found, known_version() + 1);
            assert_eq!(known, known_version());
        }
        other => panic!("expected TooNew, got {other:?}"),
    }
    // Not switched to WAL, not migrated: the file is byte for byte what it was.
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert!(!dir.path().join("index.db-wal").exists());

    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", -1).unwrap();
    drop(conn);
    assert!(matches!(
        Store::open(&path),
        Err(StoreError::BadVersion(-1))
    ));
}

#[test]
fn older_schema_is_migrated() {
    // A database made before any migration (version 0, e.g. an empty file) gets them all.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.db");
    drop(Connection::open(&path).unwrap());
    let store = Store::open(&path).unwrap();
    assert_eq!(user_version(&store.lock().unwrap()), known_version());
}

#[test]
fn new_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/index/index.db");
    let store = Store::open(&path).unwrap();
    store
        .create_repository("ann/app", "ann", Visibility::Private, 1)
        .unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("state/index")), 0o700);
    assert_eq!(mode(&dir.path().join("state")), 0o700);
    // SQLite gives the log the database file's mode.
    let wal = dir.path().join("state/index/index.db-wal");
    assert!(wal.exists());
    assert_eq!(mode(&wal), 0o600);
}

#[test]
fn committed_writes_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.db");
    {
        let store = Store::open(&path).unwrap();
        assert!(store
            .apply_push(&push("e1", "ann/app", Some("v1"), "sha256:aa", 100))
            .unwrap());
        store.set_description("ann/app", "the app").unwrap();
        store
            .set_collaborator("ann/app", "bob", CollaboratorAccess::Push, 101)
            .unwrap();
        RefreshStore::put(
            &store,
            "d1",
            RefreshRecord {
                user: "ann".into(),
                service: "svc".into(),
                client_id: None,
                created_at: 1,
                expires_at: 2,
            },
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    let repo = store.repository("ann/app").unwrap().unwrap();
    assert_eq!(repo.description, "the app");
    assert_eq!(repo.pushed_at, Some(100));
    assert_eq!(store.tags("ann/app").unwrap()[0].digest, "sha256:aa");
    assert_eq!(
        store.collaboration("ann/app", "bob").unwrap(),
        Some(CollaboratorAccess::Push)
    );
    assert!(RefreshStore::get(&store, "d1").unwrap().is_some());
    // The event id too: a retry after a restart still changes nothing.
    assert!(!store
        .apply_push(&push("e1", "ann/app", Some("v1"), "sha256:aa", 100))
        .unwrap());
}

#[test]
fn create_repository_is_idempotent() {
    let store = memory();
    assert_eq!(store.repository("ann/app").unwrap(), None);
    let (repo, created) = store
        .create_repository("ann/app", "ann", Visibility::Private, 10)
        .unwrap();
    assert!(created);
    assert_eq!(
        repo,
        Repository {
            name: "ann/app".into(),
            namespace: "ann".into(),
            owner: "ann".into(),
            visibility: Visibility::Private,
            description: String::new(),
            created_at: 10,
            pushed_at: None,
        }
    );
    let (again, created) = store
        .create_repository("ann/app", "bob", Visibility::Public, 20)
        .unwrap();
    assert!(!created);
    assert_eq!(again, repo);
    assert_eq!(store.repository("ann/app").unwrap(), Some(repo));
    let (top, _) = store
        .create_repository("app", "ann", Visibility::Public, 10)
        .unwrap();
    assert_eq!(top.namespace, "");
}

#[test]
fn create_repository_race() {
    // Two connections to one file, as two processes would have, and two threads on one
    // store: every name is created exactly once.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.db");
    let first = Arc::new(Store::open(&path).unwrap());
    let stores = [
        Arc::clone(&first),
        Arc::new(Store::open(&path).unwrap()),
        first,
    ];
    let barrier = Arc::new(Barrier::new(stores.len()));
    let threads: Vec<_> = stores
        .into_iter()
        .enumerate()
        .map(|(i, store)| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let mut created = Vec::new();
                for n in 0..40 {
                    let name = format!("ns/repo{n}");
                    let (repo, new) = store
                        .create_repository(&name, &format!("user{i}"), Visibility::Private, 1)
                        .unwrap();
                    assert_eq!(repo.name, name);
                    created.push((repo.owner, new));
                }
                created
            })
        })
        .collect();
    let results: Vec<Vec<(String, bool)>> =
        threads.into_iter().map(|t| t.join().unwrap()).collect();
    for n in 0..40 {
        let winners: Vec<&String> = results.iter().filter(|r| r[n].1).map(|r| &r[n].0).collect();
        assert_eq!(winners.len(), 1, "repo{n}");
        // Everyone got the winner's record back.
        assert!(results.iter().all(|r| &r[n].0 == winners[0]));
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.repositories(None).unwrap().len(), 40);
}

#[test]
fn visibility_and_description() {
    let store = memory();
    assert!(!store.set_visibility("nope", Visibility::Public).unwrap());
    assert!(!store.set_description("nope", "x").unwrap());
    store
        .create_repository("ann/app", "ann", Visibility::Private, 1)
        .unwrap();
    assert!(store.set_visibility("ann/app", Visibility::Public).unwrap());
    assert!(store.set_description("ann/app", "Hello").unwrap());
    let repo = store.repository("ann/app").unwrap().unwrap();
    assert_eq!(repo.visibility, Visibility::Public);
    assert_eq!(repo.description, "Hello");
    assert!(store
        .set_visibility("ann/app", Visibility::Private)
        .unwrap());
    assert_eq!(
        store.repository("ann/app").unwrap().unwrap().visibility,
        Visibility::Private
    );
}

#[test]
fn push_creates_repository_and_records_content() {
    let store = memory();
    assert!(store
        .apply_push(&push("e1", "ann/app", Some("latest"), "sha256:aa", 100))
        .unwrap());
    let repo = store.repository("ann/app").unwrap().unwrap();
    assert_eq!(repo.owner, "ann");
    assert_eq!(repo.namespace, "ann");
    assert_eq!(repo.visibility, Visibility::Private);
    assert_eq!(repo.created_at, 100);
    assert_eq!(repo.pushed_at, Some(100));
    assert_eq!(
        store.tags("ann/app").unwrap(),
        vec![TagRecord {
            tag: "latest".into(),
            digest: "sha256:aa".into(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 1234,
            pushed_at: 100,
            pusher: Some("ann".into()),
        }]
    );
    assert_eq!(
        store.manifests("ann/app").unwrap(),
        vec![ManifestRecord {
            digest: "sha256:aa".into(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 1234,
            pushed_at: 100,
            pusher: Some("ann".into()),
            tags: vec!["latest".into()],
        }]
    );

    // A push into an existing repository keeps its owner and visibility.
    store.set_visibility("ann/app", Visibility::Public).unwrap();
    let mut by_digest = push("e2", "ann/app", None, "sha256:bb", 200);
    by_digest.default_owner = "mallory".into();
    by_digest.pusher = None;
    by_digest.size = 99;
    assert!(store.apply_push(&by_digest).unwrap());
    let repo = store.repository("ann/app").unwrap().unwrap();
    assert_eq!(repo.owner, "ann");
    assert_eq!(repo.visibility, Visibility::Public);
    assert_eq!(repo.pushed_at, Some(200));
    assert_eq!(store.tags("ann/app").unwrap().len(), 1);
    let manifests = store.manifests("ann/app").unwrap();
    assert_eq!(manifests.len(), 2);
    assert_eq!(manifests[0].digest, "sha256:bb");
    assert_eq!(manifests[0].size, 99);
    assert_eq!(manifests[0].pusher, None);
    assert!(manifests[0].tags.is_empty());
    assert_eq!(manifests[1].digest, "sha256:aa");

    assert!(store.tags("nope").unwrap().is_empty());
    assert!(store.manifests("nope").unwrap().is_empty());
}

#[test]
fn tag_moves_and_events_apply_once() {
    let store = memory();
    store
        .apply_push(&push("e1", "ann/app", Some("latest"), "sha256:aa", 100))
        .unwrap();
    store
        .apply_push(&push("e2", "ann/app", Some("v1"), "sha256:aa", 100))
        .unwrap();
    let moved = push("e3", "ann/app", Some("latest"), "sha256:bb", 200);
    assert!(store.apply_push(&moved).unwrap());
    let tags = store.tags("ann/app").unwrap();
    assert_eq!(tags.len(), 2);
    assert_eq!(
        (tags[0].tag.as_str(), tags[0].digest.as_str()),
        ("latest", "sha256:bb")
    );
    assert_eq!(tags[0].pushed_at, 200);
    assert_eq!(
        (tags[1].tag.as_str(), tags[1].digest.as_str()),
        ("v1", "sha256:aa")
    );
    let manifests = store.manifests("ann/app").unwrap();
    assert_eq!(manifests[0].digest, "sha256:bb");
    assert_eq!(manifests[0].tags, ["latest"]);
    assert_eq!(manifests[1].digest, "sha256:aa");
    assert_eq!(manifests[1].tags, ["v1"]);

    // The same event again, even with different content: nothing changes.
    let before = snapshot(&store, "ann/app");
    let events = count(&store, "events_applied");
    assert!(!store.apply_push(&moved).unwrap());
    assert!(!store
        .apply_push(&push("e1", "ann/app", Some("latest"), "sha256:cc", 300))
        .unwrap());
    assert!(!store
        .apply_push(&push("e1", "other/app", None, "sha256:cc", 300))
        .unwrap());
    assert_eq!(snapshot(&store, "ann/app"), before);
    assert_eq!(store.repository("other/app").unwrap(), None);
    assert_eq!(count(&store, "events_applied"), events);
    assert_eq!(count(&store, "manifests"), 2);

    // A late event (new id, older push) records its manifest but moves nothing back.
    assert!(store
        .apply_push(&push("e0", "ann/app", Some("latest"), "sha256:00", 50))
        .unwrap());
    let (repo, tags, manifests) = snapshot(&store, "ann/app");
    assert_eq!(repo.unwrap().pushed_at, Some(200));
    assert_eq!(tags[0].digest, "sha256:bb");
    assert_eq!(manifests.len(), 3);
    assert_eq!(manifests[2].digest, "sha256:00");
    assert!(manifests[2].tags.is_empty());
}

#[test]
fn manifests_order_ties_by_digest() {
    let store = memory();
    for (id, digest) in [("a", "sha256:cc"), ("b", "sha256:aa"), ("c", "sha256:bb")] {
        store.apply_push(&push(id, "r", None, digest, 7)).unwrap();
    }
    let digests: Vec<String> = store
        .manifests("r")
        .unwrap()
        .into_iter()
        .map(|m| m.digest)
        .collect();
    assert_eq!(digests, ["sha256:aa", "sha256:bb", "sha256:cc"]);
}

#[test]
fn delete_tag_and_manifest() {
    let store = memory();
    store
        .apply_push(&push("p1", "ann/app", Some("latest"), "sha256:aa", 100))
        .unwrap();
    store
        .apply_push(&push("p2", "ann/app", Some("v1"), "sha256:aa", 101))
        .unwrap();
    store
        .apply_push(&push("p3", "ann/app", Some("v2"), "sha256:bb", 102))
        .unwrap();

    // A tag delete leaves its manifest.
    let untag = DeleteRef::Tag("v1".into());
    assert!(store.apply_delete("d1", "ann/app", &untag).unwrap());
    let tags: Vec<String> = store
        .tags("ann/app")
        .unwrap()
        .into_iter()
        .map(|t| t.tag)
        .collect();
    assert_eq!(tags, ["latest", "v2"]);
    assert_eq!(store.manifests("ann/app").unwrap().len(), 2);
    assert!(!store.apply_delete("d1", "ann/app", &untag).unwrap());

    // A manifest delete takes every tag pointing at it.
    store
        .apply_push(&push("p4", "ann/app", Some("v1"), "sha256:aa", 103))
        .unwrap();
    let drop_aa = DeleteRef::Manifest("sha256:aa".into());
    assert!(store.apply_delete("d2", "ann/app", &drop_aa).unwrap());
    let tags = store.tags("ann/app").unwrap();
    assert_eq!(tags.len(), 1);
    assert_eq!(tags[0].tag, "v2");
    let manifests = store.manifests("ann/app").unwrap();
    assert_eq!(manifests.len(), 1);
    assert_eq!(manifests[0].digest, "sha256:bb");

    // Unknown repository, tag or manifest: recorded, no error, nothing else changes.
    let before = snapshot(&store, "ann/app");
    let events = count(&store, "events_applied");
    assert!(store
        .apply_delete("d3", "nope/app", &DeleteRef::Tag("x".into()))
        .unwrap());
    assert!(store
        .apply_delete("d4", "ann/app", &DeleteRef::Tag("nope".into()))
        .unwrap());
    assert!(store
        .apply_delete("d5", "ann/app", &DeleteRef::Manifest("sha256:ff".into()))
        .unwrap());
    assert_eq!(count(&store, "events_applied"), events + 3);
    assert_eq!(snapshot(&store, "ann/app"), before);
    assert!(!store
        .apply_delete("d3", "nope/app", &DeleteRef::Tag("x".into()))
        .unwrap());
    assert_eq!(store.repository("nope/app").unwrap(), None);
}

/// Two tagged manifests and a collaborator, pushed by events `{repository}-{round}-{1,2}`.
fn populate(store: &Store, repository: &str, round: u32) {
    store
        .apply_push(&push(
            &format!("{repository}-{round}-1"),
            repository,
            Some("latest"),
            "sha256:aa",
            1,
        ))
        .unwrap();
    store
        .apply_push(&push(
            &format!("{repository}-{round}-2"),
            repository,
            Some("v1"),
            "sha256:bb",
            2,
        ))
        .unwrap();
    store
        .set_collaborator(repository, "bob", CollaboratorAccess::Pull, 3)
        .unwrap();
}

#[test]
fn deleting_a_repository_cascades() {
    let store = memory();
    populate(&store, "ann/app", 1);
    populate(&store, "ann/other", 1);
    let counts = |store: &Store| {
        ["repositories", "manifests", "tags", "collaborators"].map(|t| count(store, t))
    };
    assert_eq!(counts(&store), [2, 4, 4, 2]);

    assert!(store.apply_repository_deleted("rd1", "ann/app").unwrap());
    assert_eq!(counts(&store), [1, 2, 2, 1]);
    assert_eq!(store.repository("ann/app").unwrap(), None);
    assert!(store.tags("ann/app").unwrap().is_empty());
    assert!(store.collaborators("ann/app").unwrap().is_empty());
    // The first round's events replayed change nothing: the repository stays deleted.
    populate(&store, "ann/app", 1);
    assert_eq!(store.repository("ann/app").unwrap(), None);
    assert_eq!(counts(&store), [1, 2, 2, 1]);
    // Replayed after the repository came back (new pushes): it stays.
    populate(&store, "ann/app", 2);
    assert!(!store.apply_repository_deleted("rd1", "ann/app").unwrap());
    assert_eq!(counts(&store), [2, 4, 4, 2]);
    // Unknown repository: recorded, no error.
    assert!(store.apply_repository_deleted("rd2", "nope").unwrap());

    assert!(store.delete_repository("ann/other").unwrap());
    assert!(!store.delete_repository("ann/other").unwrap());
    assert_eq!(counts(&store), [1, 2, 2, 1]);
    assert_eq!(store.repositories(None).unwrap()[0].name, "ann/app");
}

#[test]
fn purging_applied_events() {
    let store = memory();
    populate(&store, "ann/app", 1);
    let first = push("ann/app-1-1", "ann/app", Some("latest"), "sha256:aa", 1);
    assert!(!store.apply_push(&first).unwrap());
    assert_eq!(count(&store, "events_applied"), 2);
    assert_eq!(store.purge_applied_events(0).unwrap(), 0);
    assert!(!store.apply_push(&first).unwrap());
    // Applied "now": an hour from now everything is older.
    let later = unix_now() + 3600;
    assert_eq!(store.purge_applied_events(later).unwrap(), 2);
    assert_eq!(count(&store, "events_applied"), 0);
    // A forgotten id is applied again (why ids must be kept longer than retries last).
    assert!(store.apply_push(&first).unwrap());
}

#[test]
fn search_escapes_and_ignores_case() {
    let store = memory();
    for (name, description) in [
        ("ann/my_app", ""),
        ("ann/myxapp", ""),
        ("bob/tools", "Build TOOLS"),
        ("carl/sale", "50% off"),
        ("dora/paths", "C:\\dir"),
        ("eve/plain", "nothing special"),
    ] {
        store
            .create_repository(name, "x", Visibility::Public, 1)
            .unwrap();
        store.set_description(name, description).unwrap();
    }
    let names = |q: Option<&str>| -> Vec<String> {
        store
            .repositories(q)
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect()
    };
    assert_eq!(
        names(None),
        [
            "ann/my_app",
            "ann/myxapp",
            "bob/tools",
            "carl/sale",
            "dora/paths",
            "eve/plain"
        ]
    );
    assert_eq!(names(Some("_")), ["ann/my_app"]);
    assert_eq!(names(Some("my_a")), ["ann/my_app"]);
    assert_eq!(names(Some("%")), ["carl/sale"]);
    assert_eq!(names(Some("\\")), ["dora/paths"]);
    assert_eq!(names(Some("\\d")), ["dora/paths"]);
    assert_eq!(names(Some("MY")), ["ann/my_app", "ann/myxapp"]);
    assert_eq!(names(Some("tools")), ["bob/tools"]);
    assert_eq!(names(Some("build t")), ["bob/tools"]);
    assert_eq!(names(Some("SPECIAL")), ["eve/plain"]);
    assert!(names(Some("zzz")).is_empty());
    assert_eq!(names(Some("")).len(), 6);
}

#[test]
fn collaborators_crud() {
    let store = memory();
    assert!(!store
        .set_collaborator("nope", "bob", CollaboratorAccess::Pull, 1)
        .unwrap());
    assert_eq!(count(&store, "collaborators"), 0);
    store
        .create_repository("ann/app", "ann", Visibility::Private, 1)
        .unwrap();
    assert_eq!(store.collaboration("ann/app", "bob").unwrap(), None);
    assert!(store
        .set_collaborator("ann/app", "bob", CollaboratorAccess::Pull, 10)
        .unwrap());
    assert!(store
        .set_collaborator("ann/app", "abe", CollaboratorAccess::Push, 11)
        .unwrap());
    assert_eq!(
        store.collaboration("ann/app", "bob").unwrap(),
        Some(CollaboratorAccess::Pull)
    );
    // Changing the access keeps when they were added.
    assert!(store
        .set_collaborator("ann/app", "bob", CollaboratorAccess::Push, 20)
        .unwrap());
    assert_eq!(
        store.collaborators("ann/app").unwrap(),
        vec![
            Collaborator {
                user: "abe".into(),
                access: CollaboratorAccess::Push,
                added_at: 11,
            },
            Collaborator {
                user: "bob".into(),
                access: CollaboratorAccess::Push,
                added_at: 10,
            },
        ]
    );
    assert!(store.remove_collaborator("ann/app", "bob").unwrap());
    assert!(!store.remove_collaborator("ann/app", "bob").unwrap());
    assert_eq!(store.collaboration("ann/app", "bob").unwrap(), None);
    assert_eq!(store.collaborators("ann/app").unwrap().len(), 1);
    assert!(store.collaborators("nope").unwrap().is_empty());
}

#[test]
fn access_words() {
    for a in [CollaboratorAccess::Pull, CollaboratorAccess::Push] {
        assert_eq!(a.as_str().parse::<CollaboratorAccess>(), Ok(a));
        assert_eq!(
            serde_json::to_value(a).unwrap(),
            serde_json::json!(a.as_str())
        );
    }
    assert!(CollaboratorAccess::Push.may_push());
    assert!(!CollaboratorAccess::Pull.may_push());
    assert!("delete".parse::<CollaboratorAccess>().is_err());
}

fn record(user: &str, expires_at: u64) -> RefreshRecord {
    RefreshRecord {
        user: user.into(),
        service: "svc".into(),
        client_id: Some("docker".into()),
        created_at: 5,
        expires_at,
    }
}

#[test]
fn refresh_records() {
    let store = memory();
    assert_eq!(RefreshStore::get(&store, "a").unwrap(), None);
    store.put("a", record("ann", 100)).unwrap();
    store.put("b", record("ann", 200)).unwrap();
    store.put("c", record("bob", 300)).unwrap();
    let mut no_client = record("carl", u64::MAX);
    no_client.client_id = None;
    store.put("d", no_client.clone()).unwrap();
    assert_eq!(
        RefreshStore::get(&store, "a").unwrap(),
        Some(record("ann", 100))
    );
    // Beyond SQLite's integers is still "never expires".
    let far = RefreshStore::get(&store, "d").unwrap().unwrap();
    assert_eq!(far.client_id, None);
    assert_eq!(far.expires_at, i64::MAX as u64);
    // Putting the same digest replaces.
    store.put("a", record("ann", 150)).unwrap();
    assert_eq!(
        RefreshStore::get(&store, "a").unwrap().unwrap().expires_at,
        150
    );

    assert!(store.remove("c").unwrap());
    assert!(!store.remove("c").unwrap());
    assert_eq!(RefreshStore::get(&store, "c").unwrap(), None);

    // Expired at `now` includes `expires_at == now`.
    assert_eq!(store.purge_expired(149).unwrap(), 0);
    assert_eq!(store.purge_expired(150).unwrap(), 1);
    assert_eq!(RefreshStore::get(&store, "a").unwrap(), None);
    assert!(RefreshStore::get(&store, "b").unwrap().is_some());

    store.put("e", record("ann", 500)).unwrap();
    assert_eq!(store.remove_user("ann").unwrap(), 2);
    assert_eq!(store.remove_user("ann").unwrap(), 0);
    assert_eq!(count(&store, "refresh_tokens"), 1);
    assert_eq!(store.purge_expired(u64::MAX).unwrap(), 1);
    assert_eq!(count(&store, "refresh_tokens"), 0);
}

#[test]
fn refresh_tokens_on_a_shared_store() {
    // The token service works over an Arc<Store> as the server shares it.
    let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
    let store = Arc::new(memory());
    let tokens = RefreshTokens::new(Arc::clone(&store)).with_lifetime(Duration::from_secs(3600));
    let token = tokens
        .issue("ann", "svc", Some("docker"), at(1000))
        .unwrap();
    assert_eq!(count(&store, "refresh_tokens"), 1);
    // Only the digest is stored.
    let stored: String = store
        .lock()
        .unwrap()
        .query_row("SELECT digest FROM refresh_tokens", [], |row| row.get(0))
        .unwrap();
    assert!(!stored.contains(&token[5..]));
    let redeemed = tokens.redeem(&token, "svc", at(2000)).unwrap();
    assert_eq!(redeemed.user, "ann");
    assert_eq!(redeemed.expires_at, 4600);
    assert!(matches!(
        tokens.redeem(&token, "other", at(2000)),
        Err(RefreshError::Invalid)
    ));
    assert!(tokens.revoke(&token).unwrap());
    assert!(matches!(
        tokens.redeem(&token, "svc", at(2000)),
        Err(RefreshError::Invalid)
    ));
    let second = tokens.issue("ann", "svc", None, at(1000)).unwrap();
    assert_eq!(tokens.revoke_user("ann").unwrap(), 1);
    assert!(tokens.redeem(&second, "svc", at(1001)).is_err());
}

#[test]
fn errors_convert_for_the_token_service() {
    let e: RefreshError = StoreError::Poisoned.into();
    match e {
        RefreshError::Store(text) => assert!(text.contains("poisoned"), "{text}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_poisoned_store_refuses() {
    let store = Arc::new(memory());
    let holder = Arc::clone(&store);
    let _ = std::thread::spawn(move || {
        let _guard = holder.conn.lock().unwrap();
        panic!("poison the connection");
    })
    .join();
    assert!(matches!(store.repository("x"), Err(StoreError::Poisoned)));
    assert!(matches!(
        RefreshStore::get(&store, "x"),
        Err(RefreshError::Store(_))
    ));
}
